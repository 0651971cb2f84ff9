package embedded_test

import (
	"os"
	"testing"

	"regie/storage"
	"regie/storage/embedded"
)

// Under sustained writes the WAL stays bounded: the writer truncates it
// when the checkpointer finds it long (a passive checkpoint alone never
// lets SQLite restart it while batches follow each other).
func TestWALStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 40,000 resources")
	}
	s, err := embedded.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := newFixture()
	var maxWAL int64
	for i := 0; i < 40000; i += 500 {
		err := s.Transact(t0, func(tx storage.Tx) error {
			for n := i; n < i+500; n++ {
				if _, err := tx.Write(t0, f.write(n, true)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(s.Path() + "-wal"); err == nil {
			maxWAL = max(maxWAL, st.Size())
		}
	}
	if maxWAL > 300<<20 {
		t.Fatalf("the WAL grew to %d MiB", maxWAL>>20)
	}
	t.Logf("largest WAL: %d MiB", maxWAL>>20)
}
