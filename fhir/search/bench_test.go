package search

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"regie/fhir"
	"regie/fhir/fhirpath"
)

type benchResource struct {
	typ  string
	body []byte
}

// benchMix returns the resources of the Synthea bundles (Synthea-shaped
// data: mostly Observations, Claims and Encounters), or the search dataset
// when the shared data is absent.
func benchMix(b *testing.B) []benchResource {
	b.Helper()
	mixOnce.Do(func() { mixCache = loadMix(b) })
	b.ResetTimer()
	return mixCache
}

var (
	mixOnce  sync.Once
	mixCache []benchResource
)

func loadMix(b *testing.B) []benchResource {
	var out []benchResource
	files, _ := filepath.Glob(filepath.Join(sharedFHIR, "synthea", "*.json"))
	sort.Strings(files)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		var bundle struct {
			ResourceType string
			Entry        []struct{ Resource json.RawMessage }
		}
		if json.Unmarshal(raw, &bundle) != nil || bundle.ResourceType != "Bundle" {
			continue
		}
		for _, e := range bundle.Entry {
			out = append(out, compactResource(b, e.Resource))
		}
	}
	if len(out) == 0 {
		b.Log("shared Synthea data absent: benchmarking the search dataset")
		raw, err := os.ReadFile(filepath.Join(datasetDir, "resources.json"))
		if err != nil {
			b.Fatal(err)
		}
		var rs []json.RawMessage
		if err := json.Unmarshal(raw, &rs); err != nil {
			b.Fatal(err)
		}
		for _, r := range rs {
			out = append(out, compactResource(b, r))
		}
	}
	return out
}

func compactResource(b *testing.B, r json.RawMessage) benchResource {
	var m any
	if err := json.Unmarshal(r, &m); err != nil {
		b.Fatal(err)
	}
	c, _ := json.Marshal(m)
	rt, _, _ := fhir.Header(c)
	return benchResource{rt, c}
}

func totalBytes(rs []benchResource) int {
	n := 0
	for _, r := range rs {
		n += len(r.body)
	}
	return n
}

// reportRate reports resources per second of wall time, resources per
// second of CPU time used by the process (garbage collection included:
// the rate one core sustains, robust on a shared machine), and the mean
// resource size.
func reportRate(b *testing.B, rs []benchResource, start time.Time, cpuStart time.Duration) {
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N)/el, "resources/s")
	b.ReportMetric(float64(b.N)/(cpuTime()-cpuStart).Seconds(), "resources/cpu-s")
	b.ReportMetric(float64(totalBytes(rs))/float64(len(rs)), "B/resource")
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIndexMix indexes the Synthea resources one after the other on
// one goroutine (one core): resources/s is the ingestion rate of extraction.
func BenchmarkIndexMix(b *testing.B) {
	mix := benchMix(b)
	ix := newTestIndexer(b)
	b.SetBytes(int64(totalBytes(mix) / len(mix)))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		r := mix[i%len(mix)]
		if _, err := ix.Index(r.typ, r.body); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, mix, start, cpu)
}

// BenchmarkIndexType indexes single types of the mix.
func BenchmarkIndexType(b *testing.B) {
	mix := benchMix(b)
	ix := newTestIndexer(b)
	byType := map[string][]benchResource{}
	for _, r := range mix {
		byType[r.typ] = append(byType[r.typ], r)
	}
	for _, typ := range []string{"Patient", "Observation", "Encounter", "Condition", "CarePlan", "Claim", "DiagnosticReport", "ExplanationOfBenefit"} {
		rs := byType[typ]
		if len(rs) == 0 {
			continue
		}
		b.Run(typ, func(b *testing.B) {
			b.SetBytes(int64(totalBytes(rs) / len(rs)))
			b.ReportAllocs()
			start, cpu := time.Now(), cpuTime()
			for i := 0; i < b.N; i++ {
				r := rs[i%len(rs)]
				if _, err := ix.Index(r.typ, r.body); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, rs, start, cpu)
		})
	}
}

// BenchmarkParseResourceMix is the part of Index spent building the typed
// tree (fhirpath.ParseResource).
func BenchmarkParseResourceMix(b *testing.B) {
	mix := benchMix(b)
	defs := loadDefs(b)
	b.SetBytes(int64(totalBytes(mix) / len(mix)))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := fhirpath.ParseResource(defs, mix[i%len(mix)].body); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, mix, start, cpu)
}

// BenchmarkValidateMix is the validation every write does anyway
// (fhir.Validator), the reference for "ingestion without indexing".
func BenchmarkValidateMix(b *testing.B) {
	mix := benchMix(b)
	v, err := fhir.NewValidator(loadDefs(b))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(totalBytes(mix) / len(mix)))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := v.Validate(mix[i%len(mix)].body); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, mix, start, cpu)
}

// BenchmarkParse parses typical requests.
func BenchmarkParse(b *testing.B) {
	p := NewParser(loadDefs(b), Config{})
	for _, c := range []struct{ name, typ, query string }{
		{"identifier", "Patient", "identifier=http://fhir.nl/fhir/NamingSystem/bsn|123456782"},
		{"code-date-count", "Observation", "code=http://loinc.org|8867-4&date=ge2024-01-01&_count=50"},
		{"subject-code", "Observation", "subject=Patient/p1&code=http://loinc.org|29463-7,http://loinc.org|8302-2"},
		{"chain-include-sort", "Observation", "subject:Patient.name=muller&_include=Observation:subject&_sort=-date,_id"},
	} {
		ps, err := ParseParams(c.query)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, _, err := p.Parse([]string{c.typ}, ps, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
