package storagetest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// testSearchPagingWhileWriting pages through searches (unsorted and
// sorted, with and without a constraint) while another goroutine creates
// matches, updates them, deletes others and writes unrelated resources.
// Every resource that matched before paging began and was never touched
// must be returned exactly once; nothing is returned twice; no page but
// the last is short; nothing outside the constraint appears.
func testSearchPagingWhileWriting(t *testing.T, s storage.Store) {
	docs := caseload(t, s)
	code := &search.Match{Param: "code", Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: "c1"}}}
	queries := []struct {
		name string
		q    search.Query
	}{
		{"unsorted", search.Query{Types: []string{"Observation"}, Where: code}},
		{"constrained", search.Query{Types: []string{"Observation"}, Where: code, Constraint: policy([]string{"Observation"}, "p1", "p2", "p3", "p4")}},
		{"sorted by date", search.Query{Types: []string{"Observation"}, Where: code, Sort: []search.Sort{{Param: "date", Type: fhir.ParamDate, Desc: true}}}},
		{"system level", search.Query{Constraint: policy(nil, "p0", "p8")}},
	}
	for qi, tc := range queries {
		t.Run(tc.name, func(t *testing.T) {
			stable := map[string]bool{}
			for _, d := range docs.order {
				if (len(tc.q.Types) == 0 || slices.Contains(tc.q.Types, d.Type)) && search.Eval(tc.q.Where, d, docs) && search.Eval(tc.q.Constraint, d, docs) {
					stable[d.Type+"/"+d.ID] = true
				}
			}
			touched := map[string]bool{}
			var mu sync.Mutex
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					pid := fmt.Sprint("p", i%10)
					e := []search.Entry{
						{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: pid},
						{Param: "code", Type: fhir.ParamToken, System: "http://loinc.org", Code: "c1"},
						{Param: "date", Type: fhir.ParamDate, Lo: int64(i%20) * 1e6, Hi: int64(i%20)*1e6 + 5},
					}
					id := fmt.Sprintf("new%d-%d", qi, i)
					if _, err := s.Write(ctx(t), &storage.Write{Type: "Observation", ID: id, Body: doc("Observation", i), Index: e}); err != nil {
						t.Error(err)
						return
					}
					// Update an existing match (same entries) and delete another.
					upd := fmt.Sprintf("o%d-%d", i%10, 1+3*(i%4))
					del := fmt.Sprintf("o%d-%d", (i+5)%10, 1+3*((i+1)%4))
					mu.Lock()
					touched["Observation/"+upd], touched["Observation/"+del] = true, true
					mu.Unlock()
					if d := docs.byRef["Observation/"+upd]; d != nil {
						if _, err := s.Write(ctx(t), &storage.Write{Type: "Observation", ID: upd, Body: doc("Observation", -i), Index: d.Entries}); err != nil {
							t.Error(err)
							return
						}
					}
					if _, err := s.Write(ctx(t), &storage.Write{Type: "Observation", ID: del, Delete: true}); err != nil {
						t.Error(err)
						return
					}
				}
			})
			q := tc.q
			q.Count = 3
			res, err := searchAll(t, s, &q)
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, ref := range res.refs {
				got[ref] = true
				if d := docs.byRef[ref]; d != nil && !search.Eval(tc.q.Constraint, d, docs) {
					t.Fatalf("%s is outside the constraint", ref)
				}
			}
			for ref := range stable {
				if !touched[ref] && !got[ref] {
					t.Errorf("paging lost %s (untouched, matching all along)", ref)
				}
			}
			if res.pages < 3 {
				t.Errorf("only %d pages: the test did not page", res.pages)
			}
			// Put the caseload back for the next query.
			for ref := range touched {
				d := docs.byRef[ref]
				mustWrite(t, s, &storage.Write{Type: d.Type, ID: d.ID, Body: doc(d.Type, 0), Index: d.Entries})
			}
		})
	}
}

