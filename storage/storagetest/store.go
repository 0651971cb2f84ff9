package storagetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"regie/fhir"
	"regie/storage"
)

// StoreCases are the CRUD, history, transaction and concurrency cases.
var StoreCases = []Case{
	{"ReadMissing", testReadMissing},
	{"CreateThenRead", testCreateThenRead},
	{"UpdateIncrementsVersion", testUpdateIncrementsVersion},
	{"VReadOldVersions", testVReadOldVersions},
	{"IfMatchConflict", testIfMatchConflict},
	{"IfMatchOK", testIfMatchOK},
	{"CreateOnlyExists", testCreateOnlyExists},
	{"DeleteThenReadIsGone", testDeleteThenReadIsGone},
	{"DeleteMissingIsNoop", testDeleteMissingIsNoop},
	{"DeleteThenRecreate", testDeleteThenRecreate},
	{"HistoryNewestFirst", testHistoryNewestFirst},
	{"TransactionAtomic", testTransactionAtomic},
	{"TransactionSeesOwnWrites", testTransactionSeesOwnWrites},
	{"ConcurrentUpdatesNeverLost", testConcurrentUpdatesNeverLost},
	{"ConcurrentTransactionsFailAlone", testConcurrentTransactionsFailAlone},
	{"LastUpdatedMonotonic", testLastUpdatedMonotonic},
	{"IDsAreFHIRIds", testIDsAreFHIRIds},
	{"CanceledContext", testCanceledContext},
	{"Close", testClose},
}

func testReadMissing(t *testing.T, s storage.Store) {
	_, err := s.Read(ctx(t), "Patient", "missing")
	wantErr(t, "read of a missing resource", err, storage.ErrNotFound)
	_, err = s.VRead(ctx(t), "Patient", "missing", 1)
	wantErr(t, "vread of a missing resource", err, storage.ErrNotFound)
	put(t, s, "Patient", "p1", 1)
	_, err = s.VRead(ctx(t), "Patient", "p1", 2)
	wantErr(t, "vread of a missing version", err, storage.ErrNotFound)
	_, err = s.VRead(ctx(t), "Patient", "p1", 0)
	wantErr(t, "vread of version 0", err, storage.ErrNotFound)
	_, err = s.Read(ctx(t), "Observation", "p1")
	wantErr(t, "read of the same id in another type", err, storage.ErrNotFound)
}

func testCreateThenRead(t *testing.T, s storage.Store) {
	tests := []struct {
		name string
		body string
	}{
		{"plain", `{"resourceType":"Patient","active":true}`},
		{"with id and meta", `{"resourceType":"Patient","id":"other","meta":{"versionId":"9","lastUpdated":"2001-01-01T00:00:00Z","profile":["http://x"]},"active":false}`},
		{"unicode", `{"resourceType":"Patient","name":[{"text":"Zoë \u2603 ☃"}]}`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("p%d", i)
			before := time.Now().Add(-time.Second)
			w, err := s.Write(ctx(t), &storage.Write{Type: "Patient", ID: id, Body: []byte(tc.body)})
			if err != nil {
				t.Fatal(err)
			}
			checkStamped(t, w, "Patient", id, 1, []byte(tc.body))
			if w.LastUpdated.Before(before) || w.LastUpdated.After(time.Now().Add(time.Second)) {
				t.Errorf("LastUpdated %v is not the time of the write", w.LastUpdated)
			}
			r := mustRead(t, s, "Patient", id)
			sameVersion(t, r, w)
			v, err := s.VRead(ctx(t), "Patient", id, 1)
			if err != nil {
				t.Fatal(err)
			}
			sameVersion(t, v, w)
			if !strings.Contains(string(r.Body), `"lastUpdated":"`+fhir.FormatInstant(r.LastUpdated)+`"`) {
				t.Errorf("body %s does not carry lastUpdated %s", r.Body, fhir.FormatInstant(r.LastUpdated))
			}
		})
	}
}

func testUpdateIncrementsVersion(t *testing.T, s storage.Store) {
	for v := int64(1); v <= 3; v++ {
		w := put(t, s, "Patient", "p1", int(v)*10)
		checkStamped(t, w, "Patient", "p1", v, doc("Patient", int(v)*10))
		r := mustRead(t, s, "Patient", "p1")
		sameVersion(t, r, w)
	}
}

