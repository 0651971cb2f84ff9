package storagetest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// gen makes random search expressions from the values of a dataset, by
// writing random parameters and parsing them, so every value is one a
// request can carry.
type gen struct {
	t     *testing.T
	f     *fixture
	docs  *memDocs
	r     *rand.Rand
	types []string // types with resources
}

// seed returns base, or base plus $REGIE_SEARCH_SEED when set (to run
// other sequences of random queries).
func seed(base uint64) uint64 {
	if v, err := strconv.ParseUint(os.Getenv("REGIE_SEARCH_SEED"), 10, 64); err == nil {
		return base + v
	}
	return base
}

func newGen(t *testing.T, f *fixture, docs *memDocs, seed uint64) *gen {
	g := &gen{t: t, f: f, docs: docs, r: rand.New(rand.NewPCG(seed, 0x5eed))}
	for _, d := range docs.order {
		if !slices.Contains(g.types, d.Type) {
			g.types = append(g.types, d.Type)
		}
	}
	slices.Sort(g.types)
	return g
}

func (g *gen) pick(n int) int        { return g.r.IntN(n) }
func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

func pickOne[T any](g *gen, s []T) T { return s[g.pick(len(s))] }

// escape escapes a search value (\ , $ |).
func escape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `$`, `\$`, `|`, `\|`)
	return r.Replace(s)
}

// substr returns a random piece of s (by runes): a prefix when prefix.
func (g *gen) substr(s string, prefix bool) string {
	rs := []rune(s)
	if len(rs) == 0 {
		return ""
	}
	i := 0
	if !prefix {
		i = g.pick(len(rs))
	}
	j := i + 1 + g.pick(len(rs)-i)
	return string(rs[i:j])
}

var prefixes = []string{"", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}

// dateLiteral renders µs at a random precision, sometimes shifted.
func (g *gen) dateLiteral(us int64) string {
	if us == math.MinInt64 || us == math.MaxInt64 {
		us = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	}
	t := time.UnixMicro(us).UTC()
	switch g.pick(4) {
	case 0:
		t = t.AddDate(g.pick(5)-2, 0, 0)
	case 1:
		t = t.Add(time.Duration(g.pick(200)-100) * time.Hour)
	}
	layouts := []string{"2006", "2006-01", "2006-01-02", "2006-01-02T15:04Z", "2006-01-02T15:04:05Z", "2006-01-02T15:04:05.000000Z", "2006-01-02T15:04:05+02:00"}
	return t.Format(pickOne(g, layouts))
}

func (g *gen) numberLiteral(x float64) string {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		x = 1
	}
	switch g.pick(4) {
	case 0:
		x += float64(g.pick(3) - 1)
	case 1:
		x *= 1.05
	}
	if g.chance(0.1) && x > 10 {
		e := int(math.Floor(math.Log10(math.Abs(x))))
		return strconv.FormatFloat(x/math.Pow(10, float64(e)), 'f', g.pick(2), 64) + "e" + strconv.Itoa(e)
	}
	return strconv.FormatFloat(x, 'f', g.pick(4), 64)
}

// entriesOf returns the entries of param p over the docs of typ.
func (g *gen) entriesOf(typ, p string) []search.Entry {
	var out []search.Entry
	for _, d := range g.docs.Docs(typ) {
		for _, e := range d.Entries {
			if e.Param == p {
				out = append(out, e)
			}
		}
	}
	return out
}

