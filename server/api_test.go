package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const patientJSON = `{"resourceType":"Patient","active":true,"name":[{"family":"Jansen","given":["Anna"]}],"birthDate":"1980-02-03"}`

func TestCRUDLifecycle(t *testing.T) {
	e := newEnv(t)

	// create
	r := e.do("POST", "/fhir/Patient", patientJSON).expect(t, 201)
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, "http://regie.test/fhir/Patient/") || !strings.HasSuffix(loc, "/_history/1") {
		t.Fatalf("Location %q", loc)
	}
	if et := r.header.Get("ETag"); et != `W/"1"` {
		t.Errorf("ETag %q", et)
	}
	if _, err := http.ParseTime(r.header.Get("Last-Modified")); err != nil {
		t.Errorf("Last-Modified %q: %v", r.header.Get("Last-Modified"), err)
	}
	created := r.json(t)
	id := created["id"].(string)
	meta := created["meta"].(map[string]any)
	if meta["versionId"] != "1" || meta["lastUpdated"] == nil {
		t.Errorf("meta %v", meta)
	}
	if ok, diff := jsonEqual(t, []byte(patientJSON), r.body); !ok {
		t.Errorf("created body differs from input at %s", diff)
	}

	// read
	r = e.do("GET", "/fhir/Patient/"+id, "").expect(t, 200)
	if ct := r.header.Get("Content-Type"); ct != "application/fhir+json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if r.json(t)["id"] != id {
		t.Errorf("read returned %s", r.body)
	}

	// conditional read
	e.do("GET", "/fhir/Patient/"+id, "", `If-None-Match: W/"1"`).expect(t, 304)

	// update with the right If-Match
	upd := strings.Replace(patientJSON, `"active":true`, `"id":"`+id+`","active":false`, 1)
	r = e.do("PUT", "/fhir/Patient/"+id, upd, `If-Match: W/"1"`).expect(t, 200)
	if r.header.Get("ETag") != `W/"2"` {
		t.Errorf("update ETag %q", r.header.Get("ETag"))
	}
	// stale If-Match
	e.do("PUT", "/fhir/Patient/"+id, upd, `If-Match: W/"1"`).expect(t, 412).outcome(t)

	// vread of both versions
	v1 := e.do("GET", "/fhir/Patient/"+id+"/_history/1", "").expect(t, 200).json(t)
	v2 := e.do("GET", "/fhir/Patient/"+id+"/_history/2", "").expect(t, 200).json(t)
	if v1["active"] != true || v2["active"] != false {
		t.Errorf("vread: v1 active=%v v2 active=%v", v1["active"], v2["active"])
	}
	e.do("GET", "/fhir/Patient/"+id+"/_history/9", "").expect(t, 404).outcome(t)

	// delete, then read is gone and history keeps everything
	r = e.do("DELETE", "/fhir/Patient/"+id, "").expect(t, 204)
	if r.header.Get("ETag") != `W/"3"` {
		t.Errorf("delete ETag %q", r.header.Get("ETag"))
	}
	iss := e.do("GET", "/fhir/Patient/"+id, "").expect(t, 410).outcome(t)
	if iss["code"] != "deleted" {
		t.Errorf("gone issue %v", iss)
	}
	e.do("GET", "/fhir/Patient/"+id+"/_history/3", "").expect(t, 410)
	e.do("DELETE", "/fhir/Patient/"+id, "").expect(t, 204) // idempotent
	h := e.do("GET", "/fhir/Patient/"+id+"/_history", "").expect(t, 200).json(t)
	if h["type"] != "history" {
		t.Fatalf("history bundle type %v", h["type"])
	}
	entries := h["entry"].([]any)
	var methods []string
	for _, en := range entries {
		methods = append(methods, en.(map[string]any)["request"].(map[string]any)["method"].(string))
	}
	if strings.Join(methods, ",") != "DELETE,PUT,POST" {
		t.Errorf("history methods newest first: %v", methods)
	}

	// update-as-create after delete re-creates (201) and continues versions
	r = e.do("PUT", "/fhir/Patient/"+id, upd).expect(t, 201)
	if r.header.Get("ETag") != `W/"4"` {
		t.Errorf("re-create ETag %q", r.header.Get("ETag"))
	}
}

