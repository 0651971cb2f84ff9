package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"

	"regie/auth/devidp"

	"regie/storage"
)

// Development client: client_secret_basic with system scopes, dev mode only.
const (
	DevClientID     = "regie-dev"
	DevClientSecret = "regie-dev-secret"
)

func devClientConfig() ClientConfig {
	return ClientConfig{
		ID: DevClientID, Secret: DevClientSecret, AuthMethod: "client_secret_basic",
		Scopes: []string{"system/*.cruds"}, GrantTypes: []string{"client_credentials"},
		Subject: "Device/regie-dev",
	}
}

// devMode holds the development conveniences: the outbox, /dev/token and
// the identity simulators.
type devMode struct {
	b    *Broker
	sims []*simulatorMount
}

type simulatorMount struct {
	prefix, providerID, display string
	handler                     http.Handler
}

// Provider ids of the dev-mode simulators.
const (
	DevDigiDProvider        = "dev-digid"
	DevMunicipalityProvider = "dev-municipality"
)

func newDevMode(b *Broker) (*devMode, error) {
	d := &devMode{b: b}
	ob := &outbox{recs: b.recs, now: b.now}
	if b.cfg.Mailer == nil {
		b.cfg.Mailer = ob
	}
	if b.cfg.SMS == nil {
		b.cfg.SMS = ob
	}
	citizens := b.cfg.DevCitizens
	if len(citizens) == 0 {
		citizens = defaultDevCitizens
	}
	staff := b.cfg.DevStaff
	if len(staff) == 0 {
		staff = defaultDevStaff
	}
	empSystem := b.cfg.DevEmployeeIDSystem
	if empSystem == "" {
		empSystem = DefaultEmployeeIDSystem
	}
	var people []devidp.Person
	for i, c := range citizens {
		claims := map[string]any{"bsn": c.BSN}
		if c.ActingForBSN != "" {
			claims["acting_for"] = map[string]any{"bsn": c.ActingForBSN}
		}
		// the broker's pseudonym, stable per person (and per machtiging)
		people = append(people, devidp.Person{Label: c.Label, Subject: fmt.Sprintf("digid-%d-%s", i, mac(b.secrets.ident, "devsub", c.BSN, c.ActingForBSN)[:16]), Claims: claims})
	}
	var employees []devidp.Person
	for _, s := range staff {
		groups := make([]any, len(s.Groups))
		for i, g := range s.Groups {
			groups[i] = g
		}
		employees = append(employees, devidp.Person{Label: s.Label, Subject: "emp-" + s.EmployeeID,
			Claims: map[string]any{"employee_id": s.EmployeeID, "groups": groups, "name": s.Label}})
	}
	levels := []devidp.Level{{ACR: ACRBasis, Label: "Basis"}, {ACR: ACRMidden, Label: "Midden"}, {ACR: ACRSubstantieel, Label: "Substantieel"}, {ACR: ACRHoog, Label: "Hoog"}}
	for _, sim := range []struct {
		id, path, title string
		people          []devidp.Person
		pc              ProviderConfig
	}{
		{DevDigiDProvider, "/dev/digid", "DigiD (simulator)", people, ProviderConfig{Kind: "digid", DisplayName: "DigiD (simulator)"}},
		{DevMunicipalityProvider, "/dev/municipality", "Gemeente (simulator)", employees, ProviderConfig{Kind: "municipality",
			DisplayName: "Medewerker gemeente (simulator)", EmployeeIDSystem: empSystem, DefaultLevel: LevelMidden,
			RoleMap: map[string]string{"coaches": "coach", "care-team": "care-team", "referrers": "referrer", "helpdesk": "helpdesk"}}},
	} {
		secret := randToken(24)
		issuer := b.issuer + sim.path
		s, err := devidp.New(devidp.Config{Issuer: issuer, Title: sim.title, People: sim.people, Levels: levels,
			ClientID: "regie", ClientSecret: secret, RedirectURIs: []string{b.issuer + "/login/callback/" + sim.id}})
		if err != nil {
			return nil, err
		}
		pc := sim.pc
		pc.ID, pc.Issuer, pc.ClientID, pc.ClientSecret = sim.id, issuer, "regie", secret
		b.fed.add(pc)
		d.sims = append(d.sims, &simulatorMount{prefix: sim.path, providerID: sim.id, display: pc.DisplayName, handler: s})
	}
	return d, nil
}

