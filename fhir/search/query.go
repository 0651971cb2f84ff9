// Package search turns FHIR search requests into a backend-neutral query
// tree, and resources into the typed index entries that stores match that
// tree against. Both sides are driven by the R4 SearchParameter definitions
// in fhir.Definitions; neither does I/O.
//
// The tree has two parts a store must apply everywhere (to matches, includes,
// totals and paging alike): Where, from the request, and Constraint, added by
// the caller (the access policy). A store never sees HTTP.
package search

import (
	"time"

	"regie/fhir"
)

// Query is a parsed search.
type Query struct {
	// Types are the resource types searched; empty means every type
	// (system-level search).
	Types []string
	// Where holds the request's conditions; nil matches everything.
	Where Expr
	// Request, when set, is Where as the request gave it, before the
	// parser answered derived parameters from their constituents
	// (derived.go); Canonical renders it.
	Request Expr
	// Constraint is added by the caller, typically the access policy, and
	// limits everything the search returns: matches, includes, revincludes
	// and totals. nil means no constraint.
	Constraint Expr
	// Sort lists the sort keys in order; empty means the store's stable
	// default order (insertion order).
	Sort []Sort
	// Count is the page size (0 means the store's default).
	Count int
	// Cursor continues a previous search; it is opaque to everything but the
	// store that issued it.
	Cursor string
	// Total says whether and how to count all matches.
	Total Total
	// Include and RevInclude add resources that matches refer to, or that
	// refer to matches.
	Include    []Include
	RevInclude []Include
	// Summary is the _summary mode ("" when not given). A store returns no
	// resources for SummaryCount, only the total (counted accurately unless
	// Total says otherwise); the other modes are applied by the server when
	// it serialises the page.
	Summary Summary
	// Elements is the _elements list; the server prunes the returned
	// resources, stores ignore it.
	Elements []string
}

// Summary is the _summary mode.
type Summary string

// Summary modes.
const (
	SummaryTrue  Summary = "true"
	SummaryText  Summary = "text"
	SummaryData  Summary = "data"
	SummaryCount Summary = "count"
	SummaryFalse Summary = "false"
)

// Total is the _total mode.
type Total string

// Total modes.
const (
	TotalNone     Total = "none"
	TotalEstimate Total = "estimate"
	TotalAccurate Total = "accurate"
)

// Sort is one _sort key.
type Sort struct {
	// Param is the search parameter code ("_lastUpdated", "_id", "birthdate").
	Param string
	Type  fhir.ParamType
	Desc  bool
}

// Include is one _include or _revinclude.
type Include struct {
	// Source is the type whose reference parameter is followed; "*" for any.
	Source string
	// Param is the reference parameter code; "*" for every reference parameter.
	Param string
	// Target restricts the referenced type ("" for any).
	Target string
	// Iterate applies the include to included resources too, repeatedly.
	Iterate bool
}

// Expr is a node of the query tree: And, Or, Not, Match, Chain or Has.
//
// An empty And matches everything; an empty Or matches nothing.
type Expr interface{ expr() }

// And matches resources that match every operand.
type And []Expr

// Or matches resources that match any operand.
type Or []Expr

// Not matches resources that do not match X. The parser expresses the
// :not modifier as Not{&Match{…}}: resources without any entry for the
// parameter match it too.
type Not struct{ X Expr }

// Match tests the index entries of one search parameter: it matches a
// resource when at least one of its entries for Param matches at least one
// of Values. The exact semantics per type, modifier and prefix are those of
// (*Match).Matches, the reference implementation every store must agree with.
//
// Three parameters are not indexed but answered from the store's own
// columns: "_id" (Type token, Values[].Code is the id), "_lastUpdated"
// (Type date, Lo/Hi as for dates) and "_type" (Type token, Values[].Code is
// the resource type; the parser emits it only inside compartment
// constraints, CompartmentConstraint).
type Match struct {
	// Param is the search parameter code; for a component of a composite
	// parameter it is "<code>#<n>" (see Value.Components).
	Param string
	Type  fhir.ParamType
	// Modifier is the search modifier without its colon: "" or one of
	// "missing" (any type), "exact" and "contains" (string), "text" and
	// "of-type" (token), "identifier" (reference), "above" and "below"
	// (uri). The parser never emits "not" (it emits Not instead), and folds
	// a resource type modifier of a reference into Values[].RefType.
	Modifier string
	Values   []Value
}

// Chain matches resources whose reference parameter Param points to a
// resource of type Target that matches Where (subject:Patient.name=x).
// Only local references (Entry.URL empty) are followed.
type Chain struct {
	Param  string
	Target string
	Where  Expr
}

// Has matches resources that are referred to, through reference parameter
// Param of resources of type Type, by a resource that matches Where
// (_has:Observation:patient:code=x).
type Has struct {
	Type  string
	Param string
	Where Expr
}

// Walk calls fn for e and every node below it, parents first: the
// operands of And and Or, the operand of Not, and the inner query of a
// Chain or Has.
func Walk(e Expr, fn func(Expr)) {
	if e == nil {
		return
	}
	fn(e)
	switch x := e.(type) {
	case And:
		for _, y := range x {
			Walk(y, fn)
		}
	case Or:
		for _, y := range x {
			Walk(y, fn)
		}
	case Not:
		Walk(x.X, fn)
	case *Chain:
		Walk(x.Where, fn)
	case *Has:
		Walk(x.Where, fn)
	}
}

func (And) expr()    {}
func (Or) expr()     {}
func (Not) expr()    {}
func (*Match) expr() {}
func (*Chain) expr() {}
func (*Has) expr()   {}

