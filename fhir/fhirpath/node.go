package fhirpath

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"regie/fhir"
)

// Node is an element of a resource: an object (resource, complex type,
// backbone element) or a primitive, typed by the FHIR model. A primitive
// carries its JSON value and, merged from the "_name" sibling, its id and
// extensions. Arrays do not appear as nodes: each array member is a node of
// its own. Nodes are immutable once built and safe for concurrent use.
type Node struct {
	defs   *fhir.Definitions
	parent *Node
	name   string // JSON member name, with the type suffix of a choice ("valueQuantity")
	elem   string // element name ("value")
	typ    string // FHIR type name
	ctx    string // Definitions context of the children
	raw    []byte // the value's JSON bytes; nil for a primitive without value
	text   string // primitive value: decoded string, number or boolean literal text
	kind   byte   // 'o' object, 's' string, 'n' number, 'b' boolean, 0 no value
	index  int    // position in the parent's array, -1 when not in an array
	fields []field
}

type field struct {
	name, elem string
	nodes      []*Node
}

// maxJSONDepth bounds the nesting of resource JSON.
const maxJSONDepth = 200

// ParseResource reads a resource's JSON once into a typed tree that any
// number of expressions can be evaluated against, concurrently. Types come
// from defs; members the model does not know are kept untyped. Decimal
// numbers keep their text.
func ParseResource(defs *fhir.Definitions, body []byte) (*Node, error) {
	rt := peekResourceType(body, 0)
	if rt == "" {
		var err error
		if rt, _, err = fhir.Header(body); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInput, err)
		}
	}
	if rt == "" {
		return nil, fmt.Errorf("%w: no resourceType", ErrInput)
	}
	p := &jparser{b: body, s: string(body), defs: defs}
	p.ws()
	n := &Node{defs: defs, typ: rt, ctx: rt, elem: rt, index: -1}
	if err := p.object(n); err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, p.errf("trailing data")
	}
	return n, nil
}

// ParseJSON builds a tree from any JSON value, typed as typ (a FHIR type
// name, or "" for untyped data). It is for data that is not a resource, such
// as a single data type.
func ParseJSON(defs *fhir.Definitions, typ string, body []byte) (*Node, error) {
	p := &jparser{b: body, s: string(body), defs: defs}
	p.ws()
	n, err := p.value(nil, "", typ, typ, typ, -1)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, fmt.Errorf("%w: null", ErrInput)
	}
	return n, nil
}

type jparser struct {
	b     []byte
	s     string // b as a string, for substrings without allocation
	i     int
	depth int
	defs  *fhir.Definitions
	slab  []Node  // nodes are allocated in blocks
	ptrs  []*Node // node slices too
	fstk  []field // fields of the objects being parsed
	nstk  []*Node // members of the arrays being parsed
}

// nodeSlice copies nodes into a block-allocated slice of exact length.
func (p *jparser) nodeSlice(nodes []*Node) []*Node {
	if len(nodes) > len(p.ptrs) {
		p.ptrs = make([]*Node, max(64, len(nodes)))
	}
	out := p.ptrs[:len(nodes):len(nodes)]
	copy(out, nodes)
	p.ptrs = p.ptrs[len(nodes):]
	return out
}

// newNode takes a node from the parser's slab, to allocate nodes in blocks.
func (p *jparser) newNode() *Node {
	if len(p.slab) == 0 {
		p.slab = make([]Node, 32)
	}
	n := &p.slab[0]
	p.slab = p.slab[1:]
	return n
}

// peekResourceType returns the resourceType of the object at b[i:] when it
// is the object's first member (as FHIR JSON writes it), else "".
func peekResourceType(b []byte, i int) string {
	skip := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
			i++
		}
	}
	skip()
	if i >= len(b) || b[i] != '{' {
		return ""
	}
	i++
	skip()
	const key = `"resourceType"`
	if !bytes.HasPrefix(b[i:], []byte(key)) {
		return ""
	}
	i += len(key)
	skip()
	if i >= len(b) || b[i] != ':' {
		return ""
	}
	i++
	skip()
	if i >= len(b) || b[i] != '"' {
		return ""
	}
	end := bytes.IndexByte(b[i+1:], '"')
	if end < 0 || bytes.IndexByte(b[i+1:i+1+end], '\\') >= 0 {
		return ""
	}
	return string(b[i+1 : i+1+end])
}