// Demo people when the configuration names none (BSNs pass the 11-proef and
// are in the range reserved for tests).
var defaultDevCitizens = []DevCitizen{
	{Label: "Client (BSN 999990019)", BSN: "999990019"},
	{Label: "Ouder van kind 999990032 (BSN 999990020, DigiD Machtigen)", BSN: "999990020", ActingForBSN: "999990032"},
	{Label: "Onbekende burger (BSN 999990044)", BSN: "999990044"},
}

var defaultDevStaff = []DevStaff{
	{Label: "Coach (medewerker E1001)", EmployeeID: "E1001", Groups: []string{"coaches"}},
	{Label: "Helpdesk (medewerker E1002)", EmployeeID: "E1002", Groups: []string{"helpdesk"}},
}

func (d *devMode) routes(m *http.ServeMux) {
	m.Handle("POST /dev/token", d.b.limitAPI("devtoken", 600, http.HandlerFunc(d.token)))
	m.HandleFunc("GET /dev/outbox", d.outboxPage)
	for _, s := range d.sims {
		m.Handle(s.prefix+"/", s.handler)
	}
}

func (d *devMode) providerChoices() []providerChoice {
	var out []providerChoice
	for _, s := range d.sims {
		out = append(out, providerChoice{ID: s.providerID, DisplayName: s.display})
	}
	return out
}

// token answers POST /dev/token: an access token as if subject had logged
// in (form fields subject, acr, acting_for, and second_factor=1 for a
// fresh second factor).
func (d *devMode) token(w http.ResponseWriter, r *http.Request) {
	b := d.b
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "cannot parse form")
		return
	}
	subject := r.PostForm.Get("subject")
	typ, id, _ := strings.Cut(subject, "/")
	var kind Kind
	scopes := []string{"openid", "fhirUser"}
	switch typ {
	case "Patient":
		kind = KindClient
		scopes = append(scopes, "launch/patient", "patient/*.cruds")
	case "RelatedPerson":
		kind = KindRelated
		scopes = append(scopes, "launch/patient", "patient/*.cruds")
	case "Practitioner":
		kind = KindProfessional
		scopes = append(scopes, "user/*.cruds")
	default:
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "subject must be Patient/…, RelatedPerson/… or Practitioner/…")
		return
	}
	if !validID(id) {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "subject id is invalid")
		return
	}
	level := LevelMidden
	if a := r.PostForm.Get("acr"); a != "" {
		l, ok := ParseLevel(a)
		if !ok {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "acr must be basis, midden, substantieel or hoog")
			return
		}
		level = l
	}
	actingFor := r.PostForm.Get("acting_for")
	if actingFor != "" {
		t, aid, _ := strings.Cut(actingFor, "/")
		if t != "Patient" || !validID(aid) {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "acting_for must be Patient/…")
			return
		}
	}
	now := b.now()
	g := &grant{
		Account: "dev:" + subject, Kind: kind, Subject: subject, ActingFor: actingFor,
		ClientID: DevClientID, Scopes: scopes, Level: level, AuthTime: now, SessionID: "dev-" + randToken(8),
		Provider: "dev", Audience: []string{DevClientID, b.fhirBase}, AMR: []string{"dev"},
	}
	g.Sub = b.pairwiseSub(b.clients[DevClientID], g.Account)
	if r.PostForm.Get("second_factor") == "1" {
		g.SecondFactorTime = now
	}
	if a := r.PostForm.Get("second_factor_age"); a != "" {
		secs, err := strconv.Atoi(a)
		if err != nil || secs < 0 {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "second_factor_age is a number of seconds")
			return
		}
		g.SecondFactorTime = now.Add(-time.Duration(secs) * time.Second)
	}
	if sc := r.PostForm.Get("scope"); sc != "" {
		// narrower scopes than the defaults, for testing scope checks
		g.Scopes = append([]string{"openid", "fhirUser"}, strings.Fields(sc)...)
		scopes = g.Scopes
	}
	switch {
	case actingFor != "":
		g.Patient = actingFor
	case kind == KindClient:
		g.Patient = subject
	}
	ctx := op.ContextWithIssuer(r.Context(), b.issuer)
	at, _, validity, err := op.CreateAccessToken(ctx, g, op.AccessTokenTypeJWT, b.provider, b.clients[DevClientID], "")
	if err != nil {
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "")
		return
	}
	out := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(validity.Seconds()), "scope": strings.Join(scopes, " ")}
	if g.Patient != "" {
		out["patient"] = strings.TrimPrefix(g.Patient, "Patient/")
	}
	writeJSON(w, http.StatusOK, out)
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// outbox keeps e-mails and text messages in Records for /dev/outbox.
type outbox struct {
	recs storage.Records
	now  func() time.Time
}

