package storagetest

import (
	"fmt"
	"slices"
	"testing"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// caseload writes a small care organisation: patients p0…p9, each with
// observations (subject), care plans (subject) and a practitioner as
// performer, written interleaved so every type's rids are spread out.
func caseload(t *testing.T, s storage.Store) *memDocs {
	t.Helper()
	docs := &memDocs{byRef: map[string]*search.Doc{}}
	put := func(typ, id string, entries []search.Entry) {
		w := mustWrite(t, s, &storage.Write{Type: typ, ID: id, Body: doc(typ, len(docs.order)), Index: entries})
		docs.put(&search.Doc{Type: typ, ID: id, LastUpdated: w.LastUpdated, Entries: entries})
	}
	ref := func(param, typ, id string) search.Entry {
		return search.Entry{Param: param, Type: fhir.ParamReference, RefType: typ, RefID: id}
	}
	tok := func(param, code string) search.Entry {
		return search.Entry{Param: param, Type: fhir.ParamToken, System: "http://loinc.org", Code: code}
	}
	put("Practitioner", "pr", nil)
	for i := range 10 {
		put("Patient", fmt.Sprint("p", i), []search.Entry{{Param: "gender", Type: fhir.ParamToken, Code: []string{"male", "female"}[i%2]}})
	}
	for j := range 12 {
		for i := range 10 {
			pid := fmt.Sprint("p", i)
			put("Observation", fmt.Sprintf("o%d-%d", i, j), []search.Entry{
				ref("subject", "Patient", pid), ref("patient", "Patient", pid), ref("performer", "Practitioner", "pr"),
				tok("code", fmt.Sprint("c", j%3)),
				{Param: "date", Type: fhir.ParamDate, Lo: int64(j) * 1e6, Hi: int64(j)*1e6 + 999_999},
			})
			if j%4 == 0 {
				put("CarePlan", fmt.Sprintf("cp%d-%d", i, j), []search.Entry{ref("subject", "Patient", pid), ref("patient", "Patient", pid)})
			}
		}
	}
	return docs
}

// policy returns a constraint shaped like the access policy's: per type,
// the patient compartment of the given patients (one value per patient),
// for types (all of obs, care plan, patient when nil).
func policy(types []string, patients ...string) search.Expr {
	if len(types) == 0 {
		types = []string{"Observation", "CarePlan", "Patient"}
	}
	refs := make([]search.Value, len(patients))
	ids := make([]search.Value, len(patients))
	for i, p := range patients {
		refs[i] = search.Value{RefType: "Patient", RefID: p}
		ids[i] = search.Value{AnySystem: true, Code: p}
	}
	per := func(t string) search.Expr {
		if t == "Patient" {
			return &search.Match{Param: "_id", Type: fhir.ParamToken, Values: ids}
		}
		return search.Or{
			&search.Match{Param: "subject", Type: fhir.ParamReference, Values: refs},
			&search.Match{Param: "patient", Type: fhir.ParamReference, Values: refs},
		}
	}
	if len(types) == 1 {
		return per(types[0])
	}
	var or search.Or
	for _, t := range types {
		or = append(or, search.And{&search.Match{Param: "_type", Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: t}}}, per(t)})
	}
	return or
}

