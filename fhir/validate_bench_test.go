package fhir_test

import (
	"testing"

	"regie/fhir"
	"regie/profiles"
)

const benchPatient = `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999911120"},{"system":"https://regie.nl/fhir/NamingSystem/client","value":"C-2026-000123"}],"active":true,"name":[{"use":"official","family":"van der Berg","given":["Johanna","Maria"],"prefix":["mevrouw"]},{"use":"usual","given":["Anneke"]}],"telecom":[{"system":"phone","value":"+31612345678","use":"mobile"},{"system":"email","value":"anneke.vanderberg@example.nl","use":"home"}],"gender":"female","birthDate":"1984-06-21","address":[{"use":"home","line":["Lange Voorhout 12"],"city":"Den Haag","postalCode":"2514 EE","country":"NL"}],"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M","display":"Married"}]},"contact":[{"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0131","code":"N","display":"Next-of-Kin"}]}],"name":{"family":"van der Berg","given":["Pieter"]},"telecom":[{"system":"phone","value":"+31687654321"}]}],"generalPractitioner":[{"reference":"Practitioner/huisarts-1","display":"dr. H. de Vries"}],"managingOrganization":{"reference":"Organization/wijkteam-centrum","display":"Wijkteam Centrum"},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Johanna Maria (Anneke) van der Berg</p></div>"}}`

func BenchmarkValidate(b *testing.B) {
	d, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		b.Fatal(err)
	}
	v, err := fhir.NewValidator(d)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPatient)))
	for i := 0; i < b.N; i++ {
		if _, err := v.Validate([]byte(benchPatient)); err != nil {
			b.Fatal(err)
		}
	}
}