// sortDocs is the reference order of _sort (docs/search.md): per key,
// ascending by each resource's lowest value, descending by its highest,
// resources without a value last; then write order.
func sortDocs(ds []*search.Doc, keys []search.Sort) {
	type key struct {
		str string
		num float64
		ok  bool
	}
	keyOf := func(d *search.Doc, s search.Sort) key {
		switch s.Param {
		case "_id":
			return key{str: d.ID, ok: true}
		case "_lastUpdated":
			return key{num: float64(search.Instant(d.LastUpdated)), ok: true}
		}
		str, num, ok := search.SortKey(d.Entries, s)
		return key{str, num, ok}
	}
	slices.SortStableFunc(ds, func(a, b *search.Doc) int {
		for _, s := range keys {
			ka, kb := keyOf(a, s), keyOf(b, s)
			switch {
			case ka.ok != kb.ok:
				if ka.ok {
					return -1
				}
				return 1
			case !ka.ok:
				continue
			}
			c := cmp.Or(cmp.Compare(ka.str, kb.str), cmp.Compare(ka.num, kb.num))
			if s.Desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
}

// testSearchSort compares sorted searches (one to three keys, either
// direction, paged by 1 to 4) with the reference order.
func testSearchSort(t *testing.T, s storage.Store) {
	f := mustFixture(t)
	docs := loadDataset(t, s, f)
	g := newGen(t, f, docs, seed(3))
	n := 300
	if testing.Short() {
		n = 60
	}
	for i := range n {
		typ := pickOne(g, g.types)
		var keys []search.Sort
		var params []*fhir.SearchParam
		for _, sp := range f.defs.SearchParams(typ) {
			switch sp.Type {
			case fhir.ParamDate, fhir.ParamNumber, fhir.ParamQuantity, fhir.ParamString, fhir.ParamURI, fhir.ParamToken, fhir.ParamReference:
				if len(g.entriesOf(typ, sp.Code)) > 0 || g.chance(0.1) {
					params = append(params, sp)
				}
			}
		}
		for range 1 + g.pick(3) {
			k := search.Sort{Desc: g.chance(0.5)}
			switch {
			case g.chance(0.15):
				k.Param, k.Type = "_id", fhir.ParamToken
			case g.chance(0.15):
				k.Param, k.Type = "_lastUpdated", fhir.ParamDate
			case len(params) > 0:
				sp := pickOne(g, params)
				k.Param, k.Type = sp.Code, sp.Type
			default:
				k.Param, k.Type = "_id", fhir.ParamToken
			}
			keys = append(keys, k)
		}
		var where search.Expr
		wd := "all"
		if g.chance(0.5) {
			where, wd = g.expr([]string{typ}, 1)
		}
		con, cd := g.constraint([]string{typ})
		q := &search.Query{Types: []string{typ}, Where: where, Constraint: con, Sort: keys, Count: 1 + g.pick(4)}
		res, err := searchAll(t, s, q)
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		want := g.want(q.Types, where, con)
		sortDocs(want, keys)
		if !slices.Equal(res.refs, refsOf(want)) && (len(res.refs) > 0 || len(want) > 0) {
			t.Errorf("query %d %s _sort %+v where %s constraint %s:\n got %v\nwant %v", i, typ, keys, wd, cd, res.refs, refsOf(want))
		}
	}
}

// testSearchPrev walks forward, then back along Prev links, and finds the
// same pages; a forged cursor is ErrInvalidCursor.
func testSearchPrev(t *testing.T, s storage.Store) {
	caseload(t, s)
	code := &search.Match{Param: "code", Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: "c2"}}}
	for _, q := range []search.Query{
		{Types: []string{"Observation"}, Where: code, Count: 4},
		{Types: []string{"Observation"}, Where: code, Count: 3, Constraint: policy([]string{"Observation"}, "p1", "p3", "p5", "p7")},
		{Types: []string{"Observation"}, Count: 7, Sort: []search.Sort{{Param: "date", Type: fhir.ParamDate}, {Param: "subject", Type: fhir.ParamReference, Desc: true}}},
	} {
		var pages [][]string
		var prevs []string
		cur := q
		for {
			p, err := s.Search(ctx(t), &cur)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range p.Resources {
				ids = append(ids, r.ID)
			}
			pages = append(pages, ids)
			prevs = append(prevs, p.Prev)
			if p.Next == "" {
				break
			}
			cur.Cursor = p.Next
		}
		if len(pages) < 3 {
			t.Fatalf("only %d pages", len(pages))
		}
		if prevs[0] != "" {
			t.Errorf("the first page has a previous link")
		}
		// Back from the last page.
		for i := len(pages) - 1; i > 0; i-- {
			if prevs[i] == "" {
				t.Fatalf("page %d has no previous link", i)
			}
			back := q
			back.Cursor = prevs[i]
			p, err := s.Search(ctx(t), &back)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range p.Resources {
				ids = append(ids, r.ID)
			}
			if !slices.Equal(ids, pages[i-1]) {
				t.Fatalf("previous of page %d: %v, want %v", i, ids, pages[i-1])
			}
			if (i-1 == 0) != (p.Prev == "") {
				t.Errorf("previous of page %d: Prev %q", i, p.Prev)
			}
		}
		for _, forged := range []string{"x", "s-1", "p", "o!!", "Oabc", "o" + "AAAAAAAA"} {
			bad := q
			bad.Cursor = forged
			if _, err := s.Search(ctx(t), &bad); !errors.Is(err, storage.ErrInvalidCursor) {
				t.Errorf("cursor %q: %v, want ErrInvalidCursor", forged, err)
			}
		}
	}
}
