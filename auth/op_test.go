package auth

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"regie/storage"
)

func challenge(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

type authParams struct {
	client, redirect, scope, state, nonce, verifier, method string
	extra                                                   url.Values
}

func (f *fixture) authorizeURL(p authParams) string {
	q := url.Values{
		"response_type": {"code"},
		"client_id":     {p.client},
		"redirect_uri":  {p.redirect},
		"scope":         {p.scope},
		"state":         {p.state},
		"nonce":         {p.nonce},
	}
	if p.verifier != "" {
		q.Set("code_challenge", challenge(p.verifier))
		q.Set("code_challenge_method", p.method)
	}
	for k, v := range p.extra {
		q[k] = v
	}
	return f.base + "/oauth/authorize?" + q.Encode()
}

func defaultParams() authParams {
	return authParams{client: "app", redirect: appRedirect, scope: "openid fhirUser launch/patient offline_access patient/*.rs",
		state: "st-" + randToken(6), nonce: "n-" + randToken(6), verifier: randToken(32), method: "S256"}
}

// authorize runs the browser through /oauth/authorize and the login page
// and returns the redirect back to the app.
func (f *fixture) authorize(hc *http.Client, p authParams) *url.URL {
	f.t.Helper()
	resp := f.get(hc, f.authorizeURL(p))
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		f.t.Fatalf("authorize: status %d, want a redirect to the app: %s", resp.StatusCode, body(f.t, resp))
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		f.t.Fatal(err)
	}
	return loc
}

func (f *fixture) exchange(hc *http.Client, client, code, redirect, verifier string) (*http.Response, map[string]any) {
	f.t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	return f.postForm(hc, f.base+"/oauth/token", form, client, appSecret)
}

func citizen() *session {
	return &session{Kind: KindClient, Subject: "Patient/p1", Level: LevelSubstantieel, AMR: []string{"fed"}, BSN: nil}
}

// codeLogin logs a citizen in and returns the token response.
func (f *fixture) codeLogin(hc *http.Client, p authParams) map[string]any {
	f.t.Helper()
	loc := f.authorize(hc, p)
	if loc.Query().Get("state") != p.state {
		f.t.Fatalf("state not returned: %s", loc)
	}
	code := loc.Query().Get("code")
	if code == "" {
		f.t.Fatalf("no code in %s", loc)
	}
	resp, tok := f.exchange(hc, p.client, code, p.redirect, p.verifier)
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("token: %d %v", resp.StatusCode, tok)
	}
	return tok
}

func TestDiscovery(t *testing.T) {
	f := newFixture(t, nil)
	resp := f.get(http.DefaultClient, f.base+"/.well-known/openid-configuration")
	var d map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d["issuer"] != f.base {
		t.Errorf("issuer = %v", d["issuer"])
	}
	for k, want := range map[string]string{
		"authorization_endpoint": "/oauth/authorize", "token_endpoint": "/oauth/token", "jwks_uri": "/oauth/keys",
		"introspection_endpoint": "/oauth/introspect", "revocation_endpoint": "/oauth/revoke",
		"end_session_endpoint": "/oauth/end_session", "userinfo_endpoint": "/oauth/userinfo",
	} {
		if d[k] != f.base+want {
			t.Errorf("%s = %v, want %s", k, d[k], f.base+want)
		}
	}
	if m, _ := json.Marshal(d["code_challenge_methods_supported"]); string(m) != `["S256"]` {
		t.Errorf("code_challenge_methods_supported = %s", m)
	}
	var smart map[string]any
	if err := json.Unmarshal(f.b.SMARTConfiguration(), &smart); err != nil {
		t.Fatal(err)
	}
	if smart["token_endpoint"] != f.base+"/oauth/token" || smart["issuer"] != f.base {
		t.Errorf("smart configuration: %v", smart)
	}
}

