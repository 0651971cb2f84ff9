package engine

import (
	"context"
	"errors"
	"fmt"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// ErrMultipleMatches is returned when the search of a conditional
// interaction matches more than one resource (412 Precondition Failed).
var ErrMultipleMatches = errors.New("engine: the condition matches more than one resource")

// conditionQuery parses the search of a conditional interaction on typ.
// Unknown parameters are errors: a condition that is silently ignored would
// match everything.
func (e *Engine) conditionQuery(typ, condition string) (*search.Query, error) {
	params, err := search.ParseParams(condition)
	if err != nil {
		return nil, err
	}
	if len(params) == 0 {
		return nil, fhir.Invalid(fhir.IssueRequired, "", "a conditional interaction needs search parameters", "")
	}
	q, _, err := e.parser.Parse([]string{typ}, params, search.Options{Strict: true})
	if err != nil {
		return nil, err
	}
	q.Count, q.Total, q.Include, q.RevInclude, q.Sort = 2, search.TotalNone, nil, nil, nil
	return q, nil
}

// matches runs a condition inside a transaction and returns up to two matches.
func matches(ctx context.Context, rd storage.Reader, q *search.Query) ([]*fhir.Resource, error) {
	page, err := rd.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	return page.Resources, nil
}

// ConditionalCreate creates body unless a resource matches ifNoneExist; with
// one match it returns that resource (Created false) and writes nothing. The
// check and the create are one serialisable transaction, so concurrent
// conditional creates of the same resource create it once.
func (e *Engine) ConditionalCreate(ctx context.Context, typ string, body []byte, ifNoneExist string) (*Result, error) {
	p, err := e.prepare(typ, body)
	if err != nil {
		return nil, err
	}
	q, err := e.conditionQuery(typ, ifNoneExist)
	if err != nil {
		return nil, err
	}
	var res *Result
	err = e.store.Transact(ctx, func(tx storage.Tx) error {
		found, err := matches(ctx, tx, q)
		if err != nil {
			return err
		}
		switch len(found) {
		case 0:
			res, err = e.write(ctx, tx, &storage.Write{Type: typ, ID: e.newID(), Body: p.body, Index: p.index, CreateOnly: true})
			return err
		case 1:
			res = &Result{Resource: found[0]}
			return nil
		}
		return ErrMultipleMatches
	})
	return res, err
}

// ConditionalUpdate updates the one resource matching condition, or creates
// body when none matches (with the id in the body, or a new one).
func (e *Engine) ConditionalUpdate(ctx context.Context, typ string, body []byte, condition, ifMatch string) (*Result, error) {
	p, err := e.prepare(typ, body)
	if err != nil {
		return nil, err
	}
	q, err := e.conditionQuery(typ, condition)
	if err != nil {
		return nil, err
	}
	var want int64
	if ifMatch != "" {
		if want, err = ParseVersion(ifMatch); err != nil {
			return nil, err
		}
	}
	var res *Result
	err = e.store.Transact(ctx, func(tx storage.Tx) error {
		found, err := matches(ctx, tx, q)
		if err != nil {
			return err
		}
		w := &storage.Write{Type: typ, Body: p.body, Index: p.index, IfMatch: want}
		switch len(found) {
		case 0:
			w.ID = p.id
			if w.ID == "" {
				w.ID = e.newID()
			}
		case 1:
			w.ID = found[0].ID
			if p.id != "" && p.id != w.ID {
				return fhir.Invalid(fhir.IssueInvalid, typ+".id", "the id in the body is not the id of the resource the condition matches",
					fmt.Sprintf("body has %q, the match is %q", p.id, w.ID))
			}
		default:
			return ErrMultipleMatches
		}
		res, err = e.write(ctx, tx, w)
		return err
	})
	return res, err
}

// ConditionalDelete deletes the one resource matching condition; none is
// not an error; several are ErrMultipleMatches.
func (e *Engine) ConditionalDelete(ctx context.Context, typ, condition string) (*Result, error) {
	if err := e.CheckType(typ); err != nil {
		return nil, err
	}
	q, err := e.conditionQuery(typ, condition)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	err = e.store.Transact(ctx, func(tx storage.Tx) error {
		found, err := matches(ctx, tx, q)
		if err != nil {
			return err
		}
		switch len(found) {
		case 0:
			return nil
		case 1:
			res, err = e.write(ctx, tx, &storage.Write{Type: typ, ID: found[0].ID, Delete: true})
			return err
		}
		return ErrMultipleMatches
	})
	return res, err
}
