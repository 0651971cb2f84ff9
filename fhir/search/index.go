package search

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"regie/fhir"
	"regie/fhir/fhirpath"
)

// IndexerConfig configures an Indexer.
type IndexerConfig struct {
	// BaseURL is the server's FHIR base ("https://example.org/fhir").
	// Absolute references under it are indexed as local references.
	BaseURL string

	// engineOnly evaluates every expression with the FHIRPath engine (tests
	// compare it with the direct navigation of simple paths).
	engineOnly bool
	// keepDerived indexes derived parameters too (derived.go; tests compare
	// their entries with the parser's rewrite).
	keepDerived bool
}

// Indexer extracts the index entries of resources: it evaluates every
// SearchParameter of the resource's type (those with a FHIRPath expression,
// except _id and _lastUpdated, which stores answer from their own columns,
// and the special ones) and turns the results into typed entries. It is
// built once and is safe for concurrent use.
type Indexer struct {
	defs    *fhir.Definitions
	baseURL string
	types   map[string][]*indexParam
	// scratch recycles the entry buffers of Index.
	scratch sync.Pool
	// skipped lists, per type, the parameters that are not indexed and why.
	skipped map[string]map[string]string
	// derived lists, per type, the parameters answered from their
	// constituents' entries instead of their own (derived.go).
	derived map[string][]*fhir.SearchParam
}

// indexParam is one parameter of one resource type, compiled.
type indexParam struct {
	sp    *fhir.SearchParam
	code  string
	typ   fhir.ParamType
	eval  evaluator
	comps []indexComponent
}

type indexComponent struct {
	param string // "<code>#<n>"
	typ   fhir.ParamType
	eval  evaluator
}

// evaluator passes the items of an expression for a context node to out.
type evaluator interface {
	eval(ctx context.Context, focus *fhirpath.Node, env *fhirpath.Env, out itemSink) error
}

// itemSink receives the items of an evaluation.
type itemSink interface{ item(fhirpath.Value) }

// collector keeps items.
type collector []fhirpath.Value

func (c *collector) item(v fhirpath.Value) { *c = append(*c, v) }

// NewIndexer compiles the search parameters of every resource type. Each
// multi-base expression ("AllergyIntolerance.patient | CarePlan.subject…")
// is reduced to the parts that apply to the type, once, here.
func NewIndexer(defs *fhir.Definitions, cfg IndexerConfig) (*Indexer, error) {
	ix := &Indexer{
		scratch: sync.Pool{New: func() any { b := make([]Entry, 0, 64); return &b }},
		defs:    defs,
		baseURL: strings.TrimSuffix(cfg.BaseURL, "/"),
		types:   map[string][]*indexParam{},
		skipped: map[string]map[string]string{},
		derived: map[string][]*fhir.SearchParam{},
	}
	var derived map[string][]string
	if !cfg.keepDerived {
		derived = derivedParams(defs)
	}
	cache := map[string]evaluator{}
	compile := func(src string) (evaluator, error) {
		src = fhirTypeNames(defs, src)
		if e, ok := cache[src]; ok {
			return e, nil
		}
		e, err := compileEvaluator(defs, src, cfg.engineOnly)
		if err != nil {
			return nil, err
		}
		cache[src] = e
		return e, nil
	}
	for _, rt := range defs.ResourceTypes() {
		skip := map[string]string{}
		for _, sp := range defs.SearchParams(rt) {
			why := ""
			switch {
			case columnParam(sp.Code):
				why = "answered from the store's columns"
			case sp.Type == fhir.ParamSpecial:
				why = "special parameter"
			case sp.Expression == "":
				why = "no expression"
			}
			if why != "" {
				skip[sp.Code] = why
				continue
			}
			if derived[sp.Code] != nil {
				ix.derived[rt] = append(ix.derived[rt], sp)
				continue
			}
			src := exprForType(defs, rt, sp.Expression)
			if src == "" {
				skip[sp.Code] = "no expression for this type"
				continue
			}
			ev, err := compile(src)
			if err != nil {
				skip[sp.Code] = "expression does not compile: " + err.Error()
				continue
			}
			ip := &indexParam{sp: sp, code: sp.Code, typ: sp.Type, eval: ev}
			if sp.Type == fhir.ParamComposite {
				for i, c := range sp.Component {
					csp := defs.SearchParamByURL(c.Definition)
					if csp == nil || csp.Type == fhir.ParamComposite || csp.Type == fhir.ParamSpecial {
						why = "component " + c.Definition + " unknown"
						break
					}
					cev, err := compile(c.Expression)
					if err != nil {
						why = "component expression does not compile: " + err.Error()
						break
					}
					ip.comps = append(ip.comps, indexComponent{param: sp.Code + "#" + strconv.Itoa(i), typ: csp.Type, eval: cev})
				}
				if why != "" {
					skip[sp.Code] = why
					continue
				}
			}
			ix.types[rt] = append(ix.types[rt], ip)
		}
		ix.skipped[rt] = skip
	}
	return ix, nil
}