func TestCodeFlowPKCE(t *testing.T) {
	f := newFixture(t, nil)
	hc := f.browser()
	sess := f.loginAs(hc, citizen())
	p := defaultParams()
	tok := f.codeLogin(hc, p)
	if tok["patient"] != "p1" {
		t.Errorf("launch patient = %v, want p1", tok["patient"])
	}
	if tok["refresh_token"] == nil {
		t.Error("no refresh token for offline_access")
	}
	// the ID token verifies with an independent library
	ctx := context.Background()
	prov, err := oidc.NewProvider(ctx, f.base)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := prov.Verifier(&oidc.Config{ClientID: "app", Now: f.clock.Now}).Verify(ctx, tok["id_token"].(string))
	if err != nil {
		t.Fatalf("id token: %v", err)
	}
	if idt.Nonce != p.nonce {
		t.Errorf("nonce %q, want %q", idt.Nonce, p.nonce)
	}
	var claims map[string]any
	_ = idt.Claims(&claims)
	if claims["fhirUser"] != f.base+"/fhir/Patient/p1" {
		t.Errorf("fhirUser = %v", claims["fhirUser"])
	}
	if claims["acr"] != ACRSubstantieel {
		t.Errorf("acr = %v", claims["acr"])
	}
	if at, _ := claims["auth_time"].(float64); int64(at) != sess.AuthTime.Unix() {
		t.Errorf("auth_time = %v, want %d", claims["auth_time"], sess.AuthTime.Unix())
	}
	if _, ok := claims["bsn"]; ok {
		t.Error("bsn claim given to a client that is not BSN-entitled")
	}
	if strings.Contains(idt.Subject, "p1") || idt.Subject == sess.Account {
		t.Errorf("sub %q is not pairwise", idt.Subject)
	}
	// the access token authenticates at the FHIR API
	pr, err := f.b.AuthenticateBearer(ctx, "Bearer "+tok["access_token"].(string), RequestMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Kind != KindClient || pr.Subject != "Patient/p1" || pr.ClientID != "app" || pr.Level != LevelSubstantieel ||
		pr.SessionID != sess.ID || pr.Patient != "Patient/p1" || !slices.Contains(pr.Scopes, "patient/*.rs") {
		t.Errorf("principal = %+v", pr)
	}
	// pairwise: another client sees another sub; the same client the same
	p2 := defaultParams()
	p2.client, p2.scope = "other", "openid fhirUser"
	tok2 := f.codeLogin(hc, p2)
	idt2, err := prov.Verifier(&oidc.Config{ClientID: "other", Now: f.clock.Now}).Verify(ctx, tok2["id_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if idt2.Subject == idt.Subject {
		t.Error("two clients see the same sub")
	}
	tok3 := f.codeLogin(hc, defaultParams())
	idt3, _ := prov.Verifier(&oidc.Config{ClientID: "app", Now: f.clock.Now}).Verify(ctx, tok3["id_token"].(string))
	if idt3 == nil || idt3.Subject != idt.Subject {
		t.Error("the same client sees different subs")
	}
	// userinfo
	req, _ := http.NewRequest("GET", f.base+"/oauth/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ui map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&ui)
	resp.Body.Close()
	if ui["sub"] != idt.Subject || ui["fhirUser"] != f.base+"/fhir/Patient/p1" {
		t.Errorf("userinfo = %v", ui)
	}
}

func TestBSNOnlyForEntitledClients(t *testing.T) {
	f := newFixture(t, nil)
	hc := f.browser()
	s := citizen()
	s.BSN = seal(f.b.secrets.enc, []byte("999993653"), "bsn")
	f.loginAs(hc, s)
	p := defaultParams()
	p.client, p.scope = "other", "openid fhirUser"
	tok := f.codeLogin(hc, p)
	claims := jwtPayload(tok["id_token"].(string))
	if claims["bsn"] != "999993653" {
		t.Errorf("entitled client: bsn = %v", claims["bsn"])
	}
	if claims["sub"] == "999993653" {
		t.Error("bsn used as sub")
	}
	tok2 := f.codeLogin(hc, defaultParams())
	if c := jwtPayload(tok2["id_token"].(string)); c["bsn"] != nil {
		t.Errorf("non-entitled client got bsn")
	}
	if c := jwtPayload(tok2["access_token"].(string)); c["bsn"] != nil {
		t.Errorf("access token carries bsn")
	}
}

func TestAuthorizeAttacks(t *testing.T) {
	f := newFixture(t, nil)
	hc := f.browser()
	f.loginAs(hc, citizen())

	t.Run("pkce missing", func(t *testing.T) {
		p := defaultParams()
		p.verifier = ""
		loc := f.authorize(hc, p)
		if loc.Query().Get("error") != "invalid_request" || loc.Query().Get("code") != "" {
			t.Errorf("redirect %s, want error=invalid_request", loc)
		}
	})
	t.Run("pkce plain", func(t *testing.T) {
		p := defaultParams()
		p.method = "plain"
		loc := f.authorize(hc, p)
		if loc.Query().Get("error") != "invalid_request" {
			t.Errorf("redirect %s, want error=invalid_request", loc)
		}
	})
	t.Run("pkce wrong verifier", func(t *testing.T) {
		p := defaultParams()
		loc := f.authorize(hc, p)
		resp, tok := f.exchange(hc, "app", loc.Query().Get("code"), appRedirect, randToken(32))
		if resp.StatusCode != http.StatusBadRequest || tok["error"] != "invalid_grant" {
			t.Errorf("wrong verifier: %d %v", resp.StatusCode, tok)
		}
	})
	t.Run("pkce verifier missing at token", func(t *testing.T) {
		p := defaultParams()
		loc := f.authorize(hc, p)
		resp, tok := f.exchange(hc, "app", loc.Query().Get("code"), appRedirect, "")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("no verifier: %d %v", resp.StatusCode, tok)
		}
	})
	for _, ru := range []string{appRedirect + "/", appRedirect + "?x=1", "http://127.0.0.1:2/callback", "http://evil.example/callback"} {
		t.Run("redirect_uri "+ru, func(t *testing.T) {
			p := defaultParams()
			p.redirect = ru
			resp := f.get(hc, f.authorizeURL(p))
			b := body(t, resp)
			if resp.StatusCode < 400 || strings.Contains(resp.Header.Get("Location"), "127.0.0.1:2") || strings.Contains(resp.Header.Get("Location"), "evil") {
				t.Errorf("status %d location %q: %s", resp.StatusCode, resp.Header.Get("Location"), b)
			}
		})
	}
	t.Run("redirect_uri differs at token", func(t *testing.T) {
		p := defaultParams()
		loc := f.authorize(hc, p)
		resp, tok := f.exchange(hc, "app", loc.Query().Get("code"), appRedirect+"/x", p.verifier)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%d %v", resp.StatusCode, tok)
		}
	})
	t.Run("code reuse revokes the grant", func(t *testing.T) {
		p := defaultParams()
		loc := f.authorize(hc, p)
		code := loc.Query().Get("code")
		resp, tok := f.exchange(hc, "app", code, appRedirect, p.verifier)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("first exchange: %d %v", resp.StatusCode, tok)
		}
		resp2, tok2 := f.exchange(hc, "app", code, appRedirect, p.verifier)
		if resp2.StatusCode != http.StatusBadRequest || tok2["error"] != "invalid_grant" {
			t.Errorf("reuse: %d %v", resp2.StatusCode, tok2)
		}
		if _, err := f.b.AuthenticateBearer(context.Background(), "Bearer "+tok["access_token"].(string), RequestMeta{}); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("access token from a reused code still works: %v", err)
		}
		resp3, tok3 := f.postForm(hc, f.base+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}}, "app", appSecret)
		if resp3.StatusCode == http.StatusOK {
			t.Errorf("refresh token from a reused code still works: %v", tok3)
		}
	})
	t.Run("code of another client", func(t *testing.T) {
		p := defaultParams()
		loc := f.authorize(hc, p)
		resp, tok := f.exchange(hc, "other", loc.Query().Get("code"), appRedirect, p.verifier)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%d %v", resp.StatusCode, tok)
		}
	})
	t.Run("callback from another browser", func(t *testing.T) {
		p := defaultParams()
		resp := f.get(hc, f.authorizeURL(p))
		resp.Body.Close()
		// the victim's browser completed the request; the attacker replays the callback
		other := f.browser()
		f.loginAs(other, &session{Kind: KindClient, Subject: "Patient/p2", Level: LevelMidden})
		loc := resp.Request.URL // the last URL the browser was at is the callback or the app
		_ = loc
		var id string
		_ = f.recs.ListRecords(context.Background(), kindAuthReq, "", func(r *storage.Record) error { id = r.Key; return nil })
		resp2 := f.get(other, f.base+"/oauth/authorize/callback?id="+url.QueryEscape(id))
		if resp2.StatusCode != http.StatusForbidden && resp2.StatusCode != http.StatusBadRequest {
			t.Errorf("callback from another browser: %d", resp2.StatusCode)
		}
		resp2.Body.Close()
	})
	t.Run("aud not this server", func(t *testing.T) {
		p := defaultParams()
		p.extra = url.Values{"aud": {"https://evil.example/fhir"}}
		resp := f.get(hc, f.authorizeURL(p))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d", resp.StatusCode)
		}
		resp.Body.Close()
	})
}

