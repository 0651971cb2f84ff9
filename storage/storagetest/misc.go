package storagetest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// want returns the refs of docs of types (nil: all) matching where and con.
func (m *memDocs) want(types []string, where, con search.Expr) []string {
	var out []string
	for _, d := range m.order {
		if (len(types) == 0 || slices.Contains(types, d.Type)) && search.Eval(where, d, m.within(con)) && search.Eval(con, d, m) {
			out = append(out, d.Type+"/"+d.ID)
		}
	}
	return out
}

func tokenAny(param, code string) *search.Match {
	return &search.Match{Param: param, Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: code}}}
}

// testSearchCount checks _summary=count and _total on the shapes a store
// may count on its index (a resource with several matching entries counts
// once) and through filters.
func testSearchCount(t *testing.T, s storage.Store) {
	docs := caseload(t, s)
	twice := []search.Entry{
		{Param: "code", Type: fhir.ParamToken, System: "http://loinc.org", Code: "c1"},
		{Param: "code", Type: fhir.ParamToken, System: "http://snomed.info/sct", Code: "c1"},
		{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: "p1"},
		{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: "p1", RefVersion: "2"},
	}
	w := mustWrite(t, s, &storage.Write{Type: "Observation", ID: "twice", Body: doc("Observation", 0), Index: twice})
	docs.put(&search.Doc{Type: "Observation", ID: "twice", LastUpdated: w.LastUpdated, Entries: twice})
	p1 := &search.Match{Param: "subject", Type: fhir.ParamReference, Values: []search.Value{{RefType: "Patient", RefID: "p1"}}}
	tests := []struct {
		name  string
		types []string
		where search.Expr
		con   search.Expr
	}{
		{"every observation", []string{"Observation"}, nil, nil},
		{"one code in one system", []string{"Observation"}, &search.Match{Param: "code", Type: fhir.ParamToken,
			Values: []search.Value{{System: "http://loinc.org", Code: "c1"}}}, nil},
		{"one code in any system", []string{"Observation"}, tokenAny("code", "c1"), nil},
		{"two codes", []string{"Observation"}, &search.Match{Param: "code", Type: fhir.ParamToken,
			Values: []search.Value{{AnySystem: true, Code: "c1"}, {AnySystem: true, Code: "c2"}}}, nil},
		{"a reference (versioned twice)", []string{"Observation"}, p1, nil},
		{"code and reference", []string{"Observation"}, search.And{tokenAny("code", "c1"), p1}, nil},
		{"with a constraint", []string{"Observation"}, tokenAny("code", "c1"), policy([]string{"Observation"}, "p1", "p2")},
		{"a date range", []string{"Observation"}, &search.Match{Param: "date", Type: fhir.ParamDate,
			Values: []search.Value{{Prefix: search.Ge, Lo: 5e6, Hi: 5e6 + 999_999}}}, nil},
		{"negation", []string{"Observation"}, search.Not{X: tokenAny("code", "c1")}, nil},
		{"several types", []string{"Observation", "Patient", "CarePlan"}, nil, nil},
		{"system level", nil, nil, nil},
		{"system level, constrained", nil, nil, policy(nil, "p3")},
		{"a type without resources", []string{"Goal"}, nil, nil},
		{"a type never written", []string{"Basic"}, tokenAny("code", "c1"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := len(docs.want(tc.types, tc.where, tc.con))
			p, err := s.Search(ctx(t), &search.Query{Types: tc.types, Where: tc.where, Constraint: tc.con, Summary: search.SummaryCount})
			if err != nil {
				t.Fatal(err)
			}
			if p.Total != want || len(p.Resources) != 0 || p.Next != "" {
				t.Errorf("_summary=count: %d (%d resources, next %q), want %d", p.Total, len(p.Resources), p.Next, want)
			}
			p, err = s.Search(ctx(t), &search.Query{Types: tc.types, Where: tc.where, Constraint: tc.con, Count: 2, Total: search.TotalAccurate})
			if err != nil {
				t.Fatal(err)
			}
			if p.Total != want || len(p.Resources) != min(2, want) {
				t.Errorf("_total=accurate: %d with %d resources, want %d", p.Total, len(p.Resources), want)
			}
			p, err = s.Search(ctx(t), &search.Query{Types: tc.types, Where: tc.where, Constraint: tc.con, Count: 2, Total: search.TotalNone})
			if err != nil {
				t.Fatal(err)
			}
			if p.Total != -1 {
				t.Errorf("_total=none: total %d", p.Total)
			}
		})
	}
}