// Params returns the search parameters of resourceType that a search can
// use: those indexed, those derived from indexed ones, plus _id and
// _lastUpdated. It is the list a
// CapabilityStatement publishes.
func (ix *Indexer) Params(resourceType string) []*fhir.SearchParam {
	var ps []*fhir.SearchParam
	for _, sp := range ix.defs.SearchParams(resourceType) {
		if columnParam(sp.Code) {
			ps = append(ps, sp)
		}
	}
	for _, ip := range ix.types[resourceType] {
		ps = append(ps, ip.sp)
	}
	return append(ps, ix.derived[resourceType]...)
}

// Skipped returns the search parameters of resourceType that are not
// indexed, with the reason.
func (ix *Indexer) Skipped(resourceType string) map[string]string { return ix.skipped[resourceType] }

// ErrIndex is wrapped by the errors of Index.
var ErrIndex = errors.New("search: cannot index resource")

// Index returns the index entries of a resource of resourceType with the
// given JSON body (as validated on write). Entries of one parameter are
// free of duplicates; composite parameters' components share a Group.
func (ix *Indexer) Index(resourceType string, body []byte) ([]Entry, error) {
	params, ok := ix.types[resourceType]
	if !ok {
		return nil, fmt.Errorf("%w: unknown resource type", ErrIndex)
	}
	root, err := fhirpath.ParseResource(ix.defs, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIndex, err)
	}
	if root.TypeName() != resourceType {
		return nil, fmt.Errorf("%w: resourceType is %s, not %s", ErrIndex, root.TypeName(), resourceType)
	}
	ctx := context.Background()
	env := &fhirpath.Env{Resource: root, RootResource: root}
	x := &extractor{ix: ix}
	if buf, ok := ix.scratch.Get().(*[]Entry); ok {
		x.entries = (*buf)[:0]
		defer func() {
			clear(x.entries)
			*buf = x.entries[:0]
			ix.scratch.Put(buf)
		}()
	}
	for _, ip := range params {
		// A resource whose data does not fit an expression (several values
		// where the expression allows one) is not rejected: the parameter
		// is left out for it.
		if ip.typ == fhir.ParamComposite {
			var bases collector
			if ip.eval.eval(ctx, root, env, &bases) != nil {
				continue
			}
			for _, it := range bases {
				if n, ok := it.(*fhirpath.Node); ok {
					x.composite(ctx, env, ip, n)
				}
			}
			continue
		}
		start := len(x.entries)
		x.param, x.typ, x.group = ip.code, ip.typ, 0
		if ip.eval.eval(ctx, root, env, x) != nil {
			x.entries = x.entries[:start]
			continue
		}
		x.dedupe(start)
	}
	if len(x.entries) == 0 {
		return nil, nil
	}
	return slices.Clone(x.entries), nil
}

// extractor accumulates the entries of one resource. As an itemSink it
// adds the entries of each item for the current param, typ and group.
type extractor struct {
	ix      *Indexer
	entries []Entry
	groups  int
	param   string
	typ     fhir.ParamType
	group   int
}

func (x *extractor) item(v fhirpath.Value) { x.add(x.param, x.typ, x.group, v) }

func (x *extractor) dedupe(start int) {
	es := x.entries[start:]
	if len(es) < 2 {
		return
	}
	out := es[:1]
	for _, e := range es[1:] {
		dup := false
		if len(out) <= 32 {
			for i := range out {
				if out[i] == e {
					dup = true
					break
				}
			}
		}
		if !dup {
			out = append(out, e)
		}
	}
	x.entries = x.entries[:start+len(out)]
}

// composite adds the components of one base item under a new group; a
// base item that lacks a component adds nothing.
func (x *extractor) composite(ctx context.Context, env *fhirpath.Env, ip *indexParam, base *fhirpath.Node) {
	start := len(x.entries)
	x.groups++
	for _, c := range ip.comps {
		before := len(x.entries)
		x.param, x.typ, x.group = c.param, c.typ, x.groups
		if c.eval.eval(ctx, base, env, x) != nil || len(x.entries) == before {
			x.entries = x.entries[:start]
			x.groups--
			return
		}
	}
}

