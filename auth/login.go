package auth

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const csrfCookie = "regie_csrf"

func (b *Broker) loginRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /login/{$}", b.loginStart)
	m.HandleFunc("GET /login/logged-out", func(w http.ResponseWriter, r *http.Request) {
		b.ui.message(w, r, http.StatusOK, "loggedout_title", "loggedout_text", "", "")
	})
	m.HandleFunc("POST /login/logout", b.logout)
	m.HandleFunc("GET /login/provider/{id}", b.fed.start)
	m.HandleFunc("GET /login/callback/{id}", b.fed.callback)
	m.HandleFunc("GET /login/step-up", b.stepUpPage)
	b.accountRoutes(m)
}

// formCSRF returns the CSRF token for a form on this page: bound to the
// session when there is one, else to a random pre-login cookie.
func (b *Broker) formCSRF(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(b.cfg.Session.CookieName); err == nil && c.Value != "" {
		if _, _, err := b.loadSession(r.Context(), c.Value); err == nil {
			return b.CSRFToken(c.Value)
		}
	}
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 22 {
		return b.CSRFToken("pre:" + c.Value)
	}
	v := randToken(18)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", HttpOnly: true, Secure: b.secureCookies(), SameSite: http.SameSiteStrictMode})
	return b.CSRFToken("pre:" + v)
}

// checkCSRF verifies the csrf form field of a POST.
func (b *Broker) checkCSRF(r *http.Request) bool {
	tok := r.PostFormValue("csrf")
	if tok == "" {
		return false
	}
	if c, err := r.Cookie(b.cfg.Session.CookieName); err == nil && b.CheckCSRF(c.Value, tok) {
		return true
	}
	if c, err := r.Cookie(csrfCookie); err == nil && b.CheckCSRF("pre:"+c.Value, tok) {
		return true
	}
	return false
}

type providerChoice struct{ ID, DisplayName, Href string }

// loginStart is where the OP sends the browser with an authorization
// request: an existing session that suffices completes it, otherwise the
// person chooses how to log in.
func (b *Broker) loginStart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.URL.Query().Get("authRequestID")
	if id == "" {
		// a portal login without an OAuth client: back to return afterwards
		ret := safeReturn(r.URL.Query().Get("return"))
		if _, _, err := b.sessionFromRequest(ctx, r); err == nil {
			http.Redirect(w, r, ret, http.StatusSeeOther)
			return
		}
		b.showChoiceFor(w, r, "", ret, "")
		return
	}
	var ar authRequest
	if _, err := getJSON(ctx, b.recs, kindAuthReq, id, &ar); err != nil || ar.Done {
		b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
		return
	}
	if sess, _, err := b.sessionFromRequest(ctx, r); err == nil {
		if b.sessionSatisfies(sess, &ar, false) {
			b.completeAuthRequest(w, r, &ar, sess)
			return
		}
		if b.sessionFresh(sess, &ar, false) {
			// only the level is short: step up within this session
			b.completeAuthRequest(w, r, &ar, sess)
			return
		}
	}
	b.showChoice(w, r, id, "")
}

func (b *Broker) showChoice(w http.ResponseWriter, r *http.Request, authReqID, errKey string) {
	b.showChoiceFor(w, r, authReqID, "", errKey)
}

// showChoiceFor renders the login page for an authorization request, or
// for a portal login that returns to ret.
func (b *Broker) showChoiceFor(w http.ResponseWriter, r *http.Request, authReqID, ret, errKey string) {
	q := url.Values{}
	if authReqID != "" {
		q.Set("authRequestID", authReqID)
	} else {
		q.Set("return", safeReturn(ret))
	}
	var ps []providerChoice
	for _, p := range b.cfg.Providers {
		ps = append(ps, providerChoice{ID: p.ID, DisplayName: p.DisplayName})
	}
	if b.dev != nil {
		ps = append(ps, b.dev.providerChoices()...)
	}
	for i := range ps {
		ps[i].Href = "/login/provider/" + url.PathEscape(ps[i].ID) + "?" + q.Encode()
	}
	status := http.StatusOK
	if errKey != "" {
		status = http.StatusUnauthorized
	}
	b.ui.render(w, r, "choose", "choose_title", map[string]any{"Providers": ps, "AuthRequestID": authReqID, "Return": q.Get("return")},
		renderOpts{csrf: b.formCSRF(w, r), errKey: errKey, status: status})
}

// requiredLevel is the lowest level among the requested acr_values (any of
// them is acceptable), LevelNone if none was asked.
func requiredLevel(acrs []string) Level {
	req := LevelNone
	for _, a := range acrs {
		if l, ok := ParseLevel(a); ok && (req == LevelNone || l < req) {
			req = l
		}
	}
	return req
}

// sessionSatisfies reports whether sess may answer ar without a new login.
func (b *Broker) sessionSatisfies(sess *session, ar *authRequest, fresh bool) bool {
	return b.sessionFresh(sess, ar, fresh) && sess.Level >= requiredLevel(ar.ACRValues)
}

// sessionFresh reports whether sess is recent enough for ar (prompt=login,
// max_age), whatever its level.
func (b *Broker) sessionFresh(sess *session, ar *authRequest, fresh bool) bool {
	if !fresh && slices.Contains(ar.Prompt, "login") {
		return false
	}
	if ar.MaxAge != nil && b.now().Sub(sess.AuthTime) > time.Duration(*ar.MaxAge)*time.Second {
		return false
	}
	return true
}

