package engine

import (
	"context"
	"strings"
	"time"

	"regie/auth"
	"regie/auth/audit"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// SearchRequest is a search at type, system or compartment level.
type SearchRequest struct {
	// Types are the searched types: one for a type-level search, none for
	// a system-level search (all types, or those _type names).
	Types []string
	// Params are the request's parameters in order.
	Params []search.Param
	// Compartment and CompartmentID narrow the search to a compartment
	// (Patient/123/CarePlan).
	Compartment, CompartmentID string
	// Strict rejects unknown parameters (Prefer: handling=strict).
	Strict bool
}

// SearchResult is one page of a search.
type SearchResult struct {
	Query *search.Query
	Page  *storage.Page
	// Warnings list the parameters that were ignored.
	Warnings []fhir.Issue
	// Canonical is the normalised query string of the request (without
	// cursor and compartment), for links.
	Canonical string
}

// Search runs a search. The access policy's constraint is added to the
// query, so matches, includes, totals and paging only ever contain what the
// principal may see.
func (e *Engine) Search(ctx context.Context, r *SearchRequest) (*SearchResult, error) {
	interaction := "search-type"
	switch {
	case r.Compartment != "":
		interaction = "search-compartment"
	case len(r.Types) == 0:
		interaction = "search-system"
	}
	o, err := e.begin(ctx, interaction, audit.ActionExecute)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	res, err := e.search(ctx, o, r)
	if res != nil {
		o.ev.Query = res.Canonical
		if r.Compartment != "" {
			o.ev.Query = r.Compartment + "/" + r.CompartmentID + "/" + strings.Join(r.Types, ",") + "?" + res.Canonical
		} else if len(r.Types) == 1 {
			o.ev.Query = r.Types[0] + "?" + res.Canonical
		}
	}
	return res, o.finish(ctx, err)
}

func (e *Engine) search(ctx context.Context, o *op, r *SearchRequest) (*SearchResult, error) {
	for _, t := range r.Types {
		if err := e.CheckType(t); err != nil {
			return nil, err
		}
	}
	q, warnings, err := e.parser.Parse(r.Types, r.Params, search.Options{Strict: r.Strict, Now: time.Now()})
	if err != nil {
		return nil, err
	}
	canonical := search.Canonical(q)
	if r.Compartment != "" {
		if e.defs.Compartment(r.Compartment) == nil {
			return nil, &UnknownTypeError{Type: r.Compartment}
		}
		c, err := search.CompartmentConstraint(e.defs, r.Compartment, r.CompartmentID, q.Types...)
		if err != nil {
			return nil, err
		}
		if q.Where == nil {
			q.Where = c
		} else {
			q.Where = search.And{c, q.Where}
		}
	}
	if o.acc != nil {
		if o.ri.BreakGlass != "" {
			if pid := searchedPatient(r, q); pid != "" {
				if _, err := e.breakGlass(ctx, o, pid); err != nil {
					return nil, err
				}
			}
		}
		c, err := o.readConstraint(e.returnedTypes(q), auth.InteractionSearch)
		if err != nil {
			return nil, err
		}
		q.Constraint = c
		// chains and _has look into other resources: only into those the
		// principal may see, or they would tell what they cannot read
		q.Where = o.constrainLinks(q.Where)
	}
	page, err := e.store.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	e.touchPage(o, page.Resources, page.Entries)
	e.touchPage(o, page.Included, page.IncludedEntries)
	return &SearchResult{Query: q, Page: page, Warnings: warnings, Canonical: canonical}, nil
}

// returnedTypes lists the types a search can return or look into: the
// searched types, those its includes and revincludes can add, and those its
// chains and _has pass through (nil: every type).
func (e *Engine) returnedTypes(q *search.Query) []string {
	if len(q.Types) == 0 {
		return nil
	}
	types := append([]string(nil), q.Types...)
	add := func(t string) bool {
		if t == "" || t == "*" {
			return false
		}
		if !contains(types, t) {
			types = append(types, t)
		}
		return true
	}
	for _, inc := range q.Include {
		if inc.Target != "" {
			add(inc.Target)
			continue
		}
		if inc.Iterate {
			return nil
		}
		for _, src := range q.Types {
			if inc.Source != src && inc.Source != "*" {
				continue
			}
			params := []*fhir.SearchParam{e.defs.SearchParam(src, inc.Param)}
			if inc.Param == "*" {
				params = e.defs.SearchParams(src)
			}
			for _, p := range params {
				if p == nil || p.Type != fhir.ParamReference {
					continue
				}
				if len(p.Target) == 0 {
					return nil
				}
				for _, t := range p.Target {
					if t == "Resource" || !add(t) {
						return nil
					}
				}
			}
		}
	}
	for _, inc := range q.RevInclude {
		if inc.Iterate || !add(inc.Source) {
			return nil
		}
	}
	// the store applies the constraint to what chains and _has pass
	// through as well, so it must cover their types
	search.Walk(q.Where, func(e search.Expr) {
		switch x := e.(type) {
		case *search.Chain:
			add(x.Target)
		case *search.Has:
			add(x.Type)
		}
	})
	return types
}

// searchedPatient returns the patient a search is about, for
// break-the-glass: the compartment's owner, or the patient named by a
// patient, subject or _id parameter.
func searchedPatient(r *SearchRequest, q *search.Query) string {
	if r.Compartment == "Patient" {
		return r.CompartmentID
	}
	var found string
	var walk func(x search.Expr)
	walk = func(x search.Expr) {
		switch x := x.(type) {
		case search.And:
			for _, y := range x {
				walk(y)
			}
		case *search.Match:
			for _, v := range x.Values {
				switch {
				case (x.Param == "patient" || x.Param == "subject") && (v.RefType == "Patient" || v.RefType == "") && v.RefID != "":
					found = v.RefID
				case x.Param == "_id" && len(q.Types) == 1 && q.Types[0] == "Patient" && len(x.Values) == 1:
					found = v.Code
				}
			}
		}
	}
	walk(q.Where)
	return found
}

// SearchParams returns the search parameters of typ that searches can use:
// the ones the indexer extracts (including _id and _lastUpdated, which
// stores answer from their own columns).
func (e *Engine) SearchParams(typ string) []*fhir.SearchParam {
	if ps, ok := e.idx.(interface {
		Params(string) []*fhir.SearchParam
	}); ok {
		return ps.Params(typ)
	}
	var out []*fhir.SearchParam
	for _, code := range []string{"_id", "_lastUpdated"} {
		if p := e.defs.SearchParam(typ, code); p != nil {
			out = append(out, p)
		}
	}
	return out
}

// Everything is Patient/$everything: the patient and every resource of
// their dossier (the Patient compartment) that the principal may see, as
// one paged search. Params may carry _count, _type and the cursor.
func (e *Engine) Everything(ctx context.Context, id string, params []search.Param) (*SearchResult, error) {
	o, err := e.begin(ctx, "operation", audit.ActionExecute)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	o.ev.Operation = "everything"
	res, err := e.everything(ctx, o, id, params)
	if res != nil {
		o.ev.Query = "Patient/" + id + "/$everything?" + res.Canonical
	}
	return res, o.finish(ctx, err)
}

func (e *Engine) everything(ctx context.Context, o *op, id string, params []search.Param) (*SearchResult, error) {
	if err := checkID("Patient", id); err != nil {
		return nil, err
	}
	if o.acc != nil {
		if _, err := o.acc.ReadConstraint("Patient", auth.InteractionOperation); err != nil {
			return nil, err
		}
	}
	if _, _, err := e.visible(ctx, o, e.store, "Patient", id, auth.InteractionOperation); err != nil {
		return nil, err
	}
	o.ev.Resource = "Patient/" + id
	types := e.defs.Compartment("Patient").Types()
	if !contains(types, "Patient") {
		types = append(types, "Patient")
	}
	var kept []search.Param
	for _, p := range params {
		switch p.Name {
		case "_count", "_type", "_cursor", "_total":
			kept = append(kept, p)
		}
	}
	return e.search(ctx, o, &SearchRequest{Types: types, Compartment: "Patient", CompartmentID: id, Params: kept})
}

// constrainLinks adds the principal's read constraint to the resources that
// chains and _has look into, throughout an expression. A link into a type
// the principal may never read matches nothing.
func (o *op) constrainLinks(x search.Expr) search.Expr {
	limit := func(typ string, where search.Expr) search.Expr {
		c, err := o.acc.ReadConstraint(typ, auth.InteractionSearch)
		if err != nil {
			return search.Or{} // nothing
		}
		switch {
		case c == nil:
			return where
		case where == nil:
			return c
		}
		return search.And{where, c}
	}
	switch x := x.(type) {
	case search.And:
		out := make(search.And, len(x))
		for i, y := range x {
			out[i] = o.constrainLinks(y)
		}
		return out
	case search.Or:
		out := make(search.Or, len(x))
		for i, y := range x {
			out[i] = o.constrainLinks(y)
		}
		return out
	case search.Not:
		return search.Not{X: o.constrainLinks(x.X)}
	case *search.Chain:
		w := limit(x.Target, o.constrainLinks(x.Where))
		if or, ok := w.(search.Or); ok && len(or) == 0 {
			return search.Or{}
		}
		return &search.Chain{Param: x.Param, Target: x.Target, Where: w}
	case *search.Has:
		w := limit(x.Type, o.constrainLinks(x.Where))
		if or, ok := w.(search.Or); ok && len(or) == 0 {
			return search.Or{}
		}
		return &search.Has{Type: x.Type, Param: x.Param, Where: w}
	}
	return x
}
