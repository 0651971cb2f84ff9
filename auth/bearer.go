package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"regie/storage"
)

// BearerError is returned (wrapping ErrUnauthenticated) when a bearer token
// is missing or invalid. Its WWWAuthenticate value belongs in the
// WWW-Authenticate header of the 401 answer.
type BearerError struct {
	// Code is "" (no token presented) or "invalid_token".
	Code        string
	Description string
	realm       string
}

func (e *BearerError) Error() string {
	if e.Code == "" {
		return "auth: unauthenticated: no bearer token"
	}
	return "auth: unauthenticated: " + e.Code + ": " + e.Description
}

func (e *BearerError) Unwrap() error { return ErrUnauthenticated }

// WWWAuthenticate renders the challenge (RFC 6750 section 3).
func (e *BearerError) WWWAuthenticate() string {
	s := `Bearer realm=` + strconv.Quote(e.realm)
	if e.Code != "" {
		s += `, error="` + e.Code + `", error_description=` + strconv.Quote(e.Description)
	}
	return s
}

// RequestMeta is what the authenticators need to know about a request,
// as plain values.
type RequestMeta struct {
	IP, UserAgent string
}

// AuthenticateBearer returns the principal of an Authorization header
// value ("Bearer <token>"). The token must be a JWT access token this
// broker issued: signed by one of its published keys (RS256 only, so
// alg=none and HMAC tricks fail), issued by this issuer, meant for the FHIR
// base (aud), not expired, and not revoked (its record still exists). Any
// failure returns a *BearerError wrapping ErrUnauthenticated.
func (b *Broker) AuthenticateBearer(ctx context.Context, authorization string, _ RequestMeta) (*Principal, error) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return nil, &BearerError{realm: b.fhirBase}
	}
	tok = strings.TrimSpace(tok)
	invalid := func(desc string) error {
		return &BearerError{Code: "invalid_token", Description: desc, realm: b.fhirBase}
	}
	// a token whose signature and claims were checked before skips the
	// signature check; expiry and revocation are checked every time
	h := sha256.Sum256([]byte(tok))
	now := b.now()
	if jti, p, ok := b.verified.get(h, now); ok {
		if p != nil {
			return p, nil // its record was seen moments ago
		}
		rec, err := b.loadAccessToken(ctx, jti)
		if err != nil {
			if !errors.Is(err, storage.ErrNotFound) {
				return nil, fmt.Errorf("auth: bearer: %w", err)
			}
			return nil, invalid("the access token is revoked or expired")
		}
		p := rec.Grant.principal()
		b.verified.checked(h, p, now)
		return p, nil
	}
	ctx = op.ContextWithIssuer(ctx, b.issuer)
	v := b.provider.AccessTokenVerifier(ctx)
	claims, err := op.VerifyAccessToken[*oidc.AccessTokenClaims](ctx, tok, v)
	if err != nil {
		return nil, invalid("the access token is invalid or expired")
	}
	if !slices.Contains([]string(claims.Audience), b.fhirBase) {
		return nil, invalid("the access token is not meant for this server")
	}
	rec, err := b.loadAccessToken(ctx, claims.JWTID)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("auth: bearer: %w", err)
		}
		return nil, invalid("the access token is revoked or expired")
	}
	if rec.Grant.Sub != claims.Subject || rec.Grant.ClientID != claims.ClientID {
		return nil, invalid("the access token does not match its grant")
	}
	b.verified.put(h, claims.JWTID, claims.Expiration.AsTime())
	p := rec.Grant.principal()
	b.verified.checked(h, p, now)
	return p, nil
}

// recheckAfter bounds how long a verified token's record is trusted without
// reading it again. Revocation in this process takes effect at once (it
// forgets the token); revocation by another instance sharing the store
// takes effect within this time.
const recheckAfter = 2 * time.Second

// verifiedTokens remembers recently verified access tokens (by hash) so that
// the RSA signature is checked once per token, not once per request. It is
// bounded; when full, expired entries go first, then arbitrary ones.
type verifiedTokens struct {
	mu  sync.Mutex
	max int
	m   map[[32]byte]verifiedToken
}

type verifiedToken struct {
	jti string
	exp time.Time
	// p is the principal of the token's record, read at seen.
	p    *Principal
	seen time.Time
}

// get returns the jti of a verified token, and its principal when its
// record was read less than recheckAfter ago.
func (v *verifiedTokens) get(h [32]byte, now time.Time) (string, *Principal, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[h]
	if !ok || !now.Before(e.exp) {
		return "", nil, false
	}
	if e.p != nil && now.Sub(e.seen) < recheckAfter {
		p := *e.p
		return e.jti, &p, true
	}
	return e.jti, nil, true
}

// checked records that the token's record was read at now.
func (v *verifiedTokens) checked(h [32]byte, p *Principal, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.m[h]; ok {
		cp := *p
		e.p, e.seen = &cp, now
		v.m[h] = e
	}
}

// forget drops the token with this jti (revoked in this process).
func (v *verifiedTokens) forget(jti string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for k, e := range v.m {
		if e.jti == jti {
			delete(v.m, k)
		}
	}
}

func (v *verifiedTokens) put(h [32]byte, jti string, exp time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[[32]byte]verifiedToken{}
	}
	if len(v.m) >= v.max {
		now := time.Now()
		for k, e := range v.m {
			if !now.Before(e.exp) {
				delete(v.m, k)
			}
		}
		for k := range v.m {
			if len(v.m) < v.max*3/4 {
				break
			}
			delete(v.m, k)
		}
	}
	v.m[h] = verifiedToken{jti: jti, exp: exp}
}

// launchContextWriter buffers the library's token answer and adds the
// SMART launch context (patient) and fhirUser to it.
type launchContextWriter struct {
	http.ResponseWriter
	b      *Broker
	ctx    context.Context
	status int
	buf    bytes.Buffer
}

func (w *launchContextWriter) WriteHeader(s int)           { w.status = s }
func (w *launchContextWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }

func (w *launchContextWriter) finish() {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	body := w.buf.Bytes()
	if status == http.StatusOK {
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			if at, _ := m["access_token"].(string); at != "" {
				if claims := jwtPayload(at); claims != nil {
					for _, k := range []string{"patient"} {
						if v, ok := claims[k]; ok {
							m[k] = v
						}
					}
				}
				if nb, err := json.Marshal(m); err == nil {
					body = nb
				}
			}
		}
	}
	h := w.ResponseWriter.Header()
	h.Del("Content-Length")
	h.Set("Cache-Control", "no-store")
	w.ResponseWriter.WriteHeader(status)
	_, _ = w.ResponseWriter.Write(body)
}

// jwtPayload decodes the claims of a JWT this broker just signed (no
// verification: it never left the process).
func jwtPayload(tok string) map[string]any {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var errBadAssertion = errors.New("auth: invalid client assertion")

func assertionError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadAssertion}, args...)...)
}
