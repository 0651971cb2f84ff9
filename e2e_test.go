package regie

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"regie/auth"
)

const e2eClient, e2eRedirect = "e2e-portal", "http://127.0.0.1:9/callback"

var simPersonID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// codeFlow logs a citizen in through the whole chain, as a browser would:
// app → Regie's OpenID Provider (served by the Fiber server) → the DigiD
// simulator (a separate OpenID Provider) → Regie → app, then redeems the
// code with PKCE. It returns the access token.
func codeFlow(t *testing.T, base string, person int) (string, error) {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), e2eRedirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	vb := make([]byte, 32)
	rand.Read(vb)
	verifier := base64.RawURLEncoding.EncodeToString(vb)
	sum := sha256.Sum256([]byte(verifier))
	state := base64.RawURLEncoding.EncodeToString(vb[:9])
	q := url.Values{"client_id": {e2eClient}, "redirect_uri": {e2eRedirect}, "response_type": {"code"},
		"scope": {"openid fhirUser launch/patient patient/*.rs"}, "state": {state}, "nonce": {state + "n"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	resp, err := hc.Get(base + "/oauth/authorize?" + q.Encode())
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	id := resp.Request.URL.Query().Get("authRequestID")
	if id == "" {
		return "", fmt.Errorf("not at the login page: %s", resp.Request.URL)
	}
	page, err := hc.Get(base + "/login/provider/" + auth.DevDigiDProvider + "?authRequestID=" + url.QueryEscape(id))
	if err != nil {
		return "", err
	}
	b, _ := io.ReadAll(page.Body)
	page.Body.Close()
	m := simPersonID.FindSubmatch(b)
	if m == nil {
		text := regexp.MustCompile(`(?s)<style.*?</style>|<[^>]+>`).ReplaceAllString(string(b), " ")
		return "", fmt.Errorf("not the simulator page (%d): %s", page.StatusCode, strings.Join(strings.Fields(text), " "))
	}
	action := page.Request.URL.Scheme + "://" + page.Request.URL.Host + strings.TrimSuffix(page.Request.URL.Path, "/login") + "/login"
	resp, err = hc.PostForm(action, url.Values{"id": {string(m[1])}, "person": {fmt.Sprint(person)}, "acr": {auth.ACRSubstantieel}})
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil || loc.Query().Get("code") == "" {
		return "", fmt.Errorf("no code at the app: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if loc.Query().Get("state") != state {
		return "", fmt.Errorf("state %q, want %q", loc.Query().Get("state"), state)
	}
	resp, err = hc.PostForm(base+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {e2eRedirect}, "client_id": {e2eClient}, "code_verifier": {verifier}})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		Patient     string `json:"patient"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("token: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken, nil
}

// TestLoginThroughTheServer runs concurrent DigiD logins with
// authorization code + PKCE through the Fiber server (whose adapter copies
// every request value, since fasthttp reuses request memory), then reads
// the citizen's dossier with the token.
func TestLoginThroughTheServer(t *testing.T) {
	p := newParts(t)
	s := startStackWith(t, p, t.TempDir(), []auth.ClientConfig{{ID: e2eClient, AuthMethod: "none", RedirectURIs: []string{e2eRedirect},
		Scopes: []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"}}})
	defer s.close()
	s.loadDemo(t, p)
	const n = 8
	var wg sync.WaitGroup
	tokens := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tokens[i], errs[i] = codeFlow(t, s.base, 0) // Anna de Vries, the first citizen
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	for _, tok := range tokens {
		if st := s.request(t, tok, "GET", "/Patient/anna-de-vries", ""); st != 200 {
			t.Errorf("reading her own record with the login's token: %d", st)
		}
		if st := s.request(t, tok, "GET", "/Patient/johan-mulder", ""); st != 404 {
			t.Errorf("reading someone else's record: %d, want 404", st)
		}
		if st := s.request(t, tok, "POST", "/Goal", `{"resourceType":"Goal","lifecycleStatus":"proposed","description":{"text":"x"},"subject":{"reference":"Patient/anna-de-vries"},"expressedBy":{"reference":"Patient/anna-de-vries"}}`); st != 403 {
			t.Errorf("writing with a read-only scope: %d, want 403", st)
		}
	}
	logins := 0
	for _, ev := range s.chainEvents(t) {
		if typ, subs := codes(ev); typ == "110114" && len(subs) == 1 && subs[0] == "110122" && sval(ev["outcome"]) == "0" {
			logins++
		}
	}
	if logins != n {
		t.Errorf("%d login AuditEvents, want %d", logins, n)
	}
}

// TestBackendServicesReadTheAPI: an EHR system registered as a SMART
// Backend Services client signs its own assertion (ES384), obtains a token
// with client_credentials and reads and writes through the FHIR API, limited
// to its organisation's dossiers.
func TestBackendServicesReadTheAPI(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "ehr-k1", Algorithm: "ES384", Use: "sig"}}})
	p := newParts(t)
	s := startStackWith(t, p, t.TempDir(), []auth.ClientConfig{{ID: "ehr-jeugd", AuthMethod: "private_key_jwt", JWKS: jwks,
		Scopes: []string{"system/*.rs", "system/Observation.c"}, GrantTypes: []string{"client_credentials"},
		Subject: "Device/ehr-jeugd", Organization: "Organization/jeugdteam-rivierstad"}})
	defer s.close()
	s.loadDemo(t, p)

	sign := func() string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "ehr-k1").WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		jb := make([]byte, 12)
		rand.Read(jb)
		claims, _ := json.Marshal(map[string]any{"iss": "ehr-jeugd", "sub": "ehr-jeugd", "aud": s.base + "/oauth/token",
			"exp": time.Now().Add(4 * time.Minute).Unix(), "jti": base64.RawURLEncoding.EncodeToString(jb)})
		o, err := signer.Sign(claims)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := o.CompactSerialize()
		return c
	}
	tokenFor := func(assertion, scope string) (int, string) {
		resp, err := http.PostForm(s.base+"/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&tok)
		return resp.StatusCode, tok.AccessToken
	}
	a := sign()
	status, token := tokenFor(a, "system/*.rs system/Observation.c")
	if status != 200 || token == "" {
		t.Fatalf("token: %d", status)
	}
	if st, _ := tokenFor(a, "system/*.rs"); st == 200 {
		t.Error("a replayed assertion (same jti) got a token")
	}
	cases := []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/Patient/sara-el-amrani", "", 200},                                                 // its organisation's client
		{"GET", "/CarePlan/sara-plan", "", 200},                                                     // in that dossier
		{"GET", "/Patient/anna-de-vries", "", 404},                                                  // another organisation's client
		{"GET", "/Communication?patient=Patient/sara-el-amrani", "", 403},                           // messages: never for systems
		{"PUT", "/Patient/sara-el-amrani", `{"resourceType":"Patient","id":"sara-el-amrani"}`, 403}, // scope has no update
		{"POST", "/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"schoolverzuim"},"subject":{"reference":"Patient/sara-el-amrani"}}`, 201},
	}
	for _, c := range cases {
		if got := s.request(t, token, c.method, c.path, c.body); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, got, c.want)
		}
	}
}

// TestDossierNeedsMidden: a citizen logged in at DigiD level Basis may use
// the directory but must step up to Midden to read their dossier.
func TestDossierNeedsMidden(t *testing.T) {
	p := newParts(t)
	s := startStack(t, p, t.TempDir())
	defer s.close()
	s.loadDemo(t, p)
	get := func(acr, path string) (int, string) {
		resp, err := http.PostForm(s.base+"/dev/token", url.Values{"subject": {"Patient/anna-de-vries"}, "acr": {acr}})
		if err != nil {
			t.Fatal(err)
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&tok)
		resp.Body.Close()
		req, _ := http.NewRequest("GET", s.base+"/fhir"+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode, r.Header.Get("WWW-Authenticate")
	}
	if st, wa := get("basis", "/Patient/anna-de-vries"); st != 403 || !strings.Contains(wa, "insufficient_user_authentication") {
		t.Errorf("Basis reads the dossier: %d %q", st, wa)
	}
	if st, _ := get("basis", "/Practitioner/coach-sanne"); st != 200 {
		t.Errorf("Basis reads the directory: %d", st)
	}
	if st, _ := get("midden", "/Patient/anna-de-vries"); st != 200 {
		t.Errorf("Midden reads the dossier: %d", st)
	}
}
