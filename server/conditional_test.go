package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func patientWithID(value string) string {
	return fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"%s"}],"active":true}`, value)
}

func TestConditionalCreate(t *testing.T) {
	e := newEnv(t)
	cond := "If-None-Exist: identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120"
	r := e.do("POST", "/fhir/Patient", patientWithID("999911120"), cond).expect(t, 201)
	id := r.json(t)["id"]
	r = e.do("POST", "/fhir/Patient", patientWithID("999911120"), cond).expect(t, 200)
	if r.json(t)["id"] != id {
		t.Errorf("the existing match was not returned: %s", r.body)
	}
	e.do("POST", "/fhir/Patient", patientWithID("999911120")).expect(t, 201) // a second one, unconditionally
	e.do("POST", "/fhir/Patient", patientWithID("999911120"), cond).expect(t, 412).outcome(t)
	iss := e.do("POST", "/fhir/Patient", patientWithID("1"), "If-None-Exist: nonsense=1").expect(t, 400).outcome(t)
	if ex, _ := iss["expression"].([]any); len(ex) == 0 || ex[0] != "nonsense" {
		t.Errorf("unknown condition parameter not located: %v", iss)
	}
}

// TestConcurrentConditionalCreates: many clients create the same patient at
// once; exactly one resource results.
func TestConcurrentConditionalCreates(t *testing.T) {
	e := newEnv(t)
	base := e.listen(t)
	const n = 24
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequest("POST", base+"/fhir/Patient", strings.NewReader(patientWithID("999900018")))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("If-None-Exist", "identifier=http://fhir.nl/fhir/NamingSystem/bsn|999900018")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}(i)
	}
	wg.Wait()
	created := 0
	for _, s := range statuses {
		switch s {
		case 201:
			created++
		case 200:
		default:
			t.Errorf("status %d", s)
		}
	}
	if created != 1 {
		t.Errorf("%d creates succeeded, want exactly 1 (statuses %v)", created, statuses)
	}
	b := e.do("GET", "/fhir/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999900018&_total=accurate", "").expect(t, 200).json(t)
	if b["total"] != float64(1) {
		t.Errorf("total %v, want 1", b["total"])
	}
}

func TestConditionalUpdateAndDelete(t *testing.T) {
	e := newEnv(t)
	q := "/fhir/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120"
	// no match: create
	r := e.do("PUT", q, patientWithID("999911120")).expect(t, 201)
	id := r.json(t)["id"].(string)
	// one match: update it
	r = e.do("PUT", q, strings.Replace(patientWithID("999911120"), `"active":true`, `"active":false`, 1)).expect(t, 200)
	if m := r.json(t); m["id"] != id || m["active"] != false {
		t.Errorf("conditional update: %s", r.body)
	}
	// a body id that is not the match's
	e.do("PUT", q, strings.Replace(patientWithID("999911120"), `"active":true`, `"id":"other","active":true`, 1)).expect(t, 400)
	// two matches: 412
	e.do("POST", "/fhir/Patient", patientWithID("999911120")).expect(t, 201)
	e.do("PUT", q, patientWithID("999911120")).expect(t, 412)
	e.do("DELETE", q, "").expect(t, 412)
	e.do("DELETE", "/fhir/Patient/"+id, "").expect(t, 204)
	// one match left: deleted
	e.do("DELETE", q, "").expect(t, 204)
	b := e.do("GET", q+"&_total=accurate", "").expect(t, 200).json(t)
	if b["total"] != float64(0) {
		t.Errorf("after conditional delete, total %v", b["total"])
	}
	// none: still fine
	e.do("DELETE", q, "").expect(t, 204)
	e.do("PUT", "/fhir/Patient", patientWithID("1")).expect(t, 405)
}