func (p *jparser) errf(msg string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrInput, msg, p.i)
}

func (p *jparser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// childDef looks jsonName up under ctx, following the base types of ctx
// (SimpleQuantity has the elements of Quantity).
func childDef(defs *fhir.Definitions, ctx, jsonName string) (fhir.Child, bool) {
	if defs == nil {
		return fhir.Child{}, false
	}
	for i := 0; i < 8 && ctx != ""; i++ {
		if c, ok := defs.Child(ctx, jsonName); ok {
			return c, true
		}
		t := defs.Type(ctx)
		if t == nil {
			return fhir.Child{}, false
		}
		ctx = t.Base
	}
	return fhir.Child{}, false
}

func (p *jparser) isResourceType(typ string) bool {
	if p.defs == nil {
		return typ == "Resource" || typ == "DomainResource"
	}
	t := p.defs.Type(typ)
	return t != nil && t.Kind == fhir.KindResource
}

// value parses one JSON value into a node (nil for null).
func (p *jparser) value(parent *Node, name, elem, typ, ctx string, index int) (*Node, error) {
	if p.i >= len(p.b) {
		return nil, p.errf("unexpected end")
	}
	n := p.newNode()
	*n = Node{defs: p.defs, parent: parent, name: name, elem: elem, typ: typ, ctx: ctx, index: index}
	start := p.i
	switch c := p.b[p.i]; {
	case c == '{':
		if rt := peekResourceType(p.b, p.i); rt != "" && p.isResourceType(typ) {
			n.typ, n.ctx = rt, rt
		} else if p.isResourceType(typ) {
			end, err := p.skip()
			if err != nil {
				return nil, err
			}
			rt, _, err := fhir.Header(p.b[start:end])
			if err == nil && rt != "" {
				n.typ, n.ctx = rt, rt
			}
			p.i = start
		}
		if err := p.object(n); err != nil {
			return nil, err
		}
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		n.kind, n.text = 's', s
	case c == 't' || c == 'f' || c == 'n':
		var lit string
		switch {
		case bytes.HasPrefix(p.b[p.i:], []byte("true")):
			lit = "true"
		case bytes.HasPrefix(p.b[p.i:], []byte("false")):
			lit = "false"
		case bytes.HasPrefix(p.b[p.i:], []byte("null")):
			p.i += 4
			return nil, nil
		default:
			return nil, p.errf("invalid literal")
		}
		p.i += len(lit)
		n.kind, n.text = 'b', lit
	case c == '-' || (c >= '0' && c <= '9'):
		j := p.i
		for j < len(p.b) {
			d := p.b[j]
			if (d >= '0' && d <= '9') || d == '-' || d == '+' || d == '.' || d == 'e' || d == 'E' {
				j++
				continue
			}
			break
		}
		n.kind, n.text = 'n', p.s[p.i:j]
		if _, err := strconv.ParseFloat(n.text, 64); err != nil {
			if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
				return nil, p.errf("invalid number")
			}
		}
		p.i = j
	default:
		return nil, p.errf("unexpected character")
	}
	n.raw = p.b[start:p.i]
	if n.typ == "" && n.kind != 'o' {
		n.typ = map[byte]string{'s': "string", 'n': "decimal", 'b': "boolean"}[n.kind]
		if n.kind == 'n' && isIntText(n.text) {
			n.typ = "integer"
		}
	}
	return n, nil
}

func isIntText(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && !(i == 0 && s[i] == '-') {
			return false
		}
	}
	return true
}

// skip returns the offset after the value at p.i without building it.
func (p *jparser) skip() (int, error) {
	save := p.i
	depth := 0
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '"':
			if _, err := p.str(); err != nil {
				return 0, err
			}
			if depth == 0 {
				end := p.i
				p.i = save
				return end, nil
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				end := p.i + 1
				p.i = save
				return end, nil
			}
		}
		p.i++
	}
	return 0, p.errf("unexpected end")
}