func testVReadOldVersions(t *testing.T, s storage.Store) {
	var ws []*fhir.Resource
	for i := 1; i <= 3; i++ {
		ws = append(ws, put(t, s, "Observation", "o1", i))
	}
	for _, w := range ws {
		r, err := s.VRead(ctx(t), "Observation", "o1", w.Version)
		if err != nil {
			t.Fatalf("vread %d: %v", w.Version, err)
		}
		sameVersion(t, r, w)
		if nOf(t, r) != int(w.Version) {
			t.Errorf("version %d holds n=%d", w.Version, nOf(t, r))
		}
	}
	_, err := s.VRead(ctx(t), "Observation", "o1", 4)
	wantErr(t, "vread of a future version", err, storage.ErrNotFound)
}

func testIfMatchConflict(t *testing.T, s storage.Store) {
	put(t, s, "Patient", "p1", 1)
	put(t, s, "Patient", "p1", 2)
	for _, v := range []int64{1, 3} {
		_, err := s.Write(ctx(t), &storage.Write{Type: "Patient", ID: "p1", Body: doc("Patient", 9), IfMatch: v})
		wantErr(t, fmt.Sprintf("update with If-Match %d at version 2", v), err, storage.ErrVersionConflict)
	}
	_, err := s.Write(ctx(t), &storage.Write{Type: "Patient", ID: "p1", Delete: true, IfMatch: 1})
	wantErr(t, "delete with a stale If-Match", err, storage.ErrVersionConflict)
	_, err = s.Write(ctx(t), &storage.Write{Type: "Patient", ID: "nope", Body: doc("Patient", 1), IfMatch: 1})
	wantErr(t, "If-Match on a missing resource", err, storage.ErrVersionConflict)
	r := mustRead(t, s, "Patient", "p1")
	if r.Version != 2 || nOf(t, r) != 2 {
		t.Fatalf("a failed precondition changed the resource: version %d n=%d", r.Version, nOf(t, r))
	}
	if _, err := s.Read(ctx(t), "Patient", "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a failed precondition created a resource: %v", err)
	}
}

func testIfMatchOK(t *testing.T, s storage.Store) {
	put(t, s, "Patient", "p1", 1)
	w := mustWrite(t, s, &storage.Write{Type: "Patient", ID: "p1", Body: doc("Patient", 2), IfMatch: 1})
	checkStamped(t, w, "Patient", "p1", 2, doc("Patient", 2))
	d := mustWrite(t, s, &storage.Write{Type: "Patient", ID: "p1", Delete: true, IfMatch: 2})
	checkStamped(t, d, "Patient", "p1", 3, nil)
}

func testCreateOnlyExists(t *testing.T, s storage.Store) {
	w := mustWrite(t, s, &storage.Write{Type: "Patient", ID: "p1", Body: doc("Patient", 1), CreateOnly: true})
	checkStamped(t, w, "Patient", "p1", 1, doc("Patient", 1))
	_, err := s.Write(ctx(t), &storage.Write{Type: "Patient", ID: "p1", Body: doc("Patient", 2), CreateOnly: true})
	wantErr(t, "create-only of an existing resource", err, storage.ErrExists)
	if r := mustRead(t, s, "Patient", "p1"); r.Version != 1 {
		t.Fatalf("failed create-only changed the resource to version %d", r.Version)
	}
	mustWrite(t, s, &storage.Write{Type: "Patient", ID: "p1", Delete: true})
	w = mustWrite(t, s, &storage.Write{Type: "Patient", ID: "p1", Body: doc("Patient", 3), CreateOnly: true})
	checkStamped(t, w, "Patient", "p1", 3, doc("Patient", 3))
}

func testDeleteThenReadIsGone(t *testing.T, s storage.Store) {
	c := put(t, s, "Patient", "p1", 1)
	d := mustWrite(t, s, &storage.Write{Type: "Patient", ID: "p1", Delete: true})
	checkStamped(t, d, "Patient", "p1", 2, nil)
	if !d.LastUpdated.After(c.LastUpdated) {
		t.Errorf("deletion at %v is not after creation at %v", d.LastUpdated, c.LastUpdated)
	}
	r, err := s.Read(ctx(t), "Patient", "p1")
	wantErr(t, "read after delete", err, storage.ErrDeleted)
	if r == nil {
		t.Fatal("read after delete: no deletion version returned")
	}
	sameVersion(t, r, d)
	v, err := s.VRead(ctx(t), "Patient", "p1", 2)
	wantErr(t, "vread of the deletion", err, storage.ErrDeleted)
	if v == nil || !v.Deleted || v.Version != 2 {
		t.Fatalf("vread of the deletion returned %+v", v)
	}
	old, err := s.VRead(ctx(t), "Patient", "p1", 1)
	if err != nil {
		t.Fatalf("vread of the version before the deletion: %v", err)
	}
	sameVersion(t, old, c)
}

