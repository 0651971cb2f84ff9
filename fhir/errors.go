package fhir

import (
	"strings"
)

// IssueCode is an OperationOutcome issue type (http://hl7.org/fhir/issue-type).
type IssueCode string

// Issue codes used by validation.
const (
	IssueStructure    IssueCode = "structure"
	IssueRequired     IssueCode = "required"
	IssueValue        IssueCode = "value"
	IssueInvalid      IssueCode = "invalid"
	IssueNotSupported IssueCode = "not-supported"
	IssueInvariant    IssueCode = "invariant"
	IssueProcessing   IssueCode = "processing"
	IssueConflict     IssueCode = "conflict"
)

// Issue is one problem found in a resource or request.
type Issue struct {
	// Code is the issue type.
	Code IssueCode
	// Path is the FHIRPath location of the problem, e.g. "Patient.name[0].given".
	Path string
	// Details is a message free of personal data; it may be logged.
	Details string
	// Diagnostics may quote input and so may hold personal data; it goes to
	// the client but never to logs.
	Diagnostics string
	// Warning marks an issue that does not reject the input.
	Warning bool
}

// ValidationError reports why a resource or request was rejected. Its
// Error text holds Details only, so it is safe to log.
type ValidationError struct {
	Issues []Issue
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("fhir: invalid")
	for i, is := range e.Issues {
		if i == 3 {
			b.WriteString("; …")
			break
		}
		b.WriteString("; ")
		if is.Path != "" {
			b.WriteString(is.Path)
			b.WriteString(": ")
		}
		b.WriteString(is.Details)
	}
	return b.String()
}

// Invalid returns a ValidationError with one issue.
func Invalid(code IssueCode, path, details, diagnostics string) *ValidationError {
	return &ValidationError{Issues: []Issue{{Code: code, Path: path, Details: details, Diagnostics: diagnostics}}}
}