// testSearchConstraint pages through constrained searches with pages of 1
// to 3: nothing outside the constraint, no half-empty page, and totals and
// counts equal to the number of matches. Chains and _has pass only
// through resources that satisfy the constraint (else they would reveal
// what the caller may not see).
func testSearchConstraint(t *testing.T, s storage.Store) {
	docs := caseload(t, s)
	code := func(c string) search.Expr {
		return &search.Match{Param: "code", Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: c}}}
	}
	many := []string{"p1", "p4"}
	for i := range 40 {
		many = append(many, fmt.Sprint("elsewhere-", i))
	}
	tests := []struct {
		name  string
		types []string
		where search.Expr
		con   search.Expr
	}{
		{"observations of two patients", []string{"Observation"}, nil, policy([]string{"Observation"}, "p2", "p7")},
		{"a code within the constraint", []string{"Observation"}, code("c1"), policy([]string{"Observation"}, "p2", "p7")},
		{"many patients, few present", []string{"Observation"}, code("c2"), policy([]string{"Observation"}, many...)},
		{"nothing permitted", []string{"Observation"}, nil, search.Or{}},
		{"several types", []string{"Observation", "CarePlan", "Patient"}, nil, policy(nil, "p3")},
		{"system level", nil, nil, policy(nil, "p5", "p6")},
		{"system level, a code", nil, code("c0"), policy(nil, "p5")},
		{"_has passes only through permitted resources", []string{"Patient"},
			&search.Has{Type: "Observation", Param: "subject", Where: code("c1")},
			search.Or{
				search.And{tokenAny("_type", "Patient"), &search.Match{Param: "_id", Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: "p1"}, {AnySystem: true, Code: "p2"}}}},
				search.And{tokenAny("_type", "Observation"), policy([]string{"Observation"}, "p1")},
			}},
		{"a chain passes only through permitted resources", []string{"Observation"},
			&search.Chain{Param: "subject", Target: "Patient", Where: tokenAny("gender", "female")},
			search.Or{
				search.And{tokenAny("_type", "Observation"), policy([]string{"Observation"}, "p1", "p2", "p3")},
				search.And{tokenAny("_type", "Patient"), &search.Match{Param: "_id", Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: "p1"}}}},
			}},
		{"a constraint for one type keeps chains to others from matching", []string{"Observation"},
			&search.Chain{Param: "subject", Target: "Patient", Where: tokenAny("gender", "female")},
			policy([]string{"Observation"}, "p1", "p2", "p3")},
		{"a constraint that the query contradicts", []string{"Observation"},
			&search.Match{Param: "subject", Type: fhir.ParamReference, Values: []search.Value{{RefType: "Patient", RefID: "p9"}}},
			policy([]string{"Observation"}, "p2")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for _, d := range docs.order {
				if (len(tc.types) == 0 || slices.Contains(tc.types, d.Type)) && search.Eval(tc.where, d, docs.within(tc.con)) && search.Eval(tc.con, d, docs) {
					want = append(want, d.Type+"/"+d.ID)
				}
			}
			for count := 1; count <= 3; count++ {
				for _, total := range []search.Total{search.TotalAccurate, search.TotalEstimate, ""} {
					q := &search.Query{Types: tc.types, Where: tc.where, Constraint: tc.con, Count: count, Total: total}
					res, err := searchAll(t, s, q)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(res.refs, want) && (len(res.refs) > 0 || len(want) > 0) {
						t.Fatalf("_count=%d: got %v, want %v (in write order)", count, res.refs, want)
					}
					if total != "" && res.total != len(want) {
						t.Errorf("_count=%d _total=%s: total %d, want %d", count, total, res.total, len(want))
					}
					if total == "" && res.total >= 0 && res.total != len(want) {
						t.Errorf("_count=%d: total %d, want %d or none", count, res.total, len(want))
					}
				}
			}
			p, err := s.Search(ctx(t), &search.Query{Types: tc.types, Where: tc.where, Constraint: tc.con, Summary: search.SummaryCount})
			if err != nil {
				t.Fatal(err)
			}
			if p.Total != len(want) || len(p.Resources) != 0 {
				t.Errorf("_summary=count: %d (%d resources), want %d", p.Total, len(p.Resources), len(want))
			}
		})
	}
}

// refIncludes is the reference _include/_revinclude of a whole result,
// with the constraint applied to what is included (and so to what the
// :iterate ones follow).
func refIncludes(q *search.Query, matched []*search.Doc, docs *memDocs) []string {
	in := map[*search.Doc]bool{}
	for _, d := range matched {
		in[d] = true
	}
	var out []*search.Doc
	add := func(d *search.Doc) bool {
		if d == nil || in[d] || !search.Eval(q.Constraint, d, docs) {
			return false
		}
		in[d] = true
		out = append(out, d)
		return true
	}
	refersTo := func(e search.Entry, inc search.Include) bool {
		return e.Type == fhir.ParamReference && e.URL == "" && e.RefID != "" &&
			(inc.Param == "*" || e.Param == inc.Param) && (inc.Target == "" || e.RefType == inc.Target)
	}
	apply := func(inc search.Include, rev bool, from []*search.Doc) bool {
		grew := false
		for _, d := range from {
			if !rev {
				if inc.Source != "*" && d.Type != inc.Source {
					continue
				}
				for _, e := range d.Entries {
					if refersTo(e, inc) && add(docs.Resolve(e.RefType, e.RefID)) {
						grew = true
					}
				}
				continue
			}
			for _, o := range docs.order {
				if inc.Source != "*" && o.Type != inc.Source {
					continue
				}
				for _, e := range o.Entries {
					if refersTo(e, inc) && e.RefType == d.Type && e.RefID == d.ID && add(o) {
						grew = true
					}
				}
			}
		}
		return grew
	}
	for _, inc := range q.Include {
		apply(inc, false, matched)
	}
	for _, inc := range q.RevInclude {
		apply(inc, true, matched)
	}
	for grew := true; grew; {
		grew = false
		for _, inc := range q.Include {
			if inc.Iterate && apply(inc, false, append(slices.Clone(matched), out...)) {
				grew = true
			}
		}
		for _, inc := range q.RevInclude {
			if inc.Iterate && apply(inc, true, append(slices.Clone(matched), out...)) {
				grew = true
			}
		}
	}
	return refsOf(out)
}