func testDeleteMissingIsNoop(t *testing.T, s storage.Store) {
	r, err := s.Write(ctx(t), &storage.Write{Type: "Patient", ID: "never", Delete: true})
	if err != nil || r != nil {
		t.Fatalf("delete of a missing resource: %v, %v; want nil, nil", r, err)
	}
	if _, err := s.Read(ctx(t), "Patient", "never"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("delete of a missing resource left something: %v", err)
	}
	put(t, s, "Patient", "p1", 1)
	mustWrite(t, s, &storage.Write{Type: "Patient", ID: "p1", Delete: true})
	r, err = s.Write(ctx(t), &storage.Write{Type: "Patient", ID: "p1", Delete: true})
	if err != nil || r != nil {
		t.Fatalf("second delete: %v, %v; want nil, nil", r, err)
	}
	if h := history(t, s, storage.HistoryQuery{Type: "Patient", ID: "p1"}); len(h) != 2 {
		t.Fatalf("history after a repeated delete: %v, want 2 versions", keys(h))
	}
}

func testDeleteThenRecreate(t *testing.T, s storage.Store) {
	put(t, s, "Patient", "p1", 1)
	mustWrite(t, s, &storage.Write{Type: "Patient", ID: "p1", Delete: true})
	w := put(t, s, "Patient", "p1", 3)
	checkStamped(t, w, "Patient", "p1", 3, doc("Patient", 3))
	sameVersion(t, mustRead(t, s, "Patient", "p1"), w)
	h := history(t, s, storage.HistoryQuery{Type: "Patient", ID: "p1"})
	want := []string{"Patient/p1/_history/3", "Patient/p1/_history/2", "Patient/p1/_history/1"}
	if got := keys(h); !equalStrings(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	if !h[1].Deleted || h[1].Body != nil || h[0].Deleted {
		t.Fatalf("history deletion flags wrong: %v %v", h[0].Deleted, h[1].Deleted)
	}
}

func testHistoryNewestFirst(t *testing.T, s storage.Store) {
	// A fixed sequence of writes over two types; all[i] is the i-th write.
	var all []*fhir.Resource
	w := func(typ, id string, n int, del bool) *fhir.Resource {
		t.Helper()
		wr := &storage.Write{Type: typ, ID: id, Body: doc(typ, n)}
		if del {
			wr = &storage.Write{Type: typ, ID: id, Delete: true}
		}
		r := mustWrite(t, s, wr)
		all = append(all, r)
		return r
	}
	w("Patient", "a", 1, false)
	w("Observation", "o", 1, false)
	w("Patient", "b", 1, false)
	mid := w("Patient", "a", 2, false)
	w("Observation", "o", 2, false)
	w("Patient", "b", 0, true)
	w("Patient", "a", 3, false)

	newestFirst := func(keep func(*fhir.Resource) bool) []string {
		var out []string
		for i := len(all) - 1; i >= 0; i-- {
			if keep(all[i]) {
				out = append(out, keys(all[i : i+1])[0])
			}
		}
		return out
	}
	tests := []struct {
		name string
		q    storage.HistoryQuery
		want []string
	}{
		{"instance", storage.HistoryQuery{Type: "Patient", ID: "a"},
			[]string{"Patient/a/_history/3", "Patient/a/_history/2", "Patient/a/_history/1"}},
		{"type", storage.HistoryQuery{Type: "Patient"},
			newestFirst(func(r *fhir.Resource) bool { return r.Type == "Patient" })},
		{"system", storage.HistoryQuery{}, newestFirst(func(*fhir.Resource) bool { return true })},
		{"since", storage.HistoryQuery{Since: mid.LastUpdated},
			newestFirst(func(r *fhir.Resource) bool { return !r.LastUpdated.Before(mid.LastUpdated) })},
		{"type since", storage.HistoryQuery{Type: "Observation", Since: mid.LastUpdated},
			[]string{"Observation/o/_history/2"}},
		{"instance at", storage.HistoryQuery{Type: "Patient", ID: "a", At: mid.LastUpdated},
			[]string{"Patient/a/_history/2"}},
		{"instance at before creation", storage.HistoryQuery{Type: "Patient", ID: "a", At: all[0].LastUpdated.Add(-time.Second)}, nil},
		{"system at", storage.HistoryQuery{At: mid.LastUpdated},
			[]string{"Patient/a/_history/2", "Patient/b/_history/1", "Observation/o/_history/1"}},
		{"type at after delete", storage.HistoryQuery{Type: "Patient", At: all[5].LastUpdated},
			[]string{"Patient/b/_history/2", "Patient/a/_history/2"}},
		{"paged by 2", storage.HistoryQuery{Count: 2}, newestFirst(func(*fhir.Resource) bool { return true })},
		{"paged by 1", storage.HistoryQuery{Type: "Patient", ID: "a", Count: 1},
			[]string{"Patient/a/_history/3", "Patient/a/_history/2", "Patient/a/_history/1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := history(t, s, tc.q)
			if !equalStrings(keys(got), tc.want) {
				t.Fatalf("got %v\nwant %v", keys(got), tc.want)
			}
			for _, r := range got {
				v := all[indexOf(all, r)]
				sameVersion(t, r, v)
			}
		})
	}

	t.Run("deletions carry no body", func(t *testing.T) {
		h := history(t, s, storage.HistoryQuery{Type: "Patient", ID: "b"})
		if len(h) != 2 || !h[0].Deleted || h[0].Body != nil || h[1].Deleted {
			t.Fatalf("history of b: %v", keys(h))
		}
	})

	t.Run("count limits the page", func(t *testing.T) {
		p, err := s.History(ctx(t), &storage.HistoryQuery{Count: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Resources) != 3 || p.Next == "" {
			t.Fatalf("page of 3: got %d resources, next %q", len(p.Resources), p.Next)
		}
		last, err := s.History(ctx(t), &storage.HistoryQuery{Count: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(last.Resources) != len(all) || last.Next != "" {
			t.Fatalf("one page of everything: %d resources, next %q", len(last.Resources), last.Next)
		}
	})

	t.Run("paging stays correct while others write", func(t *testing.T) {
		want := newestFirst(func(*fhir.Resource) bool { return true })
		q := storage.HistoryQuery{Count: 2}
		var got []*fhir.Resource
		for i := 0; ; i++ {
			p, err := s.History(ctx(t), &q)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, p.Resources...)
			// Writes between pages: new versions, a delete and a re-create of
			// resources already on earlier pages.
			put(t, s, "Patient", fmt.Sprintf("new%d", i), i)
			put(t, s, "Patient", "a", 100+i)
			if p.Next == "" {
				break
			}
			q.Cursor = p.Next
		}
		if !equalStrings(keys(got), want) {
			t.Fatalf("paging while writing:\n got %v\nwant %v", keys(got), want)
		}
	})

	t.Run("prev returns to the previous page", func(t *testing.T) {
		first, err := s.History(ctx(t), &storage.HistoryQuery{Type: "Observation", Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		second, err := s.History(ctx(t), &storage.HistoryQuery{Type: "Observation", Count: 1, Cursor: first.Next})
		if err != nil {
			t.Fatal(err)
		}
		if second.Prev == "" {
			t.Fatal("second page has no Prev")
		}
		back, err := s.History(ctx(t), &storage.HistoryQuery{Type: "Observation", Count: 1, Cursor: second.Prev})
		if err != nil {
			t.Fatal(err)
		}
		if !equalStrings(keys(back.Resources), keys(first.Resources)) {
			t.Fatalf("prev page %v, want %v", keys(back.Resources), keys(first.Resources))
		}
	})

	t.Run("instance of a missing resource", func(t *testing.T) {
		_, err := s.History(ctx(t), &storage.HistoryQuery{Type: "Patient", ID: "never"})
		wantErr(t, "history of a resource that never existed", err, storage.ErrNotFound)
		_, err = s.History(ctx(t), &storage.HistoryQuery{Type: "NoSuchType", ID: "a"})
		wantErr(t, "history of a resource of an unused type", err, storage.ErrNotFound)
		p, err := s.History(ctx(t), &storage.HistoryQuery{Type: "NoSuchType"})
		if err != nil || len(p.Resources) != 0 {
			t.Fatalf("history of an unused type: %v, %v", p, err)
		}
	})

	t.Run("invalid cursor", func(t *testing.T) {
		_, err := s.History(ctx(t), &storage.HistoryQuery{Cursor: "not a cursor"})
		wantErr(t, "history with a forged cursor", err, storage.ErrInvalidCursor)
	})
}

func indexOf(all []*fhir.Resource, r *fhir.Resource) int {
	for i, a := range all {
		if a.Type == r.Type && a.ID == r.ID && a.Version == r.Version {
			return i
		}
	}
	panic("storagetest: version not written by the test: " + r.Ref())
}

var errAbort = errors.New("storagetest: abort the transaction")

func testTransactionAtomic(t *testing.T, s storage.Store) {
	put(t, s, "Patient", "existing", 1)
	before := history(t, s, storage.HistoryQuery{})
	indexed := func(n int) []search1 {
		return []search1{{Param: "code", System: "http://s", Code: fmt.Sprint(n)}}
	}
	tests := []struct {
		name string
		fn   func(tx storage.Tx) error
		want error
	}{
		{"fn fails half-way", func(tx storage.Tx) error {
			if _, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: "new1", Body: doc("Patient", 1), Index: tokenEntries(indexed(1))}); err != nil {
				return err
			}
			if _, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: "existing", Body: doc("Patient", 2), Index: tokenEntries(indexed(2))}); err != nil {
				return err
			}
			if rs, ok := tx.(storage.Records); ok {
				if _, err := rs.PutRecord(ctx(t), &storage.Record{Kind: "k", Key: "tx", Value: []byte("v")}, storage.AnyVersion); err != nil {
					return err
				}
			}
			return errAbort
		}, errAbort},
		{"second write conflicts", func(tx storage.Tx) error {
			if _, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: "new1", Body: doc("Patient", 1), Index: tokenEntries(indexed(1))}); err != nil {
				return err
			}
			if _, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: "existing", Delete: true}); err != nil {
				return err
			}
			if rs, ok := tx.(storage.Records); ok {
				if _, err := rs.PutRecord(ctx(t), &storage.Record{Kind: "k", Key: "tx", Value: []byte("v")}, storage.AnyVersion); err != nil {
					return err
				}
			}
			_, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: "existing", Body: doc("Patient", 3), IfMatch: 1})
			return err
		}, storage.ErrVersionConflict},
		{"create-only finds it present", func(tx storage.Tx) error {
			if _, err := tx.Write(ctx(t), &storage.Write{Type: "Observation", ID: "o1", Body: doc("Observation", 1), Index: tokenEntries(indexed(1))}); err != nil {
				return err
			}
			_, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: "existing", Body: doc("Patient", 3), CreateOnly: true})
			return err
		}, storage.ErrExists},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Transact(ctx(t), tc.fn)
			wantErr(t, "transaction", err, tc.want)
			if _, err := s.Read(ctx(t), "Patient", "new1"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Patient/new1 after a failed transaction: %v", err)
			}
			if _, err := s.Read(ctx(t), "Observation", "o1"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Observation/o1 after a failed transaction: %v", err)
			}
			if r := mustRead(t, s, "Patient", "existing"); r.Version != 1 || nOf(t, r) != 1 {
				t.Errorf("Patient/existing changed by a failed transaction: version %d", r.Version)
			}
			if after := history(t, s, storage.HistoryQuery{}); !equalStrings(keys(after), keys(before)) {
				t.Errorf("history after a failed transaction: %v, want %v", keys(after), keys(before))
			}
			for _, n := range []int{1, 2} {
				if ids, ok := searchIDs(t, s, "Patient", tokenMatch("code", "http://s", fmt.Sprint(n))); ok && len(ids) != 0 {
					t.Errorf("index entries left by a failed transaction: %v", ids)
				}
				if ids, ok := searchIDs(t, s, "Observation", tokenMatch("code", "http://s", fmt.Sprint(n))); ok && len(ids) != 0 {
					t.Errorf("index entries left by a failed transaction: %v", ids)
				}
			}
			if rs, ok := s.(storage.Records); ok {
				if _, err := rs.GetRecord(ctx(t), "k", "tx"); !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("record left by a failed transaction: %v", err)
				}
			}
		})
	}
	t.Run("a later transaction commits", func(t *testing.T) {
		err := s.Transact(ctx(t), func(tx storage.Tx) error {
			if _, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: "new1", Body: doc("Patient", 1)}); err != nil {
				return err
			}
			_, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: "existing", Body: doc("Patient", 2), IfMatch: 1})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if r := mustRead(t, s, "Patient", "existing"); r.Version != 2 {
			t.Fatalf("existing at version %d, want 2", r.Version)
		}
		mustRead(t, s, "Patient", "new1")
	})
}

