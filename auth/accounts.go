package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"image/png"
	"net/http"
	"net/url"
	"strings"
	"time"

	"regie/storage"
)

// Local-account limits.
const (
	maxLoginFailures = 5                // failures before a lock-out
	baseLockout      = 15 * time.Minute // first lock-out; doubles each time, up to a day
	resetTTL         = time.Hour
	flowTTL          = 10 * time.Minute
	flowCookie       = "regie_flow"
	recoveryCodes    = 10
)

// localAccount holds the credentials of a person who logs in locally
// (password and second factor), and the second factor of professionals.
type localAccount struct {
	Email        string    `json:"email,omitempty"`
	PasswordHash string    `json:"pw,omitempty"`
	Phone        []byte    `json:"phone,omitempty"` // sealed
	TOTP         []byte    `json:"totp,omitempty"`  // sealed seed
	TOTPPending  []byte    `json:"totpp,omitempty"` // sealed seed during enrolment
	Recovery     []string  `json:"rec,omitempty"`   // hashes of unused recovery codes
	Active       bool      `json:"active,omitempty"`
	Failed       int       `json:"failed,omitempty"`
	LockedUntil  time.Time `json:"locked,omitempty"`
	Lockouts     int       `json:"lockouts,omitempty"`
}

type local = localAccount

func (b *Broker) loadAccount(ctx context.Context, id string) (*account, int64, error) {
	var a account
	v, err := getJSON(ctx, b.recs, kindAccount, id, &a)
	if err != nil {
		return nil, 0, err
	}
	if a.Local == nil {
		a.Local = &localAccount{}
	}
	return &a, v, nil
}

func (b *Broker) saveAccount(ctx context.Context, a *account, v int64) (int64, error) {
	return putJSON(ctx, b.recs, kindAccount, a.ID, a, time.Time{}, v)
}

// updateAccount applies fn to the account with optimistic retries.
func (b *Broker) updateAccount(ctx context.Context, id string, fn func(*account) error) (*account, error) {
	for range 5 {
		a, v, err := b.loadAccount(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := fn(a); err != nil {
			return nil, err
		}
		if _, err := b.saveAccount(ctx, a, v); err != nil {
			if errors.Is(err, storage.ErrVersionConflict) {
				continue
			}
			return nil, err
		}
		return a, nil
	}
	return nil, errors.New("auth: account update: contention")
}

func (b *Broker) emailKey(email string) string {
	return mac(b.secrets.ident, "email", strings.ToLower(strings.TrimSpace(email)))
}

func (b *Broker) accountByEmail(ctx context.Context, email string) (*account, int64, error) {
	var id string
	if _, err := getJSON(ctx, b.recs, kindEmailIndex, b.emailKey(email), &id); err != nil {
		return nil, 0, err
	}
	return b.loadAccount(ctx, id)
}

// Invitation invites a client or related person to a local account.
type Invitation struct {
	// Subject is the Patient or RelatedPerson reference the account is for.
	Subject string
	// Email receives the activation link; Phone (E.164) receives SMS codes.
	Email, Phone string
	// InvitedBy is the coach's reference (for the audit trail).
	InvitedBy string
}

type inviteRecord struct {
	Account string `json:"a"`
	Stage   string `json:"s"` // "new", "verified" (birth date checked), "password"
	Tries   int    `json:"t,omitempty"`
}

// InviteClient creates a local account for inv.Subject and e-mails a
// single-use activation link, valid 14 days. Activation asks the birth date
// on record, a password and a second factor. It fails if the e-mail address
// already has an account.
func (b *Broker) InviteClient(ctx context.Context, inv Invitation) error {
	typ, id, _ := strings.Cut(inv.Subject, "/")
	kind := KindClient
	switch typ {
	case "Patient":
	case "RelatedPerson":
		kind = KindRelated
	default:
		return fmt.Errorf("auth: invite: subject must be a Patient or RelatedPerson reference")
	}
	if !validID(id) || !strings.Contains(inv.Email, "@") {
		return fmt.Errorf("auth: invite: invalid subject or e-mail address")
	}
	email := strings.ToLower(strings.TrimSpace(inv.Email))
	a := account{ID: "a" + randToken(12), Kind: kind, Subject: inv.Subject, Created: b.now(), Local: &localAccount{Email: email}}
	if inv.Phone != "" {
		a.Local.Phone = seal(b.secrets.enc, []byte(inv.Phone), "phone")
	}
	if _, err := putJSON(ctx, b.recs, kindEmailIndex, b.emailKey(email), a.ID, time.Time{}, 0); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return fmt.Errorf("auth: invite: an account with this e-mail address exists: %w", storage.ErrExists)
		}
		return err
	}
	if _, err := b.saveAccount(ctx, &a, 0); err != nil {
		return err
	}
	tok := randToken(24)
	if _, err := putJSON(ctx, b.recs, kindInvite, "cl."+hashToken(tok), inviteRecord{Account: a.ID, Stage: "new"}, b.now().Add(inviteTTL), 0); err != nil {
		return err
	}
	link := b.issuer + "/account/activate?" + url.Values{"token": {tok}}.Encode()
	body := "Welkom bij Regie.\n\nActiveer uw account binnen 14 dagen via deze link:\n" + link +
		"\n\nWelcome to Regie. Activate your account within 14 days with the link above.\n"
	if err := b.cfg.Mailer.SendMail(ctx, email, "Activeer uw Regie-account / Activate your Regie account", body); err != nil {
		return fmt.Errorf("auth: invite: send e-mail: %w", err)
	}
	_ = b.audit(ctx, AuditEvent{Action: "invitation", Outcome: "success", Subject: inv.Subject, Account: a.ID, Reason: "invited-by " + inv.InvitedBy}, nil)
	return nil
}

