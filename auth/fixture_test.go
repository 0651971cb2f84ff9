package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"regie/auth/notify"
	"regie/auth/notify/notifytest"
	"regie/storage"
	"regie/storage/embedded"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// auditLog captures audit events.
type auditLog struct {
	mu     sync.Mutex
	events []AuditEvent
}

func (a *auditLog) Audit(_ context.Context, e AuditEvent) error {
	a.mu.Lock()
	a.events = append(a.events, e)
	a.mu.Unlock()
	return nil
}

func (a *auditLog) find(action, outcome string) []AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []AuditEvent
	for _, e := range a.events {
		if e.Action == action && (outcome == "" || e.Outcome == outcome) {
			out = append(out, e)
		}
	}
	return out
}

type fixture struct {
	smtp  *notifytest.SMTPServer
	gw    *notifytest.Gateway
	t     testing.TB
	b     *Broker
	srv   *httptest.Server
	base  string
	recs  storage.Records
	clock *clock
	audit *auditLog
	// backend is the private key of the "ehr" private_key_jwt client.
	backend *ecdsa.PrivateKey
}

const (
	appRedirect = "http://127.0.0.1:1/callback"
	appSecret   = "app-secret-0123456789"
)

// newRecords returns the Records the tests run on: the embedded store, in
// a fresh directory, on the test clock.
func newRecords(t testing.TB, now func() time.Time) storage.Records {
	t.Helper()
	s, err := embedded.Open(t.TempDir(), &embedded.Options{Now: now, PurgeInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newFixture(t testing.TB, mutate func(*Config)) *fixture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	f := &fixture{t: t, base: base, clock: &clock{t: time.Now().UTC()}, audit: &auditLog{}}
	f.recs = newRecords(t, f.clock.Now)
	f.backend, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: f.backend.Public(), KeyID: "ehr-1", Algorithm: "ES384", Use: "sig"}}})
	cfg := Config{
		BaseURL: base,
		Secret:  []byte("0123456789abcdef0123456789abcdef"),
		Records: f.recs,
		Auditor: f.audit,
		Now:     f.clock.Now,
		Clients: []ClientConfig{
			{ID: "app", Secret: appSecret, AuthMethod: "client_secret_basic", RedirectURIs: []string{appRedirect},
				PostLogoutRedirectURIs: []string{"http://127.0.0.1:1/bye"},
				Scopes:                 []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.cruds", "user/*.cruds"}},
			{ID: "other", Secret: appSecret, AuthMethod: "client_secret_basic", RedirectURIs: []string{appRedirect},
				Scopes: []string{"openid", "fhirUser", "patient/*.rs"}, BSNEntitled: true},
			{ID: "ehr", AuthMethod: "private_key_jwt", JWKS: jwks, Scopes: []string{"system/*.rs", "system/Observation.cruds"},
				GrantTypes: []string{"client_credentials"}, Subject: "Device/ehr", Organization: "Organization/zorg"},
			{ID: "rs", Secret: appSecret, AuthMethod: "client_secret_basic", Scopes: []string{}},
		},
	}
	f.smtp = notifytest.NewSMTPServer(t)
	f.gw = notifytest.NewGateway(t)
	mailer, err := notify.NewSMTP(notify.SMTPConfig{Host: f.smtp.Host, Port: f.smtp.Port, Username: f.smtp.Username,
		Password: f.smtp.Password, From: "noreply@regie.example", RootCAs: f.smtp.RootCAs})
	if err != nil {
		t.Fatal(err)
	}
	sms, err := notify.NewMessageBird(notify.MessageBirdConfig{AccessKey: f.gw.AccessKey, Originator: "Regie", Endpoint: f.gw.URL + "/messages"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Mailer, cfg.SMS = mailer, sms
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.b = b
	f.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: b.Handler()}}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

// browser is an HTTP client with cookies that stops at redirects leaving
// the broker (to the app's redirect_uri).
func (f *fixture) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != strings.TrimPrefix(f.base, "http://") {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

// loginAs gives the browser a session, as a successful login would.
func (f *fixture) loginAs(hc *http.Client, s *session) *session {
	f.t.Helper()
	if s.Provider == "" {
		s.Provider = "test"
	}
	if s.Account == "" {
		s.Account = "acct-" + randToken(6)
	}
	cookie, err := f.b.newSession(context.Background(), s, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	u, _ := url.Parse(f.base)
	hc.Jar.SetCookies(u, []*http.Cookie{{Name: f.b.cfg.Session.CookieName, Value: cookie, Path: "/"}})
	return s
}

func (f *fixture) get(hc *http.Client, u string) *http.Response {
	f.t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

func (f *fixture) postForm(hc *http.Client, u string, form url.Values, basicUser, basicPass string) (*http.Response, map[string]any) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPass))
	}
	resp, err := hc.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	if m == nil {
		m = map[string]any{"_raw": string(body)}
	}
	return resp, m
}

func body(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }

var storageErrExists = storage.ErrExists

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
