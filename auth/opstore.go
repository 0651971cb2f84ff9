package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"regie/storage"
)

// opStore implements the OP library's storage over storage.Records.
type opStore struct{ b *Broker }

var (
	_ op.Storage                        = opStore{}
	_ op.ClientCredentialsStorage       = opStore{}
	_ op.CanSetUserinfoFromRequest      = opStore{}
	_ op.CanGetPrivateClaimsFromRequest = opStore{}
	_ op.CanTerminateSessionFromRequest = opStore{}
)

const (
	authRequestTTL = 15 * time.Minute
	codeTTL        = 2 * time.Minute
)

func (s opStore) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	// PKCE with S256 is mandatory for every client.
	if req.CodeChallenge == "" {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge (PKCE) is required")
	}
	if req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	}
	if req.ResponseType != oidc.ResponseTypeCode {
		return nil, oidc.ErrInvalidRequest().WithDescription("response_type must be code")
	}
	now := s.b.now()
	ar := &authRequest{
		ID:                  randToken(18),
		ClientID:            req.ClientID,
		RedirectURI:         req.RedirectURI,
		State:               req.State,
		Nonce:               req.Nonce,
		Scopes:              slices.Clone(req.Scopes),
		ResponseMode:        string(req.ResponseMode),
		CodeChallenge:       req.CodeChallenge,
		CodeChallengeMethod: string(req.CodeChallengeMethod),
		ACRValues:           slices.Clone(req.ACRValues),
		MaxAge:              req.MaxAge,
		Prompt:              slices.Clone(req.Prompt),
		Created:             now,
	}
	if _, err := putJSON(ctx, s.b.recs, kindAuthReq, ar.ID, ar, now.Add(authRequestTTL), 0); err != nil {
		return nil, fmt.Errorf("auth: store auth request: %w", err)
	}
	return opAuthRequest{ar}, nil
}

func (s opStore) loadAuthRequest(ctx context.Context, id string) (*authRequest, int64, error) {
	var ar authRequest
	v, err := getJSON(ctx, s.b.recs, kindAuthReq, id, &ar)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, 0, notFoundError{errors.New("auth: auth request not found")}
		}
		return nil, 0, err
	}
	return &ar, v, nil
}

func (s opStore) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	ar, _, err := s.loadAuthRequest(ctx, id)
	if err != nil {
		return nil, err
	}
	return opAuthRequest{ar}, nil
}

// AuthRequestByCode redeems a code. The first redemption claims it with a
// create-only record; any later one finds that record, revokes every token
// issued from the code and fails.
func (s opStore) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	h := hashToken(code)
	var id string
	if _, err := getJSON(ctx, s.b.recs, kindCode, h, &id); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			var fam string
			if _, err2 := getJSON(ctx, s.b.recs, kindCodeUsed, h, &fam); err2 == nil && fam != "" {
				s.b.revokeFamily(ctx, fam, "code-reuse")
				s.b.log.Warn("auth: authorization code reused; grant revoked")
			}
			return nil, oidc.ErrInvalidGrant().WithDescription("invalid or used code")
		}
		return nil, err
	}
	ar, _, err := s.loadAuthRequest(ctx, id)
	if err != nil {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid or used code")
	}
	if ar.Grant == nil || !ar.Done || ar.Code != h {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid or used code")
	}
	if _, err := putJSON(ctx, s.b.recs, kindCodeUsed, h, ar.Grant.Family, s.b.now().Add(s.b.cfg.Tokens.RefreshTokenLifetime), 0); err != nil {
		if errors.Is(err, storage.ErrExists) {
			s.b.revokeFamily(ctx, ar.Grant.Family, "code-reuse")
			return nil, oidc.ErrInvalidGrant().WithDescription("invalid or used code")
		}
		return nil, err
	}
	_ = s.b.recs.DeleteRecord(ctx, kindCode, h, storage.AnyVersion)
	return opAuthRequest{ar}, nil
}