func (b *Broker) accountRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /login/local", b.localLogin)
	m.HandleFunc("GET /login/otp", b.otpPage)
	m.HandleFunc("POST /login/otp", b.otpSubmit)
	m.HandleFunc("POST /login/otp/sms", b.otpSendSMS)
	m.HandleFunc("GET /account/activate", b.activatePage)
	m.HandleFunc("POST /account/activate", b.activateSubmit)
	m.HandleFunc("GET /account/enrol", b.enrolPage)
	m.HandleFunc("POST /account/enrol", b.enrolSubmit)
	m.HandleFunc("GET /account/forgot", b.forgotPage)
	m.HandleFunc("POST /account/forgot", b.forgotSubmit)
	m.HandleFunc("GET /account/reset", b.resetPage)
	m.HandleFunc("POST /account/reset", b.resetSubmit)
	m.HandleFunc("GET /account/sessions", b.sessionsPage)
	m.HandleFunc("POST /account/sessions/logout-others", b.logoutOthers)
	m.HandleFunc("GET /helpdesk/second-factor", b.helpdeskPage)
	m.HandleFunc("POST /helpdesk/second-factor", b.helpdeskSubmit)
}

// formData drives templates/form.html.
type formData struct {
	Intro, ImageAlt, Secret, SecretLabel string
	Image                                template.URL // a data: URI
	List                                 []string
	Action, Button                       string
	Hidden                               map[string]string
	Fields                               []field
	Extra                                []extraForm
	Link, LinkText                       string
}

type field struct{ Name, Label, Type, Autocomplete, Inputmode, Prefix string }

type extraForm struct {
	Action, Button string
	Hidden         map[string]string
}

func (b *Broker) form(w http.ResponseWriter, r *http.Request, titleKey string, d formData, status int, errKey string) {
	b.ui.render(w, r, "form", titleKey, d, renderOpts{csrf: b.formCSRF(w, r), status: status, errKey: errKey, loggedIn: b.hasSession(r)})
}

func (b *Broker) hasSession(r *http.Request) bool {
	_, _, err := b.sessionFromRequest(r.Context(), r)
	return err == nil
}

// ---- local login ----

// flow is a login or step-up waiting for its second factor.
type flow struct {
	Account       string    `json:"a"`
	Purpose       string    `json:"p"` // "login" or "step-up"
	AuthRequestID string    `json:"ar,omitempty"`
	Return        string    `json:"ret,omitempty"`
	SessionKey    string    `json:"sk,omitempty"`
	Level         Level     `json:"lvl,omitempty"`
	Binding       string    `json:"b"`
	Tries         int       `json:"t,omitempty"`
	SMS           *smsCode  `json:"sms,omitempty"`
	Created       time.Time `json:"c"`
}

type smsCode struct {
	Hash    string    `json:"h"`
	Prefix  string    `json:"p"`
	Expires time.Time `json:"e"`
	Tries   int       `json:"t,omitempty"`
}

func (b *Broker) localLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !b.checkCSRF(r) {
		b.ui.errorPage(w, r, http.StatusForbidden, "csrf")
		return
	}
	arID := r.PostFormValue("authRequestID")
	if !b.allow(ctx, w, r, "login", clientIP(r), 20, 15*time.Minute) {
		_ = b.audit(ctx, AuditEvent{Action: "login-failed", Outcome: "failure", Reason: "rate-limited", Provider: "local"}, r)
		return
	}
	email, pw := r.PostFormValue("email"), r.PostFormValue("password")
	a, _, err := b.accountByEmail(ctx, email)
	hash := ""
	if err == nil && a.Local.Active {
		hash = a.Local.PasswordHash
	}
	ok := checkPassword(pw, hash, b.dummyHash)
	locked := err == nil && b.now().Before(a.Local.LockedUntil)
	if !ok || locked || a == nil {
		reason := "bad-credentials"
		if locked {
			reason = "locked"
		}
		e := AuditEvent{Action: "login-failed", Outcome: "failure", Reason: reason, Provider: "local"}
		if a != nil {
			e.Account, e.Subject = a.ID, a.Subject
			if !locked && a.Local.Active {
				b.recordFailure(ctx, a.ID, r)
			}
		}
		_ = b.audit(ctx, e, r)
		b.showChoiceFor(w, r, arID, r.PostFormValue("return"), "bad_login")
		return
	}
	// the password is right; the second factor decides
	b.startFlow(w, r, &flow{Account: a.ID, Purpose: "login", AuthRequestID: arID, Return: safeReturn(r.PostFormValue("return"))})
}

