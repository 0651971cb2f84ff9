package engine

import (
	"context"
	"time"

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

// Search runs a search.
func (e *Engine) Search(ctx context.Context, r *SearchRequest) (*SearchResult, error) {
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
	page, err := e.store.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	return &SearchResult{Query: q, Page: page, Warnings: warnings, Canonical: canonical}, nil
}

// SearchParams returns the search parameters of typ that searches can use:
// those the indexer indexes, and the ones stores answer from their own
// columns (_id, _lastUpdated).
func (e *Engine) SearchParams(typ string) []*fhir.SearchParam {
	var out []*fhir.SearchParam
	for _, code := range []string{"_id", "_lastUpdated"} {
		if p := e.defs.SearchParam(typ, code); p != nil {
			out = append(out, p)
		}
	}
	if ps, ok := e.idx.(interface {
		Params(string) []*fhir.SearchParam
	}); ok {
		out = append(out, ps.Params(typ)...)
	}
	return out
}