func (s opStore) SaveAuthCode(ctx context.Context, id, code string) error {
	ar, v, err := s.loadAuthRequest(ctx, id)
	if err != nil {
		return err
	}
	if !ar.Done || ar.Grant == nil {
		return oidc.ErrInteractionRequired()
	}
	if ar.Code != "" {
		return oidc.ErrInvalidRequest().WithDescription("authorization request already answered")
	}
	h := hashToken(code)
	ar.Code = h
	ar.Grant.Family = randToken(12)
	if _, err := putJSON(ctx, s.b.recs, kindAuthReq, id, ar, ar.Created.Add(authRequestTTL), v); err != nil {
		return fmt.Errorf("auth: save code: %w", err)
	}
	if _, err := putJSON(ctx, s.b.recs, kindCode, h, id, s.b.now().Add(codeTTL), 0); err != nil {
		return fmt.Errorf("auth: save code: %w", err)
	}
	// remember the grant under its session, so that logout revokes it
	g := ar.Grant
	if g.SessionID != "" && g.Account != "" {
		key := g.Account + "." + g.SessionID + "." + g.Family
		if _, err := putJSON(ctx, s.b.recs, kindSessFamily, key, "", s.b.now().Add(s.b.familyLifetime()), storage.AnyVersion); err != nil {
			return fmt.Errorf("auth: save code: %w", err)
		}
	}
	return nil
}

func (s opStore) DeleteAuthRequest(ctx context.Context, id string) error {
	return s.b.recs.DeleteRecord(ctx, kindAuthReq, id, storage.AnyVersion)
}

// tokenGrant extracts the grant behind any token request the library hands in.
func tokenGrant(tr op.TokenRequest) (*grant, error) {
	switch r := tr.(type) {
	case opAuthRequest:
		if r.r.Grant == nil {
			return nil, oidc.ErrInvalidGrant()
		}
		return r.r.Grant, nil
	case *refreshRequest:
		return &r.rec.Grant, nil
	case *grant:
		return r, nil
	}
	return nil, oidc.ErrUnsupportedGrantType()
}

func (s opStore) CreateAccessToken(ctx context.Context, tr op.TokenRequest) (string, time.Time, error) {
	g, err := tokenGrant(tr)
	if err != nil {
		return "", time.Time{}, err
	}
	return s.b.storeAccessToken(ctx, g)
}

func (s opStore) CreateAccessAndRefreshTokens(ctx context.Context, tr op.TokenRequest, current string) (string, string, time.Time, error) {
	g, err := tokenGrant(tr)
	if err != nil {
		return "", "", time.Time{}, err
	}
	now := s.b.now()
	if rr, ok := tr.(*refreshRequest); ok {
		// spend the presented refresh token; a lost race is a reuse
		rr.rec.Used = true
		if _, err := putJSON(ctx, s.b.recs, kindRefresh, rr.hash, rr.rec, rr.rec.Expires, rr.version); err != nil {
			if errors.Is(err, storage.ErrVersionConflict) || errors.Is(err, storage.ErrNotFound) {
				s.b.revokeFamily(ctx, g.Family, "refresh-reuse")
				return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token already used")
			}
			return "", "", time.Time{}, err
		}
	} else {
		fam := familyRecord{Created: now}
		if _, err := putJSON(ctx, s.b.recs, kindFamily, g.Family, fam, now.Add(s.b.familyLifetime()), 0); err != nil {
			return "", "", time.Time{}, fmt.Errorf("auth: create grant family: %w", err)
		}
	}
	id, exp, err := s.b.storeAccessToken(ctx, g)
	if err != nil {
		return "", "", time.Time{}, err
	}
	rt := randToken(32)
	rec := refreshRecord{Family: g.Family, Expires: now.Add(s.b.cfg.Tokens.RefreshTokenLifetime), Grant: *g}
	if _, err := putJSON(ctx, s.b.recs, kindRefresh, hashToken(rt), rec, rec.Expires, 0); err != nil {
		return "", "", time.Time{}, fmt.Errorf("auth: store refresh token: %w", err)
	}
	return id, rt, exp, nil
}

