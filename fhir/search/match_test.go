package search

import (
	"math"
	"strconv"
	"testing"
	"time"

	"regie/fhir"
)

// matchQuery parses one parameter of typ with the parser (no ap widening)
// and returns its Where.
func matchQuery(t *testing.T, p *Parser, typ, query string) Expr {
	t.Helper()
	ps, err := ParseParams(query)
	if err != nil {
		t.Fatal(err)
	}
	q, warns, err := p.Parse([]string{typ}, ps, Options{Strict: true})
	if err != nil || len(warns) > 0 || q.Where == nil {
		t.Fatalf("%s: %v %v", query, err, warns)
	}
	return q.Where
}

func dateEntry(param, lo, hi string) Entry {
	e := Entry{Param: param, Type: fhir.ParamDate, Lo: math.MinInt64, Hi: math.MaxInt64}
	if lo != "" {
		e.Lo, _, _ = DateRange(lo)
	}
	if hi != "" {
		_, e.Hi, _ = DateRange(hi)
	}
	return e
}

// TestPrefixSemantics checks every prefix against six entry ranges around
// the search day 2020-01-01 (hand-checked against the R4 prefix table).
func TestPrefixSemantics(t *testing.T) {
	p := newTestParser(t)
	entries := []Entry{
		dateEntry("date", "2020-01-01T10:00:00Z", "2020-01-01T10:00:00Z"), // 1 inside
		dateEntry("date", "2019-12-31", "2019-12-31"),                     // 2 the day before
		dateEntry("date", "2020-01-02", "2020-01-02"),                     // 3 the day after
		dateEntry("date", "2019-12-31T12:00:00Z", "2020-01-01T12:00:00Z"), // 4 across the start
		dateEntry("date", "2020-01-01T12:00:00Z", ""),                     // 5 open end
		dateEntry("date", "", ""),                                         // 6 open both ends
	}
	want := map[Prefix]string{
		Eq: "1", Ne: "23456", Gt: "356", Lt: "246", Ge: "1356", Le: "1246", Sa: "3", Eb: "2", Ap: "1456",
	}
	for pre, w := range want {
		m := matchQuery(t, p, "Observation", "date="+string(pre)+"2020-01-01").(*Match)
		got := ""
		for i, e := range entries {
			if m.Matches([]Entry{e}) {
				got += string(rune('1' + i))
			}
		}
		if got != w {
			t.Errorf("%s: matched %q, want %q", pre, got, w)
		}
	}
}

