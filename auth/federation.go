package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"regie/storage"
)

const (
	loginStateTTL = 10 * time.Minute
	fedCookie     = "regie_fed"
)

// federation logs people in with upstream OpenID providers (go-oidc and
// x/oauth2, with state, nonce and PKCE S256), maps their claims and links
// them to FHIR resources.
type federation struct {
	b    *Broker
	http *http.Client
	mu   sync.Mutex
	ups  map[string]*upstream
}

type upstream struct {
	cfg      ProviderConfig
	mu       sync.Mutex
	provider *oidc.Provider
}

func newFederation(b *Broker) *federation {
	f := &federation{b: b, http: &http.Client{Timeout: 10 * time.Second}, ups: map[string]*upstream{}}
	for _, p := range b.cfg.Providers {
		f.add(p)
	}
	return f
}

func (f *federation) add(p ProviderConfig) {
	if p.BSNClaim == "" {
		p.BSNClaim = "bsn"
	}
	if p.ActingForClaim == "" {
		p.ActingForClaim = "acting_for.bsn"
	}
	if p.EmployeeIDClaim == "" {
		p.EmployeeIDClaim = "employee_id"
	}
	if p.GroupsClaim == "" {
		p.GroupsClaim = "groups"
	}
	if len(p.Scopes) == 0 {
		p.Scopes = []string{oidc.ScopeOpenID}
	}
	f.mu.Lock()
	f.ups[p.ID] = &upstream{cfg: p}
	f.mu.Unlock()
}

func (f *federation) get(id string) *upstream {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ups[id]
}

// discover fetches the upstream's discovery document once.
func (f *federation) discover(ctx context.Context, up *upstream) (*oidc.Provider, error) {
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.provider != nil {
		return up.provider, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, f.http), up.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("auth: discover %s: %w", up.cfg.ID, err)
	}
	up.provider = p
	return p, nil
}

func (f *federation) oauth(up *upstream, p *oidc.Provider) *oauth2.Config {
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if up.cfg.ClientAuth == "client_secret_post" {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{
		ClientID: up.cfg.ClientID, ClientSecret: up.cfg.ClientSecret,
		Endpoint:    ep,
		RedirectURL: f.b.issuer + "/login/callback/" + up.cfg.ID,
		Scopes:      up.cfg.Scopes,
	}
}

// loginState is kept between the redirect upstream and the callback.
type loginState struct {
	Provider      string    `json:"p"`
	AuthRequestID string    `json:"ar,omitempty"`
	Return        string    `json:"ret,omitempty"`
	Nonce         string    `json:"n"`
	Verifier      string    `json:"v"`
	Binding       string    `json:"b"` // hash of the browser's fed cookie
	StepUpSession string    `json:"su,omitempty"`
	Invite        string    `json:"inv,omitempty"`
	Created       time.Time `json:"c"`
}

func safeReturn(s string) string {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") {
		return "/"
	}
	return s
}

// start sends the browser to the upstream provider.
func (f *federation) start(w http.ResponseWriter, r *http.Request) {
	b := f.b
	up := f.get(r.PathValue("id"))
	if up == nil {
		http.NotFound(w, r)
		return
	}
	ctx := r.Context()
	if !b.allow(ctx, w, r, "fed-start", clientIP(r), 30, time.Minute) {
		return
	}
	q := r.URL.Query()
	st := loginState{Provider: up.cfg.ID, Nonce: randToken(18), Verifier: oauth2.GenerateVerifier(), Created: b.now(), Invite: q.Get("invite")}
	var acr Level
	prompt := ""
	if id := q.Get("authRequestID"); id != "" {
		var ar authRequest
		if _, err := getJSON(ctx, b.recs, kindAuthReq, id, &ar); err != nil || ar.Done {
			b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
			return
		}
		st.AuthRequestID = id
		acr = requiredLevel(ar.ACRValues)
	} else {
		st.Return = safeReturn(q.Get("return"))
	}
	if q.Get("stepup") == "1" {
		sess, _, err := b.sessionFromRequest(ctx, r)
		if err != nil {
			b.ui.errorPage(w, r, http.StatusUnauthorized, "expired")
			return
		}
		st.StepUpSession = sess.key()
		if l, err := strconv.Atoi(q.Get("level")); err == nil {
			acr = Level(l)
		}
		prompt = "login"
	}
	p, err := f.discover(ctx, up)
	if err != nil {
		b.log.Error("auth: upstream discovery", "provider", up.cfg.ID, "err", err)
		b.ui.errorPage(w, r, http.StatusBadGateway, "upstream")
		return
	}
	binding := randToken(18)
	st.Binding = hashToken(binding)
	state := randToken(24)
	if _, err := putJSON(ctx, b.recs, kindLogin, hashToken(state), st, b.now().Add(loginStateTTL), 0); err != nil {
		b.ui.errorPage(w, r, http.StatusInternalServerError, "upstream")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: fedCookie, Value: binding, Path: "/login/callback/", HttpOnly: true,
		Secure: b.secureCookies(), SameSite: http.SameSiteLaxMode, MaxAge: int(loginStateTTL.Seconds())})
	opts := []oauth2.AuthCodeOption{oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)}
	if acr > LevelNone {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", acr.ACR()))
	}
	if prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", prompt))
	}
	http.Redirect(w, r, f.oauth(up, p).AuthCodeURL(state, opts...), http.StatusFound)
}