func (s opStore) TokenRequestByRefreshToken(ctx context.Context, rt string) (op.RefreshTokenRequest, error) {
	h := hashToken(rt)
	var rec refreshRecord
	v, err := getJSON(ctx, s.b.recs, kindRefresh, h, &rec)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, oidc.ErrInvalidGrant().WithDescription("invalid refresh token")
		}
		return nil, err
	}
	var fam familyRecord
	if _, err := getJSON(ctx, s.b.recs, kindFamily, rec.Family, &fam); err != nil || fam.Revoked {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid refresh token")
	}
	if rec.Used {
		s.b.revokeFamily(ctx, rec.Family, "refresh-reuse")
		s.b.audit(ctx, AuditEvent{Action: "token-failed", Outcome: "failure", Reason: "refresh-token-reuse",
			Subject: rec.Grant.Subject, Account: rec.Grant.Account, ClientID: rec.Grant.ClientID, SessionID: rec.Grant.SessionID}, nil)
		return nil, oidc.ErrInvalidGrant().WithDescription("refresh token already used; the grant is revoked")
	}
	if sid := rec.Grant.SessionID; sid != "" && rec.Grant.Kind != KindSystem {
		// a refresh token lives no longer than the absolute session lifetime
		if s.b.now().After(rec.Grant.AuthTime.Add(s.b.familyLifetime())) {
			return nil, oidc.ErrInvalidGrant().WithDescription("login expired")
		}
	}
	return &refreshRequest{hash: h, version: v, rec: rec}, nil
}

func (s opStore) TerminateSession(ctx context.Context, userID, clientID string) error { return nil }

// TerminateSessionFromRequest ends the browser session of the request (RP-initiated logout).
func (s opStore) TerminateSessionFromRequest(ctx context.Context, req *op.EndSessionRequest) (string, error) {
	if hr := requestFrom(ctx); hr != nil {
		if sess, _, err := s.b.sessionFromRequest(ctx, hr); err == nil {
			s.b.endSession(ctx, sess, hr, req.ClientID)
		}
	}
	return req.RedirectURI, nil
}

func (s opStore) RevokeToken(ctx context.Context, tokenOrID, userID, clientID string) *oidc.Error {
	if userID != "" {
		var rec accessRecord
		if _, err := getJSON(ctx, s.b.recs, kindAccess, tokenOrID, &rec); err != nil {
			return s.revokeRefresh(ctx, tokenOrID, clientID)
		}
		if rec.Grant.ClientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was issued to another client")
		}
		_ = s.b.recs.DeleteRecord(ctx, kindAccess, tokenOrID, storage.AnyVersion)
		s.b.verified.forget(tokenOrID)
		return nil
	}
	return s.revokeRefresh(ctx, tokenOrID, clientID)
}

// revokeRefresh revokes the grant family of a refresh token.
func (s opStore) revokeRefresh(ctx context.Context, tokenOrID, clientID string) *oidc.Error {
	var rec refreshRecord
	if _, err := getJSON(ctx, s.b.recs, kindRefresh, hashToken(tokenOrID), &rec); err != nil {
		return nil
	}
	if rec.Grant.ClientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("token was issued to another client")
	}
	s.b.revokeFamily(ctx, rec.Family, "revoked")
	return nil
}

func (s opStore) GetRefreshTokenInfo(ctx context.Context, clientID, token string) (string, string, error) {
	var rec refreshRecord
	if _, err := getJSON(ctx, s.b.recs, kindRefresh, hashToken(token), &rec); err != nil {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rec.Grant.Sub, token, nil
}

func (s opStore) SigningKey(ctx context.Context) (op.SigningKey, error) {
	return s.b.keys.SigningKey(ctx)
}
func (s opStore) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}
func (s opStore) KeySet(ctx context.Context) ([]op.Key, error) { return s.b.keys.KeySet(ctx) }

