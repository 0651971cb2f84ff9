package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"regie/storage"
)

// Config configures a [Broker]. Zero durations take the documented defaults.
type Config struct {
	// BaseURL is the external URL of the listener, e.g.
	// "http://localhost:8080". The issuer is BaseURL itself; the FHIR base
	// is BaseURL + "/fhir".
	BaseURL string
	// Secret is the master secret (at least 32 bytes) from which Regie
	// derives the keys that encrypt signing keys, TOTP seeds and BSNs at
	// rest and the keys of pairwise subjects. Required outside dev mode; in
	// dev mode a secret is generated once and kept in Records.
	Secret []byte
	// Dev turns on the development conveniences: the /dev endpoints, the
	// DigiD and municipality simulators, the regie-dev client, insecure
	// cookies over http.
	Dev bool

	// Records holds all state.
	Records storage.Records
	// Directory looks FHIR resources up to link people to them.
	Directory Directory
	// Auditor receives login, failed login, step-up and logout events.
	Auditor Auditor
	// Mailer sends e-mail; SMS sends text messages. In dev mode, when nil,
	// both go to the outbox at /dev/outbox.
	Mailer Mailer
	SMS    SMSSender
	// Logger receives operational logs (never tokens, BSNs or codes).
	Logger *slog.Logger

	// Clients are the registered OAuth clients.
	Clients []ClientConfig
	// Providers are the upstream identity providers.
	Providers []ProviderConfig

	// Session settings.
	Session SessionConfig
	// Token lifetimes.
	Tokens TokenConfig

	// DevCitizens and DevStaff are the demo people the dev-mode DigiD and
	// municipality simulators offer (a small default set when empty).
	DevCitizens []DevCitizen
	DevStaff    []DevStaff
	// DevEmployeeIDSystem is the Practitioner.identifier system the
	// municipality simulator's employee ids link through (default
	// DefaultEmployeeIDSystem).
	DevEmployeeIDSystem string

	// Now returns the current time (tests); nil means time.Now.
	Now func() time.Time
}

// DefaultEmployeeIDSystem is the identifier system of employee numbers in
// development mode.
const DefaultEmployeeIDSystem = "https://regie.nl/fhir/NamingSystem/employee-id"

// BSNSystem is the identifier system of the Dutch citizen service number.
const BSNSystem = "http://fhir.nl/fhir/NamingSystem/bsn"

// DevCitizen is a demo person of the DigiD simulator. With ActingForBSN set,
// the person logs in through DigiD Machtigen on behalf of that citizen.
type DevCitizen struct {
	Label, BSN, ActingForBSN string
}

// DevStaff is a demo employee of the municipality simulator.
type DevStaff struct {
	Label, EmployeeID string
	Groups            []string
}

// SessionConfig configures portal and login sessions.
type SessionConfig struct {
	// IdleTimeout ends a session after this long without a request
	// (default 15 minutes).
	IdleTimeout time.Duration
	// MaxLifetime ends a session this long after login (default 12 hours).
	MaxLifetime time.Duration
	// CookieName is the session cookie name (default "regie_session").
	CookieName string
}

// TokenConfig configures token lifetimes and key rotation.
type TokenConfig struct {
	// AccessTokenLifetime (default 10 minutes).
	AccessTokenLifetime time.Duration
	// IDTokenLifetime (default 10 minutes).
	IDTokenLifetime time.Duration
	// RefreshTokenLifetime is the lifetime of each refresh token and the
	// upper bound of a family (default 12 hours).
	RefreshTokenLifetime time.Duration
	// KeyRotation is how long a signing key signs before the next one takes
	// over (default 24 hours). Old keys stay published until every token
	// they signed has expired.
	KeyRotation time.Duration
}

