package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"regie/auth/notify/notifytest"
)

var (
	csrfRe   = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	flowRe   = regexp.MustCompile(`name="flow" value="([^"]+)"`)
	secretRe = regexp.MustCompile(`<code>([A-Z2-7]{16,})</code>`)
	codeRe   = regexp.MustCompile(`<li><code>([A-Z0-9]{5}-[A-Z0-9]{5})</code></li>`)
	linkRe   = regexp.MustCompile(`https?://\S+`)
	prefixRe = regexp.MustCompile(`class="prefix"[^>]*>([A-Z0-9]{4})-<`)
	smsRe    = regexp.MustCompile(`([A-Z0-9]{4})-(\d{6})`)
)

// mailBody decodes the text of a received e-mail.
func mailBody(t testing.TB, m notifytest.Mail) string {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	var r io.Reader = msg.Body
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		r = quotedprintable.NewReader(msg.Body)
	}
	b, _ := io.ReadAll(r)
	return string(b)
}

// lastLink returns the first link of the newest e-mail to addr.
func (f *fixture) lastLink(addr string) string {
	f.t.Helper()
	mails := f.smtp.Mails()
	for i := len(mails) - 1; i >= 0; i-- {
		if mails[i].To[0] == addr {
			if l := linkRe.FindString(mailBody(f.t, mails[i])); l != "" {
				return l
			}
		}
	}
	f.t.Fatalf("no e-mail with a link to %s", addr)
	return ""
}

// page GETs u and returns status, body and the CSRF token in it.
func (f *fixture) page(hc *http.Client, u string) (int, string, string) {
	f.t.Helper()
	resp := f.get(hc, u)
	b := body(f.t, resp)
	tok := ""
	if m := csrfRe.FindStringSubmatch(b); m != nil {
		tok = m[1]
	}
	return resp.StatusCode, b, tok
}

func (f *fixture) submit(hc *http.Client, u string, form url.Values) (*http.Response, string) {
	f.t.Helper()
	resp, err := hc.PostForm(u, form)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp, body(f.t, resp)
}

var localDirectory = docDirectory{docs: map[string]string{
	"Patient/lotte":  `{"resourceType":"Patient","id":"lotte","birthDate":"1990-04-17"}`,
	"Patient/daan":   `{"resourceType":"Patient","id":"daan","birthDate":"1985-01-02"}`,
	"Practitioner/h": `{"resourceType":"Practitioner","id":"h"}`,
}}

const goodPassword = "Zonnige-Fietstocht-2026"

