package engine

import (
	"context"
	"errors"
	"fmt"
	"io"

	"regie/auth/audit"
	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// Reindexer is implemented by stores that can recompute the search index
// of every current resource.
type Reindexer interface {
	Reindex(ctx context.Context, fn func(*fhir.Resource) ([]search.Entry, error)) (int, error)
}

// Reindex recomputes the search index of every current resource with the
// engine's indexer (after the search parameter definitions changed). It
// is an operation of its own in the audit trail.
func (e *Engine) Reindex(ctx context.Context) (int, error) {
	o, err := e.begin(ctx, "operation", audit.ActionExecute)
	if err != nil {
		return 0, o.finish(ctx, err)
	}
	o.ev.Operation = "reindex"
	o.ev.Query = "$reindex"
	n, err := e.reindex(ctx, o)
	return n, o.finish(ctx, err)
}

func (e *Engine) reindex(ctx context.Context, o *op) (int, error) {
	if o.acc != nil && !o.acc.Unrestricted() {
		return 0, fmt.Errorf("engine: reindex: %w", errNotAdmin)
	}
	rx, ok := e.store.(Reindexer)
	if !ok {
		return 0, fmt.Errorf("engine: reindex: %w", storage.ErrUnsupported)
	}
	if e.idx == nil {
		return 0, errors.New("engine: reindex: no indexer")
	}
	n, err := rx.Reindex(ctx, func(r *fhir.Resource) ([]search.Entry, error) {
		return e.idx.Index(r.Type, r.Body)
	})
	if err == nil {
		e.changed("Patient") // relationships may read the index
	}
	return n, err
}

var errNotAdmin = errors.New("only an unrestricted system principal may do this")

// Export writes every current resource the principal may read as NDJSON,
// type by type, through the same searches (and so the same access policy
// and audit trail) as the API. types narrows it (nil: every type).
func (e *Engine) Export(ctx context.Context, w io.Writer, types []string) (int, error) {
	if len(types) == 0 {
		types = e.defs.ResourceTypes()
	}
	n := 0
	for _, t := range types {
		params := []search.Param{{Name: "_count", Value: fmt.Sprint(storage.MaxCount)}, {Name: "_total", Value: "none"}}
		for {
			res, err := e.Search(ctx, &SearchRequest{Types: []string{t}, Params: params})
			if err != nil {
				return n, fmt.Errorf("export %s: %w", t, err)
			}
			for _, r := range res.Page.Resources {
				if _, err := w.Write(append(append([]byte(nil), r.Body...), '\n')); err != nil {
					return n, err
				}
				n++
			}
			if res.Page.Next == "" {
				break
			}
			params = []search.Param{{Name: "_count", Value: fmt.Sprint(storage.MaxCount)}, {Name: "_total", Value: "none"}, {Name: "_cursor", Value: res.Page.Next}}
		}
	}
	return n, nil
}

// ChainWalker is implemented by stores that keep the audit trail's hash
// chain (storage.Write.Chain) and can walk it in order.
type ChainWalker interface {
	WalkChain(ctx context.Context, fn func(id string, body []byte) error) error
}

// VerifyAudit walks the audit trail's hash chain and checks every link. It
// returns how many AuditEvents verified, and for a broken chain an error
// wrapping *audit.BrokenLinkError that names the first broken link.
func (e *Engine) VerifyAudit(ctx context.Context) (int, error) {
	cw, ok := e.store.(ChainWalker)
	if !ok {
		return 0, fmt.Errorf("engine: audit verify: %w", storage.ErrUnsupported)
	}
	var v audit.Verifier
	err := cw.WalkChain(ctx, func(id string, body []byte) error {
		return v.Next(id, body)
	})
	return v.Count(), err
}
