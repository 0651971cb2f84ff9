package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"regie/storage"
)

// session is a browser login session. The cookie carries
// "<account>.<id>.<secret>"; the record, keyed "<account>.<id>", keeps only
// a hash of the secret.
type session struct {
	ID               string    `json:"id"`
	Account          string    `json:"acct"`
	SecretHash       string    `json:"sh"`
	Kind             Kind      `json:"kind"`
	Subject          string    `json:"subj,omitempty"`
	ActingFor        string    `json:"actf,omitempty"`
	Roles            []string  `json:"roles,omitempty"`
	Organization     string    `json:"org,omitempty"`
	Provider         string    `json:"prov"`
	Level            Level     `json:"lvl"`
	AMR              []string  `json:"amr,omitempty"`
	AuthTime         time.Time `json:"at"`
	SecondFactorTime time.Time `json:"sft,omitempty"`
	Created          time.Time `json:"c"`
	LastSeen         time.Time `json:"ls"`
	BSN              []byte    `json:"bsn,omitempty"` // sealed
	IP               string    `json:"ip,omitempty"`
	UserAgent        string    `json:"ua,omitempty"`
}

func (s *session) key() string { return s.Account + "." + s.ID }

func (b *Broker) sessionExpiry(s *session) time.Time {
	idle := s.LastSeen.Add(b.cfg.Session.IdleTimeout)
	abs := s.Created.Add(b.cfg.Session.MaxLifetime)
	if idle.Before(abs) {
		return idle
	}
	return abs
}

// newSession stores s (filling ID, times) and returns the cookie value.
func (b *Broker) newSession(ctx context.Context, s *session, r *http.Request) (string, error) {
	now := b.now()
	s.ID = randToken(16)
	secret := randToken(24)
	s.SecretHash = hashToken(secret)
	s.Created, s.LastSeen = now, now
	if s.AuthTime.IsZero() {
		s.AuthTime = now
	}
	if r != nil {
		s.IP, s.UserAgent = clientIP(r), truncate(r.UserAgent(), 200)
	}
	if _, err := putJSON(ctx, b.recs, kindSession, s.key(), s, b.sessionExpiry(s), 0); err != nil {
		return "", fmt.Errorf("auth: store session: %w", err)
	}
	return s.key() + "." + secret, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// loadSession checks a cookie value and returns its live session.
func (b *Broker) loadSession(ctx context.Context, cookie string) (*session, int64, error) {
	i := strings.LastIndexByte(cookie, '.')
	if i <= 0 {
		return nil, 0, errNoSession
	}
	key, secret := cookie[:i], cookie[i+1:]
	var s session
	v, err := getJSON(ctx, b.recs, kindSession, key, &s)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, 0, errNoSession
		}
		return nil, 0, err
	}
	if !constantEqual(s.SecretHash, hashToken(secret)) {
		return nil, 0, errNoSession
	}
	if !b.now().Before(b.sessionExpiry(&s)) {
		return nil, 0, errNoSession
	}
	return &s, v, nil
}

// touch records activity, at most once a minute per session.
func (b *Broker) touch(ctx context.Context, s *session, v int64) {
	now := b.now()
	if now.Sub(s.LastSeen) < time.Minute {
		return
	}
	s.LastSeen = now
	_, _ = putJSON(ctx, b.recs, kindSession, s.key(), s, b.sessionExpiry(s), v)
}

func (b *Broker) saveSession(ctx context.Context, s *session, v int64) error {
	_, err := putJSON(ctx, b.recs, kindSession, s.key(), s, b.sessionExpiry(s), v)
	return err
}

func (b *Broker) sessionFromRequest(ctx context.Context, r *http.Request) (*session, int64, error) {
	c, err := r.Cookie(b.cfg.Session.CookieName)
	if err != nil {
		return nil, 0, errNoSession
	}
	return b.loadSession(ctx, c.Value)
}

func (b *Broker) setSessionCookie(w http.ResponseWriter, value string) {
	http.SetCookie(w, &http.Cookie{
		Name: b.cfg.Session.CookieName, Value: value, Path: "/",
		HttpOnly: true, Secure: b.secureCookies(), SameSite: http.SameSiteLaxMode,
		MaxAge: int(b.cfg.Session.MaxLifetime.Seconds()),
	})
}

