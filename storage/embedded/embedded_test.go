package embedded_test

import (
	"fmt"
	"sync"
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
