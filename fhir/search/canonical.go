package search

import (
	"slices"
	"strconv"
	"strings"

	"regie/fhir"
)

// Canonical renders the request part of q (types when several, Where,
// sorting, paging size, totals, summary, elements and includes) as a
// normalised query string, for self links and audit. Equal queries render
// equally: parameters are sorted by name and value, OR-ed values are
// sorted, string values appear normalised, prefixes other than eq are
// explicit, :not appears as a modifier and _list as the _has it means. The
// cursor and the Constraint are not part of it; the caller appends its
// cursor parameter when it needs one.
func Canonical(q *Query) string {
	var pairs [][2]string
	add := func(name, value string) { pairs = append(pairs, [2]string{name, value}) }
	if len(q.Types) > 1 {
		ts := slices.Clone(q.Types)
		slices.Sort(ts)
		add("_type", strings.Join(ts, ","))
	}
	where := q.Where
	if q.Request != nil {
		where = q.Request
	}
	var conj []Expr
	switch w := where.(type) {
	case nil:
	case And:
		conj = w
	default:
		conj = []Expr{w}
	}
	for _, e := range conj {
		if n, v, ok := renderParam(e, ""); ok {
			add(n, v)
		}
	}
	if len(q.Sort) > 0 {
		keys := make([]string, len(q.Sort))
		for i, s := range q.Sort {
			keys[i] = s.Param
			if s.Desc {
				keys[i] = "-" + s.Param
			}
		}
		add("_sort", strings.Join(keys, ","))
	}
	if q.Count > 0 {
		add("_count", strconv.Itoa(q.Count))
	}
	if q.Total != "" {
		add("_total", string(q.Total))
	}
	if q.Summary != "" {
		add("_summary", string(q.Summary))
	}
	if len(q.Elements) > 0 {
		es := slices.Clone(q.Elements)
		slices.Sort(es)
		add("_elements", strings.Join(es, ","))
	}
	for _, inc := range q.Include {
		n, v := renderInclude("_include", inc)
		add(n, v)
	}
	for _, inc := range q.RevInclude {
		n, v := renderInclude("_revinclude", inc)
		add(n, v)
	}
	slices.SortStableFunc(pairs, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(queryEscape(p[0]))
		b.WriteByte('=')
		b.WriteString(queryEscape(p[1]))
	}
	return b.String()
}

func renderInclude(name string, inc Include) (string, string) {
	if inc.Iterate {
		name += ":iterate"
	}
	if inc.Source == "*" && inc.Param == "*" && inc.Target == "" {
		return name, "*"
	}
	v := inc.Source + ":" + inc.Param
	if inc.Target != "" {
		v += ":" + inc.Target
	}
	return name, v
}

// renderParam renders one conjunct of Where as name and value. Trees that
// no request produces (Or, nested And, Not of anything but a Match) are
// skipped.
func renderParam(e Expr, prefix string) (string, string, bool) {
	switch x := e.(type) {
	case *Match:
		name := prefix + x.Param
		if x.Modifier != "" {
			name += ":" + x.Modifier
		}
		return name, renderValues(x), true
	case Not:
		m, ok := x.X.(*Match)
		if !ok {
			return "", "", false
		}
		return prefix + m.Param + ":not", renderValues(m), true
	case *Chain:
		return renderParam(x.Where, prefix+x.Param+":"+x.Target+".")
	case *Has:
		return renderParam(x.Where, prefix+"_has:"+x.Type+":"+x.Param+":")
	}
	return "", "", false
}

func renderValues(m *Match) string {
	vs := make([]string, len(m.Values))
	for i, v := range m.Values {
		vs[i] = renderValue(m, v)
	}
	slices.Sort(vs)
	return strings.Join(vs, ",")
}

func renderValue(m *Match, v Value) string {
	if m.Modifier == "missing" {
		return strconv.FormatBool(v.Missing)
	}
	pre := ""
	if v.Prefix != "" && v.Prefix != Eq {
		pre = string(v.Prefix)
	}
	switch m.Type {
	case fhir.ParamString, fhir.ParamURI:
		return escape(v.Str)
	case fhir.ParamToken:
		return renderToken(m.Modifier, v)
	case fhir.ParamReference:
		switch {
		case m.Modifier == "identifier":
			return renderToken("", v)
		case v.URL != "":
			if v.Version != "" {
				return escape(v.URL) + "|" + escape(v.Version)
			}
			return escape(v.URL)
		case v.RefType == "":
			return escape(v.RefID)
		case v.Version != "":
			return escape(v.RefType + "/" + v.RefID + "/_history/" + v.Version)
		default:
			return escape(v.RefType + "/" + v.RefID)
		}
	case fhir.ParamDate, fhir.ParamNumber:
		return pre + v.Raw
	case fhir.ParamQuantity:
		s := pre + v.Raw
		if v.UnitSystem != "" || v.UnitCode != "" {
			s += "|" + escape(v.UnitSystem) + "|" + escape(v.UnitCode)
		}
		return s
	case fhir.ParamComposite:
		parts := make([]string, len(v.Components))
		for i, c := range v.Components {
			if len(c.Values) == 1 {
				parts[i] = renderValue(c, c.Values[0])
			}
		}
		return strings.Join(parts, "$")
	}
	return ""
}

func renderToken(mod string, v Value) string {
	switch {
	case mod == "text":
		return escape(v.Str)
	case mod == "of-type":
		return escape(v.TypeSystem) + "|" + escape(v.TypeCode) + "|" + escape(v.Code)
	case v.AnySystem:
		return escape(v.Code)
	default:
		return escape(v.System) + "|" + escape(v.Code)
	}
}

// queryEscape percent-encodes what a query string component cannot hold
// literally, and keeps the characters FHIR search values use (: / | , $).
func queryEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			strings.IndexByte("-._~:/|,$@!*'()", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
