package embedded

import (
	"fmt"
	"strings"

	"regie/fhir"
	"regie/fhir/search"
)

// scanSQL returns the statement that reads a batch of candidates of d: the
// resources row (and the entry lists, with entries), rid after from (before
// it when desc), at most limit rows, in rid order. Duplicated rids (a
// resource in two arms, or with two matching rows) come next to each other.
func scanSQL(p *plan, desc, entries bool) func(from int64, limit int) (string, []any) {
	d := p.drv
	cols := "r.rid, r.tid, r.id, r.version, r.vid"
	join := ""
	if entries {
		cols += ", e.list, e.rows"
		join = " LEFT JOIN entries e ON e.rid = r.rid"
	}
	op, ord := " > ?", " ASC"
	if desc {
		op, ord = " < ?", " DESC"
	}
	arms := d.arms
	ordered := true
	for i := range arms {
		if !arms[i].ordered || arms[i].raw != "" {
			ordered = false
		}
	}
	switch {
	case len(arms) == 1 && ordered && arms[0].tab == 0:
		a := &arms[0]
		probes, pargs := p.probeSQL("r.rid")
		q := "SELECT " + cols + " FROM resources r" + join + " WHERE " + alias(a.where, "r") + " AND r.rid" + op + probes +
			" ORDER BY r.rid" + ord + " LIMIT ?"
		return func(from int64, limit int) (string, []any) {
			return q, append(append(append([]any{}, a.args...), from), append(pargs, limit)...)
		}
	case len(arms) == 1 && ordered:
		a := &arms[0]
		probes, pargs := p.probeSQL("d.rid")
		q := "SELECT " + cols + " FROM " + a.table() + " d JOIN resources r ON r.rid = d.rid" + join + " WHERE " +
			alias(a.where, "d") + " AND d.rid" + op + probes + " ORDER BY d.rid" + ord + " LIMIT ?"
		return func(from int64, limit int) (string, []any) {
			return q, append(append(append([]any{}, a.args...), from), append(pargs, limit)...)
		}
	case ordered && len(arms) <= maxMergeArms && len(p.probes) == 0:
		parts := make([]string, len(arms))
		for i := range arms {
			parts[i] = arms[i].sel(" AND rid" + op)
		}
		q := "SELECT " + cols + " FROM (" + strings.Join(parts, " UNION ") + " ORDER BY 1" + ord + " LIMIT ?) d" +
			" JOIN resources r ON r.rid = d.rid" + join + " ORDER BY r.rid" + ord
		return func(from int64, limit int) (string, []any) {
			var args []any
			for i := range arms {
				args = append(append(args, arms[i].args...), from)
			}
			return q, append(args, limit)
		}
	case ordered && len(arms) <= maxMergeArms:
		// Probes apply after the merge, so it is not limited.
		parts := make([]string, len(arms))
		for i := range arms {
			parts[i] = arms[i].sel(" AND rid" + op)
		}
		probes, pargs := p.probeSQL("d.rid")
		q := "SELECT " + cols + " FROM (" + strings.Join(parts, " UNION ") + ") d" +
			" JOIN resources r ON r.rid = d.rid" + join + " WHERE 1" + probes + " ORDER BY d.rid" + ord + " LIMIT ?"
		return func(from int64, limit int) (string, []any) {
			var args []any
			for i := range arms {
				args = append(append(args, arms[i].args...), from)
			}
			return q, append(append(args, pargs...), limit)
		}
	}
	parts := make([]string, len(arms))
	var base []any
	for i := range arms {
		parts[i] = arms[i].sel("")
		base = append(base, arms[i].args...)
	}
	probes, pargs := p.probeSQL("r.rid")
	q := "SELECT " + cols + " FROM resources r" + join + " WHERE r.rid IN (" + strings.Join(parts, " UNION ALL ") +
		") AND r.rid" + op + probes + " ORDER BY r.rid" + ord + " LIMIT ?"
	return func(from int64, limit int) (string, []any) {
		return q, append(append(append([]any{}, base...), from), append(pargs, limit)...)
	}
}

