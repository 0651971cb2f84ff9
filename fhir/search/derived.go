package search

import (
	"slices"
	"strings"

	"regie/fhir"
)

// Derived search parameters.
//
// Some R4 parameters are, by their expressions, the union of others of the
// same resource type: Observation's combo-code is
// "Observation.code | Observation.component.code", the union of code and
// component-code; combo-code-value-quantity is the composite over
// "Observation | Observation.component" of what code-value-quantity and
// component-code-value-quantity are over each part. A resource has an
// entry for such a parameter exactly when it has the same entry for one of
// its constituents, so storing its entries repeats index rows (a third of
// an Observation's) for nothing: the indexer leaves derived parameters out
// and the parser answers a condition on one from its constituents.
//
// Every search semantics survives the rewrite because each tests entries
// one by one: "some entry of P matches" is "some entry of Q1 matches or
// some entry of Q2 matches" (values, prefixes, :exact, :text, :of-type…);
// :not is already Not{…} around it; :missing=true is "no entry for any
// constituent". Only sorting by a derived parameter (its smallest or
// largest value over all constituents) is not rewritten; the parser
// reports it as unsupported.

// derivedParams returns, by parameter code, the constituents of every
// derived parameter: one whose expression's top-level union parts (for a
// composite: its base expression's, with equal components) are exactly
// those of two or more other parameters of the type, of the same type,
// that share no part and are not derived themselves. Reference parameters
// are never derived (their target types shape how values are read). A code
// counts only when it is derived, from the same constituents, on every
// type that has it.
func derivedParams(defs *fhir.Definitions) map[string][]string {
	type candidate struct {
		sp    *fhir.SearchParam
		parts []string
	}
	found := map[string][]string{}
	conflict := map[string]bool{}
	for _, rt := range defs.ResourceTypes() {
		var cands []candidate
		for _, sp := range defs.SearchParams(rt) {
			if columnParam(sp.Code) || sp.Expression == "" || sp.Type == fhir.ParamSpecial || sp.Type == fhir.ParamReference {
				continue
			}
			src := exprForType(defs, rt, sp.Expression)
			if src == "" {
				continue
			}
			parts := splitUnion(src)
			slices.Sort(parts)
			cands = append(cands, candidate{sp, slices.Compact(parts)})
		}
		derivedHere := map[string][]string{}
		for _, p := range cands {
			if len(p.parts) < 2 {
				continue
			}
			var from []string
			covered := map[string]bool{}
			ok := true
			for _, q := range cands {
				if q.sp == p.sp || q.sp.Type != p.sp.Type || len(q.parts) >= len(p.parts) || !subset(q.parts, p.parts) || !sameComponents(defs, p.sp, q.sp) {
					continue
				}
				for _, part := range q.parts {
					if covered[part] {
						ok = false // constituents overlap: not a partition
					}
					covered[part] = true
				}
				from = append(from, q.sp.Code)
			}
			if ok && len(from) >= 2 && len(covered) == len(p.parts) {
				slices.Sort(from)
				derivedHere[p.sp.Code] = from
			}
		}
		for code, from := range derivedHere {
			for _, c := range from {
				if derivedHere[c] != nil {
					from = nil // built on a derived parameter: keep it stored
				}
			}
			if prev, seen := found[code]; from == nil || seen && !slices.Equal(prev, from) {
				conflict[code] = true
			}
			found[code] = from
		}
		// A code that some type has but does not derive is stored there,
		// so it is stored everywhere.
		for _, p := range cands {
			if derivedHere[p.sp.Code] == nil {
				conflict[p.sp.Code] = true
			}
		}
	}
	for code := range conflict {
		delete(found, code)
	}
	return found
}

// subset reports whether every element of a (sorted) is in b (sorted).
func subset(a, b []string) bool {
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			return false
		}
	}
	return true
}

// sameComponents reports whether two parameters have the same components:
// none for both, or composites whose components have equal expressions and
// parameter types, in order.
func sameComponents(defs *fhir.Definitions, a, b *fhir.SearchParam) bool {
	if len(a.Component) != len(b.Component) {
		return false
	}
	for i := range a.Component {
		ca, cb := a.Component[i], b.Component[i]
		if strings.TrimSpace(ca.Expression) != strings.TrimSpace(cb.Expression) {
			return false
		}
		da, db := defs.SearchParamByURL(ca.Definition), defs.SearchParamByURL(cb.Definition)
		if da == nil || db == nil || da.Type != db.Type {
			return false
		}
	}
	return true
}

// expandDerived rewrites conditions on derived parameters (see
// derivedParams) into conditions on their constituents, through And, Or,
// Not, chains and _has. It returns nil when e has none.
func expandDerived(e Expr, derived map[string][]string) Expr {
	switch x := e.(type) {
	case And:
		return expandAll(x, derived, func(es []Expr) Expr { return And(es) })
	case Or:
		return expandAll(x, derived, func(es []Expr) Expr { return Or(es) })
	case Not:
		if y := expandDerived(x.X, derived); y != nil {
			return Not{X: y}
		}
	case *Chain:
		if y := expandDerived(x.Where, derived); y != nil {
			c := *x
			c.Where = y
			return &c
		}
	case *Has:
		if y := expandDerived(x.Where, derived); y != nil {
			h := *x
			h.Where = y
			return &h
		}
	case *Match:
		from := derived[x.Param]
		if from == nil {
			return nil
		}
		if x.Modifier == "missing" {
			// per value: missing=true is missing from every constituent,
			// missing=false present in one
			var or Or
			for _, v := range x.Values {
				var arms []Expr
				for _, c := range from {
					arms = append(arms, renamed(x, c, []Value{v}))
				}
				if v.Missing {
					or = append(or, And(arms))
				} else {
					or = append(or, Or(arms))
				}
			}
			if len(or) == 1 {
				return or[0]
			}
			return or
		}
		or := make(Or, len(from))
		for i, c := range from {
			or[i] = renamed(x, c, x.Values)
		}
		return or
	}
	return nil
}

// expandAll expands the operands of an And or Or (made by mk); nil when
// none changes.
func expandAll(xs []Expr, derived map[string][]string, mk func([]Expr) Expr) Expr {
	var out []Expr
	for i, y := range xs {
		z := expandDerived(y, derived)
		if z != nil && out == nil {
			out = slices.Clone(xs)
		}
		if z != nil {
			out[i] = z
		}
	}
	if out == nil {
		return nil
	}
	return mk(out)
}

// renamed is m for parameter code, with values vs (the components of a
// composite value renamed to code's components).
func renamed(m *Match, code string, vs []Value) *Match {
	out := *m
	out.Param = code
	out.Values = make([]Value, len(vs))
	for i, v := range vs {
		if len(v.Components) > 0 {
			comps := make([]*Match, len(v.Components))
			for j, c := range v.Components {
				cc := *c
				_, n, _ := strings.Cut(c.Param, "#")
				cc.Param = code + "#" + n
				comps[j] = &cc
			}
			v.Components = comps
		}
		out.Values[i] = v
	}
	return &out
}
