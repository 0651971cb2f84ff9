package search

import (
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary query strings to the parser: it must never
// panic, and whatever it accepts must render to a canonical form that
// parses again to the same canonical form.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"Patient|name=M%C3%BCller&gender:not=male,female&_count=10",
		"Observation|code=http://loinc.org|8480-6&value-quantity=lt60||mm[Hg]&date=ge2020-01-01T10:00:00%2B02:00",
		"Observation|subject:Patient.organization.name=Acme&_include:iterate=Observation:subject&_sort=-date,_id",
		"Patient|_has:Observation:patient:_has:AuditEvent:entity:agent=Practitioner/1&_list=42",
		"Observation|code-value-quantity=http://loinc.org|8480-6$gt100|http://unitsofmeasure.org|mm[Hg]",
		"|_type=Patient,Group&_tag=a%2Cb&_lastUpdated=ap2020",
		"Patient|identifier:of-type=http://x|MR|1&name:exact=a\\,b&birthdate=sa2019-02&_elements=name",
		"RiskAssessment|probability=ap1e2&_summary=count&_total=accurate",
		"CarePlan|instantiates-canonical=http://x/PlanDefinition/p|1.0&subject=https://regie.example/fhir/Patient/1",
		"ValueSet|url:below=http://x/&_revinclude=Provenance:target",
	} {
		f.Add(s)
	}
	defs := loadDefs(f)
	p := NewParser(defs, Config{BaseURL: "https://regie.example/fhir"})
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, in string) {
		typs, query, _ := strings.Cut(in, "|")
		var types []string
		if typs != "" {
			types = strings.Split(typs, ",")
		}
		ps, err := ParseParams(query)
		if err != nil {
			return
		}
		for _, strict := range []bool{false, true} {
			q, _, err := p.Parse(types, ps, Options{Strict: strict, Now: now})
			if err != nil {
				continue
			}
			c := Canonical(q)
			ps2, err := ParseParams(c)
			if err != nil {
				t.Fatalf("canonical %q does not split: %v", c, err)
			}
			q2, _, err := p.Parse(types, ps2, Options{Strict: strict, Now: now})
			if err != nil {
				t.Fatalf("canonical %q of %q does not parse: %v", c, query, err)
			}
			if c2 := Canonical(q2); c2 != c {
				t.Fatalf("canonical form not stable for %q:\n%s\n%s", query, c, c2)
			}
		}
	})
}
