package fhirpath

import (
	"context"
	"strings"
)

// DefaultResolver resolves references without I/O:
//   - "#id" to the contained resource with that id in the enclosing resource;
//   - inside a Bundle, a reference equal to an entry's fullUrl, or a
//     relative "Type/id" matching an entry's resource, to that entry's resource;
//   - otherwise "Type/id", "Type/id/_history/v" and absolute URLs ending in
//     Type/id to a stand-in node of resource type Type with only its id, so
//     that "subject.where(resolve() is Patient)" works.
//
// It returns nil for references it cannot place (urn:uuid outside a
// Bundle, unknown resource types).
func DefaultResolver(_ context.Context, ref string, from *Node) (*Node, error) {
	if ref == "" {
		return nil, nil
	}
	if id, ok := strings.CutPrefix(ref, "#"); ok {
		return resolveContained(from, id), nil
	}
	if n := resolveInBundle(from, ref); n != nil {
		return n, nil
	}
	typ, id, ok := splitReference(ref)
	if !ok {
		return nil, nil
	}
	if from != nil && from.defs != nil && !from.defs.IsResourceType(typ) {
		return nil, nil
	}
	var defs = (*Node)(nil)
	if from != nil {
		defs = from
	}
	if defs == nil {
		return newStub(nil, typ, id), nil
	}
	return newStub(defs.defs, typ, id), nil
}

// splitReference extracts Type and id from "Type/id", "Type/id/_history/v"
// or an absolute URL ending in one of those.
func splitReference(ref string) (typ, id string, ok bool) {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.IndexAny(ref, "?#"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(ref, "/")
	if len(parts) < 2 {
		return "", "", false
	}
	typ, id = parts[len(parts)-2], parts[len(parts)-1]
	if typ == "" || id == "" || typ[0] < 'A' || typ[0] > 'Z' {
		return "", "", false
	}
	return typ, id, true
}

func resolveContained(from *Node, id string) *Node {
	// The containing resource is the nearest resource that is not itself contained.
	for r := from; r != nil; r = r.parent {
		if !r.isResource() {
			continue
		}
		if id == "" {
			// "#" refers to the container itself
			if r.elem != "contained" {
				return r
			}
			continue
		}
		for _, c := range r.Children("contained") {
			if c.ChildText("id") == id {
				return c
			}
		}
	}
	return nil
}

func resolveInBundle(from *Node, ref string) *Node {
	for b := from; b != nil; b = b.parent {
		if b.typ != "Bundle" || !b.isResource() {
			continue
		}
		rtyp, rid, rel := splitReference(ref)
		for _, e := range b.Children("entry") {
			res := e.Child("resource")
			if res == nil {
				continue
			}
			if full := e.ChildText("fullUrl"); full != "" && full == ref {
				return res
			}
			if rel && res.typ == rtyp && res.ChildText("id") == rid {
				full := e.ChildText("fullUrl")
				if full == "" || !strings.Contains(ref, "://") || strings.HasSuffix(full, rtyp+"/"+rid) {
					return res
				}
			}
		}
	}
	return nil
}

func fnResolve(ec *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	res := ec.env.Resolver
	if res == nil {
		res = DefaultResolver
	}
	var out Collection
	for _, v := range focus {
		var ref string
		var from *Node
		switch x := v.(type) {
		case *Node:
			from = x
			if x.kind == 'o' {
				ref = x.ChildText("reference")
			} else {
				ref, _ = x.Text()
			}
		case String:
			ref = string(x)
		}
		if ref == "" {
			continue
		}
		n, err := res(ec.ctx, ref, from)
		if err != nil {
			return nil, err
		}
		if n != nil {
			out = append(out, n)
		}
	}
	return out, nil
}
