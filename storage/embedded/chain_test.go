package embedded_test

import (
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"regie/auth/audit"
	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
	"regie/storage/embedded"
)

// auditWrite is a chained AuditEvent write, as the engine makes it
// (deferred when def is set).
func auditWrite(id string, def ...bool) *storage.Write {
	ev := audit.Event{ID: id, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Kind: "rest", Interaction: "read",
		Action: audit.ActionRead, Who: "Practitioner/p1", Patients: []string{"anna"}, Resource: "CarePlan/c1"}
	return &storage.Write{Type: "AuditEvent", ID: id, Body: ev.JSON(), CreateOnly: true, Chain: seal, Defer: len(def) > 0 && def[0],
		Index: []search.Entry{
			{Param: "patient", Type: fhir.ParamReference, RefType: "Patient", RefID: "anna"},
			{Param: "date", Type: fhir.ParamDate, Lo: 1, Hi: 2},
		}}
}

// seal is audit.Seal, whose argument order is storage.Write.Chain's.
func seal(prev, stamped []byte) (sealed, hash []byte, err error) { return audit.Seal(prev, stamped) }

// verify walks the chain with audit.Verifier and returns its error (a
// *audit.BrokenLinkError for a broken link) and how many links verified.
func verify(t *testing.T, s *embedded.Store) (int, error) {
	t.Helper()
	var v audit.Verifier
	err := s.WalkChain(t.Context(), func(id string, body []byte) error { return v.Next(id, body) })
	return v.Count(), err
}

// bothWays runs a test with plain and with deferred chained writes.
func bothWays(t *testing.T, test func(t *testing.T, def bool)) {
	for _, def := range []bool{false, true} {
		t.Run(fmt.Sprintf("deferred=%v", def), func(t *testing.T) { test(t, def) })
	}
}

// rawDB opens the store's database file for tampering.
func rawDB(t *testing.T, s *embedded.Store) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+s.Path()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestChainVerifies(t *testing.T) { bothWays(t, testChainVerifies) }

