package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"regie/fhir"
	"regie/profiles"
)

// genSources returns the generator inputs to test: the built-in templates
// always, the Synthea bundles of ../shared/fhir/synthea when present.
func genSources(t *testing.T) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	b, err := builtinBundles()
	if err != nil {
		t.Fatal(err)
	}
	out["builtin"] = b
	dir := filepath.Join("..", "..", "..", "shared", "fhir", "synthea")
	if _, err := os.Stat(dir); err != nil {
		t.Logf("Synthea bundles absent (%s): testing the built-in templates only", dir)
		return out
	}
	syn, err := LoadSyntheaBundles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(syn) > 0 {
		out["synthea"] = syn
	}
	return out
}

// collectRefs appends every Reference.reference string in the JSON value v.
func collectRefs(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" {
				*out = append(*out, s)
				continue
			}
			collectRefs(e, out)
		}
	case []any:
		for _, e := range x {
			collectRefs(e, out)
		}
	}
}

func TestGenerator(t *testing.T) {
	for name, bundles := range genSources(t) {
		t.Run(name, func(t *testing.T) {
			// enough for several copies of every source, the last cut short
			probe, err := NewGenerator(bundles, 1000, 1)
			if err != nil {
				t.Fatal(err)
			}
			perRound := len(probe.Shared())
			for k := 0; k < probe.Sources(); k++ {
				perRound += probe.CopyLen(k)
			}
			n := 3*perRound + 77
			g, err := NewGenerator(bundles, n, 1)
			if err != nil {
				t.Fatal(err)
			}
			all := map[string]bool{} // Type/id
			var resources []GenResource
			resources = append(resources, g.Shared()...)
			for k := 0; k < g.Copies(); k++ {
				c := g.Copy(k)
				if len(c) != g.CopyLen(k) {
					t.Fatalf("copy %d: %d resources, CopyLen says %d", k, len(c), g.CopyLen(k))
				}
				if c[0].Type != "Patient" || c[0].ID != g.PatientID(k) {
					t.Fatalf("copy %d starts with %s, want Patient/%s", k, c[0].Ref(), g.PatientID(k))
				}
				resources = append(resources, c...)
			}
			if len(resources) != n {
				t.Fatalf("%d resources, want %d", len(resources), n)
			}
			for _, r := range resources {
				if !fhir.ValidID(r.ID) {
					t.Fatalf("invalid id %q", r.ID)
				}
				if all[r.Ref()] {
					t.Fatalf("duplicate %s", r.Ref())
				}
				all[r.Ref()] = true
			}

			// every reference resolves to a generated resource, of the
			// same copy or a shared one; ids and identifiers are unique
			sharedRefs := map[string]bool{}
			for _, r := range g.Shared() {
				sharedRefs[r.Ref()] = true
			}
			idents := map[string]string{}
			types := map[string]int{}
			for k := 0; k < g.Copies(); k++ {
				own := map[string]bool{}
				c := g.Copy(k)
				for _, r := range c {
					own[r.Ref()] = true
				}
				for _, r := range c {
					types[r.Type]++
					var v map[string]any
					if err := json.Unmarshal(r.Body, &v); err != nil {
						t.Fatalf("%s: %v", r.Ref(), err)
					}
					if v["id"] != r.ID || v["resourceType"] != r.Type {
						t.Fatalf("%s: body has %v/%v", r.Ref(), v["resourceType"], v["id"])
					}
					var refs []string
					collectRefs(v, &refs)
					for _, ref := range refs {
						if !own[ref] && !sharedRefs[ref] {
							t.Fatalf("%s (copy %d) refers to %s, which is neither in its copy nor shared", r.Ref(), k, ref)
						}
					}
					if r.Type == "Patient" {
						if sub, ok := v["subject"]; ok {
							t.Fatalf("patient with subject %v", sub)
						}
						ids, _ := v["identifier"].([]any)
						if len(ids) == 0 {
							t.Fatalf("%s has no identifier", r.Ref())
						}
						for _, x := range ids {
							m := x.(map[string]any)
							key := m["system"].(string) + "|" + m["value"].(string)
							if prev, dup := idents[key]; dup {
								t.Fatalf("identifier %s on %s and %s", key, prev, r.Ref())
							}
							idents[key] = r.Ref()
						}
					}
					if strings.Contains(string(r.Body), "urn:uuid:") {
						t.Fatalf("%s keeps a urn:uuid reference", r.Ref())
					}
				}
			}

			// proportions: a whole number of rounds of copies has exactly
			// the sources' proportions; ours is within the cut-off copy
			src := map[string]int{}
			srcTotal := 0
			for k := 0; k < g.Sources(); k++ {
				for _, r := range g.Copy(k) {
					src[r.Type]++
					srcTotal++
				}
			}
			total := 0
			for _, v := range types {
				total += v
			}
			for _, typ := range genTypes {
				want := float64(src[typ]) / float64(srcTotal)
				got := float64(types[typ]) / float64(total)
				if math.Abs(got-want) > 0.02 {
					t.Errorf("%s: %.3f of the copies, sources have %.3f", typ, got, want)
				}
			}
			if types["Observation"]*2 < total {
				t.Errorf("Observations are %d of %d: not mostly Observations", types["Observation"], total)
			}
			if got, want := g.TypeCounts(), types; got["Observation"] != want["Observation"] || got["Patient"] != g.Copies() {
				t.Errorf("TypeCounts %v, counted %v", got, want)
			}
			sum := 0
			for _, v := range g.CodeCounts() {
				sum += v
			}
			if sum != types["Observation"] {
				t.Errorf("CodeCounts add up to %d, %d Observations", sum, types["Observation"])
			}

			// the same copy twice is the same; another copy of the same
			// source differs in ids, identifiers and dates
			a, b := g.Copy(1), g.Copy(1)
			for i := range a {
				if string(a[i].Body) != string(b[i].Body) {
					t.Fatalf("copy 1 is not deterministic at %s", a[i].Ref())
				}
			}
			if g.Copies() > g.Sources()+1 {
				other := g.Copy(1 + g.Sources())
				if other[0].ID == a[0].ID || g.Shift(1) == g.Shift(1+g.Sources()) && g.Family(1, "x") == g.Family(1+g.Sources(), "x") {
					t.Errorf("copies 1 and %d of the same source are alike", 1+g.Sources())
				}
			}
		})
	}
}

