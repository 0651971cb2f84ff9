package search

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"regie/fhir"
)

var testNow = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestParser(t testing.TB) *Parser {
	t.Helper()
	return NewParser(loadDefs(t), Config{BaseURL: "https://regie.example/fhir/", MaxCount: 1000})
}

func parse(t *testing.T, p *Parser, types, query string, strict bool) (*Query, []fhir.Issue, error) {
	t.Helper()
	ps, err := ParseParams(query)
	if err != nil {
		t.Fatalf("ParseParams(%q): %v", query, err)
	}
	var ts []string
	if types != "" {
		ts = strings.Split(types, ",")
	}
	return p.Parse(ts, ps, Options{Strict: strict, Now: testNow})
}

// TestParseConformance is the parser's conformance table: one request per
// parameter type, value syntax, modifier and prefix, with the expected
// tree (see dump). Dates are UTC; ranges follow the value's precision.
func TestParseConformance(t *testing.T) {
	p := newTestParser(t)
	cases := []struct {
		name, types, query, want string
	}{
		// string
		{"string", "Patient", "name=M%C3%BCller", "name:string{Str=muller}"},
		{"string exact", "Patient", "name:exact=M%C3%BCller", "name:exact:string{Str=Müller}"},
		{"string contains", "Patient", "name:contains=%C3%9CLL", "name:contains:string{Str=ull}"},
		{"string or", "Patient", "name=Ann,Bob", "name:string{Str=ann; Str=bob}"},
		{"string escaped comma", "Patient", `name=a\,b`, "name:string{Str=a,b}"},
		{"string escaped backslash", "Patient", `name=a\\b`, `name:string{Str=a\b}`},
		{"string and", "Patient", "name=a&name=b", "and(name:string{Str=a}, name:string{Str=b})"},
		{"string folding", "Patient", "address-city=%C3%86r%C3%B8+Stra%C3%9Fe", "address-city:string{Str=aero strasse}"},
		{"missing true", "Patient", "family:missing=true", "family:missing:string{Missing}"},
		{"missing false", "Patient", "birthdate:missing=false", "birthdate:missing:date{}"},

		// token
		{"token code", "Patient", "gender=male", "gender:token{AnySystem Code=male}"},
		{"token system|code", "Patient", "identifier=http://x|123", "identifier:token{System=http://x Code=123}"},
		{"token |code", "Patient", "identifier=|123", "identifier:token{Code=123}"},
		{"token system|", "Patient", "identifier=http://x|", "identifier:token{System=http://x}"},
		{"token escaped bar", "Patient", `identifier=a\|b`, "identifier:token{AnySystem Code=a|b}"},
		{"token not", "Patient", "gender:not=male", "not(gender:token{AnySystem Code=male})"},
		{"token not or", "Patient", "gender:not=male,female", "not(gender:token{AnySystem Code=male; AnySystem Code=female})"},
		{"token text", "Observation", "code:text=H%C3%A9adache", "code:text:token{Str=headache}"},
		{"token of-type", "Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053",
			"identifier:of-type:token{Code=446053 TypeSystem=http://terminology.hl7.org/CodeSystem/v2-0203 TypeCode=MR}"},
		{"_id", "Patient", "_id=abc,def", "_id:token{AnySystem Code=abc; AnySystem Code=def}"},
		{"_tag", "Patient", "_tag=http://s|t", "_tag:token{System=http://s Code=t}"},
		{"_security", "Patient", "_security=R", "_security:token{AnySystem Code=R}"},
		{"_profile", "Patient", "_profile=http://p", "_profile:uri{Str=http://p}"},
		{"_source", "Patient", "_source=http://s", "_source:uri{Str=http://s}"},

		// reference
		{"ref type/id", "Observation", "subject=Patient/123", "subject:reference{RefType=Patient RefID=123}"},
		{"ref id, several targets", "Observation", "subject=123", "subject:reference{RefID=123}"},
		{"ref id, one target", "Patient", "organization=1", "organization:reference{RefType=Organization RefID=1}"},
		{"ref type modifier", "Observation", "subject:Patient=123", "subject:reference{RefType=Patient RefID=123}"},
		{"ref absolute", "Observation", "subject=http://other.org/fhir/Patient/1", "subject:reference{URL=http://other.org/fhir/Patient/1}"},
		{"ref absolute on this server", "Observation", "subject=https://regie.example/fhir/Patient/1", "subject:reference{RefType=Patient RefID=1}"},
		{"ref versioned", "Observation", "subject=Patient/1/_history/2", "subject:reference{RefType=Patient RefID=1 Version=2}"},
		{"ref identifier", "Observation", "subject:identifier=http://x|1", "subject:identifier:reference{System=http://x Code=1}"},
		{"ref canonical", "CarePlan", "instantiates-canonical=http://x/PlanDefinition/p|1.0", "instantiates-canonical:reference{URL=http://x/PlanDefinition/p Version=1.0}"},
		{"ref missing", "Observation", "subject:missing=true", "subject:missing:reference{Missing}"},

		// date
		{"date year", "Patient", "birthdate=2020", "birthdate:date{Prefix=eq Lo=2020-01-01T00:00:00Z Hi=2020-12-31T23:59:59.999999Z}"},
		{"date month ge (leap year)", "Patient", "birthdate=ge2020-02", "birthdate:date{Prefix=ge Lo=2020-02-01T00:00:00Z Hi=2020-02-29T23:59:59.999999Z}"},
		{"date day", "Patient", "birthdate=le2021-03-04", "birthdate:date{Prefix=le Lo=2021-03-04T00:00:00Z Hi=2021-03-04T23:59:59.999999Z}"},
		{"date zone", "Observation", "date=lt2020-01-01T10:00:00%2B02:00", "date:date{Prefix=lt Lo=2020-01-01T08:00:00Z Hi=2020-01-01T08:00:00.999999Z}"},
		{"date zone as space", "Observation", "date=2020-01-01T10:00:00+01:00", "date:date{Prefix=eq Lo=2020-01-01T09:00:00Z Hi=2020-01-01T09:00:00.999999Z}"},
		{"date minutes", "Observation", "date=gt2020-01-01T10:00", "date:date{Prefix=gt Lo=2020-01-01T10:00:00Z Hi=2020-01-01T10:00:59.999999Z}"},
		{"date fraction", "Observation", "date=ne2020-01-01T10:00:00.5Z", "date:date{Prefix=ne Lo=2020-01-01T10:00:00.5Z Hi=2020-01-01T10:00:00.599999Z}"},
		{"date sa eb", "Observation", "date=sa2019&date=eb2020", "and(date:date{Prefix=sa Lo=2019-01-01T00:00:00Z Hi=2019-12-31T23:59:59.999999Z}, date:date{Prefix=eb Lo=2020-01-01T00:00:00Z Hi=2020-12-31T23:59:59.999999Z})"},
		// ap: widened by 10 % of the distance to now (365.25 days here).
		{"date ap", "Observation", "date=ap2015-01-01", "date:date{Prefix=ap Lo=2013-12-31T18:00:00Z Hi=2016-01-02T05:59:59.999999Z}"},
		{"_lastUpdated", "Patient", "_lastUpdated=gt2024-01-01", "_lastUpdated:date{Prefix=gt Lo=2024-01-01T00:00:00Z Hi=2024-01-01T23:59:59.999999Z}"},

		// number
		{"number gt", "RiskAssessment", "probability=gt0.8", "probability:number{Prefix=gt LoF=0.75 HiF=0.85 Num=0.8}"},
		{"number integer", "RiskAssessment", "probability=100", "probability:number{Prefix=eq LoF=99.5 HiF=100.5 Num=100}"},
		{"number decimals", "RiskAssessment", "probability=100.00", "probability:number{Prefix=eq LoF=99.995 HiF=100.005 Num=100}"},
		{"number exponent", "RiskAssessment", "probability=1e2", "probability:number{Prefix=eq LoF=50 HiF=150 Num=100}"},
		{"number ap", "RiskAssessment", "probability=ap100", "probability:number{Prefix=ap LoF=89.5 HiF=110.5 Num=100}"},

		// quantity
		{"quantity ucum", "Observation", "value-quantity=5.4|http://unitsofmeasure.org|mg",
			"value-quantity:quantity{Prefix=eq LoF=5.35 HiF=5.45 Num=5.4 UnitSystem=http://unitsofmeasure.org UnitCode=mg CanonUnit=g Canon=0.0054 CanonLo=0.00535 CanonHi=0.00545}"},
		{"quantity code only", "Observation", "value-quantity=lt60||mm[Hg]",
			"value-quantity:quantity{Prefix=lt LoF=59.5 HiF=60.5 Num=60 UnitCode=mm[Hg] CanonUnit=Pa Canon=7999.34 CanonLo=7932.68 CanonHi=8066}"},
		{"quantity unknown unit", "Observation", "value-quantity=5|http://snomed.info/sct|258718000",
			"value-quantity:quantity{Prefix=eq LoF=4.5 HiF=5.5 Num=5 UnitSystem=http://snomed.info/sct UnitCode=258718000}"},
		{"quantity number only", "Observation", "value-quantity=5.4", "value-quantity:quantity{Prefix=eq LoF=5.35 HiF=5.45 Num=5.4}"},

		// uri
		{"uri", "ValueSet", "url=http://x/vs", "url:uri{Str=http://x/vs}"},
		{"uri below", "ValueSet", "url:below=http://x/", "url:below:uri{Str=http://x/}"},
		{"uri above", "ValueSet", "url:above=http://x/vs/1", "url:above:uri{Str=http://x/vs/1}"},

		// composite
		{"composite", "Observation", "code-value-quantity=http://loinc.org|8480-6$lt60",
			"code-value-quantity:composite{Components=[code-value-quantity#0:token{System=http://loinc.org Code=8480-6}, code-value-quantity#1:quantity{Prefix=lt LoF=59.5 HiF=60.5 Num=60}]}"},
		{"composite escaped", "Observation", `code-value-string=a\$b$x`,
			"code-value-string:composite{Components=[code-value-string#0:token{AnySystem Code=a$b}, code-value-string#1:string{Str=x}]}"},

		// chains
		{"chain typed", "Observation", "subject:Patient.name=peter", "chain(subject:Patient, name:string{Str=peter})"},
		{"chain one candidate", "Observation", "patient.name=peter", "chain(patient:Patient, name:string{Str=peter})"},
		{"chain only one target has it", "Observation", "subject.birthdate=2020", "chain(subject:Patient, birthdate:date{Prefix=eq Lo=2020-01-01T00:00:00Z Hi=2020-12-31T23:59:59.999999Z})"},
		{"chain two levels", "Encounter", "subject:Patient.organization.name=Acme", "chain(subject:Patient, chain(organization:Organization, name:string{Str=acme}))"},
		{"chain with modifier", "Observation", "subject:Patient.name:exact=Peter", "chain(subject:Patient, name:exact:string{Str=Peter})"},
		{"chain to _id", "Observation", "subject:Patient._id=1", "chain(subject:Patient, _id:token{AnySystem Code=1})"},

		// reverse chains and _list
		{"has", "Patient", "_has:Observation:patient:code=1234-5", "has(Observation:patient, code:token{AnySystem Code=1234-5})"},
		{"has nested", "Patient", "_has:Observation:patient:_has:AuditEvent:entity:agent=Practitioner/1",
			"has(Observation:patient, has(AuditEvent:entity, agent:reference{RefType=Practitioner RefID=1}))"},
		{"has then chain", "Patient", "_has:Observation:patient:performer:Practitioner.name=x",
			"has(Observation:patient, chain(performer:Practitioner, name:string{Str=x}))"},
		{"_list", "Patient", "_list=42", "has(List:item, _id:token{AnySystem Code=42})"},

		// system level
		{"system _tag", "", "_tag=a", "_tag:token{AnySystem Code=a}"},
		{"two types, shared parameter", "Patient,Practitioner", "name=x", "name:string{Str=x}"},

		// ignored (warnings in lenient mode)
		{"unknown parameter", "Patient", "foo=bar", "nil"},
		{"unsupported modifier", "Patient", "name:text=x", "nil"},
		{"terminology modifier", "Observation", "code:in=http://vs", "nil"},
		{"token below", "Observation", "code:below=x", "nil"},
		{"reference above", "Observation", "subject:above=x", "nil"},
		{"_text", "Patient", "_text=x", "nil"},
		{"_content", "Patient", "_content=x", "nil"},
		{"empty value", "Patient", "name=", "nil"},
		{"chain unknown", "Observation", "subject:Patient.foo=1", "nil"},
		{"parameter of another type", "", "gender=male", "nil"},
		{"special", "Location", "near=1|2|3|km", "nil"},
		{"not indexed", "Patient", "age=5", "nil"},
		{"functional list", "Patient", "_list=$current-allergies", "nil"},
		{"format and pretty", "Patient", "_format=json&_pretty=true", "nil"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, warns, err := parse(t, p, c.types, c.query, false)
			if err != nil {
				t.Fatalf("%s: %v", c.query, err)
			}
			if got := dump(q.Where); got != c.want {
				t.Errorf("%s\n got %s\nwant %s", c.query, got, c.want)
			}
			if (c.want == "nil") != (len(warns) > 0) && !strings.HasPrefix(c.query, "_format") {
				t.Errorf("%s: warnings %v", c.query, warns)
			}
			for _, w := range warns {
				if !w.Warning || w.Code != fhir.IssueNotSupported || w.Path == "" {
					t.Errorf("%s: warning %+v", c.query, w)
				}
			}
		})
	}
}

