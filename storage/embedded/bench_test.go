package embedded_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
	"regie/storage/embedded"
)

var t0 = context.Background()

// body returns a compact resource of 1.5 to 2.5 KB (2 KB on average).
func body(typ string, n int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"resourceType":%q,"status":"final","n":%d,"code":{"coding":[{"system":"http://loinc.org","code":"%d-1","display":"Glucose [Mass/volume] in Blood"}]},`, typ, n, n%500)
	fmt.Fprintf(&b, `"subject":{"reference":"Patient/p%d"},"effectiveDateTime":"2024-03-%02dT10:00:00Z","valueQuantity":{"value":%d.5,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"},"note":[`, n%1000, n%28+1, n%200)
	for b.Len() < 1450+n%1000 {
		b.WriteString(`{"text":"Lorem ipsum dolor sit amet, consectetur adipiscing elit."},`)
	}
	b.WriteString(`{"text":"end"}]}`)
	return []byte(b.String())
}

// entries returns index entries shaped like an Observation's (15 entries,
// one composite value).
func entries(n int) []search.Entry {
	code := fmt.Sprintf("%d-1", n%500)
	day := time.Date(2024, 3, n%28+1, 10, 0, 0, 0, time.UTC).UnixMicro()
	return []search.Entry{
		{Param: "code", Type: fhir.ParamToken, System: "http://loinc.org", Code: code, Text: "glucose [mass/volume] in blood"},
		{Param: "combo-code", Type: fhir.ParamToken, System: "http://loinc.org", Code: code},
		{Param: "status", Type: fhir.ParamToken, System: "http://hl7.org/fhir/observation-status", Code: "final"},
		{Param: "category", Type: fhir.ParamToken, System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "laboratory"},
		{Param: "identifier", Type: fhir.ParamToken, System: "urn:oid:1.2.3.4", Code: fmt.Sprintf("obs-%d", n)},
		{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: fmt.Sprintf("p%d", n%1000)},
		{Param: "patient", Type: fhir.ParamReference, RefType: "Patient", RefID: fmt.Sprintf("p%d", n%1000)},
		{Param: "encounter", Type: fhir.ParamReference, RefType: "Encounter", RefID: fmt.Sprintf("e%d", n%5000)},
		{Param: "performer", Type: fhir.ParamReference, RefType: "Practitioner", RefID: "pr1"},
		{Param: "date", Type: fhir.ParamDate, Lo: day, Hi: day + 999_999},
		{Param: "value-quantity", Type: fhir.ParamQuantity, LoF: float64(n%200) + 0.45, HiF: float64(n%200) + 0.55, Num: float64(n%200) + 0.5,
			UnitSystem: "http://unitsofmeasure.org", UnitCode: "mg/dL", CanonUnit: "g.m-3", CanonLo: 10 * (float64(n%200) + 0.45), CanonHi: 10 * (float64(n%200) + 0.55), Canon: 10 * (float64(n%200) + 0.5)},
		{Param: "code-value-quantity#0", Type: fhir.ParamToken, Group: 1, System: "http://loinc.org", Code: code},
		{Param: "code-value-quantity#1", Type: fhir.ParamQuantity, Group: 1, LoF: float64(n%200) + 0.45, HiF: float64(n%200) + 0.55, Num: float64(n%200) + 0.5,
			UnitSystem: "http://unitsofmeasure.org", UnitCode: "mg/dL"},
		{Param: "_profile", Type: fhir.ParamURI, Str: "http://hl7.org/fhir/StructureDefinition/vitalsigns"},
		{Param: "_source", Type: fhir.ParamURI, Str: "urn:regie:bench"},
	}
}

// fixture holds precomputed bodies and entries, so that benchmarks measure
// the store rather than the building of their input.
type fixture struct {
	bodies  [][]byte
	entries [][]search.Entry
}

func newFixture() *fixture {
	f := &fixture{}
	for n := range 1000 {
		f.bodies = append(f.bodies, body("Observation", n))
		f.entries = append(f.entries, entries(n))
	}
	return f
}

func (f *fixture) write(n int, index bool) *storage.Write {
	w := &storage.Write{Type: "Observation", ID: fmt.Sprint("o", n), Body: f.bodies[n%len(f.bodies)]}
	if index {
		w.Index = f.entries[n%len(f.entries)]
	}
	return w
}

func benchStore(b *testing.B) *embedded.Store {
	b.Helper()
	s, err := embedded.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkCreate measures durable single-resource creates (2 KB body with
// 15 index entries, each its own Write) from 1 and 32 concurrent writers;
// group commit acknowledges a whole batch with one fsync.
func BenchmarkCreate(b *testing.B) {
	for _, tc := range []struct {
		name    string
		writers int
		index   bool
	}{
		{"writers=1", 1, true},
		{"writers=32", 32, true},
		{"writers=32/noindex", 32, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := benchStore(b)
			f := newFixture()
			var next atomic.Int64
			b.SetBytes(int64(len(body("Observation", 0))))
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			runN(b, tc.writers, func() {
				if _, err := s.Write(t0, f.write(int(next.Add(1)), tc.index)); err != nil {
					b.Error(err)
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "creates/s")
			reportCPU(b, cpu0)
			st := s.Stats()
			b.ReportMetric(float64(st.Requests)/float64(max(1, st.Batches)), "writes/commit")
		})
	}
}

// BenchmarkTransact100 measures bulk ingestion: 100 creates per Transact.
func BenchmarkTransact100(b *testing.B) {
	s := benchStore(b)
	f := newFixture()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	n := 0
	for range b.N {
		err := s.Transact(t0, func(tx storage.Tx) error {
			for range 100 {
				n++
				if _, err := tx.Write(t0, f.write(n, true)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(100*b.N)/time.Since(start).Seconds(), "creates/s")
	reportCPU(b, cpu0)
}

// BenchmarkRead measures point reads of the current version of a 2 KB
// resource by (type, id) from 32 concurrent readers.
func BenchmarkRead(b *testing.B) {
	s := benchStore(b)
	const n = 20000
	for i := 0; i < n; i += 500 {
		err := s.Transact(t0, func(tx storage.Tx) error {
			for j := i; j < i+500; j++ {
				if _, err := tx.Write(t0, &storage.Write{Type: "Observation", ID: fmt.Sprint("o", j), Body: body("Observation", j)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	runN(b, 32, func() {
		i := next.Add(7919) % n
		r, err := s.Read(t0, "Observation", fmt.Sprint("o", i))
		if err != nil || len(r.Body) < 1400 {
			b.Error(err)
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reads/s")
	reportCPU(b, cpu0)
}

// cpuTime returns the CPU time (user + system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runN runs fn b.N times in total from g goroutines.
func runN(b *testing.B, g int, fn func()) {
	var left atomic.Int64
	left.Store(int64(b.N))
	done := make(chan struct{})
	for range g {
		go func() {
			defer func() { done <- struct{}{} }()
			for left.Add(-1) >= 0 {
				fn()
			}
		}()
	}
	for range g {
		<-done
	}
}

// reportCPU reports the process CPU time per operation since cpu0: on a
// shared machine it varies less than wall-clock throughput.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// BenchmarkIngest loads resources in transactions of 500 (the bulk import
// path), with and without index entries, and reports the rate and, for the
// indexed run, the index size relative to the resource size.
func BenchmarkIngest(b *testing.B) {
	for _, index := range []bool{true, false} {
		b.Run(fmt.Sprintf("index=%v", index), func(b *testing.B) {
			s := benchStore(b)
			f := newFixture()
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			for i := 0; i < b.N; i += 500 {
				err := s.Transact(t0, func(tx storage.Tx) error {
					for n := i; n < min(i+500, b.N); n++ {
						if _, err := tx.Write(t0, f.write(n, index)); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "creates/s")
			reportCPU(b, cpu0)
			b.StopTimer()
			if index && b.N >= 10000 {
				sz, err := s.Sizes(t0)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(sz.Index)/float64(sz.Resources), "index/resource-bytes")
				b.ReportMetric(float64(sz.Resources)/float64(b.N), "resource-B/op")
				b.ReportMetric(float64(sz.Index)/float64(b.N), "index-B/op")
			}
		})
	}
}