// add converts one item to entries of param.
func (x *extractor) add(param string, typ fhir.ParamType, group int, it fhirpath.Value) {
	n, ok := it.(*fhirpath.Node)
	if !ok {
		x.addSystem(param, typ, group, it)
		return
	}
	if n.TypeName() == "Extension" {
		for _, v := range n.Children("value") {
			x.add(param, typ, group, v)
		}
		return
	}
	switch typ {
	case fhir.ParamString:
		x.stringEntries(param, group, n)
	case fhir.ParamToken:
		x.tokenEntries(param, group, n)
	case fhir.ParamReference:
		x.referenceEntries(param, group, n)
	case fhir.ParamDate:
		x.dateEntries(param, group, n)
	case fhir.ParamNumber:
		x.numberEntries(param, group, n)
	case fhir.ParamQuantity:
		x.quantityEntries(param, group, n)
	case fhir.ParamURI:
		if s, ok := n.Text(); ok && s != "" {
			x.entries = append(x.entries, Entry{Param: param, Type: fhir.ParamURI, Group: group, Str: s, Exact: s})
		}
	}
}

// addSystem handles computed values (a boolean from
// "Patient.deceased.exists() and Patient.deceased != false").
func (x *extractor) addSystem(param string, typ fhir.ParamType, group int, v fhirpath.Value) {
	var s string
	switch v := v.(type) {
	case fhirpath.Boolean:
		s = strconv.FormatBool(bool(v))
	case fhirpath.String:
		s = string(v)
	default:
		return
	}
	switch typ {
	case fhir.ParamToken:
		x.entries = append(x.entries, Entry{Param: param, Type: typ, Group: group, Code: s})
	case fhir.ParamString:
		x.addString(param, group, s)
	case fhir.ParamURI:
		x.entries = append(x.entries, Entry{Param: param, Type: typ, Group: group, Str: s, Exact: s})
	}
}

func (x *extractor) addString(param string, group int, s string) {
	if s == "" {
		return
	}
	x.entries = append(x.entries, Entry{Param: param, Type: fhir.ParamString, Group: group, Str: Normalize(s), Exact: s})
}

var (
	humanNameParts = []string{"family", "given", "prefix", "suffix", "text"}
	addressParts   = []string{"line", "city", "district", "state", "postalCode", "country", "text"}
)

func (x *extractor) stringEntries(param string, group int, n *fhirpath.Node) {
	var parts []string
	switch n.TypeName() {
	case "HumanName":
		parts = humanNameParts
	case "Address":
		parts = addressParts
	default:
		if s, ok := n.Text(); ok {
			x.addString(param, group, s)
		}
		return
	}
	for _, p := range parts {
		for _, c := range n.Children(p) {
			if s, ok := c.Text(); ok {
				x.addString(param, group, s)
			}
		}
	}
}

func (x *extractor) tokenEntries(param string, group int, n *fhirpath.Node) {
	e := Entry{Param: param, Type: fhir.ParamToken, Group: group}
	switch n.TypeName() {
	case "Coding":
		x.coding(e, n)
	case "CodeableConcept":
		for _, c := range n.Children("coding") {
			x.coding(e, c)
		}
		if t := n.ChildText("text"); t != "" {
			e.Text = Normalize(t)
			x.entries = append(x.entries, e)
		}
	case "Identifier":
		e.System, e.Code = n.ChildText("system"), n.ChildText("value")
		typ := n.Child("type")
		if typ != nil {
			e.Text = Normalize(typ.ChildText("text"))
		}
		if e.System == "" && e.Code == "" && e.Text == "" {
			return
		}
		first := true
		if typ != nil {
			for _, c := range typ.Children("coding") {
				te := e
				te.TypeSystem, te.TypeCode = c.ChildText("system"), c.ChildText("code")
				if !first {
					te.Text = ""
				}
				x.entries = append(x.entries, te)
				first = false
			}
		}
		if first {
			x.entries = append(x.entries, e)
		}
	case "ContactPoint":
		e.System, e.Code = n.ChildText("system"), n.ChildText("value")
		if e.Code != "" {
			x.entries = append(x.entries, e)
		}
	default:
		if s, ok := n.Text(); ok && s != "" {
			e.Code = s
			x.entries = append(x.entries, e)
		}
	}
}

