package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
)

// Validator checks resources against the R4 structure definitions on write:
// known elements only, cardinality, required elements, primitive formats and
// reference target types. It uses github.com/google/fhir/go's R4 parser. A
// Validator is safe for concurrent use.
type Validator struct {
	um   *jsonformat.Unmarshaller
	defs *Definitions
}

// NewValidator returns a Validator. Dates without a time zone are read in UTC.
func NewValidator(defs *Definitions) (*Validator, error) {
	um, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("fhir: validator: %w", err)
	}
	um.MaxNestingDepth = MaxNestingDepth
	return &Validator{um: um, defs: defs}, nil
}

// MaxNestingDepth bounds how deep a resource's JSON may nest.
const MaxNestingDepth = 64

// Parsed is a resource body that passed validation.
type Parsed struct {
	Type string
	ID   string
	// Body is the compact JSON, with every member as the client sent it.
	Body []byte
}

// Validate checks body, which must be a single resource in JSON. It returns
// the compacted body with its type and id, or a *ValidationError.
func (v *Validator) Validate(body []byte) (*Parsed, error) {
	var buf bytes.Buffer
	buf.Grow(len(body))
	if err := json.Compact(&buf, body); err != nil {
		return nil, jsonSyntaxError(body, err)
	}
	compact := buf.Bytes()
	rt, id, err := Header(compact)
	if err != nil {
		var verr *ValidationError
		if errors.As(err, &verr) {
			return nil, verr
		}
		return nil, Invalid(IssueStructure, "", "the body is not a JSON object", "")
	}
	if rt == "" {
		return nil, Invalid(IssueRequired, "resourceType", "resourceType is missing", "")
	}
	if !v.defs.IsResourceType(rt) {
		return nil, Invalid(IssueNotSupported, "resourceType", "unknown resource type", fmt.Sprintf("%q is not an R4 resource type", rt))
	}
	if id != "" && !ValidID(id) {
		return nil, Invalid(IssueValue, rt+".id", `id must match [A-Za-z0-9\-\.]{1,64}`, "")
	}
	if depth(compact) > MaxNestingDepth {
		return nil, Invalid(IssueStructure, rt, fmt.Sprintf("the resource nests deeper than %d levels", MaxNestingDepth), "")
	}
	rep := &reporter{}
	_, err = v.um.UnmarshalWithErrorReporter(compact, rep)
	if err != nil {
		rep.add(err, true)
	}
	if len(rep.issues) > 0 {
		return nil, &ValidationError{Issues: rep.issues}
	}
	return &Parsed{Type: rt, ID: id, Body: compact}, nil
}

func depth(b []byte) int {
	d, max := 0, 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			end, err := skipString(b, i)
			if err != nil {
				return max
			}
			i = end - 1
		case '{', '[':
			d++
			if d > max {
				max = d
			}
		case '}', ']':
			d--
		}
	}
	return max
}

func jsonSyntaxError(body []byte, err error) error {
	// json.Compact does not report where; the decoder does
	var raw json.RawMessage
	if uerr := json.Unmarshal(body, &raw); uerr != nil {
		err = uerr
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := position(body, int(se.Offset))
		return Invalid(IssueStructure, "", "the body is not valid JSON",
			fmt.Sprintf("JSON syntax error at line %d, column %d: %s", line, col, se.Error()))
	}
	return Invalid(IssueStructure, "", "the body is not valid JSON", err.Error())
}

func position(b []byte, off int) (line, col int) {
	if off > len(b) {
		off = len(b)
	}
	line = 1 + bytes.Count(b[:off], []byte{'\n'})
	col = off - bytes.LastIndexByte(b[:off], '\n')
	return line, col
}

// reporter collects google/fhir validation errors as Issues.
type reporter struct {
	issues []Issue
}

func (r *reporter) ReportValidationError(path string, err error) error {
	r.issues = append(r.issues, issueFrom(path, err, false))
	return nil
}

func (r *reporter) ReportValidationWarning(path string, err error) error {
	return nil // warnings do not reject a resource and are not reported
}

// add records a parse error, which may be a list of errors.
func (r *reporter) add(err error, _ bool) {
	rv := reflect.ValueOf(err)
	if rv.Kind() == reflect.Slice {
		for i := 0; i < rv.Len(); i++ {
			if e, ok := rv.Index(i).Interface().(error); ok {
				r.issues = append(r.issues, issueFrom("", e, false))
			}
		}
		return
	}
	r.issues = append(r.issues, issueFrom("", err, false))
}

var quotedPath = regexp.MustCompile(`^error at "([^"]*)": `)

// issueFrom turns a google/fhir error into an Issue. Its UnmarshalError type
// is internal to that module, so its exported fields are read by reflection.
func issueFrom(path string, err error, warning bool) Issue {
	is := Issue{Code: IssueStructure, Path: path, Warning: warning}
	rv := reflect.ValueOf(err)
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		rv = rv.Elem()
	}
	if rv.Kind() == reflect.Struct {
		if f := rv.FieldByName("Path"); f.IsValid() && f.Kind() == reflect.String && is.Path == "" {
			is.Path = f.String()
		}
		if f := rv.FieldByName("Details"); f.IsValid() && f.Kind() == reflect.String {
			is.Details = f.String()
		}
		if f := rv.FieldByName("Diagnostics"); f.IsValid() && f.Kind() == reflect.String {
			is.Diagnostics = f.String()
		}
	}
	if is.Details == "" {
		msg := err.Error()
		if m := quotedPath.FindStringSubmatch(msg); m != nil {
			if is.Path == "" {
				is.Path = m[1]
			}
			msg = msg[len(m[0]):]
		}
		is.Details = msg
	}
	if strings.Contains(is.Details, "missing required field") {
		is.Code = IssueRequired
	} else if strings.Contains(is.Details, "invalid") || strings.Contains(is.Details, "format") {
		is.Code = IssueValue
	}
	return is
}