// testSearchSystemLevel searches every type, and several, by parameters
// that some types have and others not, and by _id and _lastUpdated.
func testSearchSystemLevel(t *testing.T, s storage.Store) {
	docs := caseload(t, s)
	mid := docs.byRef["Observation/o5-5"].LastUpdated
	lu := &search.Match{Param: "_lastUpdated", Type: fhir.ParamDate, Values: []search.Value{{Prefix: search.Gt,
		Lo: search.Instant(mid), Hi: search.Instant(mid)}}}
	ids := &search.Match{Param: "_id", Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: "p1"},
		{AnySystem: true, Code: "o1-1"}, {AnySystem: true, Code: "pr"}, {AnySystem: true, Code: "nothing"}}}
	tests := []struct {
		name  string
		types []string
		where search.Expr
		con   search.Expr
	}{
		{"everything", nil, nil, nil},
		{"ids over every type", nil, ids, nil},
		{"ids over two types", []string{"Patient", "Practitioner"}, ids, nil},
		{"last updated", nil, lu, nil},
		{"a parameter some types have", nil, &search.Match{Param: "subject", Type: fhir.ParamReference,
			Values: []search.Value{{RefType: "Patient", RefID: "p4"}}}, nil},
		{"a code, two types", []string{"Observation", "Patient"}, tokenAny("code", "c1"), nil},
		{"gender or a code", nil, search.Or{tokenAny("gender", "female"), tokenAny("code", "c0")}, nil},
		{"a type-aware constraint", nil, nil, policy(nil, "p2", "p9")},
		{"not a type", nil, search.Not{X: &search.Match{Param: "_type", Type: fhir.ParamToken,
			Values: []search.Value{{AnySystem: true, Code: "Observation"}}}}, nil},
		{"types from the query", nil, &search.Match{Param: "_type", Type: fhir.ParamToken,
			Values: []search.Value{{AnySystem: true, Code: "CarePlan"}, {AnySystem: true, Code: "Practitioner"}}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := docs.want(tc.types, tc.where, tc.con)
			res, err := searchAll(t, s, &search.Query{Types: tc.types, Where: tc.where, Constraint: tc.con, Count: 17})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.refs, want) && (len(want) > 0 || len(res.refs) > 0) {
				t.Errorf("got %v\nwant %v (in write order)", res.refs, want)
			}
		})
	}
}

// testHistoryConstraint checks type and system history with a constraint:
// the versions of resources whose current version matches it, newest
// first, paged; a deleted resource matches no constraint.
func testHistoryConstraint(t *testing.T, s storage.Store) {
	docs := caseload(t, s)
	// Give some observations more versions; move o2-0 to another patient;
	// delete o3-0.
	for i := range 3 {
		for _, id := range []string{"o1-1", "o2-2", "o7-3"} {
			d := docs.byRef["Observation/"+id]
			mustWrite(t, s, &storage.Write{Type: "Observation", ID: id, Body: doc("Observation", 100+i), Index: d.Entries})
		}
	}
	moved := []search.Entry{{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: "p9"}}
	mustWrite(t, s, &storage.Write{Type: "Observation", ID: "o2-0", Body: doc("Observation", 7), Index: moved})
	docs.byRef["Observation/o2-0"].Entries = moved
	mustWrite(t, s, &storage.Write{Type: "Observation", ID: "o3-0", Delete: true})
	delete(docs.byRef, "Observation/o3-0")

	for _, tc := range []struct {
		name string
		typ  string
		con  search.Expr
	}{
		{"type", "Observation", policy([]string{"Observation"}, "p1", "p2", "p3")},
		{"type, nothing permitted", "Observation", search.Or{}},
		{"system", "", policy(nil, "p2", "p3", "p7")},
		{"system, many patients", "", policy(nil, append([]string{"p7"}, fmt.Sprint("absent-", 1), "absent-2")...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := history(t, s, storage.HistoryQuery{Type: tc.typ})
			var want []string
			allKeys := keys(all)
			for i, r := range all {
				if d := docs.byRef[r.Type+"/"+r.ID]; d != nil && search.Eval(tc.con, d, docs) {
					want = append(want, allKeys[i])
				}
			}
			for _, count := range []int{1, 2, 5} {
				got := history(t, s, storage.HistoryQuery{Type: tc.typ, Constraint: tc.con, Count: count})
				if !slices.Equal(keys(got), want) && (len(got) > 0 || len(want) > 0) {
					t.Fatalf("_count=%d:\n got %v\nwant %v", count, keys(got), want)
				}
			}
		})
	}
	// Instance history: of a matching resource, everything; of one that
	// does not match (or is deleted), nothing.
	con := policy([]string{"Observation"}, "p1")
	if got := history(t, s, storage.HistoryQuery{Type: "Observation", ID: "o1-1", Constraint: con}); len(got) != 4 {
		t.Errorf("instance history of a permitted resource: %d versions, want 4", len(got))
	}
	if got := history(t, s, storage.HistoryQuery{Type: "Observation", ID: "o2-2", Constraint: con}); len(got) != 0 {
		t.Errorf("instance history of a resource outside the constraint: %v", keys(got))
	}
	if got := history(t, s, storage.HistoryQuery{Type: "Observation", ID: "o3-0", Constraint: policy([]string{"Observation"}, "p3")}); len(got) != 0 {
		t.Errorf("instance history of a deleted resource with a constraint: %v", keys(got))
	}
}

