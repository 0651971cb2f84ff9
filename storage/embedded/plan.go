package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"regie/fhir"
	"regie/fhir/search"
)

// How a search runs (docs/storage.md, "Search"):
//
// The conditions of a query (Where and Constraint) are a conjunction of
// conjuncts. One of them drives: it is turned into arms, SQL selects of
// rids over one index table each (or over resources), which yield the
// candidates in rid order. Every other conjunct is a filter: those that an
// index lookup by rid decides (tokens, references, uris, dates: probe.go)
// are tested in SQL, the rest per candidate on its entry list
// (entries.list) by (*search.Match).Matches itself. The driver is the
// conjunct with the fewest rows by a bounded count, so filters test few
// candidates. Chains and _has are evaluated first into sets of ids
// (through the same machinery), which then serve as arms or as filters.

// exec runs one search (and its sub-searches: chains, _has, includes,
// constraints of includes) on one snapshot.
type exec struct {
	v   *view
	ctx context.Context
	// Sets of chains and _has, evaluated once per search.
	chains map[*search.Chain]map[string]bool
	has    map[*search.Has]map[string]bool
	// traverse is the search's constraint: the resources a chain or _has
	// passes through must satisfy it too, so that neither reveals what
	// the caller may not see. The chains and _has of the constraint itself
	// (free) are not limited by it.
	traverse []search.Expr
	free     map[search.Expr]bool
}

// constrain makes the conjuncts of constraint limit what chains and _has
// traverse.
func (ex *exec) constrain(constraint search.Expr) {
	ex.traverse = flatten(nil, constraint)
	search.Walk(constraint, func(e search.Expr) {
		switch x := e.(type) {
		case *search.Chain:
			ex.free[x] = true
		case *search.Has:
			ex.free[x] = true
		}
	})
}

// within returns the conjuncts of a chain's or _has's inner query.
func (ex *exec) within(node, where search.Expr) []search.Expr {
	conj := flatten(nil, where)
	if !ex.free[node] {
		conj = append(conj, ex.traverse...)
	}
	return conj
}

func newExec(ctx context.Context, v *view) *exec {
	return &exec{v: v, ctx: ctx, chains: map[*search.Chain]map[string]bool{}, has: map[*search.Has]map[string]bool{},
		free: map[search.Expr]bool{}}
}

// err maps a database error: the context's error when it is done.
func (ex *exec) err(err error) error {
	if err == nil {
		return nil
	}
	return ctxOr(ex.ctx, err)
}

// scope is the set of resource types a (sub)query covers.
type scope struct {
	all  bool    // every type
	tids []int64 // otherwise, sorted
}

func (sc scope) empty() bool { return !sc.all && len(sc.tids) == 0 }

// narrow keeps the types of sc that are in tids.
func (sc scope) narrow(tids []int64) scope {
	if sc.all {
		return scope{tids: tids}
	}
	var out []int64
	for _, t := range sc.tids {
		if slices.Contains(tids, t) {
			out = append(out, t)
		}
	}
	return scope{tids: out}
}

// types lists the type ids of sc.
func (ex *exec) types(sc scope) []int64 {
	if sc.all {
		return ex.v.typeIDs()
	}
	return sc.tids
}

// pids returns the parameter ids of code for the types of sc.
func (ex *exec) pids(code string, sc scope) []paramRef {
	if sc.all {
		return ex.v.paramsByCode(code)
	}
	var out []paramRef
	for _, tid := range sc.tids {
		if pid, ok := ex.v.paramID(tid, code); ok {
			out = append(out, paramRef{tid, pid})
		}
	}
	return out
}

// scopeOf returns the scope of Query.Types (empty: every type).
func (ex *exec) scopeOf(types []string) scope {
	if len(types) == 0 {
		return scope{all: true}
	}
	var tids []int64
	for _, t := range types {
		if tid, ok := ex.v.lookup(t); ok && !slices.Contains(tids, tid) {
			tids = append(tids, tid)
		}
	}
	slices.Sort(tids)
	return scope{tids: tids}
}

// arm is one SQL select of rids: over an index table (tab) or resources
// (tab 0) with a condition, or a raw select.
type arm struct {
	tab   byte
	where string // "$." placeholders for the table
	raw   string // "SELECT rid …" (then tab and where are unused)
	args  []any
	// ordered: rids come in ascending order; unique: no rid twice.
	ordered, unique bool
}

func (a *arm) table() string {
	if a.tab == 0 {
		return "resources"
	}
	return tables[a.tab].name
}

