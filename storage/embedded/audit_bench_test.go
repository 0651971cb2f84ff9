package embedded_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"regie/auth/audit"
	"regie/fhir"
	"regie/fhir/search"
	"regie/profiles"
	"regie/storage"
	"regie/storage/embedded"
)

// readEvent is the AuditEvent the engine appends for a read: about 1 KB,
// indexed by the real indexer (about 20 entries).
func readEvent(b *testing.B) ([]byte, []search.Entry) {
	b.Helper()
	ev := audit.Event{ID: "template", Time: time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC), Kind: "rest", Interaction: "read",
		Action: audit.ActionRead, Who: "Practitioner/coach-sanne", WhoDisplay: "Sanne Jansen", Client: "regie-portal",
		Session: "s-4f1c2e9a", Address: "192.0.2.17", Patients: []string{"anna-de-vries"},
		Resource: "CarePlan/anna-plan-2026/_history/3", RequestID: "r-7b3e0c9d41a2"}
	body := ev.JSON()
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		b.Fatal(err)
	}
	ix, err := search.NewIndexer(defs, search.IndexerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	entries, err := ix.Index("AuditEvent", body)
	if err != nil {
		b.Fatal(err)
	}
	return body, entries
}

// BenchmarkAuditAppend measures appending chained AuditEvents through
// the group-commit writer, as the engine does for every read (one
// storage.Write with Chain: audit.Seal per event), from 32 concurrent
// callers and from one. Variants without the chain and without index
// entries show what each costs. cpu-µs/op is the whole process's CPU time
// per append; p50/p95 are the latencies a read waits for its audit record.
func BenchmarkAuditAppend(b *testing.B) {
	body, entries := readEvent(b)
	b.Logf("AuditEvent of %d bytes with %d index entries", len(body), len(entries))
	for _, tc := range []struct {
		name    string
		writers int
		chain   bool
		index   bool
		ordered bool // time-ordered ids instead of random ones (UUIDv4, as the engine's)
	}{
		{"writers=32/chained", 32, true, true, false},
		{"writers=32/chained/deferred", 32, true, true, false},
		{"writers=32/chained/noindex", 32, true, false, false},
		{"writers=32/unchained", 32, false, true, false},
		{"writers=32/chained/ordered-ids", 32, true, true, true},
		{"writers=1/chained", 1, true, true, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			deferred := strings.HasSuffix(tc.name, "/deferred")
			s := benchStore(b)
			if deferred {
				// only the appends: materialising is measured below
				var err error
				if s, err = embedded.Open(b.TempDir(), &embedded.Options{Idle: -1, MaxBacklog: b.N + 1}); err != nil {
					b.Fatal(err)
				}
				defer s.Close()
			}
			var next atomic.Int64
			lat := make([]time.Duration, b.N)
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			runN(b, tc.writers, func() {
				i := next.Add(1) - 1
				id := fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", rand.Uint32(), rand.Uint32()&0xffff, rand.Uint32()&0xfff, rand.Uint32()&0xfff, rand.Uint64()&0xffffffffffff)
				if tc.ordered {
					id = fmt.Sprintf("%016x-%08x", start.UnixNano(), i)
				}
				w := &storage.Write{Type: "AuditEvent", ID: id, Body: body, CreateOnly: true}
				if tc.chain {
					w.Chain = audit.Seal
				}
				if tc.index {
					w.Index = entries
				}
				w.Defer = deferred
				t := time.Now()
				if _, err := s.Write(t0, w); err != nil {
					b.Error(err)
				}
				lat[i] = time.Since(t)
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
			reportCPU(b, cpu0)
			st := s.Stats()
			b.ReportMetric(float64(st.Requests)/float64(max(1, st.Batches)), "writes/commit")
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds()), "p95-µs")
		})
	}
}

// BenchmarkMaterialise measures moving deferred AuditEvents (appended as
// the engine appends them) into the resource tables: what each costs the
// writer later, in bulk. b.N events are appended first, untimed.
func BenchmarkMaterialise(b *testing.B) {
	body, entries := readEvent(b)
	s, err := embedded.Open(b.TempDir(), &embedded.Options{Idle: -1, MaxBacklog: b.N + 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	var next atomic.Int64
	runN(b, 32, func() {
		id := fmt.Sprintf("%016x-%08x", start.UnixNano(), next.Add(1))
		w := &storage.Write{Type: "AuditEvent", ID: id, Body: body, Index: entries, CreateOnly: true, Chain: audit.Seal, Defer: true}
		if _, err := s.Write(t0, w); err != nil {
			b.Error(err)
		}
	})
	if n := s.Backlog(); n != int64(b.N) {
		b.Fatalf("backlog %d, want %d", n, b.N)
	}
	b.ResetTimer()
	t, cpu0 := time.Now(), cpuTime()
	if err := s.Settle(t0); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(t).Seconds(), "events/s")
	reportCPU(b, cpu0)
}

// BenchmarkMaterialiseIdle is BenchmarkMaterialise with the writer
// materialising by itself, a chunk per transaction, as it does when idle.
func BenchmarkMaterialiseIdle(b *testing.B) {
	body, entries := readEvent(b)
	s, err := embedded.Open(b.TempDir(), &embedded.Options{Idle: time.Hour, MaxBacklog: b.N + 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	var next atomic.Int64
	runN(b, 32, func() {
		id := fmt.Sprintf("%016x-%08x", start.UnixNano(), next.Add(1))
		w := &storage.Write{Type: "AuditEvent", ID: id, Body: body, Index: entries, CreateOnly: true, Chain: audit.Seal, Defer: true}
		if _, err := s.Write(t0, w); err != nil {
			b.Error(err)
		}
	})
	b.ResetTimer()
	t, cpu0 := time.Now(), cpuTime()
	if err := s.Close(); err != nil { // materialises chunk by chunk
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(t).Seconds(), "events/s")
	reportCPU(b, cpu0)
}