func (b *Broker) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: b.cfg.Session.CookieName, Value: "", Path: "/",
		HttpOnly: true, Secure: b.secureCookies(), SameSite: http.SameSiteLaxMode, MaxAge: -1,
	})
}

// revokeSessionGrants revokes every grant (refresh and access tokens) made
// from the sessions whose key starts with prefix ("account." for all of an
// account's sessions, "account.session." for one).
func (b *Broker) revokeSessionGrants(ctx context.Context, prefix string) {
	var keys []string
	_ = b.recs.ListRecords(ctx, kindSessFamily, prefix, func(r *storage.Record) error {
		keys = append(keys, r.Key)
		return nil
	})
	for _, k := range keys {
		b.revokeFamily(ctx, k[strings.LastIndexByte(k, '.')+1:], "logout")
		_ = b.recs.DeleteRecord(ctx, kindSessFamily, k, storage.AnyVersion)
	}
}

// endSession deletes s, revokes the tokens issued from it and audits the logout.
func (b *Broker) endSession(ctx context.Context, s *session, r *http.Request, clientID string) {
	_ = b.recs.DeleteRecord(ctx, kindSession, s.key(), storage.AnyVersion)
	b.revokeSessionGrants(ctx, s.key()+".")
	_ = b.audit(ctx, AuditEvent{Action: "logout", Outcome: "success", Subject: s.Subject, ActingFor: s.ActingFor,
		Account: s.Account, Provider: s.Provider, ClientID: clientID, SessionID: s.ID, Level: s.Level}, r)
}

// SessionCookieName is the name of the session cookie the portal reads.
func (b *Broker) SessionCookieName() string { return b.cfg.Session.CookieName }

// AuthenticateSession returns the principal of a portal request from the
// session cookie value. It extends the idle timeout. Portal principals carry
// the scopes of their kind (patient/*.cruds for citizens, user/*.cruds for
// staff); the access policy decides the rest. An unknown, expired or forged
// cookie returns an error wrapping ErrUnauthenticated.
func (b *Broker) AuthenticateSession(ctx context.Context, cookie string, _ RequestMeta) (*Principal, error) {
	s, v, err := b.loadSession(ctx, cookie)
	if err != nil {
		if errors.Is(err, errNoSession) {
			return nil, fmt.Errorf("%w: no valid session", ErrUnauthenticated)
		}
		return nil, err
	}
	b.touch(ctx, s, v)
	return b.sessionPrincipal(s), nil
}

func (b *Broker) sessionPrincipal(s *session) *Principal {
	p := &Principal{
		Kind: s.Kind, Subject: s.Subject, ActingFor: s.ActingFor, ClientID: "portal",
		Level: s.Level, AuthTime: s.AuthTime, SecondFactorTime: s.SecondFactorTime,
		SessionID: s.ID, Provider: s.Provider, Organization: s.Organization, Roles: s.Roles,
	}
	switch s.Kind {
	case KindClient, KindRelated:
		p.Scopes = []string{"patient/*.cruds"}
		p.Patient = s.ActingFor
		if p.Patient == "" && strings.HasPrefix(s.Subject, "Patient/") {
			p.Patient = s.Subject
		}
	case KindProfessional:
		p.Scopes = []string{"user/*.cruds"}
	}
	return p
}

// CSRFToken returns the CSRF token for forms of the session whose cookie
// value is given; [Broker.CheckCSRF] verifies it.
func (b *Broker) CSRFToken(cookie string) string {
	return mac(b.secrets.csrf, "csrf", cookie)[:43]
}

// CheckCSRF reports whether token is the CSRF token of the cookie value.
func (b *Broker) CheckCSRF(cookie, token string) bool {
	return cookie != "" && constantEqual(b.CSRFToken(cookie), token)
}

// SessionInfo describes one session in the "my sessions" list.
type SessionInfo struct {
	ID                  string
	Created, LastSeen   time.Time
	IP, UserAgent, Prov string
	Current             bool
}