// param returns a random parameter of typ: name (with modifier) and value.
func (g *gen) param(typ string, depth int) (string, string) {
	sps := g.f.defs.SearchParams(typ)
	docs := g.docs.Docs(typ)
	switch g.pick(12) {
	case 0:
		var ids []string
		for range 1 + g.pick(3) {
			if len(docs) > 0 && g.chance(0.8) {
				ids = append(ids, pickOne(g, docs).ID)
			} else {
				ids = append(ids, fmt.Sprint("nope-", g.pick(3)))
			}
		}
		if g.chance(0.2) {
			return "_id:not", ids[0]
		}
		return "_id", strings.Join(ids, ",")
	case 1:
		if len(docs) > 0 {
			lu := pickOne(g, docs).LastUpdated
			s := lu.Add(time.Duration(g.pick(3)-1) * time.Second).Format(pickOne(g, []string{"2006-01-02T15:04:05Z", "2006-01-02T15:04:05.000000Z", "2006-01-02"}))
			return "_lastUpdated", pickOne(g, prefixes) + s
		}
	}
	// A parameter with entries most of the time; any of the type's
	// parameters (for :missing and misses) otherwise.
	var withEntries []string
	for _, d := range docs {
		for _, e := range d.Entries {
			code, _, comp := strings.Cut(e.Param, "#")
			if comp {
				if sp := g.f.defs.SearchParam(typ, code); sp != nil && sp.Type == fhir.ParamComposite {
					withEntries = append(withEntries, code)
				}
				continue
			}
			withEntries = append(withEntries, code)
		}
	}
	var sp *fhir.SearchParam
	if len(withEntries) > 0 && g.chance(0.85) {
		sp = g.f.defs.SearchParam(typ, pickOne(g, withEntries))
	} else {
		var usable []*fhir.SearchParam
		for _, s := range sps {
			if s.Type != fhir.ParamSpecial && s.Expression != "" && !strings.HasPrefix(s.Code, "_") {
				usable = append(usable, s)
			}
		}
		if len(usable) == 0 {
			return "_id", "x"
		}
		sp = pickOne(g, usable)
	}
	if sp == nil {
		return "_id", "x"
	}
	if g.chance(0.08) {
		return sp.Code + ":missing", pickOne(g, []string{"true", "false"})
	}
	if sp.Type == fhir.ParamReference && depth < 2 && g.chance(0.25) {
		if name, value, ok := g.chain(typ, sp, depth); ok {
			return name, value
		}
	}
	entries := g.entriesOf(typ, sp.Code)
	var e search.Entry
	if len(entries) > 0 {
		e = pickOne(g, entries)
	}
	var vals []string
	name := sp.Code
	for range 1 + g.pick(2) {
		n, v := g.value(typ, sp, e)
		name = n
		vals = append(vals, v)
		if len(entries) > 0 {
			e = pickOne(g, entries)
		}
	}
	if strings.Contains(name, ":") {
		vals = vals[:1] // one modifier per parameter
	}
	return name, strings.Join(vals, ",")
}

