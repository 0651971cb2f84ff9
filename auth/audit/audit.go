// Package audit turns what happened in Regie into NEN 7513 audit records,
// as FHIR R4 AuditEvents: who (and on whose behalf, through which client
// application), which client's dossier, what (the resource or the query),
// when (UTC), from where, with which outcome and for which purpose. It also
// defines the hash chain that links every AuditEvent to its predecessor, so
// that `regie audit verify` can prove that none was changed or removed.
package audit

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"regie/fhir"
)

// Action is the AuditEvent action code.
type Action string

// Actions (http://hl7.org/fhir/audit-event-action).
const (
	ActionCreate  Action = "C"
	ActionRead    Action = "R"
	ActionUpdate  Action = "U"
	ActionDelete  Action = "D"
	ActionExecute Action = "E"
)

// Outcome is the AuditEvent outcome code.
type Outcome string

// Outcomes (http://hl7.org/fhir/audit-event-outcome).
const (
	Success        Outcome = "0"
	MinorFailure   Outcome = "4"
	SeriousFailure Outcome = "8"
	MajorFailure   Outcome = "12"
)

// Event types and subtypes.
const (
	// RESTful interactions: type rest, subtype the interaction code.
	subtypeRESTSys = "http://hl7.org/fhir/restful-interaction"
	// DICOM codes.
	dcm                  = "http://dicom.nema.org/resources/ontology/DCM"
	CodeSecurityAlert    = "110113"
	CodeUserAuth         = "110114"
	CodeEmergencyStarted = "110127"
	CodeEmergencyStopped = "110128"
	CodeLogin            = "110122"
	CodeLogout           = "110123"
	// Regie's own subtypes.
	RegieSubtypeSystem = "https://regie.nl/fhir/CodeSystem/audit-subtype"
	// The type of every RESTful interaction's event.
	restTypeSystem = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	// The OAuth client an event came through (an agent's identifier).
	clientSystem = "https://regie.nl/fhir/NamingSystem/oauth-client"
)

// ChainURL is the extension that carries the hash of the predecessor.
const ChainURL = "https://regie.nl/fhir/StructureDefinition/audit-chain"

// Event is one audited happening.
type Event struct {
	// ID is the AuditEvent id.
	ID   string
	Time time.Time
	// Kind selects the event type: "rest" (an interaction), "login",
	// "logout", "login-failed", "step-up", "break-glass-start",
	// "break-glass-stop".
	Kind string
	// Interaction is the FHIR interaction of a rest event ("read",
	// "search-type", "create", ...); Operation the operation name.
	Interaction, Operation string
	Action                 Action
	Outcome                Outcome
	// OutcomeDesc explains a failure, or holds the break-the-glass reason.
	OutcomeDesc string

	// Who acted: a FHIR reference, or "" for an unauthenticated party.
	Who string
	// WhoDisplay is shown in access logs (a name, never a BSN).
	WhoDisplay string
	// OnBehalfOf is the patient a related person acted for.
	OnBehalfOf string
	// Client is the OAuth client id the request came through.
	Client string
	// Session is a non-secret identifier of the session.
	Session string
	// Address is the network address the request came from.
	Address string
	// Purpose of use: "TREAT" by default; "ETREAT" for break-the-glass.
	Purpose     string
	PurposeText string

	// Patients are the ids of the clients whose dossier was touched.
	Patients []string
	// Resource is the resource acted on ("Type/id" or "Type/id/_history/v").
	Resource string
	// Query is the search query, as the canonical query string.
	Query string
	// RequestID correlates with the server logs.
	RequestID string
}