func TestRefreshRotationAndReuse(t *testing.T) {
	f := newFixture(t, nil)
	hc := f.browser()
	f.loginAs(hc, citizen())
	tok := f.codeLogin(hc, defaultParams())
	refresh := func(rt string) (*http.Response, map[string]any) {
		return f.postForm(hc, f.base+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "app", appSecret)
	}
	rt1 := tok["refresh_token"].(string)
	resp, tok2 := refresh(rt1)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %v", resp.StatusCode, tok2)
	}
	rt2 := tok2["refresh_token"].(string)
	if rt2 == rt1 {
		t.Fatal("refresh token not rotated")
	}
	if tok2["patient"] != "p1" {
		t.Errorf("refresh answer lacks launch patient: %v", tok2)
	}
	// other client cannot use it
	resp, _ = f.postForm(hc, f.base+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}}, "other", appSecret)
	if resp.StatusCode == http.StatusOK {
		t.Error("another client redeemed the refresh token")
	}
	// reuse of rt1 revokes the family: rt2 and its access token die too
	resp, m := refresh(rt1)
	if resp.StatusCode != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("reuse: %d %v", resp.StatusCode, m)
	}
	if resp, m := refresh(rt2); resp.StatusCode == http.StatusOK {
		t.Errorf("rt2 still works after reuse of rt1: %v", m)
	}
	if _, err := f.b.AuthenticateBearer(context.Background(), "Bearer "+tok2["access_token"].(string), RequestMeta{}); err == nil {
		t.Error("access token of a revoked family still works")
	}
	if len(f.audit.find("token-failed", "failure")) == 0 {
		t.Error("refresh reuse not audited")
	}
}