// value returns a name (code with a modifier) and a value for sp from e.
func (g *gen) value(typ string, sp *fhir.SearchParam, e search.Entry) (string, string) {
	code := sp.Code
	switch sp.Type {
	case fhir.ParamString:
		s := e.Exact
		if s == "" || g.chance(0.1) {
			s = pickOne(g, []string{"a", "zz", "de", "van"})
		}
		switch g.pick(5) {
		case 0:
			return code + ":exact", escape(pickOne(g, []string{s, strings.ToLower(s), g.substr(s, true)}))
		case 1:
			return code + ":contains", escape(g.substr(e.Str+s, false))
		case 2:
			return code, escape(strings.ToUpper(g.substr(s, true)))
		}
		return code, escape(g.substr(s, true))
	case fhir.ParamToken:
		if e.TypeCode != "" && g.chance(0.3) {
			return code + ":of-type", escape(e.TypeSystem) + "|" + escape(e.TypeCode) + "|" + escape(e.Code)
		}
		if e.Text != "" && g.chance(0.3) {
			return code + ":text", escape(g.substr(e.Text, true))
		}
		c := e.Code
		if c == "" || g.chance(0.1) {
			c = pickOne(g, []string{"final", "true", "x1", "female"})
		}
		mod := ""
		if g.chance(0.15) {
			mod = ":not"
		}
		switch g.pick(5) {
		case 0:
			return code + mod, escape(e.System) + "|" + escape(c)
		case 1:
			return code + mod, "|" + escape(c)
		case 2:
			if e.System != "" {
				return code + mod, escape(e.System) + "|"
			}
		}
		return code + mod, escape(c)
	case fhir.ParamReference:
		if e.Code != "" && e.RefID == "" && e.URL == "" || g.chance(0.05) {
			if e.Code == "" {
				return code + ":identifier", "urn:x|nothing"
			}
			return code + ":identifier", escape(e.System) + "|" + escape(e.Code)
		}
		if e.URL != "" {
			v := escape(e.URL)
			if e.RefVersion != "" && g.chance(0.5) {
				v += "|" + escape(e.RefVersion)
			}
			return code, v
		}
		id, rt := e.RefID, e.RefType
		if id == "" || g.chance(0.1) {
			id, rt = "nope", pickOne(g, append(slices.Clone(sp.Target), "Patient"))
		}
		switch g.pick(4) {
		case 0:
			if slices.Contains(sp.Target, rt) {
				return code + ":" + rt, escape(id)
			}
		case 1:
			if len(sp.Target) == 1 {
				return code, escape(id)
			}
		case 2:
			if e.RefVersion != "" {
				return code, escape(rt + "/" + id + "/_history/" + e.RefVersion)
			}
		}
		return code, escape(rt + "/" + id)
	case fhir.ParamDate:
		return code, pickOne(g, prefixes) + g.dateLiteral(pickOne(g, []int64{e.Lo, e.Hi}))
	case fhir.ParamNumber:
		return code, pickOne(g, prefixes) + g.numberLiteral(e.Num)
	case fhir.ParamQuantity:
		x, unit := e.Num, ""
		switch g.pick(4) {
		case 0:
			unit = "|" + escape(e.UnitSystem) + "|" + escape(e.UnitCode)
		case 1:
			unit = "||" + escape(e.UnitCode)
		case 2:
			if e.CanonUnit != "" {
				x, unit = e.Canon, "|http://unitsofmeasure.org|"+escape(e.CanonUnit)
			}
		}
		return code, pickOne(g, prefixes) + g.numberLiteral(x) + unit
	case fhir.ParamURI:
		s := e.Str
		if s == "" {
			s = "http://regie.example/fhir/ValueSet/x"
		}
		switch g.pick(4) {
		case 0:
			if i := strings.LastIndexByte(s, '/'); i > 8 {
				return code + ":below", escape(s[:i+g.pick(2)])
			}
		case 1:
			return code + ":above", escape(s + pickOne(g, []string{"", "/x", "/x/y"}))
		case 2:
			return code, escape(g.substr(s, true))
		}
		return code, escape(s)
	case fhir.ParamComposite:
		return code, g.composite(typ, sp)
	}
	return "_id", "x"
}

// composite builds a composite value from one group of component entries.
func (g *gen) composite(typ string, sp *fhir.SearchParam) string {
	var groups [][]search.Entry
	for _, d := range g.docs.Docs(typ) {
		byGroup := map[int][]search.Entry{}
		for _, e := range d.Entries {
			if strings.HasPrefix(e.Param, sp.Code+"#") {
				byGroup[e.Group] = append(byGroup[e.Group], e)
			}
		}
		for _, grp := range byGroup {
			groups = append(groups, grp)
		}
	}
	parts := make([]string, len(sp.Component))
	var grp []search.Entry
	if len(groups) > 0 {
		grp = pickOne(g, groups)
	}
	for i, c := range sp.Component {
		csp := g.f.defs.SearchParamByURL(c.Definition)
		if csp == nil {
			return "x"
		}
		var e search.Entry
		for _, x := range grp {
			if x.Param == fmt.Sprintf("%s#%d", sp.Code, i) {
				e = x
			}
		}
		_, v := g.value(typ, csp, e)
		if csp.Type == fhir.ParamToken || csp.Type == fhir.ParamReference || csp.Type == fhir.ParamString {
			// modifiers are not allowed in a component: plain value
			if e.Code != "" && csp.Type == fhir.ParamToken {
				v = escape(e.System) + "|" + escape(e.Code)
			}
		}
		parts[i] = v
	}
	return strings.Join(parts, "$")
}