// sameEntries reports whether two entry lists are equal, floats bit for
// bit (NaN included).
func sameEntries(a, b []search.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		for _, f := range [][2]*float64{{&x.LoF, &y.LoF}, {&x.HiF, &y.HiF}, {&x.Num, &y.Num}, {&x.CanonLo, &y.CanonLo},
			{&x.CanonHi, &y.CanonHi}, {&x.Canon, &y.Canon}} {
			if math.Float64bits(*f[0]) != math.Float64bits(*f[1]) {
				return false
			}
			*f[0], *f[1] = 0, 0
		}
		if x != y {
			return false
		}
	}
	return true
}

// testReadEntries checks, for stores that implement storage.EntryReader,
// that every resource of the dataset reads back with exactly the entries
// the indexer gave (and a deletion with none), and is returned by
// searches with them (storage.Page.Entries).
func testReadEntries(t *testing.T, s storage.Store) {
	er, ok := s.(storage.EntryReader)
	if !ok {
		t.Skip("the store does not implement storage.EntryReader")
	}
	f := mustFixture(t)
	docs := loadDataset(t, s, f)
	for _, d := range docs.order {
		r, entries, err := er.ReadEntries(ctx(t), d.Type, d.ID)
		if err != nil {
			t.Fatalf("%s/%s: %v", d.Type, d.ID, err)
		}
		if r.Type != d.Type || r.ID != d.ID || r.Body == nil {
			t.Fatalf("%s/%s: read %s", d.Type, d.ID, r.Ref())
		}
		if !sameEntries(entries, d.Entries) {
			t.Errorf("%s/%s:\n got %+v\nwant %+v", d.Type, d.ID, entries, d.Entries)
		}
	}
	// Search pages carry the same entries, for matches and includes.
	seen := 0
	check := func(what string, rs []*fhir.Resource, ents [][]search.Entry) {
		if len(ents) != len(rs) {
			t.Fatalf("%s: %d resources, %d entry lists", what, len(rs), len(ents))
		}
		for i, r := range rs {
			d := docs.byRef[r.Type+"/"+r.ID]
			if d == nil {
				t.Fatalf("%s: unexpected %s", what, r.Ref())
			}
			if !sameEntries(ents[i], d.Entries) {
				t.Errorf("%s: %s:\n got %+v\nwant %+v", what, r.Ref(), ents[i], d.Entries)
			}
			seen++
		}
	}
	types := map[string]bool{}
	for _, d := range docs.order {
		types[d.Type] = true
	}
	for typ := range types {
		page, err := s.Search(ctx(t), &search.Query{Types: []string{typ}, Count: storage.MaxCount,
			RevInclude: []search.Include{{Source: "*", Param: "*"}}, Include: []search.Include{{Source: "*", Param: "*", Iterate: true}}})
		if err != nil {
			t.Fatalf("search %s: %v", typ, err)
		}
		check(typ, page.Resources, page.Entries)
		check(typ+" includes", page.Included, page.IncludedEntries)
	}
	if seen < len(docs.order) {
		t.Errorf("the searches returned %d resources, want at least %d", seen, len(docs.order))
	}
	mustWrite(t, s, &storage.Write{Type: "Patient", ID: "pat-1", Delete: true})
	r, entries, err := er.ReadEntries(ctx(t), "Patient", "pat-1")
	if !errors.Is(err, storage.ErrDeleted) || r == nil || !r.Deleted || entries != nil {
		t.Errorf("deleted: %v, %d entries, %v", r, len(entries), err)
	}
	if _, _, err := er.ReadEntries(ctx(t), "Patient", "never"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
}

// testSearchRanges compares date, number and quantity searches (every
// prefix) with search.Eval over random ranges, open ends and ranges that
// end before they start (invalid data a store must still answer for).
func testSearchRanges(t *testing.T, s storage.Store) {
	g := newGen(t, mustFixture(t), &memDocs{byRef: map[string]*search.Doc{}}, seed(5))
	docs := &memDocs{byRef: map[string]*search.Doc{}}
	const span = 1000
	rng := func() (int64, int64) {
		lo, hi := int64(g.pick(span)), int64(g.pick(span))
		if g.chance(0.8) && lo > hi {
			lo, hi = hi, lo
		}
		switch g.pick(10) {
		case 0:
			lo = math.MinInt64
		case 1:
			hi = math.MaxInt64
		}
		return lo, hi
	}
	units := []struct{ sys, code, canon string }{{"http://unitsofmeasure.org", "kg", "g"}, {"http://unitsofmeasure.org", "g", "g"}, {"", "stuk", ""}}
	var ops []*search.Match
	for i := range 200 {
		var entries []search.Entry
		for range 1 + g.pick(2) {
			lo, hi := rng()
			entries = append(entries, search.Entry{Param: "date", Type: fhir.ParamDate, Lo: lo, Hi: hi})
		}
		if g.chance(0.8) {
			lo, hi := rng()
			entries = append(entries, search.Entry{Param: "probability", Type: fhir.ParamNumber, LoF: float64(lo), HiF: float64(hi), Num: float64(lo)})
			u := pickOne(g, units)
			f := 1.0
			if u.code == "kg" {
				f = 1000
			}
			entries = append(entries, search.Entry{Param: "value-quantity", Type: fhir.ParamQuantity, LoF: float64(lo) / 10, HiF: float64(hi) / 10,
				Num: float64(lo) / 10, UnitSystem: u.sys, UnitCode: u.code, CanonUnit: u.canon, CanonLo: float64(lo) / 10 * f, CanonHi: float64(hi) / 10 * f})
		}
		w := mustWrite(t, s, &storage.Write{Type: "Observation", ID: fmt.Sprint("r", i), Body: doc("Observation", i), Index: entries})
		docs.put(&search.Doc{Type: "Observation", ID: w.ID, LastUpdated: w.LastUpdated, Entries: entries})
	}
	for range 400 {
		lo, hi := rng()
		pre := search.Prefix(pickOne(g, prefixes))
		var m *search.Match
		switch g.pick(3) {
		case 0:
			m = &search.Match{Param: "date", Type: fhir.ParamDate, Values: []search.Value{{Prefix: pre, Lo: lo, Hi: hi}}}
		case 1:
			m = &search.Match{Param: "probability", Type: fhir.ParamNumber, Values: []search.Value{{Prefix: pre, LoF: float64(lo), HiF: float64(hi), Num: float64(lo)}}}
		default:
			u := pickOne(g, units)
			v := search.Value{Prefix: pre, LoF: float64(lo) / 10, HiF: float64(hi) / 10, Num: float64(lo) / 10}
			switch g.pick(3) {
			case 0:
				v.UnitSystem, v.UnitCode = u.sys, u.code
				if u.canon != "" {
					f := 1.0
					if u.code == "kg" {
						f = 1000
					}
					v.CanonUnit, v.CanonLo, v.CanonHi, v.Canon = u.canon, v.LoF*f, v.HiF*f, v.Num*f
				}
			case 1:
				v.UnitCode = u.code
			}
			m = &search.Match{Param: "value-quantity", Type: fhir.ParamQuantity, Values: []search.Value{v}}
		}
		ops = append(ops, m)
	}
	for i, m := range ops {
		var where search.Expr = m
		if g.chance(0.2) {
			where = search.And{m, ops[g.pick(len(ops))]}
		}
		want := docs.want([]string{"Observation"}, where, nil)
		res, err := searchAll(t, s, &search.Query{Types: []string{"Observation"}, Where: where, Count: 1 + g.pick(50), Total: search.TotalAccurate})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.refs, want) && (len(want) > 0 || len(res.refs) > 0) {
			t.Fatalf("query %d %s %s %+v: got %d, want %d\n got %v\nwant %v", i, m.Param, m.Values[0].Prefix, m.Values[0], len(res.refs), len(want), res.refs, want)
		}
		if res.total != len(want) {
			t.Fatalf("query %d: total %d, want %d", i, res.total, len(want))
		}
	}
}