func TestBearerAttacks(t *testing.T) {
	f := newFixture(t, nil)
	hc := f.browser()
	f.loginAs(hc, citizen())
	tok := f.codeLogin(hc, defaultParams())
	at := tok["access_token"].(string)
	ctx := context.Background()
	parts := strings.Split(at, ".")

	sign := func(claims map[string]any, key any, alg jose.SignatureAlgorithm, kid string) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", kid).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		pl, _ := json.Marshal(claims)
		o, err := s.Sign(pl)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := o.CompactSerialize()
		return c
	}
	claims := jwtPayload(at)
	sk, _ := f.b.keys.SigningKey(ctx)
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for kk, vv := range claims {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	hs := sign(claims, []byte("0123456789abcdef0123456789abcdef"), jose.HS256, sk.ID())
	cases := map[string]string{
		"no scheme":        at,
		"basic":            "Basic " + at,
		"empty":            "Bearer ",
		"alg none":         "Bearer " + none,
		"hmac with kid":    "Bearer " + hs,
		"tampered payload": "Bearer " + parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + "." + parts[2],
		"wrong issuer":     "Bearer " + sign(with("iss", "https://evil.example"), sk.Key(), jose.RS256, sk.ID()),
		"wrong audience":   "Bearer " + sign(with("aud", []string{"app"}), sk.Key(), jose.RS256, sk.ID()),
		"expired":          "Bearer " + sign(with("exp", time.Now().Add(-time.Minute).Unix()), sk.Key(), jose.RS256, sk.ID()),
		"unknown jti":      "Bearer " + sign(with("jti", "nope.nope"), sk.Key(), jose.RS256, sk.ID()),
		"other subject":    "Bearer " + sign(with("sub", "someone-else"), sk.Key(), jose.RS256, sk.ID()),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := f.b.AuthenticateBearer(ctx, h, RequestMeta{})
			var be *BearerError
			if !errors.Is(err, ErrUnauthenticated) || !errors.As(err, &be) {
				t.Fatalf("err = %v", err)
			}
			if !strings.HasPrefix(be.WWWAuthenticate(), "Bearer realm=") {
				t.Errorf("challenge %q", be.WWWAuthenticate())
			}
			if name != "no scheme" && name != "basic" && name != "empty" && !strings.Contains(be.WWWAuthenticate(), `error="invalid_token"`) {
				t.Errorf("challenge %q lacks invalid_token", be.WWWAuthenticate())
			}
		})
	}
	// a valid re-signed token with all original claims still works (the harness is right)
	if _, err := f.b.AuthenticateBearer(ctx, "Bearer "+sign(claims, sk.Key(), jose.RS256, sk.ID()), RequestMeta{}); err != nil {
		t.Errorf("control: %v", err)
	}
	// expiry by the broker's clock
	f.clock.Advance(11 * time.Minute)
	if _, err := f.b.AuthenticateBearer(ctx, "Bearer "+at, RequestMeta{}); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("expired token accepted: %v", err)
	}
}

