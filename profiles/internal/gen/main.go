// Command gen trims the official FHIR R4 core definitions package into the
// data files that Regie embeds in profiles/r4: the type model (resource and
// data types with their elements), the search parameters and the
// compartment definitions.
//
// Usage:
//
//	go run ./profiles/internal/gen -src ../shared/fhir/definitions/hl7.fhir.r4.core-4.0.1 -out profiles/r4
//
// The output is deterministic: running it twice on the same input writes the
// same bytes, so a diff shows exactly what a definitions update changes.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	src := flag.String("src", "../shared/fhir/definitions/hl7.fhir.r4.core-4.0.1", "directory of the unpacked hl7.fhir.r4.core package")
	out := flag.String("out", "profiles/r4", "output directory")
	flag.Parse()
	if err := run(*src, *out); err != nil {
		log.Fatal(err)
	}
}

func run(src, out string) error {
	types, err := genTypes(src)
	if err != nil {
		return err
	}
	params, err := genSearchParams(src)
	if err != nil {
		return err
	}
	comps, err := genCompartments(src)
	if err != nil {
		return err
	}
	for name, v := range map[string]any{
		"types.json":             types,
		"search-parameters.json": params,
		"compartments.json":      comps,
	} {
		if err := writeJSON(filepath.Join(out, name), v); err != nil {
			return err
		}
	}
	return nil
}

func writeJSON(path string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func readAll(src, prefix string) ([]map[string]json.RawMessage, error) {
	files, err := filepath.Glob(filepath.Join(src, prefix+"-*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var res []map[string]json.RawMessage
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		res = append(res, m)
	}
	return res, nil
}

func str(m map[string]json.RawMessage, k string) string {
	var s string
	_ = json.Unmarshal(m[k], &s)
	return s
}

// Type is one resource or data type.
type Type struct {
	Name     string     `json:"name"`
	Kind     string     `json:"kind"` // resource, complex-type, primitive-type
	Base     string     `json:"base,omitempty"`
	Abstract bool       `json:"abstract,omitempty"`
	Elements []*Element `json:"elements,omitempty"`
}

// Element is one element of a type, with its full path.
type Element struct {
	Path     string   `json:"path"`
	Types    []string `json:"types,omitempty"`
	Targets  []string `json:"targets,omitempty"` // reference and canonical target types
	Ref      string   `json:"ref,omitempty"`     // contentReference, without '#'
	Min      int      `json:"min,omitempty"`
	Max      string   `json:"max"`
	Summary  bool     `json:"summary,omitempty"`
	Modifier bool     `json:"modifier,omitempty"`
}

type sdElement struct {
	Path             string `json:"path"`
	Min              int    `json:"min"`
	Max              string `json:"max"`
	IsSummary        bool   `json:"isSummary"`
	IsModifier       bool   `json:"isModifier"`
	ContentReference string `json:"contentReference"`
	Type             []struct {
		Code      string `json:"code"`
		Extension []struct {
			URL      string `json:"url"`
			ValueURL string `json:"valueUrl"`
		} `json:"extension"`
		TargetProfile []string `json:"targetProfile"`
	} `json:"type"`
}

const sdBase = "http://hl7.org/fhir/StructureDefinition/"

func genTypes(src string) ([]*Type, error) {
	sds, err := readAll(src, "StructureDefinition")
	if err != nil {
		return nil, err
	}
	var types []*Type
	for _, sd := range sds {
		kind, deriv, name, url := str(sd, "kind"), str(sd, "derivation"), str(sd, "name"), str(sd, "url")
		typ := str(sd, "type")
		if url != sdBase+name && url != sdBase+typ {
			continue // a profile or extension, not a core type
		}
		switch kind {
		case "resource", "complex-type", "primitive-type":
		default:
			continue
		}
		if deriv == "constraint" && (kind != "complex-type" || typ == "Extension") {
			continue
		}
		var abstract bool
		_ = json.Unmarshal(sd["abstract"], &abstract)
		t := &Type{Name: name, Kind: kind, Abstract: abstract}
		if b := str(sd, "baseDefinition"); b != "" {
			t.Base = strings.TrimPrefix(b, sdBase)
		}
		var snap struct {
			Element []sdElement `json:"element"`
		}
		if err := json.Unmarshal(sd["snapshot"], &snap); err != nil {
			return nil, fmt.Errorf("%s: snapshot: %w", name, err)
		}
		for i, e := range snap.Element {
			if i == 0 {
				continue // the type itself
			}
			el := &Element{Path: e.Path, Min: e.Min, Max: e.Max, Summary: e.IsSummary, Modifier: e.IsModifier}
			if deriv == "constraint" {
				// a constrained data type (SimpleQuantity, Age, ...) keeps the
				// element paths of its base type
				el.Path = typ + strings.TrimPrefix(e.Path, strings.SplitN(e.Path, ".", 2)[0])
			}
			if e.ContentReference != "" {
				el.Ref = strings.TrimPrefix(e.ContentReference, "#")
			}
			for _, ty := range e.Type {
				code := ty.Code
				if strings.HasPrefix(code, "http://hl7.org/fhirpath/System.") {
					code = "System." + strings.TrimPrefix(code, "http://hl7.org/fhirpath/System.")
					for _, x := range ty.Extension {
						if x.URL == "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type" {
							code = x.ValueURL
						}
					}
				}
				el.Types = append(el.Types, code)
				for _, p := range ty.TargetProfile {
					el.Targets = append(el.Targets, strings.TrimPrefix(p, sdBase))
				}
			}
			t.Elements = append(t.Elements, el)
		}
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return types[i].Name < types[j].Name })
	return types, nil
}

// SearchParam is a trimmed SearchParameter.
type SearchParam struct {
	URL        string      `json:"url"`
	Code       string      `json:"code"`
	Base       []string    `json:"base"`
	Type       string      `json:"type"`
	Expression string      `json:"expression,omitempty"`
	Target     []string    `json:"target,omitempty"`
	Modifier   []string    `json:"modifier,omitempty"`
	Comparator []string    `json:"comparator,omitempty"`
	Chain      []string    `json:"chain,omitempty"`
	Component  []Component `json:"component,omitempty"`
}

// Component is one part of a composite search parameter.
type Component struct {
	Definition string `json:"definition"`
	Expression string `json:"expression"`
}

func genSearchParams(src string) ([]*SearchParam, error) {
	raw, err := readAll(src, "SearchParameter")
	if err != nil {
		return nil, err
	}
	var res []*SearchParam
	for _, m := range raw {
		b, _ := json.Marshal(m)
		var p SearchParam
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, err
		}
		res = append(res, &p)
	}
	sort.Slice(res, func(i, j int) bool { return res[i].URL < res[j].URL })
	return res, nil
}

// Compartment is a trimmed CompartmentDefinition.
type Compartment struct {
	Code     string                `json:"code"`
	Resource []CompartmentResource `json:"resource"`
}

// CompartmentResource lists the parameters that put a resource type in a compartment.
type CompartmentResource struct {
	Code  string   `json:"code"`
	Param []string `json:"param,omitempty"`
}

func genCompartments(src string) ([]*Compartment, error) {
	raw, err := readAll(src, "CompartmentDefinition")
	if err != nil {
		return nil, err
	}
	var res []*Compartment
	for _, m := range raw {
		b, _ := json.Marshal(m)
		var c Compartment
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, err
		}
		res = append(res, &c)
	}
	sort.Slice(res, func(i, j int) bool { return res[i].Code < res[j].Code })
	return res, nil
}
