package storagetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"testing"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// SyntheaDir returns the directory of the Synthea bundles
// (../shared/fhir/synthea beside the module root), or "" when absent.
func SyntheaDir(t testing.TB) string {
	t.Helper()
	f, err := loadFixture()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.root, "..", "shared", "fhir", "synthea")
	if _, err := os.Stat(filepath.Join(dir, "resource-counts.json")); err != nil {
		return ""
	}
	return dir
}

// SyntheaResource is one resource of a Synthea bundle, with its
// urn:uuid references rewritten to local ones (Type/id).
type SyntheaResource struct {
	Type, ID string
	Body     []byte // compact JSON
}

var urnRef = regexp.MustCompile(`"urn:uuid:([0-9a-fA-F-]+)"`)

// SyntheaBundles reads the transaction bundles of dir (sorted by file
// name; at most max, 0 for all) and returns their resources in order,
// references rewritten, and the bundle file names.
func SyntheaBundles(dir string, max int) ([]SyntheaResource, []string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(files)
	var out []SyntheaResource
	var names []string
	for _, file := range files {
		if filepath.Base(file) == "resource-counts.json" {
			continue
		}
		if max > 0 && len(names) == max {
			break
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, nil, err
		}
		var bundle struct {
			Entry []struct {
				FullURL  string          `json:"fullUrl"`
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", file, err)
		}
		local := map[string]string{}
		var res []SyntheaResource
		for _, e := range bundle.Entry {
			typ, id, err := fhir.Header(e.Resource)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", file, err)
			}
			local[e.FullURL] = typ + "/" + id
			var c bytes.Buffer
			if err := json.Compact(&c, e.Resource); err != nil {
				return nil, nil, err
			}
			res = append(res, SyntheaResource{Type: typ, ID: id, Body: c.Bytes()})
		}
		for i := range res {
			res[i].Body = urnRef.ReplaceAllFunc(res[i].Body, func(m []byte) []byte {
				if ref, ok := local["urn:uuid:"+string(m[10:len(m)-1])]; ok {
					return []byte(`"` + ref + `"`)
				}
				return m
			})
		}
		out = append(out, res...)
		names = append(names, filepath.Base(file))
	}
	return out, names, nil
}

// testSearchSynthea loads the Synthea bundles (skipped when absent; five
// of them with -short), checks resource counts against
// resource-counts.json (all bundles) or the bundles themselves, and
// compares random searches over this realistic data with search.Eval.
func testSearchSynthea(t *testing.T, s storage.Store) {
	dir := SyntheaDir(t)
	if dir == "" {
		t.Skip("Synthea bundles not found (../shared/fhir/synthea beside the module root)")
	}
	f := mustFixture(t)
	max := 0
	if testing.Short() {
		max = 5
	}
	res, names, err := SyntheaBundles(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	docs := &memDocs{byRef: map[string]*search.Doc{}}
	entries := map[string]int{} // resource entries per type, duplicates included
	for i := 0; i < len(res); i += 500 {
		batch := res[i:min(i+500, len(res))]
		var ds []*search.Doc
		err := s.Transact(ctx(t), func(tx storage.Tx) error {
			ds = ds[:0]
			for _, r := range batch {
				idx, err := f.ix.Index(r.Type, r.Body)
				if err != nil {
					return fmt.Errorf("index %s/%s: %w", r.Type, r.ID, err)
				}
				w, err := tx.Write(ctx(t), &storage.Write{Type: r.Type, ID: r.ID, Body: r.Body, Index: idx})
				if err != nil {
					return err
				}
				ds = append(ds, &search.Doc{Type: r.Type, ID: r.ID, LastUpdated: w.LastUpdated, Entries: idx})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			docs.put(d)
			entries[d.Type]++
		}
	}
	t.Logf("loaded %d resources from %d bundles", len(res), len(names))
	if max == 0 {
		b, err := os.ReadFile(filepath.Join(dir, "resource-counts.json"))
		if err != nil {
			t.Fatal(err)
		}
		var want map[string]int
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if !mapsEqual(entries, want) {
			t.Fatalf("bundle entries per type %v, resource-counts.json says %v", entries, want)
		}
	}
	var types []string
	for typ := range entries {
		types = append(types, typ)
	}
	slices.Sort(types)
	for _, typ := range types {
		want := len(docs.Docs(typ)) // distinct ids (bundles share organisations)
		p, err := s.Search(ctx(t), &search.Query{Types: []string{typ}, Summary: search.SummaryCount})
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != want {
			t.Errorf("%s: %d resources, want %d", typ, p.Total, want)
		}
	}
	if er, ok := s.(storage.EntryReader); ok {
		for i, d := range docs.order {
			if i%7 != 0 {
				continue
			}
			_, got, err := er.ReadEntries(ctx(t), d.Type, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !sameEntries(got, d.Entries) {
				t.Fatalf("ReadEntries %s/%s: the entries differ from the indexer's", d.Type, d.ID)
			}
		}
	}
	g := newGen(t, f, docs, seed(11))
	n := 120
	if testing.Short() {
		n = 30
	}
	for i := range n {
		typ := pickOne(g, []string{"Patient", "Observation", "Encounter", "Condition", "CarePlan", "Procedure", "Claim"})
		where, wd := g.expr([]string{typ}, 1)
		var con search.Expr
		cd := "none"
		if g.chance(0.5) {
			pats := docs.Docs("Patient")
			var ids []string
			for range 1 + g.pick(5) {
				ids = append(ids, pickOne(g, pats).ID)
			}
			con, cd = policy([]string{typ}, ids...), fmt.Sprint("patients ", ids)
			if typ != "Patient" {
				con = &search.Match{Param: "patient", Type: fhir.ParamReference, Values: policyRefs(ids)}
				if f.defs.SearchParam(typ, "patient") == nil {
					con = &search.Match{Param: "subject", Type: fhir.ParamReference, Values: policyRefs(ids)}
				}
			}
		}
		q := &search.Query{Types: []string{typ}, Where: where, Constraint: con, Count: 200, Total: search.TotalAccurate}
		got, err := searchAll(t, s, q)
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		want := docs.want(q.Types, where, con)
		if !slices.Equal(got.refs, want) && (len(got.refs) > 0 || len(want) > 0) {
			t.Errorf("query %d %s where %s constraint %s: %d results, want %d", i, typ, wd, cd, len(got.refs), len(want))
		} else if got.total != len(want) {
			t.Errorf("query %d %s where %s constraint %s: total %d, want %d", i, typ, wd, cd, got.total, len(want))
		}
	}
}

func policyRefs(ids []string) []search.Value {
	out := make([]search.Value, len(ids))
	for i, id := range ids {
		out[i] = search.Value{RefType: "Patient", RefID: id}
	}
	return out
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