// loginFailure is a failed upstream login: reason goes to the audit trail,
// page to the person.
type loginFailure struct {
	reason, page string
	status       int
}

func (e *loginFailure) Error() string { return "auth: login failed: " + e.reason }

func fail(reason string) *loginFailure {
	return &loginFailure{reason: reason, page: "upstream", status: http.StatusBadRequest}
}

// callback completes an upstream login.
func (f *federation) callback(w http.ResponseWriter, r *http.Request) {
	b := f.b
	ctx := r.Context()
	up := f.get(r.PathValue("id"))
	if up == nil {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	failed := func(lf *loginFailure, st *loginState) {
		e := AuditEvent{Action: "login-failed", Outcome: "failure", Reason: lf.reason, Provider: up.cfg.ID}
		if st != nil && st.StepUpSession != "" {
			e.Action = "step-up-failed"
		}
		_ = b.audit(ctx, e, r)
		if lf.page == "nomatch" {
			b.ui.message(w, r, lf.status, "nomatch_title", "nomatch_text", "", "")
			return
		}
		b.ui.errorPage(w, r, lf.status, lf.page)
	}
	if !b.allow(ctx, w, r, "fed-callback", clientIP(r), 30, time.Minute) {
		return
	}
	// the state is single use and bound to this browser
	key := hashToken(q.Get("state"))
	var st loginState
	v, err := getJSON(ctx, b.recs, kindLogin, key, &st)
	if err != nil || st.Provider != up.cfg.ID {
		failed(fail("state"), nil)
		return
	}
	if err := b.recs.DeleteRecord(ctx, kindLogin, key, v); err != nil {
		failed(fail("state"), nil)
		return
	}
	c, err := r.Cookie(fedCookie)
	if err != nil || !constantEqual(hashToken(c.Value), st.Binding) {
		failed(fail("state-binding"), &st)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: fedCookie, Value: "", Path: "/login/callback/", MaxAge: -1, HttpOnly: true, Secure: b.secureCookies()})
	if e := q.Get("error"); e != "" {
		failed(fail("upstream-"+truncate(e, 40)), &st)
		return
	}
	p, err := f.discover(ctx, up)
	if err != nil {
		failed(fail("discovery"), &st)
		return
	}
	octx := oidc.ClientContext(ctx, f.http)
	tok, err := f.oauth(up, p).Exchange(octx, q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		failed(fail("code-exchange"), &st)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		failed(fail("no-id-token"), &st)
		return
	}
	idt, err := p.VerifierContext(octx, &oidc.Config{ClientID: up.cfg.ClientID, Now: b.now}).Verify(octx, raw)
	if err != nil {
		failed(fail("id-token"), &st)
		return
	}
	if !constantEqual(idt.Nonce, st.Nonce) {
		failed(fail("nonce"), &st)
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		failed(fail("claims"), &st)
		return
	}
	var sess *session
	var lf *loginFailure
	switch up.cfg.Kind {
	case "digid":
		sess, lf = f.citizen(ctx, up, idt.Subject, claims)
	default:
		sess, lf = f.professional(ctx, up, idt.Subject, claims, st.Invite)
	}
	if lf != nil {
		failed(lf, &st)
		return
	}
	if st.StepUpSession != "" {
		f.finishStepUp(w, r, &st, sess)
		return
	}
	if err := b.startSession(ctx, w, r, sess, ""); err != nil {
		b.ui.errorPage(w, r, http.StatusInternalServerError, "upstream")
		return
	}
	f.continueAfterLogin(w, r, &st, sess)
}