// chain returns a chained (or _has) parameter through reference sp of typ.
func (g *gen) chain(typ string, sp *fhir.SearchParam, depth int) (string, string, bool) {
	if g.chance(0.5) {
		// _has: a type whose references point at typ.
		var opts [][2]string
		for _, d := range g.docs.order {
			for _, e := range d.Entries {
				if e.Type == fhir.ParamReference && e.RefType == typ && e.URL == "" && !strings.Contains(e.Param, "#") {
					opts = append(opts, [2]string{d.Type, e.Param})
				}
			}
		}
		if len(opts) > 0 {
			o := pickOne(g, opts)
			n, v := g.param(o[0], depth+1)
			if strings.HasPrefix(n, "_") && !strings.HasPrefix(n, "_has") && n != "_id" {
				return "", "", false
			}
			return "_has:" + o[0] + ":" + o[1] + ":" + n, v, true
		}
	}
	targets := map[string]bool{}
	for _, e := range g.entriesOf(typ, sp.Code) {
		if e.RefType != "" && e.URL == "" {
			targets[e.RefType] = true
		}
	}
	var ts []string
	for t := range targets {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	if len(ts) == 0 {
		return "", "", false
	}
	target := pickOne(g, ts)
	n, v := g.param(target, depth+1)
	if strings.HasPrefix(n, "_") && n != "_id" || strings.Contains(n, ":not") {
		return "", "", false
	}
	return sp.Code + ":" + target + "." + n, v, true
}

// leaf parses one random parameter of typ into an expression.
func (g *gen) leaf(typ string) (search.Expr, string) {
	for range 50 {
		name, value := g.param(typ, 0)
		q, warns, err := g.f.parser.Parse([]string{typ}, []search.Param{{Name: name, Value: value}}, search.Options{Strict: true})
		if err != nil || len(warns) > 0 || q.Where == nil {
			continue
		}
		return q.Where, name + "=" + value
	}
	g.t.Fatalf("no parsable parameter for %s", typ)
	return nil, ""
}

// expr returns a random tree of leaves of the types (And, Or, Not, empty
// ones included) and its description.
func (g *gen) expr(types []string, depth int) (search.Expr, string) {
	if depth >= 3 || g.chance(0.45) {
		return g.leaf(pickOne(g, types))
	}
	switch g.pick(7) {
	case 0:
		x, d := g.expr(types, depth+1)
		return search.Not{X: x}, "not(" + d + ")"
	case 1:
		if g.chance(0.1) {
			return search.And{}, "and()"
		}
		if g.chance(0.1) {
			return search.Or{}, "or()"
		}
	}
	n := 1 + g.pick(3)
	var es []search.Expr
	var ds []string
	for range n {
		x, d := g.expr(types, depth+1)
		es, ds = append(es, x), append(ds, d)
	}
	if g.chance(0.5) {
		return search.And(es), "and(" + strings.Join(ds, ", ") + ")"
	}
	return search.Or(es), "or(" + strings.Join(ds, ", ") + ")"
}

// constraint returns a random access-policy-like constraint for types
// (nil: every type): none, a compartment, a big Or of patient references
// (which the store groups), a type-aware Or, or a random tree.
func (g *gen) constraint(types []string) (search.Expr, string) {
	pool := types
	if len(pool) == 0 {
		pool = g.types
	}
	switch g.pick(6) {
	case 0:
		return nil, "none"
	case 1:
		var pats []*search.Doc
		for _, d := range g.docs.Docs("Patient") {
			pats = append(pats, d)
		}
		p := pickOne(g, pats)
		c, err := search.CompartmentConstraint(g.f.defs, "Patient", p.ID, types...)
		if err != nil {
			return nil, "none"
		}
		return c, "compartment Patient/" + p.ID
	case 2:
		// An access policy's shape: per type, an Or of reference Matches
		// with one value per patient (most of them absent).
		var or search.Or
		for _, t := range pool {
			var vals []search.Value
			for i := range 30 {
				vals = append(vals, search.Value{RefType: "Patient", RefID: fmt.Sprint("absent-", i)})
			}
			for _, d := range g.docs.Docs("Patient") {
				if g.chance(0.5) {
					vals = append(vals, search.Value{RefType: "Patient", RefID: d.ID})
				}
			}
			var terms search.Or
			for _, sp := range g.f.defs.SearchParams(t) {
				if sp.Type == fhir.ParamReference && slices.Contains(sp.Target, "Patient") && g.chance(0.7) {
					terms = append(terms, &search.Match{Param: sp.Code, Type: fhir.ParamReference, Values: vals})
				}
			}
			if t == "Patient" {
				ids := make([]search.Value, 0, len(vals))
				for _, v := range vals {
					ids = append(ids, search.Value{AnySystem: true, Code: v.RefID})
				}
				terms = append(terms, &search.Match{Param: "_id", Type: fhir.ParamToken, Values: ids})
			}
			tm := &search.Match{Param: "_type", Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: t}}}
			or = append(or, search.And{tm, terms})
		}
		return or, "policy-shaped"
	case 3:
		var or search.Or
		var ds []string
		for _, t := range pool {
			if g.chance(0.3) {
				continue
			}
			x, d := g.expr([]string{t}, 1)
			tm := &search.Match{Param: "_type", Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: t}}}
			or = append(or, search.And{tm, x})
			ds = append(ds, t+": "+d)
		}
		return or, "per type {" + strings.Join(ds, "; ") + "}"
	}
	return g.expr(pool, 1)
}