// JSON renders the event as an AuditEvent resource (without the chain
// extension, which Seal adds).
//
// The events of ordinary interactions, written for every read, leave out
// the display texts of their codes (the codes say it all, and every byte is
// stored once per request); security events keep them.
func (e *Event) JSON() []byte {
	d := func(display string) string {
		if e.Kind == "rest" {
			return ""
		}
		return display
	}
	b := make([]byte, 0, 1024)
	b = append(b, `{"resourceType":"AuditEvent","id":`...)
	b = fhir.AppendString(b, e.ID)
	b = append(b, `,"type":`...)
	switch e.Kind {
	case "login", "logout", "login-failed", "step-up":
		b = append(b, `{"system":"`+dcm+`","code":"`+CodeUserAuth+`","display":"User Authentication"}`...)
		code, display, sys := CodeLogin, "Login", dcm
		switch e.Kind {
		case "logout":
			code, display = CodeLogout, "Logout"
		case "step-up":
			code, display, sys = "step-up", "Second factor / step-up", RegieSubtypeSystem
		}
		b = appendCoding(append(b, `,"subtype":[`...), sys, code, display)
		b = append(b, ']')
	case "break-glass-start", "break-glass-stop":
		b = append(b, `{"system":"`+dcm+`","code":"`+CodeSecurityAlert+`","display":"Security Alert"}`...)
		code, display := CodeEmergencyStarted, "Emergency Override Started"
		if e.Kind == "break-glass-stop" {
			code, display = CodeEmergencyStopped, "Emergency Override Stopped"
		}
		b = appendCoding(append(b, `,"subtype":[`...), dcm, code, display)
		b = append(b, ']')
	default:
		b = append(b, `{"system":"`+restTypeSystem+`","code":"rest"}`...)
		if e.Interaction != "" {
			b = appendCoding(append(b, `,"subtype":[`...), subtypeRESTSys, e.Interaction, "")
			b = append(b, ']')
		}
	}
	if e.Action != "" {
		b = append(b, `,"action":"`...)
		b = append(b, e.Action...)
		b = append(b, '"')
	}
	b = append(b, `,"recorded":`...)
	b = fhir.AppendString(b, fhir.FormatInstant(e.Time))
	b = append(b, `,"outcome":"`...)
	out := e.Outcome
	if out == "" {
		out = Success
	}
	b = append(b, out...)
	b = append(b, '"')
	if e.OutcomeDesc != "" {
		b = append(b, `,"outcomeDesc":`...)
		b = fhir.AppendString(b, e.OutcomeDesc)
	}
	purpose := e.Purpose
	if purpose == "" {
		purpose = "TREAT"
	}
	b = append(b, `,"purposeOfEvent":[{"coding":[`...)
	b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/v3-ActReason", purpose, "")
	b = append(b, ']')
	if e.PurposeText != "" {
		b = append(b, `,"text":`...)
		b = fhir.AppendString(b, e.PurposeText)
	}
	b = append(b, `}],"agent":[`...)
	b = e.appendAgents(b)
	b = append(b, `],"source":{"site":"regie","observer":{"display":"Regie"},"type":[`...)
	b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/security-source-type", "4", d("Application Server"))
	b = append(b, `]}`...)
	b = e.appendEntities(b)
	return append(b, '}')
}

func (e *Event) appendAgents(b []byte) []byte {
	d := func(display string) string {
		if e.Kind == "rest" {
			return ""
		}
		return display
	}
	b = append(b, `{"type":{"coding":[`...)
	if strings.HasPrefix(e.Who, "Device/") || e.Who == "" && e.Client != "" {
		b = appendCoding(b, dcm, "110150", d("Application"))
	} else {
		b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "humanuser", d("human user"))
	}
	b = append(b, `]}`...)
	b = append(b, `,"who":`...)
	b = appendReference(b, e.Who, e.WhoDisplay)
	if e.Session != "" {
		b = append(b, `,"altId":`...)
		b = fhir.AppendString(b, e.Session)
	}
	b = append(b, `,"requestor":true`...)
	if e.Address != "" {
		b = append(b, `,"network":{"address":`...)
		b = fhir.AppendString(b, e.Address)
		b = append(b, `,"type":"2"}`...)
	}
	b = append(b, '}')
	if e.OnBehalfOf != "" {
		b = append(b, `,{"type":{"coding":[`...)
		b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PAT", d("patient"))
		b = append(b, `],"text":"on behalf of"},"who":`...)
		b = appendReference(b, e.OnBehalfOf, "")
		b = append(b, `,"requestor":false}`...)
	}
	if e.Client != "" {
		b = append(b, `,{"type":{"coding":[`...)
		b = appendCoding(b, dcm, "110150", d("Application"))
		b = append(b, `]},"who":{"identifier":{"system":"`+clientSystem+`","value":`...)
		b = fhir.AppendString(b, e.Client)
		b = append(b, `}},"requestor":false}`...)
	}
	return b
}

func (e *Event) appendEntities(b []byte) []byte {
	d := func(display string) string {
		if e.Kind == "rest" {
			return ""
		}
		return display
	}
	n := 0
	entity := func() {
		if n == 0 {
			b = append(b, `,"entity":[`...)
		} else {
			b = append(b, ',')
		}
		n++
	}
	for _, pid := range e.Patients {
		entity()
		b = append(b, `{"what":{"reference":`...)
		b = fhir.AppendString(b, "Patient/"+pid)
		b = append(b, `},"type":`...)
		b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/audit-entity-type", "1", d("Person"))
		b = append(b, `,"role":`...)
		b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/object-role", "1", d("Patient"))
		b = append(b, '}')
	}
	if e.Resource != "" {
		entity()
		b = append(b, `{"what":{"reference":`...)
		b = fhir.AppendString(b, e.Resource)
		b = append(b, `},"type":`...)
		b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", d("System Object"))
		b = append(b, `,"role":`...)
		b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/object-role", "4", d("Domain Resource"))
		b = append(b, '}')
	}
	if e.Query != "" || e.RequestID != "" {
		entity()
		b = append(b, `{"type":`...)
		b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", d("System Object"))
		if e.Query != "" {
			b = append(b, `,"role":`...)
			b = appendCoding(b, "http://terminology.hl7.org/CodeSystem/object-role", "24", d("Query"))
			b = append(b, `,"query":"`...)
			b = append(b, base64.StdEncoding.EncodeToString([]byte(e.Query))...)
			b = append(b, '"')
		}
		if e.RequestID != "" {
			b = append(b, `,"detail":[{"type":"request-id","valueString":`...)
			b = fhir.AppendString(b, e.RequestID)
			b = append(b, `}]`...)
		}
		b = append(b, '}')
	}
	if n > 0 {
		b = append(b, ']')
	}
	return b
}