func TestMatchSemantics(t *testing.T) {
	p := newTestParser(t)
	bp := func(v float64) Entry {
		_, lo, hi, _ := DecimalRange(strconv.FormatFloat(v, 'f', -1, 64))
		e := Entry{Param: "value-quantity", Type: fhir.ParamQuantity, Num: v, LoF: lo, HiF: hi, UnitSystem: UCUM, UnitCode: "mm[Hg]"}
		e.CanonUnit, e.Canon, _ = Canonicalize("mm[Hg]", v)
		_, e.CanonLo, _ = Canonicalize("mm[Hg]", lo)
		_, e.CanonHi, _ = Canonicalize("mm[Hg]", hi)
		return e
	}
	obs := []Entry{
		{Param: "code", Type: fhir.ParamToken, System: "http://loinc.org", Code: "1234", Text: "systolic"},
		{Param: "code", Type: fhir.ParamToken, Code: "abc"},
		{Param: "code", Type: fhir.ParamToken, Text: "blood pressure"},
		{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: "1"},
		{Param: "subject", Type: fhir.ParamReference, URL: "http://other.org/Patient/2", RefType: "Patient", RefID: "2"},
		{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: "3", RefVersion: "4"},
		{Param: "subject", Type: fhir.ParamReference, System: "http://id", Code: "9"},
		bp(120),
		{Param: "component-code-value-quantity#0", Type: fhir.ParamToken, Group: 1, System: "http://loinc.org", Code: "8480-6"},
		withParam(bp(120), "component-code-value-quantity#1", 1),
		{Param: "component-code-value-quantity#0", Type: fhir.ParamToken, Group: 2, System: "http://loinc.org", Code: "8462-4"},
		withParam(bp(80), "component-code-value-quantity#1", 2),
	}
	pat := []Entry{
		{Param: "name", Type: fhir.ParamString, Str: "muller", Exact: "Müller"},
		{Param: "name", Type: fhir.ParamString, Str: "anna maria", Exact: "Anna Maria"},
		{Param: "identifier", Type: fhir.ParamToken, System: "http://id", Code: "7", TypeSystem: "http://v2", TypeCode: "MR"},
	}
	vs := []Entry{{Param: "url", Type: fhir.ParamURI, Str: "http://x.org/fhir/ValueSet/1", Exact: "http://x.org/fhir/ValueSet/1"}}
	cases := []struct {
		typ, query string
		entries    []Entry
		want       bool
	}{
		{"Observation", "code=1234", obs, true},
		{"Observation", "code=http://loinc.org|1234", obs, true},
		{"Observation", "code=|1234", obs, false},
		{"Observation", "code=|abc", obs, true},
		{"Observation", "code=http://loinc.org|", obs, true},
		{"Observation", "code=http://snomed.info/sct|1234", obs, false},
		{"Observation", "code=http://snomed.info/sct|", obs, false},
		{"Observation", "code:text=Blood", obs, true},
		{"Observation", "code:text=syst", obs, true},
		{"Observation", "code:text=pressure", obs, false},
		{"Observation", "code:missing=false", obs, true},
		{"Observation", "code:missing=true", obs, false},
		{"Observation", "focus:missing=true", obs, true},
		{"Observation", "subject=Patient/1", obs, true},
		{"Observation", "subject=1", obs, true},
		{"Observation", "subject=Group/1", obs, false},
		{"Observation", "subject=Patient/2", obs, false},
		{"Observation", "subject=http://other.org/Patient/2", obs, true},
		{"Observation", "subject=Patient/3", obs, true},
		{"Observation", "subject=Patient/3/_history/4", obs, true},
		{"Observation", "subject=Patient/3/_history/5", obs, false},
		{"Observation", "subject:identifier=http://id|9", obs, true},
		{"Observation", "subject:identifier=9", obs, true},
		{"Observation", "subject:identifier=1", obs, false},
		{"Observation", "value-quantity=16|http://unitsofmeasure.org|kPa", obs, true},
		{"Observation", "value-quantity=120||mm[Hg]", obs, true},
		{"Observation", "value-quantity=120", obs, true},
		{"Observation", "value-quantity=120.0", obs, false},
		{"Observation", "value-quantity=120|http://unitsofmeasure.org|kg", obs, false},
		{"Observation", "value-quantity=gt100|http://unitsofmeasure.org|mm[Hg]", obs, true},
		{"Observation", "value-quantity=lt100|http://unitsofmeasure.org|mm[Hg]", obs, false},
		{"Observation", "component-code-value-quantity=8480-6$gt100", obs, true},
		{"Observation", "component-code-value-quantity=8462-4$gt100", obs, false},
		{"Observation", "component-code-value-quantity=8462-4$lt100||mm[Hg]", obs, true},
		{"Observation", "component-code-value-quantity:missing=false", obs, true},
		{"Patient", "name=MUL", pat, true},
		{"Patient", "name=ull", pat, false},
		{"Patient", "name=maria", pat, false},
		{"Patient", "name:contains=ull", pat, true},
		{"Patient", "name:exact=Müller", pat, true},
		{"Patient", "name:exact=müller", pat, false},
		{"Patient", "identifier:of-type=http://v2|MR|7", pat, true},
		{"Patient", "identifier:of-type=http://v2|MR|8", pat, false},
		{"ValueSet", "url=http://x.org/fhir/ValueSet/1", vs, true},
		{"ValueSet", "url=http://x.org/fhir/ValueSet", vs, false},
		{"ValueSet", "url:below=http://x.org/fhir", vs, true},
		{"ValueSet", "url:above=http://x.org/fhir/ValueSet/1/_history/2", vs, true},
		{"ValueSet", "url:above=http://x.org/fhir", vs, false},
		{"ValueSet", "url:below=http://x.org/fhir/Value", vs, false},
		{"ValueSet", "url:below=http://x.org/fhir/", vs, true},
		{"ValueSet", "url:below=http://x.org/fhir/ValueSet/1", vs, true},
		{"ValueSet", "url:above=http://x.org/fhir/ValueSet/10", vs, false},
	}
	for _, c := range cases {
		e := matchQuery(t, p, c.typ, c.query)
		if got := Eval(e, &Doc{Type: c.typ, ID: "x", Entries: c.entries}, nil); got != c.want {
			t.Errorf("%s: got %v, want %v", c.query, got, c.want)
		}
	}
}

func withParam(e Entry, param string, group int) Entry {
	e.Param, e.Group = param, group
	return e
}

type memDocs map[string]*Doc

func (m memDocs) Resolve(typ, id string) *Doc { return m[typ+"/"+id] }
func (m memDocs) Docs(typ string) []*Doc {
	var ds []*Doc
	for _, d := range m {
		if d.Type == typ {
			ds = append(ds, d)
		}
	}
	return ds
}

