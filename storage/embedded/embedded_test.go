package embedded_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"regie/storage"
	"regie/storage/embedded"
	"regie/storage/storagetest"
)

func open(t *testing.T) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return open(t) })
}

func TestRecordsContract(t *testing.T) {
	storagetest.RunRecords(t, func(t *testing.T) storage.Records { return open(t) })
}

// A clock that stands still or goes back does not make lastUpdated repeat.
func TestLastUpdatedWithABadClock(t *testing.T) {
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	calls := 0
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return base.Add(-time.Duration(calls) * time.Millisecond) // backwards
	}
	s, err := embedded.Open(t.TempDir(), &embedded.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var prev time.Time
	for i := range 20 {
		r, err := s.Write(t.Context(), &storage.Write{Type: "Patient", ID: fmt.Sprint("p", i%4), Body: []byte(`{"resourceType":"Patient"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if !r.LastUpdated.After(prev) {
			t.Fatalf("write %d at %v, not after %v", i, r.LastUpdated, prev)
		}
		prev = r.LastUpdated
	}
}

// A data directory whose path needs escaping in a SQLite URI.
func TestOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my data #1?x=y&z%20")
	s, err := embedded.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(t.Context(), &storage.Write{Type: "Patient", ID: "p", Body: []byte(`{"resourceType":"Patient"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, embedded.FileName)); err != nil {
		t.Fatalf("database not in the data directory: %v", err)
	}
}

// Close while others read and write: every call either succeeds or
// reports ErrClosed, and nothing hangs.
func TestCloseWhileBusy(t *testing.T) {
	s, err := embedded.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var ok, closed atomic.Int64
	check := func(err error) {
		switch {
		case err == nil, errors.Is(err, storage.ErrNotFound):
			ok.Add(1)
		case errors.Is(err, storage.ErrClosed):
			closed.Add(1)
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	for g := range 8 {
		wg.Go(func() {
			for i := 0; closed.Load() < 100; i++ {
				_, err := s.Write(t.Context(), &storage.Write{Type: "Patient", ID: fmt.Sprint("p", g, "-", i), Body: []byte(`{"resourceType":"Patient"}`)})
				check(err)
				_, err = s.Read(t.Context(), "Patient", fmt.Sprint("p", g, "-", i))
				check(err)
				_, err = s.PutRecord(t.Context(), &storage.Record{Kind: "k", Key: fmt.Sprint(g)}, storage.AnyVersion)
				check(err)
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if ok.Load() == 0 {
		t.Fatal("nothing succeeded before Close")
	}
}
