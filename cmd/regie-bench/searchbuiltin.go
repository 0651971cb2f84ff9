package main

import (
	"encoding/json"
	"fmt"
)

// builtinBundles returns small Synthea-like transaction Bundles, used when
// the Synthea bundles are not available: per patient 24 Encounters, 8
// Conditions, 4 CarePlans and about 200 Observations over 12 LOINC codes of
// very different frequency, with the same reference structure as Synthea
// (urn:uuid: references; shared Practitioner and Organization).
func builtinBundles() ([][]byte, error) {
	type coding struct{ code, display, unit string }
	codes := []coding{
		{"8302-2", "Body Height", "cm"}, {"29463-7", "Body Weight", "kg"}, {"39156-5", "Body Mass Index", "kg/m2"},
		{"8867-4", "Heart rate", "/min"}, {"9279-1", "Respiratory rate", "/min"}, {"2339-0", "Glucose", "mg/dL"},
		{"2093-3", "Total Cholesterol", "mg/dL"}, {"2571-8", "Triglycerides", "mg/dL"}, {"4548-4", "Hemoglobin A1c", "%"},
		{"6690-2", "Leukocytes", "10*3/uL"}, {"33914-3", "eGFR", "mL/min/{1.73_m2}"}, {"14959-1", "Microalbumin", "mg/g"},
	}
	conditions := []coding{{"44054006", "Diabetes", ""}, {"38341003", "Hypertension", ""}, {"195662009", "Acute viral pharyngitis", ""},
		{"10509002", "Acute bronchitis", ""}, {"15777000", "Prediabetes", ""}, {"271737000", "Anemia", ""}}
	people := []struct{ given, family, gender, birth string }{
		{"Anna", "de Vries", "female", "1961-03-14"}, {"Bram", "Jansen", "male", "1975-11-02"},
		{"Carla", "Bakker", "female", "1948-07-21"}, {"Daan", "Visser", "male", "1990-01-30"},
	}
	uuid := func(b, kind, i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%04x%08x", b, kind, i) }
	var out [][]byte
	for b, p := range people {
		var entries []any
		add := func(typ, id string, res map[string]any) {
			res["resourceType"] = typ
			res["id"] = id
			entries = append(entries, map[string]any{"fullUrl": "urn:uuid:" + id, "resource": res,
				"request": map[string]any{"method": "POST", "url": typ}})
		}
		pract, org := uuid(0, 9, 1), uuid(0, 9, 2)
		add("Practitioner", pract, map[string]any{"identifier": []any{map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999999939"}},
			"name": []any{map[string]any{"family": "Huisarts", "given": []any{"Henk"}, "prefix": []any{"Dr."}}}})
		add("Organization", org, map[string]any{"name": "Wijkteam Centrum", "active": true})
		pid := uuid(b+1, 1, 0)
		add("Patient", pid, map[string]any{
			"identifier": []any{
				map[string]any{"system": "https://github.com/synthetichealth/synthea", "value": fmt.Sprintf("5a1f%04d-1c2d-4e5f-8a9b-0c1d2e3f4a5b", b)},
				map[string]any{"system": "http://hl7.org/fhir/sid/us-ssn", "value": fmt.Sprintf("999-%02d-%04d", 10+b, 1234+b)},
			},
			"name":      []any{map[string]any{"use": "official", "family": p.family, "given": []any{p.given}}},
			"gender":    p.gender,
			"birthDate": p.birth,
			"address":   []any{map[string]any{"city": "Utrecht", "country": "NL"}},
		})
		var encs []string
		for e := 0; e < 24; e++ {
			id := uuid(b+1, 2, e)
			encs = append(encs, id)
			day := fmt.Sprintf("%04d-%02d-%02dT09:00:00+00:00", 2000+e%20, 1+e%12, 1+(e*7)%28)
			add("Encounter", id, map[string]any{"status": "finished",
				"class":           map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
				"type":            []any{map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "185349003", "display": "Encounter for check up"}}}},
				"subject":         map[string]any{"reference": "urn:uuid:" + pid},
				"participant":     []any{map[string]any{"individual": map[string]any{"reference": "urn:uuid:" + pract}}},
				"period":          map[string]any{"start": day, "end": day},
				"serviceProvider": map[string]any{"reference": "urn:uuid:" + org}})
		}
		var conds []string
		for c := 0; c < 8; c++ {
			id := uuid(b+1, 3, c)
			conds = append(conds, id)
			cc := conditions[(b+c)%len(conditions)]
			add("Condition", id, map[string]any{
				"clinicalStatus": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}}},
				"code":           map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": cc.code, "display": cc.display}}, "text": cc.display},
				"subject":        map[string]any{"reference": "urn:uuid:" + pid},
				"encounter":      map[string]any{"reference": "urn:uuid:" + encs[c*3]},
				"onsetDateTime":  fmt.Sprintf("%04d-05-01T10:00:00+00:00", 2000+c*2)})
		}
		for c := 0; c < 4; c++ {
			add("CarePlan", uuid(b+1, 4, c), map[string]any{"status": "active", "intent": "order",
				"category":  []any{map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "698360004", "display": "Diabetes self management plan"}}}},
				"subject":   map[string]any{"reference": "urn:uuid:" + pid},
				"encounter": map[string]any{"reference": "urn:uuid:" + encs[c*5]},
				"period":    map[string]any{"start": fmt.Sprintf("%04d-06-01T10:00:00+00:00", 2002+c*3)},
				"addresses": []any{map[string]any{"reference": "urn:uuid:" + conds[c]}}})
		}
		o := 0
		for e, enc := range encs {
			// vital signs at every encounter, laboratory codes less often
			for ci, cd := range codes {
				if ci >= 5 && (e+ci+b)%(ci-3) != 0 {
					continue
				}
				day := fmt.Sprintf("%04d-%02d-%02dT09:00:00+00:00", 2000+e%20, 1+e%12, 1+(e*7)%28)
				add("Observation", uuid(b+1, 5, o), map[string]any{"status": "final",
					"category":          []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}}}},
					"code":              map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": cd.code, "display": cd.display}}, "text": cd.display},
					"subject":           map[string]any{"reference": "urn:uuid:" + pid},
					"encounter":         map[string]any{"reference": "urn:uuid:" + enc},
					"effectiveDateTime": day,
					"issued":            day,
					"valueQuantity":     map[string]any{"value": 50 + (o*37)%100, "unit": cd.unit, "system": "http://unitsofmeasure.org", "code": cd.unit}})
				o++
			}
		}
		bundle, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
		if err != nil {
			return nil, err
		}
		out = append(out, bundle)
	}
	return out, nil
}