func (x *extractor) coding(e Entry, c *fhirpath.Node) {
	e.System, e.Code = c.ChildText("system"), c.ChildText("code")
	e.Text = Normalize(c.ChildText("display"))
	if e.System != "" || e.Code != "" || e.Text != "" {
		x.entries = append(x.entries, e)
	}
}

func (x *extractor) referenceEntries(param string, group int, n *fhirpath.Node) {
	e := Entry{Param: param, Type: fhir.ParamReference, Group: group}
	switch n.TypeName() {
	case "Reference":
		if ref := n.ChildText("reference"); ref != "" {
			if x.reference(&e, ref) {
				x.entries = append(x.entries, e)
			}
		}
		if id := n.Child("identifier"); id != nil {
			ie := Entry{Param: param, Type: fhir.ParamReference, Group: group, System: id.ChildText("system"), Code: id.ChildText("value")}
			if ie.Code != "" {
				x.entries = append(x.entries, ie)
			}
		}
	case "canonical", "uri", "url", "oid", "uuid":
		s, ok := n.Text()
		if !ok || s == "" {
			return
		}
		if n.TypeName() == "canonical" {
			if i := strings.LastIndexByte(s, '|'); i >= 0 {
				s, e.RefVersion = s[:i], s[i+1:]
			}
		}
		if i := strings.IndexByte(s, '#'); i >= 0 { // a fragment (canonical#element) is not part of the resource's URL
			s = s[:i]
		}
		if s == "" {
			return
		}
		if isAbsolute(s) {
			e.URL = s
		} else if t, id, ok := x.localRef(s); ok {
			e.RefType, e.RefID = t, id
		} else {
			e.URL = s
		}
		x.entries = append(x.entries, e)
	}
}

func isAbsolute(s string) bool { return strings.Contains(s, "://") || strings.HasPrefix(s, "urn:") }

// reference fills e from a Reference.reference string; it reports false for
// references that cannot be searched (contained "#id", junk).
func (x *extractor) reference(e *Entry, ref string) bool {
	if strings.HasPrefix(ref, "#") {
		return false
	}
	if x.ix.baseURL != "" && strings.HasPrefix(ref, x.ix.baseURL+"/") {
		ref = ref[len(x.ix.baseURL)+1:]
	} else if isAbsolute(ref) {
		url := ref
		if i := strings.Index(url, "/_history/"); i >= 0 {
			e.RefVersion = url[i+len("/_history/"):]
			url = url[:i]
		}
		e.URL = url
		if i := strings.LastIndexByte(url, '/'); i > 0 {
			if j := strings.LastIndexByte(url[:i], '/'); j >= 0 {
				t, id := url[j+1:i], url[i+1:]
				if x.ix.defs.IsResourceType(t) && fhir.ValidID(id) {
					e.RefType, e.RefID = t, id
				}
			}
		}
		return true
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		e.RefVersion = ref[i+len("/_history/"):]
		ref = ref[:i]
	}
	t, id, ok := x.localRef(ref)
	if !ok {
		return false
	}
	e.RefType, e.RefID = t, id
	return true
}

// localRef splits "Type/id".
func (x *extractor) localRef(s string) (typ, id string, ok bool) {
	typ, id, found := strings.Cut(s, "/")
	if !found || !x.ix.defs.IsResourceType(typ) || !fhir.ValidID(id) {
		return "", "", false
	}
	return typ, id, true
}

func (x *extractor) dateEntries(param string, group int, n *fhirpath.Node) {
	e := Entry{Param: param, Type: fhir.ParamDate, Group: group}
	switch n.TypeName() {
	case "date", "dateTime", "instant":
		s, _ := n.Text()
		lo, hi, ok := DateRange(s)
		if !ok {
			return
		}
		e.Lo, e.Hi = lo, hi
	case "Period":
		e.Lo, e.Hi = math.MinInt64, math.MaxInt64
		start, end := n.ChildText("start"), n.ChildText("end")
		if start == "" && end == "" {
			return
		}
		if start != "" {
			lo, _, ok := DateRange(start)
			if !ok {
				return
			}
			e.Lo = lo
		}
		if end != "" {
			_, hi, ok := DateRange(end)
			if !ok {
				return
			}
			e.Hi = hi
		}
	case "Timing":
		e.Lo, e.Hi = math.MaxInt64, math.MinInt64
		for _, ev := range n.Children("event") {
			s, _ := ev.Text()
			if lo, hi, ok := DateRange(s); ok {
				e.Lo, e.Hi = min(e.Lo, lo), max(e.Hi, hi)
			}
		}
		if e.Lo > e.Hi {
			r := n.Child("repeat")
			if r == nil {
				return
			}
			b := r.Child("boundsPeriod")
			if b == nil {
				return
			}
			x.dateEntries(param, group, b)
			return
		}
	default:
		return
	}
	x.entries = append(x.entries, e)
}

