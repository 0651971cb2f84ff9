package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// client is a registered OAuth client as the OP library sees it.
type client struct {
	cfg      ClientConfig
	loginURL string
	idTTL    time.Duration
	grants   []oidc.GrantType
	jwks     jose.JSONWebKeySet
}

var _ op.Client = (*client)(nil)

func newClient(cfg ClientConfig, baseURL string, idTTL time.Duration) (*client, error) {
	c := &client{cfg: cfg, loginURL: baseURL + "/login/", idTTL: idTTL}
	if len(cfg.GrantTypes) == 0 {
		c.grants = []oidc.GrantType{oidc.GrantTypeCode}
		if slices.Contains(cfg.Scopes, oidc.ScopeOfflineAccess) {
			c.grants = append(c.grants, oidc.GrantTypeRefreshToken)
		}
	}
	for _, g := range cfg.GrantTypes {
		switch g {
		case "authorization_code", "refresh_token", "client_credentials":
			c.grants = append(c.grants, oidc.GrantType(g))
		default:
			return nil, fmt.Errorf("auth: client %s: unsupported grant type %q", cfg.ID, g)
		}
	}
	if cfg.AuthMethod == "private_key_jwt" {
		if err := json.Unmarshal(cfg.JWKS, &c.jwks); err != nil {
			return nil, fmt.Errorf("auth: client %s: JWKS: %w", cfg.ID, err)
		}
		for _, k := range c.jwks.Keys {
			if !k.IsPublic() {
				return nil, fmt.Errorf("auth: client %s: JWKS holds a private key", cfg.ID)
			}
		}
		if len(c.jwks.Keys) == 0 {
			return nil, fmt.Errorf("auth: client %s: JWKS has no keys", cfg.ID)
		}
	}
	for _, s := range cfg.Scopes {
		if strings.ContainsRune(s, '/') && !strings.HasPrefix(s, "launch") {
			if _, err := ParseScope(s); err != nil {
				return nil, fmt.Errorf("auth: client %s: %w", cfg.ID, err)
			}
		}
	}
	return c, nil
}

func (c *client) GetID() string                    { return c.cfg.ID }
func (c *client) RedirectURIs() []string           { return c.cfg.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return c.cfg.PostLogoutRedirectURIs }

// ApplicationType is web for every client: redirect URIs then match exactly
// (the native type would accept any loopback port).
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethod(c.cfg.AuthMethod) }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType        { return c.grants }
func (c *client) LoginURL(id string) string           { return c.loginURL + "?authRequestID=" + id }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return c.idTTL }
func (c *client) DevMode() bool                       { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }

// IsScopeAllowed reports whether the client may request scope: listed
// literally, or a SMART scope narrower than a listed one.
func (c *client) IsScopeAllowed(scope string) bool {
	if slices.Contains(c.cfg.Scopes, scope) {
		return true
	}
	want, err := ParseScope(scope)
	if err != nil {
		return false
	}
	for _, s := range c.cfg.Scopes {
		if have, err := ParseScope(s); err == nil && have.Covers(want) {
			return true
		}
	}
	return false
}

// allowedScopes filters requested to what the client may have.
func (c *client) allowedScopes(requested []string) []string {
	var out []string
	for _, s := range requested {
		if c.IsScopeAllowed(s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (c *client) sector() string {
	if c.cfg.SectorID != "" {
		return c.cfg.SectorID
	}
	return c.cfg.ID
}

// errClientNotFound is returned for unknown clients (a plain error, which
// the OP answers as invalid_client, not server_error).
var errClientNotFound = errors.New("auth: client not found")

type notFoundError struct{ error }

func (notFoundError) IsNotFound() {}