// want is the reference answer: the docs of types (nil: all) matching
// where and constraint, in write order; where's chains and _has pass only
// through resources that satisfy the constraint.
func (g *gen) want(types []string, where, constraint search.Expr) []*search.Doc {
	var out []*search.Doc
	for _, d := range g.docs.order {
		if len(types) > 0 && !slices.Contains(types, d.Type) {
			continue
		}
		if search.Eval(where, d, g.docs.within(constraint)) && search.Eval(constraint, d, g.docs) {
			out = append(out, d)
		}
	}
	return out
}

// testSearchAgreesWithEval compares the store with search.Eval over
// random queries and constraints on the dataset, paging with small pages.
func testSearchAgreesWithEval(t *testing.T, s storage.Store) {
	f := mustFixture(t)
	docs := loadDataset(t, s, f)
	g := newGen(t, f, docs, seed(1))
	n := 1500
	if testing.Short() {
		n = 300
	}
	diffs := 0
	for i := range n {
		var types []string
		switch g.pick(6) {
		case 0:
		case 1:
			types = []string{pickOne(g, g.types), pickOne(g, g.types)}
		default:
			types = []string{pickOne(g, g.types)}
		}
		pool := types
		if len(pool) == 0 {
			pool = g.types
		}
		where, wd := g.expr(pool, 0)
		con, cd := g.constraint(types)
		q := &search.Query{Types: types, Where: where, Constraint: con, Count: 1 + g.pick(4)}
		if g.chance(0.3) {
			q.Total = search.TotalAccurate
		}
		res, err := searchAll(t, s, q)
		if err != nil {
			unsupportedSkip(t, wd, err)
			t.Fatalf("query %d %v where %s constraint %s: %v", i, types, wd, cd, err)
		}
		want := refsOf(g.want(types, where, con))
		if got := res.refs; !slices.Equal(got, want) && (len(got) > 0 || len(want) > 0) {
			diffs++
			if diffs <= 10 {
				t.Errorf("query %d %v\n  where %s\n  constraint %s\n  got  %v\n  want %v", i, types, wd, cd, got, want)
			}
			continue
		}
		if q.Total == search.TotalAccurate && res.total != len(want) {
			diffs++
			t.Errorf("query %d %v where %s constraint %s: total %d, want %d", i, types, wd, cd, res.total, len(want))
		}
		if g.chance(0.2) {
			cq := cloneQuery(q)
			cq.Summary, cq.Count, cq.Total = search.SummaryCount, 0, ""
			p, err := s.Search(ctx(t), cq)
			if err != nil {
				t.Fatal(err)
			}
			if p.Total != len(want) || len(p.Resources) != 0 {
				diffs++
				t.Errorf("query %d where %s constraint %s: _summary=count %d (%d resources), want %d", i, wd, cd, p.Total, len(p.Resources), len(want))
			}
		}
	}
	if diffs > 0 {
		t.Errorf("%d of %d random queries differ from search.Eval", diffs, n)
	}
}
