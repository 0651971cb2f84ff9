// Package regie holds what belongs to the repository as a whole: the demo
// dossiers (testdata/demo) that `regie serve --dev` loads on an empty store,
// the people the development identity simulators offer, and the declarative
// access matrix the policy is tested against. The data is described in
// testdata/demo/README.md.
package regie

import "embed"

// Demo is the demo data: one FHIR R4 resource per file at
// testdata/demo/<Type>-<id>.json, written as of the reference date in
// testdata/demo/README.md, plus people.json (the simulators' demo people)
// and matrix.json (the access test matrix).
//
//go:embed testdata/demo
var Demo embed.FS
