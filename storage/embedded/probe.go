package embedded

import (
	"strings"

	"regie/fhir"
	"regie/fhir/search"
)

// maxProbes is the most index lookups one candidate's probe of a conjunct
// may take; beyond it the conjunct is tested on the entry list.
const maxProbes = 8

// probe returns, for a conjunct that index lookups by rid can decide, an
// SQL condition on the candidate's rid (written "$rid"): token, :of-type
// and uri equality, :identifier, and local or absolute references, each an
// EXISTS of one key of its table (pid, value…, rid), and dates, an EXISTS
// on idx_date_rid (pid, rid); And, Or and Not of those. A candidate is then tested by SQLite without reading its entry
// list, and a search whose filters are all probes is counted in SQL. It
// reports false for anything else (tested on the entry list instead).
func (ex *exec) probe(e search.Expr, sc scope) (string, []any, bool, error) {
	n := 0
	var walk func(e search.Expr) (string, []any, bool, error)
	walk = func(e search.Expr) (string, []any, bool, error) {
		switch x := e.(type) {
		case search.And, search.Or:
			var es []search.Expr
			op, empty := " AND ", "1"
			if o, ok := x.(search.Or); ok {
				es, op, empty = o, " OR ", "0"
			} else {
				es = x.(search.And)
			}
			if len(es) == 0 {
				return empty, nil, true, nil
			}
			var parts []string
			var args []any
			for _, c := range es {
				w, a, ok, err := walk(c)
				if !ok || err != nil {
					return "", nil, false, err
				}
				parts = append(parts, "("+w+")")
				args = append(args, a...)
			}
			return strings.Join(parts, op), args, true, nil
		case search.Not:
			w, a, ok, err := walk(x.X)
			if !ok || err != nil {
				return "", nil, false, err
			}
			return "NOT (" + w + ")", a, true, nil
		case *search.Match:
			return ex.probeMatch(x, sc, &n)
		}
		return "", nil, false, nil
	}
	return walk(e)
}

func (ex *exec) probeMatch(m *search.Match, sc scope, n *int) (string, []any, bool, error) {
	if m.Modifier == "missing" || strings.HasPrefix(m.Param, "_") || checkModifier(m) != nil {
		return "", nil, false, nil
	}
	switch {
	case m.Type == fhir.ParamToken && (m.Modifier == "" || m.Modifier == "of-type"):
	case m.Type == fhir.ParamReference && (m.Modifier == "" || m.Modifier == "identifier"):
	case m.Type == fhir.ParamURI && m.Modifier == "":
	case m.Type == fhir.ParamDate && m.Modifier == "":
	default:
		return "", nil, false, nil
	}
	pids := ex.pids(m.Param, sc)
	if len(pids) == 0 {
		return "0", nil, true, nil
	}
	if m.Type == fhir.ParamDate {
		// One lookup of idx_date_rid (pid, rid) per parameter id, the
		// values' conditions on its few rows.
		var ors []string
		var args []any
		for _, p := range pids {
			if *n++; *n > maxProbes {
				return "", nil, false, nil
			}
			var conds []string
			args = append(args, p.pid)
			for i := range m.Values {
				for _, c := range dateConds(&m.Values[i]) {
					conds = append(conds, "("+alias(c.where, "x")+")")
					args = append(args, c.args...)
				}
			}
			if len(conds) == 0 {
				conds = []string{"0"}
			}
			ors = append(ors, "EXISTS (SELECT 1 FROM idx_date x INDEXED BY idx_date_rid WHERE x.pid = ? AND x.rid = $rid AND ("+
				strings.Join(conds, " OR ")+"))")
		}
		return strings.Join(ors, " OR "), args, true, nil
	}
	var ors []string
	var args []any
	for _, p := range pids {
		for i := range m.Values {
			cs, err := ex.valueConds(m, &m.Values[i], p.tid, p.pid, true)
			if err != nil {
				return "", nil, false, err
			}
			for _, c := range cs {
				if !c.ordered {
					return "", nil, false, nil // not a key lookup
				}
				if *n++; *n > maxProbes {
					return "", nil, false, nil
				}
				t := tables[c.tab].name
				ors = append(ors, "EXISTS (SELECT 1 FROM "+t+" x WHERE x.pid = ? AND "+alias(c.where, "x")+" AND x.rid = $rid)")
				args = append(append(args, p.pid), c.args...)
			}
		}
	}
	if len(ors) == 0 {
		return "0", nil, true, nil
	}
	return strings.Join(ors, " OR "), args, true, nil
}
