package regie

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"regie/auth"
	"regie/auth/policy"
	"regie/fhir"
	"regie/fhir/search"
	"regie/profiles"
	"regie/server"
	"regie/server/engine"
	"regie/storage/embedded"
)

// shared parts of every stack: built once, immutable.
type parts struct {
	defs   *fhir.Definitions
	val    *fhir.Validator
	idx    *search.Indexer
	parser *search.Parser
}

const testBase = "http://127.0.0.1"

// stack is a whole Regie (store, policy, engine, identity broker, server)
// listening on 127.0.0.1.
type stack struct {
	base   string
	eng    *engine.Engine
	store  *embedded.Store
	srv    *server.Server
	broker *auth.Broker
	cancel context.CancelFunc
}

// ehrClient is a system client bound to an organisation.
const ehrClient, ehrSecret = "ehr-wijkteam-noord", "ehr-wijkteam-noord-secret-for-tests"

func newParts(t testing.TB) *parts {
	t.Helper()
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		t.Fatal(err)
	}
	val, err := fhir.NewValidator(defs)
	if err != nil {
		t.Fatal(err)
	}
	return &parts{defs: defs, val: val}
}

// startStack opens the store in dir and serves a full Regie on it.
func startStack(t testing.TB, p *parts, dir string) *stack {
	t.Helper()
	return startStackWith(t, p, dir, nil)
}

// startStackWith is startStack with extra OAuth clients.
func startStackWith(t testing.TB, p *parts, dir string, clients []auth.ClientConfig) *stack {
	t.Helper()
	return startStackAudit(t, p, dir, clients, true)
}