// recordFailure counts a failed password or code; at the limit the
// account is locked for a period that doubles with each lock-out, and the
// owner is told by e-mail.
func (b *Broker) recordFailure(ctx context.Context, accountID string, r *http.Request) {
	var lockedFor time.Duration
	a, err := b.updateAccount(ctx, accountID, func(a *account) error {
		lockedFor = 0
		a.Local.Failed++
		if a.Local.Failed >= maxLoginFailures {
			lockedFor = baseLockout << min(a.Local.Lockouts, 6)
			lockedFor = min(lockedFor, 24*time.Hour)
			a.Local.LockedUntil = b.now().Add(lockedFor)
			a.Local.Lockouts++
			a.Local.Failed = 0
		}
		return nil
	})
	if err != nil || lockedFor == 0 {
		return
	}
	_ = b.audit(ctx, AuditEvent{Action: "lockout", Outcome: "failure", Reason: "too-many-failures", Account: a.ID, Subject: a.Subject, Provider: "local"}, r)
	if a.Local.Email != "" && b.cfg.Mailer != nil {
		body := fmt.Sprintf("Er is %d keer geprobeerd met een verkeerd wachtwoord of verkeerde code in te loggen op uw Regie-account. "+
			"Uw account is daarom %d minuten geblokkeerd. Was u dit niet? Neem contact op met uw hulpverlener.\n\n"+
			"There were %d failed attempts to log in to your Regie account; it is locked for %d minutes.\n",
			maxLoginFailures, int(lockedFor.Minutes()), maxLoginFailures, int(lockedFor.Minutes()))
		if err := b.cfg.Mailer.SendMail(ctx, a.Local.Email, "Regie: account tijdelijk geblokkeerd / account locked", body); err != nil {
			b.log.Error("auth: lock-out notice", "err", err)
		}
	}
}

func (b *Broker) clearFailures(ctx context.Context, accountID string) {
	_, _ = b.updateAccount(ctx, accountID, func(a *account) error { a.Local.Failed = 0; return nil })
}

func (b *Broker) startFlow(w http.ResponseWriter, r *http.Request, f *flow) {
	binding := randToken(18)
	f.Binding = hashToken(binding)
	f.Created = b.now()
	id := randToken(18)
	if _, err := putJSON(r.Context(), b.recs, kindStepUp, id, f, b.now().Add(flowTTL), 0); err != nil {
		b.ui.errorPage(w, r, http.StatusInternalServerError, "expired")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: binding, Path: "/login/", HttpOnly: true, Secure: b.secureCookies(), SameSite: http.SameSiteStrictMode, MaxAge: int(flowTTL.Seconds())})
	http.Redirect(w, r, "/login/otp?flow="+url.QueryEscape(id), http.StatusSeeOther)
}

// loadFlow returns the flow of the request, bound to this browser.
func (b *Broker) loadFlow(r *http.Request, id string) (*flow, int64, error) {
	var f flow
	v, err := getJSON(r.Context(), b.recs, kindStepUp, id, &f)
	if err != nil {
		return nil, 0, err
	}
	c, err := r.Cookie(flowCookie)
	if err != nil || !constantEqual(hashToken(c.Value), f.Binding) {
		return nil, 0, errors.New("auth: flow belongs to another browser")
	}
	return &f, v, nil
}

func (b *Broker) otpPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("flow")
	f, _, err := b.loadFlow(r, id)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
		return
	}
	b.renderOTP(w, r, id, f, http.StatusOK, "")
}

func (b *Broker) renderOTP(w http.ResponseWriter, r *http.Request, id string, f *flow, status int, errKey string) {
	t := text(r)
	a, _, err := b.loadAccount(r.Context(), f.Account)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
		return
	}
	d := formData{Action: "/login/otp", Button: t["verify"], Hidden: map[string]string{"flow": id}}
	switch {
	case f.SMS != nil && b.now().Before(f.SMS.Expires):
		d.Intro = t["otp_sms_intro"]
		d.Fields = []field{{Name: "code", Label: t["otp_code"], Type: "text", Autocomplete: "one-time-code", Inputmode: "numeric", Prefix: f.SMS.Prefix}}
	case len(a.Local.TOTP) > 0:
		d.Intro = t["otp_totp_intro"]
		d.Fields = []field{{Name: "code", Label: t["otp_code"], Type: "text", Autocomplete: "one-time-code", Inputmode: "numeric"}}
	default:
		d.Intro = t["otp_sms_only"]
		d.Action = ""
	}
	if len(a.Local.Phone) > 0 {
		d.Extra = append(d.Extra, extraForm{Action: "/login/otp/sms", Button: t["otp_send_sms"], Hidden: map[string]string{"flow": id}})
	}
	if len(a.Local.Recovery) > 0 && d.Action != "" {
		d.Intro += " " + t["otp_recovery_hint"]
	}
	b.form(w, r, "otp_title", d, status, errKey)
}

// otpSendSMS sends a fresh SMS code for the flow: at most three per 15
// minutes per account and per number.
func (b *Broker) otpSendSMS(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !b.checkCSRF(r) {
		b.ui.errorPage(w, r, http.StatusForbidden, "csrf")
		return
	}
	id := r.PostFormValue("flow")
	f, v, err := b.loadFlow(r, id)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
		return
	}
	a, _, err := b.loadAccount(ctx, f.Account)
	if err != nil || len(a.Local.Phone) == 0 {
		b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
		return
	}
	phone, err := open(b.secrets.enc, a.Local.Phone, "phone")
	if err != nil {
		b.ui.errorPage(w, r, http.StatusInternalServerError, "expired")
		return
	}
	okAcct, err1 := b.hit(ctx, "sms-acct."+a.ID, 3, 15*time.Minute)
	okNum, err2 := b.hit(ctx, "sms-num."+mac(b.secrets.ident, "phone", string(phone)), 3, 15*time.Minute)
	if err1 != nil || err2 != nil || !okAcct || !okNum {
		_ = b.audit(ctx, AuditEvent{Action: "sms-failed", Outcome: "failure", Reason: "rate-limited", Account: a.ID, Subject: a.Subject}, r)
		b.renderOTP(w, r, id, f, http.StatusTooManyRequests, "err_rate")
		return
	}
	code := randDigits(6)
	prefix := randPrefix()
	f.SMS = &smsCode{Hash: mac(b.secrets.ident, "sms", id, code), Prefix: prefix, Expires: b.now().Add(5 * time.Minute)}
	if _, err := putJSON(ctx, b.recs, kindStepUp, id, f, f.Created.Add(flowTTL), v); err != nil {
		b.ui.errorPage(w, r, http.StatusConflict, "expired")
		return
	}
	msg := fmt.Sprintf("Uw Regie-code: %s-%s (5 minuten geldig). Deel deze code met niemand.", prefix, code)
	if err := b.cfg.SMS.SendSMS(ctx, string(phone), msg); err != nil {
		b.log.Error("auth: send sms", "err", err)
		b.renderOTP(w, r, id, f, http.StatusBadGateway, "err_sms")
		return
	}
	http.Redirect(w, r, "/login/otp?flow="+url.QueryEscape(id), http.StatusSeeOther)
}