// TestParseErrors checks that malformed requests are errors whatever the
// mode, with the parameter as the issue's path.
func TestParseErrors(t *testing.T) {
	p := newTestParser(t)
	cases := []struct{ name, types, query, path string }{
		{"missing value", "Patient", "name:missing=maybe", "name:missing"},
		{"of-type parts", "Patient", "identifier:of-type=MR|1", "identifier:of-type"},
		{"token empty", "Patient", "identifier=|", "identifier"},
		{"empty or value", "Patient", "gender=male,,female", "gender"},
		{"ref type differs", "Observation", "subject:Patient=Group/1", "subject:Patient"},
		{"ref unknown type", "Observation", "subject=Foo/1", "subject"},
		{"ref not a target", "Observation", "subject=Medication/1", "subject"},
		{"ref bad id", "Observation", "subject=Patient/a_b", "subject"},
		{"ref bad version", "Observation", "subject=Patient/1/_history/x", "subject"},
		{"ref too many parts", "Observation", "subject=a/b/c", "subject"},
		{"date invalid day", "Patient", "birthdate=2020-02-30", "birthdate"},
		{"date junk", "Patient", "birthdate=yesterday", "birthdate"},
		{"date hour only", "Observation", "date=2020-01-01T10", "date"},
		{"date bad zone", "Observation", "date=2020-01-01T10:00:00X", "date"},
		{"number junk", "RiskAssessment", "probability=abc", "probability"},
		{"number prefix only", "RiskAssessment", "probability=gt", "probability"},
		{"quantity two parts", "Observation", "value-quantity=5.4|mg", "value-quantity"},
		{"quantity empty unit", "Observation", "value-quantity=5.4||", "value-quantity"},
		{"composite parts", "Observation", "code-value-quantity=abc", "code-value-quantity"},
		{"composite bad component", "Observation", "code-value-quantity=a$lt", "code-value-quantity"},
		{"chain ambiguous", "Observation", "subject.name=peter", "subject.name"},
		{"chain not a reference", "Observation", "code.x=1", "code.x"},
		{"chain bad type", "Observation", "subject:Medication.code=x", "subject:Medication.code"},
		{"has not referring", "Patient", "_has:Observation:device:code=1", "_has:Observation:device:code"},
		{"has unknown type", "Patient", "_has:Foo:x:y=1", "_has:Foo:x:y"},
		{"has short", "Patient", "_has:Observation:patient=1", "_has:Observation:patient"},
		{"has not a reference", "Patient", "_has:Observation:code:status=final", "_has:Observation:code:status"},
		{"_count junk", "Patient", "_count=ten", "_count"},
		{"_count negative", "Patient", "_count=-1", "_count"},
		{"_count twice", "Patient", "_count=1&_count=2", "_count"},
		{"_total", "Patient", "_total=some", "_total"},
		{"_summary", "Patient", "_summary=short", "_summary"},
		{"_elements", "Patient", "_elements=na%20me", "_elements"},
		{"_type unknown", "", "_type=Foo", "_type"},
		{"include syntax", "Patient", "_include=Observation", "_include"},
		{"include not a reference", "Observation", "_include=Observation:code", "_include"},
		{"include bad target", "Observation", "_include=Observation:subject:Medication", "_include"},
		{"sort empty key", "Patient", "_sort=name,", "_sort"},
		{"list bad id", "Patient", "_list=a_b", "_list"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, strict := range []bool{false, true} {
				q, _, err := parse(t, p, c.types, c.query, strict)
				var ve *fhir.ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("%s (strict %v): got %v, %v; want a validation error", c.query, strict, q, err)
				}
				if q != nil {
					t.Errorf("%s: query returned with an error", c.query)
				}
				if ve.Issues[0].Path != c.path || ve.Issues[0].Warning {
					t.Errorf("%s: issue %+v, want path %q", c.query, ve.Issues[0], c.path)
				}
			}
		})
	}
}

