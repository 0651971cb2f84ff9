// Package fhirpath is a FHIRPath engine (the normative N1 release, as used by
// FHIR R4) over resource JSON, typed by the R4 model in fhir.Definitions.
//
// Compile an expression once and evaluate it many times, concurrently:
//
//	defs, _ := fhir.LoadDefinitions(profiles.R4())
//	expr := fhirpath.MustCompile("Observation.subject.where(resolve() is Patient)")
//	root, err := fhirpath.ParseResource(defs, body) // parse once per resource
//	if err != nil { ... }
//	items, err := expr.Evaluate(ctx, root, nil)
//	for _, it := range items {
//		n, ok := it.(*fhirpath.Node)   // an element of the resource
//		if !ok { continue }             // or a computed System value
//		_ = n.TypeName()                // "Reference"
//		_ = n.ChildText("reference")    // "Patient/123"
//		_ = n.JSON()                    // map[string]any{"reference": "Patient/123"}
//	}
//
// # Results
//
// A Collection holds Values. A *Node is an element of the parsed resource;
// TypeName gives its FHIR type ("CodeableConcept", "Identifier", "Reference",
// "HumanName", "Period", "Quantity", "Age", "date", "dateTime", "code",
// "string", "boolean", ...; for choice elements the concrete type, so
// Observation.value on valueQuantity is "Quantity"). Its data can be read by
// navigation (Children, Child, ChildText: zero-copy and fast), as raw JSON
// bytes (Raw) or as a decoded Go value (JSON: map[string]any, []any, string,
// json.Number, bool; numbers keep their text). A primitive node also gives
// its value as text (Text: "1.50", "2020-01"), as a Go value (Primitive:
// string, json.Number or bool) and as a FHIRPath System value (System: Date,
// DateTime with its precision, Decimal, ...). Primitives carry the id and
// extensions of their "_name" sibling. Computed results are System values:
// Boolean, String, Integer, Decimal (exact, with its precision), Date,
// DateTime, Time, Quantity and TypeInfo. Quantity.Canonical converts a
// quantity to UCUM base units for comparable index values.
//
// The tree shares memory with the body given to ParseResource (Raw returns
// slices of it), so the body must not be modified while the tree is in use.
//
// # Types
//
// Member navigation follows the model: a choice element is reached by its
// short name (Observation.value); its JSON name (Observation.valueQuantity)
// gives an empty result, as the specification requires. A path may start
// with the context's type name (Patient.name), or a base type of it
// (Resource.id, DomainResource.text);
// a type name that does not match gives an empty result, so that search
// expressions with several bases (AllergyIntolerance.patient |
// CarePlan.subject) work on every one of them. is tests a type or a subtype
// (Patient.gender is string is true); as and ofType on a primitive type
// require the exact type, on complex and resource types they accept
// subtypes. The operator form "x as T" filters each item; the function
// form x.as(T) requires at most one item, as the specification says.
// An unqualified type name means a System type when the item is a System
// value (1 is Integer) and a FHIR type when it is a node (Patient.active is
// boolean); FHIR.x and System.x qualify it explicitly.
//
// # Environment
//
// Env supplies %variables, a fixed now(), a trace sink and the resolver
// used by resolve(). %resource, %rootResource and %context default to the
// evaluated tree; %ucum, %sct, %loinc, %"vs-name" and %"ext-name" are built
// in. DefaultResolver does no I/O: contained references (#id) resolve inside
// the resource, references inside a Bundle resolve to entries by fullUrl or
// Type/id, and any other "Type/id" (relative, or an absolute URL ending in
// Type/id) resolves to a stand-in node of that resource type that has only
// its id, so that "subject.where(resolve() is Patient)" works.
//
// # Limits and deviations
//
// Expressions are limited to 64 KiB and a nesting depth of 200; resource JSON
// to a nesting depth of 200. Evaluation checks ctx regularly. Division keeps
// 16 fractional digits; exp, ln, log, sqrt and non-integer power go through
// float64. Unit conversion knows the common UCUM units (mass, length,
// volume, time, pressure, amount, their prefixes, products, quotients and
// powers); year and month calendar durations are not comparable with UCUM
// 'a' and 'mo', as the specification requires. memberOf, subsumes,
// subsumedBy, elementDefinition and slice report ErrUnsupported;
// conformsTo knows only the core StructureDefinitions; htmlChecks is always
// true because narrative is checked by the validator on write. By default a
// name the model does not define gives an empty result; Env.Strict makes it
// an error ("Patient.name.given1", "Encounter.id" on a Patient,
// "(Observation.value as Period).unit", "children().first()"), checked at
// run time. Checks that need static typing of the whole expression are not
// done.
package fhirpath