// key reads a member name; names the model knows under ctx are taken from
// the definitions instead of being allocated.
func (p *jparser) key(ctx string) (string, error) {
	if p.i < len(p.b) && p.b[p.i] == '"' {
		if end := bytes.IndexByte(p.b[p.i+1:], '"'); end >= 0 {
			raw := p.b[p.i+1 : p.i+1+end]
			if bytes.IndexByte(raw, '\\') < 0 {
				if c, ok := childDef(p.defs, ctx, string(raw)); ok {
					if name := c.Element.Name(); name == string(raw) {
						p.i += end + 2
						return name, nil
					}
				}
			}
		}
	}
	return p.str()
}

func (p *jparser) str() (string, error) {
	start := p.i
	esc := false
	for j := p.i + 1; j < len(p.b); j++ {
		switch p.b[j] {
		case '\\':
			esc = true
			j++
		case '"':
			p.i = j + 1
			if !esc {
				return p.s[start+1 : j], nil
			}
			var s string
			if err := json.Unmarshal(p.b[start:j+1], &s); err != nil {
				return "", p.errf("invalid string")
			}
			return s, nil
		}
	}
	return "", p.errf("unterminated string")
}

// object parses the object at p.i into n's fields.
func (p *jparser) object(n *Node) error {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxJSONDepth {
		return p.errf("nesting too deep")
	}
	start := p.i
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return p.errf("expected object")
	}
	n.kind = 'o'
	p.i++
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		n.raw = p.b[start:p.i]
		return nil
	}
	isRes := n.parent == nil || n.typ == n.ctx && p.isResourceType(n.typ)
	var under []field // "_name" members
	fbase := len(p.fstk)
	for {
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return p.errf("expected member name")
		}
		key, err := p.key(n.ctx)
		if err != nil {
			return err
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return p.errf("expected ':'")
		}
		p.i++
		p.ws()
		if key == "resourceType" && isRes {
			if _, err := p.str(); err != nil {
				return err
			}
		} else {
			var f field
			f.name, f.elem = key, key
			typ, ctx := "", ""
			target := &p.fstk
			if len(key) > 1 && key[0] == '_' {
				f.name, f.elem = key[1:], key[1:]
				typ, ctx = "Element", "Element"
				target = &under
				if c, ok := childDef(p.defs, n.ctx, key[1:]); ok {
					f.elem = c.Element.Name()
				}
			} else if c, ok := childDef(p.defs, n.ctx, key); ok {
				typ, ctx, f.elem = c.Type, c.Context, c.Element.Name()
				if key == "id" && isRes {
					typ = "id"
				}
			}
			if p.i < len(p.b) && p.b[p.i] == '[' {
				p.i++
				p.ws()
				idx := 0
				nbase := len(p.nstk)
				if p.i < len(p.b) && p.b[p.i] == ']' {
					p.i++
				} else {
					for {
						p.ws()
						c, err := p.value(n, f.name, f.elem, typ, ctx, idx)
						if err != nil {
							return err
						}
						p.nstk = append(p.nstk, c) // nil for null keeps "_name" aligned
						idx++
						p.ws()
						if p.i >= len(p.b) {
							return p.errf("unexpected end")
						}
						if p.b[p.i] == ']' {
							p.i++
							break
						}
						if p.b[p.i] != ',' {
							return p.errf("expected ',' or ']'")
						}
						p.i++
					}
				}
				f.nodes = p.nodeSlice(p.nstk[nbase:])
				p.nstk = p.nstk[:nbase]
			} else {
				c, err := p.value(n, f.name, f.elem, typ, ctx, -1)
				if err != nil {
					return err
				}
				f.nodes = p.nodeSlice([]*Node{c})
			}
			*target = append(*target, f)
		}
		p.ws()
		if p.i >= len(p.b) {
			return p.errf("unexpected end")
		}
		if p.b[p.i] == '}' {
			p.i++
			break
		}
		if p.b[p.i] != ',' {
			return p.errf("expected ',' or '}'")
		}
		p.i++
	}
	n.raw = p.b[start:p.i]
	n.fields = append([]field(nil), p.fstk[fbase:]...)
	p.fstk = p.fstk[:fbase]
	for _, u := range under {
		n.mergeUnder(u)
	}
	// drop nulls
	for i := range n.fields {
		f := &n.fields[i]
		k := 0
		for _, c := range f.nodes {
			if c != nil {
				f.nodes[k] = c
				k++
			}
		}
		f.nodes = f.nodes[:k]
	}
	return nil
}

