package search

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"regie/fhir"
)

// dumpEntry renders an entry as param:type{non-zero fields}; Lo/Hi print as
// UTC instants (or ±inf), floats with 6 significant digits.
func dumpEntry(e Entry) string {
	var parts []string
	rv := reflect.ValueOf(e)
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		f, fv := rt.Field(i), rv.Field(i)
		if f.Name == "Param" || f.Name == "Type" || fv.IsZero() {
			continue
		}
		switch {
		case f.Name == "Lo" || f.Name == "Hi":
			s := micro(fv.Int())
			switch fv.Int() {
			case math.MinInt64:
				s = "-inf"
			case math.MaxInt64:
				s = "+inf"
			}
			parts = append(parts, f.Name+"="+s)
		case fv.Kind() == reflect.Float64:
			parts = append(parts, fmt.Sprintf("%s=%.6g", f.Name, fv.Float()))
		default:
			parts = append(parts, fmt.Sprintf("%s=%v", f.Name, fv.Interface()))
		}
	}
	return e.Param + ":" + string(e.Type) + "{" + strings.Join(parts, " ") + "}"
}

// dumpEntries renders the entries of the given parameters (and their
// composite components), sorted, with composite groups renumbered from 1
// in order of appearance.
func dumpEntries(es []Entry, params []string) []string {
	groups := map[int]int{}
	var out []string
	for _, e := range es {
		base, _, _ := strings.Cut(e.Param, "#")
		if !slices.Contains(params, base) {
			continue
		}
		if e.Group != 0 {
			g, ok := groups[e.Group]
			if !ok {
				g = len(groups) + 1
				groups[e.Group] = g
			}
			e.Group = g
		}
		out = append(out, dumpEntry(e))
	}
	slices.Sort(out)
	return out
}