func (s opStore) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.b.clients[id]
	if !ok {
		return nil, notFoundError{errClientNotFound}
	}
	return c, nil
}

func (s opStore) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.b.clients[id]
	if !ok || !strings.HasPrefix(c.cfg.AuthMethod, "client_secret") || !constantEqual(c.cfg.Secret, secret) {
		return errors.New("auth: invalid client credentials")
	}
	return nil
}

func (s opStore) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

func (s opStore) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	var g *grant
	switch r := req.(type) {
	case opAuthRequest:
		g = r.r.Grant
	case *refreshRequest:
		g = &r.rec.Grant
	}
	if g == nil {
		return nil
	}
	s.b.userinfoClaims(ui, g, scopes)
	return nil
}

func (s opStore) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	rec, err := s.b.loadAccessToken(ctx, tokenID)
	if err != nil {
		return err
	}
	ui.Subject = rec.Grant.Sub
	s.b.userinfoClaims(ui, &rec.Grant, rec.Grant.Scopes)
	return nil
}

func (s opStore) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	rec, err := s.b.loadAccessToken(ctx, tokenID)
	if err != nil {
		return err
	}
	g := &rec.Grant
	resp.Scope = g.Scopes
	resp.ClientID = g.ClientID
	resp.Subject = g.Sub
	resp.Expiration = oidc.FromTime(rec.Expires)
	resp.Audience = g.Audience
	resp.Issuer = s.b.issuer
	resp.JWTID = tokenID
	resp.TokenType = oidc.BearerToken
	if !g.AuthTime.IsZero() {
		resp.AuthTime = oidc.FromTime(g.AuthTime)
	}
	ui := &oidc.UserInfo{}
	caller := s.b.clients[clientID]
	s.b.userinfoClaimsFor(ui, g, g.Scopes, caller)
	if resp.Claims == nil {
		resp.Claims = map[string]any{}
	}
	for k, v := range ui.Claims {
		resp.Claims[k] = v
	}
	if g.Patient != "" {
		resp.Claims["patient"] = strings.TrimPrefix(g.Patient, "Patient/")
	}
	if acr := g.Level.ACR(); acr != "" {
		resp.Claims["acr"] = acr
	}
	return nil
}

func (s opStore) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetPrivateClaimsFromRequest adds SMART context to JWT access tokens.
func (s opStore) GetPrivateClaimsFromRequest(_ context.Context, tr op.TokenRequest, _ []string) (map[string]any, error) {
	g, err := tokenGrant(tr)
	if err != nil {
		return nil, nil
	}
	claims := map[string]any{}
	if g.Subject != "" && g.Kind != KindSystem {
		claims["fhirUser"] = s.b.fhirBase + "/" + g.Subject
	}
	if g.Patient != "" {
		claims["patient"] = strings.TrimPrefix(g.Patient, "Patient/")
	}
	if acr := g.Level.ACR(); acr != "" {
		claims["acr"] = acr
	}
	return claims, nil
}

func (s opStore) GetKeyByIDAndClientID(_ context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	c, ok := s.b.clients[clientID]
	if !ok {
		return nil, notFoundError{errClientNotFound}
	}
	for _, k := range c.jwks.Key(keyID) {
		return &k, nil
	}
	return nil, errors.New("auth: client key not found")
}

func (s opStore) ValidateJWTProfileScopes(_ context.Context, _ string, scopes []string) ([]string, error) {
	return scopes, nil
}

func (s opStore) Health(context.Context) error { return nil }

// ClientCredentials authenticates a client_credentials request made with a
// client secret (private_key_jwt requests are handled before the library).
func (s opStore) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, id, secret); err != nil {
		return nil, err
	}
	return s.b.clients[id], nil
}

func (s opStore) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	c := s.b.clients[id]
	return s.b.systemGrant(c, scopes)
}
