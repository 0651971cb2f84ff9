package auth

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"

	"regie/storage"
)

// Broker is Regie's identity broker: the OpenID Provider, the upstream
// federation, local accounts, second factors and sessions. It is safe for
// concurrent use. Build it with [New], mount [Broker.Handler], and call
// [Broker.Close] on shutdown.
type Broker struct {
	cfg      Config
	recs     storage.Records
	log      *slog.Logger
	issuer   string
	fhirBase string
	keys     *keyRing
	secrets  keys
	clients  map[string]*client
	provider *op.Provider
	mux      *http.ServeMux
	ui       *ui
	fed      *federation
	dev      *devMode

	passwords *passwordPolicy
	dummyHash string
	verified  *verifiedTokens
}

// New builds a broker from cfg. It does not start goroutines; the context
// is used for the initial reads from Records (the dev-mode secret).
func New(ctx context.Context, cfg Config) (*Broker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	secret := cfg.Secret
	if len(secret) == 0 {
		s, err := devSecret(ctx, cfg.Records)
		if err != nil {
			return nil, err
		}
		secret = s
	}
	b := &Broker{
		cfg:      cfg,
		recs:     cfg.Records,
		log:      cfg.Logger.With("component", "auth"),
		issuer:   cfg.BaseURL,
		fhirBase: cfg.BaseURL + "/fhir",
		secrets:  deriveKeys(secret),
		clients:  map[string]*client{},
		verified: &verifiedTokens{max: 50000},
	}
	if cfg.Dev {
		b.cfg.Clients = append(slices.Clone(b.cfg.Clients), devClientConfig())
	}
	for _, cc := range b.cfg.Clients {
		c, err := newClient(cc, b.issuer, cfg.Tokens.IDTokenLifetime)
		if err != nil {
			return nil, err
		}
		b.clients[cc.ID] = c
	}
	keep := max(cfg.Tokens.AccessTokenLifetime, cfg.Tokens.IDTokenLifetime)
	b.keys = &keyRing{recs: b.recs, encKey: b.secrets.enc, rotation: cfg.Tokens.KeyRotation, keep: keep, now: b.now, cache: map[string]*rsa.PrivateKey{}}

	var cryptoKey [32]byte
	copy(cryptoKey[:], b.secrets.enc)
	opCfg := &op.Config{
		CryptoKey:                cryptoKey,
		DefaultLogoutRedirectURI: b.issuer + "/login/logged-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		AuthMethodPrivateKeyJWT:  true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       []language.Tag{language.Dutch, language.English},
		SupportedClaims:          append(slices.Clone(op.DefaultSupportedClaims), "fhirUser", "patient", "bsn"),
		SupportedScopes:          []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs", "user/*.cruds", "system/*.cruds"},
	}
	corsOpts := cors.Options{
		AllowedOrigins: []string{"*"},
		AllowedMethods: []string{http.MethodGet, http.MethodPost},
		AllowedHeaders: []string{"Authorization", "Content-Type", "Accept"},
	}
	p, err := op.NewProvider(opCfg, opStore{b}, op.StaticIssuer(b.issuer),
		op.WithAllowInsecure(),
		op.WithCORSOptions(&corsOpts),
		op.WithCustomAuthEndpoint(op.NewEndpoint("oauth/authorize")),
		op.WithCustomTokenEndpoint(op.NewEndpoint("oauth/token")),
		op.WithCustomIntrospectionEndpoint(op.NewEndpoint("oauth/introspect")),
		op.WithCustomUserinfoEndpoint(op.NewEndpoint("oauth/userinfo")),
		op.WithCustomRevocationEndpoint(op.NewEndpoint("oauth/revoke")),
		op.WithCustomEndSessionEndpoint(op.NewEndpoint("oauth/end_session")),
		op.WithCustomKeysEndpoint(op.NewEndpoint("oauth/keys")),
		op.WithCustomDeviceAuthorizationEndpoint(op.NewEndpoint("oauth/device_authorization_disabled")),
	)
	if err != nil {
		return nil, fmt.Errorf("auth: openid provider: %w", err)
	}
	b.provider = p
	b.passwords = newPasswordPolicy()
	if b.dummyHash, err = hashPassword(randToken(16)); err != nil {
		return nil, err
	}
	if b.ui, err = newUI(cfg.Dev); err != nil {
		return nil, err
	}
	b.fed = newFederation(b)
	if cfg.Dev {
		if b.dev, err = newDevMode(b); err != nil {
			return nil, err
		}
	}
	if b.cfg.Mailer == nil || b.cfg.SMS == nil {
		return nil, errors.New("auth: config: Mailer and SMS are required outside dev mode")
	}
	b.routes()
	if cfg.Dev {
		b.log.Warn("auth: DEVELOPMENT MODE: /dev endpoints, simulators and the regie-dev client are enabled")
	}
	return b, nil
}

// Close releases the broker's resources.
func (b *Broker) Close() error { return nil }

// Handler serves every identity endpoint: /.well-known/openid-configuration,
// /oauth/, /login/, /account/, /helpdesk/ and, in dev mode, /dev/.
func (b *Broker) Handler() http.Handler { return b.mux }

// Issuer returns the issuer URL.
func (b *Broker) Issuer() string { return b.issuer }

func (b *Broker) now() time.Time { return b.cfg.Now().UTC() }

func (b *Broker) familyLifetime() time.Duration {
	return max(b.cfg.Tokens.RefreshTokenLifetime, b.cfg.Session.MaxLifetime)
}

type requestKey struct{}

// requestFrom returns the HTTP request the OP library is serving.
func requestFrom(ctx context.Context) *http.Request {
	r, _ := ctx.Value(requestKey{}).(*http.Request)
	return r
}

func (b *Broker) routes() {
	m := http.NewServeMux()
	opH := http.Handler(b.provider)
	withReq := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestKey{}, r)))
		})
	}
	m.Handle("/.well-known/openid-configuration", opH)
	m.Handle("/oauth/authorize", http.HandlerFunc(b.authorize))
	m.Handle("/oauth/authorize/callback", http.HandlerFunc(b.authorizeCallback))
	m.Handle("/oauth/token", http.HandlerFunc(b.token))
	m.Handle("/oauth/end_session", withReq(opH))
	m.Handle("/oauth/introspect", b.limitAPI("introspect", 1200, opH))
	m.Handle("/oauth/revoke", b.limitAPI("revoke", 300, opH))
	m.Handle("/oauth/", opH)
	b.loginRoutes(m)
	if b.dev != nil {
		b.dev.routes(m)
	}
	b.mux = m
}

// authorize checks the SMART aud parameter, then hands over to the library.
func (b *Broker) authorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if aud := r.Form.Get("aud"); aud != "" && strings.TrimSuffix(aud, "/") != b.fhirBase {
		http.Error(w, "auth: aud does not name this FHIR server", http.StatusBadRequest)
		return
	}
	b.provider.ServeHTTP(w, r)
}

// authorizeCallback lets the library answer a completed authorization
// request only in the browser session that completed it.
func (b *Broker) authorizeCallback(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	var ar authRequest
	if _, err := getJSON(r.Context(), b.recs, kindAuthReq, id, &ar); err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
		return
	}
	sess, _, err := b.sessionFromRequest(r.Context(), r)
	if err != nil || !ar.Done || sess.ID != ar.SessionID {
		b.ui.errorPage(w, r, http.StatusForbidden, "wrong-session")
		return
	}
	b.provider.ServeHTTP(w, r)
}

// token routes SMART Backend Services requests (client_credentials with a
// client assertion) to the assertion check; everything else goes to the
// library, and launch context is added to its answer.
func (b *Broker) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "cannot parse form")
		return
	}
	if !b.allowAPI(w, r, "token", 300) {
		return
	}
	if r.PostForm.Get("grant_type") == string(oidc.GrantTypeClientCredentials) && r.PostForm.Get("client_assertion_type") != "" {
		b.backendServicesToken(w, r)
		return
	}
	lw := &launchContextWriter{ResponseWriter: w, b: b, ctx: r.Context()}
	b.provider.ServeHTTP(lw, r)
	lw.finish()
}

// storeAccessToken records an access token for g and returns its id.
func (b *Broker) storeAccessToken(ctx context.Context, g *grant) (string, time.Time, error) {
	fam := g.Family
	if fam == "" {
		fam = randToken(12)
		g.Family = fam
	}
	lifetime := b.cfg.Tokens.AccessTokenLifetime
	if g.Kind == KindSystem {
		lifetime = min(lifetime, 5*time.Minute)
	}
	exp := b.now().Add(lifetime)
	id := fam + "." + randToken(12)
	if _, err := putJSON(ctx, b.recs, kindAccess, id, accessRecord{Expires: exp, Grant: *g}, exp, 0); err != nil {
		return "", time.Time{}, fmt.Errorf("auth: store access token: %w", err)
	}
	return id, exp, nil
}

func (b *Broker) loadAccessToken(ctx context.Context, id string) (*accessRecord, error) {
	var rec accessRecord
	if _, err := getJSON(ctx, b.recs, kindAccess, id, &rec); err != nil {
		return nil, err
	}
	if !b.now().Before(rec.Expires) {
		return nil, storage.ErrNotFound
	}
	return &rec, nil
}

// revokeFamily revokes a grant: its refresh tokens stop working and its
// access tokens are deleted.
func (b *Broker) revokeFamily(ctx context.Context, fam, reason string) {
	if fam == "" {
		return
	}
	rec := familyRecord{Created: b.now(), Revoked: true, Reason: reason}
	if _, err := putJSON(ctx, b.recs, kindFamily, fam, rec, b.now().Add(b.familyLifetime()), storage.AnyVersion); err != nil {
		b.log.Error("auth: revoke grant", "err", err)
	}
	var ids []string
	_ = b.recs.ListRecords(ctx, kindAccess, fam+".", func(r *storage.Record) error {
		ids = append(ids, r.Key)
		return nil
	})
	for _, id := range ids {
		_ = b.recs.DeleteRecord(ctx, kindAccess, id, storage.AnyVersion)
		b.verified.forget(id)
	}
}

// systemGrant builds the grant of a client_credentials token.
func (b *Broker) systemGrant(c *client, scopes []string) (*grant, error) {
	if c == nil {
		return nil, oidc.ErrInvalidClient()
	}
	var granted []string
	for _, s := range c.allowedScopes(scopes) {
		if sc, err := ParseScope(s); err == nil && sc.Context == "system" {
			granted = append(granted, s)
		}
	}
	if len(granted) == 0 {
		return nil, oidc.ErrInvalidScope().WithDescription("no system scope granted")
	}
	return &grant{
		Kind:         KindSystem,
		Subject:      c.cfg.Subject,
		Sub:          c.cfg.ID,
		ClientID:     c.cfg.ID,
		Scopes:       granted,
		Organization: c.cfg.Organization,
		Audience:     []string{c.cfg.ID, b.fhirBase},
	}, nil
}

// userinfoClaims sets the claims of ID tokens and userinfo for the client
// the grant was issued to.
func (b *Broker) userinfoClaims(ui *oidc.UserInfo, g *grant, scopes []string) {
	b.userinfoClaimsFor(ui, g, scopes, b.clients[g.ClientID])
}

// userinfoClaimsFor sets the claims for the client that will read them:
// the BSN only for BSN-entitled clients.
func (b *Broker) userinfoClaimsFor(ui *oidc.UserInfo, g *grant, scopes []string, reader *client) {
	if ui.Subject == "" {
		ui.Subject = g.Sub
	}
	if g.Subject != "" && (slices.Contains(scopes, "fhirUser") || slices.Contains(scopes, "openid")) && g.Kind != KindSystem {
		ui.AppendClaims("fhirUser", b.fhirBase+"/"+g.Subject)
	}
	if len(g.BSN) > 0 && reader != nil && reader.cfg.BSNEntitled {
		if bsn, err := open(b.secrets.enc, g.BSN, "bsn"); err == nil {
			ui.AppendClaims("bsn", string(bsn))
		}
	}
}

// audit sends e to the Auditor, filling in time and request metadata.
func (b *Broker) audit(ctx context.Context, e AuditEvent, r *http.Request) error {
	if e.When.IsZero() {
		e.When = b.now()
	}
	if r != nil {
		if e.IP == "" {
			e.IP = clientIP(r)
		}
		if e.UserAgent == "" {
			e.UserAgent = r.UserAgent()
		}
	}
	if b.cfg.Auditor == nil {
		return nil
	}
	if err := b.cfg.Auditor.Audit(ctx, e); err != nil {
		b.log.Error("auth: audit", "action", e.Action, "err", err)
		return fmt.Errorf("auth: audit: %w", err)
	}
	return nil
}

// clientIP is the peer address of r (the server sets RemoteAddr from a
// trusted proxy header when configured so).
func clientIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}

var errNoSession = errors.New("auth: no session")

// allowAPI limits requests per IP to an OAuth endpoint (client secrets and
// codes must not be guessable by volume); over the limit it answers 429 in
// OAuth's JSON error format.
func (b *Broker) allowAPI(w http.ResponseWriter, r *http.Request, step string, perMinute int) bool {
	ok, err := b.hit(r.Context(), "ip."+step+"."+clientIP(r), perMinute, time.Minute)
	if err != nil || !ok {
		w.Header().Set("Retry-After", "60")
		writeOAuthError(w, http.StatusTooManyRequests, "slow_down", "too many requests")
		return false
	}
	return true
}

func (b *Broker) limitAPI(step string, perMinute int, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.allowAPI(w, r, step, perMinute) {
			h.ServeHTTP(w, r)
		}
	})
}
