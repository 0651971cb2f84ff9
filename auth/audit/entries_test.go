package audit_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"regie/auth/audit"
	"regie/fhir"
	"regie/fhir/search"
	"regie/profiles"
)

// TestEntriesAgreeWithTheIndexer checks that Event.Entries gives exactly
// the entries the indexer extracts from the event's JSON, over random
// combinations of every field, so that the shortcut the engine takes for
// every interaction's AuditEvent indexes what a search expects.
func TestEntriesAgreeWithTheIndexer(t *testing.T) {
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		t.Fatal(err)
	}
	ix, err := search.NewIndexer(defs, search.IndexerConfig{BaseURL: "http://regie.test/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	pick := func(r *rand.Rand, xs ...string) string { return xs[r.IntN(len(xs))] }
	r := rand.New(rand.NewPCG(7, 13))
	events := events()
	for i := 0; i < 2000; i++ {
		e := &audit.Event{
			ID:          fmt.Sprintf("r%d", i),
			Time:        time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(400 * 24 * time.Hour)))).Truncate(pickDur(r)),
			Kind:        pick(r, "rest", "rest", "rest", "login", "logout", "login-failed", "step-up", "break-glass-start", "break-glass-stop"),
			Interaction: pick(r, "", "read", "vread", "search-type", "create", "update", "history-instance", "operation"),
			Action:      audit.Action(pick(r, "", "C", "R", "U", "D", "E")),
			Outcome:     audit.Outcome(pick(r, "", "0", "4", "8")),
			OutcomeDesc: pick(r, "", "denied", "reden van tien tekens"),
			Who:         pick(r, "", "Practitioner/coach-1", "Patient/anna", "Patient/bob", "Device/ehr-1", "RelatedPerson/piet"),
			WhoDisplay:  pick(r, "", "Sanne Jansen"),
			OnBehalfOf:  pick(r, "", "", "Patient/anna", "Patient/bob"),
			Client:      pick(r, "", "regie-portal", "ehr-1"),
			Session:     pick(r, "", "s-1"),
			Address:     pick(r, "", "192.0.2.1"),
			Purpose:     pick(r, "", "TREAT", "ETREAT"),
			Resource:    pick(r, "", "CarePlan/p1", "CarePlan/p1/_history/2", "Patient/anna", "Patient/new/_history/1", "AuditEvent/a.1-x"),
			Query:       pick(r, "", "CarePlan?patient=Patient/anna"),
			RequestID:   pick(r, "", "req-1"),
		}
		for _, pid := range []string{"anna", "bob", "new"} {
			if r.IntN(3) == 0 {
				e.Patients = append(e.Patients, pid)
			}
		}
		events = append(events, e)
	}
	for _, e := range events {
		got, ok := e.Entries()
		if !ok {
			t.Errorf("%s: Entries declined a plain event: %+v", e.ID, e)
			continue
		}
		want, err := ix.Index("AuditEvent", e.JSON())
		if err != nil {
			t.Fatalf("%s: %v", e.ID, err)
		}
		if g, w := sortedEntries(got), sortedEntries(want); !slices.Equal(g, w) {
			t.Errorf("%s (%+v):\n got  %v\n want %v", e.ID, *e, g, w)
		}
	}
	// References that are not plain relative ones are left to the indexer.
	for _, e := range []*audit.Event{
		{Kind: "rest", Who: "http://elsewhere.test/fhir/Practitioner/1"},
		{Kind: "rest", Resource: "urn:uuid:7f0c"},
		{Kind: "rest", Resource: "Patient/bad id"},
	} {
		if _, ok := e.Entries(); ok {
			t.Errorf("Entries accepted %+v", *e)
		}
	}
}

func pickDur(r *rand.Rand) time.Duration {
	return []time.Duration{1, time.Microsecond, time.Millisecond, time.Second}[r.IntN(4)]
}

func sortedEntries(es []search.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = fmt.Sprintf("%+v", e)
	}
	slices.Sort(out)
	return out
}
