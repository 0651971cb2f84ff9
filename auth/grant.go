package auth

import (
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// grant is what a token stands for: who, through which client, with what.
// It is stored with every access token and refresh token, so that the
// bearer authenticator, introspection and userinfo answer from it.
type grant struct {
	Account          string    `json:"acct,omitempty"`
	Kind             Kind      `json:"kind"`
	Subject          string    `json:"subj,omitempty"` // FHIR reference
	ActingFor        string    `json:"actf,omitempty"`
	Patient          string    `json:"pat,omitempty"` // SMART launch patient
	Sub              string    `json:"sub"`           // pairwise subject, or client id
	ClientID         string    `json:"cid"`
	Scopes           []string  `json:"scp,omitempty"`
	Level            Level     `json:"lvl,omitempty"`
	AuthTime         time.Time `json:"at,omitempty"`
	SecondFactorTime time.Time `json:"sft,omitempty"`
	SessionID        string    `json:"sid,omitempty"`
	Provider         string    `json:"prov,omitempty"`
	Organization     string    `json:"org,omitempty"`
	Roles            []string  `json:"roles,omitempty"`
	AMR              []string  `json:"amr,omitempty"`
	BSN              []byte    `json:"bsn,omitempty"` // sealed; only for BSN-entitled clients
	Audience         []string  `json:"aud,omitempty"`
	Family           string    `json:"fam,omitempty"`
}

func (g *grant) GetSubject() string     { return g.Sub }
func (g *grant) GetAudience() []string  { return g.Audience }
func (g *grant) GetScopes() []string    { return g.Scopes }
func (g *grant) GetAMR() []string       { return g.AMR }
func (g *grant) GetAuthTime() time.Time { return g.AuthTime }
func (g *grant) GetClientID() string    { return g.ClientID }

var _ op.TokenRequest = (*grant)(nil)

// principal turns a grant into the principal of a request.
func (g *grant) principal() *Principal {
	return &Principal{
		Kind:             g.Kind,
		Subject:          g.Subject,
		ActingFor:        g.ActingFor,
		Patient:          g.Patient,
		ClientID:         g.ClientID,
		Scopes:           slices.Clone(g.Scopes),
		Level:            g.Level,
		AuthTime:         g.AuthTime,
		SecondFactorTime: g.SecondFactorTime,
		SessionID:        g.SessionID,
		Provider:         g.Provider,
		Organization:     g.Organization,
		Roles:            slices.Clone(g.Roles),
	}
}

// authRequest is a pending authorization request.
type authRequest struct {
	ID                  string    `json:"id"`
	ClientID            string    `json:"cid"`
	RedirectURI         string    `json:"ru"`
	State               string    `json:"st,omitempty"`
	Nonce               string    `json:"n,omitempty"`
	Scopes              []string  `json:"scp"`
	ResponseMode        string    `json:"rm,omitempty"`
	CodeChallenge       string    `json:"cc"`
	CodeChallengeMethod string    `json:"ccm"`
	ACRValues           []string  `json:"acr,omitempty"`
	MaxAge              *uint     `json:"ma,omitempty"`
	Prompt              []string  `json:"pr,omitempty"`
	Created             time.Time `json:"c"`
	Done                bool      `json:"done,omitempty"`
	// SessionID binds the completed request to the browser session that
	// logged in; the callback refuses any other browser.
	SessionID string `json:"sess,omitempty"`
	Code      string `json:"code,omitempty"` // hash of the issued code
	Grant     *grant `json:"g,omitempty"`
}

// opAuthRequest adapts authRequest to the OP library.
type opAuthRequest struct{ r *authRequest }

var _ op.AuthRequest = opAuthRequest{}

func (a opAuthRequest) GetID() string { return a.r.ID }
func (a opAuthRequest) GetACR() string {
	if a.r.Grant == nil {
		return ""
	}
	return a.r.Grant.Level.ACR()
}
func (a opAuthRequest) GetAMR() []string {
	if a.r.Grant == nil {
		return nil
	}
	return a.r.Grant.AMR
}
func (a opAuthRequest) GetAudience() []string {
	if a.r.Grant == nil {
		return []string{a.r.ClientID}
	}
	return a.r.Grant.Audience
}
func (a opAuthRequest) GetAuthTime() time.Time {
	if a.r.Grant == nil {
		return time.Time{}
	}
	return a.r.Grant.AuthTime
}
func (a opAuthRequest) GetClientID() string { return a.r.ClientID }
func (a opAuthRequest) GetCodeChallenge() *oidc.CodeChallenge {
	return &oidc.CodeChallenge{Challenge: a.r.CodeChallenge, Method: oidc.CodeChallengeMethod(a.r.CodeChallengeMethod)}
}
func (a opAuthRequest) GetNonce() string                   { return a.r.Nonce }
func (a opAuthRequest) GetRedirectURI() string             { return a.r.RedirectURI }
func (a opAuthRequest) GetResponseType() oidc.ResponseType { return oidc.ResponseTypeCode }
func (a opAuthRequest) GetResponseMode() oidc.ResponseMode {
	return oidc.ResponseMode(a.r.ResponseMode)
}
func (a opAuthRequest) GetScopes() []string {
	if a.r.Grant != nil {
		return a.r.Grant.Scopes
	}
	return a.r.Scopes
}
func (a opAuthRequest) GetState() string { return a.r.State }
func (a opAuthRequest) GetSubject() string {
	if a.r.Grant == nil {
		return ""
	}
	return a.r.Grant.Sub
}
func (a opAuthRequest) Done() bool { return a.r.Done }

// refreshRequest is a refresh token presented at the token endpoint.
type refreshRequest struct {
	hash    string
	version int64
	rec     refreshRecord
}

type refreshRecord struct {
	Family  string    `json:"fam"`
	Used    bool      `json:"used,omitempty"`
	Expires time.Time `json:"exp"`
	Grant   grant     `json:"g"`
}

var _ op.RefreshTokenRequest = (*refreshRequest)(nil)

func (r *refreshRequest) GetAMR() []string            { return r.rec.Grant.AMR }
func (r *refreshRequest) GetAudience() []string       { return r.rec.Grant.Audience }
func (r *refreshRequest) GetAuthTime() time.Time      { return r.rec.Grant.AuthTime }
func (r *refreshRequest) GetClientID() string         { return r.rec.Grant.ClientID }
func (r *refreshRequest) GetScopes() []string         { return r.rec.Grant.Scopes }
func (r *refreshRequest) GetSubject() string          { return r.rec.Grant.Sub }
func (r *refreshRequest) SetCurrentScopes(s []string) { r.rec.Grant.Scopes = s }

// familyRecord tracks a grant family: every access and refresh token issued
// from one authorization code. Reuse of a spent refresh token revokes it.
type familyRecord struct {
	Created time.Time `json:"c"`
	Revoked bool      `json:"rev,omitempty"`
	Reason  string    `json:"why,omitempty"`
}

// accessRecord is stored per access token under family + "." + id.
type accessRecord struct {
	Expires time.Time `json:"exp"`
	Grant   grant     `json:"g"`
}
