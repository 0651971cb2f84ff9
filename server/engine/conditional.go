package engine

import (
	"context"
	"errors"
	"fmt"

	"regie/auth"
	"regie/auth/audit"
	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// ErrMultipleMatches is returned when the search of a conditional
// interaction matches more than one resource (412 Precondition Failed).
var ErrMultipleMatches = errors.New("engine: the condition matches more than one resource")

// condition parses the search of a conditional interaction on typ, limited
// to what o's principal may see. Unknown parameters are errors: a
// condition that is silently ignored would match everything.
func (e *Engine) condition(o *op, typ, condition string) (*search.Query, error) {
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
	return e.constrained(o, q, auth.InteractionSearch)
}

// matchOne runs a condition and returns its one match, nil for none, or
// ErrMultipleMatches.
func matchOne(ctx context.Context, rd storage.Reader, q *search.Query) (*fhir.Resource, error) {
	page, err := rd.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	switch len(page.Resources) {
	case 0:
		return nil, nil
	case 1:
		return page.Resources[0], nil
	}
	return nil, ErrMultipleMatches
}

// txWrite checks and performs one write inside tx, with its audit record:
// old is the current version (nil when there is none), p the new one (nil
// for a delete).
func (e *Engine) txWrite(ctx context.Context, tx storage.Tx, o *op, interaction auth.Interaction, old *fhir.Resource, p *prepared, w *storage.Write) (*Result, error) {
	if old != nil && old.Deleted {
		old = nil
	}
	if err := e.checkWrite(ctx, o, interaction, old, p); err != nil {
		return nil, err
	}
	if old != nil && w.IfMatch == 0 {
		w.IfMatch = old.Version
	}
	r, err := tx.Write(ctx, w)
	if err != nil {
		return nil, err
	}
	o.wrote = append(o.wrote, w.Type) // the policy hears of it after the commit
	res := &Result{Resource: r, Created: r != nil && !w.Delete && old == nil}
	if e.audit {
		a := o.ev
		a.ID = "" // appendAudit gives it a time-ordered id
		if r != nil {
			a.Resource = r.Type + "/" + r.ID + "/_history/" + r.VersionID()
		}
		if err := e.appendAudit(ctx, tx, &a); err != nil {
			return nil, err
		}
		o.audited = true
	}
	return res, nil
}

// constrained returns q limited to what o's principal may read.
func (e *Engine) constrained(o *op, q *search.Query, interaction auth.Interaction) (*search.Query, error) {
	if o.acc == nil {
		return q, nil
	}
	c, err := o.readConstraint(e.returnedTypes(q), interaction)
	if err != nil {
		return nil, err
	}
	q.Constraint = c
	q.Where = o.constrainLinks(q.Where)
	return q, nil
}

// ConditionalCreate creates body unless a resource matches ifNoneExist; with
// one match it returns that resource (Created false) and writes nothing. The
// check and the create are one serialisable transaction, so concurrent
// conditional creates of the same resource create it once.
func (e *Engine) ConditionalCreate(ctx context.Context, typ string, body []byte, ifNoneExist string) (*Result, error) {
	o, err := e.begin(ctx, "create", audit.ActionCreate)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	res, err := e.conditionalCreate(ctx, o, typ, body, ifNoneExist)
	return res, o.finish(ctx, err)
}

func (e *Engine) conditionalCreate(ctx context.Context, o *op, typ string, body []byte, ifNoneExist string) (*Result, error) {
	if err := e.CheckType(typ); err != nil {
		return nil, err
	}
	if err := o.writeGate(typ, auth.InteractionCreate); err != nil {
		return nil, err
	}
	p, err := e.prepare(typ, body)
	if err != nil {
		return nil, err
	}
	q, err := e.condition(o, typ, ifNoneExist)
	if err != nil {
		return nil, err
	}
	p.id = e.newID()
	var res *Result
	err = e.store.Transact(ctx, func(tx storage.Tx) error {
		match, err := matchOne(ctx, tx, q)
		if err != nil || match != nil {
			res = &Result{Resource: match}
			return err
		}
		res, err = e.txWrite(ctx, tx, o, auth.InteractionCreate, nil, p,
			&storage.Write{Type: typ, ID: p.id, Body: p.body, Index: p.index, CreateOnly: true})
		return err
	})
	o.committed(err)
	return res, err
}

// ConditionalUpdate updates the one resource matching condition, or creates
// body when none matches (with the id in the body, or a new one).
func (e *Engine) ConditionalUpdate(ctx context.Context, typ string, body []byte, condition, ifMatch string) (*Result, error) {
	o, err := e.begin(ctx, "update", audit.ActionUpdate)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	res, err := e.conditionalUpdate(ctx, o, typ, body, condition, ifMatch)
	return res, o.finish(ctx, err)
}

func (e *Engine) conditionalUpdate(ctx context.Context, o *op, typ string, body []byte, condition, ifMatch string) (*Result, error) {
	if err := e.CheckType(typ); err != nil {
		return nil, err
	}
	if err := o.writeGate(typ, auth.InteractionUpdate); err != nil {
		return nil, err
	}
	p, err := e.prepare(typ, body)
	if err != nil {
		return nil, err
	}
	q, err := e.condition(o, typ, condition)
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
		match, err := matchOne(ctx, tx, q)
		if err != nil {
			return err
		}
		w := &storage.Write{Type: typ, Body: p.body, Index: p.index, IfMatch: want}
		var old *fhir.Resource
		if match == nil {
			w.ID = p.id
			if w.ID == "" {
				w.ID = e.newID()
			}
			if cur, err := tx.Read(ctx, typ, w.ID); err == nil {
				old = cur // the body's id exists but does not match the condition
			}
		} else {
			w.ID, old = match.ID, match
			if p.id != "" && p.id != w.ID {
				return fhir.Invalid(fhir.IssueInvalid, typ+".id", "the id in the body is not the id of the resource the condition matches",
					fmt.Sprintf("body has %q, the match is %q", p.id, w.ID))
			}
		}
		np := &prepared{typ: typ, id: w.ID, body: p.body, index: p.index}
		res, err = e.txWrite(ctx, tx, o, auth.InteractionUpdate, old, np, w)
		return err
	})
	o.committed(err)
	return res, err
}

// ConditionalDelete deletes the one resource matching condition; none is
// not an error; several are ErrMultipleMatches.
func (e *Engine) ConditionalDelete(ctx context.Context, typ, condition string) (*Result, error) {
	o, err := e.begin(ctx, "delete", audit.ActionDelete)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	res, err := e.conditionalDelete(ctx, o, typ, condition)
	return res, o.finish(ctx, err)
}

func (e *Engine) conditionalDelete(ctx context.Context, o *op, typ, condition string) (*Result, error) {
	if err := e.CheckType(typ); err != nil {
		return nil, err
	}
	if err := o.writeGate(typ, auth.InteractionDelete); err != nil {
		return nil, err
	}
	q, err := e.condition(o, typ, condition)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	err = e.store.Transact(ctx, func(tx storage.Tx) error {
		match, err := matchOne(ctx, tx, q)
		if err != nil || match == nil {
			return err
		}
		res, err = e.txWrite(ctx, tx, o, auth.InteractionDelete, match, nil, &storage.Write{Type: typ, ID: match.ID, Delete: true})
		return err
	})
	o.committed(err)
	return res, err
}
