package fhir

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// Definitions is the registry of what Regie knows about FHIR R4: resource and
// data types with their elements, search parameters per resource type, and
// compartments. It is built once from package profiles and is read-only
// afterwards, so it is safe for concurrent use.
type Definitions struct {
	types         map[string]*TypeDef
	resourceTypes []string
	children      map[string]map[string]Child // context (type name or backbone path) -> JSON name -> child
	params        map[string]map[string]*SearchParam
	paramsByURL   map[string]*SearchParam
	compartments  map[string]*Compartment
}

// TypeKind says whether a type is a resource, a complex or a primitive data type.
type TypeKind string

// Type kinds.
const (
	KindResource  TypeKind = "resource"
	KindComplex   TypeKind = "complex-type"
	KindPrimitive TypeKind = "primitive-type"
)

// TypeDef is one resource or data type.
type TypeDef struct {
	Name     string        `json:"name"`
	Kind     TypeKind      `json:"kind"`
	Base     string        `json:"base,omitempty"`
	Abstract bool          `json:"abstract,omitempty"`
	Elements []*ElementDef `json:"elements,omitempty"`
}

// ElementDef is one element of a type, addressed by its full path
// ("Patient.contact.name", "Observation.value[x]").
type ElementDef struct {
	Path     string   `json:"path"`
	Types    []string `json:"types,omitempty"`
	Targets  []string `json:"targets,omitempty"`
	Ref      string   `json:"ref,omitempty"`
	Min      int      `json:"min,omitempty"`
	Max      string   `json:"max"`
	Summary  bool     `json:"summary,omitempty"`
	Modifier bool     `json:"modifier,omitempty"`
}

// Name returns the element's own name without the "[x]" of a choice.
func (e *ElementDef) Name() string {
	n := e.Path[strings.LastIndexByte(e.Path, '.')+1:]
	return strings.TrimSuffix(n, "[x]")
}

// Choice reports whether the element is a choice of types (value[x]).
func (e *ElementDef) Choice() bool { return strings.HasSuffix(e.Path, "[x]") }

// Many reports whether the element repeats.
func (e *ElementDef) Many() bool { return e.Max != "0" && e.Max != "1" }

// Child is an element as it appears in JSON under its context, with the
// concrete type the JSON name selects (for choices: "valueQuantity" selects
// Quantity).
type Child struct {
	Element *ElementDef
	// Type is the element's FHIR type: a type name such as "HumanName" or
	// "dateTime", or "BackboneElement"/"Element" for an inline structure.
	Type string
	// Context is what to pass to Definitions.Child for the element's own
	// children: the type name, or the element path of an inline structure.
	Context string
}

// ParamType is the type of a search parameter.
type ParamType string

// Search parameter types.
const (
	ParamNumber    ParamType = "number"
	ParamDate      ParamType = "date"
	ParamString    ParamType = "string"
	ParamToken     ParamType = "token"
	ParamReference ParamType = "reference"
	ParamComposite ParamType = "composite"
	ParamQuantity  ParamType = "quantity"
	ParamURI       ParamType = "uri"
	ParamSpecial   ParamType = "special"
)