// startStackAudit is startStackWith that can leave out the AuditEvents
// (only to measure what they cost: Regie always audits).
func startStackAudit(t testing.TB, p *parts, dir string, clients []auth.ClientConfig, audit bool) *stack {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	if p.idx == nil {
		// absolute references under the base are local: the base must be
		// known, and every stack of one test shares it through the parts
		p.idx, err = search.NewIndexer(p.defs, search.IndexerConfig{BaseURL: testBase + "/fhir"})
		if err != nil {
			t.Fatal(err)
		}
		p.parser = search.NewParser(p.defs, search.Config{BaseURL: testBase + "/fhir"})
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := embedded.Open(dir, &embedded.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(policy.Config{Definitions: p.defs, Source: st, Records: st, Parser: p.parser})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Config{Definitions: p.defs, Validator: p.val, Store: st, Indexer: p.idx, Parser: p.parser, Policy: pol, Audit: audit})
	if err != nil {
		t.Fatal(err)
	}
	citizens, staff, err := DemoPeople()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	broker, err := auth.New(ctx, auth.Config{
		BaseURL: base, Dev: true, Records: st, Directory: eng.Directory(), Auditor: eng, Logger: log,
		DevCitizens: citizens, DevStaff: staff,
		Clients: append([]auth.ClientConfig{{ID: ehrClient, Secret: ehrSecret, AuthMethod: "client_secret_basic",
			Scopes: []string{"system/*.cruds"}, GrantTypes: []string{"client_credentials"},
			Subject: "Device/" + ehrClient, Organization: "Organization/wijkteam-noord"}}, clients...),
	})
	if err != nil {
		t.Fatal(err)
	}
	eng.SetNotifier(&engine.MailNotifier{Engine: eng, Mailer: broker.Mailer()})
	srv, err := server.New(server.Config{BaseURL: base, Logger: log, Identity: broker.Handler(), Authenticator: broker,
		SMARTConfiguration: broker.SMARTConfiguration(), Dev: true}, eng)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	s := &stack{base: base, eng: eng, store: st, srv: srv, broker: broker, cancel: cancel}
	return s
}

func (s *stack) close() {
	s.srv.Shutdown(context.Background())
	s.cancel()
	s.broker.Close()
	s.store.Close()
}

// loadDemo writes the demo into the stack's store as the admin would.
func (s *stack) loadDemo(t testing.TB, p *parts) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol, err := policy.New(policy.Config{Definitions: p.defs, Source: s.store, Records: s.store, Parser: p.parser})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Config{Definitions: p.defs, Validator: p.val, Store: s.store, Indexer: p.idx, Parser: p.parser, Policy: pol, Audit: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := auth.WithPrincipal(context.Background(), &auth.Principal{Kind: auth.KindSystem, Subject: "Device/regie-demo", Scopes: []string{"system/*.cruds"}})
	if _, err := LoadDemo(ctx, eng, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// token gets an access token for a matrix principal.
func (s *stack) token(t testing.TB, r *matrixRow) string {
	t.Helper()
	pr := r.Principal
	var req *http.Request
	if pr.Subject == "system" {
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.cruds"}}
		if pr.Scopes != "" {
			form.Set("scope", pr.Scopes)
		}
		req, _ = http.NewRequest("POST", s.base+"/oauth/token", strings.NewReader(form.Encode()))
		if pr.Organization == "Organization/wijkteam-noord" {
			req.SetBasicAuth(ehrClient, ehrSecret)
		} else {
			req.SetBasicAuth(auth.DevClientID, auth.DevClientSecret)
		}
	} else {
		form := url.Values{"subject": {pr.Subject}}
		if pr.ActingFor != "" {
			form.Set("acting_for", pr.ActingFor)
		}
		if pr.SecondFactorAgeSeconds != nil {
			form.Set("second_factor_age", fmt.Sprint(*pr.SecondFactorAgeSeconds))
		}
		if pr.Scopes != "" {
			form.Set("scope", pr.Scopes)
		}
		req, _ = http.NewRequest("POST", s.base+"/dev/token", strings.NewReader(form.Encode()))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token for %s: %d %s", pr.Subject, resp.StatusCode, b)
	}
	return tok.AccessToken
}

// encodePath percent-encodes the query of a matrix path, which is written
// unencoded, and shifts its dates like the demo's.
func encodePath(p string) string {
	path, rawQuery, ok := strings.Cut(p, "?")
	if !ok {
		return p
	}
	var parts []string
	for _, kv := range strings.Split(rawQuery, "&") {
		k, v, _ := strings.Cut(kv, "=")
		parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(v))
	}
	return path + "?" + strings.Join(parts, "&")
}

// mutates reports whether a row changes the store (it then gets a store of
// its own).
func (r *matrixRow) mutates() bool {
	return r.Request.Method != "GET" || r.Request.Headers["X-Regie-Break-Glass"] != ""
}

// run performs the row's request and checks the answer.
func (s *stack) run(t *testing.T, r *matrixRow) {
	t.Helper()
	tok := s.token(t, r)
	var body io.Reader
	if len(r.Request.Body) > 0 {
		b, err := ShiftDemoDates(r.Request.Body, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(r.Request.Method, s.base+"/fhir"+encodePath(r.Request.Path), body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for k, v := range r.Request.Headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != r.Expect.Status {
		t.Fatalf("rule %d: %s %s as %s (acting for %q): status %d, want %d\n%s", r.Rule, r.Request.Method, r.Request.Path,
			r.Principal.Subject, r.Principal.ActingFor, resp.StatusCode, r.Expect.Status, abbreviate(b))
	}
	if len(r.Expect.Include) == 0 && len(r.Expect.Exclude) == 0 && r.Expect.Total == nil {
		return
	}
	got, total := returned(b)
	for _, ref := range r.Expect.Include {
		if !got[ref] {
			t.Errorf("rule %d: %s is missing from the answer (got %v)", r.Rule, ref, keys(got))
		}
	}
	for _, ref := range r.Expect.Exclude {
		if got[ref] {
			t.Errorf("rule %d: LEAK: %s is in the answer", r.Rule, ref)
		}
	}
	if r.Expect.Total != nil && (total == nil || *total != *r.Expect.Total) {
		t.Errorf("rule %d: total %v, want %d", r.Rule, total, *r.Expect.Total)
	}
}

// returned lists the resources an answer contains ("Type/id"): a resource,
// or a Bundle's entries (nested Bundles included), and a searchset's total.
func returned(b []byte) (map[string]bool, *int) {
	got := map[string]bool{}
	var doc struct {
		ResourceType string            `json:"resourceType"`
		ID           string            `json:"id"`
		Total        *int              `json:"total"`
		Entry        []json.RawMessage `json:"entry"`
	}
	if json.Unmarshal(b, &doc) != nil {
		return got, nil
	}
	if doc.ResourceType != "Bundle" {
		got[doc.ResourceType+"/"+doc.ID] = true
		return got, nil
	}
	for _, e := range doc.Entry {
		var en struct {
			Resource json.RawMessage `json:"resource"`
		}
		if json.Unmarshal(e, &en) == nil && len(en.Resource) > 0 {
			inner, _ := returned(en.Resource)
			for k := range inner {
				got[k] = true
			}
		}
	}
	return got, doc.Total
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func abbreviate(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return string(b)
}

// copyDir copies a closed store's directory.
func copyDir(t testing.TB, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, filepath.Base(p)), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAccessMatrix runs every row of the declarative access matrix over the
// demo dossiers, through the real API with real tokens: every allowed cell
// must work, every denied cell must be denied, and no search, include, page
// or total may contain a resource the row excludes.
func TestAccessMatrix(t *testing.T) {
	rows := loadMatrix(t)
	p := newParts(t)
	tmpl := t.TempDir()
	s := startStack(t, p, tmpl)
	s.loadDemo(t, p)
	s.close()

	readDir := t.TempDir()
	copyDir(t, tmpl, readDir)
	shared := startStack(t, p, readDir)
	defer shared.close()

	var mu sync.Mutex
	failed := map[int]int{}
	for i := range rows {
		r := &rows[i]
		ok := t.Run(fmt.Sprintf("%03d %s", i, r.Name), func(t *testing.T) {
			st := shared
			if r.mutates() {
				dir := t.TempDir()
				copyDir(t, tmpl, dir)
				st = startStack(t, p, dir)
				defer st.close()
			}
			st.run(t, r)
		})
		if !ok {
			mu.Lock()
			failed[r.Rule]++
			mu.Unlock()
		}
	}
	t.Logf("access matrix: %d rows, failures by rule: %v", len(rows), failed)
}