func TestIntrospectionAndRevocation(t *testing.T) {
	f := newFixture(t, nil)
	hc := f.browser()
	f.loginAs(hc, citizen())
	tok := f.codeLogin(hc, defaultParams())
	at := tok["access_token"].(string)
	introspect := func() map[string]any {
		_, m := f.postForm(hc, f.base+"/oauth/introspect", url.Values{"token": {at}}, "rs", appSecret)
		return m
	}
	m := introspect()
	if m["active"] != true || m["client_id"] != "app" || m["fhirUser"] != f.base+"/fhir/Patient/p1" || m["patient"] != "p1" || m["acr"] != ACRSubstantieel {
		t.Errorf("introspection = %v", m)
	}
	// unauthenticated introspection is refused
	resp, _ := f.postForm(hc, f.base+"/oauth/introspect", url.Values{"token": {at}}, "", "")
	if resp.StatusCode == http.StatusOK {
		t.Error("introspection without client authentication answered 200")
	}
	// revocation by another client does nothing, by the owner revokes
	_, _ = f.postForm(hc, f.base+"/oauth/revoke", url.Values{"token": {at}, "token_type_hint": {"access_token"}}, "other", appSecret)
	if introspect()["active"] != true {
		t.Error("another client revoked the token")
	}
	resp, m2 := f.postForm(hc, f.base+"/oauth/revoke", url.Values{"token": {at}, "token_type_hint": {"access_token"}}, "app", appSecret)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %v", resp.StatusCode, m2)
	}
	if introspect()["active"] != false {
		t.Error("revoked token still active")
	}
	if _, err := f.b.AuthenticateBearer(context.Background(), "Bearer "+at, RequestMeta{}); err == nil {
		t.Error("revoked token authenticates")
	}
	// revoking a refresh token revokes the grant
	rt := tok["refresh_token"].(string)
	_, _ = f.postForm(hc, f.base+"/oauth/revoke", url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}}, "app", appSecret)
	resp, _ = f.postForm(hc, f.base+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "app", appSecret)
	if resp.StatusCode == http.StatusOK {
		t.Error("revoked refresh token works")
	}
}

func TestKeyRotation(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Tokens.KeyRotation = time.Hour })
	ctx := context.Background()
	// start two minutes before a period boundary
	boundary := f.clock.Now().Truncate(time.Hour).Add(time.Hour)
	f.clock.t = boundary.Add(-2 * time.Minute)
	hc := f.browser()
	f.loginAs(hc, citizen())
	k1, _ := f.b.keys.SigningKey(ctx)
	tok := f.codeLogin(hc, defaultParams())
	f.clock.Advance(3 * time.Minute)
	k2, _ := f.b.keys.SigningKey(ctx)
	if k1.ID() == k2.ID() {
		t.Fatal("key did not rotate")
	}
	set, _ := f.b.keys.KeySet(ctx)
	var kids []string
	for _, k := range set {
		kids = append(kids, k.ID())
	}
	if !slices.Contains(kids, k1.ID()) || !slices.Contains(kids, k2.ID()) {
		t.Errorf("key set %v lacks the old or new key", kids)
	}
	// a token signed by the old key still verifies while it lives
	if _, err := f.b.AuthenticateBearer(ctx, "Bearer "+tok["access_token"].(string), RequestMeta{}); err != nil {
		t.Errorf("old-key token: %v", err)
	}
	// long after, the old key is gone (its record expired)
	f.clock.Advance(5 * time.Hour)
	set, _ = f.b.keys.KeySet(ctx)
	for _, k := range set {
		if k.ID() == k1.ID() {
			t.Error("old key still published long after its tokens expired")
		}
	}
	// the key survives a restart: a new broker on the same records signs with the same key
	b2, err := New(ctx, f.b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	k3, _ := b2.keys.SigningKey(ctx)
	k4, _ := f.b.keys.SigningKey(ctx)
	if k3.ID() != k4.ID() || !k3.Key().(*rsa.PrivateKey).Equal(k4.Key()) {
		t.Error("a second instance does not share the signing key")
	}
}

