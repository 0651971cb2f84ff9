package fhirpath_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"regie/fhir/fhirpath"
)

const obsJSON = `{
  "resourceType": "Observation",
  "id": "o1",
  "contained": [{"resourceType": "Practitioner", "id": "p1", "name": [{"family": "Doe"}]}],
  "status": "final",
  "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Body weight"},
  "subject": {"reference": "Patient/123"},
  "performer": [{"reference": "#p1"}, {"reference": "https://example.org/fhir/Organization/org-1/_history/2"}, {"reference": "urn:uuid:0c3e"}],
  "effectiveDateTime": "2020-03-04T10:00:00+01:00",
  "valueQuantity": {"value": 185.10, "unit": "lbs", "system": "http://unitsofmeasure.org", "code": "[lb_av]"},
  "component": [
    {"code": {"text": "a"}, "valueQuantity": {"value": 1.50, "code": "mg", "system": "http://unitsofmeasure.org"}},
    {"code": {"text": "b"}, "valueString": "x"},
    {"code": {"text": "c"}, "valueQuantity": {"value": 2, "code": "g", "system": "http://unitsofmeasure.org"}}
  ],
  "note": [{"text": "n1"}],
  "identifier": [{"system": "urn:s", "value": "v1", "_value": {"extension": [{"url": "http://e", "valueBoolean": true}]}}]
}`

