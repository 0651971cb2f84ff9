package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"regie/fhir"
	"regie/server"
	"regie/server/engine"
	"regie/storage"
)

func withMaxBody(n int) envOption {
	return func(s *server.Config, _ *engine.Config) { s.MaxBodyBytes = n }
}

func withLogger(l *slog.Logger) envOption {
	return func(s *server.Config, _ *engine.Config) { s.Logger = l }
}

// panicStore panics on every Read: a bug in a lower layer.
type panicStore struct{ storage.Store }

func (panicStore) Read(context.Context, string, string) (*fhir.Resource, error) {
	panic("storage bug")
}

func TestPanicBecomes500WithRequestID(t *testing.T) {
	var logs bytes.Buffer
	e := newEnv(t, withLogger(slog.New(slog.NewJSONHandler(&logs, nil))), func(_ *server.Config, ec *engine.Config) {
		ec.Store = panicStore{ec.Store}
	})
	r := e.do("GET", "/fhir/Patient/x", "", "X-Request-Id: req-123").expect(t, 500)
	iss := r.outcome(t)
	if !strings.Contains(iss["diagnostics"].(string), "req-123") {
		t.Errorf("500 outcome lacks the request id: %s", r.body)
	}
	if strings.Contains(string(r.body), "storage bug") {
		t.Errorf("internals leak into the response: %s", r.body)
	}
	if r.header.Get("X-Request-Id") != "req-123" {
		t.Errorf("X-Request-Id %q", r.header.Get("X-Request-Id"))
	}
	if !strings.Contains(logs.String(), `"request_id":"req-123"`) || !strings.Contains(logs.String(), "storage bug") {
		t.Errorf("panic not logged with the request id: %s", logs.String())
	}
	// the server keeps serving
	e.do("GET", "/fhir/metadata", "").expect(t, 200)
}

func TestRequestIDGenerated(t *testing.T) {
	e := newEnv(t)
	a := e.do("GET", "/fhir/metadata", "").header.Get("X-Request-Id")
	b := e.do("GET", "/fhir/metadata", "", "X-Request-Id: bad id with spaces").header.Get("X-Request-Id")
	if len(a) < 16 || a == b || strings.Contains(b, " ") {
		t.Errorf("request ids %q %q", a, b)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t)
	e.do("GET", "/healthz", "").expect(t, 200)
	e.do("GET", "/readyz", "").expect(t, 200)
	e.do("POST", "/fhir/Patient", patientJSON).expect(t, 201)
	e.do("GET", "/fhir/Patient/nope", "").expect(t, 404)
	m := string(e.do("GET", "/metrics", "").expect(t, 200).body)
	for _, want := range []string{
		`regie_http_requests_total{interaction="create",status="201",type="Patient"} 1`,
		`regie_http_requests_total{interaction="read",status="404",type="Patient"} 1`,
		`regie_http_request_duration_seconds_bucket{interaction="create"`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, "nope") {
		t.Error("metrics carry a resource id")
	}
}

func TestReadyzReportsStoreFailure(t *testing.T) {
	e := newEnv(t, func(s *server.Config, _ *engine.Config) {
		s.Ready = func(context.Context) error { return storage.ErrClosed }
	})
	e.do("GET", "/readyz", "").expect(t, 503)
	e.do("GET", "/healthz", "").expect(t, 200)
}

func TestAccessLogHasNoQueryValues(t *testing.T) {
	var logs bytes.Buffer
	e := newEnv(t, withLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	e.do("GET", "/fhir/Patient/_history?_since=1999-12-31", "").expect(t, 200)
	if !strings.Contains(logs.String(), `"route":"/fhir/:type/_history"`) {
		t.Errorf("access log lacks the route: %s", logs.String())
	}
	if strings.Contains(logs.String(), "1999") {
		t.Errorf("access log contains query values: %s", logs.String())
	}
}

// TestCreateRetriesATakenID checks that a create whose server-assigned id
// is already taken (the store refuses it: a create does not read first)
// stores the resource under the next id instead of failing or
// overwriting.
func TestCreateRetriesATakenID(t *testing.T) {
	ids := []string{"taken", "taken", "fresh"}
	e := newEnv(t, func(_ *server.Config, ec *engine.Config) {
		ec.NewID = func() string {
			id := ids[0]
			if len(ids) > 1 {
				ids = ids[1:]
			}
			return id
		}
	})
	e.do("POST", "/fhir/Patient", `{"resourceType":"Patient","name":[{"family":"Eerste"}]}`).expect(t, 201)
	r := e.do("POST", "/fhir/Patient", `{"resourceType":"Patient","name":[{"family":"Tweede"}]}`).expect(t, 201)
	if loc := r.header.Get("Location"); !strings.Contains(loc, "/Patient/fresh/") {
		t.Errorf("second create at %q, want Patient/fresh", loc)
	}
	first := e.do("GET", "/fhir/Patient/taken", "").expect(t, 200)
	if !strings.Contains(string(first.body), "Eerste") || !strings.Contains(string(first.body), `"versionId":"1"`) {
		t.Errorf("the first Patient changed: %s", first.body)
	}
}