// ClientConfig registers one OAuth client.
type ClientConfig struct {
	ID string
	// Secret is the client secret for client_secret_basic/post; empty for
	// public clients and private_key_jwt clients.
	Secret string
	// AuthMethod: "none" (public, PKCE), "client_secret_basic",
	// "client_secret_post" or "private_key_jwt".
	AuthMethod string
	// JWKS is the client's public key set (JSON) for private_key_jwt.
	JWKS json.RawMessage
	// RedirectURIs must match exactly; PostLogoutRedirectURIs likewise.
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	// Scopes lists the scopes the client may request. A SMART scope here
	// allows any narrower scope ("user/*.cruds" allows
	// "user/Observation.rs"); "openid", "fhirUser", "launch/patient" and
	// "offline_access" must be listed to be granted.
	Scopes []string
	// GrantTypes: "authorization_code", "refresh_token",
	// "client_credentials". Default: authorization_code (+ refresh_token
	// when offline_access is in Scopes).
	GrantTypes []string
	// BSNEntitled clients receive the citizen's BSN in the "bsn" claim of
	// ID tokens and introspection answers.
	BSNEntitled bool
	// Subject is the FHIR reference a system client acts as (e.g.
	// "Device/ehr-1"); Organization the Organization reference it belongs to.
	Subject, Organization string
	// SectorID groups clients that must see the same pairwise subject
	// (default: the client ID).
	SectorID string
}

// ProviderConfig registers an upstream OpenID provider.
type ProviderConfig struct {
	// ID names the provider in URLs and identities ("digid", "gemeente-x").
	ID string
	// Kind: "digid" (citizens, BSN) or "municipality" (professionals).
	Kind string
	// DisplayName is shown on the provider choice page.
	DisplayName string
	// Issuer is the upstream issuer URL (discovery is fetched from it).
	Issuer string
	// ClientID, ClientSecret authenticate Regie upstream.
	ClientID, ClientSecret string
	// ClientAuth is "client_secret_basic" (default) or "client_secret_post".
	ClientAuth string
	// Scopes requested upstream (default "openid").
	Scopes []string

	// DigiD claim mapping.
	// BSNClaim is the claim path of the BSN: "bsn", "nin", "sub" or a dotted
	// path such as "attributes.bsn" (default "bsn").
	BSNClaim string
	// LevelClaim names a numeric assurance claim (10, 20, 25, 30) used when
	// acr is absent or unknown.
	LevelClaim string
	// ActingForClaim is the claim path of the BSN a DigiD Machtigen user acts
	// for (default "acting_for.bsn").
	ActingForClaim string

	// Municipality claim mapping.
	// EmployeeIDClaim (default "employee_id") and EmployeeIDSystem (the
	// identifier system of Practitioner.identifier) link the professional.
	EmployeeIDClaim, EmployeeIDSystem string
	// GroupsClaim (default "groups") and RoleMap map upstream groups to
	// roles (coach, care-team, referrer, helpdesk).
	GroupsClaim string
	RoleMap     map[string]string
	// Organization is the Organization reference of the municipality.
	Organization string
	// DefaultLevel is the assurance level when the provider states none
	// (LevelNone: a DigiD login without a recognisable level fails).
	DefaultLevel Level
}

