package embedded_test

import (
	"errors"
	"strings"
	"testing"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// What the store cannot answer is an error wrapping storage.ErrUnsupported
// that names it, never a wrong answer.
func TestSearchUnsupported(t *testing.T) {
	s := open(t)
	if _, err := s.Write(t0, &storage.Write{Type: "Observation", ID: "o1", Body: []byte(`{"resourceType":"Observation"}`),
		Index: []search.Entry{{Param: "code", Type: fhir.ParamToken, System: "http://loinc.org", Code: "1"}}}); err != nil {
		t.Fatal(err)
	}
	tok := func(mod string) *search.Match {
		return &search.Match{Param: "code", Type: fhir.ParamToken, Modifier: mod, Values: []search.Value{{AnySystem: true, Code: "1"}}}
	}
	tests := []struct {
		name string
		q    *search.Query
		want string
	}{
		{"token :in", &search.Query{Types: []string{"Observation"}, Where: tok("in")}, ":in"},
		{"token :below, negated", &search.Query{Types: []string{"Observation"}, Where: search.Not{X: tok("below")}}, ":below"},
		{"reference :above", &search.Query{Types: []string{"Observation"}, Where: &search.Match{Param: "subject", Type: fhir.ParamReference,
			Modifier: "above", Values: []search.Value{{RefType: "Patient", RefID: "p"}}}}, ":above"},
		{"special", &search.Query{Types: []string{"Location"}, Where: &search.Match{Param: "near", Type: fhir.ParamSpecial,
			Values: []search.Value{{Str: "1|2"}}}}, "special"},
		{"in a constraint", &search.Query{Types: []string{"Observation"}, Constraint: tok("not-in")}, ":not-in"},
		{"_sort on a composite", &search.Query{Types: []string{"Observation"}, Sort: []search.Sort{{Param: "code-value-quantity",
			Type: fhir.ParamComposite}}}, "_sort"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Search(t0, tc.q)
			if !errors.Is(err, storage.ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an ErrUnsupported naming %q", err, tc.want)
			}
		})
	}
}