// sel returns "SELECT rid FROM … WHERE …" (its arguments are a.args),
// with extra appended to the condition (for raw arms, in an outer select).
func (a *arm) sel(extra string) string {
	if a.raw != "" {
		if extra == "" {
			return a.raw
		}
		return "SELECT rid FROM (" + a.raw + ") WHERE 1" + extra
	}
	t := a.table()
	return "SELECT rid FROM " + t + " WHERE " + alias(a.where, t) + extra
}

// driver is the arms of one conjunct.
type driver struct {
	arms []arm
	// exact: the arms select exactly the conjunct's matches (else a
	// superset, and the conjunct stays a filter).
	exact bool
	// disjoint: no rid is in two arms, and no arm repeats a rid, so
	// counts add up.
	disjoint bool
}

// rank orders drivers by how cheaply they page: 0 is best.
func (d *driver) rank() int {
	ordered := true
	for i := range d.arms {
		if !d.arms[i].ordered || d.arms[i].raw != "" {
			ordered = false
		}
	}
	switch {
	case len(d.arms) <= 1 && ordered && d.disjoint:
		return 0
	case len(d.arms) <= 1 && ordered:
		return 1
	case ordered && len(d.arms) <= maxMergeArms:
		return 2
	}
	return 3
}

// maxMergeArms is the most ordered arms merged (UNION with ORDER BY)
// rather than collected and sorted.
const maxMergeArms = 16

// universe returns the arms selecting every current resource of sc.
func (ex *exec) universe(sc scope) *driver {
	if sc.all {
		return &driver{arms: []arm{{where: "$.deleted = 0", ordered: true, unique: true}}, exact: true, disjoint: true}
	}
	d := &driver{exact: true, disjoint: true}
	for _, tid := range sc.tids {
		d.arms = append(d.arms, arm{where: "$.tid = ? AND $.deleted = 0", args: []any{tid}, ordered: true, unique: true})
	}
	return d
}

// typeTids returns the types of sc that a plain _type match selects, and
// false when m is not one (a modifier).
func (ex *exec) typeTids(m *search.Match, sc scope) ([]int64, bool) {
	if m.Param != "_type" || m.Modifier != "" {
		return nil, false
	}
	var out []int64
	for _, tid := range ex.types(sc) {
		e := [1]search.Entry{{Param: "_type", Type: fhir.ParamToken, Code: ex.v.typeName(tid)}}
		if m.Matches(e[:]) {
			out = append(out, tid)
		}
	}
	return out, true
}

// driverOf returns the arms of conjunct e within sc, or nil when e cannot
// drive (Not, :missing, _lastUpdated, nil).
func (ex *exec) driverOf(e search.Expr, sc scope) (*driver, error) {
	switch x := e.(type) {
	case *search.Match:
		return ex.matchDriver(x, sc)
	case *search.Chain:
		set, err := ex.chainSet(x)
		if err != nil {
			return nil, err
		}
		d := &driver{exact: true}
		ttid, ok := ex.v.lookup(x.Target)
		if !ok || len(set) == 0 {
			return d, nil
		}
		ids := jsonList(set)
		for _, p := range ex.pids(x.Param, sc) {
			d.arms = append(d.arms, arm{raw: "SELECT rid FROM idx_reference WHERE pid = ? AND rtid = ? AND url = '' AND ref IN (SELECT value FROM json_each(?))",
				args: []any{p.pid, ttid, ids}})
		}
		return d, nil
	case *search.Has:
		set, err := ex.hasSet(x)
		if err != nil {
			return nil, err
		}
		d := &driver{exact: true, disjoint: true}
		byType := map[string][]string{}
		for ref := range set {
			t, id, _ := strings.Cut(ref, "/")
			byType[t] = append(byType[t], id)
		}
		for _, tid := range ex.types(sc) {
			ids := byType[ex.v.typeName(tid)]
			if len(ids) == 0 {
				continue
			}
			slices.Sort(ids)
			b, _ := json.Marshal(ids)
			d.arms = append(d.arms, arm{raw: "SELECT rid FROM resources WHERE tid = ? AND deleted = 0 AND id IN (SELECT value FROM json_each(?))",
				args: []any{tid, string(b)}, unique: true})
		}
		return d, nil
	case search.Or:
		d := &driver{exact: true}
		for _, c := range x {
			cd, err := ex.driverOf(c, sc)
			if err != nil || cd == nil {
				return nil, err
			}
			d.arms = append(d.arms, cd.arms...)
			d.exact = d.exact && cd.exact
			if len(x) == 1 {
				d.disjoint = cd.disjoint
			}
		}
		return d, nil
	case search.And:
		var rest []search.Expr
		for _, c := range x {
			if m, ok := c.(*search.Match); ok {
				if tids, ok := ex.typeTids(m, sc); ok {
					sc = sc.narrow(tids)
					continue
				}
			}
			if c != nil {
				rest = append(rest, c)
			}
		}
		if sc.empty() {
			return &driver{exact: true, disjoint: true}, nil
		}
		if len(rest) == 0 {
			return ex.universe(sc), nil
		}
		var best *driver
		for _, c := range rest {
			d, err := ex.driverOf(c, sc)
			if err != nil {
				return nil, err
			}
			if d != nil && (best == nil || d.rank() < best.rank()) {
				best = d
			}
		}
		if best == nil {
			// Every resource of the (narrowed) types, tested by the filter.
			best = ex.universe(sc)
			best.exact = false
		}
		if len(rest) > 1 {
			best.exact = false
		}
		return best, nil
	}
	return nil, nil
}

