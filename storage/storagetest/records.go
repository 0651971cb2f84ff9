package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"regie/storage"
)

// RecordsCases are the cases of storage.Records.
var RecordsCases = []RecordsCase{
	{"GetMissing", testRecordGetMissing},
	{"PutThenGet", testRecordPutThenGet},
	{"Preconditions", testRecordPreconditions},
	{"Expiry", testRecordExpiry},
	{"ListByPrefix", testRecordList},
	{"Delete", testRecordDelete},
	{"ConcurrentPuts", testRecordConcurrentPuts},
	{"CanceledContext", testRecordCanceled},
}

func putRecord(t *testing.T, rs storage.Records, r *storage.Record, ifVersion int64) *storage.Record {
	t.Helper()
	got, err := rs.PutRecord(ctx(t), r, ifVersion)
	if err != nil {
		t.Fatalf("put %s/%s if %d: %v", r.Kind, r.Key, ifVersion, err)
	}
	return got
}

func checkRecord(t *testing.T, got *storage.Record, kind, key, value string, version int64) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s/%s: nil record", kind, key)
	}
	if got.Kind != kind || got.Key != key || string(got.Value) != value || got.Version != version {
		t.Fatalf("got %s/%s=%q v%d, want %s/%s=%q v%d", got.Kind, got.Key, got.Value, got.Version, kind, key, value, version)
	}
}

func testRecordGetMissing(t *testing.T, rs storage.Records) {
	_, err := rs.GetRecord(ctx(t), "session", "nope")
	wantErr(t, "get of a missing record", err, storage.ErrNotFound)
}

func testRecordPutThenGet(t *testing.T, rs storage.Records) {
	value := []byte{0, 1, 2, 0xff, 'x'}
	exp := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	p := putRecord(t, rs, &storage.Record{Kind: "session", Key: "k1", Value: value, Expires: exp}, 0)
	checkRecord(t, p, "session", "k1", string(value), 1)
	g, err := rs.GetRecord(ctx(t), "session", "k1")
	if err != nil {
		t.Fatal(err)
	}
	checkRecord(t, g, "session", "k1", string(value), 1)
	if !g.Expires.Equal(exp) {
		t.Fatalf("expires %v, want %v", g.Expires, exp)
	}
	if _, err := rs.GetRecord(ctx(t), "account", "k1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("kinds are separate: %v", err)
	}
	p = putRecord(t, rs, &storage.Record{Kind: "session", Key: "k1", Value: []byte("v2")}, storage.AnyVersion)
	checkRecord(t, p, "session", "k1", "v2", 2)
	g, err = rs.GetRecord(ctx(t), "session", "k1")
	if err != nil {
		t.Fatal(err)
	}
	checkRecord(t, g, "session", "k1", "v2", 2)
	if !g.Expires.IsZero() {
		t.Fatalf("a put without Expires kept %v", g.Expires)
	}
	empty := putRecord(t, rs, &storage.Record{Kind: "session", Key: "empty"}, 0)
	checkRecord(t, empty, "session", "empty", "", 1)
}

func testRecordPreconditions(t *testing.T, rs storage.Records) {
	r := func(v string) *storage.Record { return &storage.Record{Kind: "token", Key: "t", Value: []byte(v)} }
	checkRecord(t, putRecord(t, rs, r("a"), 0), "token", "t", "a", 1)
	_, err := rs.PutRecord(ctx(t), r("b"), 0)
	wantErr(t, "create of an existing record", err, storage.ErrExists)
	checkRecord(t, putRecord(t, rs, r("c"), 1), "token", "t", "c", 2)
	_, err = rs.PutRecord(ctx(t), r("d"), 1)
	wantErr(t, "put with a stale version", err, storage.ErrVersionConflict)
	_, err = rs.PutRecord(ctx(t), r("d"), 3)
	wantErr(t, "put with a future version", err, storage.ErrVersionConflict)
	_, err = rs.PutRecord(ctx(t), &storage.Record{Kind: "token", Key: "missing"}, 1)
	wantErr(t, "put with a version on a missing record", err, storage.ErrVersionConflict)
	checkRecord(t, putRecord(t, rs, r("e"), storage.AnyVersion), "token", "t", "e", 3)
	g, err := rs.GetRecord(ctx(t), "token", "t")
	if err != nil {
		t.Fatal(err)
	}
	checkRecord(t, g, "token", "t", "e", 3)
}

