package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"regie/storage"
)

// docDirectory answers Directory lookups from a small set of FHIR JSON
// documents.
type docDirectory struct{ docs map[string]string }

func (d docDirectory) FindByIdentifier(_ context.Context, typ, system, value string) ([]string, error) {
	var out []string
	for ref, doc := range d.docs {
		if !strings.HasPrefix(ref, typ+"/") {
			continue
		}
		var r struct {
			Identifier []struct{ System, Value string } `json:"identifier"`
		}
		if err := json.Unmarshal([]byte(doc), &r); err != nil {
			return nil, err
		}
		for _, id := range r.Identifier {
			if id.System == system && id.Value == value {
				out = append(out, ref)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

func (d docDirectory) Read(_ context.Context, ref string) ([]byte, error) {
	if doc, ok := d.docs[ref]; ok {
		return []byte(doc), nil
	}
	return nil, fmt.Errorf("test directory: %s: %w", ref, storage.ErrNotFound)
}

var testDirectory = docDirectory{docs: map[string]string{
	"Patient/anna":         `{"resourceType":"Patient","id":"anna","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999990019"}]}`,
	"Patient/sam":          `{"resourceType":"Patient","id":"sam","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999990032"}]}`,
	"RelatedPerson/moeder": `{"resourceType":"RelatedPerson","id":"moeder","patient":{"reference":"Patient/sam"},"identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999990020"}]}`,
	"Practitioner/coach1":  `{"resourceType":"Practitioner","id":"coach1","identifier":[{"system":"https://regie.nl/fhir/NamingSystem/employee-id","value":"E1001"}]}`,
	"Practitioner/new1":    `{"resourceType":"Practitioner","id":"new1"}`,
}}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newDevFixture(t *testing.T, mutate func(*Config)) (*fixture, *syncBuffer) {
	logs := &syncBuffer{}
	f := newFixture(t, func(c *Config) {
		c.Dev = true
		c.Directory = testDirectory
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.DevStaff = []DevStaff{
			{Label: "Coach", EmployeeID: "E1001", Groups: []string{"coaches", "unmapped"}},
			{Label: "Nieuw", EmployeeID: "E9999", Groups: []string{"referrers"}},
		}
		if mutate != nil {
			mutate(c)
		}
	})
	return f, logs
}

var simID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// simLogin drives the simulator page: it is at resp (the sim login page)
// and picks person idx at acr.
func (f *fixture) simLogin(hc *http.Client, page *http.Response, idx int, acr string) *http.Response {
	f.t.Helper()
	b := body(f.t, page)
	m := simID.FindStringSubmatch(b)
	if m == nil {
		f.t.Fatalf("not a simulator page (%d %s): %.300s", page.StatusCode, page.Request.URL, b)
	}
	form := url.Values{"id": {m[1]}, "person": {fmt.Sprint(idx)}}
	if acr != "" {
		form.Set("acr", acr)
	}
	action := page.Request.URL.Scheme + "://" + page.Request.URL.Host + strings.TrimSuffix(page.Request.URL.Path, "/login") + "/login"
	resp, err := hc.PostForm(action, form)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

// federatedLogin runs app → broker → simulator → broker → app.
func (f *fixture) federatedLogin(hc *http.Client, provider string, idx int, acr string, p authParams) *http.Response {
	f.t.Helper()
	resp := f.get(hc, f.authorizeURL(p))
	resp.Body.Close()
	id := resp.Request.URL.Query().Get("authRequestID")
	if id == "" {
		f.t.Fatalf("not at the login page: %s", resp.Request.URL)
	}
	page := f.get(hc, f.base+"/login/provider/"+provider+"?authRequestID="+url.QueryEscape(id))
	return f.simLogin(hc, page, idx, acr)
}

func TestFederationDigiD(t *testing.T) {
	f, logs := newDevFixture(t, nil)
	hc := f.browser()
	p := defaultParams()
	resp := f.federatedLogin(hc, DevDigiDProvider, 0, ACRSubstantieel, p)
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != p.state {
		t.Fatalf("no code back at the app: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	r2, tok := f.exchange(hc, "app", loc.Query().Get("code"), appRedirect, p.verifier)
	if r2.StatusCode != http.StatusOK {
		t.Fatalf("token %v", tok)
	}
	pr, err := f.b.AuthenticateBearer(context.Background(), "Bearer "+tok["access_token"].(string), RequestMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Kind != KindClient || pr.Subject != "Patient/anna" || pr.Level != LevelSubstantieel || pr.Provider != DevDigiDProvider || pr.Patient != "Patient/anna" {
		t.Errorf("principal %+v", pr)
	}
	if tok["patient"] != "anna" {
		t.Errorf("launch patient %v", tok["patient"])
	}
	ev := f.audit.find("login", "success")
	if len(ev) != 1 || ev[0].Subject != "Patient/anna" || ev[0].Provider != DevDigiDProvider || ev[0].Level != LevelSubstantieel || ev[0].IP != "127.0.0.1" {
		t.Errorf("login audit %+v", ev)
	}
	// the BSN is not the sub, not in the access token, and never logged
	claims := jwtPayload(tok["id_token"].(string))
	if claims["sub"] == "999990019" || claims["bsn"] != nil || strings.Contains(tok["access_token"].(string), "999990019") {
		t.Error("BSN leaked into tokens")
	}
	if strings.Contains(logs.String(), "99999") {
		t.Errorf("BSN in logs: %s", logs.String())
	}
	for _, e := range f.audit.events {
		if strings.Contains(fmt.Sprintf("%+v", e), "99999") {
			t.Errorf("BSN in audit event %+v", e)
		}
	}
	// identities are stored under keyed hashes, not BSNs or upstream subjects
	_ = f.recs.ListRecords(context.Background(), kindIdentity, "", func(r *storage.Record) error {
		if strings.Contains(r.Key, "99999") || strings.Contains(r.Key, "digid-") {
			t.Errorf("identity key %q exposes the subject", r.Key)
		}
		return nil
	})
	// a BSN-entitled client gets the BSN
	p2 := defaultParams()
	p2.client, p2.scope = "other", "openid fhirUser"
	tok2 := f.codeLogin(hc, p2) // session reused
	if c := jwtPayload(tok2["id_token"].(string)); c["bsn"] != "999990019" {
		t.Errorf("entitled client: bsn %v", c["bsn"])
	}
}

func TestFederationMachtigen(t *testing.T) {
	f, _ := newDevFixture(t, nil)
	hc := f.browser()
	p := defaultParams()
	resp := f.federatedLogin(hc, DevDigiDProvider, 1, ACRMidden, p)
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	_, tok := f.exchange(hc, "app", loc.Query().Get("code"), appRedirect, p.verifier)
	pr, err := f.b.AuthenticateBearer(context.Background(), "Bearer "+fmt.Sprint(tok["access_token"]), RequestMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Kind != KindRelated || pr.Subject != "RelatedPerson/moeder" || pr.ActingFor != "Patient/sam" || pr.Patient != "Patient/sam" || pr.Level != LevelMidden {
		t.Errorf("principal %+v", pr)
	}
	// DigiD Midden is two-factor: a fresh second factor for five minutes
	need := Requirement{Level: LevelMidden, SecondFactorWithin: 5 * time.Minute}
	if err := f.b.StepUp(pr, need, "/x"); err != nil {
		t.Errorf("fresh DigiD Midden login: %v", err)
	}
	f.clock.Advance(6 * time.Minute)
	if err := f.b.StepUp(pr, need, "/x"); err == nil {
		t.Error("second factor of six minutes ago accepted")
	}
}

func TestFederationNoMatch(t *testing.T) {
	f, _ := newDevFixture(t, nil)
	hc := f.browser()
	resp := f.federatedLogin(hc, DevDigiDProvider, 2, ACRMidden, defaultParams())
	b := body(t, resp)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(b, "Geen dossier gevonden") {
		t.Errorf("no-match page: %d %.200s", resp.StatusCode, b)
	}
	n := 0
	_ = f.recs.ListRecords(context.Background(), kindAccount, "", func(*storage.Record) error { n++; return nil })
	_ = f.recs.ListRecords(context.Background(), kindSession, "", func(*storage.Record) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d accounts/sessions created for an unmatched citizen", n)
	}
	if ev := f.audit.find("login-failed", "failure"); len(ev) != 1 || ev[0].Reason != "no-match" || ev[0].Provider != DevDigiDProvider {
		t.Errorf("audit %+v", ev)
	}
}

func TestFederationInvalidBSN(t *testing.T) {
	f, _ := newDevFixture(t, func(c *Config) {
		c.DevCitizens = []DevCitizen{{Label: "bad", BSN: "123456789"}}
	})
	hc := f.browser()
	resp := f.federatedLogin(hc, DevDigiDProvider, 0, ACRMidden, defaultParams())
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d", resp.StatusCode)
	}
	if ev := f.audit.find("login-failed", "failure"); len(ev) != 1 || ev[0].Reason != "bsn-invalid" {
		t.Errorf("audit %+v", ev)
	}
}

func TestFederationStateAndNonce(t *testing.T) {
	f, _ := newDevFixture(t, nil)
	ctx := context.Background()
	start := func(hc *http.Client) *http.Response {
		resp := f.get(hc, f.authorizeURL(defaultParams()))
		resp.Body.Close()
		id := resp.Request.URL.Query().Get("authRequestID")
		return f.get(hc, f.base+"/login/provider/"+DevDigiDProvider+"?authRequestID="+url.QueryEscape(id))
	}
	t.Run("unknown state", func(t *testing.T) {
		resp := f.get(f.browser(), f.base+"/login/callback/"+DevDigiDProvider+"?code=x&state=forged")
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("state from another browser", func(t *testing.T) {
		victim := f.browser()
		page := start(victim)
		// the attacker completes the upstream login and sends the callback URL to another browser
		noFollow := *victim
		noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp := f.simLogin(&noFollow, page, 0, ACRMidden)
		resp.Body.Close()
		// follow the sim's callback until it points at the broker's callback
		next := resp.Header.Get("Location")
		for i := 0; i < 5 && !strings.Contains(next, "/login/callback/"); i++ {
			r, err := noFollow.Get(next)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			next = r.Header.Get("Location")
		}
		if !strings.Contains(next, "/login/callback/") {
			t.Fatalf("did not reach the broker callback: %s", next)
		}
		attacker := f.browser()
		r := f.get(attacker, next)
		r.Body.Close()
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("callback in another browser: %d", r.StatusCode)
		}
		// and the state is spent: the victim cannot replay it either
		r = f.get(victim, next)
		r.Body.Close()
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("replayed state: %d", r.StatusCode)
		}
	})
	t.Run("nonce mismatch", func(t *testing.T) {
		hc := f.browser()
		page := start(hc)
		// tamper with the stored nonce, as if the ID token were for another login
		_ = f.recs.ListRecords(ctx, kindLogin, "", func(r *storage.Record) error {
			var st loginState
			_ = json.Unmarshal(r.Value, &st)
			st.Nonce = "other"
			_, err := putJSON(ctx, f.recs, kindLogin, r.Key, st, r.Expires, r.Version)
			return err
		})
		resp := f.simLogin(hc, page, 0, ACRMidden)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d", resp.StatusCode)
		}
		if ev := f.audit.find("login-failed", "failure"); len(ev) == 0 || ev[len(ev)-1].Reason != "nonce" {
			t.Errorf("audit %+v", ev)
		}
	})
	if n := len(f.audit.find("login", "success")); n != 0 {
		t.Errorf("%d logins succeeded", n)
	}
}

func TestFederationMunicipality(t *testing.T) {
	f, _ := newDevFixture(t, nil)
	ctx := context.Background()
	hc := f.browser()
	p := defaultParams()
	p.scope = "openid fhirUser user/*.cruds"
	resp := f.federatedLogin(hc, DevMunicipalityProvider, 0, ACRMidden, p)
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	_, tok := f.exchange(hc, "app", loc.Query().Get("code"), appRedirect, p.verifier)
	pr, err := f.b.AuthenticateBearer(ctx, "Bearer "+fmt.Sprint(tok["access_token"]), RequestMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Kind != KindProfessional || pr.Subject != "Practitioner/coach1" || !slices.Equal(pr.Roles, []string{"coach"}) || !slices.Contains(pr.Scopes, "user/*.cruds") {
		t.Errorf("principal %+v", pr)
	}
	// an employee without a Practitioner: no match, then linked by invitation
	hc2 := f.browser()
	resp = f.federatedLogin(hc2, DevMunicipalityProvider, 1, ACRMidden, defaultParams())
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unknown employee: %d", resp.StatusCode)
	}
	link, err := f.b.InvitePractitioner(ctx, "Practitioner/new1", DevMunicipalityProvider)
	if err != nil {
		t.Fatal(err)
	}
	page := f.get(hc2, link)
	resp = f.simLogin(hc2, page, 1, ACRMidden)
	resp.Body.Close()
	if resp.Request.URL.Path != "/" && resp.StatusCode >= 400 {
		t.Fatalf("invitation login: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	c, _ := url.Parse(f.base)
	var cookie string
	for _, ck := range hc2.Jar.Cookies(c) {
		if ck.Name == f.b.SessionCookieName() {
			cookie = ck.Value
		}
	}
	sp, err := f.b.AuthenticateSession(ctx, cookie, RequestMeta{})
	if err != nil || sp.Subject != "Practitioner/new1" || !slices.Equal(sp.Roles, []string{"referrer"}) {
		t.Fatalf("invited professional: %+v %v", sp, err)
	}
	// the invitation is single use, but the link persists for later logins
	page = f.get(f.browser(), link)
	resp = f.simLogin(f.browser(), page, 0, ACRMidden)
	resp.Body.Close()
	hc3 := f.browser()
	resp = f.federatedLogin(hc3, DevMunicipalityProvider, 1, ACRMidden, defaultParams())
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "code=") {
		t.Errorf("linked professional cannot log in again: %d %s", resp.StatusCode, loc)
	}
}

func TestFederationStepUpUpstream(t *testing.T) {
	f, _ := newDevFixture(t, nil)
	hc := f.browser()
	p := defaultParams()
	resp := f.federatedLogin(hc, DevDigiDProvider, 0, ACRMidden, p)
	resp.Body.Close()
	// the app now asks for Hoog: the broker sends the citizen back to DigiD with acr_values
	p2 := defaultParams()
	p2.extra = url.Values{"acr_values": {ACRHoog}}
	resp = f.get(hc, f.authorizeURL(p2))
	if !strings.Contains(resp.Request.URL.Path, "/dev/digid/login") {
		t.Fatalf("not sent upstream for step-up: %s", resp.Request.URL)
	}
	resp = f.simLogin(hc, resp, 0, ACRHoog)
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code after step-up: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, tok := f.exchange(hc, "app", loc.Query().Get("code"), appRedirect, p2.verifier)
	if c := jwtPayload(fmt.Sprint(tok["id_token"])); c["acr"] != ACRHoog {
		t.Errorf("acr after step-up = %v", c["acr"])
	}
	if len(f.audit.find("step-up", "success")) != 1 {
		t.Errorf("step-up not audited: %+v", f.audit.events)
	}
	// stepping up as another person is refused
	hc2 := f.browser()
	resp = f.federatedLogin(hc2, DevDigiDProvider, 0, ACRMidden, defaultParams())
	resp.Body.Close()
	resp = f.get(hc2, f.authorizeURL(p2))
	resp = f.simLogin(hc2, resp, 1, ACRHoog)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("step-up as another person: %d", resp.StatusCode)
	}
	if ev := f.audit.find("step-up-failed", "failure"); len(ev) != 1 || ev[0].Reason != "other-person" {
		t.Errorf("audit %+v", ev)
	}
}