// jsonList renders a set of strings as a sorted JSON array (for json_each).
func jsonList(set map[string]bool) string {
	l := make([]string, 0, len(set))
	for s := range set {
		l = append(l, s)
	}
	slices.Sort(l)
	b, _ := json.Marshal(l)
	return string(b)
}

// maxArms is the most arms a Match's values make before they are grouped.
const maxArms = 64

func (ex *exec) matchDriver(m *search.Match, sc scope) (*driver, error) {
	if err := checkModifier(m); err != nil {
		return nil, err
	}
	switch m.Param {
	case "_id":
		if m.Modifier != "" {
			return nil, nil
		}
		var ids []string
		for _, v := range m.Values {
			if (v.AnySystem || v.System == "") && v.Code != "" && !slices.Contains(ids, v.Code) {
				ids = append(ids, v.Code)
			}
		}
		tids := ex.types(sc)
		d := &driver{exact: true, disjoint: true}
		if len(ids) == 0 || len(tids) == 0 {
			return d, nil
		}
		if len(ids)*len(tids) <= maxMergeArms {
			for _, tid := range tids {
				for _, id := range ids {
					d.arms = append(d.arms, arm{where: "$.tid = ? AND $.id = ? AND $.deleted = 0", args: []any{tid, id}, ordered: true, unique: true})
				}
			}
			return d, nil
		}
		b, _ := json.Marshal(ids)
		var in []string
		args := []any{}
		for _, tid := range tids {
			in = append(in, "?")
			args = append(args, tid)
		}
		d.arms = []arm{{where: "$.tid IN (" + strings.Join(in, ", ") + ") AND $.id IN (SELECT value FROM json_each(?)) AND $.deleted = 0",
			args: append(args, string(b)), unique: true}}
		return d, nil
	case "_type":
		tids, ok := ex.typeTids(m, sc)
		if !ok {
			return nil, nil
		}
		return ex.universe(sc.narrow(tids)), nil
	case "_lastUpdated":
		return nil, nil
	}
	if m.Modifier == "missing" {
		return nil, nil
	}
	d := &driver{exact: true}
	if m.Type == fhir.ParamComposite {
		// Composites have no rows of their own, only their components'.
		for _, tid := range ex.types(sc) {
			for i := range m.Values {
				a, err := ex.compositeArm(m, &m.Values[i], tid)
				if err != nil {
					return nil, err
				}
				if a != nil {
					d.arms = append(d.arms, *a)
				}
			}
		}
		return d, nil
	}
	for _, p := range ex.pids(m.Param, sc) {
		arms, err := ex.valueArms(m, p)
		if err != nil {
			return nil, err
		}
		d.arms = append(d.arms, arms...)
	}
	d.disjoint = len(d.arms) == 1 && d.arms[0].unique
	return d, nil
}