// otpSubmit checks an SMS code, a TOTP code or a recovery code.
func (b *Broker) otpSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !b.checkCSRF(r) {
		b.ui.errorPage(w, r, http.StatusForbidden, "csrf")
		return
	}
	id := r.PostFormValue("flow")
	f, v, err := b.loadFlow(r, id)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
		return
	}
	a, _, err := b.loadAccount(ctx, f.Account)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
		return
	}
	failAction := "login-failed"
	if f.Purpose == "step-up" {
		failAction = "step-up-failed"
	}
	if b.now().Before(a.Local.LockedUntil) {
		_ = b.audit(ctx, AuditEvent{Action: failAction, Outcome: "failure", Reason: "locked", Account: a.ID, Subject: a.Subject, Provider: "local"}, r)
		b.ui.errorPage(w, r, http.StatusTooManyRequests, "rate")
		return
	}
	code := strings.TrimSpace(r.PostFormValue("code"))
	method := ""
	switch {
	case f.SMS != nil:
		s := f.SMS
		s.Tries++
		if b.now().Before(s.Expires) && s.Tries <= 5 && constantEqual(s.Hash, mac(b.secrets.ident, "sms", id, code)) {
			method = "sms"
			f.SMS = nil // single use
		} else if s.Tries >= 5 || !b.now().Before(s.Expires) {
			f.SMS = nil // spent: a new code must be requested
		}
	case len(a.Local.TOTP) > 0 && len(code) == 6:
		if b.checkTOTP(ctx, a, a.Local.TOTP, code) {
			method = "otp"
		}
	}
	if method == "" && len(code) > 6 && b.useRecoveryCode(ctx, a.ID, code) {
		method = "recovery"
	}
	f.Tries++
	if method == "" {
		b.recordFailure(ctx, a.ID, r)
		_ = b.audit(ctx, AuditEvent{Action: failAction, Outcome: "failure", Reason: "bad-code", Account: a.ID, Subject: a.Subject, Provider: "local"}, r)
		if f.Tries >= 5 {
			_ = b.recs.DeleteRecord(ctx, kindStepUp, id, storage.AnyVersion)
			b.ui.errorPage(w, r, http.StatusTooManyRequests, "rate")
			return
		}
		if _, err := putJSON(ctx, b.recs, kindStepUp, id, f, f.Created.Add(flowTTL), v); err != nil {
			b.ui.errorPage(w, r, http.StatusConflict, "expired")
			return
		}
		b.renderOTP(w, r, id, f, http.StatusUnauthorized, "err_code")
		return
	}
	// spend the flow (a concurrent submit loses)
	if err := b.recs.DeleteRecord(ctx, kindStepUp, id, v); err != nil {
		b.ui.errorPage(w, r, http.StatusConflict, "expired")
		return
	}
	b.clearFailures(ctx, a.ID)
	now := b.now()
	if f.Purpose == "step-up" {
		var cur session
		sv, err := getJSON(ctx, b.recs, kindSession, f.SessionKey, &cur)
		if err != nil || cur.Account != a.ID {
			b.ui.errorPage(w, r, http.StatusForbidden, "wrong-session")
			return
		}
		cur.SecondFactorTime, cur.LastSeen = now, now
		cur.Level = max(cur.Level, f.Level, LevelMidden)
		if err := b.saveSession(ctx, &cur, sv); err != nil {
			b.ui.errorPage(w, r, http.StatusConflict, "expired")
			return
		}
		_ = b.audit(ctx, AuditEvent{Action: "step-up", Outcome: "success", Subject: cur.Subject, ActingFor: cur.ActingFor, Account: a.ID,
			Provider: cur.Provider, Level: cur.Level, SessionID: cur.ID, Reason: method}, r)
		http.Redirect(w, r, safeReturn(f.Return), http.StatusSeeOther)
		return
	}
	s := &session{Account: a.ID, Kind: a.Kind, Subject: a.Subject, Provider: "local", Level: LevelMidden,
		AMR: []string{"pwd", method}, AuthTime: now, SecondFactorTime: now}
	if err := b.startSession(ctx, w, r, s, ""); err != nil {
		b.ui.errorPage(w, r, http.StatusInternalServerError, "expired")
		return
	}
	b.fed.continueAfterLogin(w, r, &loginState{AuthRequestID: f.AuthRequestID, Return: f.Return}, s)
}