// continueAfterLogin resumes what the login was for.
func (f *federation) continueAfterLogin(w http.ResponseWriter, r *http.Request, st *loginState, sess *session) {
	b := f.b
	if st.AuthRequestID != "" {
		var ar authRequest
		if _, err := getJSON(r.Context(), b.recs, kindAuthReq, st.AuthRequestID, &ar); err != nil {
			b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
			return
		}
		b.completeAuthRequest(w, r, &ar, sess)
		return
	}
	http.Redirect(w, r, safeReturn(st.Return), http.StatusSeeOther)
}

// finishStepUp raises the level of the existing session when the upstream
// login was by the same person.
func (f *federation) finishStepUp(w http.ResponseWriter, r *http.Request, st *loginState, fresh *session) {
	b := f.b
	ctx := r.Context()
	var cur session
	v, err := getJSON(ctx, b.recs, kindSession, st.StepUpSession, &cur)
	if err != nil || cur.Account != fresh.Account {
		_ = b.audit(ctx, AuditEvent{Action: "step-up-failed", Outcome: "failure", Reason: "other-person", Provider: st.Provider, Account: cur.Account}, r)
		b.ui.errorPage(w, r, http.StatusForbidden, "wrong-session")
		return
	}
	cur.Level = max(cur.Level, fresh.Level)
	cur.AuthTime = b.now()
	if up := f.get(st.Provider); up != nil && up.cfg.Kind == "digid" && fresh.Level >= LevelMidden {
		// DigiD from Midden up is two-factor (SMS, app or ID card)
		cur.SecondFactorTime = b.now()
	}
	cur.LastSeen = b.now()
	if err := b.saveSession(ctx, &cur, v); err != nil {
		b.ui.errorPage(w, r, http.StatusConflict, "expired")
		return
	}
	_ = b.audit(ctx, AuditEvent{Action: "step-up", Outcome: "success", Subject: cur.Subject, ActingFor: cur.ActingFor, Account: cur.Account,
		Provider: st.Provider, Level: cur.Level, SessionID: cur.ID}, r)
	f.continueAfterLogin(w, r, st, &cur)
}

// claimPath reads a dotted claim path ("bsn", "attributes.bsn") as a string.
func claimPath(m map[string]any, path string) string {
	var cur any = m
	for _, part := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = mm[part]
	}
	switch v := cur.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case json.Number:
		return v.String()
	}
	return ""
}

func claimList(m map[string]any, path string) []string {
	var cur any = m
	for _, part := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[part]
	}
	switch v := cur.(type) {
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case string:
		return strings.Fields(v)
	}
	return nil
}

// upstreamLevel maps acr (or the numeric level claim) to a Level.
func upstreamLevel(up *upstream, claims map[string]any) Level {
	if acr, _ := claims["acr"].(string); acr != "" {
		if l, ok := ParseLevel(acr); ok {
			return l
		}
	}
	if up.cfg.LevelClaim != "" {
		if l, ok := ParseLevel(claimPath(claims, up.cfg.LevelClaim)); ok {
			return l
		}
	}
	return up.cfg.DefaultLevel
}

