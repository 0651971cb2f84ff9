package fhir_test

import (
	"testing"

	"regie/fhir"
	"regie/profiles"
)

func loadDefs(t *testing.T) *fhir.Definitions {
	t.Helper()
	d, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDefinitions(t *testing.T) {
	d := loadDefs(t)
	if n := len(d.ResourceTypes()); n != 146 {
		t.Errorf("resource types: got %d, want 146 (R4 4.0.1)", n)
	}
	for _, rt := range []string{"Patient", "CarePlan", "Communication", "Consent", "DocumentReference", "AuditEvent", "Bundle", "Parameters", "Binary"} {
		if !d.IsResourceType(rt) {
			t.Errorf("%s is not a resource type", rt)
		}
	}
	for _, notRT := range []string{"Resource", "DomainResource", "HumanName", "string", "patient"} {
		if d.IsResourceType(notRT) {
			t.Errorf("%s is reported as a resource type", notRT)
		}
	}
	if !d.IsA("Patient", "DomainResource") || !d.IsA("Patient", "Resource") || d.IsA("Bundle", "DomainResource") {
		t.Error("IsA does not follow the base chain")
	}
	cases := []struct{ ctx, name, typ, next string }{
		{"Patient", "name", "HumanName", "HumanName"},
		{"Patient", "birthDate", "date", "date"},
		{"Patient", "deceasedBoolean", "boolean", "boolean"},
		{"Patient", "deceasedDateTime", "dateTime", "dateTime"},
		{"Patient", "contact", "BackboneElement", "Patient.contact"},
		{"Patient.contact", "name", "HumanName", "HumanName"},
		{"Observation", "valueQuantity", "Quantity", "Quantity"},
		{"Questionnaire.item", "item", "BackboneElement", "Questionnaire.item"},
		{"HumanName", "family", "string", "string"},
		{"Patient", "id", "string", "string"},
	}
	for _, c := range cases {
		ch, ok := d.Child(c.ctx, c.name)
		if !ok {
			t.Errorf("Child(%q, %q): not found", c.ctx, c.name)
			continue
		}
		if ch.Type != c.typ || ch.Context != c.next {
			t.Errorf("Child(%q, %q) = %s/%s, want %s/%s", c.ctx, c.name, ch.Type, ch.Context, c.typ, c.next)
		}
	}
	if _, ok := d.Child("Patient", "deceased"); ok {
		t.Error("a choice element is found without its type suffix")
	}
	p := d.SearchParam("Observation", "code")
	if p == nil || p.Type != fhir.ParamToken {
		t.Fatalf("Observation.code: %+v", p)
	}
	if d.SearchParam("Patient", "_id") == nil || d.SearchParam("Bundle", "_lastUpdated") == nil {
		t.Error("Resource-level parameters are not registered on every type")
	}
	if d.SearchParam("Bundle", "_text") != nil {
		t.Error("DomainResource parameter _text registered on Bundle, which is not a DomainResource")
	}
	if team := d.SearchParam("EpisodeOfCare", "team"); team == nil || team.Type != fhir.ParamReference {
		t.Errorf("Regie's own EpisodeOfCare.team parameter is missing: %+v", team)
	}
	// AuditEvent, written for every read, keeps only the parameters the
	// access log needs (and those every resource has)
	for code, want := range map[string]bool{"patient": true, "date": true, "agent": true, "entity": true, "type": true, "_tag": true, "site": false, "altid": false, "policy": false} {
		if got := d.SearchParam("AuditEvent", code) != nil; got != want {
			t.Errorf("AuditEvent search parameter %s present %v, want %v", code, got, want)
		}
	}
	pc := d.Compartment("Patient")
	if pc == nil {
		t.Fatal("no Patient compartment")
	}
	got := pc.Params("Observation")
	if len(got) != 2 || got[0] != "subject" || got[1] != "performer" {
		t.Errorf("Patient compartment params of Observation: %v", got)
	}
}