// secondFactorStepUp asks for a second factor within the session.
func (b *Broker) secondFactorStepUp(w http.ResponseWriter, r *http.Request, sess *session, level Level, ret string) {
	a, _, err := b.loadAccount(r.Context(), sess.Account)
	if err != nil || (len(a.Local.TOTP) == 0 && len(a.Local.Phone) == 0) {
		// nothing enrolled: professionals enrol an authenticator app first
		b.form(w, r, "stepup_title", formData{Intro: text(r)["stepup_enrol_first"], Link: "/account/enrol?return=" + url.QueryEscape(ret), LinkText: text(r)["enrol_title"]}, http.StatusForbidden, "")
		return
	}
	if level > LevelMidden {
		// a second factor here reaches Midden at most
		b.ui.errorPage(w, r, http.StatusForbidden, "level")
		return
	}
	b.startFlow(w, r, &flow{Account: a.ID, Purpose: "step-up", SessionKey: sess.key(), Level: level, Return: ret})
}

// ---- activation and enrolment ----

func (b *Broker) loadInvite(ctx context.Context, tok string) (*inviteRecord, int64, error) {
	var inv inviteRecord
	v, err := getJSON(ctx, b.recs, kindInvite, "cl."+hashToken(tok), &inv)
	return &inv, v, err
}

func (b *Broker) activatePage(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	inv, _, err := b.loadInvite(r.Context(), tok)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "link")
		return
	}
	b.renderActivate(w, r, tok, inv, http.StatusOK, "")
}

func (b *Broker) renderActivate(w http.ResponseWriter, r *http.Request, tok string, inv *inviteRecord, status int, errKey string) {
	t := text(r)
	d := formData{Action: "/account/activate", Button: t["next"], Hidden: map[string]string{"token": tok}}
	switch inv.Stage {
	case "new":
		d.Intro = t["activate_birthdate"]
		d.Fields = []field{{Name: "birthdate", Label: t["birthdate"], Type: "date", Autocomplete: "bday"}}
	case "verified":
		d.Intro = t["activate_password"]
		d.Fields = []field{{Name: "password", Label: t["new_password"], Type: "password", Autocomplete: "new-password"},
			{Name: "password2", Label: t["repeat_password"], Type: "password", Autocomplete: "new-password"}}
	default:
		http.Redirect(w, r, "/account/enrol?"+url.Values{"token": {tok}}.Encode(), http.StatusSeeOther)
		return
	}
	b.form(w, r, "activate_title", d, status, errKey)
}

func (b *Broker) activateSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !b.checkCSRF(r) {
		b.ui.errorPage(w, r, http.StatusForbidden, "csrf")
		return
	}
	if !b.allow(ctx, w, r, "activate", clientIP(r), 20, 15*time.Minute) {
		return
	}
	tok := r.PostFormValue("token")
	inv, v, err := b.loadInvite(ctx, tok)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "link")
		return
	}
	key := "cl." + hashToken(tok)
	a, _, err := b.loadAccount(ctx, inv.Account)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "link")
		return
	}
	switch inv.Stage {
	case "new":
		if b.birthDateMatches(ctx, a.Subject, r.PostFormValue("birthdate")) {
			inv.Stage = "verified"
		} else {
			inv.Tries++
			_ = b.audit(ctx, AuditEvent{Action: "activation-failed", Outcome: "failure", Reason: "birth-date", Account: a.ID, Subject: a.Subject}, r)
			if inv.Tries >= 5 {
				// too many guesses: the link dies, the coach must invite again
				_ = b.recs.DeleteRecord(ctx, kindInvite, key, v)
				b.ui.errorPage(w, r, http.StatusTooManyRequests, "link")
				return
			}
		}
		if _, err := putJSON(ctx, b.recs, kindInvite, key, inv, time.Time{}, v); err != nil {
			b.ui.errorPage(w, r, http.StatusConflict, "link")
			return
		}
		if inv.Stage == "new" {
			b.renderActivate(w, r, tok, inv, http.StatusUnauthorized, "err_birthdate")
			return
		}
		b.renderActivate(w, r, tok, inv, http.StatusOK, "")
	case "verified":
		pw := r.PostFormValue("password")
		if pw != r.PostFormValue("password2") {
			b.renderActivate(w, r, tok, inv, http.StatusBadRequest, "err_password_mismatch")
			return
		}
		if err := b.passwords.check(pw, a.Local.Email); err != nil {
			key := "err_password_common"
			if errors.Is(err, errPasswordShort) {
				key = "err_password_short"
			}
			b.renderActivate(w, r, tok, inv, http.StatusBadRequest, key)
			return
		}
		h, err := hashPassword(pw)
		if err != nil {
			b.ui.errorPage(w, r, http.StatusInternalServerError, "link")
			return
		}
		if _, err := b.updateAccount(ctx, a.ID, func(a *account) error { a.Local.PasswordHash = h; return nil }); err != nil {
			b.ui.errorPage(w, r, http.StatusInternalServerError, "link")
			return
		}
		inv.Stage = "password"
		if _, err := putJSON(ctx, b.recs, kindInvite, key, inv, time.Time{}, v); err != nil {
			b.ui.errorPage(w, r, http.StatusConflict, "link")
			return
		}
		http.Redirect(w, r, "/account/enrol?"+url.Values{"token": {tok}}.Encode(), http.StatusSeeOther)
	default:
		http.Redirect(w, r, "/account/enrol?"+url.Values{"token": {tok}}.Encode(), http.StatusSeeOther)
	}
}

