package embedded_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
	"regie/storage/embedded"
)

// BenchmarkSearchShapes loads 100,000 indexed Observations and times the
// issue-3 query shapes that the minimal search can already express, to
// check that the index tables serve them. It reports the p50 and p95
// latency of each shape (single client) and, for _summary=count over all
// 100,000 matches, counted matches per second.
func BenchmarkSearchShapes(b *testing.B) {
	if testing.Short() {
		b.Skip("loads 100,000 resources")
	}
	const n = 100_000
	s, err := embedded.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := newFixture()
	for i := 0; i < n; i += 1000 {
		err := s.Transact(t0, func(tx storage.Tx) error {
			for j := i; j < i+1000; j++ {
				w := f.write(j, true)
				w.Index = entries(j) // unique identifiers
				if _, err := tx.Write(t0, w); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	tok := func(param, system, code string) *search.Match {
		return &search.Match{Param: param, Type: fhir.ParamToken, Values: []search.Value{{System: system, Code: code}}}
	}
	ref := func(id string) *search.Match {
		return &search.Match{Param: "subject", Type: fhir.ParamReference, Values: []search.Value{{RefType: "Patient", RefID: id}}}
	}
	shapes := []struct {
		name string
		q    func(i int) *search.Query
		want int
	}{
		{"identifier", func(i int) *search.Query {
			return &search.Query{Types: []string{"Observation"}, Where: tok("identifier", "urn:oid:1.2.3.4", fmt.Sprint("obs-", i*7919%n))}
		}, 1},
		{"subject+code", func(i int) *search.Query {
			p := i * 7919 % 1000
			return &search.Query{Types: []string{"Observation"}, Count: 50,
				Where: search.And{ref(fmt.Sprint("p", p)), tok("code", "http://loinc.org", fmt.Sprintf("%d-1", p%500))}}
		}, 50},
		{"code, first page of 50", func(i int) *search.Query {
			return &search.Query{Types: []string{"Observation"}, Count: 50, Where: tok("code", "http://loinc.org", fmt.Sprintf("%d-1", i%500))}
		}, 50},
		{"count status=final", func(int) *search.Query {
			return &search.Query{Types: []string{"Observation"}, Summary: search.SummaryCount,
				Where: tok("status", "http://hl7.org/fhir/observation-status", "final")}
		}, 0},
	}
	b.ResetTimer()
	for _, sh := range shapes {
		var lat []time.Duration
		for i := 0; i < 200; i++ {
			start := time.Now()
			p, err := s.Search(t0, sh.q(i))
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			if len(p.Resources) != sh.want {
				b.Fatalf("%s: %d results, want %d", sh.name, len(p.Resources), sh.want)
			}
			if sh.want == 0 && p.Total != n {
				b.Fatalf("%s: total %d, want %d", sh.name, p.Total, n)
			}
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p50, p95 := lat[len(lat)/2], lat[len(lat)*95/100]
		b.Logf("%-24s p50 %8v  p95 %8v", sh.name, p50, p95)
		if sh.want == 0 {
			b.Logf("%-24s %.1f M matches/s at p50", sh.name, float64(n)/p50.Seconds()/1e6)
		}
	}
}
