package storagetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"regie/fhir"
	"regie/fhir/search"
	"regie/profiles"
	"regie/storage"
)

// BaseURL is the server base the search cases parse and index with.
const BaseURL = "https://regie.example/fhir"

// fixture is what the search cases share: the R4 definitions, an indexer
// and a parser, and the dataset of testdata/search (docs/search.md).
type fixture struct {
	defs      *fhir.Definitions
	ix        *search.Indexer
	parser    *search.Parser
	resources []json.RawMessage
	cases     []datasetCase
	root      string // the module root
}

type datasetCase struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Compartment string   `json:"compartment"`
	Query       string   `json:"query"`
	IDs         []string `json:"ids"`
	Ordered     bool     `json:"ordered"`
	Included    []string `json:"included"`
}

// loadFixture builds the fixture once per test binary; it is read-only.
var loadFixture = sync.OnceValues(func() (*fixture, error) {
	f := &fixture{}
	var err error
	if f.defs, err = fhir.LoadDefinitions(profiles.R4()); err != nil {
		return nil, err
	}
	if f.ix, err = search.NewIndexer(f.defs, search.IndexerConfig{BaseURL: BaseURL}); err != nil {
		return nil, err
	}
	f.parser = search.NewParser(f.defs, search.Config{BaseURL: BaseURL})
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil, errors.New("storagetest: module root (go.mod) not found")
		}
		dir = parent
	}
	f.root = dir
	data := filepath.Join(dir, "testdata", "search")
	b, err := os.ReadFile(filepath.Join(data, "resources.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &f.resources); err != nil {
		return nil, err
	}
	b, err = os.ReadFile(filepath.Join(data, "queries.json"))
	if err != nil {
		return nil, err
	}
	var qs struct{ Cases []datasetCase }
	if err := json.Unmarshal(b, &qs); err != nil {
		return nil, err
	}
	f.cases = qs.Cases
	return f, nil
})

func mustFixture(t *testing.T) *fixture {
	t.Helper()
	f, err := loadFixture()
	if err != nil {
		t.Fatalf("search fixture: %v", err)
	}
	return f
}

// memDocs is the reference view of a store's current resources, for
// search.Eval.
type memDocs struct {
	byRef map[string]*search.Doc
	order []*search.Doc // write order
}

func (m *memDocs) Resolve(typ, id string) *search.Doc { return m.byRef[typ+"/"+id] }
func (m *memDocs) Docs(typ string) []*search.Doc {
	var out []*search.Doc
	for _, d := range m.order {
		if d.Type == typ {
			out = append(out, d)
		}
	}
	return out
}

// within is the view of m that a constrained search's chains and _has
// traverse: only the resources that satisfy con (search.Query.Constraint
// limits what chains and _has pass through, as well as what is returned).
func (m *memDocs) within(con search.Expr) search.Resolver {
	if con == nil {
		return m
	}
	return constrained{m, con}
}

type constrained struct {
	m   *memDocs
	con search.Expr
}

func (c constrained) Resolve(typ, id string) *search.Doc {
	if d := c.m.Resolve(typ, id); d != nil && search.Eval(c.con, d, c.m) {
		return d
	}
	return nil
}

func (c constrained) Docs(typ string) []*search.Doc {
	var out []*search.Doc
	for _, d := range c.m.Docs(typ) {
		if search.Eval(c.con, d, c.m) {
			out = append(out, d)
		}
	}
	return out
}

func (m *memDocs) put(d *search.Doc) {
	if old := m.byRef[d.Type+"/"+d.ID]; old != nil {
		*old = *d
		return
	}
	m.byRef[d.Type+"/"+d.ID] = d
	m.order = append(m.order, d)
}

// loadDataset writes the dataset's resources (with their ids, in file
// order) with their index entries, and returns the reference view.
func loadDataset(t *testing.T, s storage.Store, f *fixture) *memDocs {
	t.Helper()
	docs := &memDocs{byRef: map[string]*search.Doc{}}
	for _, r := range f.resources {
		typ, id, err := fhir.Header(r)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := f.ix.Index(typ, r)
		if err != nil {
			t.Fatalf("index %s/%s: %v", typ, id, err)
		}
		w := mustWrite(t, s, &storage.Write{Type: typ, ID: id, Body: r, Index: entries})
		docs.put(&search.Doc{Type: typ, ID: id, LastUpdated: w.LastUpdated, Entries: entries})
	}
	return docs
}

