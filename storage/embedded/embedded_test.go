package embedded_test

import (
	"testing"

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
