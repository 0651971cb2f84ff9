package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// dictInterner looks up committed dictionary ids.
type dictInterner struct{ d *dict }

func (i dictInterner) typeID(n string) (int64, error) {
	if id, ok := i.d.typeID(n); ok {
		return id, nil
	}
	return 0, fmt.Errorf("no type %s", n)
}

func (i dictInterner) paramID(t int64, c string) (int64, error) {
	if id, ok := i.d.paramID(t, c); ok {
		return id, nil
	}
	return 0, fmt.Errorf("no parameter %s", c)
}

func (i dictInterner) systemID(u string) (int64, error) {
	if id, ok := i.d.systemID(u); ok {
		return id, nil
	}
	return 0, fmt.Errorf("no system %s", u)
}

// A database of schema 1 (row lists only, no chain) opens: it is
// migrated, its resources are still found, their entries are rebuilt from
// the row lists until reindexed, updates replace exactly their old rows,
// and new writes keep entry lists.
func TestMigrateFromSchema1(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := []search.Entry{
		{Param: "code", Type: fhir.ParamToken, System: "http://s", Code: "a"},
		{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: "p1"},
	}
	w, err := s.Write(ctx, &storage.Write{Type: "Observation", ID: "o1", Body: []byte(`{"resourceType":"Observation"}`), Index: old})
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := s.dict.typeID("Observation")
	rows, err := rowsOf(dictInterner{s.dict}, tid, old)
	if err != nil {
		t.Fatal(err)
	}
	blob, _ := encodeRows(rows)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+dir+"/"+FileName)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`UPDATE entries SET rows = ?`, `ALTER TABLE entries DROP COLUMN list`, `DROP TABLE chain`,
		`DROP TABLE chain_head`, `DROP INDEX idx_date_hi`, `DROP INDEX idx_date_inverted`, `PRAGMA user_version = 1`} {
		var args []any
		if q == `UPDATE entries SET rows = ?` {
			args = []any{blob}
		}
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(q, err)
		}
	}
	db.Close()

	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, entries, err := s.ReadEntries(ctx, "Observation", "o1")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0] != old[0] || entries[1] != old[1] {
		t.Fatalf("entries rebuilt from rows: %+v", entries)
	}
	code := func(c string) int {
		p, err := s.Search(ctx, &search.Query{Types: []string{"Observation"}, Summary: search.SummaryCount,
			Where: &search.Match{Param: "code", Type: fhir.ParamToken, Values: []search.Value{{System: "http://s", Code: c}}}})
		if err != nil {
			t.Fatal(err)
		}
		return p.Total
	}
	if code("a") != 1 {
		t.Fatal("the resource of schema 1 is not found")
	}
	// An update removes exactly the rows of schema 1 and writes a list.
	if _, err := s.Write(ctx, &storage.Write{Type: "Observation", ID: "o1", Body: []byte(`{"resourceType":"Observation"}`), IfMatch: w.Version,
		Index: []search.Entry{{Param: "code", Type: fhir.ParamToken, System: "http://s", Code: "b"}}}); err != nil {
		t.Fatal(err)
	}
	if code("a") != 0 || code("b") != 1 {
		t.Fatalf("after the update: a %d, b %d", code("a"), code("b"))
	}
	var n int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM idx_reference`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d reference rows left (%v)", n, err)
	}
	if _, err := s.Write(ctx, &storage.Write{Type: "AuditEvent", ID: "a1", Body: []byte(`{"resourceType":"AuditEvent","id":"a1"}`),
		Chain: func(prev, body []byte) ([]byte, []byte, error) { return body, []byte{1}, nil }}); err != nil {
		t.Fatal(err)
	}
	if seq, _, err := s.ChainHead(ctx); err != nil || seq != 1 {
		t.Fatalf("chain after migration: %d, %v", seq, err)
	}
}