func TestUpdateAsCreateWithClientID(t *testing.T) {
	e := newEnv(t)
	body := `{"resourceType":"Patient","id":"client-chosen.id-1","active":true}`
	r := e.do("PUT", "/fhir/Patient/client-chosen.id-1", body).expect(t, 201)
	if r.header.Get("Location") != "http://regie.test/fhir/Patient/client-chosen.id-1/_history/1" {
		t.Errorf("Location %q", r.header.Get("Location"))
	}
	e.do("PUT", "/fhir/Patient/client-chosen.id-1", body).expect(t, 200)
	// same id, other type: a different resource
	e.do("PUT", "/fhir/Practitioner/client-chosen.id-1", `{"resourceType":"Practitioner","id":"client-chosen.id-1"}`).expect(t, 201)
}

func TestCreateIgnoresBodyID(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/fhir/Patient", `{"resourceType":"Patient","id":"mine"}`).expect(t, 201)
	if id := r.json(t)["id"]; id == "mine" || id == "" {
		t.Errorf("create kept the client's id: %v", id)
	}
}

func TestPrefer(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/fhir/Patient", patientJSON, "Prefer: return=minimal").expect(t, 201)
	if len(r.body) != 0 || r.header.Get("Location") == "" {
		t.Errorf("minimal: body %q location %q", r.body, r.header.Get("Location"))
	}
	r = e.do("POST", "/fhir/Patient", patientJSON, "Prefer: return=OperationOutcome").expect(t, 201)
	if iss := r.outcome(t); iss["severity"] != "information" {
		t.Errorf("OperationOutcome issue %v", iss)
	}
	r = e.do("POST", "/fhir/Patient", patientJSON, "Prefer: return=representation").expect(t, 201)
	if r.json(t)["resourceType"] != "Patient" {
		t.Errorf("representation: %s", r.body)
	}
}

func TestPatch(t *testing.T) {
	e := newEnv(t)
	id := e.do("POST", "/fhir/Patient", patientJSON).expect(t, 201).json(t)["id"].(string)
	patch := `[{"op":"replace","path":"/active","value":false},{"op":"add","path":"/gender","value":"female"}]`
	req := func(body string, headers ...string) *response {
		return e.do("PATCH", "/fhir/Patient/"+id, body, append([]string{"Content-Type: application/json-patch+json"}, headers...)...)
	}
	r := req(patch).expect(t, 200)
	m := r.json(t)
	if m["active"] != false || m["gender"] != "female" || m["meta"].(map[string]any)["versionId"] != "2" {
		t.Errorf("patched: %s", r.body)
	}
	req(patch, `If-Match: W/"1"`).expect(t, 412)
	// a patch that makes the resource invalid is rejected with the location
	iss := req(`[{"op":"add","path":"/gender","value":7}]`).expect(t, 400).outcome(t)
	if iss["expression"] == nil {
		t.Errorf("no location in %v", iss)
	}
	req(`{"not":"a patch"}`).expect(t, 400).outcome(t)
	e.do("PATCH", "/fhir/Patient/"+id, patch).expect(t, 415) // fhir+json is not a patch format
}

