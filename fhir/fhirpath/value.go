package fhirpath

import (
	"errors"
	"strings"
)

// Errors returned by Compile and Evaluate. Every error wraps one of them.
var (
	// ErrSyntax is wrapped by *SyntaxError.
	ErrSyntax = errors.New("fhirpath: syntax error")
	// ErrEval marks an error during evaluation (type errors, a collection
	// of several items where one is required, an unknown type name).
	ErrEval = errors.New("fhirpath: evaluation error")
	// ErrUnsupported marks a function the engine recognises but does not implement.
	ErrUnsupported = errors.New("fhirpath: unsupported")
	// ErrInput marks resource JSON that cannot be read.
	ErrInput = errors.New("fhirpath: invalid resource JSON")
)

// Value is one item of a Collection. It is either a *Node (an element of a
// resource, typed by the FHIR model: namespace "FHIR") or a computed System
// value (namespace "System"): Boolean, String, Integer, Decimal, Date,
// DateTime, Time, Quantity, or TypeInfo (the result of type()).
type Value interface {
	// TypeName returns the type name: a FHIR type for nodes ("HumanName",
	// "dateTime", "Patient") and the System type for computed values
	// ("Boolean", "String", "Quantity").
	TypeName() string
	// Namespace returns "FHIR" or "System".
	Namespace() string
}

// Collection is the result of an expression: an ordered list of values.
type Collection []Value

// Boolean is a System.Boolean.
type Boolean bool

// String is a System.String.
type String string

// Integer is a System.Integer.
type Integer int64

// Quantity is a System.Quantity. Unit is a UCUM code ("mg", "[lb_av]") or a
// calendar duration keyword ("day", "weeks"); Calendar tells which.
type Quantity struct {
	Value    Decimal
	Unit     string
	Calendar bool
}

// TypeInfo is the result of type(): a namespace and a name. Its members
// namespace and name can be navigated.
type TypeInfo struct{ NS, Name string }

// TypeName implements Value.
func (Boolean) TypeName() string { return "Boolean" }

// TypeName implements Value.
func (String) TypeName() string { return "String" }

// TypeName implements Value.
func (Integer) TypeName() string { return "Integer" }

// TypeName implements Value.
func (Decimal) TypeName() string { return "Decimal" }

// TypeName implements Value.
func (Date) TypeName() string { return "Date" }

// TypeName implements Value.
func (DateTime) TypeName() string { return "DateTime" }

// TypeName implements Value.
func (Time) TypeName() string { return "Time" }

// TypeName implements Value.
func (Quantity) TypeName() string { return "Quantity" }

// TypeName implements Value.
func (TypeInfo) TypeName() string { return "SimpleTypeInfo" }

// Namespace implements Value.
func (Boolean) Namespace() string { return "System" }

// Namespace implements Value.
func (String) Namespace() string { return "System" }

// Namespace implements Value.
func (Integer) Namespace() string { return "System" }

// Namespace implements Value.
func (Decimal) Namespace() string { return "System" }

// Namespace implements Value.
func (Date) Namespace() string { return "System" }

// Namespace implements Value.
func (DateTime) Namespace() string { return "System" }

// Namespace implements Value.
func (Time) Namespace() string { return "System" }

// Namespace implements Value.
func (Quantity) Namespace() string { return "System" }

// Namespace implements Value.
func (TypeInfo) Namespace() string { return "System" }

// String formats the quantity as a FHIRPath literal: "4 'mg'" or "1 week".
func (q Quantity) String() string {
	if q.Calendar {
		return q.Value.String() + " " + q.Unit
	}
	return q.Value.String() + " '" + q.Unit + "'"
}

// systemTypes are the names of the System namespace.
var systemTypes = map[string]bool{
	"Boolean": true, "String": true, "Integer": true, "Decimal": true, "Date": true,
	"DateTime": true, "Time": true, "Quantity": true, "Any": true,
}

// fhirToSystem maps FHIR primitive types to the System type they convert to.
var fhirToSystem = map[string]string{
	"boolean": "Boolean", "string": "String", "code": "String", "id": "String", "uri": "String",
	"url": "String", "canonical": "String", "oid": "String", "uuid": "String", "markdown": "String",
	"base64Binary": "String", "xhtml": "String", "integer": "Integer", "positiveInt": "Integer",
	"unsignedInt": "Integer", "integer64": "Integer", "decimal": "Decimal", "date": "Date",
	"dateTime": "DateTime", "instant": "DateTime", "time": "Time",
}

// quantityTypes are the FHIR types that convert to System.Quantity.
var quantityTypes = map[string]bool{
	"Quantity": true, "Age": true, "Duration": true, "Distance": true, "Count": true,
	"SimpleQuantity": true, "MoneyQuantity": true,
}

// Format renders a value as text: the string value of primitives, the
// FHIRPath literal form of quantities, and compact JSON of complex nodes.
func Format(v Value) string {
	switch x := v.(type) {
	case Boolean:
		if x {
			return "true"
		}
		return "false"
	case String:
		return string(x)
	case Integer:
		return itoa(int(x))
	case Decimal:
		return x.String()
	case Date:
		return x.String()
	case DateTime:
		return x.String()
	case Time:
		return x.String()
	case Quantity:
		return x.String()
	case TypeInfo:
		return x.NS + "." + x.Name
	case *Node:
		if s, ok := x.Text(); ok {
			return s
		}
		return strings.TrimSpace(string(x.Raw()))
	}
	return ""
}
