package auth

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// Interaction is a FHIR RESTful interaction, as the engine names it.
type Interaction string

// Interactions checked against SMART scopes.
const (
	InteractionRead      Interaction = "read"
	InteractionVRead     Interaction = "vread"
	InteractionSearch    Interaction = "search"
	InteractionCreate    Interaction = "create"
	InteractionUpdate    Interaction = "update"
	InteractionPatch     Interaction = "patch"
	InteractionDelete    Interaction = "delete"
	InteractionHistory   Interaction = "history"
	InteractionOperation Interaction = "operation"
)

// permsFor maps an interaction to the SMART v2 permissions it needs (all of
// them). History reads versions (r); an operation may read and search (rs):
// operations that write check create/update for what they write.
func permsFor(i Interaction) (string, error) {
	switch i {
	case InteractionRead, InteractionVRead, InteractionHistory:
		return "r", nil
	case InteractionSearch:
		return "s", nil
	case InteractionCreate:
		return "c", nil
	case InteractionUpdate, InteractionPatch:
		return "u", nil
	case InteractionDelete:
		return "d", nil
	case InteractionOperation:
		return "rs", nil
	}
	return "", fmt.Errorf("auth: unknown interaction %q", i)
}

// ErrNotSMARTScope is returned by ParseScope for scopes that are not
// resource scopes (openid, fhirUser, launch/patient, offline_access, ...).
var ErrNotSMARTScope = errors.New("auth: not a SMART resource scope")

// Scope is a parsed SMART resource scope, v1 or v2:
// "patient/*.rs", "user/Observation.cruds", "system/*.read",
// "patient/Observation.rs?category=laboratory".
type Scope struct {
	// Context is "patient", "user" or "system".
	Context string
	// ResourceType is a type name or "*".
	ResourceType string
	// Perms is a subset of "cruds", in that order.
	Perms string
	// Filter holds the granular constraints (?param=value), ANDed.
	Filter []Constraint
}

// Constraint narrows what a scope grants to resources matching
// ResourceType?Param=Value (a FHIR search parameter); the policy adds it to
// the query.
type Constraint struct {
	ResourceType, Param, Value string
}

// ParseScope parses a SMART resource scope.
func ParseScope(s string) (Scope, error) {
	ctx, rest, ok := strings.Cut(s, "/")
	if !ok {
		return Scope{}, ErrNotSMARTScope
	}
	switch ctx {
	case "patient", "user", "system":
	default:
		return Scope{}, ErrNotSMARTScope
	}
	rest, query, _ := strings.Cut(rest, "?")
	typ, perm, ok := strings.Cut(rest, ".")
	if !ok || typ == "" {
		return Scope{}, fmt.Errorf("auth: scope %q: missing resource type or permissions", s)
	}
	if typ != "*" && !validTypeName(typ) {
		return Scope{}, fmt.Errorf("auth: scope %q: bad resource type", s)
	}
	sc := Scope{Context: ctx, ResourceType: typ}
	switch perm {
	case "read":
		sc.Perms = "rs"
	case "write":
		sc.Perms = "cud"
	case "*":
		sc.Perms = "cruds"
	default:
		// v2: letters of cruds, each at most once, in order
		i := 0
		for _, ch := range perm {
			j := strings.IndexRune("cruds"[i:], ch)
			if j < 0 {
				return Scope{}, fmt.Errorf("auth: scope %q: bad permissions %q", s, perm)
			}
			i += j + 1
		}
		if perm == "" {
			return Scope{}, fmt.Errorf("auth: scope %q: empty permissions", s)
		}
		sc.Perms = perm
	}
	if query != "" {
		if typ == "*" {
			return Scope{}, fmt.Errorf("auth: scope %q: a filter needs a resource type", s)
		}
		vals, err := url.ParseQuery(query)
		if err != nil {
			return Scope{}, fmt.Errorf("auth: scope %q: bad filter", s)
		}
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, v := range vals[k] {
				if k == "" || v == "" {
					return Scope{}, fmt.Errorf("auth: scope %q: empty filter parameter", s)
				}
				sc.Filter = append(sc.Filter, Constraint{ResourceType: typ, Param: k, Value: v})
			}
		}
	}
	return sc, nil
}

func validTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// String renders the scope in v2 form.
func (s Scope) String() string {
	out := s.Context + "/" + s.ResourceType + "." + s.Perms
	if len(s.Filter) > 0 {
		v := url.Values{}
		for _, c := range s.Filter {
			v.Add(c.Param, c.Value)
		}
		out += "?" + v.Encode()
	}
	return out
}

// Covers reports whether s grants at least what w asks: same context, same
// or wildcard type, a superset of permissions, and a filter no wider.
func (s Scope) Covers(w Scope) bool {
	if s.Context != w.Context {
		return false
	}
	if s.ResourceType != "*" && s.ResourceType != w.ResourceType {
		return false
	}
	for _, p := range w.Perms {
		if !strings.ContainsRune(s.Perms, p) {
			return false
		}
	}
	for _, c := range s.Filter {
		if !slices.Contains(w.Filter, c) {
			return false
		}
	}
	return true
}

// ScopeGrant is one scope that allows an interaction: its context
// (patient, user, system) and the constraints it narrows the access to
// (none: the whole type within the context).
type ScopeGrant struct {
	Context     string
	Constraints []Constraint
}

// ScopeGrants returns the grants of p's scopes that allow interaction on
// resourceType. Access is the union of the grants: a resource is visible
// if it satisfies any grant (all of that grant's constraints, within its
// context: "patient" limits to the patient's compartment, which the
// policy applies). It returns an error wrapping ErrForbidden when no scope
// allows the interaction.
func ScopeGrants(p *Principal, resourceType string, interaction Interaction) ([]ScopeGrant, error) {
	need, err := permsFor(interaction)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrForbidden, err)
	}
	if p == nil {
		return nil, fmt.Errorf("%w: no principal", ErrForbidden)
	}
	var grants []ScopeGrant
	for _, raw := range p.Scopes {
		s, err := ParseScope(raw)
		if err != nil {
			continue
		}
		if s.ResourceType != "*" && s.ResourceType != resourceType {
			continue
		}
		if !allIn(need, s.Perms) {
			continue
		}
		if p.Kind == KindSystem && s.Context != "system" || p.Kind != KindSystem && s.Context == "system" {
			continue
		}
		g := ScopeGrant{Context: s.Context, Constraints: s.Filter}
		if len(g.Constraints) == 0 {
			// an unconstrained grant within a context subsumes the
			// constrained ones of the same context
			grants = slices.DeleteFunc(grants, func(o ScopeGrant) bool { return o.Context == g.Context })
			grants = append(grants, g)
			continue
		}
		if slices.ContainsFunc(grants, func(o ScopeGrant) bool { return o.Context == g.Context && len(o.Constraints) == 0 }) {
			continue
		}
		grants = append(grants, g)
	}
	if len(grants) == 0 {
		return nil, fmt.Errorf("%w: no scope allows %s on %s", ErrForbidden, interaction, resourceType)
	}
	return grants, nil
}

// CheckScope returns nil if p's scopes allow interaction on resourceType,
// else an error wrapping ErrForbidden. Use [ScopeGrants] to learn the
// granular constraints the policy must add to the query.
func CheckScope(p *Principal, resourceType string, interaction Interaction) error {
	_, err := ScopeGrants(p, resourceType, interaction)
	return err
}

func allIn(need, have string) bool {
	for _, r := range need {
		if !strings.ContainsRune(have, r) {
			return false
		}
	}
	return true
}
