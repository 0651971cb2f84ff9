package fhirpath_test

import (
	"context"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"regie/fhir"
	"regie/fhir/fhirpath"
	"regie/profiles"
)

var (
	defsOnce sync.Once
	defsVal  *fhir.Definitions
	defsErr  error
)

func loadDefs(t testing.TB) *fhir.Definitions {
	t.Helper()
	defsOnce.Do(func() { defsVal, defsErr = fhir.LoadDefinitions(profiles.R4()) })
	if defsErr != nil {
		t.Fatal(defsErr)
	}
	return defsVal
}

type suiteXML struct {
	Groups []struct {
		Name  string `xml:"name,attr"`
		Tests []struct {
			Name      string `xml:"name,attr"`
			InputFile string `xml:"inputfile,attr"`
			Mode      string `xml:"mode,attr"`
			Predicate string `xml:"predicate,attr"`
			Expr      struct {
				Invalid string `xml:"invalid,attr"`
				Text    string `xml:",chardata"`
			} `xml:"expression"`
			Outputs []struct {
				Type string `xml:"type,attr"`
				Text string `xml:",chardata"`
			} `xml:"output"`
		} `xml:"test"`
	} `xml:"group"`
}

// suiteSkips lists the official test cases the engine does not pass, each
// with the feature and the reason.
var suiteSkips = map[string]string{
	// Static semantic checking outside strict mode.
	"testPolymorphicsB": "semantic check outside strict mode: Observation.valueQuantity gives an empty result (exists() is false, the output the case itself lists); rejecting it needs static typing",
	// Boundary cases whose expected values the specification does not derive.
	"LowBoundaryDecimal15":             "lowBoundary: a negative zero result (-0.0) cannot be represented by the exact decimal type",
	"HighBoundaryDecimal15":            "highBoundary: suite expects 0.0 for 0.0034 at precision 1, the spec's rule gives 0.1",
	"HighBoundaryDecimal16":            "highBoundary: suite expects 0.0 for -(0.0034 at precision 1), the spec's rule gives -0.1",
	"HighBoundaryDateTimeMillisecond1": "highBoundary: suite expects minute 00 for an hour-precision value; the spec's rule gives 08:59:59.999",
	"HighBoundaryDateTimeMillisecond3": "highBoundary: suite expects minute 00 for an hour-precision value; the spec's rule gives 08:59:59.999",
}

// minPassRate is the share of all suite cases that must pass.
const minPassRate = 0.95

func TestOfficialSuite(t *testing.T) {
	dir := filepath.Join("testdata", "suite")
	b, err := os.ReadFile(filepath.Join(dir, "tests-fhir-r4.xml"))
	if err != nil {
		t.Fatalf("suite missing: %v", err)
	}
	var s suiteXML
	if err := xml.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	defs := loadDefs(t)
	inputs := map[string]*fhirpath.Node{}
	input := func(name string) *fhirpath.Node {
		if name == "" {
			return nil
		}
		name = strings.TrimSuffix(name, ".xml")
		name = strings.TrimSuffix(name, ".json") + ".json"
		if n, ok := inputs[name]; ok {
			return n
		}
		body, err := os.ReadFile(filepath.Join(dir, "input", name))
		if err != nil {
			t.Fatalf("input %s: %v", name, err)
		}
		n, err := fhirpath.ParseResource(defs, body)
		if err != nil {
			t.Fatalf("input %s: %v", name, err)
		}
		inputs[name] = n
		return n
	}
	var passed, failed, skipped, total int
	seen := map[string]bool{}
	for _, g := range s.Groups {
		for _, tc := range g.Tests {
			if tc.Expr.Text == "" && len(tc.Outputs) == 0 {
				continue // the suite's notes element
			}
			total++
			name := tc.Name
			seen[name] = true
			if why, ok := suiteSkips[name]; ok {
				skipped++
				t.Logf("skip %s (%s): %s", name, tc.Expr.Text, why)
				continue
			}
			got, err := runCase(defs, input(tc.InputFile), tc.Expr.Text, tc.Predicate == "true", tc.Mode == "strict")
			var problem string
			switch {
			case tc.Expr.Invalid != "":
				if err == nil {
					problem = "expected an error, got " + formatColl(got)
				}
			case err != nil:
				problem = "error: " + err.Error()
			default:
				want := make([]wantItem, len(tc.Outputs))
				for i, o := range tc.Outputs {
					want[i] = wantItem{typ: o.Type, text: o.Text}
				}
				problem = compareResult(got, want)
			}
			if problem == "" {
				passed++
				continue
			}
			failed++
			t.Errorf("%s/%s: %s: %s", g.Name, name, strings.Join(strings.Fields(tc.Expr.Text), " "), problem)
		}
	}
	for name := range suiteSkips {
		if !seen[name] {
			t.Errorf("skip table names unknown case %s", name)
		}
	}
	rate := float64(passed) / float64(total)
	t.Logf("FHIRPath R4 suite: %d cases, %d passed, %d failed, %d skipped (%.1f%% passed)", total, passed, failed, skipped, 100*rate)
	if rate < minPassRate {
		t.Errorf("pass rate %.1f%% is below %.0f%%", 100*rate, 100*minPassRate)
	}
}

func runCase(defs *fhir.Definitions, root *fhirpath.Node, src string, predicate, strict bool) (fhirpath.Collection, error) {
	e, err := fhirpath.Compile(src)
	if err != nil {
		return nil, err
	}
	res, err := e.Evaluate(context.Background(), root, &fhirpath.Env{Definitions: defs, Strict: strict})
	if err != nil {
		return nil, err
	}
	if predicate {
		return fhirpath.Collection{fhirpath.Boolean(len(res) > 0)}, nil
	}
	return res, nil
}

type wantItem struct{ typ, text string }

func formatColl(c fhirpath.Collection) string {
	parts := make([]string, len(c))
	for i, v := range c {
		parts[i] = v.TypeName() + ":" + fhirpath.Format(v)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// systemTypeName maps System type names to the suite's output types.
var systemTypeName = map[string]string{
	"Boolean": "boolean", "String": "string", "Integer": "integer", "Decimal": "decimal",
	"Date": "date", "DateTime": "dateTime", "Time": "time", "Quantity": "Quantity",
}

func compareResult(got fhirpath.Collection, want []wantItem) string {
	if len(got) != len(want) {
		return "got " + formatColl(got) + ", want " + formatWant(want)
	}
	for i, w := range want {
		v := got[i]
		typ := v.TypeName()
		if v.Namespace() == "System" {
			typ = systemTypeName[typ]
		}
		if w.typ != "" && w.typ != typ {
			return "got " + formatColl(got) + ", want " + formatWant(want)
		}
		text := fhirpath.Format(v)
		wt := strings.TrimPrefix(w.text, "@")
		if _, ok := v.(fhirpath.Time); ok {
			wt = strings.TrimPrefix(wt, "T")
		}
		if w.typ == "decimal" {
			a, err1 := fhirpath.ParseDecimal(text)
			b, err2 := fhirpath.ParseDecimal(wt)
			if err1 == nil && err2 == nil && a.Cmp(b) == 0 {
				continue
			}
		}
		if text != wt {
			return "got " + formatColl(got) + ", want " + formatWant(want)
		}
	}
	return ""
}

func formatWant(w []wantItem) string {
	parts := make([]string, len(w))
	for i, x := range w {
		parts[i] = x.typ + ":" + x.text
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

var _ = errors.Is
