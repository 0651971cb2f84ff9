package fhirpath

import (
	"context"
	"fmt"
	"strings"
	"time"

	"regie/fhir"
)

// Env is the environment of one evaluation. The zero value (or nil) is
// usable: now() is the wall clock, resolve() uses DefaultResolver.
type Env struct {
	// Now fixes now(), today() and timeOfDay(); zero means the wall clock at
	// the start of the evaluation.
	Now time.Time
	// Resolver resolves references for resolve(); nil means DefaultResolver.
	Resolver Resolver
	// Vars are the external constants %name.
	Vars map[string]Collection
	// Resource is %resource; nil means the resource that contains the root.
	Resource *Node
	// RootResource is %rootResource; nil means the outermost resource of the root's tree.
	RootResource *Node
	// Trace receives trace(name) output; nil discards it.
	Trace func(name string, c Collection)
	// Strict makes navigation to an element the model does not define, a
	// type name at the start of a path that the context does not have, and
	// order-dependent functions right after children() or descendants()
	// errors instead of giving a result.
	Strict bool
	// Definitions types computed lookups (is/as of FHIR types) when the
	// root is nil or untyped; by default the root's definitions are used.
	Definitions *fhir.Definitions
}

// Resolver returns the resource a reference points to, or nil when it
// cannot be resolved. from is the Reference element (or the string node)
// that holds the reference.
type Resolver func(ctx context.Context, reference string, from *Node) (*Node, error)

type evalCtx struct {
	ctx      context.Context
	env      *Env
	defs     *fhir.Definitions
	root     Collection
	rootNode *Node // the first item of the input, when it is a node
	now      time.Time
	steps    int
	err      error // a sticky error from deep loops (context done)
}

type frame struct {
	this     Collection
	index    int
	total    Collection
	hasIndex bool
	hasTotal bool
}

// checkEvery is how many steps pass between checks of ctx.
const checkEvery = 1024

func (ec *evalCtx) step() error { return ec.work(1) }

// work accounts for n units of work and checks ctx every checkEvery units.
func (ec *evalCtx) work(n int) error {
	if ec.err != nil {
		return ec.err
	}
	before := ec.steps
	ec.steps += n
	if ec.steps/checkEvery != before/checkEvery {
		ec.err = ec.ctx.Err()
	}
	return ec.err
}

// Evaluate evaluates the expression with root as its context (%context and
// the initial focus). root may be nil for expressions that read no resource.
// The context bounds the evaluation's time: a done context stops it with
// ctx.Err().
func (e *Expression) Evaluate(ctx context.Context, root *Node, env *Env) (Collection, error) {
	if root == nil {
		return e.EvaluateCollection(ctx, nil, env)
	}
	return e.EvaluateCollection(ctx, Collection{root}, env)
}