// TestParseStrict checks that what lenient mode ignores is an error in
// strict mode.
func TestParseStrict(t *testing.T) {
	p := newTestParser(t)
	for _, query := range []string{
		"foo=bar", "name:text=x", "code:in=http://vs", "_text=x", "name=",
		"subject:Patient.foo=1", "_sort=foo", "_include=Observation:foo", "_include:bad=*",
	} {
		_, warns, err := parse(t, p, "Observation", query, true)
		var ve *fhir.ValidationError
		if !errors.As(err, &ve) || ve.Issues[0].Code != fhir.IssueNotSupported {
			t.Errorf("%s: strict: got %v", query, err)
		}
		if len(warns) != 0 {
			t.Errorf("%s: strict mode returned warnings %v", query, warns)
		}
	}
}

// TestParseResultParameters covers the parameters that shape the result
// rather than select resources.
func TestParseResultParameters(t *testing.T) {
	p := newTestParser(t)
	cases := []struct {
		name, types, query string
		want               Query
	}{
		{"sort", "Observation", "_sort=-date,status,_id,_lastUpdated", Query{Sort: []Sort{
			{Param: "date", Type: fhir.ParamDate, Desc: true}, {Param: "status", Type: fhir.ParamToken},
			{Param: "_id", Type: fhir.ParamToken}, {Param: "_lastUpdated", Type: fhir.ParamDate}}}},
		{"sort desc modifier", "Patient", "_sort:desc=birthdate", Query{Sort: []Sort{{Param: "birthdate", Type: fhir.ParamDate, Desc: true}}}},
		{"count", "Patient", "_count=10", Query{Count: 10}},
		{"count capped", "Patient", "_count=5000", Query{Count: 1000}},
		{"count zero", "Patient", "_count=0", Query{Summary: SummaryCount}},
		{"total", "Patient", "_total=accurate", Query{Total: TotalAccurate}},
		{"summary", "Patient", "_summary=text", Query{Summary: SummaryText}},
		{"elements", "Patient", "_elements=name,birthDate&_elements=name", Query{Elements: []string{"name", "birthDate"}}},
		{"cursor", "Patient", "_cursor=abc", Query{Cursor: "abc"}},
		{"include", "Observation", "_include=Observation:subject&_include:iterate=Patient:organization:Organization&_include=*",
			Query{Include: []Include{{Source: "Observation", Param: "subject"}, {Source: "Patient", Param: "organization", Target: "Organization", Iterate: true}, {Source: "*", Param: "*"}}}},
		{"include recurse", "Observation", "_include:recurse=Observation:*", Query{Include: []Include{{Source: "Observation", Param: "*", Iterate: true}}}},
		{"revinclude", "Patient", "_revinclude=Provenance:target&_revinclude:iterate=Observation:patient",
			Query{RevInclude: []Include{{Source: "Provenance", Param: "target"}, {Source: "Observation", Param: "patient", Iterate: true}}}},
		{"_type", "", "_type=Patient,Practitioner&name=x", Query{Types: []string{"Patient", "Practitioner"}, Where: &Match{Param: "name", Type: fhir.ParamString, Values: []Value{{Str: "x"}}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, warns, err := parse(t, p, c.types, c.query, true)
			if err != nil || len(warns) > 0 {
				t.Fatalf("%s: %v %v", c.query, err, warns)
			}
			want := c.want
			if want.Types == nil && c.types != "" {
				want.Types = strings.Split(c.types, ",")
			}
			if !reflect.DeepEqual(*q, want) {
				t.Errorf("%s\n got %+v\nwant %+v", c.query, *q, want)
			}
		})
	}
}

func TestParseParams(t *testing.T) {
	ps, err := ParseParams("name=a+b&&_has%3AObservation%3Apatient%3Acode=1&x&date=ge2020-01-01T00%3A00%3A00%2B01%3A00")
	if err != nil {
		t.Fatal(err)
	}
	want := []Param{{"name", "a b"}, {"_has:Observation:patient:code", "1"}, {"x", ""}, {"date", "ge2020-01-01T00:00:00+01:00"}}
	if !reflect.DeepEqual(ps, want) {
		t.Errorf("got %v, want %v", ps, want)
	}
	if _, err := ParseParams("name=%zz"); err == nil {
		t.Error("malformed escape accepted")
	}
}

func TestCanonical(t *testing.T) {
	p := newTestParser(t)
	cases := []struct{ types, query, want string }{
		{"Patient", "name=B%C3%B6b,Ann&gender=male&_count=10&birthdate=eq2020",
			"_count=10&birthdate=2020&gender=male&name=ann,bob"},
		{"Patient", "gender=male&name=Ann&_count=10&birthdate=2020",
			"_count=10&birthdate=2020&gender=male&name=ann"},
		{"Observation", "subject.birthdate=ge2020&code=http://loinc.org|1,2&_sort=-date&_include=Observation:subject",
			"_include=Observation:subject&_sort=-date&code=2,http://loinc.org|1&subject:Patient.birthdate=ge2020"},
		{"Patient", "gender:not=male&_list=42&_has:Observation:patient:code=x&name:exact=A%26B",
			"_has:List:item:_id=42&_has:Observation:patient:code=x&gender:not=male&name:exact=A%26B"},
		{"Observation", "code-value-quantity=http://loinc.org|8480-6$lt60|http://unitsofmeasure.org|mm[Hg]&value-quantity=5.4||mg",
			"code-value-quantity=http://loinc.org|8480-6$lt60|http://unitsofmeasure.org|mm%5BHg%5D&value-quantity=5.4||mg"},
		{"", "_type=Patient,Group&_tag=a%2Bb",
			"_tag=a%2Bb&_type=Group,Patient"},
	}
	for _, c := range cases {
		q, _, err := parse(t, p, c.types, c.query, false)
		if err != nil {
			t.Fatal(err)
		}
		got := Canonical(q)
		if got != c.want {
			t.Errorf("%s\n got %s\nwant %s", c.query, got, c.want)
		}
		// The canonical form parses to the same canonical form.
		q2, _, err := parse(t, p, c.types, got, false)
		if err != nil {
			t.Fatalf("reparse %s: %v", got, err)
		}
		if again := Canonical(q2); again != got {
			t.Errorf("not stable: %s -> %s", got, again)
		}
	}
}
