// Package devidp is a development OpenID Provider that stands in for DigiD
// (through a broker) or a municipality's identity provider: one picks a demo
// person and an assurance level, and it answers with the claims the real
// provider would send. Each instance is a separate OP with its own issuer,
// so the broker's federation code path is the real one. It keeps its state
// in memory and exists only in development mode.
package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Person is a demo person offered on the login page.
type Person struct {
	// Label is shown on the page ("Anna de Vries (moeder van Sam, 10)").
	Label string
	// Subject is the sub claim.
	Subject string
	// Claims are added to the ID token and userinfo (bsn, acting_for,
	// employee_id, groups, name, ...).
	Claims map[string]any
}

// Config configures a simulator.
type Config struct {
	// Issuer is the simulator's issuer URL, e.g. http://localhost:8080/dev/digid.
	Issuer string
	// Title names the simulator on its page ("DigiD (simulator)").
	Title string
	// People are the demo persons.
	People []Person
	// Levels are offered as acr values (value → label); empty means none.
	Levels []Level
	// ClientID, ClientSecret and RedirectURIs register the one client (the broker).
	ClientID, ClientSecret string
	RedirectURIs           []string
}

// Level is an acr value offered on the login page.
type Level struct{ ACR, Label string }

// Simulator is a development OpenID Provider.
type Simulator struct {
	cfg      Config
	provider *op.Provider
	handler  http.Handler
	store    *memStore
	prefix   string
}