// testSearchConstraintIncludes checks that _include and _revinclude
// (with :iterate and *) never add a resource outside the constraint, and
// add exactly what the reference adds, on the dataset and random
// constraints.
func testSearchConstraintIncludes(t *testing.T, s storage.Store) {
	f := mustFixture(t)
	docs := loadDataset(t, s, f)
	g := newGen(t, f, docs, seed(7))
	incs := []search.Include{
		{Source: "Patient", Param: "organization"},
		{Source: "Patient", Param: "general-practitioner", Target: "Practitioner"},
		{Source: "Organization", Param: "partof", Iterate: true},
		{Source: "Observation", Param: "*"},
		{Source: "*", Param: "*"},
		{Source: "Observation", Param: "subject", Iterate: true},
	}
	revs := []search.Include{
		{Source: "Observation", Param: "subject"},
		{Source: "Provenance", Param: "target", Iterate: true},
		{Source: "CarePlan", Param: "*"},
		{Source: "*", Param: "*"},
		{Source: "Patient", Param: "organization", Iterate: true},
		{Source: "Encounter", Param: "subject", Target: "Patient"},
	}
	n := 300
	if testing.Short() {
		n = 60
	}
	for i := range n {
		types := []string{pickOne(g, []string{"Patient", "Observation", "Organization", "Practitioner", "Encounter"})}
		where, wd := g.expr(types, 1)
		if g.chance(0.3) {
			where, wd = nil, "all"
		}
		con, cd := g.constraint(pickOne(g, [][]string{types, nil}))
		q := &search.Query{Types: types, Where: where, Constraint: con, Count: 1000}
		for range 1 + g.pick(2) {
			q.Include = append(q.Include, pickOne(g, incs))
		}
		for range g.pick(3) {
			q.RevInclude = append(q.RevInclude, pickOne(g, revs))
		}
		res, err := searchAll(t, s, q)
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		matched := g.want(types, where, con)
		if !slices.Equal(sortedCopy(res.refs), sortedCopy(refsOf(matched))) {
			t.Fatalf("query %d where %s constraint %s: matches %v, want %v", i, wd, cd, res.refs, refsOf(matched))
		}
		for _, ref := range res.included {
			if d := docs.byRef[ref]; d == nil || !search.Eval(con, d, docs) {
				t.Fatalf("query %d: included %s, outside the constraint %s", i, ref, cd)
			}
		}
		if want := refIncludes(q, matched, docs); !slices.Equal(sortedCopy(res.included), sortedCopy(want)) {
			t.Errorf("query %d where %s constraint %s include %+v revinclude %+v:\n got %v\nwant %v",
				i, wd, cd, q.Include, q.RevInclude, sortedCopy(res.included), sortedCopy(want))
		}
	}
	// Included resources respect the constraint on every page too.
	caseQ := &search.Query{Types: []string{"Patient"}, Count: 1, Constraint: policy(nil, "pat-1", "pat-2"),
		RevInclude: []search.Include{{Source: "*", Param: "*"}}, Include: []search.Include{{Source: "*", Param: "*", Iterate: true}}}
	res, err := searchAll(t, s, caseQ)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range append(res.refs, res.included...) {
		if !search.Eval(caseQ.Constraint, docs.byRef[ref], docs) {
			t.Fatalf("%s is outside the constraint", ref)
		}
	}
}
