package embedded_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
	"regie/storage/embedded"
)

func codeSearch(t *testing.T, s storage.Reader, typ, code string) []string {
	t.Helper()
	p, err := s.Search(t0, &search.Query{Types: []string{typ}, Count: 1000,
		Where: &search.Match{Param: "code", Type: fhir.ParamToken, Values: []search.Value{{System: "http://s", Code: code}}}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range p.Resources {
		ids = append(ids, r.ID)
	}
	return ids
}

func tokenEntry(code string) []search.Entry {
	return []search.Entry{{Param: "code", Type: fhir.ParamToken, System: "http://s", Code: code}}
}

// Everything written survives a close and reopen: resources, history,
// dictionaries (new writes reuse them) and records; lastUpdated keeps
// increasing.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	w1, err := s.Write(t0, &storage.Write{Type: "Patient", ID: "p1", Body: body("Patient", 1), Index: tokenEntry("a")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutRecord(t0, &storage.Record{Kind: "k", Key: "a", Value: []byte("v")}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = embedded.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Read(t0, "Patient", "p1")
	if err != nil || r.Version != 1 || string(r.Body) != string(w1.Body) {
		t.Fatalf("after reopen: %v %v", r, err)
	}
	if ids := codeSearch(t, s, "Patient", "a"); len(ids) != 1 {
		t.Fatalf("index after reopen: %v", ids)
	}
	w2, err := s.Write(t0, &storage.Write{Type: "Patient", ID: "p2", Body: body("Patient", 2), Index: tokenEntry("a")})
	if err != nil {
		t.Fatal(err)
	}
	if !w2.LastUpdated.After(w1.LastUpdated) {
		t.Fatalf("lastUpdated went back after reopen: %v then %v", w1.LastUpdated, w2.LastUpdated)
	}
	if ids := codeSearch(t, s, "Patient", "a"); len(ids) != 2 {
		t.Fatalf("index after a write reusing the reloaded dictionaries: %v", ids)
	}
	if rec, err := s.GetRecord(t0, "k", "a"); err != nil || string(rec.Value) != "v" {
		t.Fatalf("record after reopen: %v %v", rec, err)
	}
	if err := s.Check(t0); err != nil {
		t.Fatal(err)
	}
}

func TestReindex(t *testing.T) {
	s := open(t)
	for i := range 1200 {
		if _, err := s.Write(t0, &storage.Write{Type: "Condition", ID: fmt.Sprint("c", i), Body: body("Condition", i), Index: tokenEntry("old")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Write(t0, &storage.Write{Type: "Condition", ID: "c7", Delete: true}); err != nil {
		t.Fatal(err)
	}
	seen := 0
	n, err := s.Reindex(t0, func(r *fhir.Resource) ([]search.Entry, error) {
		seen++
		if r.Type != "Condition" || r.Deleted || len(r.Body) == 0 {
			return nil, fmt.Errorf("reindex got %s deleted=%v", r.Ref(), r.Deleted)
		}
		return tokenEntry("new-" + r.ID[1:]), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1199 || seen != 1199 {
		t.Fatalf("reindexed %d (fn called %d times), want 1199", n, seen)
	}
	if ids := codeSearch(t, s, "Condition", "old"); len(ids) != 0 {
		t.Fatalf("old entries left: %d", len(ids))
	}
	if ids := codeSearch(t, s, "Condition", "new-42"); len(ids) != 1 || ids[0] != "c42" {
		t.Fatalf("new entries: %v", ids)
	}
	if ids := codeSearch(t, s, "Condition", "new-7"); len(ids) != 0 {
		t.Fatalf("a deleted resource was reindexed: %v", ids)
	}
	boom := errors.New("boom")
	if _, err := s.Reindex(t0, func(*fhir.Resource) ([]search.Entry, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("reindex error: %v", err)
	}
	sz, err := s.Sizes(t0)
	if err != nil {
		t.Fatal(err)
	}
	if sz.Resources <= 0 || sz.Index <= 0 || sz.Tables["idx_token"] <= 0 || sz.Tables["versions"] <= 0 {
		t.Fatalf("sizes: %+v", sz)
	}
}

func TestPurgeExpired(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, err := embedded.Open(t.TempDir(), &embedded.Options{Now: clock, PurgeInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 5 {
		exp := now.Add(time.Duration(2*i-3) * time.Hour) // two expired, three live
		if _, err := s.PutRecord(t0, &storage.Record{Kind: "otp", Key: fmt.Sprint(i), Expires: exp}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutRecord(t0, &storage.Record{Kind: "otp", Key: "forever"}, 0); err != nil {
		t.Fatal(err)
	}
	n, err := s.PurgeExpired(t0)
	if err != nil || n != 2 {
		t.Fatalf("purged %d (%v), want 2", n, err)
	}
	mu.Lock()
	now = now.Add(24 * time.Hour)
	mu.Unlock()
	if n, err := s.PurgeExpired(t0); err != nil || n != 3 {
		t.Fatalf("purged %d (%v), want 3", n, err)
	}
	if _, err := s.GetRecord(t0, "otp", "forever"); err != nil {
		t.Fatalf("a record without expiry was purged: %v", err)
	}
}