// mergeUnder merges a "_name" member (ids and extensions of primitives)
// into the primitives of member name.
func (n *Node) mergeUnder(u field) {
	var f *field
	for i := range n.fields {
		if n.fields[i].name == u.name {
			f = &n.fields[i]
			break
		}
	}
	if f == nil {
		n.fields = append(n.fields, field{name: u.name, elem: u.elem})
		f = &n.fields[len(n.fields)-1]
	}
	typ := ""
	if c, ok := childDef(n.defs, n.ctx, u.name); ok {
		typ = c.Type
	}
	for i, ext := range u.nodes {
		if ext == nil {
			continue
		}
		for len(f.nodes) <= i {
			f.nodes = append(f.nodes, nil)
		}
		prim := f.nodes[i]
		if prim == nil {
			prim = &Node{defs: n.defs, parent: n, name: u.name, elem: f.elem, typ: typ, ctx: typ, index: i}
			if len(u.nodes) == 1 && ext.index < 0 {
				prim.index = -1
			}
			f.nodes[i] = prim
		}
		for _, ef := range ext.fields {
			for _, c := range ef.nodes {
				if c != nil {
					c.parent = prim
				}
			}
			prim.fields = append(prim.fields, ef)
		}
	}
}

// TypeName returns the node's FHIR type ("HumanName", "code", "Patient").
func (n *Node) TypeName() string { return n.typ }

// Namespace returns "FHIR".
func (n *Node) Namespace() string { return "FHIR" }

// Name returns the JSON member name the node came from ("valueQuantity");
// empty for the root.
func (n *Node) Name() string { return n.name }

// ElementName returns the element name without a choice suffix ("value").
func (n *Node) ElementName() string { return n.elem }

// Index returns the node's position in its JSON array, or -1.
func (n *Node) Index() int { return n.index }

// Parent returns the enclosing node, or nil for the root.
func (n *Node) Parent() *Node { return n.parent }

// Definitions returns the definitions the tree was typed with.
func (n *Node) Definitions() *fhir.Definitions { return n.defs }

// IsPrimitive reports whether the node is a primitive (has no JSON object).
func (n *Node) IsPrimitive() bool { return n.kind != 'o' }

// HasValue reports whether a primitive node has a value (it may carry only
// extensions).
func (n *Node) HasValue() bool { return n.kind != 'o' && n.kind != 0 }

// Raw returns the JSON bytes of the node's value: the object, or the
// primitive's value (nil when it has only extensions). The bytes are shared
// with the parsed body and must not be modified.
func (n *Node) Raw() []byte { return n.raw }

// Text returns a primitive's value as text: the string, or the number or
// boolean literal as written ("1.50", "true").
func (n *Node) Text() (string, bool) {
	if n.kind == 'o' || n.kind == 0 {
		return "", false
	}
	return n.text, true
}

// Primitive returns a primitive's Go value: string, json.Number or bool.
func (n *Node) Primitive() (any, bool) {
	switch n.kind {
	case 's':
		return n.text, true
	case 'n':
		return json.Number(n.text), true
	case 'b':
		return n.text == "true", true
	}
	return nil, false
}

// JSON decodes the node's JSON value into map[string]any, []any, string,
// json.Number, bool (numbers keep their text). For a primitive it is the
// value only. It decodes on each call; navigate with Children for speed.
func (n *Node) JSON() any {
	if n.kind != 'o' {
		v, _ := n.Primitive()
		return v
	}
	d := json.NewDecoder(bytes.NewReader(n.raw))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return nil
	}
	return v
}

// Children returns the child nodes of element name (choice elements by their
// short name, "value", or by JSON name, "valueQuantity").
func (n *Node) Children(name string) []*Node {
	for i := range n.fields {
		f := &n.fields[i]
		if f.elem == name || f.name == name {
			if f.elem == name && f.name != name {
				// a choice: gather all typed variants (only one is valid JSON)
				var out []*Node
				for j := i; j < len(n.fields); j++ {
					if n.fields[j].elem == name {
						out = append(out, n.fields[j].nodes...)
					}
				}
				return out
			}
			return f.nodes
		}
	}
	return nil
}