// citizen maps a DigiD login to a Patient or RelatedPerson.
func (f *federation) citizen(ctx context.Context, up *upstream, sub string, claims map[string]any) (*session, *loginFailure) {
	b := f.b
	if b.cfg.Directory == nil {
		return nil, fail("no-directory")
	}
	bsn := claimPath(claims, up.cfg.BSNClaim)
	if !ValidBSN(bsn) {
		return nil, fail("bsn-invalid")
	}
	level := upstreamLevel(up, claims)
	if level == LevelNone {
		return nil, fail("level-unknown")
	}
	noMatch := &loginFailure{reason: "no-match", page: "nomatch", status: http.StatusForbidden}
	s := &session{Provider: up.cfg.ID, Level: level, AMR: []string{"fed"}, BSN: seal(b.secrets.enc, []byte(bsn), "bsn")}
	if level >= LevelMidden {
		// DigiD from Midden up is itself two-factor
		s.SecondFactorTime = b.now()
	}
	find := func(typ, value string) ([]string, *loginFailure) {
		refs, err := b.cfg.Directory.FindByIdentifier(ctx, typ, BSNSystem, value)
		if err != nil {
			b.log.Error("auth: directory lookup", "type", typ, "err", err)
			return nil, fail("directory")
		}
		return refs, nil
	}
	if acting := claimPath(claims, up.cfg.ActingForClaim); acting != "" {
		if !ValidBSN(acting) {
			return nil, fail("bsn-invalid")
		}
		kids, lf := find("Patient", acting)
		if lf != nil {
			return nil, lf
		}
		if len(kids) != 1 {
			return nil, noMatch
		}
		rps, lf := find("RelatedPerson", bsn)
		if lf != nil {
			return nil, lf
		}
		for _, rp := range rps {
			if f.relatedTo(ctx, rp, kids[0]) {
				s.Kind, s.Subject, s.ActingFor = KindRelated, rp, kids[0]
				break
			}
		}
		if s.Subject == "" {
			return nil, noMatch
		}
	} else {
		pats, lf := find("Patient", bsn)
		if lf != nil {
			return nil, lf
		}
		switch len(pats) {
		case 1:
			s.Kind, s.Subject = KindClient, pats[0]
		case 0:
			rps, lf := find("RelatedPerson", bsn)
			if lf != nil {
				return nil, lf
			}
			if len(rps) == 0 {
				return nil, noMatch
			}
			s.Kind, s.Subject = KindRelated, rps[0]
		default:
			return nil, &loginFailure{reason: "ambiguous", page: "nomatch", status: http.StatusForbidden}
		}
	}
	acct, err := b.linkIdentity(ctx, up.cfg.ID, sub, s.Kind, s.Subject)
	if err != nil {
		return nil, fail("account")
	}
	s.Account = acct
	return s, nil
}

// relatedTo reports whether RelatedPerson rp is related to patient.
func (f *federation) relatedTo(ctx context.Context, rp, patient string) bool {
	raw, err := f.b.cfg.Directory.Read(ctx, rp)
	if err != nil {
		return false
	}
	var doc struct {
		Patient struct {
			Reference string `json:"reference"`
		} `json:"patient"`
	}
	if json.Unmarshal(raw, &doc) != nil {
		return false
	}
	ref := doc.Patient.Reference
	return ref == patient || strings.HasSuffix(ref, "/"+patient)
}

// professional maps a municipality login to a Practitioner and roles.
func (f *federation) professional(ctx context.Context, up *upstream, sub string, claims map[string]any, invite string) (*session, *loginFailure) {
	b := f.b
	s := &session{Kind: KindProfessional, Provider: up.cfg.ID, Level: upstreamLevel(up, claims), AMR: []string{"fed"}, Organization: up.cfg.Organization}
	if s.Level == LevelNone {
		s.Level = LevelBasis
	}
	for _, g := range claimList(claims, up.cfg.GroupsClaim) {
		if role, ok := up.cfg.RoleMap[g]; ok && !slices.Contains(s.Roles, role) {
			s.Roles = append(s.Roles, role)
		}
	}
	noMatch := &loginFailure{reason: "no-match", page: "nomatch", status: http.StatusForbidden}
	// 1. an identity linked earlier (by invitation)
	if acct, err := b.identityAccount(ctx, up.cfg.ID, sub); err == nil && acct.Subject != "" {
		s.Account, s.Subject = acct.ID, acct.Subject
		return s, nil
	}
	// 2. the employee identifier on a Practitioner
	if emp := claimPath(claims, up.cfg.EmployeeIDClaim); emp != "" && up.cfg.EmployeeIDSystem != "" && b.cfg.Directory != nil {
		refs, err := b.cfg.Directory.FindByIdentifier(ctx, "Practitioner", up.cfg.EmployeeIDSystem, emp)
		if err != nil {
			return nil, fail("directory")
		}
		if len(refs) == 1 {
			s.Subject = refs[0]
		} else if len(refs) > 1 {
			return nil, &loginFailure{reason: "ambiguous", page: "nomatch", status: http.StatusForbidden}
		}
	}
	// 3. a one-time invitation
	if s.Subject == "" && invite != "" {
		ref, err := b.redeemPractitionerInvite(ctx, invite, up.cfg.ID)
		if err != nil {
			return nil, &loginFailure{reason: "invite-invalid", page: "nomatch", status: http.StatusForbidden}
		}
		s.Subject = ref
	}
	if s.Subject == "" {
		return nil, noMatch
	}
	acct, err := b.linkIdentity(ctx, up.cfg.ID, sub, KindProfessional, s.Subject)
	if err != nil {
		return nil, fail("account")
	}
	s.Account = acct
	return s, nil
}

