package server_test

import (
	"strings"
	"testing"
)

func TestTransactionRewritesReferences(t *testing.T) {
	e := newEnv(t)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
	 {"fullUrl":"urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059","resource":{"resourceType":"Observation","status":"final","code":{"text":"weight"},"subject":{"reference":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}},"request":{"method":"POST","url":"Observation"}},
	 {"resource":{"resourceType":"Patient","id":"fixed","active":false},"request":{"method":"PUT","url":"Patient/fixed"}}
	]}`
	r := e.do("POST", "/fhir", tx).expect(t, 200)
	b := r.json(t)
	if b["type"] != "transaction-response" {
		t.Fatalf("type %v", b["type"])
	}
	entries := b["entry"].([]any)
	if len(entries) != 3 {
		t.Fatalf("%d entries", len(entries))
	}
	statuses := []string{}
	for _, en := range entries {
		statuses = append(statuses, en.(map[string]any)["response"].(map[string]any)["status"].(string))
	}
	if strings.Join(statuses, ",") != "201 Created,201 Created,201 Created" {
		t.Errorf("statuses %v", statuses)
	}
	patLoc := entries[0].(map[string]any)["response"].(map[string]any)["location"].(string)
	patRef := strings.TrimSuffix(patLoc, "/_history/1")
	obs := entries[1].(map[string]any)["resource"].(map[string]any)
	if ref := obs["subject"].(map[string]any)["reference"]; ref != patRef {
		t.Errorf("reference %v, want %s", ref, patRef)
	}
	e.do("GET", "/fhir/"+patRef, "").expect(t, 200)
}

func TestTransactionIsAtomic(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`).expect(t, 201)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","id":"p1","active":true},"request":{"method":"PUT","url":"Patient/p1","ifMatch":"W/\"7\""}}
	]}`
	iss := e.do("POST", "/fhir", tx).expect(t, 412).outcome(t)
	if ex, _ := iss["expression"].([]any); len(ex) == 0 || !strings.HasPrefix(ex[0].(string), "Bundle.entry[1]") {
		t.Errorf("failure not located at entry 1: %v", iss)
	}
	h := e.do("GET", "/fhir/_history", "").expect(t, 200).json(t)
	if n := len(h["entry"].([]any)); n != 1 {
		t.Errorf("a failed transaction left %d versions, want only the first one", n)
	}
	// an invalid resource fails the transaction before anything is written
	tx = `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","birthDate":"soon"},"request":{"method":"POST","url":"Patient"}}
	]}`
	iss = e.do("POST", "/fhir", tx).expect(t, 400).outcome(t)
	if ex, _ := iss["expression"].([]any); len(ex) == 0 || !strings.HasPrefix(ex[0].(string), "Bundle.entry[1].Patient.birthDate") {
		t.Errorf("invalid entry not located: %v", iss)
	}
}

func TestBatchEntriesAreIndependent(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`).expect(t, 201)
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
	 {"request":{"method":"GET","url":"Patient/p1"}},
	 {"request":{"method":"GET","url":"Patient/missing"}},
	 {"resource":{"resourceType":"Patient","birthDate":"soon"},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
	 {"request":{"method":"DELETE","url":"Patient/p1"}}
	]}`
	b := e.do("POST", "/fhir", batch).expect(t, 200).json(t)
	if b["type"] != "batch-response" {
		t.Fatalf("type %v", b["type"])
	}
	want := []string{"200 OK", "404 Not Found", "400 Bad Request", "201 Created", "204 No Content"}
	for i, en := range b["entry"].([]any) {
		resp := en.(map[string]any)["response"].(map[string]any)
		if resp["status"] != want[i] {
			t.Errorf("entry %d: %v, want %s", i, resp["status"], want[i])
		}
		if strings.HasPrefix(want[i], "4") && resp["outcome"] == nil {
			t.Errorf("entry %d: failure without outcome", i)
		}
	}
}