// birthDateMatches compares a typed date (YYYY-MM-DD, or DD-MM-YYYY) with
// the birthDate of the FHIR resource.
func (b *Broker) birthDateMatches(ctx context.Context, ref, typed string) bool {
	if b.cfg.Directory == nil {
		return false
	}
	raw, err := b.cfg.Directory.Read(ctx, ref)
	if err != nil {
		return false
	}
	var doc struct {
		BirthDate string `json:"birthDate"`
	}
	if json.Unmarshal(raw, &doc) != nil || len(doc.BirthDate) != 10 {
		return false
	}
	typed = strings.TrimSpace(typed)
	if t, err := time.Parse("02-01-2006", typed); err == nil {
		typed = t.Format("2006-01-02")
	}
	return typed == doc.BirthDate
}

// enrolment answers /account/enrol for an invitation (after the password),
// a helpdesk reset link, or a logged-in person adding an authenticator app.
type enrolment struct {
	account string
	token   string // invitation or reset token ("" for a session)
	kind    string // "invite", "reset", "session"
}

func (b *Broker) enrolmentOf(r *http.Request, tok string) (*enrolment, error) {
	ctx := r.Context()
	if tok != "" {
		if inv, _, err := b.loadInvite(ctx, tok); err == nil && inv.Stage == "password" {
			return &enrolment{account: inv.Account, token: tok, kind: "invite"}, nil
		}
		var acct string
		if _, err := getJSON(ctx, b.recs, kindReset, "2fa."+hashToken(tok), &acct); err == nil {
			return &enrolment{account: acct, token: tok, kind: "reset"}, nil
		}
		return nil, errors.New("auth: enrolment link invalid")
	}
	sess, _, err := b.sessionFromRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	// a logged-in person may enrol only without an existing factor; changing
	// one goes through the helpdesk
	a, _, err := b.loadAccount(ctx, sess.Account)
	if err != nil || len(a.Local.TOTP) > 0 {
		return nil, errors.New("auth: already enrolled")
	}
	return &enrolment{account: sess.Account, kind: "session"}, nil
}

func (b *Broker) enrolPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tok := r.URL.Query().Get("token")
	en, err := b.enrolmentOf(r, tok)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "link")
		return
	}
	// a fresh seed each time the page is shown; it becomes active only when
	// a code from it is entered
	key, err := newTOTPKey(b.issuerLabel(), en.account)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusInternalServerError, "link")
		return
	}
	if _, err := b.updateAccount(ctx, en.account, func(a *account) error {
		a.Local.TOTPPending = seal(b.secrets.enc, []byte(key.Secret()), "totp/"+a.ID)
		return nil
	}); err != nil {
		b.ui.errorPage(w, r, http.StatusInternalServerError, "link")
		return
	}
	img, _ := key.Image(200, 200)
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	t := text(r)
	d := formData{
		Intro: t["enrol_intro"], Image: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())), ImageAlt: t["enrol_qr_alt"],
		Secret: key.Secret(), SecretLabel: t["enrol_secret"],
		Action: "/account/enrol", Button: t["verify"], Hidden: map[string]string{"token": tok, "return": safeReturn(r.URL.Query().Get("return"))},
		Fields: []field{{Name: "code", Label: t["otp_code"], Type: "text", Autocomplete: "one-time-code", Inputmode: "numeric"}},
	}
	b.form(w, r, "enrol_title", d, http.StatusOK, "")
}

func (b *Broker) enrolSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !b.checkCSRF(r) {
		b.ui.errorPage(w, r, http.StatusForbidden, "csrf")
		return
	}
	tok := r.PostFormValue("token")
	en, err := b.enrolmentOf(r, tok)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "link")
		return
	}
	if ok, _ := b.hit(ctx, "enrol."+en.account, 10, 15*time.Minute); !ok {
		b.ui.errorPage(w, r, http.StatusTooManyRequests, "rate")
		return
	}
	a, _, err := b.loadAccount(ctx, en.account)
	if err != nil || len(a.Local.TOTPPending) == 0 || !b.checkTOTP(ctx, a, a.Local.TOTPPending, strings.TrimSpace(r.PostFormValue("code"))) {
		t := text(r)
		b.form(w, r, "enrol_title", formData{Intro: t["err_code"], Link: "/account/enrol?" + url.Values{"token": {tok}}.Encode(), LinkText: t["enrol_retry"]}, http.StatusUnauthorized, "")
		return
	}
	codes := make([]string, recoveryCodes)
	hashes := make([]string, recoveryCodes)
	for i := range codes {
		codes[i] = randRecoveryCode()
		hashes[i] = mac(b.secrets.ident, "recovery", normaliseRecovery(codes[i]))
	}
	a, err = b.updateAccount(ctx, en.account, func(a *account) error {
		a.Local.TOTP, a.Local.TOTPPending = a.Local.TOTPPending, nil
		a.Local.Recovery = hashes
		if a.Local.PasswordHash != "" {
			a.Local.Active = true
		}
		a.Local.Failed, a.Local.LockedUntil = 0, time.Time{}
		return nil
	})
	if err != nil {
		b.ui.errorPage(w, r, http.StatusInternalServerError, "link")
		return
	}
	switch en.kind {
	case "invite":
		_ = b.recs.DeleteRecord(ctx, kindInvite, "cl."+hashToken(tok), storage.AnyVersion)
		_ = b.audit(ctx, AuditEvent{Action: "account-activated", Outcome: "success", Account: a.ID, Subject: a.Subject, Provider: "local"}, r)
	case "reset":
		_ = b.recs.DeleteRecord(ctx, kindReset, "2fa."+hashToken(tok), storage.AnyVersion)
		_ = b.audit(ctx, AuditEvent{Action: "second-factor-enrolled", Outcome: "success", Account: a.ID, Subject: a.Subject}, r)
	default:
		_ = b.audit(ctx, AuditEvent{Action: "second-factor-enrolled", Outcome: "success", Account: a.ID, Subject: a.Subject}, r)
	}
	t := text(r)
	link := "/login/logged-out"
	if en.kind == "session" {
		link = safeReturn(r.PostFormValue("return"))
	}
	b.form(w, r, "recovery_title", formData{Intro: t["recovery_intro"], List: codes, Link: link, LinkText: t["continue"]}, http.StatusOK, "")
}