// scan calls fn with every candidate of p that passes its filters, in rid
// order (descending with desc) after rid from (before it with desc), until
// fn returns false. want is how many fn is expected to take (it sizes the
// batches); entries makes the candidates' entries available to fn.
func (ex *exec) scan(p *plan, from int64, desc bool, want int, entries bool, fn func(c *cand) bool) error {
	if p.none || len(p.drv.arms) == 0 {
		return nil
	}
	entries = entries || p.entries
	build := scanSQL(p, desc, entries)
	batch := want + 1
	if len(p.filters) > 0 {
		batch = max(2*want, 32)
	}
	batch = min(batch, 4096)
	last := int64(-1)
	var buf []search.Entry
	for {
		q, args := build(from, batch)
		rows, err := ex.v.q.QueryContext(ex.ctx, q, args...)
		if err != nil {
			return ex.err(err)
		}
		n := 0
		stop := false
		for rows.Next() {
			n++
			c := cand{v: ex.v, buf: &buf}
			if entries {
				err = rows.Scan(&c.rid, &c.tid, &c.id, &c.version, &c.vid, &c.list, &c.rows)
			} else {
				err = rows.Scan(&c.rid, &c.tid, &c.id, &c.version, &c.vid)
			}
			if err != nil {
				rows.Close()
				return err
			}
			from = c.rid
			if c.rid == last {
				continue
			}
			last = c.rid
			ok := true
			for _, f := range p.filters {
				if !f(&c) {
					ok = false
					break
				}
			}
			if c.err != nil {
				rows.Close()
				return c.err
			}
			if ok && !fn(&c) {
				stop = true
				break
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return ex.err(err)
		}
		if stop || n < batch {
			return nil
		}
		batch = min(batch*4, 4096)
	}
}

// all returns every candidate of p, in rid order.
func (ex *exec) all(p *plan, entries bool) ([]*cand, error) {
	var out []*cand
	err := ex.scan(p, 0, false, 1<<20, entries, func(c *cand) bool {
		out = append(out, c.keep())
		return true
	})
	return out, err
}

// count returns the number of candidates of p: on the index tables when
// there are no filters, else by scanning.
func (ex *exec) count(p *plan) (int, error) {
	if p.none || len(p.drv.arms) == 0 {
		return 0, nil
	}
	if len(p.filters) > 0 {
		n := 0
		err := ex.scan(p, 0, false, 4096, false, func(*cand) bool { n++; return true })
		return n, err
	}
	d := p.drv
	one := func(q string, args ...any) (int, error) {
		var n int
		if err := ex.v.q.QueryRowContext(ex.ctx, q, args...).Scan(&n); err != nil {
			return 0, ex.err(err)
		}
		return n, nil
	}
	// One arm, or arms that do not overlap: count each where it lies.
	if len(d.arms) == 1 || d.disjoint {
		total := 0
		for i := range d.arms {
			a := &d.arms[i]
			var q string
			var args []any
			switch {
			case a.raw == "" && a.unique:
				probes, pargs := p.probeSQL("d.rid")
				q = "SELECT count(*) FROM " + a.table() + " d WHERE " + alias(a.where, "d") + probes
				args = append(append(args, a.args...), pargs...)
			case a.raw == "":
				probes, pargs := p.probeSQL("d.rid")
				q = "SELECT count(DISTINCT d.rid) FROM " + a.table() + " d WHERE " + alias(a.where, "d") + probes
				args = append(append(args, a.args...), pargs...)
			default:
				probes, pargs := p.probeSQL("d.rid")
				q = "SELECT count(DISTINCT d.rid) FROM (" + a.raw + ") d WHERE 1" + probes
				args = append(append(args, a.args...), pargs...)
			}
			n, err := one(q, args...)
			if err != nil {
				return 0, err
			}
			total += n
		}
		return total, nil
	}
	parts := make([]string, len(d.arms))
	var args []any
	for i := range d.arms {
		parts[i] = d.arms[i].sel("")
		args = append(args, d.arms[i].args...)
	}
	probes, pargs := p.probeSQL("d.rid")
	return one("SELECT count(*) FROM ("+strings.Join(parts, " UNION ")+") d WHERE 1"+probes, append(args, pargs...)...)
}

// chainSet returns the ids of the current resources of x.Target that
// match x.Where (and the search's constraint, see exec.traverse).
func (ex *exec) chainSet(x *search.Chain) (map[string]bool, error) {
	if s, ok := ex.chains[x]; ok {
		return s, nil
	}
	set := map[string]bool{}
	if tid, ok := ex.v.lookup(x.Target); ok {
		p, err := ex.plan(scope{tids: []int64{tid}}, ex.within(x, x.Where))
		if err != nil {
			return nil, err
		}
		err = ex.scan(p, 0, false, 4096, false, func(c *cand) bool { set[c.id] = true; return true })
		if err != nil {
			return nil, err
		}
	}
	ex.chains[x] = set
	return set, nil
}

// hasSet returns the local references ("Type/id") made through x.Param by
// the current resources of x.Type that match x.Where (and the search's
// constraint, see exec.traverse).
func (ex *exec) hasSet(x *search.Has) (map[string]bool, error) {
	if s, ok := ex.has[x]; ok {
		return s, nil
	}
	set := map[string]bool{}
	if tid, ok := ex.v.lookup(x.Type); ok {
		p, err := ex.plan(scope{tids: []int64{tid}}, ex.within(x, x.Where))
		if err != nil {
			return nil, err
		}
		err = ex.scan(p, 0, false, 4096, true, func(c *cand) bool {
			for _, e := range c.entries() {
				if e.Param == x.Param && e.URL == "" && e.RefID != "" && e.RefType != "" {
					set[e.RefType+"/"+e.RefID] = true
				}
			}
			return c.err == nil
		})
		if err != nil {
			return nil, err
		}
	}
	ex.has[x] = set
	return set, nil
}

// sortKey is a resource's value for one _sort key (see search docs: the
// lowest value for ascending order, the highest for descending; ok is
// false when it has none).
type sortKey struct {
	str string
	num float64
	ok  bool
}

// sortKeys computes c's keys for sorts.
func (c *cand) keys(sorts []search.Sort) []sortKey {
	out := make([]sortKey, len(sorts))
	for k, s := range sorts {
		switch s.Param {
		case "_id":
			out[k] = sortKey{str: c.id, ok: true}
			continue
		case "_lastUpdated":
			out[k] = sortKey{num: float64(c.vid), ok: true}
			continue
		case "_type":
			out[k] = sortKey{str: c.typeName(), ok: true}
			continue
		}
		str, num, ok := search.SortKey(c.entries(), s)
		out[k] = sortKey{str: str, num: num, ok: ok}
	}
	return out
}

// compareKeys orders two resources by their sort keys (missing values
// last, in either direction), then by rid.
func compareKeys(sorts []search.Sort, a []sortKey, arid int64, b []sortKey, brid int64) int {
	for k, s := range sorts {
		x, y := a[k], b[k]
		switch {
		case x.ok != y.ok:
			if x.ok {
				return -1
			}
			return 1
		case !x.ok:
			continue
		}
		c := strings.Compare(x.str, y.str)
		if c == 0 {
			switch {
			case x.num < y.num:
				c = -1
			case x.num > y.num:
				c = 1
			}
		}
		if s.Desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	switch {
	case arid < brid:
		return -1
	case arid > brid:
		return 1
	}
	return 0
}

// checkSorts rejects sorts the store cannot do.
func checkSorts(sorts []search.Sort) error {
	for _, s := range sorts {
		switch s.Type {
		case fhir.ParamDate, fhir.ParamNumber, fhir.ParamQuantity, fhir.ParamString, fhir.ParamURI, fhir.ParamToken, fhir.ParamReference:
		default:
			return unsupported(fmt.Sprintf("_sort on a %s parameter (%s)", s.Type, s.Param))
		}
	}
	return nil
}