func TestEvalChainsAndColumns(t *testing.T) {
	p := newTestParser(t)
	lu := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	docs := memDocs{
		"Patient/p1": {Type: "Patient", ID: "p1", LastUpdated: lu, Entries: []Entry{
			{Param: "name", Type: fhir.ParamString, Str: "peter", Exact: "Peter"},
			{Param: "organization", Type: fhir.ParamReference, RefType: "Organization", RefID: "o1"},
		}},
		"Organization/o1": {Type: "Organization", ID: "o1", Entries: []Entry{{Param: "name", Type: fhir.ParamString, Str: "acme", Exact: "Acme"}}},
		"Observation/x1": {Type: "Observation", ID: "x1", Entries: []Entry{
			{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: "p1"},
			{Param: "patient", Type: fhir.ParamReference, RefType: "Patient", RefID: "p1"},
			{Param: "code", Type: fhir.ParamToken, Code: "c1"},
		}},
		"List/l1": {Type: "List", ID: "l1", Entries: []Entry{{Param: "item", Type: fhir.ParamReference, RefType: "Patient", RefID: "p1"}}},
	}
	cases := []struct {
		doc, query string
		want       bool
	}{
		{"Observation/x1", "subject:Patient.name=pet", true},
		{"Observation/x1", "subject:Patient.name=anna", false},
		{"Observation/x1", "subject:Patient.organization.name=acme", true},
		{"Observation/x1", "subject:Patient.organization.name=other", false},
		{"Patient/p1", "_has:Observation:patient:code=c1", true},
		{"Patient/p1", "_has:Observation:patient:code=c2", false},
		{"Patient/p1", "_list=l1", true},
		{"Patient/p1", "_list=l2", false},
		{"Patient/p1", "_id=p1", true},
		{"Patient/p1", "_id=p2", false},
		{"Patient/p1", "_lastUpdated=2024-05-01", true},
		{"Patient/p1", "_lastUpdated=gt2024-05-01", false},
		{"Patient/p1", "_lastUpdated=lt2024-05-02", true},
		{"Patient/p1", "gender:not=male", true},
	}
	for _, c := range cases {
		d := docs[c.doc]
		e := matchQuery(t, p, d.Type, c.query)
		if got := Eval(e, d, docs); got != c.want {
			t.Errorf("%s on %s: got %v, want %v", c.query, c.doc, got, c.want)
		}
	}
	// Without a resolver, chains and _has match nothing (and do not panic).
	if Eval(&Chain{Param: "subject", Target: "Patient", Where: nil}, docs["Observation/x1"], nil) ||
		Eval(&Has{Type: "Observation", Param: "patient"}, docs["Patient/p1"], nil) {
		t.Error("chain or _has matched without a resolver")
	}
}

func TestCompartmentConstraint(t *testing.T) {
	defs := loadDefs(t)
	e, err := CompartmentConstraint(defs, "Patient", "123", "Observation")
	if err != nil {
		t.Fatal(err)
	}
	want := "or(subject:reference{RefType=Patient RefID=123}, performer:reference{RefType=Patient RefID=123})"
	if got := dump(e); got != want {
		t.Errorf("Observation:\n got %s\nwant %s", got, want)
	}
	e, err = CompartmentConstraint(defs, "Patient", "123", "Patient")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dump(e), "or(_id:token{AnySystem Code=123}, link:reference{RefType=Patient RefID=123})"; got != want {
		t.Errorf("Patient:\n got %s\nwant %s", got, want)
	}
	e, err = CompartmentConstraint(defs, "Encounter", "e1", "Encounter")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dump(e), "_id:token{AnySystem Code=e1}"; got != want {
		t.Errorf("Encounter {def}:\n got %s\nwant %s", got, want)
	}
	if _, err := CompartmentConstraint(defs, "Patient", "123", "Organization"); err == nil {
		t.Error("Organization is not in the Patient compartment")
	}
	if _, err := CompartmentConstraint(defs, "Nope", "123"); err == nil {
		t.Error("unknown compartment accepted")
	}
	if _, err := CompartmentConstraint(defs, "Patient", "a_b", "Observation"); err == nil {
		t.Error("invalid id accepted")
	}

	// Several types: each selected by _type with its own parameters.
	e, err = CompartmentConstraint(defs, "Patient", "123", "Observation", "Patient", "Organization", "CarePlan")
	if err != nil {
		t.Fatal(err)
	}
	want = "or(and(_type:token{AnySystem Code=Observation}, or(subject:reference{RefType=Patient RefID=123}, performer:reference{RefType=Patient RefID=123})), " +
		"and(_type:token{AnySystem Code=Patient}, or(_id:token{AnySystem Code=123}, link:reference{RefType=Patient RefID=123})), " +
		"and(_type:token{AnySystem Code=CarePlan}, or(patient:reference{RefType=Patient RefID=123}, performer:reference{RefType=Patient RefID=123})))"
	if got := dump(e); got != want {
		t.Errorf("several types:\n got %s\nwant %s", got, want)
	}
	ref := []Entry{{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: "123"}}
	for _, c := range []struct {
		d    *Doc
		want bool
	}{
		{&Doc{Type: "Observation", ID: "o", Entries: ref}, true},
		{&Doc{Type: "Observation", ID: "o"}, false},
		{&Doc{Type: "Organization", ID: "o", Entries: ref}, false},
		{&Doc{Type: "Patient", ID: "123"}, true},
		{&Doc{Type: "Patient", ID: "124"}, false},
	} {
		if got := Eval(e, c.d, nil); got != c.want {
			t.Errorf("%s/%s: got %v, want %v", c.d.Type, c.d.ID, got, c.want)
		}
	}

	// Every type of the compartment.
	e, err = CompartmentConstraint(defs, "Patient", "123")
	if err != nil {
		t.Fatal(err)
	}
	if !Eval(e, &Doc{Type: "Condition", ID: "c", Entries: []Entry{{Param: "patient", Type: fhir.ParamReference, RefType: "Patient", RefID: "123"}}}, nil) {
		t.Error("Condition of the patient is not in the compartment")
	}
}
