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
}

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
type Expr interface{ expr() }

// And matches resources that match every operand.
type And []Expr

// Or matches resources that match any operand.
type Or []Expr

// Not matches resources that do not match X.
type Not struct{ X Expr }

// Match tests the index entries of one search parameter. Values are OR-ed.
//
// Two parameters are not indexed but answered from the store's own columns:
// "_id" (Type token, Values[].Code) and "_lastUpdated" (Type date).
type Match struct {
	// Param is the search parameter code; for a component of a composite
	// parameter the stores match Components instead (see Value.Components).
	Param string
	Type  fhir.ParamType
	// Modifier is the search modifier without its colon ("exact", "contains",
	// "text", "not", "missing", "above", "below", "identifier", "of-type");
	// a resource type modifier on a reference is folded into the values.
	Modifier string
	Values   []Value
}

// Chain matches resources whose reference parameter Param points to a
// resource of type Target that matches Where (subject:Patient.name=x).
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

func (And) expr()    {}
func (Or) expr()     {}
func (Not) expr()    {}
func (*Match) expr() {}
func (*Chain) expr() {}
func (*Has) expr()   {}

// Prefix is a comparison prefix of a number, date or quantity value.
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

	// Str is the value of a string or uri parameter, and the text of
	// token :text. For string parameters it is already normalised (see
	// Normalize) unless the modifier is "exact".
	Str string

	// Token values: System is "" with AnySystem set when no '|' was given;
	// with '|' and an empty system, only codes without a system match.
	System    string
	AnySystem bool
	Code      string
	// TypeSystem and TypeCode are the identifier type of :of-type.
	TypeSystem, TypeCode string

	// Reference values: a local reference has RefType (possibly "" when only
	// an id was given) and RefID; an absolute or canonical reference has URL
	// (and Version for canonical "url|version").
	RefType, RefID, URL, Version string

	// Lo and Hi bound a date (Unix microseconds, Hi inclusive), a number or
	// a quantity (in LoF/HiF) by the precision the value was given with.
	Lo, Hi   int64
	LoF, HiF float64
	// Num is the value as given, for prefixes that need the point value.
	Num float64
	// Unit system and code of a quantity ("" = any).
	UnitSystem, UnitCode string

	// Components are the values of a composite parameter's components, in
	// the parameter's component order.
	Components []*Match
}

// Entry is one index entry extracted from a resource for a search parameter.
type Entry struct {
	// Param is the search parameter code. Components of composite parameters
	// are indexed under "<code>#<n>" with the same Group for each composite
	// value, so the parts of one value are matched together.
	Param string
	Type  fhir.ParamType
	Group int

	// String and uri: Str is normalised (case- and accent-folded) for
	// string parameters, exact for uri; Exact keeps the original string.
	Str   string
	Exact string

	// Token: System and Code; Text is the normalised display/text.
	System, Code, Text string

	// Reference: RefType/RefID (and RefVersion) of a local or resolvable
	// reference, URL of an absolute or canonical one.
	RefType, RefID, RefVersion, URL string

	// Date: the instant range covered by the value (Unix microseconds,
	// both inclusive).
	Lo, Hi int64

	// Number and quantity: the range covered by the value's precision, and
	// the value itself. For quantities with a UCUM unit, CanonUnit and the
	// Canon* values hold the value in the UCUM base unit.
	LoF, HiF, Num           float64
	UnitSystem, UnitCode    string
	CanonUnit               string
	CanonLo, CanonHi, Canon float64
}

// Instant converts a time to the microseconds used by Entry.Lo/Hi.
func Instant(t time.Time) int64 { return t.UnixMicro() }