// ---- forgotten password ----

func (b *Broker) forgotPage(w http.ResponseWriter, r *http.Request) {
	t := text(r)
	b.form(w, r, "forgot_title", formData{Intro: t["forgot_intro"], Action: "/account/forgot", Button: t["send"],
		Fields: []field{{Name: "email", Label: t["email"], Type: "email", Autocomplete: "username"}}}, http.StatusOK, "")
}

// forgotSubmit always answers the same, whether or not the address has an
// account (no user enumeration); only a known, active account gets a link.
func (b *Broker) forgotSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !b.checkCSRF(r) {
		b.ui.errorPage(w, r, http.StatusForbidden, "csrf")
		return
	}
	if !b.allow(ctx, w, r, "forgot", clientIP(r), 10, 15*time.Minute) {
		return
	}
	email := r.PostFormValue("email")
	perAddr, _ := b.hit(ctx, "forgot."+b.emailKey(email), 3, time.Hour)
	if a, _, err := b.accountByEmail(ctx, email); err == nil && a.Local.Active && perAddr {
		tok := randToken(24)
		if _, err := putJSON(ctx, b.recs, kindReset, "pw."+hashToken(tok), a.ID, b.now().Add(resetTTL), 0); err == nil {
			link := b.issuer + "/account/reset?" + url.Values{"token": {tok}}.Encode()
			body := "Via deze link kiest u een nieuw wachtwoord (1 uur geldig):\n" + link +
				"\n\nChoose a new password with the link above (valid for one hour). Did you not ask for this? Then ignore this e-mail.\n"
			if err := b.cfg.Mailer.SendMail(ctx, a.Local.Email, "Regie: nieuw wachtwoord / new password", body); err != nil {
				b.log.Error("auth: reset e-mail", "err", err)
			}
		}
	}
	t := text(r)
	b.form(w, r, "forgot_title", formData{Intro: t["forgot_sent"]}, http.StatusOK, "")
}

func (b *Broker) resetPage(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	var acct string
	if _, err := getJSON(r.Context(), b.recs, kindReset, "pw."+hashToken(tok), &acct); err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "link")
		return
	}
	b.renderReset(w, r, tok, http.StatusOK, "")
}

func (b *Broker) renderReset(w http.ResponseWriter, r *http.Request, tok string, status int, errKey string) {
	t := text(r)
	b.form(w, r, "reset_title", formData{Intro: t["activate_password"], Action: "/account/reset", Button: t["save"], Hidden: map[string]string{"token": tok},
		Fields: []field{{Name: "password", Label: t["new_password"], Type: "password", Autocomplete: "new-password"},
			{Name: "password2", Label: t["repeat_password"], Type: "password", Autocomplete: "new-password"}}}, status, errKey)
}

func (b *Broker) resetSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !b.checkCSRF(r) {
		b.ui.errorPage(w, r, http.StatusForbidden, "csrf")
		return
	}
	tok := r.PostFormValue("token")
	key := "pw." + hashToken(tok)
	var acct string
	v, err := getJSON(ctx, b.recs, kindReset, key, &acct)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "link")
		return
	}
	a, _, err := b.loadAccount(ctx, acct)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "link")
		return
	}
	pw := r.PostFormValue("password")
	if pw != r.PostFormValue("password2") {
		b.renderReset(w, r, tok, http.StatusBadRequest, "err_password_mismatch")
		return
	}
	if err := b.passwords.check(pw, a.Local.Email); err != nil {
		k := "err_password_common"
		if errors.Is(err, errPasswordShort) {
			k = "err_password_short"
		}
		b.renderReset(w, r, tok, http.StatusBadRequest, k)
		return
	}
	if err := b.recs.DeleteRecord(ctx, kindReset, key, v); err != nil {
		b.ui.errorPage(w, r, http.StatusConflict, "link")
		return
	}
	h, err := hashPassword(pw)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusInternalServerError, "link")
		return
	}
	if _, err := b.updateAccount(ctx, acct, func(a *account) error { a.Local.PasswordHash = h; return nil }); err != nil {
		b.ui.errorPage(w, r, http.StatusInternalServerError, "link")
		return
	}
	// every session ends; the next login still needs the second factor
	var keys []string
	_ = b.recs.ListRecords(ctx, kindSession, acct+".", func(r *storage.Record) error { keys = append(keys, r.Key); return nil })
	for _, k := range keys {
		_ = b.recs.DeleteRecord(ctx, kindSession, k, storage.AnyVersion)
	}
	b.revokeSessionGrants(ctx, acct+".")
	_ = b.audit(ctx, AuditEvent{Action: "password-reset", Outcome: "success", Account: acct, Subject: a.Subject, Provider: "local"}, r)
	t := text(r)
	b.form(w, r, "reset_title", formData{Intro: t["reset_done"], Link: "/login/logged-out", LinkText: t["continue"]}, http.StatusOK, "")
}