// Prefix is a comparison prefix of a number, date or quantity value.
//
// All three types compare ranges: the search value's range [Lo, Hi] (from
// its precision: "2020-03" is the whole of March, "100" is [99.5, 100.5])
// with the range of each index entry. With S the search range and T the
// entry's range, as in the R4 specification:
//
//	eq  S contains T                     S.Lo <= T.Lo && T.Hi <= S.Hi
//	ne  S does not contain T             !(eq)
//	gt  T reaches above S                T.Hi > S.Hi
//	lt  T reaches below S                T.Lo < S.Lo
//	ge  gt or eq
//	le  lt or eq
//	sa  T starts after S                 T.Lo > S.Hi
//	eb  T ends before S                  T.Hi < S.Lo
//	ap  T overlaps S                     T.Lo <= S.Hi && T.Hi >= S.Lo
//
// For ap the parser has already widened S (by 10 % of the value for
// numbers and quantities, by 10 % of the distance to now for dates).
type Prefix string

// Prefixes.
const (
	Eq Prefix = "eq"
	Ne Prefix = "ne"
	Gt Prefix = "gt"
	Lt Prefix = "lt"
	Ge Prefix = "ge"
	Le Prefix = "le"
	Sa Prefix = "sa"
	Eb Prefix = "eb"
	Ap Prefix = "ap"
)

// Value is one search value, typed by its parameter.
type Value struct {
	// Missing is set for the :missing modifier: true matches resources with no
	// entry for the parameter, false those with at least one.
	Missing bool

	// Prefix applies to number, date and quantity values (default eq).
	Prefix Prefix

	// Raw is the value as given, unescaped, without prefix or unit: the
	// literal of a number, date or quantity. It is kept for rendering the
	// query (Canonical) and for messages.
	Raw string

	// Str is the value of a string or uri parameter, and the text of
	// token :text. For string parameters and :text it is already normalised
	// (see Normalize) unless the modifier is "exact".
	Str string

	// Token values: System is "" with AnySystem set when no '|' was given;
	// with '|' and an empty system, only codes without a system match; with
	// an empty Code ("system|") any code of the system matches.
	System    string
	AnySystem bool
	Code      string
	// TypeSystem and TypeCode are the identifier type of :of-type (with
	// Code the identifier value; System is unused then).
	TypeSystem, TypeCode string

	// Reference values: a local reference has RefType (possibly "" when only
	// an id was given and the parameter has several target types) and
	// RefID, and Version for "Type/id/_history/v"; an absolute or canonical
	// reference has URL (and Version for canonical "url|version"). A
	// reference :identifier value uses System, AnySystem and Code.
	RefType, RefID, URL, Version string

	// Lo and Hi bound a date (Unix microseconds, UTC, both inclusive);
	// LoF and HiF bound a number or a quantity, by the precision the value
	// was given with (both inclusive).
	Lo, Hi   int64
	LoF, HiF float64
	// Num is the value as given, for prefixes that need the point value.
	Num float64
	// Unit system and code of a quantity ("" = any).
	UnitSystem, UnitCode string
	// CanonUnit is set when the quantity's unit is a UCUM unit Regie can
	// convert (see Canonicalize): Canon, CanonLo and CanonHi hold Num, LoF
	// and HiF in that base unit. Stores then compare against entries with
	// the same CanonUnit in canonical values, whatever unit they were
	// written in.
	CanonUnit               string
	Canon, CanonLo, CanonHi float64

	// Components are the values of a composite parameter's components, in
	// the parameter's component order; each has one value and Param
	// "<code>#<n>". A composite value matches when one Group of the
	// resource's entries matches every component.
	Components []*Match
}

// Entry is one index entry extracted from a resource for a search parameter.
type Entry struct {
	// Param is the search parameter code. Components of composite parameters
	// are indexed under "<code>#<n>" with the same Group for each composite
	// value, so the parts of one value are matched together. Group is 0 for
	// entries of other parameters.
	Param string
	Type  fhir.ParamType
	Group int

	// String and uri: Str is normalised (case- and accent-folded) for
	// string parameters, exact for uri; Exact keeps the original string.
	Str   string
	Exact string

	// Token: System and Code; Text is the normalised display/text. An entry
	// may carry Text only (the text of a CodeableConcept). Identifiers also
	// carry the identifier type's coding in TypeSystem/TypeCode (one entry
	// per type coding) for :of-type.
	System, Code, Text   string
	TypeSystem, TypeCode string

	// Reference: RefType/RefID (and RefVersion) of a local reference; URL
	// of an absolute or canonical one (with the canonical version in
	// RefVersion). An absolute URL that ends in a known Type/id also sets
	// RefType/RefID, for type filters and _include targets; local search
	// values match entries with an empty URL only. A reference's
	// identifier is indexed as a separate entry with only System and Code
	// set, for :identifier.
	RefType, RefID, RefVersion, URL string

	// Date: the instant range covered by the value (Unix microseconds,
	// both inclusive; math.MinInt64/math.MaxInt64 for an open end).
	Lo, Hi int64

	// Number and quantity: the range covered by the value's precision (both
	// inclusive; an integer is its own range), and the value itself. A
	// Range has its low and high as LoF/HiF (±Inf when open) and Num = LoF.
	// For quantities with a UCUM unit Regie knows, CanonUnit and the Canon*
	// values hold the value in the UCUM base unit.
	LoF, HiF, Num           float64
	UnitSystem, UnitCode    string
	CanonUnit               string
	CanonLo, CanonHi, Canon float64
}

// Instant converts a time to the microseconds used by Entry.Lo/Hi.
func Instant(t time.Time) int64 { return t.UnixMicro() }