func testRecordExpiry(t *testing.T, rs storage.Records) {
	past := time.Now().Add(-time.Second)
	putRecord(t, rs, &storage.Record{Kind: "otp", Key: "old", Value: []byte("x"), Expires: past}, storage.AnyVersion)
	_, err := rs.GetRecord(ctx(t), "otp", "old")
	wantErr(t, "get of an expired record", err, storage.ErrNotFound)

	soon := time.Now().Add(300 * time.Millisecond)
	putRecord(t, rs, &storage.Record{Kind: "otp", Key: "soon", Value: []byte("x"), Expires: soon}, 0)
	if _, err := rs.GetRecord(ctx(t), "otp", "soon"); err != nil {
		t.Fatalf("get before expiry: %v", err)
	}
	time.Sleep(time.Until(soon) + 50*time.Millisecond)
	_, err = rs.GetRecord(ctx(t), "otp", "soon")
	wantErr(t, "get after expiry", err, storage.ErrNotFound)

	var listed []string
	if err := rs.ListRecords(ctx(t), "otp", "", func(r *storage.Record) error { listed = append(listed, r.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 0 {
		t.Fatalf("expired records listed: %v", listed)
	}
	// An expired record counts as absent for the create precondition, and
	// a new life starts at version 1.
	checkRecord(t, putRecord(t, rs, &storage.Record{Kind: "otp", Key: "soon", Value: []byte("y")}, 0), "otp", "soon", "y", 1)
	_, err = rs.PutRecord(ctx(t), &storage.Record{Kind: "otp", Key: "old", Value: []byte("y")}, 1)
	wantErr(t, "put with a version on an expired record", err, storage.ErrVersionConflict)
}

func testRecordList(t *testing.T, rs storage.Records) {
	for _, k := range []string{"user:b", "user:a", "user:c", "userx", "admin:a", "user:", "user:a:b"} {
		putRecord(t, rs, &storage.Record{Kind: "account", Key: k, Value: []byte(k)}, 0)
	}
	putRecord(t, rs, &storage.Record{Kind: "other", Key: "user:z", Value: []byte("z")}, 0)
	putRecord(t, rs, &storage.Record{Kind: "account", Key: "user:gone", Expires: time.Now().Add(-time.Second)}, 0)
	list := func(prefix string) []string {
		var out []string
		err := rs.ListRecords(ctx(t), "account", prefix, func(r *storage.Record) error {
			if r.Kind != "account" || string(r.Value) != r.Key || r.Version != 1 {
				t.Fatalf("listed %+v", r)
			}
			out = append(out, r.Key)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"user:", []string{"user:", "user:a", "user:a:b", "user:b", "user:c"}},
		{"", []string{"admin:a", "user:", "user:a", "user:a:b", "user:b", "user:c", "userx"}},
		{"user:a", []string{"user:a", "user:a:b"}},
		{"zzz", nil},
		{"user%", nil},
		{"user_", nil},
	}
	for _, tc := range tests {
		if got := list(tc.prefix); !equalStrings(got, tc.want) {
			t.Errorf("list %q: got %v, want %v", tc.prefix, got, tc.want)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := rs.ListRecords(ctx(t), "account", "", func(*storage.Record) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("list stopped by fn: %v after %d calls", err, n)
	}
}

func testRecordDelete(t *testing.T, rs storage.Records) {
	if err := rs.DeleteRecord(ctx(t), "k", "missing", storage.AnyVersion); err != nil {
		t.Fatalf("delete of a missing record: %v", err)
	}
	if err := rs.DeleteRecord(ctx(t), "k", "missing", 0); err != nil {
		t.Fatalf("delete of a missing record with version 0: %v", err)
	}
	putRecord(t, rs, &storage.Record{Kind: "k", Key: "a", Value: []byte("1")}, 0)
	putRecord(t, rs, &storage.Record{Kind: "k", Key: "a", Value: []byte("2")}, 1)
	err := rs.DeleteRecord(ctx(t), "k", "a", 1)
	wantErr(t, "delete with a stale version", err, storage.ErrVersionConflict)
	if err := rs.DeleteRecord(ctx(t), "k", "a", 2); err != nil {
		t.Fatalf("delete with the current version: %v", err)
	}
	_, err = rs.GetRecord(ctx(t), "k", "a")
	wantErr(t, "get after delete", err, storage.ErrNotFound)
	putRecord(t, rs, &storage.Record{Kind: "k", Key: "b", Value: []byte("1")}, 0)
	if err := rs.DeleteRecord(ctx(t), "k", "b", 0); err != nil {
		t.Fatalf("delete with version 0 (any): %v", err)
	}
	_, err = rs.GetRecord(ctx(t), "k", "b")
	wantErr(t, "get after delete", err, storage.ErrNotFound)
	checkRecord(t, putRecord(t, rs, &storage.Record{Kind: "k", Key: "a", Value: []byte("3")}, 0), "k", "a", "3", 1)
}

func testRecordConcurrentPuts(t *testing.T, rs storage.Records) {
	const n = 16
	var wg sync.WaitGroup
	versions := make(chan int64, n)
	for i := range n {
		wg.Go(func() {
			r, err := rs.PutRecord(ctx(t), &storage.Record{Kind: "counter", Key: "c", Value: fmt.Append(nil, i)}, storage.AnyVersion)
			if err != nil {
				t.Error(err)
				return
			}
			versions <- r.Version
		})
	}
	wg.Wait()
	close(versions)
	seen := map[int64]bool{}
	for v := range versions {
		if seen[v] || v < 1 || v > n {
			t.Fatalf("version %d duplicated or out of 1..%d", v, n)
		}
		seen[v] = true
	}
	// Compare-and-swap increments never lose one.
	putRecord(t, rs, &storage.Record{Kind: "counter", Key: "cas", Value: []byte("0")}, 0)
	for range n {
		wg.Go(func() {
			for {
				r, err := rs.GetRecord(ctx(t), "counter", "cas")
				if err != nil {
					t.Error(err)
					return
				}
				var v int
				fmt.Sscan(string(r.Value), &v)
				_, err = rs.PutRecord(ctx(t), &storage.Record{Kind: "counter", Key: "cas", Value: fmt.Append(nil, v+1)}, r.Version)
				if errors.Is(err, storage.ErrVersionConflict) {
					continue
				}
				if err != nil {
					t.Error(err)
				}
				return
			}
		})
	}
	wg.Wait()
	g, err := rs.GetRecord(ctx(t), "counter", "cas")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.Value, fmt.Append(nil, n)) || g.Version != n+1 {
		t.Fatalf("after %d increments: %q v%d", n, g.Value, g.Version)
	}
}

func testRecordCanceled(t *testing.T, rs storage.Records) {
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	_, err := rs.GetRecord(c, "k", "a")
	wantErr(t, "get", err, context.Canceled)
	_, err = rs.PutRecord(c, &storage.Record{Kind: "k", Key: "a"}, storage.AnyVersion)
	wantErr(t, "put", err, context.Canceled)
	err = rs.DeleteRecord(c, "k", "a", storage.AnyVersion)
	wantErr(t, "delete", err, context.Canceled)
	err = rs.ListRecords(c, "k", "", func(*storage.Record) error { return nil })
	wantErr(t, "list", err, context.Canceled)
	if _, err := rs.GetRecord(ctx(t), "k", "a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a put with a canceled context happened: %v", err)
	}
}
