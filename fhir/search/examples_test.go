package search

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"regie/fhir"
	"regie/fhir/fhirpath"
)

// sharedFHIR is the shared test data (see ../shared/fhir/README.md); tests
// that need it skip when it is absent.
var sharedFHIR = filepath.Join("..", "..", "..", "shared", "fhir")

// exampleResources returns the resources of the official R4 examples subset
// and of the Synthea bundles (each bundle entry's resource, and the
// examples' Bundle entries too), keyed by file and position.
func exampleResources(t *testing.T, synthea bool) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	dirs := []string{filepath.Join(sharedFHIR, "examples-subset")}
	if synthea {
		dirs = append(dirs, filepath.Join(sharedFHIR, "synthea"))
	}
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		if len(files) == 0 {
			t.Skipf("no examples in %s: the shared FHIR test data is absent", dir)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var head struct {
				ResourceType string `json:"resourceType"`
				Entry        []struct {
					Resource json.RawMessage `json:"resource"`
				} `json:"entry"`
			}
			if json.Unmarshal(b, &head) != nil || head.ResourceType == "" {
				continue // manifest and counts files
			}
			name := filepath.Base(dir) + "/" + filepath.Base(f)
			out[name] = b
			if head.ResourceType == "Bundle" {
				for i, e := range head.Entry {
					if len(e.Resource) > 0 {
						out[name+"#"+itoa(i)] = e.Resource
					}
				}
			}
		}
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestIndexExamples indexes every official example (and, unless -short,
// every resource of the Synthea bundles) without an error, and checks
// that each yields entries for the parameters it obviously has.
func TestIndexExamples(t *testing.T) {
	ix := newTestIndexer(t)
	res := exampleResources(t, !testing.Short())
	types := map[string]int{}
	total := 0
	for name, body := range res {
		rt, _, err := fhir.Header(body)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		es, err := ix.Index(rt, body)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		types[rt]++
		total += len(es)
		for _, e := range es {
			if e.Param == "" || e.Type == "" {
				t.Errorf("%s: entry without parameter or type: %+v", name, e)
			}
			if e.Type == fhir.ParamDate && e.Lo > e.Hi {
				t.Errorf("%s: %s: empty date range", name, e.Param)
			}
			if (e.Type == fhir.ParamNumber || e.Type == fhir.ParamQuantity) && e.LoF > e.HiF {
				t.Errorf("%s: %s: empty number range", name, e.Param)
			}
		}
		switch rt {
		case "Patient", "Practitioner":
			if !hasParam(es, "name") && json.Valid(body) && containsKey(body, "name") {
				t.Errorf("%s: no name entries", name)
			}
		case "Observation":
			if !hasParam(es, "code") {
				t.Errorf("%s: no code entries", name)
			}
		}
	}
	t.Logf("%d resources of %d types, %d entries", len(res), len(types), total)
}

func hasParam(es []Entry, p string) bool {
	return slices.ContainsFunc(es, func(e Entry) bool { return e.Param == p })
}

func containsKey(body []byte, key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	_, ok := m[key]
	return ok
}

// TestIndexPathsAgreeWithEngine checks that the direct navigation used for
// simple paths gives exactly the entries the FHIRPath engine gives, on
// every example.
func TestIndexPathsAgreeWithEngine(t *testing.T) {
	defs := loadDefs(t)
	fast, err := NewIndexer(defs, IndexerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	slow, err := NewIndexer(defs, IndexerConfig{engineOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	res := exampleResources(t, !testing.Short())
	checked := 0
	for name, body := range res {
		rt, _, _ := fhir.Header(body)
		a, errA := fast.Index(rt, body)
		b, errB := slow.Index(rt, body)
		if (errA == nil) != (errB == nil) {
			t.Errorf("%s: errors differ: %v / %v", name, errA, errB)
			continue
		}
		ga, gb := dumpAll(a), dumpAll(b)
		if !slices.Equal(ga, gb) && !slices.Equal(dumpValues(a), dumpValues(b)) {
			t.Errorf("%s: entries differ\nfast   %v\nengine %v", name, diff(ga, gb), diff(gb, ga))
		}
		checked++
	}
	t.Logf("%d resources compared", checked)
}

func dumpAll(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = dumpEntry(e)
	}
	slices.Sort(out)
	return out
}

// dumpValues is dumpAll without the precision ranges, and without
// duplicates: FHIRPath's union operator drops items that are equal
// (1.0 = 1.00) where the direct navigation keeps both precisions.
func dumpValues(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		e.LoF, e.HiF, e.CanonLo, e.CanonHi = 0, 0, 0, 0
		out[i] = dumpEntry(e)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// diff returns the items of a that are not in b.
func diff(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

type discard struct{}

func (discard) item(fhirpath.Value) {}

// TestIndexExamplesEvaluate checks that no search expression fails to
// evaluate on any example (Index leaves such a parameter out for the
// resource instead of rejecting it, which would hide the failure).
func TestIndexExamplesEvaluate(t *testing.T) {
	ix := newTestIndexer(t)
	ctx := context.Background()
	failures := map[string]int{}
	for name, body := range exampleResources(t, !testing.Short()) {
		rt, _, _ := fhir.Header(body)
		root, err := fhirpath.ParseResource(ix.defs, body)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		env := &fhirpath.Env{Resource: root, RootResource: root}
		for _, ip := range ix.types[rt] {
			var bases collector
			if err := ip.eval.eval(ctx, root, env, &bases); err != nil {
				failures[rt+"."+ip.code+": "+err.Error()]++
				continue
			}
			for _, c := range ip.comps {
				for _, b := range bases {
					if n, ok := b.(*fhirpath.Node); ok {
						if err := c.eval.eval(ctx, n, env, discard{}); err != nil {
							failures[rt+"."+c.param+": "+err.Error()]++
						}
					}
				}
			}
		}
	}
	for f, n := range failures {
		t.Errorf("%d× %s", n, f)
	}
}
