package search

import (
	"context"
	"strings"

	"regie/fhir"
	"regie/fhir/fhirpath"
)

// exprForType keeps the parts of a (possibly multi-base) search expression
// that apply to resource type rt, joined again with " | ". A part applies
// when it starts with rt or a base type of rt (Resource, DomainResource),
// or with no type at all. It returns "" when no part applies.
func exprForType(defs *fhir.Definitions, rt, expr string) string {
	parts := splitUnion(expr)
	kept := parts[:0:0]
	for _, p := range parts {
		root := rootName(p)
		if root != "" && root[0] >= 'A' && root[0] <= 'Z' && defs.Type(root) != nil && defs.Type(root).Kind == fhir.KindResource && !defs.IsA(rt, root) {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, " | ")
}

// fhirTypeNames rewrites type names in as(), ofType() and the as/is
// operators that are not FHIR types but whose lower-case-initial form is a
// FHIR primitive type: R4's Observation code-value-date reads
// "value.as(DateTime)", which names System.DateTime and so never matches
// an element; the FHIR dateTime is meant.
func fhirTypeNames(defs *fhir.Definitions, src string) string {
	var b strings.Builder
	for i := 0; i < len(src); {
		if c := src[i]; c == '\'' || c == '`' || c == '"' {
			k := i + 1
			for k < len(src) && src[k] != c {
				if src[k] == '\\' {
					k++
				}
				k++
			}
			k = min(k+1, len(src))
			b.WriteString(src[i:k])
			i = k
			continue
		}
		j := -1
		for _, kw := range []string{"as(", "ofType(", " as ", " is "} {
			if strings.HasPrefix(src[i:], kw) && (kw[0] == ' ' || i == 0 || !isIdentChar(src[i-1], false)) {
				j = i + len(kw)
				break
			}
		}
		if j < 0 {
			b.WriteByte(src[i])
			i++
			continue
		}
		k := j
		for k < len(src) && isIdentChar(src[k], k == j) {
			k++
		}
		name := src[j:k]
		if name != "" && defs.Type(name) == nil {
			if low := strings.ToLower(name[:1]) + name[1:]; defs.Type(low) != nil && defs.Type(low).Kind == fhir.KindPrimitive {
				name = low
			}
		}
		b.WriteString(src[i:j])
		b.WriteString(name)
		i = k
	}
	return b.String()
}

// splitUnion splits a FHIRPath expression at its top-level '|' operators.
func splitUnion(expr string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; c {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
		case '\'', '`', '"':
			for i++; i < len(expr) && expr[i] != c; i++ {
				if expr[i] == '\\' {
					i++
				}
			}
		case '|':
			if depth == 0 {
				parts = append(parts, strings.TrimSpace(expr[start:i]))
				start = i + 1
			}
		}
	}
	return append(parts, strings.TrimSpace(expr[start:]))
}

// rootName returns the first identifier of a path expression, after any
// opening parentheses.
func rootName(p string) string {
	p = strings.TrimLeft(p, "( \t\n")
	i := 0
	for i < len(p) && isIdentChar(p[i], i == 0) {
		i++
	}
	return p[:i]
}

func isIdentChar(c byte, first bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || !first && c >= '0' && c <= '9'
}

// compileEvaluator compiles src with the FHIRPath engine, or, for the
// simple shape most search expressions have (a dotted path from the
// resource, optionally ending in "as T", ".as(T)" or ".ofType(T)" with T a
// FHIR type), into direct navigation of the parsed tree. Both give the
// same items; the direct form saves the engine's general machinery.
func compileEvaluator(defs *fhir.Definitions, src string, engineOnly bool) (evaluator, error) {
	var union []evaluator
	allSimple := !engineOnly
	for _, p := range splitUnion(src) {
		if !allSimple {
			break
		}
		sp, ok := simplePath(defs, p)
		if !ok {
			allSimple = false
			break
		}
		union = append(union, sp)
	}
	if allSimple && len(union) > 0 {
		if len(union) == 1 {
			return union[0], nil
		}
		return unionEval(union), nil
	}
	e, err := fhirpath.Compile(src)
	if err != nil {
		return nil, err
	}
	return engineEval{e}, nil
}