func TestEndSession(t *testing.T) {
	f := newFixture(t, nil)
	hc := f.browser()
	sess := f.loginAs(hc, citizen())
	tok := f.codeLogin(hc, defaultParams())
	q := url.Values{"id_token_hint": {tok["id_token"].(string)}, "post_logout_redirect_uri": {"http://127.0.0.1:1/bye"}, "state": {"s1"}}
	resp := f.get(hc, f.base+"/oauth/end_session?"+q.Encode())
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "http://127.0.0.1:1/bye") || !strings.Contains(loc, "state=s1") {
		t.Errorf("end_session redirect %q (status %d)", loc, resp.StatusCode)
	}
	if _, _, err := f.b.loadSession(context.Background(), sess.key()+".x"); err == nil {
		t.Error("forged cookie accepted")
	}
	ev := f.audit.find("logout", "success")
	if len(ev) != 1 || ev[0].SessionID != sess.ID {
		t.Errorf("logout audit = %+v", ev)
	}
	// the session is gone: a new authorization shows the login page
	resp = f.get(hc, f.authorizeURL(defaultParams()))
	b := body(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(b, "Inloggen") {
		t.Errorf("after logout: %d", resp.StatusCode)
	}
	// a disallowed post_logout_redirect_uri is refused
	q.Set("post_logout_redirect_uri", "https://evil.example/")
	resp = f.get(hc, f.base+"/oauth/end_session?"+q.Encode())
	resp.Body.Close()
	if strings.Contains(resp.Header.Get("Location"), "evil") {
		t.Error("redirected to an unregistered post-logout URI")
	}
}

func TestLogoutRevokesTokens(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	hc := f.browser()
	f.loginAs(hc, citizen())
	tok := f.codeLogin(hc, defaultParams())
	other := f.browser()
	f.loginAs(other, &session{Kind: KindClient, Subject: "Patient/p9", Account: "acct-x", Level: LevelMidden})
	tokOther := f.codeLogin(other, defaultParams())
	// log out in the browser: the app's tokens from that session die, others live
	resp, _ := f.submit(hc, f.base+"/login/logout", url.Values{"csrf": {f.b.CSRFToken(f.sessionCookie(hc))}})
	resp.Body.Close()
	if _, err := f.b.AuthenticateBearer(ctx, "Bearer "+tok["access_token"].(string), RequestMeta{}); err == nil {
		t.Error("access token survived logout")
	}
	if r, _ := f.postForm(hc, f.base+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}}, "app", appSecret); r.StatusCode == http.StatusOK {
		t.Error("refresh token survived logout")
	}
	if _, err := f.b.AuthenticateBearer(ctx, "Bearer "+tokOther["access_token"].(string), RequestMeta{}); err != nil {
		t.Errorf("another person's token died: %v", err)
	}
}

func TestTokenEndpointRateLimit(t *testing.T) {
	f := newFixture(t, nil)
	var last int
	for i := 0; i < 305; i++ {
		resp, _ := f.postForm(http.DefaultClient, f.base+"/oauth/token", url.Values{"grant_type": {"client_credentials"}}, "app", "wrong-"+fmt.Sprint(i))
		last = resp.StatusCode
	}
	if last != http.StatusTooManyRequests {
		t.Errorf("301st guess of a client secret: %d", last)
	}
}