// Sessions lists the live sessions of the account behind cookie.
func (b *Broker) Sessions(ctx context.Context, cookie string) ([]SessionInfo, error) {
	cur, _, err := b.loadSession(ctx, cookie)
	if err != nil {
		return nil, fmt.Errorf("%w: no valid session", ErrUnauthenticated)
	}
	var out []SessionInfo
	err = b.recs.ListRecords(ctx, kindSession, cur.Account+".", func(r *storage.Record) error {
		var s session
		if _, err := getJSON(ctx, b.recs, kindSession, r.Key, &s); err != nil {
			return nil
		}
		if !b.now().Before(b.sessionExpiry(&s)) {
			return nil
		}
		out = append(out, SessionInfo{ID: s.ID, Created: s.Created, LastSeen: s.LastSeen, IP: s.IP, UserAgent: s.UserAgent, Prov: s.Provider, Current: s.ID == cur.ID})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].LastSeen.After(out[j].LastSeen) })
	return out, err
}

// LogoutElsewhere ends every other session of the account behind cookie.
func (b *Broker) LogoutElsewhere(ctx context.Context, cookie string, meta RequestMeta) (int, error) {
	cur, _, err := b.loadSession(ctx, cookie)
	if err != nil {
		return 0, fmt.Errorf("%w: no valid session", ErrUnauthenticated)
	}
	var keys []string
	_ = b.recs.ListRecords(ctx, kindSession, cur.Account+".", func(r *storage.Record) error {
		if r.Key != cur.key() {
			keys = append(keys, r.Key)
		}
		return nil
	})
	for _, k := range keys {
		_ = b.recs.DeleteRecord(ctx, kindSession, k, storage.AnyVersion)
		b.revokeSessionGrants(ctx, k+".")
	}
	_ = b.audit(ctx, AuditEvent{Action: "logout", Outcome: "success", Reason: "logout-elsewhere", Subject: cur.Subject,
		Account: cur.Account, SessionID: cur.ID, IP: meta.IP, UserAgent: meta.UserAgent}, nil)
	return len(keys), nil
}

// Requirement is what an action needs from the session that asks for it.
type Requirement struct {
	// Level is the minimum assurance level.
	Level Level
	// SecondFactorWithin, when set, needs a second factor passed at most
	// this long ago (e.g. 5 minutes for break-the-glass).
	SecondFactorWithin time.Duration
}

// ErrStepUpRequired is wrapped by the error of [Broker.StepUp] when the
// principal must authenticate more strongly first.
var ErrStepUpRequired = fmt.Errorf("%w: step-up required", ErrForbidden)

// StepUpError says how to step up.
type StepUpError struct {
	// RedirectURL is where to send a portal user (the step-up page, which
	// returns to the given URL afterwards); empty for bearer principals.
	RedirectURL string
	// ACR is the acr value an API client must ask for with acr_values (and
	// max_age=0 for a fresh second factor).
	ACR  string
	Need Requirement
}

func (e *StepUpError) Error() string { return "auth: step-up required" }
func (e *StepUpError) Unwrap() error { return ErrStepUpRequired }

// StepUp returns nil if p satisfies need, else a *StepUpError. returnTo is
// the local path (starting with "/") to come back to after the step-up.
func (b *Broker) StepUp(p *Principal, need Requirement, returnTo string) error {
	if p == nil {
		return fmt.Errorf("%w: no principal", ErrUnauthenticated)
	}
	ok := p.Level >= need.Level
	if need.SecondFactorWithin > 0 && (p.SecondFactorTime.IsZero() || b.now().Sub(p.SecondFactorTime) > need.SecondFactorWithin) {
		ok = false
	}
	if ok {
		return nil
	}
	e := &StepUpError{Need: need, ACR: need.Level.ACR()}
	if p.ClientID == "portal" && p.SessionID != "" {
		if !strings.HasPrefix(returnTo, "/") || strings.HasPrefix(returnTo, "//") {
			returnTo = "/"
		}
		q := url.Values{"return": {returnTo}, "level": {fmt.Sprint(int(need.Level))}}
		if need.SecondFactorWithin > 0 {
			q.Set("fresh", "1")
		}
		e.RedirectURL = b.issuer + "/login/step-up?" + q.Encode()
	}
	return e
}

// secureCookies: cookies are Secure whenever the broker is served over
// https, which Config requires outside dev mode except on loopback.
func (b *Broker) secureCookies() bool { return strings.HasPrefix(b.issuer, "https://") }