// TestGeneratedResourcesValidate runs every resource of the first and the
// last copy through the validator the server uses.
func TestGeneratedResourcesValidate(t *testing.T) {
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		t.Fatal(err)
	}
	val, err := fhir.NewValidator(defs)
	if err != nil {
		t.Fatal(err)
	}
	for name, bundles := range genSources(t) {
		t.Run(name, func(t *testing.T) {
			g, err := NewGenerator(bundles, 5000, 7)
			if err != nil {
				t.Fatal(err)
			}
			check := append([]GenResource{}, g.Shared()...)
			check = append(check, g.Copy(0)...)
			check = append(check, g.Copy(g.Copies()-1)...)
			for _, r := range check {
				if _, err := val.Validate(r.Body); err != nil {
					t.Fatalf("%s does not validate: %v", r.Ref(), err)
				}
			}
		})
	}
}

func TestIdent(t *testing.T) {
	for _, tc := range []struct {
		orig string
		k    int
		want string
	}{
		{"999-91-3567", 42, "990-00-0042"},
		{"S99931344", 1234567, "S91234567"},
		{"X31949511X", 7, "X30000007X"},
	} {
		if got := ident(tc.k, tc.orig); got != tc.want {
			t.Errorf("ident(%d, %q) = %q, want %q", tc.k, tc.orig, got, tc.want)
		}
	}
}

func BenchmarkGenerateCopy(b *testing.B) {
	bundles, err := LoadSyntheaBundles(filepath.Join("..", "..", "..", "shared", "fhir", "synthea"))
	if err != nil || len(bundles) == 0 {
		if bundles, err = builtinBundles(); err != nil {
			b.Fatal(err)
		}
	}
	g, err := NewGenerator(bundles, 1_000_000, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		n += len(g.Copy(i % g.Copies()))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/resource")
}
