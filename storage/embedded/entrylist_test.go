package embedded

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"regie/fhir"
	"regie/fhir/search"
)

// fakeNames reverses a fakeInterner.
type fakeNames fakeInterner

func (f fakeNames) find(prefix string, id int64) (string, bool) {
	for k, v := range f {
		if v == id && strings.HasPrefix(k, prefix) {
			return k[len(prefix):], true
		}
	}
	return "", false
}
func (f fakeNames) paramCode(pid int64) (string, bool) { return f.find("p:", pid) }
func (f fakeNames) systemURI(sid int64) (string, bool) {
	if sid == 0 {
		return "", true
	}
	return f.find("s:", sid)
}
func (f fakeNames) typeNameOf(tid int64) string { n, _ := f.find("t:", tid); return n }

func TestListRoundTrip(t *testing.T) {
	entries := []search.Entry{
		{Param: "name", Type: fhir.ParamString, Str: "zoe", Exact: "Zoë"},
		{Param: "name", Type: fhir.ParamString, Str: "smith", Exact: "smith"},
		{Param: "name", Type: fhir.ParamString, Str: "only-str"},
		{Param: "name", Type: fhir.ParamString, Exact: "only-exact"},
		{Param: "code", Type: fhir.ParamToken, System: "http://loinc.org", Code: "1-2", Text: "glucose"},
		{Param: "code", Type: fhir.ParamToken, Text: "text only"},
		{Param: "identifier", Type: fhir.ParamToken, System: "urn:x", Code: "42", TypeSystem: "http://t", TypeCode: "MR"},
		{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: "p1", RefVersion: "3"},
		{Param: "subject", Type: fhir.ParamReference, System: "urn:bsn", Code: "123"},
		{Param: "subject", Type: fhir.ParamReference, URL: "http://x/fhir/Patient/9", RefType: "Patient", RefID: "9"},
		{Param: "date", Type: fhir.ParamDate, Lo: math.MinInt64, Hi: math.MaxInt64},
		{Param: "date", Type: fhir.ParamDate, Lo: -5, Hi: 0},
		{Param: "n", Type: fhir.ParamNumber, LoF: math.Inf(-1), HiF: 2.5, Num: math.Copysign(0, -1)},
		{Param: "n", Type: fhir.ParamNumber, Num: math.NaN()},
		{Param: "q", Type: fhir.ParamQuantity, LoF: 1, HiF: 2, Num: 1.5, UnitSystem: "http://unitsofmeasure.org", UnitCode: "mg",
			CanonUnit: "g", CanonLo: .001, CanonHi: .002, Canon: .0015},
		{Param: "c#0", Type: fhir.ParamToken, Group: 3, Code: "x"},
		{Param: "c#1", Type: fhir.ParamQuantity, Group: -3, LoF: 1},
		{Param: "url", Type: fhir.ParamURI, Str: "http://a/b", Exact: "http://a/b"},
		{Param: "odd", Type: "future-type", Str: "x"},
		{Param: "empty"},
	}
	in := fakeInterner{}
	b, err := encodeList(in, 1, entries)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeList(fakeNames(in), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(entries) {
		t.Fatalf("decoded %d entries, want %d", len(got), len(entries))
	}
	same := func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }
	for i := range entries {
		g, w := got[i], entries[i]
		if !same(g.Num, w.Num) || !same(g.LoF, w.LoF) {
			t.Errorf("entry %d: floats %v %v, want %v %v", i, g.Num, g.LoF, w.Num, w.LoF)
		}
		g.Num, w.Num = 0, 0
		if g != w {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	// A list cut between two entries is a shorter list; cut anywhere else
	// it is an error, never a panic.
	ends := map[int]int{1: 0}
	for k := 1; k <= len(entries); k++ {
		p, err := encodeList(in, 1, entries[:k])
		if err != nil {
			t.Fatal(err)
		}
		ends[len(p)] = k
	}
	for n := 1; n < len(b); n++ {
		got, err := decodeList(fakeNames(in), b[:n], nil)
		if k, ok := ends[n]; ok {
			if err != nil || len(got) != k {
				t.Errorf("cut after %d entries: %d entries, %v", k, len(got), err)
			}
		} else if err == nil {
			t.Errorf("cut at byte %d of %d decoded", n, len(b))
		}
	}
	if _, err := decodeList(fakeNames(in), []byte{9, 1, 2}, nil); err == nil {
		t.Error("an unknown format decoded")
	}
}

// Lists of the first format (no back references) still decode.
func TestListFormat1(t *testing.T) {
	in := fakeInterner{}
	pid, _ := in.paramID(1, "code")
	sid, _ := in.systemID("http://loinc.org")
	b := []byte{listFormat1}
	b = binary.AppendUvarint(b, uint64(pid))
	tc, _ := paramTypeCode(fhir.ParamQuantity)
	b = append(b, tc)
	b = binary.AppendVarint(b, 0)
	b = binary.AppendUvarint(b, fSystem|fCode|fLoF|fHiF)
	b = binary.AppendUvarint(b, uint64(sid))
	b = binary.AppendUvarint(b, 3)
	b = append(b, "abc"...)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(1.5))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(1.5))
	got, err := decodeList(fakeNames(in), b, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("%v %v", got, err)
	}
	want := search.Entry{Param: "code", Type: fhir.ParamQuantity, System: "http://loinc.org", Code: "abc", LoF: 1.5, HiF: 1.5}
	if got[0] != want {
		t.Fatalf("got %+v, want %+v", got[0], want)
	}
}