func parseObs(t testing.TB) *fhirpath.Node {
	t.Helper()
	n, err := fhirpath.ParseResource(loadDefs(t), []byte(obsJSON))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPathsAndTypes(t *testing.T) {
	root := parseObs(t)
	tests := []struct {
		expr  string
		types string // comma-separated TypeName of each item
		text  string // comma-separated Format of each item
	}{
		{"Observation.code", "CodeableConcept", `{"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Body weight"}`},
		{"Observation.code.coding.code", "code", "29463-7"},
		{"Observation.value", "Quantity", ""},
		{"Observation.value.value", "decimal", "185.10"},
		{"(Observation.value as Quantity).code", "code", "[lb_av]"},
		{"Observation.value.ofType(Quantity).unit", "string", "lbs"},
		{"Observation.value is Quantity", "Boolean", "true"},
		{"Observation.value.is(FHIR.Quantity)", "Boolean", "true"},
		{"Observation.value as string", "", ""},
		{"Observation.component.value as Quantity", "Quantity,Quantity", ""},
		{"Observation.component.value.ofType(string)", "string", "x"},
		{"Observation.effective", "dateTime", "2020-03-04T10:00:00+01:00"},
		{"Observation.effective > @2020-01-01", "Boolean", "true"},
		{"Observation.subject.where(resolve() is Patient)", "Reference", `{"reference": "Patient/123"}`},
		{"Observation.subject.resolve().id", "id", "123"},
		{"Observation.performer.resolve().ofType(Practitioner).name.family", "string", "Doe"},
		{"Observation.performer.where(resolve() is Organization).count()", "Integer", "1"},
		{"Observation.performer[1].resolve().id", "id", "org-1"},
		{"Observation.performer.count()", "Integer", "3"},
		{"Observation.status | Observation.code.text", "code,string", "final,Body weight"},
		{"Resource.id", "id", "o1"},
		{"DomainResource.contained.id", "id", "p1"},
		{"Patient.name | Observation.status", "code", "final"},
		{"Observation.identifier.value.extension('http://e').value", "boolean", "true"},
		{"Observation.identifier.value.hasValue()", "Boolean", "true"},
		{"Observation.value.value + 1", "Decimal", "186.10"},
		{"Observation.value = 185.1 '[lb_av]'", "Boolean", "true"},
		{"Observation.value > 80 'kg'", "Boolean", "true"},
		{"%resource.id", "id", "o1"},
		{"today() + 1 'day' > today()", "Boolean", "true"},
		{"@2020-01 + 1 month", "Date", "2020-02"},
		{"@2020-01-31 + 1 month", "Date", "2020-02-29"},
		{"Observation.note.text.first() & '!'", "String", "n1!"},
		{"2.power(3)", "Integer", "8"},
		{"9223372036854775806 + 1", "Integer", "9223372036854775807"},
		{"-9223372036854775807 - 1", "Integer", "-9223372036854775808"},
		{"3037000499 * 3037000499", "Integer", "9223372030926249001"},
		{"2.5.power(2)", "Decimal", "6.25"},
		{"2.power(-1)", "Decimal", "0.5"},
		{"(-1).power(0.5)", "", ""},
		{"10.power(30)", "", ""},
		{"4.power(0.5)", "Decimal", "2"},
		{"0.power(-1)", "", ""},
		// duplicates removal on collections large enough to be hashed
		{"'1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,1,2'.split(',').distinct().count()", "Integer", "40"},
		{"'1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40'.split(',').select($this.toInteger()).union(1.0 | 2.50 | 41).count()", "Integer", "42"},
		{"'1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40'.split(',').select(@2012-04-15T15:00:00+02:00).union(@2012-04-15T16:00:00+03:00 | @2012-04-15T16:00:00).count()", "Integer", "2"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			e, err := fhirpath.Compile(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.Evaluate(context.Background(), root, nil)
			if err != nil {
				t.Fatal(err)
			}
			var types, texts []string
			for _, v := range got {
				types = append(types, v.TypeName())
				texts = append(texts, fhirpath.Format(v))
			}
			if g := strings.Join(types, ","); g != tc.types {
				t.Errorf("types %q, want %q (%v)", g, tc.types, texts)
			}
			if tc.text != "" {
				if g := strings.Join(texts, ","); g != tc.text {
					t.Errorf("values %q, want %q", g, tc.text)
				}
			}
		})
	}
}

func TestNodeAccessors(t *testing.T) {
	root := parseObs(t)
	e := fhirpath.MustCompile("Observation.value")
	got, err := e.Evaluate(context.Background(), root, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
	n := got[0].(*fhirpath.Node)
	if n.Name() != "valueQuantity" || n.ElementName() != "value" {
		t.Errorf("names %q %q", n.Name(), n.ElementName())
	}
	m, ok := n.JSON().(map[string]any)
	if !ok || m["value"] != json.Number("185.10") || m["code"] != "[lb_av]" {
		t.Errorf("JSON() = %#v", n.JSON())
	}
	v := n.Child("value")
	if p, ok := v.Primitive(); !ok || p != json.Number("185.10") {
		t.Errorf("Primitive() = %v", p)
	}
	sv, ok := v.System()
	if d, isDec := sv.(fhirpath.Decimal); !ok || !isDec || d.String() != "185.10" {
		t.Errorf("System() = %v", sv)
	}
	eff := root.Child("effective")
	dt, ok := eff.System()
	if d, isDT := dt.(fhirpath.DateTime); !ok || !isDT || d.Precision() != fhirpath.PrecSecond ||
		!d.Time().Equal(time.Date(2020, 3, 4, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("effective System() = %v", dt)
	}
}

func TestEnv(t *testing.T) {
	root := parseObs(t)
	now := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
	var traced []string
	env := &fhirpath.Env{
		Now:  now,
		Vars: map[string]fhirpath.Collection{"limit": {fhirpath.Integer(2)}},
		Resolver: func(_ context.Context, ref string, from *fhirpath.Node) (*fhirpath.Node, error) {
			if ref == "Patient/123" {
				return fhirpath.ParseResource(from.Definitions(), []byte(`{"resourceType":"Patient","id":"123","gender":"female"}`))
			}
			return nil, nil
		},
		Trace: func(name string, c fhirpath.Collection) { traced = append(traced, name) },
	}
	tests := map[string]string{
		"today()":                                    "2024-02-29",
		"today() + 1 year":                           "2025-02-28",
		"Observation.subject.resolve().gender":       "female",
		"Observation.component.take(%limit).count()": "2",
		"Observation.status.trace('s')":              "final",
	}
	for src, want := range tests {
		got, err := fhirpath.MustCompile(src).Evaluate(context.Background(), root, env)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		if len(got) != 1 || fhirpath.Format(got[0]) != want {
			t.Errorf("%s = %v, want %s", src, got, want)
		}
	}
	if len(traced) != 1 || traced[0] != "s" {
		t.Errorf("trace: %v", traced)
	}
	if _, err := fhirpath.MustCompile("%undefined").Evaluate(context.Background(), root, env); !errors.Is(err, fhirpath.ErrEval) {
		t.Errorf("undefined variable: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := fhirpath.MustCompile("Observation.id").Evaluate(ctx, root, env); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
}

func TestBundleResolve(t *testing.T) {
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:pat-1","resource":{"resourceType":"Patient","id":"pat-1","gender":"male"}},
	 {"fullUrl":"urn:uuid:obs-1","resource":{"resourceType":"Observation","status":"final","subject":{"reference":"urn:uuid:pat-1"}}}]}`
	root, err := fhirpath.ParseResource(loadDefs(t), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := fhirpath.MustCompile("Bundle.entry.resource.ofType(Observation).subject.resolve().gender").Evaluate(context.Background(), root, nil)
	if err != nil || len(got) != 1 || fhirpath.Format(got[0]) != "male" {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestIntegerOverflow(t *testing.T) {
	for _, src := range []string{"9223372036854775807 + 1", "-9223372036854775807 - 2", "3037000500 * 3037000500", "(-9223372036854775807 - 1) * -1"} {
		if _, err := fhirpath.MustCompile(src).Evaluate(context.Background(), nil, nil); !errors.Is(err, fhirpath.ErrEval) {
			t.Errorf("%s: err = %v, want ErrEval", src, err)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []string{
		"", "Patient.", "Patient.name.where(", "1 +", "'unterminated", "Patient.foo(1)",
		"Patient.name.where()", "@20x", "$that", "(1", "a b", strings.Repeat("(", 500) + "1" + strings.Repeat(")", 500),
	}
	for _, src := range tests {
		_, err := fhirpath.Compile(src)
		var se *fhirpath.SyntaxError
		if !errors.As(err, &se) || !errors.Is(err, fhirpath.ErrSyntax) {
			t.Errorf("Compile(%.40q) = %v, want a SyntaxError", src, err)
		}
	}
}

func TestParseResourceErrors(t *testing.T) {
	for _, body := range []string{``, `{}`, `[1]`, `{"resourceType":"Patient",}`, `{"resourceType":"Patient","a":[1,}`, `{"resourceType":"Patient","a":tru}`} {
		if _, err := fhirpath.ParseResource(loadDefs(t), []byte(body)); err == nil {
			t.Errorf("ParseResource(%q) succeeded", body)
		}
	}
}

func TestQuantityCanonical(t *testing.T) {
	tests := []struct {
		q    fhirpath.Quantity
		want string
		ok   bool
	}{
		{fhirpath.Quantity{Value: mustDec(t, "185"), Unit: "[lb_av]"}, "83914.58845 'g'", true},
		{fhirpath.Quantity{Value: mustDec(t, "5"), Unit: "mg/dL"}, "50 'g.m-3'", true},
		{fhirpath.Quantity{Value: mustDec(t, "120"), Unit: "mm[Hg]"}, "15998686.4898 'g.m-1.s-2'", true},
		{fhirpath.Quantity{Value: mustDec(t, "2"), Unit: "week", Calendar: true}, "1209600 's'", true},
		{fhirpath.Quantity{Value: mustDec(t, "1.5"), Unit: "%"}, "0.015 '1'", true},
		{fhirpath.Quantity{Value: mustDec(t, "1"), Unit: "month", Calendar: true}, "", false},
		{fhirpath.Quantity{Value: mustDec(t, "37"), Unit: "Cel"}, "", false},
		{fhirpath.Quantity{Value: mustDec(t, "1"), Unit: "tablets"}, "", false},
	}
	for _, tc := range tests {
		got, ok := tc.q.Canonical()
		if ok != tc.ok || (ok && got.String() != tc.want) {
			t.Errorf("%s.Canonical() = %s, %v; want %s, %v", tc.q, got, ok, tc.want, tc.ok)
		}
	}
}

func mustDec(t *testing.T, s string) fhirpath.Decimal {
	t.Helper()
	d, err := fhirpath.ParseDecimal(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestEvaluateStopsWhenContextEnds cancels the context from inside an
// evaluation (in the resolver) and expects the quadratic work that follows
// to stop with the context's error.
func TestEvaluateStopsWhenContextEnds(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/1"},"note":[`)
	for i := 0; i < 3000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"text":"n%d"}`, i)
	}
	b.WriteString(`]}`)
	root, err := fhirpath.ParseResource(loadDefs(t), []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := &fhirpath.Env{Resolver: func(context.Context, string, *fhirpath.Node) (*fhirpath.Node, error) {
		cancel()
		return nil, nil
	}}
	e := fhirpath.MustCompile("Observation.subject.resolve().count() + Observation.note.text.distinct().count()")
	if _, err := e.Evaluate(ctx, root, env); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	got, err := e.Evaluate(context.Background(), root, nil)
	if err != nil || len(got) != 1 || fhirpath.Format(got[0]) != "3001" {
		t.Fatalf("without cancel: %v, %v", got, err)
	}
}

// TestConcurrentEvaluate evaluates shared compiled expressions on a shared
// tree from several goroutines (run with -race) and checks every result.
func TestConcurrentEvaluate(t *testing.T) {
	root := parseObs(t)
	srcs := []string{
		"Observation.subject.where(resolve() is Patient)",
		"(Observation.value as Quantity).value",
		"Observation.code.coding.where(system = %loinc).code",
		"Observation.component.value.ofType(Quantity).distinct()",
		"Observation.effective > @2020",
		"descendants().count()",
	}
	exprs := make([]*fhirpath.Expression, len(srcs))
	want := make([]string, len(srcs))
	for i, s := range srcs {
		exprs[i] = fhirpath.MustCompile(s)
		got, err := exprs[i].Evaluate(context.Background(), root, nil)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = formatColl(got)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 50; k++ {
				for i, e := range exprs {
					got, err := e.Evaluate(context.Background(), root, nil)
					if err != nil || formatColl(got) != want[i] {
						errs <- fmt.Sprintf("%s: %s, %v", srcs[i], formatColl(got), err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
