// Package auth decides who is asking and what they may do: the principal
// behind a request (from a bearer token or a portal session), the OpenID
// Provider and upstream federation that establish it, second factors and
// step-up, the access policy, consent and the audit trail. It knows HTTP
// through net/http only, never Fiber.
package auth

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Errors of package auth. The server maps them to 401 and 403.
var (
	// ErrUnauthenticated: no valid credentials were presented.
	ErrUnauthenticated = errors.New("auth: unauthenticated")
	// ErrForbidden: the principal may not do this.
	ErrForbidden = errors.New("auth: forbidden")
)

// Kind says what sort of party a principal is.
type Kind string

// Principal kinds.
const (
	KindAnonymous    Kind = ""
	KindClient       Kind = "client"       // a citizen in care (Patient)
	KindRelated      Kind = "related"      // a related person (RelatedPerson)
	KindProfessional Kind = "professional" // staff (Practitioner)
	KindSystem       Kind = "system"       // an EHR or other backend service
)

// Level is an assurance level, ordered: a higher level satisfies a lower one.
type Level int

// Assurance levels (DigiD / eIDAS).
const (
	LevelNone         Level = 0
	LevelBasis        Level = 10
	LevelMidden       Level = 20
	LevelSubstantieel Level = 25
	LevelHoog         Level = 30
)

// eIDAS level-of-assurance URIs used as acr values. Basis is not notified
// under eIDAS; Midden counts as low, Substantieel as substantial, Hoog as
// high.
const (
	ACRBasis        = "http://eidas.europa.eu/LoA/NotNotified/low"
	ACRMidden       = "http://eidas.europa.eu/LoA/low"
	ACRSubstantieel = "http://eidas.europa.eu/LoA/substantial"
	ACRHoog         = "http://eidas.europa.eu/LoA/high"
)

// ACR returns the acr URI of l ("" for LevelNone).
func (l Level) ACR() string {
	switch {
	case l >= LevelHoog:
		return ACRHoog
	case l >= LevelSubstantieel:
		return ACRSubstantieel
	case l >= LevelMidden:
		return ACRMidden
	case l >= LevelBasis:
		return ACRBasis
	}
	return ""
}

// String names l in Dutch, as DigiD does.
func (l Level) String() string {
	switch l {
	case LevelHoog:
		return "hoog"
	case LevelSubstantieel:
		return "substantieel"
	case LevelMidden:
		return "midden"
	case LevelBasis:
		return "basis"
	case LevelNone:
		return "none"
	}
	return strconv.Itoa(int(l))
}

// ParseLevel accepts an acr URI (eIDAS, eToegang, or the SAML classes DigiD uses), a
// level name (basis, midden, substantieel, hoog) or a number (10, 20, 25,
// 30). It returns LevelNone and false for anything else.
func ParseLevel(s string) (Level, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "basis", "10", "http://eidas.europa.eu/loa/notnotified/low", "urn:oasis:names:tc:saml:2.0:ac:classes:passwordprotectedtransport",
		"urn:etoegang:core:assurance-class:loa2":
		return LevelBasis, true
	case "midden", "20", "http://eidas.europa.eu/loa/low", "urn:oasis:names:tc:saml:2.0:ac:classes:mobiletwofactorcontract",
		"urn:etoegang:core:assurance-class:loa2plus":
		return LevelMidden, true
	case "substantieel", "25", "http://eidas.europa.eu/loa/substantial", "http://eidas.europa.eu/loa/notnotified/substantial",
		"urn:oasis:names:tc:saml:2.0:ac:classes:smartcard", "urn:etoegang:core:assurance-class:loa3":
		return LevelSubstantieel, true
	case "hoog", "30", "http://eidas.europa.eu/loa/high", "http://eidas.europa.eu/loa/notnotified/high",
		"urn:oasis:names:tc:saml:2.0:ac:classes:smartcardpki", "urn:etoegang:core:assurance-class:loa4":
		return LevelHoog, true
	}
	return LevelNone, false
}

// Principal is who is behind a request, and what their credentials allow.
type Principal struct {
	Kind Kind
	// Subject is the FHIR reference of the person or system:
	// "Patient/…", "RelatedPerson/…", "Practitioner/…" or "Device/…".
	Subject string
	// ActingFor is the Patient reference a related person acts for ("" if none).
	ActingFor string
	// ClientID is the OAuth client the request came through.
	ClientID string
	// Scopes are the granted SMART scopes.
	Scopes []string
	// Level is the assurance level of the login, raised by step-up.
	Level Level
	// AuthTime is when the person last authenticated; SecondFactorTime when
	// they last passed a second factor (zero if never in this session).
	AuthTime, SecondFactorTime time.Time
	// SessionID identifies the login session (never logged in full).
	SessionID string

	// Patient is the SMART launch patient (the citizen's own Patient, or
	// the child a parent acts for), "" if none.
	Patient string
	// Provider is the upstream identity provider id ("digid", a
	// municipality) or "local" for local accounts; "" for system clients.
	Provider string
	// Organization is the Organization reference of a professional or
	// system client, when known.
	Organization string
	// Roles are staff roles from the municipality provider (coach,
	// care-team, referrer, helpdesk).
	Roles []string
}

// LogValue logs the kind, subject and client only.
func (p *Principal) LogValue() slog.Value {
	if p == nil {
		return slog.StringValue("anonymous")
	}
	return slog.GroupValue(
		slog.String("kind", string(p.Kind)),
		slog.String("subject", p.Subject),
		slog.String("client", p.ClientID),
	)
}

type principalKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal of ctx, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}
