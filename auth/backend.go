package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"regie/storage"
)

const (
	jwtBearerAssertion = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	maxAssertionLife   = 5 * time.Minute
	assertionSkew      = 30 * time.Second
)

// backendServicesToken answers a SMART Backend Services token request:
// client_credentials authenticated by a private_key_jwt client assertion
// (RS384 or ES384), with exp at most five minutes ahead and a jti that is
// never accepted twice. The access token is made by the OP library.
func (b *Broker) backendServicesToken(w http.ResponseWriter, r *http.Request) {
	ctx := op.ContextWithIssuer(r.Context(), b.issuer)
	f := r.PostForm
	fail := func(code, desc, reason, clientID string) {
		_ = b.audit(ctx, AuditEvent{Action: "token-failed", Outcome: "failure", Reason: reason, ClientID: clientID}, r)
		writeOAuthError(w, http.StatusBadRequest, code, desc)
	}
	if f.Get("client_assertion_type") != jwtBearerAssertion {
		fail("invalid_client", "unsupported client_assertion_type", "assertion-type", "")
		return
	}
	c, claims, err := b.verifyClientAssertion(r, f.Get("client_assertion"))
	cid := ""
	if c != nil {
		cid = c.cfg.ID
	}
	if err != nil {
		fail("invalid_client", err.Error(), "bad-assertion", cid)
		return
	}
	if id := f.Get("client_id"); id != "" && id != c.cfg.ID {
		fail("invalid_client", "client_id does not match the assertion", "bad-assertion", cid)
		return
	}
	if !op.ValidateGrantType(c, oidc.GrantTypeClientCredentials) {
		fail("unauthorized_client", "client_credentials not allowed for this client", "grant-type", cid)
		return
	}
	// replay: the jti is remembered until the assertion expires
	key := c.cfg.ID + "|" + claims.JWTID
	if _, err := b.recs.PutRecord(ctx, &storage.Record{Kind: kindJTI, Key: key, Value: []byte("1"), Expires: claims.exp.Add(assertionSkew)}, 0); err != nil {
		if errors.Is(err, storage.ErrExists) {
			fail("invalid_client", "client assertion jti already used", "jti-replay", cid)
			return
		}
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "")
		return
	}
	g, err := b.systemGrant(c, strings.Fields(f.Get("scope")))
	if err != nil {
		fail("invalid_scope", "no requested scope is allowed for this client", "scope", cid)
		return
	}
	at, _, validity, err := op.CreateAccessToken(ctx, g, op.AccessTokenTypeJWT, b.provider, c, "")
	if err != nil {
		b.log.Error("auth: create access token", "err", err)
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "")
		return
	}
	_ = b.audit(ctx, AuditEvent{Action: "token", Outcome: "success", Subject: g.Subject, ClientID: cid}, r)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   int(validity.Seconds()),
		"scope":        strings.Join(g.Scopes, " "),
	})
}

type assertionClaims struct {
	Issuer   string          `json:"iss"`
	Subject  string          `json:"sub"`
	Audience json.RawMessage `json:"aud"`
	Expiry   *int64          `json:"exp"`
	IssuedAt *int64          `json:"iat"`
	JWTID    string          `json:"jti"`
	exp      time.Time
}

func (a *assertionClaims) audiences() []string {
	var one string
	if json.Unmarshal(a.Audience, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(a.Audience, &many)
	return many
}

// verifyClientAssertion checks a private_key_jwt assertion against the
// client's registered keys. It returns the client once identified, even on
// error, for the audit record.
func (b *Broker) verifyClientAssertion(r *http.Request, assertion string) (*client, *assertionClaims, error) {
	if assertion == "" {
		return nil, nil, assertionError("missing client_assertion")
	}
	jws, err := jose.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil {
		return nil, nil, assertionError("not a JWS signed with RS384 or ES384")
	}
	if len(jws.Signatures) != 1 {
		return nil, nil, assertionError("exactly one signature required")
	}
	// read iss before verifying, to find the client's keys
	var unverified assertionClaims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return nil, nil, assertionError("claims are not JSON")
	}
	c, ok := b.clients[unverified.Issuer]
	if !ok || c.cfg.AuthMethod != "private_key_jwt" {
		return nil, nil, assertionError("unknown client or not a private_key_jwt client")
	}
	hdr := jws.Signatures[0].Header
	var keys []jose.JSONWebKey
	if hdr.KeyID != "" {
		keys = c.jwks.Key(hdr.KeyID)
	} else {
		keys = c.jwks.Keys
	}
	var payload []byte
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		if p, err := jws.Verify(k); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return c, nil, assertionError("signature does not verify with the client's keys")
	}
	var cl assertionClaims
	if err := json.Unmarshal(payload, &cl); err != nil {
		return c, nil, assertionError("claims are not JSON")
	}
	if cl.Issuer != c.cfg.ID || cl.Subject != c.cfg.ID {
		return c, nil, assertionError("iss and sub must be the client id")
	}
	tokenURL := b.issuer + "/oauth/token"
	if !slices.Contains(cl.audiences(), tokenURL) {
		return c, nil, assertionError("aud must be the token endpoint")
	}
	now := b.now()
	if cl.Expiry == nil {
		return c, nil, assertionError("exp is required")
	}
	cl.exp = time.Unix(*cl.Expiry, 0)
	if !now.Before(cl.exp.Add(assertionSkew)) {
		return c, nil, assertionError("assertion expired")
	}
	if cl.exp.After(now.Add(maxAssertionLife + assertionSkew)) {
		return c, nil, assertionError("exp is more than five minutes ahead")
	}
	if cl.IssuedAt != nil && time.Unix(*cl.IssuedAt, 0).After(now.Add(assertionSkew)) {
		return c, nil, assertionError("iat is in the future")
	}
	if cl.JWTID == "" {
		return c, nil, assertionError("jti is required")
	}
	return c, &cl, nil
}