type outboxMessage struct {
	At      time.Time `json:"at"`
	Channel string    `json:"ch"`
	To      string    `json:"to"`
	Subject string    `json:"subj,omitempty"`
	Body    string    `json:"body"`
}

func (o *outbox) put(ctx context.Context, m outboxMessage) error {
	key := fmt.Sprintf("%020d-%s", m.At.UnixNano(), randToken(4))
	_, err := putJSON(ctx, o.recs, kindDevOutbox, key, m, m.At.Add(24*time.Hour), 0)
	return err
}

func (o *outbox) SendMail(ctx context.Context, to, subject, body string) error {
	return o.put(ctx, outboxMessage{At: o.now(), Channel: "e-mail", To: to, Subject: subject, Body: body})
}

func (o *outbox) SendSMS(ctx context.Context, to, text string) error {
	return o.put(ctx, outboxMessage{At: o.now(), Channel: "sms", To: to, Body: text})
}

// messages returns the outbox, newest first.
func (o *outbox) messages(ctx context.Context) []outboxMessage {
	var out []outboxMessage
	_ = o.recs.ListRecords(ctx, kindDevOutbox, "", func(r *storage.Record) error {
		var m outboxMessage
		if json.Unmarshal(r.Value, &m) == nil {
			out = append([]outboxMessage{m}, out...)
		}
		return nil
	})
	return out
}

var outboxTmpl = template.Must(template.New("outbox").Parse(`<!doctype html><html lang="nl"><head><meta charset="utf-8"><title>Outbox · Regie dev</title>
<style>body{font-family:system-ui,sans-serif;max-width:50rem;margin:0 auto;padding:1rem}.dev{background:#b00020;color:#fff;font-weight:bold;padding:.75rem;text-align:center}pre{white-space:pre-wrap;background:#f4f4f4;padding:.5rem}</style></head>
<body><div class="dev" role="alert">ONTWIKKELOMGEVING — DEVELOPMENT MODE</div><main><h1>Outbox</h1>
{{range .}}<section><h2>{{.Channel}} → {{.To}}</h2><p>{{.At.Format "2006-01-02 15:04:05"}}{{if .Subject}} · {{.Subject}}{{end}}</p><pre>{{.Body}}</pre></section>{{else}}<p>Geen berichten. / No messages.</p>{{end}}
</main></body></html>`))

func (d *devMode) outboxPage(w http.ResponseWriter, r *http.Request) {
	ob := &outbox{recs: d.b.recs, now: d.b.now}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = outboxTmpl.Execute(w, ob.messages(r.Context()))
}
