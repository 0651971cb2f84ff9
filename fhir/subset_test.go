package fhir_test

import (
	"encoding/json"
	"testing"

	"regie/fhir"
)

func TestSubset(t *testing.T) {
	d := loadDefs(t)
	v, err := fhir.NewValidator(d)
	if err != nil {
		t.Fatal(err)
	}
	in := `{"resourceType":"Patient","id":"p","meta":{"versionId":"2","tag":[{"code":"x"}]},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},"active":true,"name":[{"family":"F"}],"birthDate":"1980-01-01","_birthDate":{"extension":[{"url":"http://example.org/x","valueString":"y"}]},"maritalStatus":{"text":"M"},"contact":[{"name":{"family":"C"},"gender":"male"}],"communication":[{"language":{"text":"nl"},"preferred":true}],"deceasedBoolean":false}`
	cases := []struct {
		name     string
		mode     fhir.SubsetMode
		elements []string
		want     []string
		gone     []string
	}{
		{"summary", fhir.SubsetSummary, nil, []string{"id", "meta", "active", "name", "birthDate", "_birthDate", "deceasedBoolean"}, []string{"text", "maritalStatus", "contact", "communication"}},
		{"text", fhir.SubsetText, nil, []string{"id", "meta", "text"}, []string{"active", "name", "birthDate"}},
		{"data", fhir.SubsetData, nil, []string{"id", "meta", "active", "name", "contact", "communication"}, []string{"text"}},
		{"elements", fhir.SubsetElements, []string{"name", "deceased", "birthDate"}, []string{"id", "meta", "name", "deceasedBoolean", "birthDate", "_birthDate"}, []string{"text", "active", "contact"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := d.Subset([]byte(in), c.mode, c.elements)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("invalid JSON %s: %v", out, err)
			}
			for _, k := range c.want {
				if _, ok := m[k]; !ok {
					t.Errorf("%s missing: %s", k, out)
				}
			}
			for _, k := range c.gone {
				if _, ok := m[k]; ok {
					t.Errorf("%s kept: %s", k, out)
				}
			}
			tags := m["meta"].(map[string]any)["tag"].([]any)
			if len(tags) != 2 || tags[1].(map[string]any)["code"] != "SUBSETTED" {
				t.Errorf("tags %v", tags)
			}
			if _, err := v.Validate(out); err != nil {
				t.Errorf("subset is not valid: %v", err)
			}
		})
	}
	// a backbone element keeps only its summary children
	q := `{"resourceType":"Questionnaire","status":"active","item":[{"linkId":"1","type":"group","text":"T","item":[{"linkId":"1.1","type":"string","text":"Q"}]}]}`
	out, err := d.Subset([]byte(q), fhir.SubsetSummary, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"resourceType":"Questionnaire","status":"active","meta":{"tag":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"Resource encoded in summary mode"}]}}` {
		t.Errorf("Questionnaire summary: %s", out)
	}
}
