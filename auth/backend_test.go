package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// assertion signs a SMART Backend Services client assertion as a client
// library would.
func assertion(t *testing.T, key any, alg jose.SignatureAlgorithm, kid string, claims map[string]any) string {
	t.Helper()
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

func (f *fixture) backendClaims() map[string]any {
	return map[string]any{"iss": "ehr", "sub": "ehr", "aud": f.base + "/oauth/token",
		"exp": time.Now().Add(4 * time.Minute).Unix(), "jti": randToken(12)}
}

func (f *fixture) backendToken(a, scope string) (*http.Response, map[string]any) {
	return f.postForm(http.DefaultClient, f.base+"/oauth/token", url.Values{
		"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {jwtBearerAssertion}, "client_assertion": {a},
	}, "", "")
}

func TestBackendServices(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	a := assertion(t, f.backend, jose.ES384, "ehr-1", f.backendClaims())
	resp, tok := f.backendToken(a, "system/*.rs system/Observation.cruds system/Patient.cruds")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %v", resp.StatusCode, tok)
	}
	if tok["scope"] != "system/*.rs system/Observation.cruds" {
		t.Errorf("granted scope %q: a scope beyond the registration was granted or a valid one dropped", tok["scope"])
	}
	if ei, _ := tok["expires_in"].(float64); ei > 300 || ei < 200 {
		t.Errorf("expires_in = %v, want ≤ 300", tok["expires_in"])
	}
	p, err := f.b.AuthenticateBearer(ctx, "Bearer "+tok["access_token"].(string), RequestMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != KindSystem || p.Subject != "Device/ehr" || p.Organization != "Organization/zorg" || p.ClientID != "ehr" {
		t.Errorf("principal %+v", p)
	}
	if err := CheckScope(p, "Observation", InteractionCreate); err != nil {
		t.Errorf("system/Observation.cruds does not allow create: %v", err)
	}
	if err := CheckScope(p, "Patient", InteractionCreate); err == nil {
		t.Error("system/*.rs allows create")
	}
	if len(f.audit.find("token", "success")) != 1 {
		t.Error("token issuance not audited")
	}

	// replay of the same assertion (same jti)
	resp, m := f.backendToken(a, "system/*.rs")
	if resp.StatusCode != http.StatusBadRequest || m["error"] != "invalid_client" {
		t.Errorf("replayed jti: %d %v", resp.StatusCode, m)
	}

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherEC, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	mod := func(k string, v any) map[string]any {
		c := f.backendClaims()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	bad := map[string]string{
		"exp too far":         assertion(t, f.backend, jose.ES384, "ehr-1", mod("exp", time.Now().Add(10*time.Minute).Unix())),
		"expired":             assertion(t, f.backend, jose.ES384, "ehr-1", mod("exp", time.Now().Add(-2*time.Minute).Unix())),
		"no exp":              assertion(t, f.backend, jose.ES384, "ehr-1", mod("exp", nil)),
		"no jti":              assertion(t, f.backend, jose.ES384, "ehr-1", mod("jti", nil)),
		"wrong aud":           assertion(t, f.backend, jose.ES384, "ehr-1", mod("aud", f.base)),
		"sub differs":         assertion(t, f.backend, jose.ES384, "ehr-1", mod("sub", "app")),
		"unknown client":      assertion(t, f.backend, jose.ES384, "ehr-1", mod("iss", "nobody")),
		"other key":           assertion(t, otherEC, jose.ES384, "ehr-1", f.backendClaims()),
		"rs256":               assertion(t, rsaKey, jose.RS256, "ehr-1", f.backendClaims()),
		"hs256 with jwk":      assertion(t, []byte("0123456789abcdef0123456789abcdef0123456789abcdef"), jose.HS384, "ehr-1", f.backendClaims()),
		"unknown kid":         assertion(t, f.backend, jose.ES384, "ehr-9", f.backendClaims()),
		"alg none":            "eyJhbGciOiJub25lIn0." + jwtSeg(f.backendClaims()) + ".",
		"not a jwt":           "garbage",
		"secret client (app)": assertion(t, f.backend, jose.ES384, "ehr-1", mod("iss", "app")),
	}
	for name, a := range bad {
		t.Run(name, func(t *testing.T) {
			resp, m := f.backendToken(a, "system/*.rs")
			if resp.StatusCode != http.StatusBadRequest || m["error"] != "invalid_client" {
				t.Errorf("%d %v", resp.StatusCode, m)
			}
		})
	}
	if n := len(f.audit.find("token-failed", "failure")); n < len(bad)+1 {
		t.Errorf("%d failed token requests audited, want %d", n, len(bad)+1)
	}
	t.Run("scope outside registration", func(t *testing.T) {
		resp, m := f.backendToken(assertion(t, f.backend, jose.ES384, "ehr-1", f.backendClaims()), "system/Patient.cruds")
		if resp.StatusCode != http.StatusBadRequest || m["error"] != "invalid_scope" {
			t.Errorf("%d %v", resp.StatusCode, m)
		}
	})
}

func jwtSeg(v any) string {
	b, _ := json.Marshal(v)
	return b64(b)
}

func TestDevTokenAndDevClient(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Dev = true })
	ctx := context.Background()
	resp, m := f.postForm(http.DefaultClient, f.base+"/dev/token", url.Values{"subject": {"RelatedPerson/r1"}, "acr": {"hoog"}, "acting_for": {"Patient/child"}}, "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/dev/token: %d %v", resp.StatusCode, m)
	}
	p, err := f.b.AuthenticateBearer(ctx, "Bearer "+m["access_token"].(string), RequestMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != KindRelated || p.Subject != "RelatedPerson/r1" || p.ActingFor != "Patient/child" || p.Level != LevelHoog || p.Patient != "Patient/child" {
		t.Errorf("principal %+v", p)
	}
	for _, bad := range []url.Values{{"subject": {"Organization/x"}}, {"subject": {"Patient/"}}, {"subject": {"Patient/a"}, "acr": {"super"}}, {"subject": {"Patient/a"}, "acting_for": {"Practitioner/x"}}} {
		if resp, m := f.postForm(http.DefaultClient, f.base+"/dev/token", bad, "", ""); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%v: %d %v", bad, resp.StatusCode, m)
		}
	}
	resp, m = f.postForm(http.DefaultClient, f.base+"/dev/token", url.Values{"subject": {"Practitioner/c1"}, "second_factor": {"1"}}, "", "")
	p, err = f.b.AuthenticateBearer(ctx, "Bearer "+m["access_token"].(string), RequestMeta{})
	if err != nil || p.Kind != KindProfessional || p.Level != LevelMidden || p.SecondFactorTime.IsZero() || !slices.Contains(p.Scopes, "user/*.cruds") {
		t.Errorf("practitioner principal %+v %v", p, err)
	}
	// regie-dev: client_credentials with client_secret_basic
	resp, m = f.postForm(http.DefaultClient, f.base+"/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.cruds"}}, DevClientID, DevClientSecret)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("regie-dev: %d %v", resp.StatusCode, m)
	}
	p, err = f.b.AuthenticateBearer(ctx, "Bearer "+m["access_token"].(string), RequestMeta{})
	if err != nil || p.Kind != KindSystem || CheckScope(p, "Patient", InteractionDelete) != nil {
		t.Errorf("regie-dev principal %+v %v", p, err)
	}
	resp, _ = f.postForm(http.DefaultClient, f.base+"/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.cruds"}}, DevClientID, "wrong-secret")
	if resp.StatusCode == http.StatusOK {
		t.Error("regie-dev with a wrong secret got a token")
	}
	resp = f.get(http.DefaultClient, f.base+"/dev/outbox")
	if b := body(t, resp); resp.StatusCode != http.StatusOK || !contains(b, "ONTWIKKELOMGEVING") {
		t.Errorf("outbox: %d", resp.StatusCode)
	}
}

func TestNoDevWithoutDevMode(t *testing.T) {
	f := newFixture(t, nil)
	for _, u := range []string{"/dev/token", "/dev/outbox", "/dev/digid/.well-known/openid-configuration", "/dev/municipality/.well-known/openid-configuration"} {
		resp, _ := f.postForm(http.DefaultClient, f.base+u, url.Values{"subject": {"Patient/a"}}, "", "")
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %d without dev mode", u, resp.StatusCode)
		}
		r := f.get(http.DefaultClient, f.base+u)
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound && r.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: %d without dev mode", u, r.StatusCode)
		}
	}
	resp, _ := f.postForm(http.DefaultClient, f.base+"/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.cruds"}}, DevClientID, DevClientSecret)
	if resp.StatusCode == http.StatusOK {
		t.Error("regie-dev works without dev mode")
	}
}