func newTestIndexer(t testing.TB) *Indexer {
	t.Helper()
	ix, err := NewIndexer(loadDefs(t), IndexerConfig{BaseURL: "https://regie.example/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// TestIndexConformance is the extraction conformance table: one resource
// per data type a parameter can index, with the hand-checked entries.
func TestIndexConformance(t *testing.T) {
	ix := newTestIndexer(t)
	const ucum = "http://unitsofmeasure.org"
	cases := []struct {
		name, typ, body string
		params          []string
		want            []string
	}{
		{"HumanName parts, folded, without duplicates", "Patient",
			`{"resourceType":"Patient","name":[{"family":"Müller","given":["Anna","Anna"],"prefix":["Dr."],"suffix":["PhD"],"text":"Dr. Anna Müller"},{"given":["Anna"]}]}`,
			[]string{"name", "family"}, []string{
				"family:string{Str=muller Exact=Müller}",
				"name:string{Str=anna Exact=Anna}",
				"name:string{Str=dr. Exact=Dr.}",
				"name:string{Str=dr. anna muller Exact=Dr. Anna Müller}",
				"name:string{Str=muller Exact=Müller}",
				"name:string{Str=phd Exact=PhD}",
			}},
		{"Address parts", "Patient",
			`{"resourceType":"Patient","address":[{"use":"home","line":["Grote Markt 1","2e étage"],"city":"Groningen","district":"Centrum","state":"GR","postalCode":"9711 AA","country":"NL"}]}`,
			[]string{"address", "address-city"}, []string{
				"address-city:string{Str=groningen Exact=Groningen}",
				"address:string{Str=2e etage Exact=2e étage}",
				"address:string{Str=9711 aa Exact=9711 AA}",
				"address:string{Str=centrum Exact=Centrum}",
				"address:string{Str=gr Exact=GR}",
				"address:string{Str=groningen Exact=Groningen}",
				"address:string{Str=grote markt 1 Exact=Grote Markt 1}",
				"address:string{Str=nl Exact=NL}",
			}},
		{"string from an extension", "Patient",
			`{"resourceType":"Patient","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-extensions-Patient-mothersMaidenName","valueString":"Østergård"}]}`,
			[]string{"mothersMaidenName"}, []string{"mothersMaidenName:string{Str=ostergard Exact=Østergård}"}},
		{"CodeableConcept: codings and text", "Observation",
			`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart Rate"},{"system":"http://snomed.info/sct","code":"364075005"}],"text":"Hartslag"}}`,
			[]string{"code", "status"}, []string{
				"code:token{System=http://loinc.org Code=8867-4 Text=heart rate}",
				"code:token{System=http://snomed.info/sct Code=364075005}",
				"code:token{Text=hartslag}",
				"status:token{Code=final}",
			}},
		{"Coding", "Encounter",
			`{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB","display":"ambulatory"}}`,
			[]string{"class"}, []string{"class:token{System=http://terminology.hl7.org/CodeSystem/v3-ActCode Code=AMB Text=ambulatory}"}},
		{"Identifier with type codings, and without", "Patient",
			`{"resourceType":"Patient","identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"},{"system":"http://x","code":"Y"}],"text":"Nummer"},"system":"http://mrn","value":"1"},{"value":"2"}]}`,
			[]string{"identifier"}, []string{
				"identifier:token{Code=2}",
				"identifier:token{System=http://mrn Code=1 Text=nummer TypeSystem=http://terminology.hl7.org/CodeSystem/v2-0203 TypeCode=MR}",
				"identifier:token{System=http://mrn Code=1 TypeSystem=http://x TypeCode=Y}",
			}},
		{"ContactPoint, code, boolean, computed boolean", "Patient",
			`{"resourceType":"Patient","active":true,"gender":"female","deceasedBoolean":true,"telecom":[{"system":"phone","value":"0612345678"},{"system":"email"}]}`,
			[]string{"telecom", "phone", "gender", "active", "deceased"}, []string{
				"active:token{Code=true}",
				"deceased:token{Code=true}",
				"gender:token{Code=female}",
				"phone:token{System=phone Code=0612345678}",
				"telecom:token{System=phone Code=0612345678}",
			}},
		{"computed boolean when absent", "Patient", `{"resourceType":"Patient"}`,
			[]string{"deceased"}, []string{"deceased:token{Code=false}"}},
		{"meta: _tag, _profile, _security, _source", "Patient",
			`{"resourceType":"Patient","meta":{"source":"http://ehr.example#42","profile":["http://p/1"],"security":[{"system":"http://s","code":"R"}],"tag":[{"system":"http://t","code":"demo","display":"Demo"}]}}`,
			[]string{"_tag", "_profile", "_security", "_source", "_id", "_lastUpdated"}, []string{
				"_profile:uri{Str=http://p/1 Exact=http://p/1}",
				"_security:token{System=http://s Code=R}",
				"_source:uri{Str=http://ehr.example#42 Exact=http://ehr.example#42}",
				"_tag:token{System=http://t Code=demo Text=demo}",
			}},
		{"references: versioned, on this server, elsewhere, contained, urn, identifier", "Observation",
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1/_history/3"},"performer":[` +
				`{"reference":"https://regie.example/fhir/Practitioner/pr1"},` +
				`{"reference":"http://other.org/fhir/Organization/o9/_history/1"},` +
				`{"reference":"#c1"},{"reference":"urn:uuid:0b2d3b5e-6f3a-4a5e-9e1a-1f2d3c4b5a69"},` +
				`{"identifier":{"system":"http://big","value":"55"}},{"display":"only a name"}]}`,
			[]string{"subject", "patient", "performer"}, []string{
				"patient:reference{RefType=Patient RefID=p1 RefVersion=3}",
				"performer:reference{RefType=Organization RefID=o9 RefVersion=1 URL=http://other.org/fhir/Organization/o9}",
				"performer:reference{RefType=Practitioner RefID=pr1}",
				"performer:reference{System=http://big Code=55}",
				"performer:reference{URL=urn:uuid:0b2d3b5e-6f3a-4a5e-9e1a-1f2d3c4b5a69}",
				"subject:reference{RefType=Patient RefID=p1 RefVersion=3}",
			}},
		{"resolve() is Patient keeps other types out", "Observation",
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Group/g1"}}`,
			[]string{"subject", "patient"}, []string{"subject:reference{RefType=Group RefID=g1}"}},
		{"canonical and uri", "CarePlan",
			`{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/p"},"instantiatesCanonical":["http://x/PlanDefinition/p|2.0","PlanDefinition/local"],"instantiatesUri":["http://x/protocol"]}`,
			[]string{"instantiates-canonical", "instantiates-uri"}, []string{
				"instantiates-canonical:reference{RefType=PlanDefinition RefID=local}",
				"instantiates-canonical:reference{RefVersion=2.0 URL=http://x/PlanDefinition/p}",
				"instantiates-uri:uri{Str=http://x/protocol Exact=http://x/protocol}",
			}},
		{"date: partial date", "Patient", `{"resourceType":"Patient","birthDate":"1980-02"}`,
			[]string{"birthdate"}, []string{"birthdate:date{Lo=1980-02-01T00:00:00Z Hi=1980-02-29T23:59:59.999999Z}"}},
		{"date: dateTime with zone", "Observation",
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveDateTime":"2024-01-15T10:30:00+01:00"}`,
			[]string{"date"}, []string{"date:date{Lo=2024-01-15T09:30:00Z Hi=2024-01-15T09:30:00.999999Z}"}},
		{"date: instant with milliseconds", "Observation",
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveInstant":"2024-01-15T09:30:00.25Z"}`,
			[]string{"date"}, []string{"date:date{Lo=2024-01-15T09:30:00.25Z Hi=2024-01-15T09:30:00.259999Z}"}},
		{"date: Period open at the end", "Encounter",
			`{"resourceType":"Encounter","status":"in-progress","class":{"code":"AMB"},"period":{"start":"2024-01-15"}}`,
			[]string{"date"}, []string{"date:date{Lo=2024-01-15T00:00:00Z Hi=+inf}"}},
		{"date: Period open at the start", "Encounter",
			`{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"period":{"end":"2024-01-15T10:00:00Z"}}`,
			[]string{"date"}, []string{"date:date{Lo=-inf Hi=2024-01-15T10:00:00.999999Z}"}},
		{"date: Timing events", "CarePlan",
			`{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/p"},"activity":[{"detail":{"status":"scheduled","scheduledTiming":{"event":["2024-03-01","2024-01-10T10:00:00Z"]}}}]}`,
			[]string{"activity-date"}, []string{"activity-date:date{Lo=2024-01-10T10:00:00Z Hi=2024-03-01T23:59:59.999999Z}"}},
		{"date: Timing bounds", "ServiceRequest",
			`{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/p"},"occurrenceTiming":{"repeat":{"boundsPeriod":{"start":"2024-01-01","end":"2024-06-30"}}}}`,
			[]string{"occurrence"}, []string{"occurrence:date{Lo=2024-01-01T00:00:00Z Hi=2024-06-30T23:59:59.999999Z}"}},
		{"number: decimal by precision", "RiskAssessment",
			`{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/p"},"prediction":[{"probabilityDecimal":0.25}]}`,
			[]string{"probability"}, []string{"probability:number{LoF=0.245 HiF=0.255 Num=0.25}"}},
		{"number: integer is exact", "MolecularSequence",
			`{"resourceType":"MolecularSequence","coordinateSystem":0,"variant":[{"start":12}]}`,
			[]string{"variant-start"}, []string{"variant-start:number{LoF=12 HiF=12 Num=12}"}},
		{"quantity: UCUM with canonical form", "Observation",
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":5.4,"unit":"mg","system":"` + ucum + `","code":"mg"}}`,
			[]string{"value-quantity"}, []string{
				"value-quantity:quantity{LoF=5.35 HiF=5.45 Num=5.4 UnitSystem=http://unitsofmeasure.org UnitCode=mg CanonUnit=g CanonLo=0.00535 CanonHi=0.00545 Canon=0.0054}"}},
		{"quantity: comparator, unit without code", "Observation",
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":10,"comparator":"<","unit":"mg/L"}}`,
			[]string{"value-quantity"}, []string{"value-quantity:quantity{LoF=-Inf HiF=10.5 Num=10 UnitCode=mg/L}"}},
		{"quantity: Age", "Condition",
			`{"resourceType":"Condition","subject":{"reference":"Patient/p"},"onsetAge":{"value":45,"system":"` + ucum + `","code":"a"}}`,
			[]string{"onset-age"}, []string{
				"onset-age:quantity{LoF=44.5 HiF=45.5 Num=45 UnitSystem=http://unitsofmeasure.org UnitCode=a CanonUnit=s CanonLo=1.40431e+09 CanonHi=1.43587e+09 Canon=1.42009e+09}"}},
		{"quantity: Range", "Condition",
			`{"resourceType":"Condition","subject":{"reference":"Patient/p"},"onsetRange":{"low":{"value":40,"system":"` + ucum + `","code":"a"},"high":{"value":50,"system":"` + ucum + `","code":"a"}}}`,
			[]string{"onset-age"}, []string{
				"onset-age:quantity{LoF=39.5 HiF=50.5 Num=39.5 UnitSystem=http://unitsofmeasure.org UnitCode=a CanonUnit=s CanonLo=1.24653e+09 CanonHi=1.59366e+09 Canon=1.24653e+09}"}},
		{"quantity: Money", "ChargeItem",
			`{"resourceType":"ChargeItem","status":"billable","code":{"text":"x"},"subject":{"reference":"Patient/p"},"priceOverride":{"value":12.5,"currency":"EUR"}}`,
			[]string{"price-override"}, []string{"price-override:quantity{LoF=12.45 HiF=12.55 Num=12.5 UnitSystem=urn:iso:std:iso:4217 UnitCode=EUR}"}},
		{"quantity: Duration", "Encounter",
			`{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"length":{"value":30,"system":"` + ucum + `","code":"min"}}`,
			[]string{"length"}, []string{
				"length:quantity{LoF=29.5 HiF=30.5 Num=30 UnitSystem=http://unitsofmeasure.org UnitCode=min CanonUnit=s CanonLo=1770 CanonHi=1830 Canon=1800}"}},
		{"composite: one group per component", "Observation",
			`{"resourceType":"Observation","status":"final","code":{"text":"BP"},"component":[` +
				`{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"system":"` + ucum + `","code":"mm[Hg]"}},` +
				`{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"system":"` + ucum + `","code":"mm[Hg]"}},` +
				`{"code":{"coding":[{"system":"http://loinc.org","code":"8478-0"}]}}]}`,
			[]string{"component-code-value-quantity", "code-value-quantity"}, []string{
				"component-code-value-quantity#0:token{Group=1 System=http://loinc.org Code=8480-6}",
				"component-code-value-quantity#0:token{Group=2 System=http://loinc.org Code=8462-4}",
				"component-code-value-quantity#1:quantity{Group=1 LoF=119.5 HiF=120.5 Num=120 UnitSystem=http://unitsofmeasure.org UnitCode=mm[Hg] CanonUnit=Pa CanonLo=15932 CanonHi=16065.3 Canon=15998.7}",
				"component-code-value-quantity#1:quantity{Group=2 LoF=79.5 HiF=80.5 Num=80 UnitSystem=http://unitsofmeasure.org UnitCode=mm[Hg] CanonUnit=Pa CanonLo=10599.1 CanonHi=10732.5 Canon=10665.8}",
			}},
		{"composite with a System type name (as(DateTime))", "Observation",
			`{"resourceType":"Observation","status":"final","code":{"coding":[{"code":"x"}]},"valueDateTime":"2020-01-02"}`,
			[]string{"code-value-date"}, []string{
				"code-value-date#0:token{Group=1 Code=x}",
				"code-value-date#1:date{Group=1 Lo=2020-01-02T00:00:00Z Hi=2020-01-02T23:59:59.999999Z}",
			}},
		{"composite with %resource", "MolecularSequence",
			`{"resourceType":"MolecularSequence","coordinateSystem":0,"referenceSeq":{"chromosome":{"coding":[{"code":"1"}]},"windowStart":10,"windowEnd":20},"variant":[{"start":12,"end":13}]}`,
			[]string{"chromosome-variant-coordinate"}, []string{
				"chromosome-variant-coordinate#0:token{Group=1 Code=1}",
				"chromosome-variant-coordinate#1:number{Group=1 LoF=12 HiF=12 Num=12}",
				"chromosome-variant-coordinate#2:number{Group=1 LoF=13 HiF=13 Num=13}",
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			es, err := ix.Index(c.typ, []byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			got := dumpEntries(es, c.params)
			want := slices.Clone(c.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
			}
		})
	}
}

func TestIndexErrors(t *testing.T) {
	ix := newTestIndexer(t)
	for _, c := range []struct{ typ, body string }{
		{"Patient", `{"resourceType":"Observation"}`},
		{"Nope", `{"resourceType":"Nope"}`},
		{"Patient", `[1]`},
		{"Patient", `{"resourceType":"Patient",`},
	} {
		if _, err := ix.Index(c.typ, []byte(c.body)); err == nil {
			t.Errorf("%s %s: no error", c.typ, c.body)
		}
	}
}

// TestIndexerParams checks the parameter list published per type.
func TestIndexerParams(t *testing.T) {
	ix := newTestIndexer(t)
	var codes []string
	for _, p := range ix.Params("Patient") {
		codes = append(codes, p.Code)
	}
	for _, want := range []string{"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "name", "birthdate", "identifier", "organization", "deceased"} {
		if !slices.Contains(codes, want) {
			t.Errorf("Patient parameters lack %s: %v", want, codes)
		}
	}
	for _, not := range []string{"_text", "_content", "_query", "_filter", "age"} {
		if slices.Contains(codes, not) {
			t.Errorf("Patient parameters list %s, which is not indexed", not)
		}
	}
	if why := ix.Skipped("Location")["near"]; why == "" {
		t.Error("Location near is not reported as skipped")
	}
	if n := len(ix.Params("Observation")); n < 40 {
		t.Errorf("Observation has %d parameters, want at least 40: %v", n, strconv.Itoa(n))
	}
}

// TestIndexConcurrent indexes the dataset from several goroutines at once
// and compares with sequential results (run with -race).
func TestIndexConcurrent(t *testing.T) {
	ix := newTestIndexer(t)
	res, _ := loadDataset(t)
	want := make([][]string, len(res))
	for i, r := range res {
		rt, _, _ := fhir.Header(r)
		es, err := ix.Index(rt, r)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = dumpAll(es)
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < 5; round++ {
				for i, r := range res {
					rt, _, _ := fhir.Header(r)
					es, err := ix.Index(rt, r)
					if err != nil {
						t.Error(err)
						return
					}
					if got := dumpAll(es); !slices.Equal(got, want[i]) {
						t.Errorf("resource %d: concurrent result differs", i)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

func TestFHIRTypeNames(t *testing.T) {
	defs := loadDefs(t)
	for in, want := range map[string]string{
		"value.as(DateTime) | value.as(Period)": "value.as(dateTime) | value.as(Period)",
		"(Observation.value as DateTime)":       "(Observation.value as dateTime)",
		"x.ofType(Quantity)":                    "x.ofType(Quantity)",
		"Patient.deceased is Boolean":           "Patient.deceased is boolean",
		"a.alias(DateTime)":                     "a.alias(DateTime)",
		"a.where(b = 'as(DateTime)')":           "a.where(b = 'as(DateTime)')",
		"a.where(b = 'it\\'s') as DateTime":     "a.where(b = 'it\\'s') as dateTime",
	} {
		if got := fhirTypeNames(defs, in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
