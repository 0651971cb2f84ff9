package storagetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"regie/fhir"
	"regie/storage"
)

// doc returns a compact resource body of type typ with a "n" member.
func doc(typ string, n int) []byte {
	return fmt.Appendf(nil, `{"resourceType":%q,"n":%d}`, typ, n)
}

// nOf returns the "n" member of a body written by doc.
func nOf(t *testing.T, r *fhir.Resource) int {
	t.Helper()
	var v struct{ N int }
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("body of %s is not JSON: %v", r.Ref(), err)
	}
	return v.N
}

func mustWrite(t *testing.T, s storage.Store, w *storage.Write) *fhir.Resource {
	t.Helper()
	r, err := s.Write(ctx(t), w)
	if err != nil {
		t.Fatalf("write %s/%s: %v", w.Type, w.ID, err)
	}
	return r
}

func put(t *testing.T, s storage.Store, typ, id string, n int) *fhir.Resource {
	t.Helper()
	return mustWrite(t, s, &storage.Write{Type: typ, ID: id, Body: doc(typ, n)})
}

func mustRead(t *testing.T, s storage.Reader, typ, id string) *fhir.Resource {
	t.Helper()
	r, err := s.Read(ctx(t), typ, id)
	if err != nil {
		t.Fatalf("read %s/%s: %v", typ, id, err)
	}
	return r
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// checkStamped checks r against what was written: key, version, deletion
// state, and a body equal to fhir.Stamp of the written body.
func checkStamped(t *testing.T, r *fhir.Resource, typ, id string, version int64, written []byte) {
	t.Helper()
	if r == nil {
		t.Fatalf("%s/%s: nil resource", typ, id)
	}
	if r.Type != typ || r.ID != id || r.Version != version {
		t.Fatalf("got %s/%s version %d, want %s/%s version %d", r.Type, r.ID, r.Version, typ, id, version)
	}
	if r.LastUpdated.IsZero() {
		t.Fatalf("%s: zero LastUpdated", r.Ref())
	}
	if r.LastUpdated.Location() != time.UTC {
		t.Errorf("%s: LastUpdated in %v, want UTC", r.Ref(), r.LastUpdated.Location())
	}
	if r.LastUpdated.Nanosecond()%1000 != 0 {
		t.Errorf("%s: LastUpdated %v finer than microseconds", r.Ref(), r.LastUpdated)
	}
	if written == nil {
		if !r.Deleted || r.Body != nil {
			t.Fatalf("%s: want a deletion without body, got Deleted=%v body %q", r.Ref(), r.Deleted, r.Body)
		}
		return
	}
	if r.Deleted {
		t.Fatalf("%s: unexpectedly Deleted", r.Ref())
	}
	want, err := fhir.Stamp(written, id, version, r.LastUpdated)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Body, want) {
		t.Fatalf("%s body:\n got %s\nwant %s", r.Ref(), r.Body, want)
	}
}

func sameVersion(t *testing.T, got, want *fhir.Resource) {
	t.Helper()
	if got.Type != want.Type || got.ID != want.ID || got.Version != want.Version ||
		!got.LastUpdated.Equal(want.LastUpdated) || got.Deleted != want.Deleted || !bytes.Equal(got.Body, want.Body) {
		t.Fatalf("got %s v%d (%v, deleted %v, %q), want %s v%d (%v, deleted %v, %q)",
			got.Ref(), got.Version, got.LastUpdated, got.Deleted, got.Body,
			want.Ref(), want.Version, want.LastUpdated, want.Deleted, want.Body)
	}
}

// history collects every page of q (following Next) into one list.
func history(t *testing.T, s storage.Reader, q storage.HistoryQuery) []*fhir.Resource {
	t.Helper()
	var all []*fhir.Resource
	for range 10000 {
		p, err := s.History(ctx(t), &q)
		if err != nil {
			t.Fatalf("history %+v: %v", q, err)
		}
		all = append(all, p.Resources...)
		if p.Next == "" {
			return all
		}
		if len(p.Resources) == 0 {
			t.Fatalf("history: empty page with a Next cursor")
		}
		q.Cursor = p.Next
	}
	t.Fatal("history: too many pages")
	return nil
}

// keys renders versions as "Type/id/_history/v" for comparisons.
func keys(rs []*fhir.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%s/_history/%d", r.Ref(), r.Version)
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
