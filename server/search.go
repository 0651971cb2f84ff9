package server

import (
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"

	"regie/fhir"
	"regie/fhir/search"
	"regie/server/engine"
)

// searchParams returns the request's search parameters: the query string,
// and for POST …/_search also the form body.
func searchParams(c *fiber.Ctx) ([]search.Param, error) {
	params, err := search.ParseParams(string(c.Request().URI().QueryString()))
	if err != nil {
		return nil, err
	}
	if c.Method() == fiber.MethodPost {
		ct := strings.ToLower(c.Get(fiber.HeaderContentType))
		if !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			return nil, errStatus(fiber.StatusUnsupportedMediaType, "not-supported", "POST _search needs Content-Type: application/x-www-form-urlencoded", "Content-Type")
		}
		form, err := search.ParseParams(string(c.Request().Body()))
		if err != nil {
			return nil, err
		}
		params = append(params, form...)
	}
	return params, nil
}

// preferStrict reads Prefer: handling=strict.
func preferStrict(c *fiber.Ctx) bool {
	for _, p := range strings.Split(c.Get("Prefer"), ",") {
		for _, q := range strings.Split(p, ";") {
			if strings.TrimSpace(q) == "handling=strict" {
				return true
			}
		}
	}
	return false
}

func (s *Server) searchType(c *fiber.Ctx) error {
	typ := c.Params("type")
	setInteraction(c, "search-type", typ)
	if err := s.eng.CheckType(typ); err != nil {
		return err
	}
	return s.runSearch(c, &engine.SearchRequest{Types: []string{typ}}, s.fhirURL+"/"+typ)
}

func (s *Server) searchSystem(c *fiber.Ctx) error {
	setInteraction(c, "search-system", "")
	return s.runSearch(c, &engine.SearchRequest{}, s.fhirURL)
}

func (s *Server) searchCompartment(c *fiber.Ctx) error {
	comp, id, typ := c.Params("comp"), c.Params("id"), c.Params("type")
	setInteraction(c, "search-compartment", typ)
	req := &engine.SearchRequest{Compartment: comp, CompartmentID: id}
	path := s.fhirURL + "/" + comp + "/" + id
	if typ != "" && typ != "*" {
		if err := s.eng.CheckType(typ); err != nil {
			return err
		}
		req.Types = []string{typ}
		path += "/" + typ
	} else {
		path += "/*"
	}
	if s.eng.Definitions().Compartment(comp) == nil {
		return errStatus(fiber.StatusNotFound, "not-supported", comp+" is not a compartment", "")
	}
	if !fhir.ValidID(id) {
		return fhir.Invalid(fhir.IssueValue, comp+".id", `the id must match [A-Za-z0-9\-\.]{1,64}`, "")
	}
	return s.runSearch(c, req, path)
}

func (s *Server) runSearch(c *fiber.Ctx, req *engine.SearchRequest, path string) error {
	params, err := searchParams(c)
	if err != nil {
		return err
	}
	req.Params = params
	req.Strict = preferStrict(c)
	res, err := s.eng.Search(c.UserContext(), req)
	if err != nil {
		return err
	}
	body, err := s.searchBundle(res, path)
	if err != nil {
		return err
	}
	return send(c, fiber.StatusOK, body)
}

// searchBundle renders a page of search results as a searchset Bundle.
func (s *Server) searchBundle(res *engine.SearchResult, path string) ([]byte, error) {
	q, page := res.Query, res.Page
	w := newBundle("searchset")
	if page.Total >= 0 {
		w.total(page.Total)
	}
	link := func(cursor string) string {
		qs := res.Canonical
		if cursor != "" {
			if qs != "" {
				qs += "&"
			}
			qs += "_cursor=" + url.QueryEscape(cursor)
		}
		if qs == "" {
			return path
		}
		return path + "?" + qs
	}
	var next, prev string
	if page.Next != "" {
		next = link(page.Next)
	}
	if page.Prev != "" {
		prev = link(page.Prev)
	}
	w.links([2]string{"self", link(q.Cursor)}, [2]string{"next", next}, [2]string{"previous", prev})
	mode, elements := fhir.SubsetMode(0), q.Elements
	switch q.Summary {
	case search.SummaryTrue:
		mode = fhir.SubsetSummary
	case search.SummaryText:
		mode = fhir.SubsetText
	case search.SummaryData:
		mode = fhir.SubsetData
	}
	if mode == 0 && len(elements) > 0 {
		mode = fhir.SubsetElements
	}
	entry := func(r *fhir.Resource, searchMode string) error {
		w.entry()
		w.member(true, "fullUrl")
		w.b = fhir.AppendString(w.b, s.fullURL(r))
		w.member(false, "resource")
		body := r.Body
		if mode != 0 {
			var err error
			if body, err = s.eng.Definitions().Subset(body, mode, elements); err != nil {
				return err
			}
		}
		w.b = append(w.b, body...)
		w.member(false, "search")
		w.b = append(w.b, `{"mode":"`...)
		w.b = append(w.b, searchMode...)
		w.b = append(w.b, `"}`...)
		w.endEntry()
		return nil
	}
	if q.Summary != search.SummaryCount {
		for _, r := range page.Resources {
			if err := entry(r, "match"); err != nil {
				return nil, err
			}
		}
		for _, r := range page.Included {
			if err := entry(r, "include"); err != nil {
				return nil, err
			}
		}
	}
	if len(res.Warnings) > 0 {
		var issues []issue
		for _, is := range res.Warnings {
			issues = append(issues, issue{Severity: "warning", Code: string(is.Code), Details: is.Details, Diagnostics: is.Diagnostics, Expression: is.Path})
		}
		w.entry()
		w.member(true, "resource")
		w.b = append(w.b, renderOutcome(issues, "")...)
		w.member(false, "search")
		w.b = append(w.b, `{"mode":"outcome"}`...)
		w.endEntry()
	}
	return w.done(), nil
}

func (s *Server) everything(c *fiber.Ctx) error {
	id := c.Params("id")
	setInteraction(c, "operation", "Patient")
	params, err := searchParams(c)
	if err != nil {
		return err
	}
	res, err := s.eng.Everything(c.UserContext(), id, params)
	if err != nil {
		return err
	}
	body, err := s.searchBundle(res, s.fhirURL+"/Patient/"+id+"/$everything")
	if err != nil {
		return err
	}
	return send(c, fiber.StatusOK, body)
}