// EvaluateCollection evaluates the expression with an arbitrary input
// collection as context.
func (e *Expression) EvaluateCollection(ctx context.Context, input Collection, env *Env) (Collection, error) {
	if env == nil {
		env = &Env{}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ec := &evalCtx{ctx: ctx, env: env, root: input, defs: env.Definitions, now: env.Now}
	if len(input) > 0 {
		ec.rootNode, _ = input[0].(*Node)
	}
	if ec.rootNode != nil && ec.defs == nil {
		ec.defs = ec.rootNode.defs
	}
	if ec.now.IsZero() {
		ec.now = time.Now()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res, err := e.root.eval(ec, input, &frame{this: input})
	if err == nil {
		err = ec.err
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

type expr interface {
	eval(ec *evalCtx, in Collection, fr *frame) (Collection, error)
}

func evalErr(f string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrEval, fmt.Sprintf(f, a...))
}

type literalExpr struct{ val Collection }

func (x *literalExpr) eval(*evalCtx, Collection, *frame) (Collection, error) { return x.val, nil }

type specialExpr struct{ name string }

func (x *specialExpr) eval(ec *evalCtx, in Collection, fr *frame) (Collection, error) {
	switch x.name {
	case "$this":
		return fr.this, nil
	case "$index":
		if !fr.hasIndex {
			return nil, evalErr("$index outside an iteration")
		}
		return Collection{Integer(fr.index)}, nil
	default:
		if !fr.hasTotal {
			return nil, evalErr("$total outside aggregate()")
		}
		return fr.total, nil
	}
}

type varExpr struct {
	name string
	pos  int
}

func (x *varExpr) eval(ec *evalCtx, in Collection, fr *frame) (Collection, error) {
	if v, ok := ec.env.Vars[x.name]; ok {
		return v, nil
	}
	switch x.name {
	case "context":
		return ec.root, nil
	case "resource":
		if ec.env.Resource != nil {
			return Collection{ec.env.Resource}, nil
		}
		if ec.rootNode != nil {
			if r := ec.rootNode.Resource(); r != nil {
				return Collection{r}, nil
			}
		}
		return nil, nil
	case "rootResource":
		if ec.env.RootResource != nil {
			return Collection{ec.env.RootResource}, nil
		}
		var top *Node
		for c := ec.rootNode; c != nil; c = c.parent {
			if c.isResource() {
				top = c
			}
		}
		if top != nil {
			return Collection{top}, nil
		}
		return nil, nil
	case "ucum":
		return Collection{String("http://unitsofmeasure.org")}, nil
	case "sct":
		return Collection{String("http://snomed.info/sct")}, nil
	case "loinc":
		return Collection{String("http://loinc.org")}, nil
	}
	if s, ok := strings.CutPrefix(x.name, "vs-"); ok {
		return Collection{String("http://hl7.org/fhir/ValueSet/" + s)}, nil
	}
	if s, ok := strings.CutPrefix(x.name, "ext-"); ok {
		return Collection{String("http://hl7.org/fhir/StructureDefinition/" + s)}, nil
	}
	return nil, evalErr("undefined variable %%%s", x.name)
}

// memberExpr navigates to the children called name; at the start of a path
// a type name selects the context itself ("Patient.name").
type memberExpr struct {
	left expr
	name string
}

func (x *memberExpr) eval(ec *evalCtx, in Collection, fr *frame) (Collection, error) {
	base := in
	if x.left != nil {
		var err error
		if base, err = x.left.eval(ec, in, fr); err != nil {
			return nil, err
		}
	}
	if err := ec.step(); err != nil {
		return nil, err
	}
	typeName := x.left == nil && x.name != "" && x.name[0] >= 'A' && x.name[0] <= 'Z'
	if typeName && !ec.env.Strict && allOfType(base, x.name) {
		return base, nil
	}
	// size the result first: paths are evaluated very often
	size := 0
	for _, v := range base {
		if n, ok := v.(*Node); ok {
			if typeName && (n.typ == x.name || (n.defs != nil && n.defs.IsA(n.typ, x.name))) {
				size++
				continue
			}
			for i := range n.fields {
				if f := &n.fields[i]; f.elem == x.name {
					size += len(f.nodes)
				}
			}
		}
	}
	if ec.env.Strict {
		if err := x.checkStrict(ec, base, typeName); err != nil {
			return nil, err
		}
	}
	if size == 0 && !hasSystemMembers(base) {
		return nil, nil
	}
	out := make(Collection, 0, max(size, 1))
	for _, v := range base {
		switch n := v.(type) {
		case *Node:
			if typeName && (n.typ == x.name || (n.defs != nil && n.defs.IsA(n.typ, x.name))) {
				out = append(out, n)
				continue
			}
			for i := range n.fields {
				f := &n.fields[i]
				if f.elem == x.name {
					for _, c := range f.nodes {
						out = append(out, c)
					}
				}
			}
		case Quantity:
			switch x.name {
			case "value":
				out = append(out, n.Value)
			case "unit":
				out = append(out, String(n.Unit))
			}
		case TypeInfo:
			switch x.name {
			case "namespace":
				out = append(out, String(n.NS))
			case "name":
				out = append(out, String(n.Name))
			}
		}
	}
	return out, nil
}

// checkStrict rejects names the model does not define for the items, and a
// type name at the start of a path that the context does not have.
func (x *memberExpr) checkStrict(ec *evalCtx, base Collection, typeName bool) error {
	// a member of "x as T" / x.ofType(T) must be an element of T, even when
	// there is no item to look at
	if ts, ok := castType(x.left); ok && ec.defs != nil {
		if td := ec.defs.Type(ts.name); td != nil && td.Kind != fhir.KindPrimitive && !modelHasElement(ec.defs, ts.name, x.name) {
			return evalErr("%s has no element %s", ts.name, x.name)
		}
	}
	for _, v := range base {
		n, ok := v.(*Node)
		if !ok || n.defs == nil {
			continue
		}
		if typeName && n.defs.Type(x.name) != nil {
			if n.typ != x.name && !n.defs.IsA(n.typ, x.name) {
				return evalErr("%s is not of type %s", n.typ, x.name)
			}
			continue
		}
		if n.kind == 'o' && n.ctx != "" && !modelHasElement(n.defs, n.ctx, x.name) {
			return evalErr("%s has no element %s", n.typ, x.name)
		}
	}
	return nil
}

// castType returns T when x is "y as T", y.as(T) or y.ofType(T).
func castType(x expr) (typeSpec, bool) {
	switch c := x.(type) {
	case *typeExpr:
		return c.t, c.op == "as"
	case *callExpr:
		return c.ts, c.name == "as" || c.name == "ofType"
	}
	return typeSpec{}, false
}

func modelHasElement(defs *fhir.Definitions, ctx, name string) bool {
	for i := 0; i < 8 && ctx != ""; i++ {
		for _, c := range defs.Children(ctx) {
			if c.Element.Name() == name {
				return true
			}
		}
		t := defs.Type(ctx)
		if t == nil {
			return false
		}
		ctx = t.Base
	}
	return false
}

// allOfType reports whether every item of c is a node of type name (the
// common start of a path: "Patient.name" on a Patient).
func allOfType(c Collection, name string) bool {
	for _, v := range c {
		if n, ok := v.(*Node); !ok || n.typ != name {
			return false
		}
	}
	return len(c) > 0
}

// hasSystemMembers reports whether c holds System values with members
// (TypeInfo.name, Quantity.value).
func hasSystemMembers(c Collection) bool {
	for _, v := range c {
		switch v.(type) {
		case TypeInfo, Quantity:
			return true
		}
	}
	return false
}

type indexerExpr struct {
	left, index expr
	pos         int
}

func (x *indexerExpr) eval(ec *evalCtx, in Collection, fr *frame) (Collection, error) {
	base, err := x.left.eval(ec, in, fr)
	if err != nil {
		return nil, err
	}
	idx, err := x.index.eval(ec, fr.this, fr)
	if err != nil {
		return nil, err
	}
	if len(idx) == 0 {
		return nil, nil
	}
	i, ok := toInteger(idx)
	if !ok {
		return nil, evalErr("index is not an integer")
	}
	if i < 0 || i >= int64(len(base)) {
		return nil, nil
	}
	return Collection{base[i]}, nil
}

type unaryExpr struct {
	neg bool
	x   expr
	pos int
}

func (x *unaryExpr) eval(ec *evalCtx, in Collection, fr *frame) (Collection, error) {
	c, err := x.x.eval(ec, in, fr)
	if err != nil || len(c) == 0 {
		return nil, err
	}
	if len(c) > 1 {
		return nil, evalErr("unary operator on a collection of %d items", len(c))
	}
	v := sys(c[0])
	switch n := v.(type) {
	case Integer:
		if x.neg {
			return Collection{-n}, nil
		}
		return Collection{n}, nil
	case Decimal:
		if x.neg {
			return Collection{n.Neg()}, nil
		}
		return Collection{n}, nil
	case Quantity:
		if x.neg {
			n.Value = n.Value.Neg()
		}
		return Collection{n}, nil
	}
	return nil, evalErr("unary operator on %s", typeLabel(v))
}

func typeLabel(v Value) string {
	if v == nil {
		return "nothing"
	}
	return v.Namespace() + "." + v.TypeName()
}

// sys converts FHIR primitive nodes to System values; other values are
// returned as they are.
func sys(v Value) Value {
	if n, ok := v.(*Node); ok && n.kind != 'o' {
		if s, ok := n.System(); ok {
			return s
		}
	}
	return v
}

// isNull reports whether v is a primitive node without a value (only an
// id or extensions); operators and functions on single values treat it as
// empty.
func isNull(v Value) bool {
	n, ok := v.(*Node)
	return ok && n.kind == 0
}

// values drops primitives without value from c (without copying when there are none).
func values(c Collection) Collection {
	for i, v := range c {
		if isNull(v) {
			out := append(Collection(nil), c[:i]...)
			for _, w := range c[i+1:] {
				if !isNull(w) {
					out = append(out, w)
				}
			}
			return out
		}
	}
	return c
}

// toInteger reads a singleton Integer.
func toInteger(c Collection) (int64, bool) {
	c = values(c)
	if len(c) != 1 {
		return 0, false
	}
	if i, ok := sys(c[0]).(Integer); ok {
		return int64(i), true
	}
	return 0, false
}

// toBool applies singleton evaluation for boolean contexts: empty gives
// (false, false); one Boolean gives its value; any other single item counts
// as true; several items are an error.
func toBool(c Collection) (val, ok bool, err error) {
	c = values(c)
	switch len(c) {
	case 0:
		return false, false, nil
	case 1:
		if b, isB := sys(c[0]).(Boolean); isB {
			return bool(b), true, nil
		}
		return true, true, nil
	}
	return false, false, evalErr("expected a single boolean, found %d items", len(c))
}

// singleString reads a singleton string argument.
func singleString(c Collection) (string, bool, error) {
	c = values(c)
	switch len(c) {
	case 0:
		return "", false, nil
	case 1:
		if s, ok := sys(c[0]).(String); ok {
			return string(s), true, nil
		}
		return "", false, evalErr("expected a string, found %s", typeLabel(c[0]))
	}
	return "", false, evalErr("expected a single string, found %d items", len(c))
}

type typeSpec struct{ ns, name string }

func (t typeSpec) String() string {
	if t.ns != "" {
		return t.ns + "." + t.name
	}
	return t.name
}

type typeExpr struct {
	op  string
	x   expr
	t   typeSpec
	pos int
}

func (x *typeExpr) eval(ec *evalCtx, in Collection, fr *frame) (Collection, error) {
	c, err := x.x.eval(ec, in, fr)
	if err != nil {
		return nil, err
	}
	if x.op == "is" {
		return isOp(ec, c, x.t)
	}
	// The operator form filters each item, so that search expressions such as
	// "(Observation.component.value as Quantity)" work on several items.
	return ofType(ec, c, x.t, false)
}

func isOp(ec *evalCtx, c Collection, t typeSpec) (Collection, error) {
	if len(c) == 0 {
		return nil, nil
	}
	if len(c) > 1 {
		return nil, evalErr("'is' on a collection of %d items", len(c))
	}
	ok, err := ec.isType(c[0], t, false)
	if err != nil {
		return nil, err
	}
	return Collection{Boolean(ok)}, nil
}

func ofType(ec *evalCtx, c Collection, t typeSpec, _ bool) (Collection, error) {
	var out Collection
	for _, v := range c {
		ok, err := ec.isType(v, t, true)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, v)
		}
	}
	return out, nil
}

// isType reports whether v is of type t. With exact set, a FHIR primitive
// must have exactly that type (as(), ofType()); complex and resource types
// always match their subtypes.
func (ec *evalCtx) isType(v Value, t typeSpec, exact bool) (bool, error) {
	ns, name := t.ns, t.name
	defs := ec.defs
	if ns == "" {
		_, isNode := v.(*Node)
		switch {
		case !isNode && systemTypes[name]:
			ns = "System"
		case defs != nil && defs.Type(name) != nil:
			ns = "FHIR"
		case systemTypes[name]:
			ns = "System"
		case defs == nil:
			if n, ok := v.(*Node); ok && n.typ == name {
				return true, nil
			}
			return false, evalErr("unknown type %s", t)
		default:
			return false, evalErr("unknown type %s", t)
		}
	}
	switch ns {
	case "System":
		if !systemTypes[name] {
			return false, nil
		}
		if _, isNode := v.(*Node); isNode {
			return false, nil
		}
		return name == "Any" || v.TypeName() == name, nil
	case "FHIR":
		n, isNode := v.(*Node)
		if !isNode {
			return false, nil
		}
		if defs == nil {
			defs = n.defs
		}
		if defs == nil {
			return n.typ == name, nil
		}
		if defs.Type(name) == nil {
			return false, evalErr("unknown type %s", t)
		}
		if n.typ == name {
			return true, nil
		}
		if exact {
			if td := defs.Type(name); td != nil && td.Kind == fhir.KindPrimitive {
				return false, nil
			}
		}
		return defs.IsA(n.typ, name), nil
	}
	return false, evalErr("unknown type namespace %s", ns)
}

// typeOf returns the TypeInfo of a value.
func typeOf(v Value) TypeInfo {
	return TypeInfo{NS: v.Namespace(), Name: v.TypeName()}
}
