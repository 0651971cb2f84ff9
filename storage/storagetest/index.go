package storagetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// IndexCases check that the search index follows the current version of
// each resource, through the simplest searches (one token, reference or
// string parameter on one type). The search conformance cases of the
// search issue are a separate group.
var IndexCases = []Case{
	{"IndexFollowsCurrentVersion", testIndexFollowsCurrentVersion},
	{"IndexOfTransaction", testIndexOfTransaction},
	{"SearchPagesInStableOrder", testSearchPagesInStableOrder},
}

type search1 struct {
	Param, System, Code string
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func tokenEntries(ts []search1) []search.Entry {
	out := make([]search.Entry, len(ts))
	for i, tk := range ts {
		out[i] = search.Entry{Param: tk.Param, Type: fhir.ParamToken, System: tk.System, Code: tk.Code}
	}
	return out
}

func tokenMatch(param, system, code string) search.Expr {
	return &search.Match{Param: param, Type: fhir.ParamToken, Values: []search.Value{{System: system, Code: code}}}
}

func refMatch(param, typ, id string) search.Expr {
	return &search.Match{Param: param, Type: fhir.ParamReference, Values: []search.Value{{RefType: typ, RefID: id}}}
}

func stringMatch(param, prefix string) search.Expr {
	return &search.Match{Param: param, Type: fhir.ParamString, Values: []search.Value{{Str: prefix}}}
}

// searchIDs runs a one-type search and returns the ids found, in order,
// following every page; ok is false when the store does not support it.
func searchIDs(t *testing.T, s storage.Reader, typ string, where search.Expr) (ids []string, ok bool) {
	t.Helper()
	q := &search.Query{Types: []string{typ}, Where: where, Count: 2}
	for range 1000 {
		p, err := s.Search(ctx(t), q)
		if errors.Is(err, storage.ErrUnsupported) {
			return nil, false
		}
		if err != nil {
			t.Fatalf("search %s: %v", typ, err)
		}
		for _, r := range p.Resources {
			if r.Type != typ || r.Deleted || r.Body == nil {
				t.Fatalf("search %s returned %s (deleted %v)", typ, r.Ref(), r.Deleted)
			}
			ids = append(ids, r.ID)
		}
		if p.Next == "" {
			return ids, true
		}
		q.Cursor = p.Next
	}
	t.Fatal("search: too many pages")
	return nil, false
}

func mustSearch(t *testing.T, s storage.Reader, typ string, where search.Expr) []string {
	t.Helper()
	ids, ok := searchIDs(t, s, typ, where)
	if !ok {
		t.Skip("the store does not support this search yet (storage.ErrUnsupported)")
	}
	return ids
}

func wantIDs(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	g := slices.Clone(got)
	w := slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func testIndexFollowsCurrentVersion(t *testing.T, s storage.Store) {
	entries := func(code, subject, name string) []search.Entry {
		return []search.Entry{
			{Param: "code", Type: fhir.ParamToken, System: "http://loinc.org", Code: code, Text: "glucose"},
			{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: subject},
			{Param: "note", Type: fhir.ParamString, Str: name, Exact: name},
		}
	}
	write := func(id, code, subject, name string) {
		mustWrite(t, s, &storage.Write{Type: "Observation", ID: id, Body: doc("Observation", 1), Index: entries(code, subject, name)})
	}
	write("o1", "A", "p1", "alpha")
	write("o2", "A", "p2", "beta")
	write("o3", "B", "p1", "alpine")

	wantIDs(t, "code A", mustSearch(t, s, "Observation", tokenMatch("code", "http://loinc.org", "A")), "o1", "o2")
	wantIDs(t, "code A in another system", mustSearch(t, s, "Observation", tokenMatch("code", "http://other", "A")))
	wantIDs(t, "code A any system", mustSearch(t, s, "Observation",
		&search.Match{Param: "code", Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: "A"}}}), "o1", "o2")
	wantIDs(t, "subject p1", mustSearch(t, s, "Observation", refMatch("subject", "Patient", "p1")), "o1", "o3")
	wantIDs(t, "note alp", mustSearch(t, s, "Observation", stringMatch("note", "alp")), "o1", "o3")
	wantIDs(t, "all Observations", mustSearch(t, s, "Observation", nil), "o1", "o2", "o3")
	wantIDs(t, "code A for p1", mustSearch(t, s, "Observation", search.And{
		tokenMatch("code", "http://loinc.org", "A"), refMatch("subject", "Patient", "p1")}), "o1")
	wantIDs(t, "code A or B", mustSearch(t, s, "Observation", &search.Match{Param: "code", Type: fhir.ParamToken,
		Values: []search.Value{{System: "http://loinc.org", Code: "A"}, {System: "http://loinc.org", Code: "B"}}}), "o1", "o2", "o3")
	wantIDs(t, "same entries on another type", mustSearch(t, s, "Patient", tokenMatch("code", "http://loinc.org", "A")))

	t.Run("count", func(t *testing.T) {
		for _, q := range []*search.Query{
			{Types: []string{"Observation"}, Where: refMatch("subject", "Patient", "p1"), Summary: search.SummaryCount},
			{Types: []string{"Observation"}, Where: refMatch("subject", "Patient", "p1"), Total: search.TotalAccurate, Count: 1},
		} {
			p, err := s.Search(ctx(t), q)
			if errors.Is(err, storage.ErrUnsupported) {
				t.Skip("the store does not support this search yet")
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Total != 2 {
				t.Errorf("total %d, want 2 (%+v)", p.Total, q)
			}
			if q.Summary == search.SummaryCount && len(p.Resources) != 0 {
				t.Errorf("_summary=count returned %d resources", len(p.Resources))
			}
		}
	})

	// An update replaces the entries of the previous version.
	write("o1", "B", "p2", "gamma")
	wantIDs(t, "code A after update", mustSearch(t, s, "Observation", tokenMatch("code", "http://loinc.org", "A")), "o2")
	wantIDs(t, "code B after update", mustSearch(t, s, "Observation", tokenMatch("code", "http://loinc.org", "B")), "o1", "o3")
	wantIDs(t, "subject p1 after update", mustSearch(t, s, "Observation", refMatch("subject", "Patient", "p1")), "o3")
	wantIDs(t, "note alp after update", mustSearch(t, s, "Observation", stringMatch("note", "alp")), "o3")

	// A deleted resource has no entries; a re-created one has its new ones.
	mustWrite(t, s, &storage.Write{Type: "Observation", ID: "o3", Delete: true})
	wantIDs(t, "code B after delete", mustSearch(t, s, "Observation", tokenMatch("code", "http://loinc.org", "B")), "o1")
	wantIDs(t, "all after delete", mustSearch(t, s, "Observation", nil), "o1", "o2")
	write("o3", "C", "p1", "delta")
	wantIDs(t, "code C after re-create", mustSearch(t, s, "Observation", tokenMatch("code", "http://loinc.org", "C")), "o3")
	wantIDs(t, "code B after re-create", mustSearch(t, s, "Observation", tokenMatch("code", "http://loinc.org", "B")), "o1")

	// An update without entries removes them all.
	mustWrite(t, s, &storage.Write{Type: "Observation", ID: "o2", Body: doc("Observation", 2)})
	wantIDs(t, "code A after an update without entries", mustSearch(t, s, "Observation", tokenMatch("code", "http://loinc.org", "A")))
}

func testIndexOfTransaction(t *testing.T, s storage.Store) {
	err := s.Transact(ctx(t), func(tx storage.Tx) error {
		for i := range 3 {
			_, err := tx.Write(ctx(t), &storage.Write{Type: "Condition", ID: fmt.Sprint("c", i), Body: doc("Condition", i),
				Index: tokenEntries([]search1{{"code", "http://snomed.info/sct", fmt.Sprint(i % 2)}})})
			if err != nil {
				return err
			}
		}
		_, err := tx.Write(ctx(t), &storage.Write{Type: "Condition", ID: "c2", Delete: true})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "code 0", mustSearch(t, s, "Condition", tokenMatch("code", "http://snomed.info/sct", "0")), "c0")
	wantIDs(t, "code 1", mustSearch(t, s, "Condition", tokenMatch("code", "http://snomed.info/sct", "1")), "c1")
}

func testSearchPagesInStableOrder(t *testing.T, s storage.Store) {
	var want []string
	for i := range 7 {
		id := fmt.Sprint("e", i)
		want = append(want, id)
		mustWrite(t, s, &storage.Write{Type: "Encounter", ID: id, Body: doc("Encounter", i),
			Index: tokenEntries([]search1{{"status", "", "finished"}})})
	}
	m := tokenMatch("status", "", "finished")
	q := &search.Query{Types: []string{"Encounter"}, Where: m, Count: 3}
	var got []string
	for i := 0; ; i++ {
		p, err := s.Search(ctx(t), q)
		if errors.Is(err, storage.ErrUnsupported) {
			t.Skip("the store does not support this search yet")
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Resources) > 3 {
			t.Fatalf("page of %d with _count=3", len(p.Resources))
		}
		for _, r := range p.Resources {
			got = append(got, r.ID)
		}
		// Writes between pages: a new match and an update of one already
		// returned; neither may make a page repeat or skip an old match.
		mustWrite(t, s, &storage.Write{Type: "Encounter", ID: fmt.Sprint("new", i), Body: doc("Encounter", 0),
			Index: tokenEntries([]search1{{"status", "", "finished"}})})
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	for _, id := range want {
		if !slices.Contains(got, id) {
			t.Fatalf("paging skipped %s: got %v", id, got)
		}
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Fatalf("paging repeated %s: got %v", id, got)
		}
		seen[id] = true
	}
	if _, err := s.Search(ctx(t), &search.Query{Types: []string{"Encounter"}, Where: m, Cursor: "forged"}); !errors.Is(err, storage.ErrInvalidCursor) {
		t.Fatalf("search with a forged cursor: %v", err)
	}
}