func appendCoding(b []byte, system, code, display string) []byte {
	b = append(b, `{"system":`...)
	b = fhir.AppendString(b, system)
	b = append(b, `,"code":`...)
	b = fhir.AppendString(b, code)
	if display != "" {
		b = append(b, `,"display":`...)
		b = fhir.AppendString(b, display)
	}
	return append(b, '}')
}

func appendReference(b []byte, ref, display string) []byte {
	b = append(b, '{')
	if ref != "" {
		b = append(b, `"reference":`...)
		b = fhir.AppendString(b, ref)
		if display != "" {
			b = append(b, ',')
		}
	}
	if display != "" || ref == "" {
		if display == "" {
			display = "anonymous"
		}
		b = append(b, `"display":`...)
		b = fhir.AppendString(b, display)
	}
	return append(b, '}')
}

// Seal links an AuditEvent body to its predecessor: it adds the chain
// extension carrying prev (the predecessor's hash, nil for the first event;
// the argument order is that of storage.Write.Chain)
// and returns the sealed body and its own hash, SHA-256 over the sealed
// compact JSON. Stores call Seal inside the transaction that appends the
// event, with the current head of the chain and the body exactly as it will
// be stored (id and meta stamped), so that the hash covers the stored bytes.
func Seal(prev, body []byte) (sealed, hash []byte, err error) {
	prevText := "genesis"
	if len(prev) > 0 {
		prevText = "sha256:" + hex.EncodeToString(prev)
	}
	ext := `{"url":"` + ChainURL + `","valueString":"` + prevText + `"}`
	found := false
	// insert the extension right after the id
	out := make([]byte, 0, len(body)+len(ext)+16)
	first := true
	err = fhir.ScanObject(body, func(key string, val []byte) error {
		if key == "extension" {
			return errors.New("audit: the event already has extensions")
		}
		if !first {
			out = append(out, ',')
		} else {
			out = append(out, '{')
		}
		first = false
		out = fhir.AppendString(out, key)
		out = append(out, ':')
		out = append(out, val...)
		if key == "id" && !found {
			found = true
			out = append(out, `,"extension":[`...)
			out = append(out, ext...)
			out = append(out, ']')
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if !found {
		return nil, nil, errors.New("audit: the event has no id")
	}
	out = append(out, '}')
	sum := sha256.Sum256(out)
	return out, sum[:], nil
}

// BrokenLinkError reports the first AuditEvent whose chain extension does
// not carry its predecessor's hash.
type BrokenLinkError struct {
	Index int
	ID    string
	Want  string
	Got   string
}

func (e *BrokenLinkError) Error() string {
	return fmt.Sprintf("audit: chain broken at event %d (AuditEvent/%s): it names predecessor %s, but the predecessor hashes to %s", e.Index, e.ID, e.Got, e.Want)
}

// Verifier walks a chain event by event.
type Verifier struct {
	prev []byte
	n    int
}

// Next checks one event (its sealed body, as Seal returned it) against its
// predecessor and returns a *BrokenLinkError when the link does not hold.
func (v *Verifier) Next(id string, sealed []byte) error {
	want := "genesis"
	if v.prev != nil {
		want = "sha256:" + hex.EncodeToString(v.prev)
	}
	got, err := chainValue(sealed)
	if err != nil {
		return &BrokenLinkError{Index: v.n, ID: id, Want: want, Got: "(none: " + err.Error() + ")"}
	}
	if got != want {
		return &BrokenLinkError{Index: v.n, ID: id, Want: want, Got: got}
	}
	sum := sha256.Sum256(sealed)
	v.prev = sum[:]
	v.n++
	return nil
}

// Count returns how many events verified.
func (v *Verifier) Count() int { return v.n }

func chainValue(sealed []byte) (string, error) {
	var val string
	err := fhir.ScanObject(sealed, func(key string, raw []byte) error {
		if key != "extension" {
			return nil
		}
		return fhir.ScanArray(raw, func(x []byte) error {
			var url, v string
			_ = fhir.ScanObject(x, func(k string, r []byte) error {
				switch k {
				case "url":
					url, _ = fhir.StringValue(r)
				case "valueString":
					v, _ = fhir.StringValue(r)
				}
				return nil
			})
			if url == ChainURL {
				val = v
			}
			return nil
		})
	})
	if err != nil {
		return "", err
	}
	if val == "" {
		return "", errors.New("no chain extension")
	}
	return val, nil
}