func (c *Config) validate() error {
	if c.Records == nil {
		return errors.New("auth: config: Records is required")
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("auth: config: BaseURL %q is not an absolute http(s) URL", c.BaseURL)
	}
	if u.Scheme == "http" && !c.Dev && !isLoopback(u.Hostname()) {
		return errors.New("auth: config: BaseURL must be https outside dev mode (http only on loopback)")
	}
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	if !c.Dev && len(c.Secret) < 32 {
		return errors.New("auth: config: Secret of at least 32 bytes is required outside dev mode")
	}
	seen := map[string]bool{}
	for _, cl := range c.Clients {
		if cl.ID == "" || seen[cl.ID] {
			return fmt.Errorf("auth: config: client id %q empty or duplicate", cl.ID)
		}
		seen[cl.ID] = true
		switch cl.AuthMethod {
		case "none", "client_secret_basic", "client_secret_post":
		case "private_key_jwt":
			if len(cl.JWKS) == 0 {
				return fmt.Errorf("auth: config: client %s: private_key_jwt needs JWKS", cl.ID)
			}
		default:
			return fmt.Errorf("auth: config: client %s: unknown auth method %q", cl.ID, cl.AuthMethod)
		}
		if strings.HasPrefix(cl.AuthMethod, "client_secret") && len(cl.Secret) < 16 {
			return fmt.Errorf("auth: config: client %s: secret shorter than 16 characters", cl.ID)
		}
	}
	pseen := map[string]bool{}
	for _, p := range c.Providers {
		if p.ID == "" || pseen[p.ID] || strings.ContainsAny(p.ID, "/|?#") {
			return fmt.Errorf("auth: config: provider id %q empty, duplicate or invalid", p.ID)
		}
		pseen[p.ID] = true
		if p.Kind != "digid" && p.Kind != "municipality" {
			return fmt.Errorf("auth: config: provider %s: kind must be digid or municipality", p.ID)
		}
		if p.ClientAuth != "" && p.ClientAuth != "client_secret_basic" && p.ClientAuth != "client_secret_post" {
			return fmt.Errorf("auth: config: provider %s: client auth must be client_secret_basic or client_secret_post", p.ID)
		}
		if u, err := url.Parse(p.Issuer); err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && (c.Dev || isLoopback(u.Hostname())))) {
			return fmt.Errorf("auth: config: provider %s: issuer must be an https URL", p.ID)
		}
	}
	if c.Session.IdleTimeout == 0 {
		c.Session.IdleTimeout = 15 * time.Minute
	}
	if c.Session.MaxLifetime == 0 {
		c.Session.MaxLifetime = 12 * time.Hour
	}
	if c.Session.CookieName == "" {
		c.Session.CookieName = "regie_session"
	}
	if c.Tokens.AccessTokenLifetime == 0 {
		c.Tokens.AccessTokenLifetime = 10 * time.Minute
	}
	if c.Tokens.IDTokenLifetime == 0 {
		c.Tokens.IDTokenLifetime = 10 * time.Minute
	}
	if c.Tokens.RefreshTokenLifetime == 0 {
		c.Tokens.RefreshTokenLifetime = 12 * time.Hour
	}
	if c.Tokens.KeyRotation == 0 {
		c.Tokens.KeyRotation = 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Directory looks FHIR resources up for identity linking. The server
// implements it over the FHIR engine (without access control: the broker
// only uses it to link a person who has just authenticated). Implementations
// are safe for concurrent use and honour ctx.
type Directory interface {
	// FindByIdentifier returns the references ("Patient/123") of the live
	// resources of resourceType with identifier system|value.
	FindByIdentifier(ctx context.Context, resourceType, system, value string) ([]string, error)
	// Read returns the resource JSON of ref, or an error wrapping
	// storage.ErrNotFound.
	Read(ctx context.Context, ref string) ([]byte, error)
}

// Auditor receives security events. The server turns them into AuditEvents.
// Implementations are safe for concurrent use; an error is logged, and a
// login whose audit record cannot be written fails.
type Auditor interface {
	Audit(ctx context.Context, e AuditEvent) error
}

// AuditEvent is one security event.
type AuditEvent struct {
	// Action: "login", "login-failed", "step-up", "step-up-failed",
	// "logout", "token", "token-failed", "lockout", "second-factor-reset",
	// "account-activated", "password-reset".
	Action string
	// Outcome: "success" or "failure"; Reason explains a failure without
	// personal data ("no-match", "bad-code", "rate-limited", ...).
	Outcome, Reason string
	// Who: the FHIR reference (empty if unknown), acting for whom, the
	// account id.
	Subject, ActingFor, Account string
	When                        time.Time
	// From where: the client IP address and user agent.
	IP, UserAgent string
	// ClientID is the OAuth client; Provider the upstream provider.
	ClientID, Provider string
	// Level is the assurance level reached.
	Level Level
	// SessionID is the public session id.
	SessionID string
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
