package fhirpath_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"regie/fhir/fhirpath"
)

func readInput(b *testing.B, name string) []byte {
	b.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", "suite", "input", name))
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func BenchmarkParseResource(b *testing.B) {
	defs := loadDefs(b)
	for _, name := range []string{"patient-example.json", "observation-example.json", "questionnaire-example.json"} {
		body := readInput(b, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := fhirpath.ParseResource(defs, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	src := "Observation.subject.where(resolve() is Patient) | (Observation.value as Quantity) | Observation.code.coding.where(system = %loinc)"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fhirpath.Compile(src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEvaluate(b *testing.B) {
	defs := loadDefs(b)
	patient, err := fhirpath.ParseResource(defs, readInput(b, "patient-example.json"))
	if err != nil {
		b.Fatal(err)
	}
	obs, err := fhirpath.ParseResource(defs, readInput(b, "observation-example.json"))
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		root *fhirpath.Node
		src  string
		want int
	}{
		{"Patient.name", patient, "Patient.name", 3},
		{"Patient.name.given", patient, "Patient.name.given", 5},
		{"Observation.code", obs, "Observation.code", 1},
		{"subject.where(resolve() is Patient)", obs, "Observation.subject.where(resolve() is Patient)", 1},
		{"(Observation.value as Quantity)", obs, "(Observation.value as Quantity)", 1},
		{"clinical-date (multi-base)", obs, "AllergyIntolerance.recordedDate | CarePlan.period | CareTeam.period | ClinicalImpression.date | Composition.date | Consent.dateTime | DiagnosticReport.effective | Encounter.period | EpisodeOfCare.period | FamilyMemberHistory.date | Flag.period | Immunization.occurrence | List.date | Observation.effective | Procedure.performed | (RiskAssessment.occurrence as dateTime) | SupplyRequest.authoredOn", 1},
		{"Patient.telecom.where(system='phone')", patient, "Patient.telecom.where(system='phone')", 3},
		{"Patient.birthDate < today()", patient, "Patient.birthDate < today()", 1},
	}
	ctx := context.Background()
	env := &fhirpath.Env{}
	for _, c := range cases {
		e := fhirpath.MustCompile(c.src)
		res, err := e.Evaluate(ctx, c.root, env)
		if err != nil || len(res) != c.want {
			b.Fatalf("%s: %d items, %v; want %d", c.src, len(res), err, c.want)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Evaluate(ctx, c.root, env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEvaluateParallel evaluates one compiled expression from all
// procs at once on a shared tree.
func BenchmarkEvaluateParallel(b *testing.B) {
	defs := loadDefs(b)
	obs, err := fhirpath.ParseResource(defs, readInput(b, "observation-example.json"))
	if err != nil {
		b.Fatal(err)
	}
	e := fhirpath.MustCompile("Observation.subject.where(resolve() is Patient)")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.Evaluate(context.Background(), obs, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