// parse parses a case's query for types (nil: every type).
func (f *fixture) parse(t *testing.T, types []string, query string) *search.Query {
	t.Helper()
	ps, err := search.ParseParams(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	q, warns, err := f.parser.Parse(types, ps, search.Options{Strict: true, Now: time.Now()})
	if err != nil || len(warns) > 0 {
		t.Fatalf("%s: %v %v", query, err, warns)
	}
	return q
}

// result is everything a search returned over all its pages.
type result struct {
	refs     []string // matches in order
	included []string // included resources of all pages
	total    int      // the first page's Total
	pages    int
}

// searchAll runs q and follows Next to the end. It checks what holds for
// every page: no more than Count resources, no empty page before the end,
// a full page whenever there is a next one, no resource twice.
func searchAll(t *testing.T, s storage.Reader, q *search.Query) (result, error) {
	t.Helper()
	q = cloneQuery(q)
	res := result{total: -2}
	seen := map[string]bool{}
	count := q.Count
	if count <= 0 {
		count = storage.DefaultCount
	}
	for range 100000 {
		p, err := s.Search(ctx(t), q)
		if err != nil {
			return res, err
		}
		if res.total == -2 {
			res.total = p.Total
		}
		res.pages++
		if len(p.Resources) > count {
			t.Fatalf("page of %d resources with _count=%d", len(p.Resources), count)
		}
		if p.Next != "" && len(p.Resources) < count {
			t.Fatalf("a page of %d resources (of %d) before the end: half empty", len(p.Resources), count)
		}
		for _, r := range p.Resources {
			ref := r.Type + "/" + r.ID
			if seen[ref] {
				t.Fatalf("%s returned twice", ref)
			}
			seen[ref] = true
			if r.Deleted || r.Body == nil {
				t.Fatalf("%s returned without a body", ref)
			}
			res.refs = append(res.refs, ref)
		}
		for _, r := range p.Included {
			res.included = append(res.included, r.Type+"/"+r.ID)
		}
		if p.Next == "" {
			return res, nil
		}
		q.Cursor = p.Next
	}
	t.Fatal("search: too many pages")
	return res, nil
}

func cloneQuery(q *search.Query) *search.Query {
	c := *q
	return &c
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// SearchCases are the search conformance cases: the hand-checked dataset
// of testdata/search, the agreement of the store with search.Eval over
// random queries, access constraints, paging, sorting, counts, chains and
// _has, system-level search, and the Synthea bundles when present.
var SearchCases = []Case{
	{"SearchDataset", testSearchDataset},
	{"SearchAgreesWithEval", testSearchAgreesWithEval},
	{"SearchConstraint", testSearchConstraint},
	{"SearchConstraintIncludes", testSearchConstraintIncludes},
	{"SearchPagingWhileWriting", testSearchPagingWhileWriting},
	{"SearchSortAgreesWithReference", testSearchSort},
	{"SearchPrevLinks", testSearchPrev},
	{"SearchCount", testSearchCount},
	{"SearchRanges", testSearchRanges},
	{"SearchSystemLevel", testSearchSystemLevel},
	{"SearchHistoryConstraint", testHistoryConstraint},
	{"ReadEntries", testReadEntries},
	{"SearchSynthea", testSearchSynthea},
}

// unsupportedSkip skips the test when err wraps storage.ErrUnsupported.
func unsupportedSkip(t *testing.T, what string, err error) {
	t.Helper()
	if errors.Is(err, storage.ErrUnsupported) {
		t.Skipf("the store does not support %s: %v", what, err)
	}
}

func testSearchDataset(t *testing.T, s storage.Store) {
	f := mustFixture(t)
	loadDataset(t, s, f)
	for _, c := range f.cases {
		t.Run(c.Name, func(t *testing.T) {
			var types []string
			if c.Type != "" && c.Type != "*" {
				types = []string{c.Type}
			}
			q := f.parse(t, types, c.Query)
			if c.Compartment != "" {
				comp, id, _ := strings.Cut(c.Compartment, "/")
				con, err := search.CompartmentConstraint(f.defs, comp, id, types...)
				if err != nil {
					t.Fatal(err)
				}
				q.Constraint = con
			}
			res, err := searchAll(t, s, q)
			unsupportedSkip(t, c.Query, err)
			if err != nil {
				t.Fatalf("%s: %v", c.Query, err)
			}
			got, want := res.refs, slices.Clone(c.IDs)
			if want == nil {
				want = []string{}
			}
			if !c.Ordered {
				got, want = sortedCopy(got), sortedCopy(want)
			}
			if got == nil {
				got = []string{}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s\n got %v\nwant %v", c.Query, got, want)
			}
			if c.Included != nil {
				if g, w := sortedCopy(res.included), sortedCopy(c.Included); !slices.Equal(g, w) {
					t.Errorf("%s: included\n got %v\nwant %v", c.Query, g, w)
				}
			}
		})
	}
}

// refsOf renders docs as "Type/id".
func refsOf(ds []*search.Doc) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Type + "/" + d.ID
	}
	return out
}

func docString(d *search.Doc) string { return fmt.Sprintf("%s/%s", d.Type, d.ID) }
