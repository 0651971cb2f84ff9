package embedded_test

import (
	"database/sql"
	"testing"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
	"regie/storage/embedded"
)

// A database of schema 1 (no entry lists, no chain) opens: it is migrated,
// its resources keep being found, their entries are rebuilt from the index
// rows until reindexed, and new writes keep entry lists.
func TestMigrateFromSchema1(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := []search.Entry{
		{Param: "code", Type: fhir.ParamToken, System: "http://s", Code: "a"},
		{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: "p1"},
	}
	if _, err := s.Write(t0, &storage.Write{Type: "Observation", ID: "o1", Body: []byte(`{"resourceType":"Observation"}`), Index: old}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+dir+"/"+embedded.FileName)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`ALTER TABLE entries DROP COLUMN list`, `DROP TABLE chain`, `DROP TABLE chain_head`, `PRAGMA user_version = 1`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	db.Close()

	s, err = embedded.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, entries, err := s.ReadEntries(t0, "Observation", "o1")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0] != old[0] || entries[1] != old[1] {
		t.Fatalf("entries rebuilt from rows: %+v", entries)
	}
	if ids := codeSearch(t, s, "Observation", "a"); len(ids) != 1 {
		t.Fatalf("search after migration: %v", ids)
	}
	if _, err := s.Write(t0, auditWrite("a1")); err != nil {
		t.Fatal(err)
	}
	if n, err := verify(t, s); err != nil || n != 1 {
		t.Fatalf("chain after migration: %d, %v", n, err)
	}
}
