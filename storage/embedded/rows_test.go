package embedded

import (
	"math"
	"testing"

	"regie/fhir"
	"regie/fhir/search"
)

// fakeInterner numbers names in order of first use.
type fakeInterner map[string]int64

func (f fakeInterner) id(k string) int64 {
	if v, ok := f[k]; ok {
		return v
	}
	f[k] = int64(len(f) + 1)
	return f[k]
}
func (f fakeInterner) typeID(n string) (int64, error)           { return f.id("t:" + n), nil }
func (f fakeInterner) paramID(t int64, c string) (int64, error) { return f.id("p:" + c), nil }
func (f fakeInterner) systemID(u string) (int64, error) {
	if u == "" {
		return 0, nil
	}
	return f.id("s:" + u), nil
}

func TestRowsRoundTrip(t *testing.T) {
	entries := []search.Entry{
		{Param: "name", Type: fhir.ParamString, Str: "zoe", Exact: "Zoë"},
		{Param: "name", Type: fhir.ParamString, Str: "smith", Exact: "smith"},
		{Param: "code", Type: fhir.ParamToken, System: "http://loinc.org", Code: "1-2", Text: "glucose"},
		{Param: "identifier", Type: fhir.ParamToken, System: "urn:x", Code: "42", TypeSystem: "http://t", TypeCode: "MR"},
		{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: "p1"},
		{Param: "subject", Type: fhir.ParamReference, System: "urn:bsn", Code: "123"},
		{Param: "profile", Type: fhir.ParamReference, URL: "http://x/y", RefVersion: "2"},
		{Param: "date", Type: fhir.ParamDate, Lo: math.MinInt64, Hi: 12345},
		{Param: "n", Type: fhir.ParamNumber, LoF: math.Inf(-1), HiF: 2.5, Num: 2},
		{Param: "q", Type: fhir.ParamQuantity, LoF: 1, HiF: 2, Num: 1.5, UnitSystem: "http://unitsofmeasure.org", UnitCode: "mg", CanonUnit: "g", CanonLo: .001, CanonHi: .002, Canon: .0015},
		{Param: "c#0", Type: fhir.ParamToken, Group: 3, Code: "x"},
		{Param: "url", Type: fhir.ParamURI, Str: "http://a/b"},
		{Param: "skipped", Type: fhir.ParamNumber, Num: math.NaN()},
		{Param: "special", Type: fhir.ParamSpecial, Str: "x"},
	}
	rows, err := rowsOf(fakeInterner{}, 1, entries)
	if err != nil {
		t.Fatal(err)
	}
	// 12 entries kept; the token with text adds a text row, the identifier
	// with a type an of-type row.
	if len(rows) != 14 {
		t.Fatalf("got %d rows, want 14: %+v", len(rows), rows)
	}
	blob, encs := encodeRows(append(rows, rows[0])) // a duplicate is dropped
	if len(encs) != 14 {
		t.Fatalf("encoded %d distinct rows, want 14", len(encs))
	}
	split, err := splitRows(blob)
	if err != nil {
		t.Fatal(err)
	}
	if len(split) != len(encs) {
		t.Fatalf("split %d rows, want %d", len(split), len(encs))
	}
	seen := map[row]bool{}
	for i, e := range split {
		if e != encs[i] {
			t.Fatalf("row %d: split differs from encoding", i)
		}
		r, n, err := decodeRow([]byte(e))
		if err != nil || n != len(e) {
			t.Fatalf("row %d: decode: %v (%d of %d bytes)", i, err, n, len(e))
		}
		seen[r] = true
	}
	for _, r := range rows {
		if !seen[r] {
			t.Errorf("row %+v lost in the round trip", r)
		}
	}
	for _, bad := range [][]byte{{0}, {99, 1, 0}, {tabString, 1, 0, 200}, {tabNumber, 1, 0, 1, 2}} {
		if _, err := splitRows(bad); err == nil {
			t.Errorf("corrupt blob %v accepted", bad)
		}
	}
}
