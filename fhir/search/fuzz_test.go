package search

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"regie/fhir"
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

// FuzzIndex feeds arbitrary resource JSON to the indexer: it must never
// panic, and the entries it returns must be well formed.
func FuzzIndex(f *testing.F) {
	b, err := os.ReadFile(filepath.Join(datasetDir, "resources.json"))
	if err != nil {
		f.Fatal(err)
	}
	var res []json.RawMessage
	if err := json.Unmarshal(b, &res); err != nil {
		f.Fatal(err)
	}
	for _, r := range res {
		f.Add([]byte(r))
	}
	f.Add([]byte(`{"resourceType":"Observation","valueQuantity":{"value":1e400,"code":"mg/dL","system":"http://unitsofmeasure.org","comparator":">"},"effectivePeriod":{"start":"9999-12-31T23:59:59.999999999+14:00"}}`))
	f.Add([]byte(`{"resourceType":"Patient","deceasedDateTime":"0001","name":[{"given":["\u0301"]}],"link":[{"other":{"reference":"Patient/a/_history/"}}]}`))
	ix, err := NewIndexer(loadDefs(f), IndexerConfig{BaseURL: "https://regie.example/fhir"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rt, _, err := fhir.Header(body)
		if err != nil || rt == "" {
			return
		}
		es, err := ix.Index(rt, body)
		if err != nil {
			return
		}
		for _, e := range es {
			if e.Param == "" || e.Type == "" {
				t.Fatalf("entry without parameter or type: %+v", e)
			}
			if e.Type == fhir.ParamDate && e.Lo > e.Hi {
				t.Fatalf("empty date range: %+v", e)
			}
		}
	})
}
