package fhirpath_test

import (
	"context"
	"fmt"

	"regie/fhir"
	"regie/fhir/fhirpath"
	"regie/profiles"
)

func ExampleExpression_Evaluate() {
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		panic(err)
	}
	body := []byte(`{"resourceType":"Observation","status":"final",
		"code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},
		"subject":{"reference":"Patient/123"},
		"effectiveDateTime":"2020-03-04",
		"valueQuantity":{"value":72.50,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}`)
	root, err := fhirpath.ParseResource(defs, body) // once per resource
	if err != nil {
		panic(err)
	}
	for _, src := range []string{
		"Observation.subject.where(resolve() is Patient)",
		"Observation.code.coding",
		"(Observation.value as Quantity)",
		"Observation.effective",
		"Observation.value > 70 'kg'",
	} {
		items, err := fhirpath.MustCompile(src).Evaluate(context.Background(), root, nil)
		if err != nil {
			panic(err)
		}
		for _, it := range items {
			switch v := it.(type) {
			case *fhirpath.Node:
				fmt.Printf("%s: %s", src, v.TypeName())
				switch v.TypeName() {
				case "Reference":
					fmt.Printf(" %s", v.ChildText("reference"))
				case "Coding":
					fmt.Printf(" %s|%s", v.ChildText("system"), v.ChildText("code"))
				case "Quantity":
					q, _ := v.System()
					c, _ := q.(fhirpath.Quantity).Canonical()
					fmt.Printf(" %s = %s", q, c)
				case "dateTime":
					d, _ := v.System()
					lo, hi := d.(fhirpath.DateTime).Range()
					fmt.Printf(" [%s, %s)", lo.Format("2006-01-02"), hi.Format("2006-01-02"))
				}
				fmt.Println()
			default:
				fmt.Printf("%s: %s %s\n", src, v.TypeName(), fhirpath.Format(v))
			}
		}
	}
	// Output:
	// Observation.subject.where(resolve() is Patient): Reference Patient/123
	// Observation.code.coding: Coding http://loinc.org|29463-7
	// (Observation.value as Quantity): Quantity 72.50 'kg' = 72500 'g'
	// Observation.effective: dateTime [2020-03-04, 2020-03-05)
	// Observation.value > 70 'kg': Boolean true
}
