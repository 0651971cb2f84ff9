package search

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"regie/fhir"
)

// Config configures a Parser.
type Config struct {
	// BaseURL is the server's FHIR base ("https://example.org/fhir").
	// Absolute references under it are read as local references.
	BaseURL string
	// MaxCount caps _count (default 1000).
	MaxCount int
	// CursorParam is the name of the parameter that carries a paging
	// cursor in next/previous links (default "_cursor").
	CursorParam string
}

// Options are the per-request settings of Parse.
type Options struct {
	// Strict makes unknown and unsupported parameters and modifiers errors
	// (Prefer: handling=strict); otherwise they are ignored and reported as
	// warnings.
	Strict bool
	// Now is the current time, used to widen ap on dates (by 10 % of the
	// distance between now and the value). Zero disables that widening.
	Now time.Time
}

// Parser turns search requests into query trees. It is built once from
// the definitions and is safe for concurrent use.
type Parser struct {
	defs *fhir.Definitions
	cfg  Config
	// derived maps derived parameters to their constituents (derived.go).
	derived map[string][]string
}

// NewParser returns a Parser over defs.
func NewParser(defs *fhir.Definitions, cfg Config) *Parser {
	if cfg.MaxCount <= 0 {
		cfg.MaxCount = 1000
	}
	if cfg.CursorParam == "" {
		cfg.CursorParam = "_cursor"
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	return &Parser{defs: defs, cfg: cfg, derived: derivedParams(defs)}
}

// maxDepth bounds chains and nested _has.
const maxDepth = 6

// state collects the outcome of one Parse.
type state struct {
	p        *Parser
	opts     Options
	warnings []fhir.Issue
	errs     []fhir.Issue
}

// unsupported reports a parameter, modifier or value the server does not
// support: a warning when lenient, an error when strict.
func (st *state) unsupported(path, details, diag string) {
	is := fhir.Issue{Code: fhir.IssueNotSupported, Path: path, Details: details, Diagnostics: diag}
	if st.opts.Strict {
		st.errs = append(st.errs, is)
		return
	}
	is.Warning = true
	st.warnings = append(st.warnings, is)
}

// fail reports a malformed request.
func (st *state) fail(path, details, diag string) {
	st.errs = append(st.errs, fhir.Issue{Code: fhir.IssueValue, Path: path, Details: details, Diagnostics: diag})
}

// Parse parses the search parameters of a request on types (one type for
// type-level search; several, or none for all, for system-level search
// where only parameters common to every type are allowed and _type may
// narrow the types). It returns the query, warnings about ignored
// parameters (empty in strict mode), and a *fhir.ValidationError listing
// every malformed (and, in strict mode, unsupported) parameter, with the
// parameter name as each issue's Path.
func (p *Parser) Parse(types []string, params []Param, opts Options) (*Query, []fhir.Issue, error) {
	st := &state{p: p, opts: opts}
	q := &Query{}
	for _, t := range types {
		if !p.defs.IsResourceType(t) {
			st.fail("", "search: unknown resource type", "unknown resource type "+t)
		}
	}
	q.Types = append(q.Types, types...)
	// _type first: it decides which parameters are allowed.
	seenType := false
	for _, pr := range params {
		if pr.Name != "_type" {
			continue
		}
		if seenType {
			st.fail("_type", "search: _type given more than once", "")
			continue
		}
		seenType = true
		var ts []string
		for _, t := range splitEscaped(pr.Value, ',') {
			t = unescape(t)
			if !p.defs.IsResourceType(t) {
				st.fail("_type", "search: unknown resource type in _type", "unknown resource type "+t)
				continue
			}
			if len(types) > 0 && !slices.Contains(types, t) {
				st.fail("_type", "search: _type outside the searched types", "type "+t+" is not searched")
				continue
			}
			if !slices.Contains(ts, t) {
				ts = append(ts, t)
			}
		}
		if len(ts) > 0 {
			q.Types = ts
		}
	}
	var where And
	seen := map[string]bool{}
	once := func(name string) bool {
		if seen[name] {
			st.fail(name, "search: parameter given more than once", "")
			return false
		}
		seen[name] = true
		return true
	}
	for _, pr := range params {
		name, value := pr.Name, pr.Value
		if !utf8.ValidString(name) || !utf8.ValidString(value) {
			st.fail(strings.ToValidUTF8(name, "\ufffd"), "search: parameter is not valid UTF-8", "")
			continue
		}
		base, mod, _ := strings.Cut(name, ":")
		switch {
		case name == "_type":
		case name == p.cfg.CursorParam:
			if once(name) {
				q.Cursor = value
			}
		case base == "_count" && mod == "":
			if !once(name) {
				continue
			}
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 {
				st.fail(name, "search: _count must be a non-negative integer", "")
				continue
			}
			if n == 0 {
				q.Summary = SummaryCount
			}
			q.Count = min(n, p.cfg.MaxCount)
		case base == "_total" && mod == "":
			if !once(name) {
				continue
			}
			switch Total(value) {
			case TotalNone, TotalEstimate, TotalAccurate:
				q.Total = Total(value)
			default:
				st.fail(name, "search: _total must be none, estimate or accurate", "")
			}
		case base == "_summary" && mod == "":
			if !once(name) {
				continue
			}
			switch Summary(value) {
			case SummaryTrue, SummaryText, SummaryData, SummaryCount, SummaryFalse:
				if q.Summary == "" {
					q.Summary = Summary(value)
				}
			default:
				st.fail(name, "search: _summary must be true, text, data, count or false", "")
			}
		case base == "_elements" && mod == "":
			for _, e := range strings.Split(value, ",") {
				e = strings.TrimSpace(e)
				if !elementName(e) {
					st.fail(name, "search: malformed element name in _elements", "element "+e)
					continue
				}
				if !slices.Contains(q.Elements, e) {
					q.Elements = append(q.Elements, e)
				}
			}
		case (base == "_format" || base == "_pretty") && mod == "":
			// Content negotiation belongs to the server.
		case base == "_sort":
			if !once("_sort") {
				continue
			}
			st.parseSort(q, name, mod, value)
		case base == "_include" || base == "_revinclude":
			st.parseInclude(q, name, base == "_revinclude", mod, value)
		default:
			if value == "" {
				st.unsupported(name, "search: parameter without a value is ignored", "")
				continue
			}
			if e := st.param(q.Types, name, value, 0); e != nil {
				where = append(where, e)
			}
		}
	}
	switch len(where) {
	case 0:
	case 1:
		q.Where = where[0]
	default:
		q.Where = where
	}
	if q.Where != nil && len(p.derived) > 0 {
		if w := expandDerived(q.Where, p.derived); w != nil {
			q.Request, q.Where = q.Where, w
		}
	}
	if len(st.errs) > 0 {
		return nil, st.warnings, &fhir.ValidationError{Issues: st.errs}
	}
	return q, st.warnings, nil
}

func elementName(e string) bool {
	if e == "" || len(e) > 64 {
		return false
	}
	for i := 0; i < len(e); i++ {
		c := e[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// lookup finds parameter code on every one of types (all types when empty)
// and returns it with the union of the reference targets. It returns nil
// when a type lacks the parameter or the types disagree on its type.
func (st *state) lookup(types []string, code string) (*fhir.SearchParam, []string) {
	if len(types) == 0 {
		types = st.p.defs.ResourceTypes()
	}
	var sp *fhir.SearchParam
	var targets []string
	for _, t := range types {
		d := st.p.defs.SearchParam(t, code)
		if d == nil || (sp != nil && d.Type != sp.Type) {
			return nil, nil
		}
		if sp == nil {
			sp = d
		}
		for _, tg := range d.Target {
			if !slices.Contains(targets, tg) {
				targets = append(targets, tg)
			}
		}
	}
	return sp, targets
}

// columnParams are answered by the store from its own columns.
func columnParam(code string) bool { return code == "_id" || code == "_lastUpdated" }

// param parses one search parameter (name may be a chain or _has) with its
// raw value. It returns nil when the parameter is ignored or malformed
// (which st records).
func (st *state) param(types []string, name, value string, depth int) Expr {
	if depth > maxDepth {
		st.fail(name, "search: chain nested too deeply", "")
		return nil
	}
	if strings.HasPrefix(name, "_has:") {
		return st.has(types, name, value, depth)
	}
	head, tail, chained := strings.Cut(name, ".")
	code, mod, _ := strings.Cut(head, ":")
	switch code {
	case "_list":
		if chained || mod != "" {
			st.unsupported(name, "search: _list takes no modifier or chain", "")
			return nil
		}
		return st.list(name, value)
	case "_text", "_content", "_query", "_filter", "_contained", "_containedType", "_has", "_type":
		st.unsupported(name, "search: parameter not supported", "")
		return nil
	}
	sp, targets := st.lookup(types, code)
	if sp == nil {
		st.unsupported(name, "search: unknown search parameter", "parameter "+code+" is not defined for "+typesText(types))
		return nil
	}
	if chained {
		return st.chain(name, sp, code, mod, targets, tail, value, depth)
	}
	if sp.Expression == "" && !columnParam(code) || sp.Type == fhir.ParamSpecial {
		st.unsupported(name, "search: parameter not supported", "parameter "+code+" is not indexed")
		return nil
	}
	return st.match(name, sp, code, mod, targets, value)
}

func typesText(types []string) string {
	if len(types) == 0 {
		return "all resource types"
	}
	return strings.Join(types, ", ")
}

// chain parses param[:Type].rest.
func (st *state) chain(name string, sp *fhir.SearchParam, code, mod string, targets []string, tail, value string, depth int) Expr {
	if sp.Type != fhir.ParamReference {
		st.fail(name, "search: only reference parameters can be chained", "parameter "+code+" is of type "+string(sp.Type))
		return nil
	}
	if len(targets) == 0 || slices.Contains(targets, "Resource") {
		targets = st.p.defs.ResourceTypes()
	}
	target := mod
	if target != "" {
		if !st.p.defs.IsResourceType(target) || !slices.Contains(targets, target) {
			st.fail(name, "search: chain type is not a target of the reference parameter", "type "+target)
			return nil
		}
	} else {
		next := tail
		if !strings.HasPrefix(next, "_has:") {
			next, _, _ = strings.Cut(next, ".")
			next, _, _ = strings.Cut(next, ":")
		} else {
			next = "_has"
		}
		var cands []string
		for _, t := range targets {
			if next == "_has" || st.p.defs.SearchParam(t, next) != nil {
				cands = append(cands, t)
			}
		}
		switch len(cands) {
		case 0:
			st.unsupported(name, "search: unknown search parameter in chain", "no target of "+code+" defines "+next)
			return nil
		case 1:
			target = cands[0]
		default:
			st.fail(name, "search: ambiguous chain: name the target type (param:Type.name)", "targets "+strings.Join(cands, ", "))
			return nil
		}
	}
	inner := st.param([]string{target}, tail, value, depth+1)
	if inner == nil {
		return nil
	}
	return &Chain{Param: code, Target: target, Where: inner}
}

// has parses _has:Type:param:rest.
func (st *state) has(types []string, name, value string, depth int) Expr {
	parts := strings.SplitN(name, ":", 4)
	if len(parts) != 4 || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		st.fail(name, "search: _has must be _has:Type:param:parameter", "")
		return nil
	}
	typ, code, rest := parts[1], parts[2], parts[3]
	if !st.p.defs.IsResourceType(typ) {
		st.fail(name, "search: unknown resource type in _has", "type "+typ)
		return nil
	}
	sp := st.p.defs.SearchParam(typ, code)
	if sp == nil {
		st.unsupported(name, "search: unknown search parameter in _has", "parameter "+code+" of "+typ)
		return nil
	}
	if sp.Type != fhir.ParamReference {
		st.fail(name, "search: _has needs a reference parameter", "parameter "+code+" of "+typ)
		return nil
	}
	if len(sp.Target) > 0 && !slices.Contains(sp.Target, "Resource") {
		ok := len(types) == 0
		for _, t := range types {
			if slices.Contains(sp.Target, t) {
				ok = true
			}
		}
		if !ok {
			st.fail(name, "search: _has parameter does not refer to the searched type", "parameter "+code+" of "+typ)
			return nil
		}
	}
	inner := st.param([]string{typ}, rest, value, depth+1)
	if inner == nil {
		return nil
	}
	return &Has{Type: typ, Param: code, Where: inner}
}

// list turns _list=id into "referred to by List/id through item".
func (st *state) list(name, value string) Expr {
	m := &Match{Param: "_id", Type: fhir.ParamToken}
	for _, part := range splitEscaped(value, ',') {
		id := unescape(part)
		if strings.HasPrefix(id, "$") {
			st.unsupported(name, "search: functional lists are not supported", "list "+id)
			return nil
		}
		if !fhir.ValidID(id) {
			st.fail(name, "search: malformed list id", "")
			return nil
		}
		m.Values = append(m.Values, Value{Code: id, AnySystem: true})
	}
	return &Has{Type: "List", Param: "item", Where: m}
}

// modifiers allowed per parameter type (besides "missing").
var typeModifiers = map[fhir.ParamType][]string{
	fhir.ParamString:    {"exact", "contains"},
	fhir.ParamToken:     {"text", "not", "of-type"},
	fhir.ParamReference: {"identifier"},
	fhir.ParamURI:       {"above", "below"},
}

// terminology modifiers need a terminology service.
var terminologyModifiers = map[string]bool{"in": true, "not-in": true, "above": true, "below": true}

// match parses a plain (unchained) parameter.
func (st *state) match(name string, sp *fhir.SearchParam, code, mod string, targets []string, value string) Expr {
	m := &Match{Param: code, Type: sp.Type}
	if code == "_id" {
		m.Type = fhir.ParamToken
	}
	negate := false
	refType := ""
	switch {
	case mod == "":
	case mod == "missing":
		switch value {
		case "true", "false":
			m.Modifier = "missing"
			m.Values = []Value{{Missing: value == "true"}}
			return m
		}
		st.fail(name, "search: :missing takes true or false", "")
		return nil
	case slices.Contains(typeModifiers[sp.Type], mod):
		if mod == "not" {
			negate = true
		} else {
			m.Modifier = mod
		}
	case sp.Type == fhir.ParamReference && st.p.defs.IsResourceType(mod):
		if len(targets) > 0 && !slices.Contains(targets, mod) && !slices.Contains(targets, "Resource") {
			st.fail(name, "search: type modifier is not a target of the reference parameter", "type "+mod)
			return nil
		}
		refType = mod
	case (sp.Type == fhir.ParamToken || sp.Type == fhir.ParamReference) && terminologyModifiers[mod]:
		st.unsupported(name, "search: modifier not supported (needs terminology or hierarchy)", "modifier "+mod)
		return nil
	default:
		st.unsupported(name, "search: modifier not supported for this parameter", "modifier "+mod+" on "+string(sp.Type)+" parameter "+code)
		return nil
	}
	if code == "_id" && m.Modifier != "" {
		st.unsupported(name, "search: modifier not supported for _id", "modifier "+mod)
		return nil
	}
	ok := true
	for _, part := range splitEscaped(value, ',') {
		if part == "" {
			st.fail(name, "search: empty value in a list of values", "")
			return nil
		}
		v, good := st.value(name, sp, m.Modifier, refType, targets, part)
		if !good {
			ok = false
			continue
		}
		m.Values = append(m.Values, v)
	}
	if !ok {
		return nil
	}
	if negate {
		return Not{X: m}
	}
	return m
}

// value parses one (comma-separated) value, still escaped.
func (st *state) value(name string, sp *fhir.SearchParam, mod, refType string, targets []string, s string) (Value, bool) {
	switch sp.Type {
	case fhir.ParamString:
		u := unescape(s)
		if mod == "exact" {
			return Value{Str: u}, true
		}
		n := Normalize(u)
		if n == "" {
			st.fail(name, "search: string value is empty after normalisation", "")
			return Value{}, false
		}
		return Value{Str: n}, true
	case fhir.ParamURI:
		return Value{Str: unescape(s)}, true
	case fhir.ParamToken:
		return st.token(name, mod, s)
	case fhir.ParamReference:
		if mod == "identifier" {
			return st.token(name, "", s)
		}
		return st.reference(name, refType, targets, s)
	case fhir.ParamDate:
		return st.date(name, s)
	case fhir.ParamNumber:
		return st.number(name, s)
	case fhir.ParamQuantity:
		return st.quantity(name, s)
	case fhir.ParamComposite:
		return st.composite(name, sp, s)
	}
	st.unsupported(name, "search: parameter type not supported", "type "+string(sp.Type))
	return Value{}, false
}

func (st *state) token(name, mod, s string) (Value, bool) {
	switch mod {
	case "text":
		n := Normalize(unescape(s))
		if n == "" {
			st.fail(name, "search: text value is empty after normalisation", "")
			return Value{}, false
		}
		return Value{Str: n}, true
	case "of-type":
		parts := splitEscaped(s, '|')
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
			st.fail(name, "search: :of-type takes type-system|type-code|value", "")
			return Value{}, false
		}
		return Value{TypeSystem: unescape(parts[0]), TypeCode: unescape(parts[1]), Code: unescape(parts[2])}, true
	}
	sys, code, found := cutEscaped(s, '|')
	if !found {
		return Value{AnySystem: true, Code: unescape(s)}, true
	}
	if sys == "" && code == "" {
		st.fail(name, "search: token value without system and code", "")
		return Value{}, false
	}
	return Value{System: unescape(sys), Code: unescape(code)}, true
}

func (st *state) reference(name, refType string, targets []string, s string) (Value, bool) {
	s = unescape(s)
	if base := st.p.cfg.BaseURL; base != "" && strings.HasPrefix(s, base+"/") {
		s = s[len(base)+1:]
	} else if strings.Contains(s, "://") || strings.HasPrefix(s, "urn:") {
		url, version := s, ""
		if i := strings.LastIndexByte(s, '|'); i >= 0 {
			url, version = s[:i], s[i+1:]
		}
		return Value{URL: url, Version: version}, true
	}
	parts := strings.Split(s, "/")
	var v Value
	switch {
	case len(parts) == 1:
		v.RefID = parts[0]
		v.RefType = refType
		if v.RefType == "" && len(targets) == 1 && targets[0] != "Resource" {
			v.RefType = targets[0]
		}
	case len(parts) == 2 || len(parts) == 4 && parts[2] == "_history":
		v.RefType, v.RefID = parts[0], parts[1]
		if len(parts) == 4 {
			if _, err := strconv.ParseInt(parts[3], 10, 64); err != nil {
				st.fail(name, "search: malformed reference version", "")
				return Value{}, false
			}
			v.Version = parts[3]
		}
		if !st.p.defs.IsResourceType(v.RefType) {
			st.fail(name, "search: unknown resource type in reference", "")
			return Value{}, false
		}
		if refType != "" && v.RefType != refType {
			st.fail(name, "search: reference type differs from the type modifier", "")
			return Value{}, false
		}
		if len(targets) > 0 && !slices.Contains(targets, v.RefType) && !slices.Contains(targets, "Resource") {
			st.fail(name, "search: reference type is not a target of the parameter", "type "+v.RefType)
			return Value{}, false
		}
	default:
		st.fail(name, "search: malformed reference", "")
		return Value{}, false
	}
	if !fhir.ValidID(v.RefID) {
		st.fail(name, "search: malformed id in reference", "")
		return Value{}, false
	}
	return v, true
}

// prefix splits a comparison prefix off a number, date or quantity value.
func prefix(s string) (Prefix, string) {
	if len(s) > 2 {
		switch p := Prefix(s[:2]); p {
		case Eq, Ne, Gt, Lt, Ge, Le, Sa, Eb, Ap:
			return p, s[2:]
		}
	}
	return Eq, s
}

func (st *state) date(name, s string) (Value, bool) {
	p, rest := prefix(unescape(s))
	// A '+' in a zone offset arrives as a space when the client did not
	// percent-encode it.
	rest = strings.Replace(rest, " ", "+", 1)
	lo, hi, ok := DateRange(rest)
	if !ok {
		st.fail(name, "search: malformed date", "expected YYYY[-MM[-DD[Thh:mm[:ss[.fff]][Z|+hh:mm]]]]")
		return Value{}, false
	}
	v := Value{Prefix: p, Raw: rest, Lo: lo, Hi: hi}
	if p == Ap && !st.opts.Now.IsZero() {
		now := st.opts.Now.UnixMicro()
		mid := lo/2 + hi/2
		gap := now - mid
		if gap < 0 {
			gap = -gap
		}
		w := gap / 10
		v.Lo, v.Hi = satSub(lo, w), satAdd(hi, w)
	}
	return v, true
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func satSub(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}

func (st *state) number(name, s string) (Value, bool) {
	p, rest := prefix(unescape(s))
	n, lo, hi, ok := DecimalRange(rest)
	if !ok {
		st.fail(name, "search: malformed number", "")
		return Value{}, false
	}
	v := Value{Prefix: p, Raw: rest, Num: n, LoF: lo, HiF: hi}
	if p == Ap {
		w := math.Abs(n) / 10
		v.LoF, v.HiF = lo-w, hi+w
	}
	return v, true
}

func (st *state) quantity(name, s string) (Value, bool) {
	parts := splitEscaped(s, '|')
	if len(parts) != 1 && len(parts) != 3 {
		st.fail(name, "search: quantity must be number or number|system|code", "")
		return Value{}, false
	}
	v, ok := st.number(name, parts[0])
	if !ok {
		return Value{}, false
	}
	if len(parts) == 3 {
		v.UnitSystem, v.UnitCode = unescape(parts[1]), unescape(parts[2])
		if v.UnitSystem == "" && v.UnitCode == "" {
			st.fail(name, "search: quantity with an empty unit", "")
			return Value{}, false
		}
		if v.UnitSystem == UCUM || v.UnitSystem == "" {
			if u, ok := lookupUnit(v.UnitCode); ok {
				v.CanonUnit, v.Canon, v.CanonLo, v.CanonHi = u.base, u.apply(v.Num), u.apply(v.LoF), u.apply(v.HiF)
			}
		}
	}
	return v, true
}

func (st *state) composite(name string, sp *fhir.SearchParam, s string) (Value, bool) {
	parts := splitEscaped(s, '$')
	if len(parts) != len(sp.Component) {
		st.fail(name, "search: composite value needs one part per component, separated by $", "expected "+strconv.Itoa(len(sp.Component))+" parts")
		return Value{}, false
	}
	var v Value
	for i, c := range sp.Component {
		csp := st.p.defs.SearchParamByURL(c.Definition)
		if csp == nil || csp.Type == fhir.ParamComposite || csp.Type == fhir.ParamSpecial {
			st.unsupported(name, "search: composite component not supported", "")
			return Value{}, false
		}
		if parts[i] == "" {
			st.fail(name, "search: empty composite component", "")
			return Value{}, false
		}
		cv, ok := st.value(name, csp, "", "", csp.Target, parts[i])
		if !ok {
			return Value{}, false
		}
		v.Components = append(v.Components, &Match{Param: sp.Code + "#" + strconv.Itoa(i), Type: csp.Type, Values: []Value{cv}})
	}
	return v, true
}

// parseSort parses _sort=a,-b (and the R3 forms _sort:asc / _sort:desc).
func (st *state) parseSort(q *Query, name, mod, value string) {
	desc := false
	switch mod {
	case "":
	case "asc":
	case "desc":
		desc = true
	default:
		st.unsupported(name, "search: modifier not supported for _sort", "modifier "+mod)
		return
	}
	for _, key := range strings.Split(value, ",") {
		d := desc
		if strings.HasPrefix(key, "-") {
			d, key = true, key[1:]
		}
		if key == "" {
			st.fail(name, "search: empty sort key", "")
			continue
		}
		sp, _ := st.lookup(q.Types, key)
		if sp == nil {
			st.unsupported(name, "search: unknown sort parameter", "parameter "+key)
			continue
		}
		if sp.Expression == "" && !columnParam(key) || sp.Type == fhir.ParamComposite || sp.Type == fhir.ParamSpecial || st.p.derived[key] != nil {
			st.unsupported(name, "search: sorting by this parameter is not supported", "parameter "+key)
			continue
		}
		typ := sp.Type
		if key == "_id" {
			typ = fhir.ParamToken
		}
		q.Sort = append(q.Sort, Sort{Param: key, Type: typ, Desc: d})
	}
}

// parseInclude parses _include and _revinclude values: *, Source:param,
// Source:param:Target, Source:*.
func (st *state) parseInclude(q *Query, name string, rev bool, mod, value string) {
	iterate := false
	switch mod {
	case "":
	case "iterate", "recurse":
		iterate = true
	default:
		st.unsupported(name, "search: modifier not supported for _include", "modifier "+mod)
		return
	}
	inc := Include{Iterate: iterate}
	if value == "*" {
		inc.Source, inc.Param = "*", "*"
	} else {
		parts := strings.Split(value, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			st.fail(name, "search: include must be Type:parameter[:targetType] or *", "")
			return
		}
		inc.Source, inc.Param = parts[0], parts[1]
		if len(parts) == 3 {
			inc.Target = parts[2]
		}
		if !st.p.defs.IsResourceType(inc.Source) {
			st.fail(name, "search: unknown resource type in include", "type "+inc.Source)
			return
		}
		if inc.Param != "*" {
			sp := st.p.defs.SearchParam(inc.Source, inc.Param)
			if sp == nil {
				st.unsupported(name, "search: unknown include parameter", "parameter "+inc.Param+" of "+inc.Source)
				return
			}
			if sp.Type != fhir.ParamReference {
				st.fail(name, "search: include parameter is not a reference", "parameter "+inc.Param+" of "+inc.Source)
				return
			}
			if inc.Target != "" {
				if !st.p.defs.IsResourceType(inc.Target) {
					st.fail(name, "search: unknown target type in include", "type "+inc.Target)
					return
				}
				if len(sp.Target) > 0 && !slices.Contains(sp.Target, inc.Target) && !slices.Contains(sp.Target, "Resource") {
					st.fail(name, "search: include target is not a target of the parameter", "type "+inc.Target)
					return
				}
			}
		} else if inc.Target != "" && !st.p.defs.IsResourceType(inc.Target) {
			st.fail(name, "search: unknown target type in include", "type "+inc.Target)
			return
		}
	}
	if rev {
		q.RevInclude = append(q.RevInclude, inc)
	} else {
		q.Include = append(q.Include, inc)
	}
}