// engineEval evaluates with the FHIRPath engine.
type engineEval struct{ e *fhirpath.Expression }

func (e engineEval) eval(ctx context.Context, focus *fhirpath.Node, env *fhirpath.Env, out itemSink) error {
	items, err := e.e.Evaluate(ctx, focus, env)
	if err != nil {
		return err
	}
	for _, it := range items {
		out.item(it)
	}
	return nil
}

// unionEval concatenates its parts' items (the parts of one search
// expression select different elements, so there is nothing to merge).
type unionEval []evaluator

func (u unionEval) eval(ctx context.Context, focus *fhirpath.Node, env *fhirpath.Env, out itemSink) error {
	for _, e := range u {
		if err := e.eval(ctx, focus, env, out); err != nil {
			return err
		}
	}
	return nil
}

// pathEval walks element names from the focus, optionally filtering the
// result by type.
type pathEval struct {
	defs *fhir.Definitions
	// root is the leading type name ("Observation", "Resource"), checked
	// against the focus; "" when the path starts with an element.
	root  string
	steps []string
	// as filters the result to a FHIR type: exactly for primitive types,
	// including subtypes for complex types.
	as          string
	asPrimitive bool
}

func (p *pathEval) eval(_ context.Context, focus *fhirpath.Node, _ *fhirpath.Env, out itemSink) error {
	if p.root != "" && !p.defs.IsA(focus.TypeName(), p.root) {
		return nil
	}
	p.walk(focus, 0, out)
	return nil
}

func (p *pathEval) walk(n *fhirpath.Node, step int, out itemSink) {
	if step == len(p.steps) {
		if p.as != "" {
			t := n.TypeName()
			if p.asPrimitive && t != p.as || !p.asPrimitive && !p.defs.IsA(t, p.as) {
				return
			}
		}
		out.item(n)
		return
	}
	for _, c := range n.Children(p.steps[step]) {
		p.walk(c, step+1, out)
	}
}

// simplePath recognises Type.a.b, (Type.a.b as T), Type.a.as(T) and
// Type.a.ofType(T) (and the same without the leading type).
func simplePath(defs *fhir.Definitions, p string) (*pathEval, bool) {
	p = strings.TrimSpace(p)
	if strings.HasPrefix(p, "(") && strings.HasSuffix(p, ")") {
		inner := p[1 : len(p)-1]
		if strings.ContainsAny(inner, "()") {
			return nil, false
		}
		p = strings.TrimSpace(inner)
	}
	pe := &pathEval{defs: defs}
	if path, typ, found := strings.Cut(p, " as "); found {
		pe.as, p = strings.TrimSpace(typ), strings.TrimSpace(path)
	} else if i := strings.LastIndex(p, ".as("); i >= 0 && strings.HasSuffix(p, ")") {
		pe.as, p = p[i+4:len(p)-1], p[:i]
	} else if i := strings.LastIndex(p, ".ofType("); i >= 0 && strings.HasSuffix(p, ")") {
		pe.as, p = p[i+8:len(p)-1], p[:i]
	}
	if pe.as != "" {
		t := defs.Type(pe.as)
		if t == nil || !identifier(pe.as) {
			return nil, false
		}
		pe.asPrimitive = t.Kind == fhir.KindPrimitive
	}
	steps := strings.Split(p, ".")
	for _, s := range steps {
		if !identifier(s) || reserved[s] {
			return nil, false
		}
	}
	if t := defs.Type(steps[0]); t != nil && t.Kind == fhir.KindResource {
		pe.root = steps[0]
		steps = steps[1:]
	} else if steps[0][0] >= 'A' && steps[0][0] <= 'Z' {
		return nil, false
	}
	if len(steps) == 0 {
		return nil, false
	}
	pe.steps = steps
	return pe, true
}

// reserved are FHIRPath keywords and names that are not plain element
// steps.
var reserved = map[string]bool{
	"as": true, "is": true, "and": true, "or": true, "xor": true, "implies": true,
	"div": true, "mod": true, "in": true, "contains": true, "true": true, "false": true,
	"$this": true, "$index": true, "$total": true,
}

func identifier(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isIdentChar(s[i], i == 0) {
			return false
		}
	}
	return true
}