// New builds a simulator. Its handler expects requests whose path starts
// with the issuer's path (it strips it).
func New(cfg Config) (*Simulator, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("devidp: bad issuer %q", cfg.Issuer)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	s := &Simulator{cfg: cfg, prefix: strings.TrimSuffix(u.Path, "/")}
	s.store = &memStore{sim: s, key: key, kid: randID(8), reqs: map[string]*authReq{}, codes: map[string]string{}, tokens: map[string]*authReq{}}
	var ck [32]byte
	copy(ck[:], randBytes(32))
	p, err := op.NewProvider(&op.Config{CryptoKey: ck, CodeMethodS256: true}, s.store, op.StaticIssuer(cfg.Issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	s.provider = p
	mux := http.NewServeMux()
	mux.HandleFunc("/login", s.login)
	mux.Handle("/", p)
	s.handler = http.StripPrefix(s.prefix, mux)
	return s, nil
}

// ServeHTTP serves the simulator.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Prefix is the path under which the simulator is mounted.
func (s *Simulator) Prefix() string { return s.prefix }

var page = template.Must(template.New("p").Parse(`<!doctype html><html lang="nl"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:0 auto;padding:1rem}.dev{background:#b00020;color:#fff;font-weight:bold;padding:.75rem;text-align:center;font-size:1.2rem}label{display:block;margin:.5rem 0}button{font-size:1rem;padding:.5rem 1rem;margin-top:1rem}</style></head>
<body><div class="dev" role="alert">SIMULATOR — ONTWIKKELOMGEVING / DEVELOPMENT MODE</div><main><h1>{{.Title}}</h1>
<form method="post" action="{{.Action}}"><input type="hidden" name="id" value="{{.ID}}">
<fieldset><legend>Kies een persoon / Choose a person</legend>
{{range $i, $p := .People}}<label><input type="radio" name="person" value="{{$i}}" {{if eq $i 0}}checked{{end}}> {{$p.Label}}</label>{{end}}
</fieldset>
{{if .Levels}}<fieldset><legend>Betrouwbaarheidsniveau / Assurance level</legend>
{{range $i, $l := .Levels}}<label><input type="radio" name="acr" value="{{$l.ACR}}" {{if eq $l.ACR $.Want}}checked{{end}}> {{$l.Label}}</label>{{end}}
</fieldset>{{end}}
<button type="submit">Inloggen / Log in</button></form></main></body></html>`))

func (s *Simulator) login(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		id := r.URL.Query().Get("id")
		ar := s.store.get(id)
		if ar == nil {
			http.Error(w, "unknown request", http.StatusBadRequest)
			return
		}
		want := ""
		if len(ar.req.ACRValues) > 0 {
			want = ar.req.ACRValues[0]
		} else if len(s.cfg.Levels) > 0 {
			want = s.cfg.Levels[0].ACR
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, map[string]any{"Title": s.cfg.Title, "Action": s.prefix + "/login", "ID": id, "People": s.cfg.People, "Levels": s.cfg.Levels, "Want": want})
	case http.MethodPost:
		_ = r.ParseForm()
		id := r.PostForm.Get("id")
		var idx int
		if _, err := fmt.Sscan(r.PostForm.Get("person"), &idx); err != nil || idx < 0 || idx >= len(s.cfg.People) {
			http.Error(w, "choose a person", http.StatusBadRequest)
			return
		}
		acr := r.PostForm.Get("acr")
		if !s.store.complete(id, &s.cfg.People[idx], acr) {
			http.Error(w, "unknown request", http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, op.AuthCallbackURL(s.provider)(op.ContextWithIssuer(r.Context(), s.cfg.Issuer), id), http.StatusSeeOther)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randID(n int) string { return base64.RawURLEncoding.EncodeToString(randBytes(n)) }

// authReq is an authorization request in flight, then the grant behind tokens.
type authReq struct {
	id      string
	req     oidc.AuthRequest
	created time.Time
	person  *Person
	acr     string
	done    bool
}

func (a *authReq) GetID() string         { return a.id }
func (a *authReq) GetACR() string        { return a.acr }
func (a *authReq) GetAMR() []string      { return []string{"pwd"} }
func (a *authReq) GetAudience() []string { return []string{a.req.ClientID} }
func (a *authReq) GetAuthTime() time.Time {
	return a.created
}
func (a *authReq) GetClientID() string { return a.req.ClientID }
func (a *authReq) GetCodeChallenge() *oidc.CodeChallenge {
	if a.req.CodeChallenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: a.req.CodeChallenge, Method: a.req.CodeChallengeMethod}
}
func (a *authReq) GetNonce() string                   { return a.req.Nonce }
func (a *authReq) GetRedirectURI() string             { return a.req.RedirectURI }
func (a *authReq) GetResponseType() oidc.ResponseType { return a.req.ResponseType }
func (a *authReq) GetResponseMode() oidc.ResponseMode { return a.req.ResponseMode }
func (a *authReq) GetScopes() []string                { return a.req.Scopes }
func (a *authReq) GetState() string                   { return a.req.State }
func (a *authReq) GetSubject() string {
	if a.person == nil {
		return ""
	}
	return a.person.Subject
}
func (a *authReq) Done() bool { return a.done }

// memStore is the simulator's in-memory OP storage.
type memStore struct {
	sim    *Simulator
	key    *rsa.PrivateKey
	kid    string
	mu     sync.Mutex
	reqs   map[string]*authReq
	codes  map[string]string
	tokens map[string]*authReq
}

func (m *memStore) get(id string) *authReq {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reqs[id]
}

func (m *memStore) complete(id string, p *Person, acr string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	ar := m.reqs[id]
	if ar == nil || ar.done {
		return false
	}
	ok := acr == ""
	for _, l := range m.sim.cfg.Levels {
		if l.ACR == acr {
			ok = true
		}
	}
	if !ok {
		return false
	}
	ar.person, ar.acr, ar.done, ar.created = p, acr, true, time.Now()
	return true
}

var errNotFound = errors.New("devidp: not found")

type client struct{ cfg *Config }

func (c client) GetID() string                       { return c.cfg.ClientID }
func (c client) RedirectURIs() []string              { return c.cfg.RedirectURIs }
func (c client) PostLogoutRedirectURIs() []string    { return nil }
func (c client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c client) GrantTypes() []oidc.GrantType { return []oidc.GrantType{oidc.GrantTypeCode} }
func (c client) LoginURL(id string) string {
	return strings.TrimSuffix(c.cfg.Issuer, "/") + "/login?id=" + url.QueryEscape(id)
}
func (c client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c client) IDTokenLifetime() time.Duration       { return 5 * time.Minute }
func (c client) DevMode() bool                        { return true }
func (c client) IsScopeAllowed(string) bool           { return false }
func (c client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c client) ClockSkew() time.Duration             { return 0 }
func (c client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (m *memStore) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ar := &authReq{id: randID(12), req: *req, created: time.Now()}
	m.reqs[ar.id] = ar
	return ar, nil
}
func (m *memStore) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	if ar := m.get(id); ar != nil {
		return ar, nil
	}
	return nil, errNotFound
}
func (m *memStore) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.codes[code]
	if !ok {
		return nil, errNotFound
	}
	delete(m.codes, code)
	return m.reqs[id], nil
}
func (m *memStore) SaveAuthCode(_ context.Context, id, code string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.codes[code] = id
	return nil
}
func (m *memStore) DeleteAuthRequest(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.reqs, id)
	return nil
}
func (m *memStore) CreateAccessToken(_ context.Context, tr op.TokenRequest) (string, time.Time, error) {
	ar, ok := tr.(*authReq)
	if !ok {
		return "", time.Time{}, errNotFound
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	id := randID(12)
	m.tokens[id] = ar
	return id, time.Now().Add(5 * time.Minute), nil
}
func (m *memStore) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, oidc.ErrUnsupportedGrantType()
}
func (m *memStore) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, oidc.ErrInvalidGrant()
}
func (m *memStore) TerminateSession(context.Context, string, string) error { return nil }
func (m *memStore) RevokeToken(context.Context, string, string, string) *oidc.Error {
	return nil
}
func (m *memStore) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

