package search

import (
	"cmp"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"regie/fhir"
)

// datasetDir holds the fixed search dataset shared with the storage
// contract suite (testdata/search at the repository root).
var datasetDir = filepath.Join("..", "..", "testdata", "search")

type datasetCase struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Compartment string   `json:"compartment"`
	Query       string   `json:"query"`
	IDs         []string `json:"ids"`
	Ordered     bool     `json:"ordered"`
	Included    []string `json:"included"`
}

func loadDataset(t *testing.T) ([]json.RawMessage, []datasetCase) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(datasetDir, "resources.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res []json.RawMessage
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile(filepath.Join(datasetDir, "queries.json"))
	if err != nil {
		t.Fatal(err)
	}
	var qs struct{ Cases []datasetCase }
	if err := json.Unmarshal(b, &qs); err != nil {
		t.Fatal(err)
	}
	return res, qs.Cases
}

// TestDatasetValid checks that every resource of the dataset passes the
// validator that guards writes, so stores can load it through the normal path.
func TestDatasetValid(t *testing.T) {
	defs := loadDefs(t)
	v, err := fhir.NewValidator(defs)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := loadDataset(t)
	for _, r := range res {
		if _, err := v.Validate(r); err != nil {
			rt, id, _ := fhir.Header(r)
			t.Errorf("%s/%s: %v", rt, id, err)
		}
	}
}

// TestDataset runs every case of testdata/search/queries.json through the
// parser, the indexer and the reference evaluator (Eval, with reference
// sorting and includes written here), and compares with the hand-checked
// expectations.
func TestDataset(t *testing.T) {
	defs := loadDefs(t)
	ix, err := NewIndexer(defs, IndexerConfig{BaseURL: "https://regie.example/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	p := NewParser(defs, Config{BaseURL: "https://regie.example/fhir"})
	res, cases := loadDataset(t)
	docs := memDocs{}
	var order []*Doc // insertion order
	loaded := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, r := range res {
		rt, id, err := fhir.Header(r)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := ix.Index(rt, r)
		if err != nil {
			t.Fatalf("%s/%s: %v", rt, id, err)
		}
		d := &Doc{Type: rt, ID: id, LastUpdated: loaded, Entries: entries}
		docs[rt+"/"+id] = d
		order = append(order, d)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			ps, err := ParseParams(c.Query)
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			if c.Type != "" && c.Type != "*" {
				types = []string{c.Type}
			}
			q, warns, err := p.Parse(types, ps, Options{Strict: true, Now: loaded})
			if err != nil || len(warns) > 0 {
				t.Fatalf("%s: %v %v", c.Query, err, warns)
			}
			if c.Compartment != "" {
				comp, id, _ := strings.Cut(c.Compartment, "/")
				q.Constraint, err = CompartmentConstraint(defs, comp, id, types...)
				if err != nil {
					t.Fatal(err)
				}
			}
			var matched []*Doc
			for _, d := range order {
				if len(q.Types) > 0 && !slices.Contains(q.Types, d.Type) {
					continue
				}
				if Eval(q.Where, d, docs) && Eval(q.Constraint, d, docs) {
					matched = append(matched, d)
				}
			}
			if len(q.Sort) > 0 {
				sortDocs(matched, q.Sort)
			}
			got := refs(matched)
			want := slices.Clone(c.IDs)
			if !c.Ordered {
				slices.Sort(got)
				slices.Sort(want)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s\n got %v\nwant %v", c.Query, got, want)
			}
			if len(q.Include) > 0 || len(q.RevInclude) > 0 || c.Included != nil {
				inc := refs(includes(q, matched, order, docs))
				wantInc := slices.Clone(c.Included)
				slices.Sort(inc)
				slices.Sort(wantInc)
				if !slices.Equal(inc, wantInc) {
					t.Errorf("%s: included\n got %v\nwant %v", c.Query, inc, wantInc)
				}
			}
		})
	}
}

func refs(ds []*Doc) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.Type+"/"+d.ID)
	}
	return out
}

// sortKey is a resource's value for one sort key: the lowest value for
// ascending order, the highest for descending; missing values sort last.
func sortKey(d *Doc, s Sort) (str string, num float64, ok bool) {
	if s.Param == "_id" {
		return d.ID, 0, true
	}
	return SortKey(d.Entries, s)
}

func sortDocs(ds []*Doc, keys []Sort) {
	slices.SortStableFunc(ds, func(a, b *Doc) int {
		for _, k := range keys {
			as, an, aok := sortKey(a, k)
			bs, bn, bok := sortKey(b, k)
			switch {
			case aok != bok:
				if aok {
					return -1
				}
				return 1
			case !aok:
				continue
			}
			c := cmp.Or(cmp.Compare(as, bs), cmp.Compare(an, bn))
			if k.Desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
}

// includes is the reference _include/_revinclude: first every include and
// revinclude on the matches, then the :iterate ones on everything found,
// until nothing new is found.
func includes(q *Query, matched, all []*Doc, docs memDocs) []*Doc {
	in := map[*Doc]bool{}
	for _, d := range matched {
		in[d] = true
	}
	var out []*Doc
	add := func(d *Doc) bool {
		if d == nil || in[d] {
			return false
		}
		in[d] = true
		out = append(out, d)
		return true
	}
	refersTo := func(e Entry, inc Include) bool {
		return e.Type == fhir.ParamReference && e.URL == "" && e.RefID != "" &&
			(inc.Param == "*" || e.Param == inc.Param) && (inc.Target == "" || e.RefType == inc.Target)
	}
	apply := func(inc Include, rev bool, from []*Doc) bool {
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
			for _, o := range all {
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
	return out
}