// completeAuthRequest binds ar to sess, builds the grant and sends the
// browser back to the OP callback.
func (b *Broker) completeAuthRequest(w http.ResponseWriter, r *http.Request, ar *authRequest, sess *session) {
	ctx := r.Context()
	if need := requiredLevel(ar.ACRValues); sess.Level < need {
		// assurance too low: step up within the session, then come back
		q := url.Values{"return": {"/login/?authRequestID=" + ar.ID}, "level": {itoa(int(need))}}
		http.Redirect(w, r, "/login/step-up?"+q.Encode(), http.StatusSeeOther)
		return
	}
	c, ok := b.clients[ar.ClientID]
	if !ok {
		b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
		return
	}
	g := b.sessionGrant(sess, c, ar.Scopes)
	var cur authRequest
	v, err := getJSON(ctx, b.recs, kindAuthReq, ar.ID, &cur)
	if err != nil || cur.Done {
		b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
		return
	}
	cur.Done, cur.SessionID, cur.Grant = true, sess.ID, g
	if _, err := putJSON(ctx, b.recs, kindAuthReq, ar.ID, &cur, cur.Created.Add(authRequestTTL), v); err != nil {
		b.ui.errorPage(w, r, http.StatusBadRequest, "expired")
		return
	}
	http.Redirect(w, r, "/oauth/authorize/callback?id="+url.QueryEscape(ar.ID), http.StatusSeeOther)
}

// sessionGrant builds what a client gets for a logged-in person.
func (b *Broker) sessionGrant(sess *session, c *client, requested []string) *grant {
	var scopes []string
	for _, s := range c.allowedScopes(requested) {
		if sc, err := ParseScope(s); err == nil {
			switch {
			case sc.Context == "system":
				continue
			case sc.Context == "user" && sess.Kind != KindProfessional:
				continue // citizens get patient-context scopes only
			}
		}
		scopes = append(scopes, s)
	}
	g := &grant{
		Account: sess.Account, Kind: sess.Kind, Subject: sess.Subject, ActingFor: sess.ActingFor,
		Sub: b.pairwiseSub(c, sess.Account), ClientID: c.cfg.ID, Scopes: scopes, Level: sess.Level,
		AuthTime: sess.AuthTime, SecondFactorTime: sess.SecondFactorTime, SessionID: sess.ID,
		Provider: sess.Provider, Organization: sess.Organization, Roles: slices.Clone(sess.Roles),
		AMR: slices.Clone(sess.AMR), Audience: []string{c.cfg.ID, b.fhirBase},
	}
	if slices.Contains(scopes, "launch/patient") {
		switch {
		case sess.ActingFor != "":
			g.Patient = sess.ActingFor
		case strings.HasPrefix(sess.Subject, "Patient/"):
			g.Patient = sess.Subject
		}
	}
	if c.cfg.BSNEntitled && len(sess.BSN) > 0 {
		g.BSN = sess.BSN
	}
	return g
}

// pairwiseSub is the subject a client sees for an account: stable per
// (sector, account), unlinkable across sectors.
func (b *Broker) pairwiseSub(c *client, account string) string {
	return mac(b.secrets.pairwise, c.sector(), account)[:32]
}

func (b *Broker) logout(w http.ResponseWriter, r *http.Request) {
	if !b.checkCSRF(r) {
		b.ui.errorPage(w, r, http.StatusForbidden, "csrf")
		return
	}
	if sess, _, err := b.sessionFromRequest(r.Context(), r); err == nil {
		b.endSession(r.Context(), sess, r, "")
	}
	b.clearSessionCookie(w)
	http.Redirect(w, r, "/login/logged-out", http.StatusSeeOther)
}

// startSession creates a session after a successful login, audits it and
// sets the cookie.
func (b *Broker) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, s *session, clientID string) error {
	cookie, err := b.newSession(ctx, s, r)
	if err != nil {
		return err
	}
	if err := b.audit(ctx, AuditEvent{Action: "login", Outcome: "success", Subject: s.Subject, ActingFor: s.ActingFor,
		Account: s.Account, Provider: s.Provider, ClientID: clientID, Level: s.Level, SessionID: s.ID}, r); err != nil {
		_ = b.recs.DeleteRecord(ctx, kindSession, s.key(), -1)
		return err
	}
	b.setSessionCookie(w, cookie)
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }

// stepUpPage raises the assurance of the current session: back upstream
// (with acr_values) for federated sessions, or a second factor for local
// accounts and professionals who enrolled one.
func (b *Broker) stepUpPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	ret := safeReturn(q.Get("return"))
	sess, _, err := b.sessionFromRequest(ctx, r)
	if err != nil {
		b.ui.errorPage(w, r, http.StatusUnauthorized, "expired")
		return
	}
	level, _ := strconv.Atoi(q.Get("level"))
	fresh := q.Get("fresh") == "1"
	freshOK := !fresh || (!sess.SecondFactorTime.IsZero() && b.now().Sub(sess.SecondFactorTime) <= 5*time.Minute)
	if sess.Level >= Level(level) && freshOK {
		http.Redirect(w, r, ret, http.StatusSeeOther)
		return
	}
	if up := b.fed.get(sess.Provider); up != nil && (sess.Level < Level(level) || up.cfg.Kind == "digid") {
		v := url.Values{"stepup": {"1"}, "level": {strconv.Itoa(max(level, int(sess.Level)))}, "return": {ret}}
		http.Redirect(w, r, "/login/provider/"+url.PathEscape(up.cfg.ID)+"?"+v.Encode(), http.StatusSeeOther)
		return
	}
	b.secondFactorStepUp(w, r, sess, Level(level), ret)
}