func testTransactionSeesOwnWrites(t *testing.T, s storage.Store) {
	put(t, s, "Patient", "outside", 1)
	err := s.Transact(ctx(t), func(tx storage.Tx) error {
		c, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: "p1", Body: doc("Patient", 1)})
		if err != nil {
			return err
		}
		sameVersion(t, mustRead(t, tx, "Patient", "p1"), c)
		// The store's own readers do not see uncommitted writes.
		if _, err := s.Read(ctx(t), "Patient", "p1"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("uncommitted write visible outside the transaction: %v", err)
		}
		u, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: "p1", Body: doc("Patient", 2), IfMatch: 1})
		if err != nil {
			return err
		}
		if u.Version != 2 {
			t.Errorf("update inside the transaction: version %d", u.Version)
		}
		sameVersion(t, mustRead(t, tx, "Patient", "p1"), u)
		v1, err := tx.VRead(ctx(t), "Patient", "p1", 1)
		if err != nil {
			return err
		}
		sameVersion(t, v1, c)
		h := history(t, tx, storage.HistoryQuery{Type: "Patient", ID: "p1"})
		if !equalStrings(keys(h), []string{"Patient/p1/_history/2", "Patient/p1/_history/1"}) {
			t.Errorf("history inside the transaction: %v", keys(h))
		}
		if _, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: "outside", Delete: true}); err != nil {
			return err
		}
		if _, err := tx.Read(ctx(t), "Patient", "outside"); !errors.Is(err, storage.ErrDeleted) {
			t.Errorf("read of a resource deleted in the transaction: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := mustRead(t, s, "Patient", "p1"); r.Version != 2 || nOf(t, r) != 2 {
		t.Fatalf("after commit: version %d n=%d", r.Version, nOf(t, r))
	}
	if _, err := s.Read(ctx(t), "Patient", "outside"); !errors.Is(err, storage.ErrDeleted) {
		t.Fatalf("delete in the transaction not committed: %v", err)
	}
}

