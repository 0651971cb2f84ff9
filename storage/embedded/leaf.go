package embedded

import (
	"fmt"
	"strings"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// A cond selects the rows of one index table that match one search value
// for one parameter id: where is an SQL condition over the table's columns,
// written "$.col" ($ is replaced by the table's alias). Its semantics are
// those of (*search.Match).Matches for that value; the contract suite
// compares them.
type cond struct {
	tab   byte
	where string
	args  []any
	// ordered: the condition fixes every key column before rid, so the
	// rows come in rid order; unique: no rid occurs twice.
	ordered, unique bool
}

// alias replaces the "$." placeholders of an SQL fragment by a table alias.
func alias(where, a string) string { return strings.ReplaceAll(where, "$.", a+".") }

func unsupported(what string) error {
	return fmt.Errorf("embedded: search %s: %w", what, storage.ErrUnsupported)
}

// prefixEnd is the smallest string greater than every string that starts
// with p (UTF-8 text never contains the byte 0xff).
func prefixEnd(p string) string { return p + "\xff" }

// rangeCond is the SQL form of search.Prefix over a range column pair.
func rangeCond(p search.Prefix, lo, hi string, sl, sh any) (string, []any) {
	eq := lo + " >= ? AND " + hi + " <= ?"
	switch p {
	case search.Ne:
		return "NOT (" + eq + ")", []any{sl, sh}
	case search.Gt:
		return hi + " > ?", []any{sh}
	case search.Lt:
		return lo + " < ?", []any{sl}
	case search.Ge:
		return "(" + hi + " > ? OR (" + eq + "))", []any{sh, sl, sh}
	case search.Le:
		return "(" + lo + " < ? OR (" + eq + "))", []any{sl, sl, sh}
	case search.Sa:
		return lo + " > ?", []any{sh}
	case search.Eb:
		return hi + " < ?", []any{sl}
	case search.Ap:
		return lo + " <= ? AND " + hi + " >= ?", []any{sh, sl}
	}
	return eq, []any{sl, sh}
}

// checkModifier rejects modifiers the store does not know for the type.
func checkModifier(m *search.Match) error {
	ok := m.Modifier == "" || m.Modifier == "missing"
	switch m.Type {
	case fhir.ParamString:
		ok = ok || m.Modifier == "exact" || m.Modifier == "contains"
	case fhir.ParamToken:
		ok = ok || m.Modifier == "text" || m.Modifier == "of-type"
	case fhir.ParamReference:
		ok = ok || m.Modifier == "identifier"
	case fhir.ParamURI:
		ok = ok || m.Modifier == "above" || m.Modifier == "below"
	case fhir.ParamDate, fhir.ParamNumber, fhir.ParamQuantity, fhir.ParamComposite:
	default:
		return unsupported(fmt.Sprintf("of a %s parameter (%s)", m.Type, m.Param))
	}
	if !ok {
		return unsupported(fmt.Sprintf("modifier :%s on a %s parameter (%s)", m.Modifier, m.Type, m.Param))
	}
	return nil
}

// checkTree rejects a query tree with anything the store cannot answer,
// before any data decides whether the parts are reached.
func checkTree(e search.Expr) error {
	switch x := e.(type) {
	case search.And:
		for _, c := range x {
			if err := checkTree(c); err != nil {
				return err
			}
		}
	case search.Or:
		for _, c := range x {
			if err := checkTree(c); err != nil {
				return err
			}
		}
	case search.Not:
		return checkTree(x.X)
	case *search.Chain:
		return checkTree(x.Where)
	case *search.Has:
		return checkTree(x.Where)
	case *search.Match:
		if err := checkModifier(x); err != nil {
			return err
		}
		for _, v := range x.Values {
			for _, c := range v.Components {
				if c.Type == fhir.ParamComposite || c.Modifier == "missing" || len(c.Values) != 1 {
					return unsupported("composite component " + c.Param)
				}
				if err := checkModifier(c); err != nil {
					return err
				}
			}
		}
	case nil:
	default:
		return unsupported(fmt.Sprintf("expression %T", e))
	}
	return nil
}

// valueConds returns the conditions (OR-ed) that select the rows of
// parameter pid (of resource type tid) matching v of m, which is neither
// :missing nor composite. loose may look up the systems or target types
// present, so that each condition fixes its key and yields rids in order;
// without it the conditions may be unordered.
func (ex *exec) valueConds(m *search.Match, v *search.Value, tid, pid int64, loose bool) ([]cond, error) {
	switch m.Type {
	case fhir.ParamString:
		switch m.Modifier {
		case "exact":
			return []cond{{tab: tabString, where: "($.exact = ? OR ($.exact = '' AND $.value = ?))", args: []any{v.Str, v.Str}}}, nil
		case "contains":
			if v.Str == "" {
				return []cond{{tab: tabString, where: "1"}}, nil
			}
			return []cond{{tab: tabString, where: "instr($.value, ?) > 0", args: []any{v.Str}}}, nil
		}
		return []cond{{tab: tabString, where: "$.value >= ? AND $.value < ?", args: []any{v.Str, prefixEnd(v.Str)}}}, nil

	case fhir.ParamURI:
		switch m.Modifier {
		case "below":
			b := strings.TrimSuffix(v.Str, "/") + "/"
			return []cond{{tab: tabURI, where: "($.uri = ? OR ($.uri >= ? AND $.uri < ?))", args: []any{v.Str, b, prefixEnd(b)}}}, nil
		case "above":
			// Every stored URI that v lies under is a prefix of v.
			var in []string
			var args []any
			for n := 1; n <= len(v.Str); n++ {
				if p := v.Str[:n]; uriBelow(v.Str, p) {
					in = append(in, "?")
					args = append(args, p)
				}
			}
			if len(in) == 0 {
				return nil, nil
			}
			return []cond{{tab: tabURI, where: "$.uri IN (" + strings.Join(in, ", ") + ")", args: args}}, nil
		}
		return []cond{{tab: tabURI, where: "$.uri = ?", args: []any{v.Str}, ordered: true, unique: true}}, nil

	case fhir.ParamToken:
		switch m.Modifier {
		case "text":
			return []cond{{tab: tabText, where: "$.value >= ? AND $.value < ?", args: []any{v.Str, prefixEnd(v.Str)}}}, nil
		case "of-type":
			tsid, ok := ex.v.systemID(v.TypeSystem)
			if !ok {
				return nil, nil
			}
			return []cond{{tab: tabOfType, where: "$.tcode = ? AND $.tsid = ? AND $.code = ?", args: []any{v.TypeCode, tsid, v.Code},
				ordered: true, unique: true}}, nil
		}
		return ex.tokenConds(v, pid, loose)

	case fhir.ParamReference:
		if m.Modifier == "identifier" {
			return ex.tokenConds(v, pid, loose)
		}
		ver := ""
		var verArgs []any
		if v.Version != "" {
			ver = " AND $.ver = ?"
			verArgs = []any{v.Version}
		}
		ref := func(rtid int64, id, url string) cond {
			return cond{tab: tabReference, where: "$.rtid = ? AND $.ref = ? AND $.url = ?" + ver,
				args: append([]any{rtid, id, url}, verArgs...), ordered: true}
		}
		if v.URL != "" {
			// An absolute URL is stored without a local type and id, or
			// with the Type/id its last two segments name.
			out := []cond{ref(0, "", v.URL)}
			if t, id, ok := urlTypeID(v.URL); ok {
				if rtid, ok := ex.v.lookup(t); ok {
					out = append(out, ref(rtid, id, v.URL))
				}
			}
			return out, nil
		}
		if v.RefID == "" {
			return nil, nil
		}
		if v.RefType != "" {
			rtid, ok := ex.v.lookup(v.RefType)
			if !ok {
				return nil, nil
			}
			return []cond{ref(rtid, v.RefID, "")}, nil
		}
		if !loose {
			return []cond{{tab: tabReference, where: "$.ref = ? AND $.url = ''" + ver, args: append([]any{v.RefID}, verArgs...)}}, nil
		}
		rtids, err := ex.distinct("idx_reference", "rtid", "pid = ?", pid)
		if err != nil {
			return nil, err
		}
		var out []cond
		for _, rtid := range rtids {
			out = append(out, ref(rtid, v.RefID, ""))
		}
		return out, nil

	case fhir.ParamDate:
		return dateConds(v), nil

	case fhir.ParamNumber:
		w, a := rangeCond(v.Prefix, "$.lo", "$.hi", v.LoF, v.HiF)
		return []cond{{tab: tabNumber, where: w, args: a}}, nil

	case fhir.ParamQuantity:
		written, wargs := rangeCond(v.Prefix, "$.lo", "$.hi", v.LoF, v.HiF)
		if v.UnitCode != "" || v.UnitSystem != "" {
			unit, uargs := "$.code = ?", []any{v.UnitCode}
			if v.UnitSystem != "" {
				sid, ok := ex.v.systemID(v.UnitSystem)
				if !ok {
					unit, uargs = "0", nil
				} else {
					unit += " AND $.sid = ?"
					uargs = append(uargs, sid)
				}
			}
			written, wargs = unit+" AND "+written, append(uargs, wargs...)
		}
		if v.CanonUnit == "" {
			return []cond{{tab: tabQuantity, where: written, args: wargs}}, nil
		}
		canon, cargs := rangeCond(v.Prefix, "$.clo", "$.chi", v.CanonLo, v.CanonHi)
		w := "(($.ccode = ? AND " + canon + ") OR ($.ccode <> ? AND " + written + "))"
		a := append(append(append([]any{v.CanonUnit}, cargs...), v.CanonUnit), wargs...)
		return []cond{{tab: tabQuantity, where: w, args: a}}, nil
	}
	return nil, unsupported(fmt.Sprintf("of a %s parameter (%s)", m.Type, m.Param))
}

// dateConds selects date rows as compareRange does, in conditions that
// each seek a range of an index: the key (pid, lo, …), idx_date_hi (pid,
// hi) or, for ranges that end before they start, idx_date_inverted. eq
// (alone, or within ge and le) is a bounded range of starts, plus the
// inverted ranges; ge and le add what reaches beyond the value.
func dateConds(v *search.Value) []cond {
	sl, sh := v.Lo, v.Hi
	eq := []cond{
		{tab: tabDate, where: "$.lo >= ? AND $.lo <= ? AND $.hi <= ?", args: []any{sl, sh, sh}},
		{tab: tabDate, where: "$.lo > $.hi AND $.lo >= ? AND $.hi <= ?", args: []any{sl, sh}},
	}
	switch v.Prefix {
	case search.Ge:
		return append([]cond{{tab: tabDate, where: "$.hi > ?", args: []any{sh}}}, eq...)
	case search.Le:
		return append([]cond{{tab: tabDate, where: "$.lo < ?", args: []any{sl}}}, eq...)
	case search.Eq, "":
		return eq
	}
	w, a := rangeCond(v.Prefix, "$.lo", "$.hi", sl, sh)
	return []cond{{tab: tabDate, where: w, args: a}}
}

// tokenConds selects token rows (and reference :identifier rows) as
// matchToken does.
func (ex *exec) tokenConds(v *search.Value, pid int64, loose bool) ([]cond, error) {
	switch {
	case v.AnySystem && v.Code == "":
		return nil, nil
	case v.AnySystem:
		if !loose {
			return []cond{{tab: tabToken, where: "$.code = ?", args: []any{v.Code}}}, nil
		}
		sids, err := ex.distinct("idx_token", "sid", "pid = ? AND code = ?", pid, v.Code)
		if err != nil {
			return nil, err
		}
		out := make([]cond, len(sids))
		for i, sid := range sids {
			out[i] = cond{tab: tabToken, where: "$.code = ? AND $.sid = ?", args: []any{v.Code, sid}, ordered: true, unique: true}
		}
		return out, nil
	}
	sid, ok := ex.v.systemID(v.System)
	if !ok {
		return nil, nil
	}
	if v.Code == "" {
		return []cond{{tab: tabToken, where: "$.sid = ? AND $.code <> ''", args: []any{sid}}}, nil
	}
	return []cond{{tab: tabToken, where: "$.code = ? AND $.sid = ?", args: []any{v.Code, sid}, ordered: true, unique: true}}, nil
}

// urlTypeID splits the last two path segments of an absolute URL as the
// indexer does for references ("…/Patient/123").
func urlTypeID(url string) (typ, id string, ok bool) {
	i := strings.LastIndexByte(url, '/')
	if i <= 0 {
		return "", "", false
	}
	j := strings.LastIndexByte(url[:i], '/')
	if j < 0 {
		return "", "", false
	}
	typ, id = url[j+1:i], url[i+1:]
	return typ, id, typ != "" && fhir.ValidID(id)
}

// uriBelow is search's rule for :below and :above: uri is base or lies
// under it by path segments.
func uriBelow(uri, base string) bool {
	if uri == base {
		return true
	}
	return strings.HasPrefix(uri, strings.TrimSuffix(base, "/")+"/")
}

// distinct returns the distinct values of an integer key column of an index
// table among the rows selected by where (on a key prefix), one index seek
// per value (a loose index scan); it serves where the values are few:
// the systems of one code, the target types of one parameter.
func (ex *exec) distinct(table, col, where string, args ...any) ([]int64, error) {
	q := `WITH RECURSIVE s(v) AS (
		SELECT (SELECT ` + col + ` FROM ` + table + ` WHERE ` + where + ` ORDER BY ` + col + ` LIMIT 1)
		UNION ALL
		SELECT (SELECT ` + col + ` FROM ` + table + ` WHERE ` + where + ` AND ` + col + ` > s.v ORDER BY ` + col + ` LIMIT 1) FROM s WHERE s.v IS NOT NULL
	) SELECT v FROM s WHERE v IS NOT NULL`
	rows, err := ex.v.q.QueryContext(ex.ctx, q, append(append([]any{}, args...), args...)...)
	if err != nil {
		return nil, ex.err(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, ex.err(rows.Err())
}
