package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"regie/auth/audit"
	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

var bg = context.Background()

// logEvent is a deferred AuditEvent write as the engine makes it.
func logEvent(id string) *storage.Write {
	ev := audit.Event{ID: id, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Kind: "rest", Interaction: "read",
		Action: audit.ActionRead, Who: "Practitioner/p1", Patients: []string{"anna"}, Resource: "CarePlan/c1"}
	return &storage.Write{Type: "AuditEvent", ID: id, Body: ev.JSON(), CreateOnly: true, Chain: audit.Seal, Defer: true,
		Index: []search.Entry{
			{Param: "patient", Type: fhir.ParamReference, RefType: "Patient", RefID: "anna"},
			{Param: "date", Type: fhir.ParamDate, Lo: 1, Hi: 2},
		}}
}

// openLogged opens a store that materialises only when asked, and writes
// a0 (to the deferred table: the first AuditEvent puts its type and
// parameters in the dictionary) and a1..a<n-1> (to the log).
func openLogged(t *testing.T, dir string, n int) *Store {
	t.Helper()
	s, err := Open(dir, &Options{Idle: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := range n {
		if _, err := s.Write(bg, logEvent(fmt.Sprint("a", i))); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func verifyChain(s *Store) (int, error) {
	var v audit.Verifier
	err := s.WalkChain(bg, func(id string, body []byte) error { return v.Next(id, body) })
	return v.Count(), err
}

// frames splits a log into its frames.
func frames(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for p := 0; p < len(data) && !allZero(data[p:]); {
		_, n, err := parseFrame(data[p:])
		if err != nil {
			t.Fatalf("frame at %d: %v", p, err)
		}
		out = append(out, data[p:p+n])
		p += n
	}
	return out
}

func TestLogRecords(t *testing.T) {
	dir := t.TempDir()
	s := openLogged(t, dir, 6)
	var rows int
	if err := s.wconn.QueryRowContext(bg, `SELECT count(*) FROM deferred`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("%d rows in the deferred table (%v), want 1", rows, err)
	}
	if got := frames(t, readLog(t, dir)); len(got) != 5 {
		t.Fatalf("%d records in the log, want 5", len(got))
	}
	if n := s.Backlog(); n != 6 {
		t.Fatalf("backlog %d, want 6", n)
	}
	if n, err := verifyChain(s); err != nil || n != 6 {
		t.Fatalf("verified %d links (err %v), want 6", n, err)
	}
	// A deferred write of an id waiting in the log is refused.
	if _, err := s.Write(bg, logEvent("a3")); !errors.Is(err, storage.ErrImmutable) {
		t.Fatalf("second write of a3: %v", err)
	}
	// Reads find them; the log is materialised in order.
	p, err := s.History(bg, &storage.HistoryQuery{Type: "AuditEvent"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Resources) != 6 || p.Resources[0].ID != "a5" || p.Resources[5].ID != "a0" {
		t.Fatalf("history %v", p.Resources)
	}
	if n := s.Backlog(); n != 0 {
		t.Fatalf("backlog %d after a read, want 0", n)
	}
	if n, err := verifyChain(s); err != nil || n != 6 {
		t.Fatalf("after materialising: verified %d links (err %v), want 6", n, err)
	}
	var off, seq int64
	if err := s.wconn.QueryRowContext(bg, `SELECT off, seq FROM log_state`).Scan(&off, &seq); err != nil || seq != 6 || off != s.dlog.end.Load() {
		t.Fatalf("log_state off %d seq %d (%v), want the log's end and 6", off, seq, err)
	}
	// Materialised records are not materialised again after a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openLogged(t, dir, 0)
	if n := s.Backlog(); n != 0 {
		t.Fatalf("backlog %d after reopening, want 0", n)
	}
	if _, err := s.Write(bg, logEvent("a6")); err != nil {
		t.Fatal(err)
	}
	if n, err := verifyChain(s); err != nil || n != 7 {
		t.Fatalf("verified %d links (err %v), want 7", n, err)
	}
	if _, err := s.Read(bg, "AuditEvent", "a6"); err != nil {
		t.Fatal(err)
	}
}

func readLog(t *testing.T, dir string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, LogName))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A write torn by a crash leaves a partial record at the end: the next
// open cuts it off, keeps it in LogName.torn, and goes on.
func TestLogTornTail(t *testing.T) {
	dir := t.TempDir()
	s := openLogged(t, dir, 6)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data := readLog(t, dir)
	fs := frames(t, data)
	torn := fs[len(fs)-1][:20]
	if err := os.WriteFile(filepath.Join(dir, LogName), append(data, torn...), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openLogged(t, dir, 0)
	if n := s.Backlog(); n != 6 {
		t.Fatalf("backlog %d, want 6", n)
	}
	kept, err := os.ReadFile(filepath.Join(dir, LogName+".torn"))
	if err != nil || !bytes.Equal(kept, torn) {
		t.Fatalf("kept %q (%v), want the torn record", kept, err)
	}
	if !bytes.Equal(readLog(t, dir), data) {
		t.Fatal("the log was not cut back to its last whole record")
	}
	if _, err := s.Write(bg, logEvent("a6")); err != nil {
		t.Fatal(err)
	}
	if n, err := verifyChain(s); err != nil || n != 7 {
		t.Fatalf("verified %d links (err %v), want 7", n, err)
	}
}

// Changing or removing a record of the log is found by the chain, as in
// the database; a record damaged without its checksum fixed is refused.
func TestLogTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(fs [][]byte) [][]byte
		index  int
		id     string
	}{
		{"changed body", func(fs [][]byte) [][]byte {
			d, _, _ := parseFrame(fs[3])
			d.body = bytes.Replace(d.body, []byte("Patient/anna"), []byte("Patient/bram"), 1)
			fs[3] = appendFrame(nil, &d)
			return fs
		}, 5, "a5"},
		{"removed record", func(fs [][]byte) [][]byte {
			return append(fs[:2:2], fs[3:]...)
		}, 3, "a4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openLogged(t, dir, 7)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			fs := tc.tamper(frames(t, readLog(t, dir)))
			if err := os.WriteFile(filepath.Join(dir, LogName), bytes.Join(fs, nil), 0o600); err != nil {
				t.Fatal(err)
			}
			s = openLogged(t, dir, 0)
			_, err := verifyChain(s)
			var broken *audit.BrokenLinkError
			if !errors.As(err, &broken) {
				t.Fatalf("got %v, want a broken link", err)
			}
			if broken.Index != tc.index || broken.ID != tc.id {
				t.Fatalf("broken at %d (%s), want %d (%s): %v", broken.Index, broken.ID, tc.index, tc.id, err)
			}
		})
	}
	t.Run("damaged record", func(t *testing.T) {
		dir := t.TempDir()
		s := openLogged(t, dir, 7)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		data := readLog(t, dir)
		fs := frames(t, data)
		at := len(fs[0]) + len(fs[1]) + 40 // inside the third record
		data[at] ^= 0xff
		if err := os.WriteFile(filepath.Join(dir, LogName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s = openLogged(t, dir, 0)
		// From the damaged record on, the log is kept aside, not read.
		kept, err := os.ReadFile(filepath.Join(dir, LogName+".torn"))
		if err != nil || len(kept) != len(data)-len(fs[0])-len(fs[1]) {
			t.Fatalf("kept %d bytes (%v)", len(kept), err)
		}
		if n, err := verifyChain(s); err != nil || n != 3 {
			t.Fatalf("verified %d links (err %v), want 3", n, err)
		}
	})
}

// Once everything in it is materialised, a large log is emptied, and the
// chain goes on across it.
func TestLogEmptied(t *testing.T) {
	old := logTruncateAt
	logTruncateAt = 1
	defer func() { logTruncateAt = old }()
	dir := t.TempDir()
	s := openLogged(t, dir, 5)
	if err := s.Settle(bg); err != nil {
		t.Fatal(err)
	}
	if n := len(readLog(t, dir)); n != 0 {
		t.Fatalf("log of %d bytes after settling, want 0", n)
	}
	for i := 5; i < 9; i++ {
		if _, err := s.Write(bg, logEvent(fmt.Sprint("a", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openLogged(t, dir, 0)
	if n := s.Backlog(); n != 4 {
		t.Fatalf("backlog %d, want 4", n)
	}
	if n, err := verifyChain(s); err != nil || n != 9 {
		t.Fatalf("verified %d links (err %v), want 9", n, err)
	}
	p, err := s.Search(bg, &search.Query{Types: []string{"AuditEvent"}, Total: search.TotalAccurate})
	if err != nil || p.Total != 9 {
		t.Fatalf("search found %d (%v), want 9", p.Total, err)
	}
}

// When the log cannot be written, deferred writes fail (the engine then
// refuses the read they audit) and nothing is half written.
func TestLogFailureFailsClosed(t *testing.T) {
	dir := t.TempDir()
	s := openLogged(t, dir, 3)
	s.dlog.f.Close() // every write to it fails now
	if _, err := s.Write(bg, logEvent("a3")); err == nil {
		t.Fatal("a deferred write succeeded without its log")
	}
	if h := s.pubHead.Load(); h.seq != 3 {
		t.Fatalf("head at %d after a failed append, want 3", h.seq)
	}
}