// Child returns the first child node of element name, or nil.
func (n *Node) Child(name string) *Node {
	if c := n.Children(name); len(c) > 0 {
		return c[0]
	}
	return nil
}

// ChildText returns the primitive text of the first child of element name.
func (n *Node) ChildText(name string) string {
	if c := n.Child(name); c != nil {
		s, _ := c.Text()
		return s
	}
	return ""
}

// AllChildren returns all child nodes in document order.
func (n *Node) AllChildren() []*Node {
	var out []*Node
	for _, f := range n.fields {
		out = append(out, f.nodes...)
	}
	return out
}

// Resource returns the nearest enclosing resource (the node itself when it
// is one).
func (n *Node) Resource() *Node {
	for c := n; c != nil; c = c.parent {
		if c.isResource() {
			return c
		}
	}
	return nil
}

func (n *Node) isResource() bool {
	if n.kind != 'o' {
		return false
	}
	if n.parent == nil {
		return n.defs == nil || n.defs.Type(n.typ) == nil || n.defs.Type(n.typ).Kind == fhir.KindResource
	}
	if n.defs == nil {
		return false
	}
	t := n.defs.Type(n.typ)
	return t != nil && t.Kind == fhir.KindResource
}

// System converts a primitive node to its System value (a date to Date, a
// decimal to Decimal, a code to String) and a Quantity-typed node to a
// System Quantity. It reports false for other nodes or invalid values.
func (n *Node) System() (Value, bool) {
	if n.kind == 'o' {
		if quantityTypes[n.typ] {
			return nodeQuantity(n)
		}
		return nil, false
	}
	if n.kind == 0 {
		return nil, false
	}
	st := fhirToSystem[n.typ]
	if st == "" {
		switch n.kind {
		case 's':
			st = "String"
		case 'b':
			st = "Boolean"
		default:
			st = "Decimal"
		}
	}
	switch st {
	case "Boolean":
		if n.kind != 'b' {
			return nil, false
		}
		return Boolean(n.text == "true"), true
	case "String":
		return String(n.text), true
	case "Integer":
		i, err := strconv.ParseInt(n.text, 10, 64)
		if err != nil {
			return nil, false
		}
		return Integer(i), true
	case "Decimal":
		d, err := ParseDecimal(n.text)
		if err != nil {
			return nil, false
		}
		return d, true
	case "Date":
		d, ok := ParseDate(n.text)
		if !ok {
			return nil, false
		}
		return d, true
	case "DateTime":
		d, ok := ParseDateTime(n.text)
		if !ok {
			return nil, false
		}
		return d, true
	case "Time":
		t, ok := ParseTime(n.text)
		if !ok {
			return nil, false
		}
		return t, true
	}
	return nil, false
}

func nodeQuantity(n *Node) (Value, bool) {
	v := n.Child("value")
	if v == nil {
		return nil, false
	}
	s, ok := v.Text()
	if !ok {
		return nil, false
	}
	d, err := ParseDecimal(s)
	if err != nil {
		return nil, false
	}
	unit := n.ChildText("code")
	if unit == "" || (n.ChildText("system") != "" && n.ChildText("system") != "http://unitsofmeasure.org") {
		unit = n.ChildText("unit")
		if cu, ok := calendarUnits[unit]; ok {
			return Quantity{Value: d, Unit: cu, Calendar: true}, true
		}
	}
	if unit == "" {
		unit = "1"
	}
	return Quantity{Value: d, Unit: unit}, true
}

// newStub returns a resource node with only a type and an id, standing for
// a referenced resource that is not at hand.
func newStub(defs *fhir.Definitions, typ, id string) *Node {
	n := &Node{defs: defs, typ: typ, ctx: typ, elem: typ, kind: 'o', index: -1}
	raw := []byte(`{"resourceType":`)
	raw = fhir.AppendString(raw, typ)
	if id != "" {
		raw = append(raw, `,"id":`...)
		raw = fhir.AppendString(raw, id)
		idn := &Node{defs: defs, parent: n, name: "id", elem: "id", typ: "id", kind: 's', text: id, index: -1}
		idn.raw = fhir.AppendString(nil, id)
		n.fields = []field{{name: "id", elem: "id", nodes: []*Node{idn}}}
	}
	n.raw = append(raw, '}')
	return n
}
