// Package fhir holds Regie's knowledge of FHIR R4 that needs no I/O: the
// resource envelope, identifiers and references, the definitions registry
// (types, search parameters, compartments) loaded from package profiles,
// validation on write, and the JSON plumbing that keeps stored bytes as they
// came in. It imports neither storage, server nor auth.
package fhir

import (
	"log/slog"
	"strconv"
	"time"
)

// Resource is one version of a stored resource. Body holds the JSON exactly as
// it is served (compact, with meta.versionId and meta.lastUpdated stamped);
// it is nil for a deletion.
type Resource struct {
	Type        string
	ID          string
	Version     int64
	LastUpdated time.Time
	Deleted     bool
	Body        []byte
}

// VersionID returns the FHIR versionId of r.
func (r *Resource) VersionID() string { return strconv.FormatInt(r.Version, 10) }

// Ref returns "Type/id".
func (r *Resource) Ref() string { return r.Type + "/" + r.ID }

// LogValue logs the type, id and version only, never the body.
func (r *Resource) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("type", r.Type),
		slog.String("id", r.ID),
		slog.Int64("version", r.Version),
	)
}

// ValidID reports whether s is a valid FHIR logical id: [A-Za-z0-9\-\.]{1,64}.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

// FormatInstant formats t as a FHIR instant in UTC with microsecond precision
// (trailing zeros trimmed), as used for meta.lastUpdated.
func FormatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.999999Z07:00")
}