// activate runs an invitation through activation and enrolment and returns
// the TOTP secret and recovery codes.
func (f *fixture) activate(email, subject, phone string) (string, []string) {
	f.t.Helper()
	ctx := context.Background()
	if err := f.b.InviteClient(ctx, Invitation{Subject: subject, Email: email, Phone: phone, InvitedBy: "Practitioner/coach1"}); err != nil {
		f.t.Fatal(err)
	}
	link := f.lastLink(email)
	hc := f.browser()
	_, _, csrf := f.page(hc, link)
	tok := must(url.Parse(link)).Query().Get("token")
	resp, _ := f.submit(hc, f.base+"/account/activate", url.Values{"csrf": {csrf}, "token": {tok}, "birthdate": {birthDate(subject)}})
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("birth date step: %d", resp.StatusCode)
	}
	resp, _ = f.submit(hc, f.base+"/account/activate", url.Values{"csrf": {csrf}, "token": {tok}, "password": {goodPassword}, "password2": {goodPassword}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/account/enrol" {
		f.t.Fatalf("password step: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	return f.enrol(hc, f.base+"/account/enrol?token="+url.QueryEscape(tok), tok)
}

func (f *fixture) enrol(hc *http.Client, u, tok string) (string, []string) {
	f.t.Helper()
	_, b, csrf := f.page(hc, u)
	m := secretRe.FindStringSubmatch(b)
	if m == nil || !strings.Contains(b, "data:image/png;base64,") {
		f.t.Fatalf("no QR code or secret on the enrolment page: %s", b[strings.Index(b, "<main>"):])
	}
	code, _ := totp.GenerateCode(m[1], f.clock.Now())
	resp, b := f.submit(hc, f.base+"/account/enrol", url.Values{"csrf": {csrf}, "token": {tok}, "code": {code}})
	codes := codeRe.FindAllStringSubmatch(b, -1)
	if resp.StatusCode != http.StatusOK || len(codes) != recoveryCodes {
		f.t.Fatalf("enrolment: %d, %d recovery codes", resp.StatusCode, len(codes))
	}
	var out []string
	for _, c := range codes {
		out = append(out, c[1])
	}
	f.clock.Advance(30 * time.Second) // the enrolment code's step is spent
	return m[1], out
}

func birthDate(subject string) string {
	switch subject {
	case "Patient/lotte":
		return "1990-04-17"
	case "Patient/daan":
		return "02-01-1985"
	}
	return ""
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// passwordStep posts the login form and returns the response (at the
// second-factor page when the password is right).
func (f *fixture) passwordStep(hc *http.Client, email, pw string) (*http.Response, string) {
	f.t.Helper()
	_, _, csrf := f.page(hc, f.base+"/login/logged-out")
	_, b, csrf := f.page(hc, f.base+"/account/forgot") // any form page sets the pre-login CSRF cookie
	_ = b
	return f.submit(hc, f.base+"/login/local", url.Values{"csrf": {csrf}, "email": {email}, "password": {pw}})
}

func (f *fixture) otpSubmit(hc *http.Client, page, code string) (*http.Response, string) {
	f.t.Helper()
	csrf := csrfRe.FindStringSubmatch(page)
	flow := flowRe.FindStringSubmatch(page)
	if csrf == nil || flow == nil {
		f.t.Fatalf("not a second-factor page: %.300s", page)
	}
	return f.submit(hc, f.base+"/login/otp", url.Values{"csrf": {csrf[1]}, "flow": {flow[1]}, "code": {code}})
}

func (f *fixture) sessionCookie(hc *http.Client) string {
	u, _ := url.Parse(f.base)
	for _, c := range hc.Jar.Cookies(u) {
		if c.Name == f.b.SessionCookieName() {
			return c.Value
		}
	}
	return ""
}

func localFixture(t *testing.T) *fixture {
	return newFixture(t, func(c *Config) { c.Directory = localDirectory })
}

func TestLocalAccountLifecycle(t *testing.T) {
	f := localFixture(t)
	ctx := context.Background()
	secret, recovery := f.activate("lotte@example.nl", "Patient/lotte", "")
	if ev := f.audit.find("account-activated", "success"); len(ev) != 1 || ev[0].Subject != "Patient/lotte" {
		t.Errorf("activation audit %+v", ev)
	}
	// the activation link is single use
	link := f.lastLink("lotte@example.nl")
	if st, _, _ := f.page(f.browser(), link); st != http.StatusBadRequest {
		t.Errorf("used activation link: %d", st)
	}

	// login: password, then TOTP, then the app gets its code
	hc := f.browser()
	p := defaultParams()
	resp := f.get(hc, f.authorizeURL(p))
	b := body(t, resp)
	arID := resp.Request.URL.Query().Get("authRequestID")
	csrf := csrfRe.FindStringSubmatch(b)[1]
	resp, b = f.submit(hc, f.base+"/login/local", url.Values{"csrf": {csrf}, "authRequestID": {arID}, "email": {"Lotte@Example.nl"}, "password": {goodPassword}})
	if resp.Request.URL.Path != "/login/otp" {
		t.Fatalf("password accepted but no second factor asked: %d %s", resp.StatusCode, resp.Request.URL)
	}
	if f.sessionCookie(hc) != "" {
		t.Fatal("a session exists before the second factor")
	}
	code, _ := totp.GenerateCode(secret, f.clock.Now())
	resp, _ = f.otpSubmit(hc, b, code)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code after TOTP: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, tok := f.exchange(hc, "app", loc.Query().Get("code"), appRedirect, p.verifier)
	pr, err := f.b.AuthenticateBearer(ctx, "Bearer "+fmt.Sprint(tok["access_token"]), RequestMeta{})
	if err != nil || pr.Subject != "Patient/lotte" || pr.Level != LevelMidden || pr.SecondFactorTime.IsZero() || pr.Provider != "local" {
		t.Fatalf("principal %+v %v", pr, err)
	}
	if c := jwtPayload(fmt.Sprint(tok["id_token"])); fmt.Sprint(c["amr"]) != "[pwd otp]" {
		t.Errorf("amr = %v", c["amr"])
	}

	// the same TOTP code is accepted once
	hc2 := f.browser()
	_, b = f.passwordStep(hc2, "lotte@example.nl", goodPassword)
	resp, _ = f.otpSubmit(hc2, b, code)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replayed TOTP code: %d", resp.StatusCode)
	}
	// a recovery code works once
	resp, _ = f.otpSubmit(hc2, b, strings.ToLower(recovery[0]))
	if resp.Request.URL.Path != "/" || f.sessionCookie(hc2) == "" {
		t.Fatalf("recovery code: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	hc3 := f.browser()
	_, b = f.passwordStep(hc3, "lotte@example.nl", goodPassword)
	if resp, _ := f.otpSubmit(hc3, b, recovery[0]); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("recovery code reused: %d", resp.StatusCode)
	}

	// sessions list and "log out elsewhere"
	st, b, csrf := f.page(hc, f.base+"/account/sessions")
	if st != http.StatusOK || strings.Count(b, "<tr><td>") != 2 {
		t.Errorf("sessions page: %d, %d rows", st, strings.Count(b, "<tr><td>"))
	}
	if resp, _ := f.submit(hc, f.base+"/account/sessions/logout-others", url.Values{"csrf": {"forged"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout-others without CSRF token: %d", resp.StatusCode)
	}
	resp, _ = f.submit(hc, f.base+"/account/sessions/logout-others", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("logout-others: %d", resp.StatusCode)
	}
	if _, err := f.b.AuthenticateSession(ctx, f.sessionCookie(hc2), RequestMeta{}); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("other session survived: %v", err)
	}
	if _, err := f.b.AuthenticateSession(ctx, f.sessionCookie(hc), RequestMeta{}); err != nil {
		t.Errorf("own session ended: %v", err)
	}
	// logout on the page needs the CSRF token too
	if resp, _ := f.submit(hc, f.base+"/login/logout", url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without CSRF: %d", resp.StatusCode)
	}
	if resp, _ := f.submit(hc, f.base+"/login/logout", url.Values{"csrf": {f.b.CSRFToken(f.sessionCookie(hc))}}); resp.Request.URL.Path != "/login/logged-out" {
		t.Errorf("logout: %s", resp.Request.URL)
	}
	if len(f.audit.find("logout", "success")) < 2 {
		t.Error("logouts not audited")
	}
}

func TestActivationChecks(t *testing.T) {
	f := localFixture(t)
	ctx := context.Background()
	if err := f.b.InviteClient(ctx, Invitation{Subject: "Patient/lotte", Email: "l@example.nl"}); err != nil {
		t.Fatal(err)
	}
	if err := f.b.InviteClient(ctx, Invitation{Subject: "Patient/daan", Email: "L@example.nl"}); !errors.Is(err, errExistsSentinel()) {
		t.Errorf("second account for one address: %v", err)
	}
	link := f.lastLink("l@example.nl")
	tok := must(url.Parse(link)).Query().Get("token")
	hc := f.browser()
	_, _, csrf := f.page(hc, link)
	post := func(v url.Values) (*http.Response, string) {
		v.Set("csrf", csrf)
		v.Set("token", tok)
		return f.submit(hc, f.base+"/account/activate", v)
	}
	if resp, _ := f.submit(hc, f.base+"/account/activate", url.Values{"token": {tok}, "birthdate": {"1990-04-17"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := post(url.Values{"birthdate": {"1990-04-18"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong birth date: %d", resp.StatusCode)
	}
	if resp, _ := post(url.Values{"birthdate": {"17-04-1990"}}); resp.StatusCode != http.StatusOK {
		t.Errorf("right birth date (DD-MM-YYYY): %d", resp.StatusCode)
	}
	for _, pw := range []string{"kort-2026", "Wachtwoord123!", "passwordpassword", "P@ssw0rd-1234", "aaaaaaaaaaaaaaaa", "121212121212", "l@example.nl-2026"} {
		if resp, _ := post(url.Values{"password": {pw}, "password2": {pw}}); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("weak password %q accepted: %d", pw, resp.StatusCode)
		}
	}
	if resp, _ := post(url.Values{"password": {goodPassword}, "password2": {goodPassword + "x"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("mismatch accepted: %d", resp.StatusCode)
	}
	// the account cannot log in before a second factor is enrolled
	resp, _ := post(url.Values{"password": {goodPassword}, "password2": {goodPassword}})
	if resp.Request.URL.Path != "/account/enrol" {
		t.Fatalf("after password: %s", resp.Request.URL)
	}
	if resp, _ := f.passwordStep(f.browser(), "l@example.nl", goodPassword); resp.Request.URL.Path == "/login/otp" {
		t.Error("login possible before enrolment")
	}
	// the password is stored as argon2id, never in the clear
	a, _, _ := f.b.accountByEmail(ctx, "l@example.nl")
	if !strings.HasPrefix(a.Local.PasswordHash, "$argon2id$") || strings.Contains(string(mustJSON(a)), goodPassword) {
		t.Errorf("password hash %q", a.Local.PasswordHash)
	}
	// the TOTP seed is encrypted at rest
	st, b, _ := f.page(hc, f.base+"/account/enrol?token="+url.QueryEscape(tok))
	secret := secretRe.FindStringSubmatch(b)
	a, _, _ = f.b.accountByEmail(ctx, "l@example.nl")
	if st != http.StatusOK || secret == nil || strings.Contains(string(mustJSON(a)), secret[1]) {
		t.Error("TOTP seed stored in the clear")
	}
	// an expired invitation (14 days) no longer works
	if err := f.b.InviteClient(ctx, Invitation{Subject: "Patient/daan", Email: "daan@example.nl"}); err != nil {
		t.Fatal(err)
	}
	link = f.lastLink("daan@example.nl")
	f.clock.Advance(14*24*time.Hour + time.Minute)
	if st, _, _ := f.page(f.browser(), link); st != http.StatusBadRequest {
		t.Errorf("expired invitation: %d", st)
	}
}

func errExistsSentinel() error { return storageErrExists }

func TestBirthDateGuessing(t *testing.T) {
	f := localFixture(t)
	if err := f.b.InviteClient(context.Background(), Invitation{Subject: "Patient/lotte", Email: "g@example.nl"}); err != nil {
		t.Fatal(err)
	}
	link := f.lastLink("g@example.nl")
	tok := must(url.Parse(link)).Query().Get("token")
	hc := f.browser()
	_, _, csrf := f.page(hc, link)
	for i := 0; i < 5; i++ {
		f.submit(hc, f.base+"/account/activate", url.Values{"csrf": {csrf}, "token": {tok}, "birthdate": {fmt.Sprintf("1990-01-%02d", i+1)}})
	}
	if resp, _ := f.submit(hc, f.base+"/account/activate", url.Values{"csrf": {csrf}, "token": {tok}, "birthdate": {"1990-04-17"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("link still usable after 5 wrong birth dates: %d", resp.StatusCode)
	}
}

func TestSMSCodes(t *testing.T) {
	f := localFixture(t)
	f.activate("s@example.nl", "Patient/lotte", "+31612345678")
	hc := f.browser()
	_, b := f.passwordStep(hc, "s@example.nl", goodPassword)
	flowID := flowRe.FindStringSubmatch(b)[1]
	csrf := csrfRe.FindStringSubmatch(b)[1]
	send := func() (*http.Response, string) {
		return f.submit(hc, f.base+"/login/otp/sms", url.Values{"csrf": {csrf}, "flow": {flowID}})
	}
	resp, b := send()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("send sms: %d", resp.StatusCode)
	}
	msgs := f.gw.Messages()
	if len(msgs) != 1 || msgs[0].To != "+31612345678" {
		t.Fatalf("gateway %+v", msgs)
	}
	m := smsRe.FindStringSubmatch(msgs[0].Text)
	shown := prefixRe.FindStringSubmatch(b)
	if m == nil || shown == nil || shown[1] != m[1] {
		t.Fatalf("prefix on screen %v, in SMS %q", shown, msgs[0].Text)
	}
	// the code is stored hashed, bound to this flow
	var rec flow
	_, _ = getJSON(context.Background(), f.recs, kindStepUp, flowID, &rec)
	if rec.SMS == nil || strings.Contains(rec.SMS.Hash, m[2]) {
		t.Error("SMS code stored in the clear")
	}
	// a correct code of another flow is refused
	other := f.browser()
	_, ob := f.passwordStep(other, "s@example.nl", goodPassword)
	if resp, _ := f.otpSubmit(other, ob, m[2]); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("code used in another flow: %d", resp.StatusCode)
	}
	resp, _ = f.otpSubmit(hc, b, m[2])
	if f.sessionCookie(hc) == "" {
		t.Fatalf("SMS login failed: %d", resp.StatusCode)
	}
	if ev := f.audit.find("login", "success"); len(ev) != 1 || ev[0].Provider != "local" {
		t.Errorf("login audit %+v", ev)
	}
}

func TestSMSLimitsAndBruteForce(t *testing.T) {
	f := localFixture(t)
	f.activate("b@example.nl", "Patient/lotte", "+31611111111")
	hc := f.browser()
	_, b := f.passwordStep(hc, "b@example.nl", goodPassword)
	flow := flowRe.FindStringSubmatch(b)[1]
	csrf := csrfRe.FindStringSubmatch(b)[1]
	var last string
	for i := 1; i <= 4; i++ {
		resp, pb := f.submit(hc, f.base+"/login/otp/sms", url.Values{"csrf": {csrf}, "flow": {flow}})
		if i <= 3 && resp.StatusCode != http.StatusOK {
			t.Fatalf("send %d: %d", i, resp.StatusCode)
		}
		if i == 4 && resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("4th SMS within 15 minutes: %d", resp.StatusCode)
		}
		if i <= 3 {
			last = pb
		}
	}
	if n := len(f.gw.Messages()); n != 3 {
		t.Errorf("%d SMS sent, want 3", n)
	}
	right := smsRe.FindStringSubmatch(f.gw.Messages()[2].Text)[2]
	// five wrong guesses spend the code (and lock the account)
	for i := 0; i < 5; i++ {
		wrong := fmt.Sprintf("%06d", (i*7919+13)%1000000)
		if wrong == right {
			wrong = "000000"
		}
		resp, _ := f.otpSubmit(hc, last, wrong)
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("guess %d: %d", i, resp.StatusCode)
		}
	}
	resp, _ := f.otpSubmit(hc, last, right)
	if resp.StatusCode < 400 || f.sessionCookie(hc) != "" {
		t.Errorf("the right code worked after 5 wrong tries: %d", resp.StatusCode)
	}
	if ev := f.audit.find("lockout", "failure"); len(ev) != 1 {
		t.Errorf("lockout audit %+v", ev)
	}
	if !strings.Contains(mailBody(t, f.smtp.Mails()[len(f.smtp.Mails())-1]), "geblokkeerd") {
		t.Error("owner not told about the lock-out")
	}
	// while locked even the right password and code fail
	hc2 := f.browser()
	if resp, _ := f.passwordStep(hc2, "b@example.nl", goodPassword); resp.Request.URL.Path == "/login/otp" {
		t.Error("locked account passed the password step")
	}
	// the lock-out ends, then doubles on the next one
	f.clock.Advance(16 * time.Minute)
	if resp, _ := f.passwordStep(hc2, "b@example.nl", goodPassword); resp.Request.URL.Path != "/login/otp" {
		t.Errorf("lock-out did not end: %s", resp.Request.URL)
	}
	for i := 0; i < 5; i++ {
		f.passwordStep(f.browser(), "b@example.nl", "wrong-password-123")
	}
	a, _, _ := f.b.accountByEmail(context.Background(), "b@example.nl")
	if d := a.Local.LockedUntil.Sub(f.clock.Now()); d < 29*time.Minute || d > 31*time.Minute {
		t.Errorf("second lock-out lasts %v, want 30 minutes", d)
	}
}

func TestNoUserEnumeration(t *testing.T) {
	f := localFixture(t)
	f.activate("known@example.nl", "Patient/lotte", "")
	norm := func(s string) string { return csrfRe.ReplaceAllString(s, "") }
	r1, b1 := f.passwordStep(f.browser(), "known@example.nl", "wrong-password-xyz")
	r2, b2 := f.passwordStep(f.browser(), "nobody@example.nl", "wrong-password-xyz")
	if r1.StatusCode != r2.StatusCode || norm(b1) != norm(b2) {
		t.Errorf("login answers differ: %d vs %d", r1.StatusCode, r2.StatusCode)
	}
	before := len(f.smtp.Mails())
	hc := f.browser()
	_, _, csrf := f.page(hc, f.base+"/account/forgot")
	r3, b3 := f.submit(hc, f.base+"/account/forgot", url.Values{"csrf": {csrf}, "email": {"known@example.nl"}})
	r4, b4 := f.submit(hc, f.base+"/account/forgot", url.Values{"csrf": {csrf}, "email": {"nobody@example.nl"}})
	if r3.StatusCode != r4.StatusCode || norm(b3) != norm(b4) {
		t.Errorf("forgot-password answers differ: %d vs %d", r3.StatusCode, r4.StatusCode)
	}
	if n := len(f.smtp.Mails()) - before; n != 1 {
		t.Errorf("%d reset e-mails, want 1 (to the known address)", n)
	}
}

func TestPasswordReset(t *testing.T) {
	f := localFixture(t)
	ctx := context.Background()
	secret, _ := f.activate("r@example.nl", "Patient/lotte", "")
	// a logged-in session, to be ended by the reset
	hc := f.browser()
	_, b := f.passwordStep(hc, "r@example.nl", goodPassword)
	code, _ := totp.GenerateCode(secret, f.clock.Now())
	f.otpSubmit(hc, b, code)
	cookie := f.sessionCookie(hc)
	if _, err := f.b.AuthenticateSession(ctx, cookie, RequestMeta{}); err != nil {
		t.Fatal(err)
	}
	hc2 := f.browser()
	_, _, csrf := f.page(hc2, f.base+"/account/forgot")
	f.submit(hc2, f.base+"/account/forgot", url.Values{"csrf": {csrf}, "email": {"r@example.nl"}})
	link := f.lastLink("r@example.nl")
	tok := must(url.Parse(link)).Query().Get("token")
	_, _, csrf = f.page(hc2, link)
	if resp, _ := f.submit(hc2, f.base+"/account/reset", url.Values{"csrf": {csrf}, "token": {tok}, "password": {"password1234"}, "password2": {"password1234"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("weak reset password: %d", resp.StatusCode)
	}
	newPW := "Nieuwe-Zeilboot-Avond-9"
	if resp, _ := f.submit(hc2, f.base+"/account/reset", url.Values{"csrf": {csrf}, "token": {tok}, "password": {newPW}, "password2": {newPW}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("reset: %d", resp.StatusCode)
	}
	if _, err := f.b.AuthenticateSession(ctx, cookie, RequestMeta{}); err == nil {
		t.Error("session survived the password reset")
	}
	if st, _, _ := f.page(f.browser(), link); st != http.StatusBadRequest {
		t.Errorf("reset link reusable: %d", st)
	}
	// the new password works, and the second factor is still required
	resp, _ := f.passwordStep(f.browser(), "r@example.nl", newPW)
	if resp.Request.URL.Path != "/login/otp" {
		t.Errorf("after reset: %s", resp.Request.URL)
	}
	if len(f.audit.find("password-reset", "success")) != 1 {
		t.Error("reset not audited")
	}
}

func TestHelpdeskResetSecondFactor(t *testing.T) {
	f := localFixture(t)
	ctx := context.Background()
	oldSecret, _ := f.activate("h@example.nl", "Patient/lotte", "")
	if err := f.b.ResetSecondFactor(ctx, &Principal{Kind: KindProfessional, Subject: "Practitioner/c", Roles: []string{"coach"}}, "Patient/lotte"); !errors.Is(err, ErrForbidden) {
		t.Errorf("coach reset a second factor: %v", err)
	}
	// through the helpdesk page, as a helpdesk session
	hd := f.browser()
	f.loginAs(hd, &session{Kind: KindProfessional, Subject: "Practitioner/h", Roles: []string{"helpdesk"}, Level: LevelMidden})
	st, _, csrf := f.page(hd, f.base+"/helpdesk/second-factor")
	if st != http.StatusOK {
		t.Fatalf("helpdesk page: %d", st)
	}
	if resp, _ := f.submit(hd, f.base+"/helpdesk/second-factor", url.Values{"csrf": {csrf}, "subject": {"Patient/lotte"}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("helpdesk reset: %d", resp.StatusCode)
	}
	if len(f.audit.find("second-factor-reset", "success")) != 1 {
		t.Error("reset not audited")
	}
	// the old app no longer works: there is no code to enter until the person enrols anew
	hc := f.browser()
	_, b := f.passwordStep(hc, "h@example.nl", goodPassword)
	if strings.Contains(b, `name="code"`) {
		t.Error("a code is still asked after the reset")
	}
	var code string
	// the e-mailed link enrols a new one
	link := f.lastLink("h@example.nl")
	tok := must(url.Parse(link)).Query().Get("token")
	newSecret, _ := f.enrol(f.browser(), link, tok)
	if newSecret == oldSecret {
		t.Error("same seed after reset")
	}
	hc = f.browser()
	_, b = f.passwordStep(hc, "h@example.nl", goodPassword)
	code, _ = totp.GenerateCode(newSecret, f.clock.Now())
	f.otpSubmit(hc, b, code)
	if f.sessionCookie(hc) == "" {
		t.Error("new seed does not work")
	}
	// a non-helpdesk session cannot open the page
	other := f.browser()
	f.loginAs(other, &session{Kind: KindProfessional, Subject: "Practitioner/c", Roles: []string{"coach"}})
	if st, _, _ := f.page(other, f.base+"/helpdesk/second-factor"); st != http.StatusForbidden {
		t.Errorf("coach on the helpdesk page: %d", st)
	}
}

func TestSessionLifetimeAndCookie(t *testing.T) {
	f := localFixture(t)
	ctx := context.Background()
	secret, _ := f.activate("c@example.nl", "Patient/lotte", "")
	hc := f.browser()
	_, b := f.passwordStep(hc, "c@example.nl", goodPassword)
	code, _ := totp.GenerateCode(secret, f.clock.Now())
	resp, _ := f.otpSubmit(hc, b, code)
	var setCookie string
	for r := resp; r != nil; r = r.Request.Response {
		for _, c := range r.Header.Values("Set-Cookie") {
			if strings.HasPrefix(c, f.b.SessionCookieName()+"=") {
				setCookie = c
			}
		}
	}
	if !strings.Contains(setCookie, "HttpOnly") || !strings.Contains(setCookie, "SameSite=Lax") {
		t.Errorf("session cookie %q", setCookie)
	}
	cookie := f.sessionCookie(hc)
	if parts := strings.Split(cookie, "."); len(parts) != 3 || len(parts[2]) < 22 {
		t.Errorf("cookie %q lacks a 128-bit secret", cookie)
	}
	// idle timeout 15 minutes
	f.clock.Advance(14 * time.Minute)
	if _, err := f.b.AuthenticateSession(ctx, cookie, RequestMeta{}); err != nil {
		t.Fatalf("within idle timeout: %v", err)
	}
	f.clock.Advance(14 * time.Minute)
	if _, err := f.b.AuthenticateSession(ctx, cookie, RequestMeta{}); err != nil {
		t.Fatalf("activity should extend the session: %v", err)
	}
	f.clock.Advance(16 * time.Minute)
	if _, err := f.b.AuthenticateSession(ctx, cookie, RequestMeta{}); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("idle session still valid: %v", err)
	}
	// absolute lifetime 12 hours, however active
	hc = f.browser()
	s := f.loginAs(hc, citizen())
	cookie = f.sessionCookie(hc)
	for i := 0; i < 12*6; i++ {
		f.clock.Advance(10 * time.Minute)
		if _, err := f.b.AuthenticateSession(ctx, cookie, RequestMeta{}); err != nil {
			if f.clock.Now().Sub(s.Created) < 12*time.Hour {
				t.Fatalf("session ended after %v", f.clock.Now().Sub(s.Created))
			}
			return
		}
	}
	t.Error("session lived beyond 12 hours")
}

func TestStepUpWithSecondFactor(t *testing.T) {
	f, _ := newDevFixture(t, func(c *Config) { c.Directory = testDirectory })
	ctx := context.Background()
	// a professional logs in through the municipality, enrols an app, and steps up for break-the-glass
	hc := f.browser()
	page := f.get(hc, f.base+"/login/provider/"+DevMunicipalityProvider+"?return=/account/sessions")
	resp := f.simLogin(hc, page, 0, ACRMidden)
	resp.Body.Close()
	cookie := f.sessionCookie(hc)
	p, err := f.b.AuthenticateSession(ctx, cookie, RequestMeta{})
	if err != nil {
		t.Fatal(err)
	}
	var se *StepUpError
	need := Requirement{Level: LevelMidden, SecondFactorWithin: 5 * time.Minute}
	if err := f.b.StepUp(p, need, "/dossier/1"); !errors.As(err, &se) {
		t.Fatalf("step-up not required: %v", err)
	}
	// nothing enrolled yet: the step-up page asks to enrol first
	st, b, _ := f.page(hc, se.RedirectURL)
	if st != http.StatusForbidden || !strings.Contains(b, "/account/enrol") {
		t.Fatalf("step-up without a factor: %d", st)
	}
	secret, _ := f.enrol(hc, f.base+"/account/enrol?return=/dossier/1", "")
	st, b, _ = f.page(hc, se.RedirectURL)
	if st != http.StatusOK || !strings.Contains(b, `name="flow"`) {
		t.Fatalf("step-up page: %d", st)
	}
	code, _ := totp.GenerateCode(secret, f.clock.Now())
	resp, _ = f.otpSubmit(hc, b, code)
	if resp.Request.URL.Path != "/dossier/1" && !strings.HasSuffix(resp.Header.Get("Location"), "/dossier/1") {
		t.Errorf("after step-up at %s", resp.Request.URL)
	}
	p, _ = f.b.AuthenticateSession(ctx, cookie, RequestMeta{})
	if err := f.b.StepUp(p, need, "/dossier/1"); err != nil {
		t.Errorf("after step-up: %v", err)
	}
	if ev := f.audit.find("step-up", "success"); len(ev) != 1 || ev[0].Subject != "Practitioner/coach1" {
		t.Errorf("step-up audit %+v", ev)
	}
	f.clock.Advance(6 * time.Minute)
	p, _ = f.b.AuthenticateSession(ctx, cookie, RequestMeta{})
	if err := f.b.StepUp(p, need, "/dossier/1"); err == nil {
		t.Error("second factor older than 5 minutes satisfied break-the-glass")
	}
	// brute force on the step-up code is audited and limited
	_, b, _ = f.page(hc, se.RedirectURL)
	for i := 0; i < 5; i++ {
		f.otpSubmit(hc, b, "000000")
	}
	if n := len(f.audit.find("step-up-failed", "failure")); n != 5 {
		t.Errorf("%d failed step-ups audited", n)
	}
}

func TestPortalLoginWithoutClient(t *testing.T) {
	f, _ := newDevFixture(t, nil)
	hc := f.browser()
	st, b, _ := f.page(hc, f.base+"/login/?return=/portaal/dossier")
	if st != http.StatusOK || !strings.Contains(b, "/login/provider/"+DevDigiDProvider+"?return=%2Fportaal%2Fdossier") || !strings.Contains(b, `name="return" value="/portaal/dossier"`) {
		t.Fatalf("choice page: %d", st)
	}
	if !strings.Contains(b, "ONTWIKKELOMGEVING") {
		t.Error("no dev banner")
	}
	page := f.get(hc, f.base+"/login/provider/"+DevDigiDProvider+"?return=/portaal/dossier")
	resp := f.simLogin(hc, page, 0, ACRMidden)
	resp.Body.Close()
	if resp.Request.URL.Path != "/portaal/dossier" {
		t.Errorf("after login at %s", resp.Request.URL)
	}
	p, err := f.b.AuthenticateSession(context.Background(), f.sessionCookie(hc), RequestMeta{})
	if err != nil || p.Subject != "Patient/anna" || p.ClientID != "portal" || p.Patient != "Patient/anna" {
		t.Errorf("portal principal %+v %v", p, err)
	}
	// an open redirect through return is refused
	st, b, _ = f.page(f.browser(), f.base+"/login/?return=//evil.example/")
	if st != http.StatusOK || strings.Contains(b, "evil") {
		t.Errorf("return=//evil.example kept: %d", st)
	}
	// English for browsers that prefer it
	req, _ := http.NewRequest("GET", f.base+"/login/?return=/", nil)
	req.Header.Set("Accept-Language", "en-GB,en;q=0.9")
	r2, _ := f.browser().Do(req)
	if eb := body(t, r2); !strings.Contains(eb, "Log in to Regie") || !strings.Contains(eb, `lang="en"`) {
		t.Error("no English page")
	}
}
