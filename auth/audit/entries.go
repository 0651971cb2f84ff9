package audit

import (
	"strings"

	"regie/fhir"
	"regie/fhir/search"
)

// Entries returns the search index entries of the event's AuditEvent for
// the parameters Regie indexes on AuditEvent (agent, date, entity, patient,
// type; profiles/r4/local/search-subset.json), built from the event's
// fields. They are what the indexer extracts from JSON(), which every
// interaction would otherwise parse back into a tree and run five FHIRPath
// expressions over; TestEntriesAgreeWithTheIndexer keeps the two equal,
// for every kind of event and field combination, and fails when the
// indexed parameters change.
//
// ok is false when a field holds something this shortcut does not
// interpret (a reference that is not a plain relative one); the caller then
// indexes JSON() instead.
func (e *Event) Entries() (entries []search.Entry, ok bool) {
	out := make([]search.Entry, 0, 8)
	ref := func(param, s string) bool {
		typ, id, version, ok := splitReference(s)
		if !ok {
			return false
		}
		out = addEntry(out, search.Entry{Param: param, Type: fhir.ParamReference, RefType: typ, RefID: id, RefVersion: version})
		return true
	}
	// agent: AuditEvent.agent.who, in agent order (JSON, appendAgents).
	if e.Who != "" && !ref("agent", e.Who) {
		return nil, false
	}
	if e.OnBehalfOf != "" && !ref("agent", e.OnBehalfOf) {
		return nil, false
	}
	if e.Client != "" {
		out = addEntry(out, search.Entry{Param: "agent", Type: fhir.ParamReference, System: clientSystem, Code: e.Client})
	}
	// date: AuditEvent.recorded.
	lo, hi, ok := search.DateRange(fhir.FormatInstant(e.Time))
	if !ok {
		return nil, false
	}
	out = append(out, search.Entry{Param: "date", Type: fhir.ParamDate, Lo: lo, Hi: hi})
	// entity: AuditEvent.entity.what (the patients, then the resource).
	for _, pid := range e.Patients {
		if !ref("entity", "Patient/"+pid) {
			return nil, false
		}
	}
	if e.Resource != "" && !ref("entity", e.Resource) {
		return nil, false
	}
	// patient: agent.who and entity.what that are Patients, agents first.
	for _, s := range []string{e.Who, e.OnBehalfOf} {
		if strings.HasPrefix(s, "Patient/") {
			ref("patient", s)
		}
	}
	for _, pid := range e.Patients {
		ref("patient", "Patient/"+pid)
	}
	if strings.HasPrefix(e.Resource, "Patient/") {
		ref("patient", e.Resource)
	}
	// type: AuditEvent.type, a Coding (JSON).
	sys, code, display := typeCoding(e.Kind)
	out = append(out, search.Entry{Param: "type", Type: fhir.ParamToken, System: sys, Code: code, Text: search.Normalize(display)})
	return out, true
}

// addEntry appends x unless the same parameter already has it (the
// indexer's per-parameter de-duplication).
func addEntry(out []search.Entry, x search.Entry) []search.Entry {
	for i := len(out) - 1; i >= 0 && out[i].Param == x.Param; i-- {
		if out[i] == x {
			return out
		}
	}
	return append(out, x)
}

// splitReference splits a relative reference "Type/id" or
// "Type/id/_history/version".
func splitReference(s string) (typ, id, version string, ok bool) {
	typ, rest, ok := strings.Cut(s, "/")
	if !ok || typ == "" || typ[0] < 'A' || typ[0] > 'Z' {
		return "", "", "", false
	}
	for _, c := range typ {
		if c < 'A' || c > 'Z' && c < 'a' || c > 'z' {
			return "", "", "", false
		}
	}
	id, version, versioned := strings.Cut(rest, "/_history/")
	if !fhir.ValidID(id) || versioned && !fhir.ValidID(version) {
		return "", "", "", false
	}
	return typ, id, version, true
}

// typeCoding is the AuditEvent.type coding of an event kind.
func typeCoding(kind string) (system, code, display string) {
	switch kind {
	case "login", "logout", "login-failed", "step-up":
		return dcm, CodeUserAuth, "User Authentication"
	case "break-glass-start", "break-glass-stop":
		return dcm, CodeSecurityAlert, "Security Alert"
	}
	return restTypeSystem, "rest", ""
}