// account is a person known to Regie: linked upstream identities and, for
// local accounts, credentials.
type account struct {
	ID      string    `json:"id"`
	Kind    Kind      `json:"kind"`
	Subject string    `json:"subj"`
	Created time.Time `json:"c"`
	Local   *local    `json:"local,omitempty"`
}

// identityKey namespaces an upstream identity by provider; it is a keyed
// hash, so a subject that is a BSN is never stored in the clear.
func (b *Broker) identityKey(provider, sub string) string {
	return mac(b.secrets.ident, "identity", provider, sub)
}

func (b *Broker) identityAccount(ctx context.Context, provider, sub string) (*account, error) {
	var id string
	if _, err := getJSON(ctx, b.recs, kindIdentity, b.identityKey(provider, sub), &id); err != nil {
		return nil, err
	}
	var a account
	if _, err := getJSON(ctx, b.recs, kindAccount, id, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// linkIdentity returns the account of (provider, sub), creating it (and
// keeping its subject current) on a successful match.
func (b *Broker) linkIdentity(ctx context.Context, provider, sub string, kind Kind, subject string) (string, error) {
	if sub == "" {
		return "", errors.New("auth: upstream subject missing")
	}
	key := b.identityKey(provider, sub)
	for range 3 {
		var id string
		_, err := getJSON(ctx, b.recs, kindIdentity, key, &id)
		if err == nil {
			var a account
			v, err := getJSON(ctx, b.recs, kindAccount, id, &a)
			if err != nil {
				return "", err
			}
			if a.Subject != subject || a.Kind != kind {
				a.Subject, a.Kind = subject, kind
				if _, err := putJSON(ctx, b.recs, kindAccount, id, &a, time.Time{}, v); err != nil {
					return "", err
				}
			}
			return id, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return "", err
		}
		a := account{ID: "a" + randToken(12), Kind: kind, Subject: subject, Created: b.now()}
		if _, err := putJSON(ctx, b.recs, kindAccount, a.ID, &a, time.Time{}, 0); err != nil {
			return "", err
		}
		if _, err := putJSON(ctx, b.recs, kindIdentity, key, a.ID, time.Time{}, 0); err != nil {
			_ = b.recs.DeleteRecord(ctx, kindAccount, a.ID, storage.AnyVersion)
			if errors.Is(err, storage.ErrExists) {
				continue
			}
			return "", err
		}
		return a.ID, nil
	}
	return "", errors.New("auth: link identity: contention")
}

// practitionerInvite links a professional's first upstream login to a
// Practitioner.
type practitionerInvite struct {
	Practitioner string `json:"pr"`
	Provider     string `json:"p"`
}

// InvitePractitioner creates a one-time invitation (valid 14 days) that
// links the first login through provider to practitioner (a reference
// "Practitioner/…"). It returns the URL to send to the professional.
func (b *Broker) InvitePractitioner(ctx context.Context, practitioner, provider string) (string, error) {
	if !strings.HasPrefix(practitioner, "Practitioner/") || !validID(strings.TrimPrefix(practitioner, "Practitioner/")) {
		return "", fmt.Errorf("auth: invite: %q is not a Practitioner reference", practitioner)
	}
	if b.fed.get(provider) == nil {
		return "", fmt.Errorf("auth: invite: unknown provider %q", provider)
	}
	tok := randToken(24)
	inv := practitionerInvite{Practitioner: practitioner, Provider: provider}
	if _, err := putJSON(ctx, b.recs, kindInvite, "pr."+hashToken(tok), inv, b.now().Add(inviteTTL), 0); err != nil {
		return "", fmt.Errorf("auth: invite: %w", err)
	}
	return b.issuer + "/login/provider/" + url.PathEscape(provider) + "?" + url.Values{"invite": {tok}, "return": {"/"}}.Encode(), nil
}

func (b *Broker) redeemPractitionerInvite(ctx context.Context, tok, provider string) (string, error) {
	key := "pr." + hashToken(tok)
	var inv practitionerInvite
	v, err := getJSON(ctx, b.recs, kindInvite, key, &inv)
	if err != nil || inv.Provider != provider {
		return "", errors.New("auth: invalid invitation")
	}
	if err := b.recs.DeleteRecord(ctx, kindInvite, key, v); err != nil {
		return "", err
	}
	return inv.Practitioner, nil
}

const inviteTTL = 14 * 24 * time.Hour