func TestContentNegotiation(t *testing.T) {
	e := newEnv(t)
	id := e.do("POST", "/fhir/Patient", patientJSON).expect(t, 201).json(t)["id"].(string)
	cases := []struct {
		name, target, accept string
		status               int
		ct                   string
	}{
		{"default", "/fhir/Patient/" + id, "", 200, "application/fhir+json"},
		{"fhir json", "/fhir/Patient/" + id, "application/fhir+json", 200, "application/fhir+json"},
		{"plain json", "/fhir/Patient/" + id, "application/json", 200, "application/json"},
		{"browser", "/fhir/Patient/" + id, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", 200, "application/fhir+json"},
		{"xml accept", "/fhir/Patient/" + id, "application/fhir+xml", 406, "application/fhir+json"},
		{"format json", "/fhir/Patient/" + id + "?_format=json", "application/fhir+xml", 200, "application/fhir+json"},
		{"format xml", "/fhir/Patient/" + id + "?_format=xml", "", 406, "application/fhir+json"},
		{"metadata xml", "/fhir/metadata?_format=application/fhir+xml", "", 406, "application/fhir+json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h []string
			if c.accept != "" {
				h = append(h, "Accept: "+c.accept)
			}
			r := e.do("GET", c.target, "", h...).expect(t, c.status)
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, c.ct) {
				t.Errorf("Content-Type %q, want %q", ct, c.ct)
			}
			if c.status == 406 {
				r.outcome(t)
			}
		})
	}
	r := e.do("GET", "/fhir/Patient/"+id+"?_pretty=true", "").expect(t, 200)
	if !strings.Contains(string(r.body), "\n  \"resourceType\": \"Patient\"") {
		t.Errorf("_pretty not indented: %s", r.body)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`).expect(t, 201)
	cases := []struct {
		name, method, target, body string
		headers                    []string
		status                     int
		code, expr                 string
	}{
		{"malformed JSON", "POST", "/fhir/Patient", "{\"resourceType\":\"Patient\",\n \"active\": tru}", nil, 400, "structure", ""},
		{"not an object", "POST", "/fhir/Patient", `[1,2]`, nil, 400, "structure", ""},
		{"type mismatch", "POST", "/fhir/Patient", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, nil, 400, "invalid", "resourceType"},
		{"id mismatch", "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p2"}`, nil, 400, "invalid", "Patient.id"},
		{"id missing on update", "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient"}`, nil, 400, "required", "Patient.id"},
		{"invalid id in URL", "PUT", "/fhir/Patient/a_b", `{"resourceType":"Patient","id":"a_b"}`, nil, 400, "value", "Patient.id"},
		{"id too long", "GET", "/fhir/Patient/" + strings.Repeat("a", 65), "", nil, 400, "value", "Patient.id"},
		{"invalid id in body", "POST", "/fhir/Patient", `{"resourceType":"Patient","id":"a b"}`, nil, 400, "value", "Patient.id"},
		{"unknown type in URL", "GET", "/fhir/Patientt/1", "", nil, 404, "not-supported", ""},
		{"unknown type in body", "POST", "/fhir/Patient", `{"resourceType":"Foo"}`, nil, 400, "not-supported", "resourceType"},
		{"missing resourceType", "POST", "/fhir/Patient", `{"active":true}`, nil, 400, "required", "resourceType"},
		{"unknown element", "POST", "/fhir/Patient", `{"resourceType":"Patient","nickname":"x"}`, nil, 400, "", "Patient"},
		{"wrong primitive", "POST", "/fhir/Patient", `{"resourceType":"Patient","birthDate":"3 February"}`, nil, 400, "", "Patient.birthDate"},
		{"wrong content type", "POST", "/fhir/Patient", patientJSON, []string{"Content-Type: text/plain"}, 415, "not-supported", "Content-Type"},
		{"xml content type", "POST", "/fhir/Patient", `<Patient xmlns="http://hl7.org/fhir"/>`, []string{"Content-Type: application/fhir+xml"}, 415, "not-supported", "Content-Type"},
		{"empty body", "POST", "/fhir/Patient", " ", nil, 400, "required", ""},
		{"bad If-Match", "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`, []string{"If-Match: nonsense"}, 400, "value", "versionId"},
		{"bad _count", "GET", "/fhir/Patient/_history?_count=x", "", nil, 400, "value", "_count"},
		{"bad _since", "GET", "/fhir/_history?_since=yesterday", "", nil, 400, "value", "_since"},
		{"unknown endpoint", "GET", "/fhir/Patient/p1/nonsense", "", nil, 404, "not-supported", ""},
		{"bundle not batch", "POST", "/fhir", `{"resourceType":"Bundle","type":"collection"}`, nil, 400, "value", "Bundle.type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.target, c.body, c.headers...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			iss := r.outcome(t)
			if c.code != "" && iss["code"] != c.code {
				t.Errorf("issue code %v, want %s: %s", iss["code"], c.code, r.body)
			}
			if c.expr != "" {
				ex, _ := iss["expression"].([]any)
				if len(ex) == 0 || !strings.HasPrefix(ex[0].(string), c.expr) {
					t.Errorf("expression %v, want prefix %q: %s", iss["expression"], c.expr, r.body)
				}
			}
			if det, _ := iss["details"].(map[string]any); det == nil || det["text"] == "" {
				t.Errorf("no details text: %s", r.body)
			}
		})
	}
	// the malformed JSON answer says where the problem is
	r := e.do("POST", "/fhir/Patient", "{\"resourceType\":\"Patient\",\n \"active\": tru}")
	if iss := r.outcome(t); !strings.Contains(fmt.Sprint(iss["diagnostics"]), "line 2") {
		t.Errorf("malformed JSON diagnostics lack the line: %v", iss["diagnostics"])
	}
	// nothing was stored by the rejected writes
	h := e.do("GET", "/fhir/_history", "").expect(t, 200).json(t)
	if n := len(h["entry"].([]any)); n != 1 {
		t.Errorf("history has %d entries after rejected writes, want 1", n)
	}
}