// SearchParam is a search parameter definition.
type SearchParam struct {
	URL        string      `json:"url"`
	Code       string      `json:"code"`
	Base       []string    `json:"base"`
	Type       ParamType   `json:"type"`
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

// Compartment is a compartment definition: which parameters of which
// resource types link a resource to the compartment's owner.
type Compartment struct {
	Code     string                `json:"code"`
	Resource []CompartmentResource `json:"resource"`
	params   map[string][]string
}

// CompartmentResource lists the parameters that put a resource type in a compartment.
type CompartmentResource struct {
	Code  string   `json:"code"`
	Param []string `json:"param,omitempty"`
}

// Params returns the search parameters of resourceType that link it to the
// compartment (empty when the type is not in the compartment). The special
// value "{def}" means the owner resource itself.
func (c *Compartment) Params(resourceType string) []string { return c.params[resourceType] }

// Types returns the resource types that can be in the compartment, sorted.
func (c *Compartment) Types() []string {
	var ts []string
	for t := range c.params {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}

// LoadDefinitions reads types.json, search-parameters.json,
// compartments.json and, when present, local/search-parameters.json (Regie's
// own parameters) and local/search-subset.json (types limited to some of
// their parameters) from fsys (see package profiles).
func LoadDefinitions(fsys fs.FS) (*Definitions, error) {
	d := &Definitions{
		types:        map[string]*TypeDef{},
		children:     map[string]map[string]Child{},
		params:       map[string]map[string]*SearchParam{},
		paramsByURL:  map[string]*SearchParam{},
		compartments: map[string]*Compartment{},
	}
	var types []*TypeDef
	if err := readJSON(fsys, "types.json", &types); err != nil {
		return nil, err
	}
	for _, t := range types {
		d.types[t.Name] = t
		if t.Kind == KindResource && !t.Abstract {
			d.resourceTypes = append(d.resourceTypes, t.Name)
		}
	}
	sort.Strings(d.resourceTypes)
	for _, t := range types {
		if err := d.indexChildren(t); err != nil {
			return nil, err
		}
	}
	var params []*SearchParam
	if err := readJSON(fsys, "search-parameters.json", &params); err != nil {
		return nil, err
	}
	core := len(params)
	if _, err := fs.Stat(fsys, localParams); err == nil {
		var local []*SearchParam
		if err := readJSON(fsys, localParams, &local); err != nil {
			return nil, err
		}
		params = append(params, local...)
	}
	for i, p := range params {
		if i >= core {
			for _, base := range p.Base {
				if d.params[base][p.Code] != nil {
					return nil, fmt.Errorf("fhir: definitions: local search parameter %s redefines %s.%s", p.URL, base, p.Code)
				}
			}
		}
		d.paramsByURL[p.URL] = p
		if strings.HasPrefix(p.URL, exampleParamPrefix) {
			// The core package's examples of the SearchParameter resource
			// (Condition "subject" targeting Organization, "_id" as "id")
			// would shadow the real parameters of the same code.
			continue
		}
		for _, base := range p.Base {
			targets := []string{base}
			if base == "Resource" || base == "DomainResource" {
				targets = d.resourceTypes
				if base == "DomainResource" {
					targets = nil
					for _, rt := range d.resourceTypes {
						if d.IsA(rt, "DomainResource") {
							targets = append(targets, rt)
						}
					}
				}
			}
			for _, rt := range targets {
				m := d.params[rt]
				if m == nil {
					m = map[string]*SearchParam{}
					d.params[rt] = m
				}
				m[p.Code] = p
			}
		}
	}
	if _, err := fs.Stat(fsys, localSubset); err == nil {
		var subset map[string][]string
		if err := readJSON(fsys, localSubset, &subset); err != nil {
			return nil, err
		}
		for typ, codes := range subset {
			keep := map[string]bool{}
			for _, c := range codes {
				if d.params[typ][c] == nil {
					return nil, fmt.Errorf("fhir: definitions: %s limits %s to unknown search parameter %s", localSubset, typ, c)
				}
				keep[c] = true
			}
			for c, p := range d.params[typ] {
				if !keep[c] && !commonParam(p) {
					delete(d.params[typ], c)
				}
			}
		}
	}
	var comps []*Compartment
	if err := readJSON(fsys, "compartments.json", &comps); err != nil {
		return nil, err
	}
	for _, c := range comps {
		c.params = map[string][]string{}
		for _, r := range c.Resource {
			if len(r.Param) > 0 {
				c.params[r.Code] = r.Param
			}
		}
		d.compartments[c.Code] = c
	}
	return d, nil
}

// localParams holds Regie's own search parameters, in the trimmed format of
// search-parameters.json. They add to the core ones and never replace them.
const localParams = "local/search-parameters.json"

// commonParam reports whether p is defined for every resource (Resource or
// DomainResource): those stay even on a type limited by localSubset, so
// that system-level searches keep working.
func commonParam(p *SearchParam) bool {
	for _, b := range p.Base {
		if b == "Resource" || b == "DomainResource" {
			return true
		}
	}
	return false
}

// localSubset limits the search parameters of some types to those listed
// (types whose resources are written so often that every index entry
// counts: the AuditEvent of every read).
const localSubset = "local/search-subset.json"

// exampleParamPrefix starts the URLs of the example SearchParameters in the
// R4 core package (example, example-extension, example-reference).
const exampleParamPrefix = "http://hl7.org/fhir/SearchParameter/example"

func readJSON(fsys fs.FS, name string, v any) error {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("fhir: definitions: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("fhir: definitions: %s: %w", name, err)
	}
	return nil
}

func (d *Definitions) indexChildren(t *TypeDef) error {
	for _, e := range t.Elements {
		dot := strings.LastIndexByte(e.Path, '.')
		if dot < 0 {
			continue
		}
		ctx := e.Path[:dot]
		m := d.children[ctx]
		if m == nil {
			m = map[string]Child{}
			d.children[ctx] = m
		}
		name := e.Name()
		if e.Ref != "" {
			m[name] = Child{Element: e, Type: "BackboneElement", Context: e.Ref}
			continue
		}
		for _, typ := range e.Types {
			c := Child{Element: e, Type: typ, Context: typ}
			if typ == "BackboneElement" || (typ == "Element" && t.Name != "Element") {
				c.Context = e.Path
			}
			if e.Choice() {
				m[name+strings.ToUpper(typ[:1])+typ[1:]] = c
			} else {
				m[name] = c
			}
		}
	}
	return nil
}

// ResourceTypes returns the names of all concrete resource types, sorted.
func (d *Definitions) ResourceTypes() []string { return d.resourceTypes }

// IsResourceType reports whether name is a concrete resource type.
func (d *Definitions) IsResourceType(name string) bool {
	t := d.types[name]
	return t != nil && t.Kind == KindResource && !t.Abstract
}

// Type returns the definition of a type, or nil.
func (d *Definitions) Type(name string) *TypeDef { return d.types[name] }

// IsA reports whether type name is typ or derives from it.
func (d *Definitions) IsA(name, typ string) bool {
	for name != "" {
		if name == typ {
			return true
		}
		t := d.types[name]
		if t == nil {
			return false
		}
		name = t.Base
	}
	return false
}

// Child returns the element named jsonName (as it appears in JSON: choices
// carry their type suffix, "valueQuantity") under context, which is a type
// name ("HumanName", "Patient") or the path of an inline structure
// ("Patient.contact").
func (d *Definitions) Child(context, jsonName string) (Child, bool) {
	c, ok := d.children[context][jsonName]
	return c, ok
}

// Children returns all children of a context keyed by JSON name.
func (d *Definitions) Children(context string) map[string]Child { return d.children[context] }

// SearchParam returns the search parameter code of resourceType, or nil.
func (d *Definitions) SearchParam(resourceType, code string) *SearchParam {
	return d.params[resourceType][code]
}

// SearchParams returns the search parameters of resourceType sorted by code.
func (d *Definitions) SearchParams(resourceType string) []*SearchParam {
	m := d.params[resourceType]
	ps := make([]*SearchParam, 0, len(m))
	for _, p := range m {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Code < ps[j].Code })
	return ps
}

// SearchParamByURL returns the search parameter with the canonical URL, or nil.
func (d *Definitions) SearchParamByURL(url string) *SearchParam { return d.paramsByURL[url] }

// Compartment returns the compartment definition for code ("Patient",
// "Encounter", "RelatedPerson", "Practitioner", "Device", "EpisodeOfCare"), or nil.
func (d *Definitions) Compartment(code string) *Compartment { return d.compartments[code] }
