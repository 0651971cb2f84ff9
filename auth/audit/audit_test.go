package audit_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"regie/auth/audit"
	"regie/fhir"
	"regie/profiles"
)

func events() []*audit.Event {
	t0 := time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)
	return []*audit.Event{
		{ID: "a1", Time: t0, Kind: "rest", Interaction: "read", Action: audit.ActionRead, Who: "Practitioner/coach-sanne", WhoDisplay: "Sanne Jansen",
			Client: "regie-portal", Session: "s-1", Address: "192.0.2.1", Patients: []string{"anna"}, Resource: "CarePlan/plan-1/_history/2", RequestID: "r-1"},
		{ID: "a2", Time: t0, Kind: "rest", Interaction: "search-type", Action: audit.ActionExecute, Who: "RelatedPerson/piet", OnBehalfOf: "Patient/anna",
			Patients: []string{"anna"}, Query: "CarePlan?patient=Patient/anna"},
		{ID: "a3", Time: t0, Kind: "break-glass-start", Action: audit.ActionExecute, Who: "Practitioner/staff-1", Purpose: "ETREAT",
			PurposeText: "client in crisis, coach unreachable", OutcomeDesc: "client in crisis, coach unreachable", Patients: []string{"anna"}},
		{ID: "a4", Time: t0, Kind: "login-failed", Action: audit.ActionExecute, Outcome: audit.SeriousFailure, OutcomeDesc: "wrong password", Address: "198.51.100.7"},
		{ID: "a5", Time: t0, Kind: "rest", Interaction: "create", Action: audit.ActionCreate, Who: "Device/ehr-1", Client: "ehr-1", Resource: "Patient/new/_history/1", Patients: []string{"new"}},
		{ID: "a6", Time: t0, Kind: "step-up", Action: audit.ActionExecute, Who: "Patient/anna"},
		{ID: "a7", Time: t0, Kind: "logout", Action: audit.ActionExecute, Who: "Patient/anna"},
	}
}

// TestEventsAreValidAuditEvents checks every kind of event against the R4
// validator and for the NEN 7513 fields.
func TestEventsAreValidAuditEvents(t *testing.T) {
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.NewValidator(defs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events() {
		body := e.JSON()
		if _, err := v.Validate(body); err != nil {
			t.Errorf("%s (%s): invalid AuditEvent: %v\n%s", e.ID, e.Kind, err, body)
			continue
		}
		var ae map[string]any
		if err := json.Unmarshal(body, &ae); err != nil {
			t.Fatal(err)
		}
		for _, field := range []string{"type", "recorded", "outcome", "agent", "source", "purposeOfEvent"} {
			if ae[field] == nil {
				t.Errorf("%s lacks %s", e.ID, field)
			}
		}
	}
	bg := string(events()[2].JSON())
	for _, want := range []string{`"code":"110113"`, `"code":"110127"`, `"code":"ETREAT"`, `"outcomeDesc":"client in crisis, coach unreachable"`} {
		if !strings.Contains(bg, want) {
			t.Errorf("break-the-glass event lacks %s: %s", want, bg)
		}
	}
}

func TestChainDetectsTampering(t *testing.T) {
	var chain [][]byte
	var prev []byte
	for _, e := range events() {
		sealed, hash, err := audit.Seal(prev, e.JSON())
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, sealed)
		prev = hash
	}
	verify := func(chain [][]byte) error {
		var v audit.Verifier
		for i, b := range chain {
			if err := v.Next(events()[i%len(events())].ID, b); err != nil {
				return err
			}
		}
		return nil
	}
	if err := verify(chain); err != nil {
		t.Fatalf("intact chain: %v", err)
	}
	cases := map[string]func([][]byte) [][]byte{
		"changed outcome": func(c [][]byte) [][]byte {
			c[2] = bytes.Replace(c[2], []byte(`"outcome":"0"`), []byte(`"outcome":"4"`), 1)
			return c
		},
		"removed event": func(c [][]byte) [][]byte { return append(c[:3], c[4:]...) },
		"swapped events": func(c [][]byte) [][]byte {
			c[3], c[4] = c[4], c[3]
			return c
		},
	}
	for name, tamper := range cases {
		t.Run(name, func(t *testing.T) {
			c := make([][]byte, len(chain))
			for i := range chain {
				c[i] = append([]byte(nil), chain[i]...)
			}
			err := verify(tamper(c))
			var broken *audit.BrokenLinkError
			if !errors.As(err, &broken) {
				t.Fatalf("tampering not detected: %v", err)
			}
			if broken.Index != 3 {
				t.Errorf("first broken link reported at %d, want 3", broken.Index)
			}
		})
	}
}
