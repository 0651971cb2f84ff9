package server

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"regie/fhir"
	"regie/server/engine"
	"regie/storage"
)

// bundleWriter builds Bundle JSON around stored resource bytes, which are
// copied in as they are, never re-encoded.
type bundleWriter struct {
	b       []byte
	entries int
}

func newBundle(typ string) *bundleWriter {
	w := &bundleWriter{b: make([]byte, 0, 4096)}
	w.b = append(w.b, `{"resourceType":"Bundle","id":"`...)
	w.b = append(w.b, engine.NewUUID()...)
	w.b = append(w.b, `","meta":{"lastUpdated":"`...)
	w.b = append(w.b, fhir.FormatInstant(time.Now())...)
	w.b = append(w.b, `"},"type":`...)
	w.b = fhir.AppendString(w.b, typ)
	return w
}

func (w *bundleWriter) total(n int) {
	w.b = append(w.b, `,"total":`...)
	w.b = strconv.AppendInt(w.b, int64(n), 10)
}

func (w *bundleWriter) links(links ...[2]string) {
	n := 0
	for _, l := range links {
		if l[1] == "" {
			continue
		}
		if n == 0 {
			w.b = append(w.b, `,"link":[`...)
		} else {
			w.b = append(w.b, ',')
		}
		n++
		w.b = append(w.b, `{"relation":`...)
		w.b = fhir.AppendString(w.b, l[0])
		w.b = append(w.b, `,"url":`...)
		w.b = fhir.AppendString(w.b, l[1])
		w.b = append(w.b, '}')
	}
	if n > 0 {
		w.b = append(w.b, ']')
	}
}

// entry starts an entry; the caller appends members with member() and
// closes it with endEntry().
func (w *bundleWriter) entry() {
	if w.entries == 0 {
		w.b = append(w.b, `,"entry":[{`...)
	} else {
		w.b = append(w.b, `,{`...)
	}
	w.entries++
}

func (w *bundleWriter) member(first bool, name string) {
	if !first {
		w.b = append(w.b, ',')
	}
	w.b = fhir.AppendString(w.b, name)
	w.b = append(w.b, ':')
}

func (w *bundleWriter) endEntry() { w.b = append(w.b, '}') }

func (w *bundleWriter) done() []byte {
	if w.entries > 0 {
		w.b = append(w.b, ']')
	}
	return append(w.b, '}')
}

func (s *Server) fullURL(r *fhir.Resource) string { return s.fhirURL + "/" + r.Type + "/" + r.ID }

// response writes an entry's response member.
func (w *bundleWriter) response(first bool, status int, location string, r *fhir.Resource) {
	w.member(first, "response")
	w.b = append(w.b, `{"status":`...)
	w.b = fhir.AppendString(w.b, strconv.Itoa(status)+" "+http.StatusText(status))
	if location != "" {
		w.b = append(w.b, `,"location":`...)
		w.b = fhir.AppendString(w.b, location)
	}
	if r != nil {
		w.b = append(w.b, `,"etag":`...)
		w.b = fhir.AppendString(w.b, `W/"`+r.VersionID()+`"`)
		w.b = append(w.b, `,"lastModified":`...)
		w.b = fhir.AppendString(w.b, fhir.FormatInstant(r.LastUpdated))
	}
	w.b = append(w.b, '}')
}

// historyBundle renders a page of versions as a history Bundle.
func (s *Server) historyBundle(c *fiber.Ctx, q *storage.HistoryQuery, page *storage.Page) []byte {
	w := newBundle("history")
	if page.Total >= 0 {
		w.total(page.Total)
	}
	path := s.fhirURL
	if q.Type != "" {
		path += "/" + q.Type
		if q.ID != "" {
			path += "/" + q.ID
		}
	}
	path += "/_history"
	link := func(cursor string) string {
		v := url.Values{}
		if q.Count > 0 {
			v.Set("_count", strconv.Itoa(q.Count))
		}
		if !q.Since.IsZero() {
			v.Set("_since", fhir.FormatInstant(q.Since))
		}
		if !q.At.IsZero() {
			v.Set("_at", fhir.FormatInstant(q.At))
		}
		if cursor != "" {
			v.Set("_cursor", cursor)
		}
		if len(v) == 0 {
			return path
		}
		return path + "?" + v.Encode()
	}
	var next, prev string
	if page.Next != "" {
		next = link(page.Next)
	}
	if page.Prev != "" {
		prev = link(page.Prev)
	}
	w.links([2]string{"self", link(q.Cursor)}, [2]string{"next", next}, [2]string{"previous", prev})
	for _, r := range page.Resources {
		w.entry()
		w.member(true, "fullUrl")
		w.b = fhir.AppendString(w.b, s.fullURL(r))
		method, url, status := "PUT", r.Type+"/"+r.ID, fiber.StatusOK
		switch {
		case r.Deleted:
			method, status = "DELETE", fiber.StatusNoContent
		case r.Version == 1:
			method, url, status = "POST", r.Type, fiber.StatusCreated
		}
		if !r.Deleted {
			w.member(false, "resource")
			w.b = append(w.b, r.Body...)
		}
		w.member(false, "request")
		w.b = append(w.b, `{"method":"`...)
		w.b = append(w.b, method...)
		w.b = append(w.b, `","url":`...)
		w.b = fhir.AppendString(w.b, url)
		w.b = append(w.b, '}')
		w.response(false, status, "", r)
		w.endEntry()
	}
	return w.done()
}

// responseBundle renders the results of a batch or transaction.
func (s *Server) responseBundle(c *fiber.Ctx, typ string, results []engine.EntryResult) []byte {
	w := newBundle(typ)
	ret := preferReturn(c)
	for _, res := range results {
		w.entry()
		first := true
		if res.Err != nil {
			status, issues := outcomeFor(res.Err)
			w.member(true, "response")
			w.b = append(w.b, `{"status":`...)
			w.b = fhir.AppendString(w.b, strconv.Itoa(status)+" "+http.StatusText(status))
			w.b = append(w.b, `,"outcome":`...)
			w.b = append(w.b, renderOutcome(issues, "")...)
			w.b = append(w.b, '}')
			w.endEntry()
			continue
		}
		r := res.Resource
		status := fiber.StatusOK
		location := ""
		switch res.Method {
		case "POST", "PUT", "PATCH":
			if res.Created {
				status = fiber.StatusCreated
			}
			if r != nil {
				location = r.Type + "/" + r.ID + "/_history/" + r.VersionID()
			}
		case "DELETE":
			status = fiber.StatusNoContent
		}
		if r != nil && !r.Deleted {
			w.member(first, "fullUrl")
			w.b = fhir.AppendString(w.b, s.fullURL(r))
			first = false
			if ret == "representation" || res.Method == "GET" {
				w.member(false, "resource")
				w.b = append(w.b, r.Body...)
			}
		}
		if res.Page != nil {
			w.member(first, "resource")
			first = false
			w.b = append(w.b, s.historyBundle(c, &storage.HistoryQuery{}, res.Page)...)
		}
		w.response(first, status, location, r)
		w.endEntry()
	}
	return w.done()
}

// parseInstant parses a FHIR instant, dateTime or date (the start of the
// period it names; without a zone, UTC).
func parseInstant(v string) (time.Time, error) {
	layouts := []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02", "2006-01", "2006"}
	for _, l := range layouts {
		if t, err := time.Parse(l, strings.TrimSpace(v)); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fiber.ErrBadRequest
}