// valueArms returns the arms of m's values for one parameter id. Long
// value lists (constraints over many patients) are grouped: local
// references by target type, tokens by system, with the values passed as
// one JSON array; any other long list becomes one OR-ed arm.
func (ex *exec) valueArms(m *search.Match, p paramRef) ([]arm, error) {
	loose := len(m.Values) <= 8
	var out []arm
	var rest []search.Value
	if len(m.Values) > maxArms/4 {
		groups := map[[2]int64][]string{} // (table, key id) → values
		var order [][2]int64
		for _, v := range m.Values {
			var k [2]int64
			var val string
			switch {
			case m.Type == fhir.ParamReference && m.Modifier == "" && v.URL == "" && v.RefType != "" && v.RefID != "" && v.Version == "":
				rtid, ok := ex.v.lookup(v.RefType)
				if !ok {
					continue
				}
				k, val = [2]int64{int64(tabReference), rtid}, v.RefID
			case (m.Type == fhir.ParamToken && m.Modifier == "" || m.Type == fhir.ParamReference && m.Modifier == "identifier") &&
				!v.AnySystem && v.Code != "":
				sid, ok := ex.v.systemID(v.System)
				if !ok {
					continue
				}
				k, val = [2]int64{int64(tabToken), sid}, v.Code
			default:
				rest = append(rest, v)
				continue
			}
			if _, ok := groups[k]; !ok {
				order = append(order, k)
			}
			groups[k] = append(groups[k], val)
		}
		for _, k := range order {
			vals := groups[k]
			slices.Sort(vals)
			b, _ := json.Marshal(slices.Compact(vals))
			if byte(k[0]) == tabReference {
				out = append(out, arm{tab: tabReference, where: "$.pid = ? AND $.rtid = ? AND $.ref IN (SELECT value FROM json_each(?)) AND $.url = ''",
					args: []any{p.pid, k[1], string(b)}})
			} else {
				out = append(out, arm{tab: tabToken, where: "$.pid = ? AND $.code IN (SELECT value FROM json_each(?)) AND $.sid = ?",
					args: []any{p.pid, string(b), k[1]}})
			}
		}
	} else {
		rest = m.Values
	}
	var conds []cond
	for i := range rest {
		cs, err := ex.valueConds(m, &rest[i], p.tid, p.pid, loose)
		if err != nil {
			return nil, err
		}
		conds = append(conds, cs...)
	}
	if len(conds) > maxArms {
		// One arm per table, the conditions OR-ed.
		byTab := map[byte][]string{}
		args := map[byte][]any{}
		for _, c := range conds {
			byTab[c.tab] = append(byTab[c.tab], "("+c.where+")")
			args[c.tab] = append(args[c.tab], c.args...)
		}
		for t, ws := range byTab {
			out = append(out, arm{tab: t, where: "$.pid = ? AND (" + strings.Join(ws, " OR ") + ")", args: append([]any{p.pid}, args[t]...)})
		}
		return out, nil
	}
	for _, c := range conds {
		out = append(out, arm{tab: c.tab, where: "$.pid = ? AND " + c.where, args: append([]any{p.pid}, c.args...),
			ordered: c.ordered, unique: c.unique})
	}
	return out, nil
}

// compositeArm selects the resources of type tid in which one group of
// component entries matches every component of v.
func (ex *exec) compositeArm(m *search.Match, v *search.Value, tid int64) (*arm, error) {
	if len(v.Components) == 0 {
		return nil, nil
	}
	var sel string
	var args []any
	for i, c := range v.Components {
		if len(c.Values) != 1 || c.Modifier == "missing" || c.Type == fhir.ParamComposite {
			return nil, unsupported("composite component " + c.Param)
		}
		if err := checkModifier(c); err != nil {
			return nil, err
		}
		pid, ok := ex.v.paramID(tid, c.Param)
		if !ok {
			return nil, nil
		}
		cs, err := ex.valueConds(c, &c.Values[0], tid, pid, false)
		if err != nil {
			return nil, err
		}
		if len(cs) == 0 {
			return nil, nil
		}
		t := tables[cs[0].tab].name
		var ors []string
		var oargs []any
		for _, cd := range cs {
			if cd.tab != cs[0].tab {
				return nil, unsupported("composite component " + c.Param)
			}
			ors = append(ors, "("+alias(cd.where, t)+")")
			oargs = append(oargs, cd.args...)
		}
		w := "pid = ? AND (" + strings.Join(ors, " OR ") + ")"
		if i == 0 {
			sel = "SELECT rid, grp FROM " + t + " WHERE " + w
			args = append(append(args, pid), oargs...)
			continue
		}
		sel = "SELECT rid, grp FROM " + t + " WHERE " + w + " AND (rid, grp) IN (" + sel + ")"
		args = append(append([]any{pid}, oargs...), args...)
	}
	return &arm{raw: "SELECT DISTINCT rid FROM (" + sel + ")", args: args, unique: true}, nil
}

// flatten returns the conjuncts of e (nested Ands flattened; nil dropped).
func flatten(out []search.Expr, e search.Expr) []search.Expr {
	switch x := e.(type) {
	case nil:
		return out
	case search.And:
		for _, c := range x {
			out = flatten(out, c)
		}
		return out
	}
	return append(out, e)
}

