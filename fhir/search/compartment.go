package search

import (
	"slices"
	"strings"

	"regie/fhir"
)

// CompartmentConstraint returns the expression that keeps the resources of
// types that are in the compartment of compartment/id (Patient/123): those
// whose compartment parameters, as the R4 CompartmentDefinition lists
// them, refer to the owner. The owner itself is in its own compartment
// (the definition's "{def}", and Regie adds it for every compartment). It
// serves compartment search (Patient/123/CarePlan: the result goes into
// Query.Where or Query.Constraint) and the access policy (Constraint).
//
// With one type the result is an Or of reference Matches (or a single
// Match). With several types, or none (every type in the compartment),
// each group of types that share the same parameters is selected with a
// "_type" Match, so a store applies the right parameters to each type;
// types that are not in the compartment are left out and so never match.
// A single type that is not in the compartment is an error, as is an
// unknown compartment or an invalid id.
func CompartmentConstraint(defs *fhir.Definitions, compartment, id string, types ...string) (Expr, error) {
	c := defs.Compartment(compartment)
	if c == nil {
		return nil, fhir.Invalid(fhir.IssueNotSupported, "", "search: unknown compartment", "compartment "+compartment)
	}
	if !fhir.ValidID(id) {
		return nil, fhir.Invalid(fhir.IssueValue, "", "search: invalid compartment id", "")
	}
	terms := func(t string) []Expr {
		var es []Expr
		if t == compartment {
			es = append(es, &Match{Param: "_id", Type: fhir.ParamToken, Values: []Value{{AnySystem: true, Code: id}}})
		}
		for _, p := range c.Params(t) {
			if p == "{def}" {
				continue // the owner, added above
			}
			sp := defs.SearchParam(t, p)
			if sp == nil || sp.Type != fhir.ParamReference {
				continue
			}
			es = append(es, &Match{Param: p, Type: fhir.ParamReference, Values: []Value{{RefType: compartment, RefID: id}}})
		}
		return es
	}
	if len(types) == 1 {
		es := terms(types[0])
		switch len(es) {
		case 0:
			return nil, fhir.Invalid(fhir.IssueNotSupported, "", "search: resource type is not in the compartment", types[0]+" is not in the "+compartment+" compartment")
		case 1:
			return es[0], nil
		}
		return Or(es), nil
	}
	if len(types) == 0 {
		types = c.Types()
		if !slices.Contains(types, compartment) {
			types = append(types, compartment)
		}
	}
	// Group the types by their parameter lists.
	type group struct {
		types []string
		terms []Expr
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, t := range types {
		if !defs.IsResourceType(t) {
			return nil, fhir.Invalid(fhir.IssueNotSupported, "", "search: unknown resource type", "type "+t)
		}
		es := terms(t)
		if len(es) == 0 {
			continue
		}
		key := strings.Join(c.Params(t), ",")
		if t == compartment {
			key = "{self}" + t // the _id term is specific to the owner's type
		}
		g := byKey[key]
		if g == nil {
			g = &group{terms: es}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.types = append(g.types, t)
	}
	out := Or{}
	for _, g := range groups {
		tm := &Match{Param: "_type", Type: fhir.ParamToken}
		for _, t := range g.types {
			tm.Values = append(tm.Values, Value{AnySystem: true, Code: t})
		}
		var body Expr = Or(g.terms)
		if len(g.terms) == 1 {
			body = g.terms[0]
		}
		out = append(out, And{tm, body})
	}
	if len(out) == 1 {
		return out[0], nil
	}
	return out, nil
}
