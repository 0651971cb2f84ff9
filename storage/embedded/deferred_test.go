package embedded_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"regie/auth/audit"
	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
	"regie/storage/embedded"
)

// openDeferred opens a store that materialises deferred writes only when
// a read needs them or the backlog is over maxBacklog (0: the default).
func openDeferred(t *testing.T, dir string, maxBacklog int) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(dir, &embedded.Options{Idle: -1, MaxBacklog: maxBacklog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func writeDeferred(t *testing.T, s *embedded.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		r, err := s.Write(t0, auditWrite(id, true))
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != 1 || r.ID != id {
			t.Fatalf("deferred write returned %s version %d", r.Ref(), r.Version)
		}
	}
}

func auditSearch(q *search.Query) *search.Query {
	if q.Types == nil {
		q.Types = []string{"AuditEvent"}
	}
	return q
}

// A deferred write waits in the backlog until something could see it: then
// it is there, exactly as written.
func TestDeferredIsSeenAtOnce(t *testing.T) {
	anna := &search.Match{Param: "patient", Type: fhir.ParamReference, Values: []search.Value{{RefType: "Patient", RefID: "anna"}}}
	tests := []struct {
		name   string
		settle func(s *embedded.Store) (int, error) // how many AuditEvents it saw
	}{
		{"read", func(s *embedded.Store) (int, error) {
			_, err := s.Read(t0, "AuditEvent", "a1")
			return 1, err
		}},
		{"vread", func(s *embedded.Store) (int, error) {
			_, err := s.VRead(t0, "AuditEvent", "a1", 1)
			return 1, err
		}},
		{"read entries", func(s *embedded.Store) (int, error) {
			_, e, err := s.ReadEntries(t0, "AuditEvent", "a1")
			if err == nil && len(e) != 2 {
				err = fmt.Errorf("%d entries", len(e))
			}
			return 1, err
		}},
		{"search by patient", func(s *embedded.Store) (int, error) {
			p, err := s.Search(t0, auditSearch(&search.Query{Where: anna, Total: search.TotalAccurate}))
			if err != nil {
				return 0, err
			}
			return len(p.Resources), nil
		}},
		{"system search", func(s *embedded.Store) (int, error) {
			p, err := s.Search(t0, &search.Query{Where: anna})
			if err != nil {
				return 0, err
			}
			return len(p.Resources), nil
		}},
		{"revinclude from a patient search", func(s *embedded.Store) (int, error) {
			p, err := s.Search(t0, &search.Query{Types: []string{"Patient"}, RevInclude: []search.Include{{Source: "AuditEvent", Param: "patient"}}})
			if err != nil {
				return 0, err
			}
			return len(p.Included), nil
		}},
		{"_has", func(s *embedded.Store) (int, error) {
			p, err := s.Search(t0, &search.Query{Types: []string{"Patient"}, Where: &search.Has{Type: "AuditEvent", Param: "patient", Where: &search.Match{Param: "_id", Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: "a1"}}}}})
			if err != nil {
				return 0, err
			}
			return 3 * len(p.Resources), nil
		}},
		{"type history", func(s *embedded.Store) (int, error) {
			p, err := s.History(t0, &storage.HistoryQuery{Type: "AuditEvent"})
			if err != nil {
				return 0, err
			}
			return len(p.Resources), nil
		}},
		{"system history", func(s *embedded.Store) (int, error) {
			p, err := s.History(t0, &storage.HistoryQuery{})
			if err != nil {
				return 0, err
			}
			return len(p.Resources) - 1, nil // and the patient
		}},
		{"read in a transaction", func(s *embedded.Store) (int, error) {
			return 1, s.Transact(t0, func(tx storage.Tx) error {
				_, err := tx.Read(t0, "AuditEvent", "a2")
				return err
			})
		}},
		{"search in a transaction", func(s *embedded.Store) (int, error) {
			n := 0
			err := s.Transact(t0, func(tx storage.Tx) error {
				p, err := tx.Search(t0, auditSearch(&search.Query{Where: anna}))
				if p != nil {
					n = len(p.Resources)
				}
				return err
			})
			return n, err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openDeferred(t, t.TempDir(), 0)
			if _, err := s.Write(t0, &storage.Write{Type: "Patient", ID: "anna", Body: []byte(`{"resourceType":"Patient"}`)}); err != nil {
				t.Fatal(err)
			}
			writeDeferred(t, s, "a0", "a1", "a2")
			if n := s.Backlog(); n != 3 {
				t.Fatalf("backlog %d, want 3", n)
			}
			// Reads that cannot see an AuditEvent leave the backlog alone.
			if _, err := s.Read(t0, "Patient", "anna"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Search(t0, &search.Query{Types: []string{"Patient"}}); err != nil {
				t.Fatal(err)
			}
			if n := s.Backlog(); n != 3 {
				t.Fatalf("backlog %d after reading a patient, want 3", n)
			}
			n, err := tc.settle(s)
			if err != nil {
				t.Fatal(err)
			}
			if n != 3 && tc.name != "read" && tc.name != "vread" && tc.name != "read entries" && tc.name != "read in a transaction" {
				t.Fatalf("saw %d AuditEvents, want 3", n)
			}
			if b := s.Backlog(); b != 0 {
				t.Fatalf("backlog %d, want 0", b)
			}
			if n, err := verify(t, s); err != nil || n != 3 {
				t.Fatalf("verified %d links (err %v), want 3", n, err)
			}
			r, err := s.Read(t0, "AuditEvent", "a2")
			if err != nil {
				t.Fatal(err)
			}
			if err := (&audit.Verifier{}).Next("a0", r.Body); err == nil {
				t.Fatal("a2 verifies as the first link")
			}
		})
	}
}