// plan is a compiled conjunction: a driver and per-candidate filters.
type plan struct {
	sc      scope
	drv     *driver
	filters []func(*cand) bool
	// entries: the filters read entry lists.
	entries bool
	// probes are conjuncts tested in SQL by index lookups ("$rid" is the
	// candidate's rid), ANDed.
	probes    []string
	probeArgs []any
	// none: nothing can match.
	none bool
}

// estimateCap bounds the rows counted to estimate a driver: below it the
// smallest conjunct drives; above it the one that pages best.
const estimateCap = 1000

// plan compiles the conjunction of conj over sc.
func (ex *exec) plan(sc scope, conj []search.Expr) (*plan, error) {
	p := &plan{sc: sc}
	var rest []search.Expr
	for _, c := range conj {
		if m, ok := c.(*search.Match); ok {
			if tids, ok := ex.typeTids(m, sc); ok {
				sc = sc.narrow(tids)
				continue
			}
		}
		if o, ok := c.(search.Or); ok && len(o) == 0 {
			p.none = true
			return p, nil
		}
		rest = append(rest, c)
	}
	p.sc = sc
	if sc.empty() {
		p.none = true
		return p, nil
	}
	type option struct {
		i   int
		d   *driver
		est int
	}
	var opts []option
	for i, c := range rest {
		d, err := ex.driverOf(c, sc)
		if err != nil {
			return nil, err
		}
		if d != nil {
			opts = append(opts, option{i: i, d: d, est: -1})
		}
	}
	slices.SortStableFunc(opts, func(a, b option) int { return a.d.rank() - b.d.rank() })
	best := -1
	for k := range opts {
		o := &opts[k]
		if best >= 0 && (opts[best].est < 64 || o.d.rank() == 3 && opts[best].est < estimateCap) {
			break
		}
		n, err := ex.estimate(o.d, estimateCap)
		if err != nil {
			return nil, err
		}
		o.est = n
		if n == 0 {
			p.none = true
			return p, nil
		}
		if best < 0 || n < opts[best].est {
			best = k
		}
	}
	// When several single ranges reach the bound they cannot be told
	// apart, and the wrong one can cost much (the code of a million
	// observations against the hundreds of one patient): count those
	// further, once. (Counting a single range is cheap; unions are not.)
	further := func(o *option) bool { return o.est >= estimateCap && o.d.rank() <= 1 }
	capped := 0
	for k := range opts {
		if further(&opts[k]) {
			capped++
		}
	}
	if best >= 0 && further(&opts[best]) && capped > 1 {
		for k := range opts {
			o := &opts[k]
			if !further(o) {
				continue
			}
			n, err := ex.estimate(o.d, 8*estimateCap)
			if err != nil {
				return nil, err
			}
			o.est = n
			if n < opts[best].est {
				best = k
			}
		}
	}
	skip := -1
	if best >= 0 {
		p.drv = opts[best].d
		if p.drv.exact {
			skip = opts[best].i
		}
	} else {
		p.drv = ex.universe(sc)
	}
	for i, c := range rest {
		if i == skip {
			continue
		}
		w, a, ok, err := ex.probe(c, sc)
		if err != nil {
			return nil, err
		}
		if ok {
			p.probes = append(p.probes, "("+w+")")
			p.probeArgs = append(p.probeArgs, a...)
			continue
		}
		f, entries, err := ex.pred(c, sc)
		if err != nil {
			return nil, err
		}
		p.filters = append(p.filters, f)
		p.entries = p.entries || entries
	}
	return p, nil
}

// probeSQL returns the plan's probes as one condition on rid column col
// (" AND …"), and their arguments.
func (p *plan) probeSQL(col string) (string, []any) {
	if len(p.probes) == 0 {
		return "", nil
	}
	return " AND " + strings.ReplaceAll(strings.Join(p.probes, " AND "), "$rid", col), p.probeArgs
}

// estimate counts the rows of d's arms, up to limit.
func (ex *exec) estimate(d *driver, limit int) (int, error) {
	if len(d.arms) == 0 {
		return 0, nil
	}
	var parts []string
	var args []any
	for i := range d.arms {
		a := &d.arms[i]
		parts = append(parts, "SELECT 1 FROM ("+a.sel("")+")")
		args = append(args, a.args...)
	}
	q := "SELECT count(*) FROM (" + strings.Join(parts, " UNION ALL ") + " LIMIT " + fmt.Sprint(limit) + ")"
	var n int
	if err := ex.v.q.QueryRowContext(ex.ctx, q, args...).Scan(&n); err != nil {
		return 0, ex.err(err)
	}
	return n, nil
}