// ---- sessions page ----

func (b *Broker) sessionsPage(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(b.cfg.Session.CookieName)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusUnauthorized, "expired")
		return
	}
	list, err := b.Sessions(r.Context(), c.Value)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusUnauthorized, "expired")
		return
	}
	b.ui.render(w, r, "sessions", "sessions_title", list, renderOpts{csrf: b.CSRFToken(c.Value), loggedIn: true})
}

func (b *Broker) logoutOthers(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(b.cfg.Session.CookieName)
	if err != nil || !b.checkCSRF(r) {
		b.ui.errorPage(w, r, http.StatusForbidden, "csrf")
		return
	}
	if _, err := b.LogoutElsewhere(r.Context(), c.Value, RequestMeta{IP: clientIP(r), UserAgent: r.UserAgent()}); err != nil {
		b.ui.errorPage(w, r, http.StatusUnauthorized, "expired")
		return
	}
	http.Redirect(w, r, "/account/sessions", http.StatusSeeOther)
}

// ---- helpdesk ----

// ResetSecondFactor removes the second factor and recovery codes of the
// local account of subject (a FHIR reference) and e-mails the owner a
// single-use link to enrol anew. by must be a helpdesk principal.
func (b *Broker) ResetSecondFactor(ctx context.Context, by *Principal, subject string) error {
	if by == nil || by.Kind != KindProfessional || !containsRole(by.Roles, "helpdesk") {
		return fmt.Errorf("%w: only the helpdesk resets second factors", ErrForbidden)
	}
	var target *account
	_ = b.recs.ListRecords(ctx, kindAccount, "", func(r *storage.Record) error {
		var a account
		if json.Unmarshal(r.Value, &a) == nil && a.Subject == subject && a.Local != nil && a.Local.Email != "" {
			target = &a
			return errStop
		}
		return nil
	})
	if target == nil {
		return fmt.Errorf("auth: reset second factor: no local account: %w", storage.ErrNotFound)
	}
	a, err := b.updateAccount(ctx, target.ID, func(a *account) error {
		a.Local.TOTP, a.Local.TOTPPending, a.Local.Recovery = nil, nil, nil
		return nil
	})
	if err != nil {
		return err
	}
	tok := randToken(24)
	if _, err := putJSON(ctx, b.recs, kindReset, "2fa."+hashToken(tok), a.ID, b.now().Add(72*time.Hour), 0); err != nil {
		return err
	}
	link := b.issuer + "/account/enrol?" + url.Values{"token": {tok}}.Encode()
	body := "De helpdesk heeft uw tweede factor opnieuw ingesteld. Koppel uw authenticator-app opnieuw via:\n" + link +
		"\n\nThe helpdesk reset your second factor. Link your authenticator app again with the link above (valid 3 days).\n"
	if err := b.cfg.Mailer.SendMail(ctx, a.Local.Email, "Regie: tweede factor opnieuw instellen / reset second factor", body); err != nil {
		return fmt.Errorf("auth: reset second factor: send e-mail: %w", err)
	}
	return b.audit(ctx, AuditEvent{Action: "second-factor-reset", Outcome: "success", Account: a.ID, Subject: a.Subject,
		Reason: "by " + by.Subject}, nil)
}

var errStop = errors.New("stop")

func containsRole(roles []string, r string) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

func (b *Broker) helpdeskPrincipal(r *http.Request) (*Principal, string) {
	c, err := r.Cookie(b.cfg.Session.CookieName)
	if err != nil {
		return nil, ""
	}
	p, err := b.AuthenticateSession(r.Context(), c.Value, RequestMeta{})
	if err != nil || !containsRole(p.Roles, "helpdesk") {
		return nil, ""
	}
	return p, c.Value
}

func (b *Broker) helpdeskPage(w http.ResponseWriter, r *http.Request) {
	p, cookie := b.helpdeskPrincipal(r)
	if p == nil {
		b.ui.errorPage(w, r, http.StatusForbidden, "helpdesk")
		return
	}
	t := text(r)
	b.ui.render(w, r, "form", "helpdesk_title", formData{Intro: t["helpdesk_intro"], Action: "/helpdesk/second-factor", Button: t["helpdesk_reset"],
		Fields: []field{{Name: "subject", Label: t["helpdesk_subject"], Type: "text"}}}, renderOpts{csrf: b.CSRFToken(cookie), loggedIn: true})
}

func (b *Broker) helpdeskSubmit(w http.ResponseWriter, r *http.Request) {
	p, cookie := b.helpdeskPrincipal(r)
	if p == nil || !b.CheckCSRF(cookie, r.PostFormValue("csrf")) {
		b.ui.errorPage(w, r, http.StatusForbidden, "helpdesk")
		return
	}
	t := text(r)
	msg := t["helpdesk_done"]
	status := http.StatusOK
	if err := b.ResetSecondFactor(r.Context(), p, strings.TrimSpace(r.PostFormValue("subject"))); err != nil {
		msg, status = t["helpdesk_failed"], http.StatusBadRequest
	}
	b.ui.render(w, r, "form", "helpdesk_title", formData{Intro: msg, Link: "/helpdesk/second-factor", LinkText: t["continue"]}, renderOpts{status: status, loggedIn: true, csrf: b.CSRFToken(cookie)})
}