// A deferred write is durable: it survives a reopen before it was
// materialised, with its place in the chain.
func TestDeferredSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openDeferred(t, dir, 0)
	if _, err := s.Write(t0, auditWrite("p0")); err != nil { // an ordinary chained write first
		t.Fatal(err)
	}
	writeDeferred(t, s, "a1", "a2", "a3")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDeferred(t, dir, 0)
	if n := s.Backlog(); n != 3 {
		t.Fatalf("backlog %d after reopening, want 3", n)
	}
	if n, err := verify(t, s); err != nil || n != 4 {
		t.Fatalf("verified %d links (err %v), want 4", n, err)
	}
	writeDeferred(t, s, "a4")
	p, err := s.History(t0, &storage.HistoryQuery{Type: "AuditEvent"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range p.Resources {
		ids = append(ids, r.ID)
	}
	if fmt.Sprint(ids) != "[a4 a3 a2 a1 p0]" {
		t.Fatalf("history %v, want newest first [a4 a3 a2 a1 p0]", ids)
	}
	if n, err := verify(t, s); err != nil || n != 5 {
		t.Fatalf("verified %d links (err %v), want 5", n, err)
	}
}

// The backlog stays bounded: above MaxBacklog the writer materialises
// after every batch. And with Idle set it empties by itself.
func TestDeferredBacklog(t *testing.T) {
	s := openDeferred(t, t.TempDir(), 10)
	for i := range 300 {
		writeDeferred(t, s, fmt.Sprint("a", i))
		if n := s.Backlog(); n > 11 {
			t.Fatalf("backlog %d after %d writes, want at most 11", n, i+1)
		}
	}
	if n, err := verify(t, s); err != nil || n != 300 {
		t.Fatalf("verified %d links (err %v), want 300", n, err)
	}

	s2, err := embedded.Open(t.TempDir(), &embedded.Options{Idle: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for i := range 50 {
		if _, err := s2.Write(t0, auditWrite(fmt.Sprint("a", i), true)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s2.Backlog() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("backlog %d after 10 s idle", s2.Backlog())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A deferred write in a transaction commits and rolls back with it, and
// the transaction reads it as stored.
func TestDeferredInTransaction(t *testing.T) {
	s := openDeferred(t, t.TempDir(), 0)
	boom := errors.New("boom")
	err := s.Transact(t0, func(tx storage.Tx) error {
		if _, err := tx.Write(t0, auditWrite("x0", true)); err != nil {
			return err
		}
		if _, err := tx.Read(t0, "AuditEvent", "x0"); err != nil {
			return fmt.Errorf("read in its transaction: %w", err)
		}
		if _, err := tx.Write(t0, auditWrite("x1", true)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if n := s.Backlog(); n != 0 {
		t.Fatalf("backlog %d after a rollback, want 0", n)
	}
	if _, err := s.Read(t0, "AuditEvent", "x0"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("rolled-back deferred write: %v", err)
	}
	if n, err := verify(t, s); err != nil || n != 0 {
		t.Fatalf("verified %d links (err %v), want 0", n, err)
	}
	err = s.Transact(t0, func(tx storage.Tx) error {
		_, err := tx.Write(t0, auditWrite("y0", true))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Backlog(); n != 1 {
		t.Fatalf("backlog %d, want 1", n)
	}
	if n, err := verify(t, s); err != nil || n != 1 {
		t.Fatalf("verified %d links (err %v), want 1", n, err)
	}
}

// A deferred resource is immutable at once, and a deferred write needs a
// fresh id.
func TestDeferredIsImmutable(t *testing.T) {
	s := openDeferred(t, t.TempDir(), 0)
	writeDeferred(t, s, "a0")
	for _, w := range []*storage.Write{
		{Type: "AuditEvent", ID: "a0", Body: []byte(`{"resourceType":"AuditEvent"}`)},
		{Type: "AuditEvent", ID: "a0", Delete: true},
		auditWrite("a0", true),
		auditWrite("a0"),
	} {
		s2 := openDeferred(t, t.TempDir(), 0)
		writeDeferred(t, s2, "a0")
		if _, err := s2.Write(t0, w); !errors.Is(err, storage.ErrImmutable) {
			t.Errorf("write (deferred %v, delete %v) of a deferred resource: %v, want ErrImmutable", w.Defer, w.Delete, err)
		}
	}
	if _, err := s.Write(t0, &storage.Write{Type: "AuditEvent", ID: "plain", Body: []byte(`{"resourceType":"AuditEvent"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(t0, auditWrite("plain", true)); !errors.Is(err, storage.ErrExists) {
		t.Errorf("deferred write of an existing unchained id: %v, want ErrExists", err)
	}
	w := auditWrite("u", true)
	w.Chain = nil
	if _, err := s.Write(t0, w); err == nil {
		t.Error("an unchained write was deferred")
	}
}

// Tampering with a row of the deferred table is found as with a stored
// link.
func TestDeferredTampering(t *testing.T) {
	tests := []struct {
		name      string
		sql       string
		index     int
		id        string
		truncated bool
	}{
		{"changed body", `UPDATE deferred SET body = replace(body, 'Patient/anna', 'Patient/bram') WHERE seq = 8`, 8, "a8", false},
		{"deleted row", `DELETE FROM deferred WHERE seq = 7`, 6, "a7", false},
		{"removed tail", `DELETE FROM deferred WHERE seq >= 9`, 0, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openDeferred(t, t.TempDir(), 0)
			for i := range 5 {
				if _, err := s.Write(t0, auditWrite(fmt.Sprint("a", i))); err != nil {
					t.Fatal(err)
				}
			}
			for i := 5; i < 10; i++ {
				// in a transaction: to the deferred table (the log has its own test)
				err := s.Transact(t0, func(tx storage.Tx) error {
					_, err := tx.Write(t0, auditWrite(fmt.Sprint("a", i), true))
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if _, err := rawDB(t, s).Exec(tc.sql); err != nil {
				t.Fatal(err)
			}
			_, err := verify(t, s)
			if tc.truncated {
				if !errors.Is(err, embedded.ErrChainTruncated) {
					t.Fatalf("got %v, want ErrChainTruncated", err)
				}
				return
			}
			var broken *audit.BrokenLinkError
			if !errors.As(err, &broken) {
				t.Fatalf("got %v, want a broken link", err)
			}
			if broken.Index != tc.index || broken.ID != tc.id {
				t.Fatalf("broken at %d (%s), want %d (%s): %v", broken.Index, broken.ID, tc.index, tc.id, err)
			}
		})
	}
}