func testConcurrentUpdatesNeverLost(t *testing.T, s storage.Store) {
	const n, k = 8, 12
	t.Run("read-modify-write with If-Match", func(t *testing.T) {
		put(t, s, "Basic", "counter", 0)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				for done := 0; done < k; {
					r, err := s.Read(ctx(t), "Basic", "counter")
					if err != nil {
						errs <- err
						return
					}
					var cur struct{ N int }
					if err := jsonUnmarshal(r.Body, &cur); err != nil {
						errs <- err
						return
					}
					_, err = s.Write(ctx(t), &storage.Write{Type: "Basic", ID: "counter", Body: doc("Basic", cur.N+1), IfMatch: r.Version})
					switch {
					case errors.Is(err, storage.ErrVersionConflict):
						continue
					case err != nil:
						errs <- err
						return
					}
					done++
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		r := mustRead(t, s, "Basic", "counter")
		if nOf(t, r) != n*k || r.Version != n*k+1 {
			t.Fatalf("after %d×%d increments: n=%d version %d, want n=%d version %d", n, k, nOf(t, r), r.Version, n*k, n*k+1)
		}
	})
	t.Run("blind writes", func(t *testing.T) {
		var wg sync.WaitGroup
		versions := make(chan int64, n)
		for i := range n {
			wg.Go(func() {
				r, err := s.Write(ctx(t), &storage.Write{Type: "Basic", ID: "blind", Body: doc("Basic", i)})
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
			if seen[v] {
				t.Fatalf("version %d returned twice", v)
			}
			seen[v] = true
		}
		for v := int64(1); v <= n; v++ {
			if !seen[v] {
				t.Fatalf("versions %v are not 1..%d", seen, n)
			}
			if _, err := s.VRead(ctx(t), "Basic", "blind", v); err != nil {
				t.Fatalf("vread %d: %v", v, err)
			}
		}
		if h := history(t, s, storage.HistoryQuery{Type: "Basic", ID: "blind"}); len(h) != n {
			t.Fatalf("history has %d versions, want %d", len(h), n)
		}
	})
}

// testConcurrentTransactionsFailAlone runs many transactions at once, half
// of which fail after writing: a store that commits them together must
// still undo exactly the failed ones.
func testConcurrentTransactionsFailAlone(t *testing.T, s storage.Store) {
	const n, rounds = 32, 4
	mustWrite(t, s, &storage.Write{Type: "Patient", ID: "shared", Body: doc("Patient", 0),
		Index: tokenEntries([]search1{{"code", "http://s", "shared-0"}})})
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			for i := range rounds {
				id := fmt.Sprintf("t%d-%d", g, i)
				fail := (g+i)%2 == 1
				err := s.Transact(ctx(t), func(tx storage.Tx) error {
					if _, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: id, Body: doc("Patient", g),
						Index: tokenEntries([]search1{{"code", "http://s", id}})}); err != nil {
						return err
					}
					if rs, ok := tx.(storage.Records); ok {
						if _, err := rs.PutRecord(ctx(t), &storage.Record{Kind: "tx", Key: id}, 0); err != nil {
							return err
						}
					}
					if fail {
						// A write to a shared resource that replaces its index
						// entries, then failure.
						if _, err := tx.Write(ctx(t), &storage.Write{Type: "Patient", ID: "shared", Body: doc("Patient", 1000+g),
							Index: tokenEntries([]search1{{"code", "http://s", "shared-x"}})}); err != nil {
							return err
						}
						return errAbort
					}
					return nil
				})
				if fail && !errors.Is(err, errAbort) || !fail && err != nil {
					t.Errorf("transaction %s (fail=%v): %v", id, fail, err)
				}
			}
		})
	}
	wg.Wait()
	for g := range n {
		for i := range rounds {
			id := fmt.Sprintf("t%d-%d", g, i)
			fail := (g+i)%2 == 1
			_, err := s.Read(ctx(t), "Patient", id)
			switch {
			case fail && !errors.Is(err, storage.ErrNotFound):
				t.Errorf("failed transaction left Patient/%s: %v", id, err)
			case !fail && err != nil:
				t.Errorf("committed transaction lost Patient/%s: %v", id, err)
			}
			if ids, ok := searchIDs(t, s, "Patient", tokenMatch("code", "http://s", id)); ok && len(ids) != btoi(!fail) {
				t.Errorf("index of Patient/%s (fail=%v): %v", id, fail, ids)
			}
			if rs, ok := s.(storage.Records); ok {
				_, err := rs.GetRecord(ctx(t), "tx", id)
				if fail != errors.Is(err, storage.ErrNotFound) {
					t.Errorf("record of transaction %s (fail=%v): %v", id, fail, err)
				}
			}
		}
	}
	if r := mustRead(t, s, "Patient", "shared"); r.Version != 1 || nOf(t, r) != 0 {
		t.Fatalf("failed transactions changed Patient/shared: version %d n=%d", r.Version, nOf(t, r))
	}
	if ids, ok := searchIDs(t, s, "Patient", tokenMatch("code", "http://s", "shared-0")); ok && len(ids) != 1 {
		t.Fatalf("index of Patient/shared after failed transactions: %v", ids)
	}
	if ids, ok := searchIDs(t, s, "Patient", tokenMatch("code", "http://s", "shared-x")); ok && len(ids) != 0 {
		t.Fatalf("failed transactions left index entries: %v", ids)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func testLastUpdatedMonotonic(t *testing.T, s storage.Store) {
	var prev time.Time
	for i := range 30 {
		r := put(t, s, "Patient", fmt.Sprintf("p%d", i%3), i)
		if !r.LastUpdated.After(prev) {
			t.Fatalf("write %d at %v, not after %v", i, r.LastUpdated, prev)
		}
		prev = r.LastUpdated
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				if _, err := s.Write(ctx(t), &storage.Write{Type: "Observation", ID: fmt.Sprintf("o%d-%d", g, i), Body: doc("Observation", i)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	h := history(t, s, storage.HistoryQuery{})
	if len(h) != 30+80 {
		t.Fatalf("history has %d versions, want %d", len(h), 110)
	}
	for i := 1; i < len(h); i++ {
		if !h[i-1].LastUpdated.After(h[i].LastUpdated) {
			t.Fatalf("history not strictly newest first at %d: %v then %v", i, h[i-1].LastUpdated, h[i].LastUpdated)
		}
	}
}

func testIDsAreFHIRIds(t *testing.T, s storage.Store) {
	ids := []string{"a-b.c", strings.Repeat("x", 64), "A.1-z", "0"}
	for _, id := range ids {
		if !fhir.ValidID(id) {
			t.Fatalf("test id %q is not a FHIR id", id)
		}
		w := put(t, s, "Patient", id, len(id))
		sameVersion(t, mustRead(t, s, "Patient", id), w)
	}
	put(t, s, "Patient", "same", 1)
	o := put(t, s, "Observation", "same", 2)
	mustWrite(t, s, &storage.Write{Type: "Patient", ID: "same", Delete: true})
	sameVersion(t, mustRead(t, s, "Observation", "same"), o)
	if _, err := s.Read(ctx(t), "Patient", "same"); !errors.Is(err, storage.ErrDeleted) {
		t.Fatalf("Patient/same: %v", err)
	}
	if _, err := s.Read(ctx(t), "Patient", "A"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("ids are case-sensitive: Patient/A: %v", err)
	}
	if _, err := s.Read(ctx(t), "Patient", "a-b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a prefix of an id matched: %v", err)
	}
}

func testCanceledContext(t *testing.T, s storage.Store) {
	put(t, s, "Patient", "p1", 1)
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	calls := []struct {
		name string
		fn   func() error
	}{
		{"read", func() error { _, err := s.Read(c, "Patient", "p1"); return err }},
		{"vread", func() error { _, err := s.VRead(c, "Patient", "p1", 1); return err }},
		{"history", func() error { _, err := s.History(c, &storage.HistoryQuery{}); return err }},
		{"write", func() error {
			_, err := s.Write(c, &storage.Write{Type: "Patient", ID: "p2", Body: doc("Patient", 1)})
			return err
		}},
		{"transact", func() error {
			return s.Transact(c, func(tx storage.Tx) error {
				_, err := tx.Write(c, &storage.Write{Type: "Patient", ID: "p3", Body: doc("Patient", 1)})
				return err
			})
		}},
	}
	for _, call := range calls {
		t.Run(call.name, func(t *testing.T) {
			start := time.Now()
			err := call.fn()
			wantErr(t, call.name+" with a canceled context", err, context.Canceled)
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("%s took %v to notice the canceled context", call.name, d)
			}
		})
	}
	for _, id := range []string{"p2", "p3"} {
		if _, err := s.Read(ctx(t), "Patient", id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("a write with a canceled context happened: Patient/%s: %v", id, err)
		}
	}
	t.Run("deadline inside a transaction", func(t *testing.T) {
		c, cancel := context.WithTimeout(ctx(t), 50*time.Millisecond)
		defer cancel()
		err := s.Transact(c, func(tx storage.Tx) error {
			<-c.Done()
			_, err := tx.Write(c, &storage.Write{Type: "Patient", ID: "p4", Body: doc("Patient", 1)})
			return err
		})
		wantErr(t, "transaction past its deadline", err, context.DeadlineExceeded)
		if _, err := s.Read(ctx(t), "Patient", "p4"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("write after the deadline happened: %v", err)
		}
	})
}

func testClose(t *testing.T, s storage.Store) {
	put(t, s, "Patient", "p1", 1)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	_, err := s.Read(ctx(t), "Patient", "p1")
	wantErr(t, "read after close", err, storage.ErrClosed)
	_, err = s.Write(ctx(t), &storage.Write{Type: "Patient", ID: "p2", Body: doc("Patient", 1)})
	wantErr(t, "write after close", err, storage.ErrClosed)
	err = s.Transact(ctx(t), func(storage.Tx) error { return nil })
	wantErr(t, "transact after close", err, storage.ErrClosed)
}