type sigKey struct{ m *memStore }

func (k sigKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k sigKey) Key() any                                    { return k.m.key }
func (k sigKey) ID() string                                  { return k.m.kid }

type pubKey struct{ m *memStore }

func (k pubKey) ID() string                         { return k.m.kid }
func (k pubKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k pubKey) Use() string                        { return "sig" }
func (k pubKey) Key() any                           { return &k.m.key.PublicKey }

func (m *memStore) SigningKey(context.Context) (op.SigningKey, error) { return sigKey{m}, nil }
func (m *memStore) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}
func (m *memStore) KeySet(context.Context) ([]op.Key, error) { return []op.Key{pubKey{m}}, nil }
func (m *memStore) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != m.sim.cfg.ClientID {
		return nil, errNotFound
	}
	return client{&m.sim.cfg}, nil
}
func (m *memStore) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if id != m.sim.cfg.ClientID || secret != m.sim.cfg.ClientSecret {
		return errors.New("devidp: bad client credentials")
	}
	return nil
}
func (m *memStore) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}
func (m *memStore) SetUserinfoFromRequest(_ context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	if ar, ok := req.(*authReq); ok && ar.person != nil {
		fill(ui, ar)
	}
	return nil
}
func (m *memStore) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, tokenID, _, _ string) error {
	m.mu.Lock()
	ar := m.tokens[tokenID]
	m.mu.Unlock()
	if ar == nil || ar.person == nil {
		return errNotFound
	}
	fill(ui, ar)
	return nil
}

func fill(ui *oidc.UserInfo, ar *authReq) {
	ui.Subject = ar.person.Subject
	for k, v := range ar.person.Claims {
		ui.AppendClaims(k, v)
	}
}

func (m *memStore) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errNotFound
}
func (m *memStore) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}
func (m *memStore) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errNotFound
}
func (m *memStore) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errNotFound
}
func (m *memStore) Health(context.Context) error { return nil }
