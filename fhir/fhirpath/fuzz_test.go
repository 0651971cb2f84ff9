package fhirpath_test

import (
	"context"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"regie/fhir/fhirpath"
)

// suiteExpressions returns the expressions of the official suite, as fuzz seeds.
func suiteExpressions(f *testing.F) []string {
	f.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "suite", "tests-fhir-r4.xml"))
	if err != nil {
		f.Fatal(err)
	}
	var s suiteXML
	if err := xml.Unmarshal(b, &s); err != nil {
		f.Fatal(err)
	}
	var out []string
	for _, g := range s.Groups {
		for _, tc := range g.Tests {
			out = append(out, tc.Expr.Text)
		}
	}
	return out
}

func FuzzCompile(f *testing.F) {
	for _, s := range suiteExpressions(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := fhirpath.Compile(src)
		if err != nil {
			var se *fhirpath.SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Compile(%q): error %v is not a SyntaxError", src, err)
			}
			if se.Pos < 0 || se.Pos > len(src) {
				t.Fatalf("Compile(%q): position %d out of range", src, se.Pos)
			}
			return
		}
		if e.String() != src {
			t.Fatalf("String() = %q", e.String())
		}
	})
}

// FuzzEvaluate compiles and evaluates arbitrary expressions on a fixed
// Patient; evaluation may fail but must not panic or hang.
func FuzzEvaluate(f *testing.F) {
	for _, s := range suiteExpressions(f) {
		f.Add(s)
	}
	body, err := os.ReadFile(filepath.Join("testdata", "suite", "input", "patient-example.json"))
	if err != nil {
		f.Fatal(err)
	}
	root, err := fhirpath.ParseResource(loadDefs(f), body)
	if err != nil {
		f.Fatal(err)
	}
	env := &fhirpath.Env{Now: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := fhirpath.Compile(src)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _ = e.Evaluate(ctx, root, env)
	})
}

// FuzzParseResource reads arbitrary JSON as a resource and evaluates a few
// expressions on what it accepts.
func FuzzParseResource(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "suite", "input", "*.json"))
	for _, fn := range files {
		b, err := os.ReadFile(fn)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	defs := loadDefs(f)
	exprs := []*fhirpath.Expression{
		fhirpath.MustCompile("descendants().count()"),
		fhirpath.MustCompile("name.given.first() | identifier.value | (value as Quantity) | extension.value"),
		fhirpath.MustCompile("descendants().where($this is Reference).resolve()"),
		fhirpath.MustCompile("descendants().ofType(dateTime) > @2000"),
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		root, err := fhirpath.ParseResource(defs, body)
		if err != nil {
			return
		}
		for _, e := range exprs {
			_, _ = e.Evaluate(context.Background(), root, nil)
		}
		_ = root.JSON()
	})
}