func TestHistoryPagingAndSince(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 7; i++ {
		e.do("POST", "/fhir/Patient", patientJSON).expect(t, 201)
	}
	mid := time.Now()
	time.Sleep(2 * time.Millisecond)
	for i := 0; i < 3; i++ {
		e.do("POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`).expect(t, 201)
	}
	// type history pages through all seven patients
	seen := map[string]bool{}
	next := "/fhir/Patient/_history?_count=3"
	pages := 0
	for next != "" {
		pages++
		b := e.do("GET", next, "").expect(t, 200).json(t)
		next = ""
		for _, l := range b["link"].([]any) {
			l := l.(map[string]any)
			if l["relation"] == "next" {
				next = strings.TrimPrefix(l["url"].(string), "http://regie.test")
			}
		}
		for _, en := range b["entry"].([]any) {
			id := en.(map[string]any)["resource"].(map[string]any)["id"].(string)
			if seen[id] {
				t.Errorf("%s seen twice", id)
			}
			seen[id] = true
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != 7 || pages != 3 {
		t.Errorf("paged %d resources in %d pages, want 7 in 3", len(seen), pages)
	}
	b := e.do("GET", "/fhir/_history?_since="+mid.UTC().Format(time.RFC3339Nano), "").expect(t, 200).json(t)
	if n := len(b["entry"].([]any)); n != 3 {
		t.Errorf("_since: %d entries, want 3", n)
	}
	e.do("GET", "/fhir/Patient/nope/_history", "").expect(t, 404)
}

func TestCapabilityStatement(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/fhir/metadata", "").expect(t, 200)
	var cs struct {
		ResourceType string `json:"resourceType"`
		FhirVersion  string `json:"fhirVersion"`
		Format       []string
		Rest         []struct {
			Resource []struct {
				Type        string
				Interaction []struct{ Code string }
				SearchParam []struct{ Name, Type string }
			}
			Interaction []struct{ Code string }
		}
	}
	if err := json.Unmarshal(r.body, &cs); err != nil {
		t.Fatal(err)
	}
	if cs.ResourceType != "CapabilityStatement" || cs.FhirVersion != "4.0.1" {
		t.Fatalf("%s %s", cs.ResourceType, cs.FhirVersion)
	}
	if got, want := len(cs.Rest[0].Resource), len(e.defs.ResourceTypes()); got != want {
		t.Errorf("%d resource types listed, want %d", got, want)
	}
	// Every listed interaction works on a type with a minimal resource.
	for _, res := range cs.Rest[0].Resource {
		if res.Type != "Basic" {
			continue
		}
		for _, in := range res.Interaction {
			if !interactionWorks(t, e, "Basic", in.Code) {
				t.Errorf("listed interaction %s does not work", in.Code)
			}
		}
	}
	for _, in := range cs.Rest[0].Interaction {
		if !interactionWorks(t, e, "", in.Code) {
			t.Errorf("listed system interaction %s does not work", in.Code)
		}
	}
	// Every listed search parameter is accepted in strict mode.
	n := 0
	for _, res := range cs.Rest[0].Resource {
		if len(res.SearchParam) == 0 {
			t.Errorf("%s lists no search parameters", res.Type)
		}
		for _, p := range res.SearchParam {
			n++
			r := e.do("GET", "/fhir/"+res.Type+"?"+p.Name+":missing=true&_summary=count", "", "Prefer: handling=strict")
			if r.status != 200 {
				t.Errorf("listed parameter %s.%s (%s) is refused: %s", res.Type, p.Name, p.Type, r.body)
			}
		}
	}
	t.Logf("%d search parameters listed over %d types, each accepted", n, len(cs.Rest[0].Resource))
}

// interactionWorks performs one interaction as the CapabilityStatement names
// it and reports whether it succeeded.
func interactionWorks(t *testing.T, e *env, typ, code string) bool {
	t.Helper()
	basic := `{"resourceType":"Basic","code":{"text":"x"}}`
	id := e.do("POST", "/fhir/Basic", basic).json(t)["id"]
	switch code {
	case "read":
		return e.do("GET", fmt.Sprint("/fhir/Basic/", id), "").status == 200
	case "vread":
		return e.do("GET", fmt.Sprint("/fhir/Basic/", id, "/_history/1"), "").status == 200
	case "update":
		return e.do("PUT", fmt.Sprint("/fhir/Basic/", id), fmt.Sprintf(`{"resourceType":"Basic","id":"%s","code":{"text":"y"}}`, id)).status == 200
	case "patch":
		return e.do("PATCH", fmt.Sprint("/fhir/Basic/", id), `[{"op":"replace","path":"/code/text","value":"z"}]`, "Content-Type: application/json-patch+json").status == 200
	case "delete":
		return e.do("DELETE", fmt.Sprint("/fhir/Basic/", id), "").status == 204
	case "history-instance":
		return e.do("GET", fmt.Sprint("/fhir/Basic/", id, "/_history"), "").status == 200
	case "history-type":
		return e.do("GET", "/fhir/Basic/_history", "").status == 200
	case "create":
		return e.do("POST", "/fhir/Basic", basic).status == 201
	case "search-type":
		r := e.do("GET", "/fhir/Basic?_id="+fmt.Sprint(id), "")
		return r.status == 200 && strings.Contains(string(r.body), `"mode":"match"`)
	case "search-system":
		r := e.do("GET", "/fhir?_type=Basic&_id="+fmt.Sprint(id), "")
		return r.status == 200 && strings.Contains(string(r.body), `"mode":"match"`)
	case "history-system":
		return e.do("GET", "/fhir/_history", "").status == 200
	case "batch", "transaction":
		r := e.do("POST", "/fhir", fmt.Sprintf(`{"resourceType":"Bundle","type":"%s","entry":[{"resource":%s,"request":{"method":"POST","url":"Basic"}}]}`, code, basic))
		return r.status == 200 && strings.Contains(string(r.body), "201 Created")
	}
	t.Errorf("the test does not know interaction %q: teach it", code)
	return false
}

// TestBodyTooLarge needs a real connection: fasthttp refuses the body while
// reading the request, before any handler runs.
func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t, withMaxBody(4096))
	base := e.listen(t)
	big := `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">` + strings.Repeat("x", 5000) + `</div>"}}`
	resp, err := http.Post(base+"/fhir/Patient", "application/fhir+json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := &response{status: resp.StatusCode, header: resp.Header, body: body}
	iss := r.expect(t, 413).outcome(t)
	if iss["code"] != "too-costly" {
		t.Errorf("issue %v", iss)
	}
}