func testChainVerifies(t *testing.T, def bool) {
	s := open(t)
	// Single writes, writes in transactions, and concurrent writes (which
	// group commit puts into shared batches) all extend one chain.
	for i := range 5 {
		if _, err := s.Write(t0, auditWrite(fmt.Sprint("a", i), def)); err != nil {
			t.Fatal(err)
		}
	}
	err := s.Transact(t0, func(tx storage.Tx) error {
		for i := range 3 {
			if _, err := tx.Write(t0, auditWrite(fmt.Sprint("t", i), def)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 10 {
				if _, err := s.Write(t0, auditWrite(fmt.Sprint("c", g, "-", i), def)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	n, err := verify(t, s)
	if err != nil || n != 168 {
		t.Fatalf("verified %d links (err %v), want 168", n, err)
	}
	seq, hash, err := s.ChainHead(t0)
	if err != nil || seq != 168 {
		t.Fatalf("head at %d (err %v), want 168", seq, err)
	}
	// The head's hash is the hash of the last stored body.
	var last []byte
	if err := s.WalkChain(t0, func(_ string, body []byte) error { last = body; return nil }); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(last); string(sum[:]) != string(hash) {
		t.Fatal("the head's hash is not the hash of the last link")
	}
	// The stored body is the sealed body the write returned.
	r, err := s.Read(t0, "AuditEvent", "a0")
	if err != nil {
		t.Fatal(err)
	}
	if err := (&audit.Verifier{}).Next("a0", r.Body); err != nil {
		t.Fatal(err)
	}
}

// A batch that rolls back rolls the chain head back with it: the failed
// transaction's links never become predecessors.
func TestChainRollback(t *testing.T) { bothWays(t, testChainRollback) }

func testChainRollback(t *testing.T, def bool) {
	s := open(t)
	if _, err := s.Write(t0, auditWrite("a0", def)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			err := s.Transact(t0, func(tx storage.Tx) error {
				if _, err := tx.Write(t0, auditWrite(fmt.Sprint("x", g), def)); err != nil {
					return err
				}
				if g%2 == 0 {
					return boom
				}
				return nil
			})
			if g%2 == 0 && !errors.Is(err, boom) || g%2 == 1 && err != nil {
				t.Errorf("transaction %d: %v", g, err)
			}
		})
	}
	wg.Wait()
	n, err := verify(t, s)
	if err != nil || n != 5 {
		t.Fatalf("verified %d links (err %v), want 5", n, err)
	}
	if _, err := s.Read(t0, "AuditEvent", "x0"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("rolled-back event: %v", err)
	}
	if _, err := s.Write(t0, auditWrite("a1", def)); err != nil {
		t.Fatal(err)
	}
	if n, err := verify(t, s); err != nil || n != 6 {
		t.Fatalf("verified %d links (err %v), want 6", n, err)
	}
}

func TestChainedIsImmutable(t *testing.T) { bothWays(t, testChainedIsImmutable) }

func testChainedIsImmutable(t *testing.T, def bool) {
	s := open(t)
	if _, err := s.Write(t0, auditWrite("a0", def)); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*storage.Write{
		{Type: "AuditEvent", ID: "a0", Body: []byte(`{"resourceType":"AuditEvent"}`)},
		{Type: "AuditEvent", ID: "a0", Body: []byte(`{"resourceType":"AuditEvent"}`), IfMatch: 1},
		{Type: "AuditEvent", ID: "a0", Delete: true},
	} {
		if _, err := s.Write(t0, w); !errors.Is(err, storage.ErrImmutable) {
			t.Errorf("write %+v of a chained resource: %v, want ErrImmutable", w, err)
		}
	}
	if _, err := s.Write(t0, auditWrite("a0", def)); !errors.Is(err, storage.ErrImmutable) {
		t.Errorf("chained write of an existing chained id: %v", err)
	}
	if _, err := s.Write(t0, &storage.Write{Type: "AuditEvent", ID: "plain", Body: []byte(`{"resourceType":"AuditEvent"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(t0, auditWrite("plain", def)); !errors.Is(err, storage.ErrExists) {
		t.Errorf("chained write of an existing unchained id: %v, want ErrExists", err)
	}
	if n, err := verify(t, s); err != nil || n != 1 {
		t.Fatalf("verified %d links (err %v), want 1", n, err)
	}
}

// Tampering with the stored chain is reported at the first link that no
// longer holds.
func TestChainTampering(t *testing.T) {
	tests := []struct {
		name string
		sql  string
		// the index and id the verifier reports, or truncated
		index     int
		id        string
		truncated bool
	}{
		{"changed body", `UPDATE versions SET body = replace(body, 'Patient/anna', 'Patient/bram') WHERE vid = (SELECT vid FROM chain WHERE seq = 4)`, 4, "a4", false},
		{"deleted version", `DELETE FROM versions WHERE vid = (SELECT vid FROM chain WHERE seq = 3)`, 2, "a2", false},
		{"deleted link", `DELETE FROM chain WHERE seq = 6`, 5, "a6", false},
		{"deleted resource and version", `DELETE FROM versions WHERE vid = (SELECT vid FROM chain WHERE seq = 2);
			DELETE FROM resources WHERE rid = (SELECT rid FROM chain WHERE seq = 2); DELETE FROM chain WHERE seq = 2`, 1, "a2", false},
		{"removed tail", `DELETE FROM chain WHERE seq >= 9`, 0, "", true},
		{"first link replaced", `UPDATE versions SET body = replace(body, 'genesis', 'sha256:00') WHERE vid = (SELECT vid FROM chain WHERE seq = 1)`, 0, "a0", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			for i := range 10 {
				if _, err := s.Write(t0, auditWrite(fmt.Sprint("a", i))); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := verify(t, s); err != nil || n != 10 {
				t.Fatalf("before tampering: %d links, %v", n, err)
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

// ReadEntries returns the entries exactly as written.
func TestReadEntries(t *testing.T) { bothWays(t, testReadEntries) }

func testReadEntries(t *testing.T, def bool) {
	s := open(t)
	w := auditWrite("a0", def)
	if _, err := s.Write(t0, w); err != nil {
		t.Fatal(err)
	}
	r, entries, err := s.ReadEntries(t0, "AuditEvent", "a0")
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "a0" || len(entries) != len(w.Index) {
		t.Fatalf("got %s with %d entries", r.Ref(), len(entries))
	}
	for i := range entries {
		if entries[i] != w.Index[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, entries[i], w.Index[i])
		}
	}
	if _, _, err := s.ReadEntries(t0, "AuditEvent", "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	if _, err := s.Write(t0, &storage.Write{Type: "Patient", ID: "p", Body: []byte(`{"resourceType":"Patient"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(t0, &storage.Write{Type: "Patient", ID: "p", Delete: true}); err != nil {
		t.Fatal(err)
	}
	if r, e, err := s.ReadEntries(t0, "Patient", "p"); !errors.Is(err, storage.ErrDeleted) || r == nil || !r.Deleted || e != nil {
		t.Errorf("deleted: %v %v %v", r, e, err)
	}
}
