package regie

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"regie/auth"
)

// chainEvents returns every AuditEvent of the stack's hash chain, in order.
func (s *stack) chainEvents(t *testing.T) []map[string]any {
	t.Helper()
	var evs []map[string]any
	err := s.store.WalkChain(context.Background(), func(id string, body []byte) error {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		evs = append(evs, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// request performs an API request with a token and returns the status.
func (s *stack) request(t *testing.T, token, method, path, body string, headers ...string) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, s.base+"/fhir"+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (s *stack) tokenAs(t *testing.T, subject string, extra ...string) string {
	t.Helper()
	r := &matrixRow{}
	r.Principal.Subject = subject
	for _, e := range extra {
		if e == "second-factor" {
			zero := 0
			r.Principal.SecondFactorAgeSeconds = &zero
		}
	}
	return s.token(t, r)
}

// codes returns the codes of the AuditEvent's type and subtypes.
func codes(ev map[string]any) (typ string, subtypes []string) {
	if tm, ok := ev["type"].(map[string]any); ok {
		typ = sval(tm["code"])
	}
	st, _ := ev["subtype"].([]any)
	for _, c := range st {
		subtypes = append(subtypes, sval(c.(map[string]any)["code"]))
	}
	return typ, subtypes
}

// checkNEN7513 checks the fields NEN 7513 requires of every AuditEvent:
// who, when, what, from where, outcome, purpose, and the chain link.
func checkNEN7513(t *testing.T, ev map[string]any, who string) {
	t.Helper()
	agents, _ := ev["agent"].([]any)
	if len(agents) == 0 {
		t.Fatalf("no agent: %v", ev)
	}
	a0 := agents[0].(map[string]any)
	if got := sval(a0["who"].(map[string]any)["reference"]); who != "" && got != who {
		t.Errorf("who %q, want %q", got, who)
	}
	if a0["requestor"] != true {
		t.Error("the first agent is not the requestor")
	}
	if net, _ := a0["network"].(map[string]any); who != "" && sval(net["address"]) == "" {
		t.Errorf("no network address: %v", a0)
	}
	rec, err := time.Parse(time.RFC3339Nano, sval(ev["recorded"]))
	if err != nil || time.Since(rec) > time.Minute || rec.Location() != time.UTC && !strings.HasSuffix(sval(ev["recorded"]), "Z") {
		t.Errorf("recorded %v (%v)", ev["recorded"], err)
	}
	if sval(ev["outcome"]) == "" || ev["source"] == nil || ev["purposeOfEvent"] == nil {
		t.Errorf("outcome, source or purpose missing: %v", ev)
	}
	ext, _ := ev["extension"].([]any)
	if len(ext) == 0 || !strings.HasPrefix(sval(ext[0].(map[string]any)["valueString"]), "sha256:") {
		t.Errorf("no link to the predecessor: %v", ev["extension"])
	}
}

func patientsOf(ev map[string]any) []string {
	var ps []string
	ents, _ := ev["entity"].([]any)
	for _, e := range ents {
		em := e.(map[string]any)
		if w, ok := em["what"].(map[string]any); ok && strings.HasPrefix(sval(w["reference"]), "Patient/") {
			if role, _ := em["role"].(map[string]any); sval(role["code"]) == "1" {
				ps = append(ps, sval(w["reference"]))
			}
		}
	}
	return ps
}

// TestEveryInteractionLeavesOneAuditEvent performs every kind of
// interaction through the API (and the identity events through the
// engine's Auditor) and checks that each leaves exactly the AuditEvents it
// should, with the NEN 7513 fields, and that the chain verifies.
func TestEveryInteractionLeavesOneAuditEvent(t *testing.T) {
	p := newParts(t)
	dir := t.TempDir()
	s := startStack(t, p, dir)
	defer s.close()
	s.loadDemo(t, p)

	sanne := s.tokenAs(t, "Practitioner/coach-sanne")
	anna2fa := s.tokenAs(t, "Patient/anna-de-vries", "second-factor")
	eva2fa := s.tokenAs(t, "Practitioner/coach-eva", "second-factor")
	note := `{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"https://regie.nl/fhir/CodeSystem/dossier-part","code":"journal"}]}],"code":{"text":"voortgang"},"subject":{"reference":"Patient/anna-de-vries"},"performer":[{"reference":"Practitioner/coach-sanne"}],"valueString":"Gesprek gehad."}`

	type step struct {
		name    string
		do      func() int
		status  int
		kinds   []string // the event kinds, in order: "rest:<interaction>" or the identity/BTG kind
		who     string
		patient string
		outcome string
	}
	var created string
	steps := []step{
		{name: "read", do: func() int { return s.request(t, sanne, "GET", "/Patient/anna-de-vries", "") }, status: 200,
			kinds: []string{"rest:read"}, who: "Practitioner/coach-sanne", patient: "Patient/anna-de-vries", outcome: "0"},
		{name: "vread", do: func() int { return s.request(t, sanne, "GET", "/Patient/anna-de-vries/_history/1", "") }, status: 200,
			kinds: []string{"rest:vread"}, who: "Practitioner/coach-sanne", patient: "Patient/anna-de-vries", outcome: "0"},
		{name: "create", do: func() int { return s.request(t, sanne, "POST", "/Observation", note) }, status: 201,
			kinds: []string{"rest:create"}, who: "Practitioner/coach-sanne", patient: "Patient/anna-de-vries", outcome: "0"},
		{name: "update", do: func() int {
			body := strings.Replace(note, `"resourceType":"Observation",`, `"resourceType":"Observation","id":"`+created+`",`, 1)
			return s.request(t, sanne, "PUT", "/Observation/"+created, strings.Replace(body, "Gesprek gehad.", "Gesprek gehad; vervolg gepland.", 1))
		}, status: 200, kinds: []string{"rest:update"}, who: "Practitioner/coach-sanne", patient: "Patient/anna-de-vries", outcome: "0"},
		{name: "patch", do: func() int {
			return s.request(t, sanne, "PATCH", "/Observation/"+created, `[{"op":"replace","path":"/valueString","value":"Bijgewerkt."}]`, "Content-Type: application/json-patch+json")
		}, status: 200, kinds: []string{"rest:patch"}, who: "Practitioner/coach-sanne", patient: "Patient/anna-de-vries", outcome: "0"},
		{name: "history", do: func() int { return s.request(t, sanne, "GET", "/Observation/"+created+"/_history", "") }, status: 200,
			kinds: []string{"rest:history-instance"}, who: "Practitioner/coach-sanne", patient: "Patient/anna-de-vries", outcome: "0"},
		{name: "delete", do: func() int { return s.request(t, sanne, "DELETE", "/Observation/"+created, "") }, status: 204,
			kinds: []string{"rest:delete"}, who: "Practitioner/coach-sanne", patient: "Patient/anna-de-vries", outcome: "0"},
		{name: "search", do: func() int { return s.request(t, sanne, "GET", "/CarePlan?_id=anna-plan-2026", "") }, status: 200,
			kinds: []string{"rest:search-type"}, who: "Practitioner/coach-sanne", patient: "Patient/anna-de-vries", outcome: "0"},
		{name: "operation", do: func() int { return s.request(t, sanne, "GET", "/Patient/anna-de-vries/$everything", "") }, status: -1,
			kinds: []string{"rest:operation"}, who: "Practitioner/coach-sanne"},
		{name: "consent change", do: func() int {
			body := `{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/anna-de-vries"},"provision":{"type":"deny","actor":[{"role":{"text":"partner"},"reference":{"reference":"RelatedPerson/mark-de-vries"}}],"code":[{"coding":[{"system":"https://regie.nl/fhir/CodeSystem/dossier-part","code":"appointments"}]}]}}`
			return s.request(t, anna2fa, "POST", "/Consent", body)
		}, status: 201, kinds: []string{"rest:create"}, who: "Patient/anna-de-vries", patient: "Patient/anna-de-vries", outcome: "0"},
		{name: "denied read", do: func() int { return s.request(t, eva2fa, "GET", "/CarePlan/anna-plan-2026", "") }, status: 404,
			kinds: []string{"rest:read"}, who: "Practitioner/coach-eva", outcome: "4"},
		{name: "break-the-glass start", do: func() int {
			return s.request(t, eva2fa, "GET", "/Patient/anna-de-vries", "", "X-Regie-Break-Glass: cliënt in crisis, coach niet bereikbaar")
		}, status: 200, kinds: []string{"break-glass-start", "rest:read"}, who: "Practitioner/coach-eva", patient: "Patient/anna-de-vries", outcome: "0"},
		{name: "break-the-glass stop", do: func() int { return s.request(t, eva2fa, "POST", "/Patient/anna-de-vries/$end-break-glass", "") }, status: 200,
			kinds: []string{"break-glass-stop", "rest:operation"}, who: "Practitioner/coach-eva", patient: "Patient/anna-de-vries", outcome: "0"},
	}
	for _, ae := range []struct{ action, outcome, kind string }{
		{"login", "success", "login"}, {"login-failed", "failure", "login-failed"}, {"step-up", "success", "step-up"}, {"logout", "success", "logout"},
	} {
		ae := ae
		steps = append(steps, step{name: ae.action, do: func() int {
			err := s.eng.Audit(context.Background(), auth.AuditEvent{Action: ae.action, Outcome: ae.outcome, Subject: "Patient/anna-de-vries",
				When: time.Now(), IP: "192.0.2.7", ClientID: "portal", Provider: "dev-digid", SessionID: "s-1"})
			if err != nil {
				t.Fatal(err)
			}
			return -1
		}, status: -1, kinds: []string{ae.kind}, who: "Patient/anna-de-vries", patient: "Patient/anna-de-vries"})
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := len(s.chainEvents(t))
			status := st.do()
			if st.status >= 0 && status != st.status {
				t.Fatalf("status %d, want %d", status, st.status)
			}
			evs := s.chainEvents(t)
			added := evs[before:]
			var kinds []string
			for _, ev := range added {
				typ, subs := codes(ev)
				switch typ {
				case "rest":
					kinds = append(kinds, "rest:"+strings.Join(subs, ","))
				case "110113":
					if len(subs) == 1 && subs[0] == "110127" {
						kinds = append(kinds, "break-glass-start")
					} else {
						kinds = append(kinds, "break-glass-stop")
					}
				case "110114":
					switch {
					case len(subs) == 1 && subs[0] == "110123":
						kinds = append(kinds, "logout")
					case len(subs) == 1 && subs[0] == "step-up":
						kinds = append(kinds, "step-up")
					case sval(ev["outcome"]) != "0":
						kinds = append(kinds, "login-failed")
					default:
						kinds = append(kinds, "login")
					}
				default:
					kinds = append(kinds, "?"+typ)
				}
			}
			if strings.Join(kinds, " ") != strings.Join(st.kinds, " ") {
				t.Fatalf("added AuditEvents %v, want %v", kinds, st.kinds)
			}
			for _, ev := range added {
				checkNEN7513(t, ev, st.who)
				if st.patient != "" && !strings.Contains(strings.Join(patientsOf(ev), ","), st.patient) {
					t.Errorf("%v does not name %s as the client whose dossier it is", kinds, st.patient)
				}
				if st.outcome != "" && sval(ev["outcome"]) != st.outcome {
					t.Errorf("outcome %v, want %s", ev["outcome"], st.outcome)
				}
			}
			if st.name == "create" {
				// remember the created note for the next steps
				for _, ev := range added {
					for _, e := range ev["entity"].([]any) {
						what, _ := e.(map[string]any)["what"].(map[string]any)
						ref := sval(what["reference"])
						if strings.HasPrefix(ref, "Observation/") {
							created = strings.Split(ref, "/")[1]
						}
					}
				}
				if created == "" {
					t.Fatal("the create event does not name the created resource")
				}
			}
			if st.name == "break-the-glass start" {
				// the client is told by e-mail (the outbox in development mode)
				resp, err := http.Get(s.base + "/dev/outbox")
				if err != nil {
					t.Fatal(err)
				}
				ob, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(ob), "anna.devries@mail.example") || !strings.Contains(string(ob), "Uw dossier is geopend") {
					t.Errorf("no break-the-glass notice to the client in the outbox:\n%.2000s", ob)
				}
				bg := added[0]
				var b bytes.Buffer
				json.NewEncoder(&b).Encode(bg)
				for _, want := range []string{`"ETREAT"`, `cliënt in crisis, coach niet bereikbaar`} {
					if !strings.Contains(b.String(), want) {
						t.Errorf("break-the-glass event lacks %s: %s", want, b.String())
					}
				}
			}
		})
	}
	if n, err := s.eng.VerifyAudit(context.Background()); err != nil || n != len(s.chainEvents(t)) {
		t.Errorf("verify: %d events, %v", n, err)
	}
}

func sval(v any) string { s, _ := v.(string); return s }
