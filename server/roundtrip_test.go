package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"regie/fhir"
)

// examplesDir returns the directory of the official R4 examples: the full
// npm package hl7.fhir.r4.examples@4.0.1 (fetched by `make examples` into
// .cache, named by REGIE_FHIR_EXAMPLES), else the subset in
// ../shared/fhir/examples-subset when present.
func examplesDir(t *testing.T) (dir string, full bool) {
	t.Helper()
	if d := os.Getenv("REGIE_FHIR_EXAMPLES"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "package.json")); err == nil {
			return d, true
		}
	}
	if _, err := os.Stat("../.cache/hl7.fhir.r4.examples-4.0.1/package/package.json"); err == nil {
		return "../.cache/hl7.fhir.r4.examples-4.0.1/package", true
	}
	if _, err := os.Stat("../../shared/fhir/examples-subset"); err == nil {
		return "../../shared/fhir/examples-subset", false
	}
	t.Skip("no R4 examples: run `make examples` (needs npm) or provide ../shared/fhir/examples-subset")
	return "", false
}

// knownInvalid lists official examples that are not valid R4 and that the
// validator therefore rejects, with the reason. An example missing from this
// list that is rejected, or listed here and accepted, fails the test.
var knownInvalid = map[string]string{
	"DeviceMetric-example.json":                                                                "parent refers to a DeviceDefinition; R4 allows only Device",
	"DeviceUseStatement-example.json":                                                          "reasonReference refers to a Procedure, which R4 does not allow there",
	"ImplementationGuide-fhir.json":                                                            "lacks the required name and status",
	"ig-r4.json":                                                                               "lacks the required name and status",
	"MedicationRequest-medrx0301.json":                                                         "dispenseRequest.performer refers to a Practitioner; R4 allows only Organization",
	"Observation-clinical-gender.json":                                                         "performer refers to an Encounter, which Observation.performer does not allow",
	"Questionnaire-qs1.json":                                                                   "nested items lack the required linkId",
	"SearchParameter-codesystem-extensions-CodeSystem-author.json":                             "lacks the required base",
	"SearchParameter-codesystem-extensions-CodeSystem-effective.json":                          "lacks the required base",
	"SearchParameter-codesystem-extensions-CodeSystem-end.json":                                "lacks the required base",
	"SearchParameter-codesystem-extensions-CodeSystem-keyword.json":                            "lacks the required base",
	"SearchParameter-codesystem-extensions-CodeSystem-workflow.json":                           "lacks the required base",
	"SearchParameter-valueset-extensions-ValueSet-author.json":                                 "lacks the required base",
	"SearchParameter-valueset-extensions-ValueSet-effective.json":                              "lacks the required base",
	"SearchParameter-valueset-extensions-ValueSet-end.json":                                    "lacks the required base",
	"SearchParameter-valueset-extensions-ValueSet-keyword.json":                                "lacks the required base",
	"SearchParameter-valueset-extensions-ValueSet-workflow.json":                               "lacks the required base",
	"SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json": "its id is 65 characters long; ids have at most 64",
}

// TestRoundTripOfficialExamples PUTs every official example and reads it
// back: the answer must equal the input as JSON apart from meta.versionId
// and meta.lastUpdated.
func TestRoundTripOfficialExamples(t *testing.T) {
	dir, full := examplesDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withMaxBody(64<<20))
	var (
		mu      sync.Mutex
		results []rtResult
		total   int
	)
	work := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				start := time.Now()
				res, counted := roundTrip(t, e, f)
				if d := time.Since(start); d > time.Second {
					t.Logf("slow: %s took %v", filepath.Base(f), d)
				}
				mu.Lock()
				if counted {
					total++
					if res != nil {
						results = append(results, *res)
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, f := range files {
		work <- f
	}
	close(work)
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].file < results[j].file })
	var rejected, differing []string
	for _, r := range results {
		line := fmt.Sprintf("%s: %s", r.file, r.problem)
		if r.rejected {
			rejected = append(rejected, line)
			if _, ok := knownInvalid[r.file]; !ok {
				t.Errorf("rejected, and not a known invalid example: %s", line)
			}
		} else {
			differing = append(differing, line)
			t.Errorf("does not round-trip: %s", line)
		}
	}
	if full {
		for f := range knownInvalid {
			found := false
			for _, r := range results {
				found = found || (r.file == f && r.rejected)
			}
			if !found {
				t.Errorf("%s is listed as invalid but was accepted: update knownInvalid", f)
			}
		}
	}
	t.Logf("round-tripped %d of %d examples from %s (full package: %v); %d rejected by the validator:\n  %s",
		total-len(results), total, dir, full, len(rejected), strings.Join(rejected, "\n  "))
}

// rtResult is an example that did not round-trip.
type rtResult struct {
	file, problem string
	rejected      bool
}

// roundTrip stores one example with PUT and compares the read-back. It
// returns nil when the example round-trips, and whether the file is a
// resource at all.
func roundTrip(t *testing.T, e *env, path string) (*rtResult, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return nil, false
	}
	rt, id, err := fhir.Header(b)
	if err != nil || rt == "" {
		return nil, false // package.json, .index.json
	}
	name := filepath.Base(path)
	fail := func(rejected bool, format string, args ...any) (*rtResult, bool) {
		return &rtResult{name, fmt.Sprintf(format, args...), rejected}, true
	}
	var r *response
	if id == "" || !fhir.ValidID(id) {
		r = e.do("POST", "/fhir/"+rt, string(b))
	} else {
		r = e.do("PUT", "/fhir/"+rt+"/"+id, string(b))
	}
	if r.status >= 300 {
		var msgs []string
		if m := r.json(t); m["issue"] != nil {
			for i, is := range m["issue"].([]any) {
				if i == 3 {
					msgs = append(msgs, "…")
					break
				}
				is := is.(map[string]any)
				msgs = append(msgs, fmt.Sprintf("%v: %v", is["expression"], is["details"].(map[string]any)["text"]))
			}
		}
		return fail(true, "%d %s", r.status, strings.Join(msgs, "; "))
	}
	got := e.do("GET", strings.TrimPrefix(r.header.Get("Location"), "http://regie.test"), "")
	if got.status != 200 {
		return fail(false, "read back: %d", got.status)
	}
	if ok, diff := jsonEqual(t, b, got.body); !ok {
		return fail(false, "differs at %s", diff)
	}
	return nil, true
}