func (x *extractor) numberEntries(param string, group int, n *fhirpath.Node) {
	s, ok := n.Text()
	if !ok {
		return
	}
	v, lo, hi, ok := DecimalRange(s)
	if !ok {
		return
	}
	switch n.TypeName() {
	case "integer", "positiveInt", "unsignedInt", "integer64":
		lo, hi = v, v
	}
	x.entries = append(x.entries, Entry{Param: param, Type: fhir.ParamNumber, Group: group, Num: v, LoF: lo, HiF: hi})
}

// quantityTypes are Quantity and the types derived from it.
var quantityTypes = map[string]bool{
	"Quantity": true, "Age": true, "Duration": true, "Distance": true, "Count": true,
	"SimpleQuantity": true, "MoneyQuantity": true,
}

func (x *extractor) quantityEntries(param string, group int, n *fhirpath.Node) {
	typ := n.TypeName()
	switch {
	case quantityTypes[typ]:
		if e, ok := quantity(param, group, n); ok {
			x.entries = append(x.entries, e)
		}
	case typ == "Money":
		s := n.ChildText("value")
		v, lo, hi, ok := DecimalRange(s)
		if !ok {
			return
		}
		x.entries = append(x.entries, Entry{Param: param, Type: fhir.ParamQuantity, Group: group,
			Num: v, LoF: lo, HiF: hi, UnitSystem: "urn:iso:std:iso:4217", UnitCode: n.ChildText("currency")})
	case typ == "Range":
		low, high := n.Child("low"), n.Child("high")
		e := Entry{Param: param, Type: fhir.ParamQuantity, Group: group, LoF: math.Inf(-1), HiF: math.Inf(1)}
		var lq, hq Entry
		okL, okH := false, false
		if low != nil {
			lq, okL = quantity(param, group, low)
		}
		if high != nil {
			hq, okH = quantity(param, group, high)
		}
		if !okL && !okH {
			return
		}
		unitFrom := lq
		if !okL {
			unitFrom = hq
		}
		e.UnitSystem, e.UnitCode, e.CanonUnit = unitFrom.UnitSystem, unitFrom.UnitCode, unitFrom.CanonUnit
		e.CanonLo, e.CanonHi = math.Inf(-1), math.Inf(1)
		if okL {
			e.LoF, e.CanonLo = lq.LoF, lq.CanonLo
		}
		if okH {
			e.HiF, e.CanonHi = hq.HiF, hq.CanonHi
			if okL && hq.CanonUnit != lq.CanonUnit {
				e.CanonUnit = ""
			}
		}
		if e.CanonUnit == "" {
			e.CanonLo, e.CanonHi = 0, 0
		}
		e.Num, e.Canon = e.LoF, e.CanonLo
		if !okL {
			e.Num, e.Canon = e.HiF, e.CanonHi
		}
		x.entries = append(x.entries, e)
	}
}

// quantity reads a Quantity-like node: its value's precision range (open
// on one side with a comparator), its unit and, for UCUM units Regie knows,
// the canonical form.
func quantity(param string, group int, n *fhirpath.Node) (Entry, bool) {
	v, lo, hi, ok := DecimalRange(n.ChildText("value"))
	if !ok {
		return Entry{}, false
	}
	switch n.ChildText("comparator") {
	case "<", "<=":
		lo = math.Inf(-1)
	case ">", ">=":
		hi = math.Inf(1)
	}
	e := Entry{Param: param, Type: fhir.ParamQuantity, Group: group, Num: v, LoF: lo, HiF: hi,
		UnitSystem: n.ChildText("system"), UnitCode: n.ChildText("code")}
	if e.UnitCode == "" {
		e.UnitCode = n.ChildText("unit")
	}
	if e.UnitSystem == UCUM {
		if u, ok := lookupUnit(e.UnitCode); ok {
			e.CanonUnit, e.Canon, e.CanonLo, e.CanonHi = u.base, u.apply(v), u.apply(lo), u.apply(hi)
		}
	}
	return e, true
}
