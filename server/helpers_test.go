package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"regie/fhir"
	"regie/fhir/search"
	"regie/profiles"
	"regie/server"
	"regie/server/engine"
	"regie/storage"
	"regie/storage/embedded"
)

// env is a server on a real embedded store, driven through app.Test.
type env struct {
	t     *testing.T
	srv   *server.Server
	store storage.Store
	defs  *fhir.Definitions
}

type envOption func(*server.Config, *engine.Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		t.Fatal(err)
	}
	val, err := fhir.NewValidator(defs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	idx, err := search.NewIndexer(defs, search.IndexerConfig{BaseURL: "http://regie.test/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	ecfg := engine.Config{Definitions: defs, Validator: val, Store: st, Indexer: idx}
	scfg := server.Config{BaseURL: "http://regie.test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&scfg, &ecfg)
	}
	eng, err := engine.New(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(scfg, eng)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, store: ecfg.Store, defs: defs}
}

// response is a recorded answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON (%v): %s", err, r.body)
	}
	return m
}

// do sends a request; headers are "Name: value" strings.
func (e *env) do(method, target string, body string, headers ...string) *response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	res, err := e.srv.App().Test(req, -1)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return &response{status: res.StatusCode, header: res.Header, body: b}
}

// expect fails the test unless r has the status.
func (r *response) expect(t *testing.T, status int) *response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body: %s", r.status, status, r.body)
	}
	return r
}

// outcome checks that r is an OperationOutcome and returns its first issue.
func (r *response) outcome(t *testing.T) map[string]any {
	t.Helper()
	m := r.json(t)
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("not an OperationOutcome: %s", r.body)
	}
	issues, _ := m["issue"].([]any)
	if len(issues) == 0 {
		t.Fatalf("OperationOutcome without issues: %s", r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("OperationOutcome served as %q", ct)
	}
	return issues[0].(map[string]any)
}

// jsonEqual compares two JSON documents, ignoring meta.versionId and
// meta.lastUpdated (and meta altogether when nothing else is in it).
func jsonEqual(t *testing.T, a, b []byte) (bool, string) {
	t.Helper()
	var x, y any
	dec := json.NewDecoder(bytes.NewReader(a))
	dec.UseNumber()
	if err := dec.Decode(&x); err != nil {
		return false, err.Error()
	}
	dec = json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&y); err != nil {
		return false, err.Error()
	}
	strip := func(v any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		if meta, ok := m["meta"].(map[string]any); ok {
			delete(meta, "versionId")
			delete(meta, "lastUpdated")
			if len(meta) == 0 {
				delete(m, "meta")
			}
		}
	}
	strip(x)
	strip(y)
	// a resource sent without an id gets one
	if xm, ok := x.(map[string]any); ok {
		if _, hasID := xm["id"]; !hasID {
			if ym, ok := y.(map[string]any); ok {
				delete(ym, "id")
			}
		}
	}
	if diff := jsonDiff("", x, y); diff != "" {
		return false, diff
	}
	return true, ""
}

// jsonDiff returns the path of the first difference between two decoded
// JSON values ("" if equal). Numbers compare by their text.
func jsonDiff(path string, x, y any) string {
	switch xv := x.(type) {
	case map[string]any:
		yv, ok := y.(map[string]any)
		if !ok || len(xv) != len(yv) {
			return path + " (object members differ)"
		}
		for k, v := range xv {
			if d := jsonDiff(path+"."+k, v, yv[k]); d != "" {
				return d
			}
		}
	case []any:
		yv, ok := y.([]any)
		if !ok || len(xv) != len(yv) {
			return path + " (array length differs)"
		}
		for i := range xv {
			if d := jsonDiff(path+"["+strconv.Itoa(i)+"]", xv[i], yv[i]); d != "" {
				return d
			}
		}
	default:
		if x != y {
			return path
		}
	}
	return ""
}

// listen serves the app on a real 127.0.0.1 listener and returns its URL.
func (e *env) listen(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.Serve(ln)
	t.Cleanup(func() { e.srv.Shutdown(context.Background()) })
	return "http://" + ln.Addr().String()
}
