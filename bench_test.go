package regie

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkAudit measures what the AuditEvent of every interaction costs
// a client: a whole Regie (identity, policy, engine, embedded store) on
// 127.0.0.1 with the demo loaded, an EHR's system token bound to its
// organisation, and 32 concurrent connections that read one Patient by id
// or create Patients of about 2 KB, with and without audit. b.N is the
// number of requests, shared by the connections (run with -benchtime
// 20000x). It reports requests/s and the median and p99 latency;
// docs/benchmarks.md has the figures.
//
//	go test -run '^$' -bench Audit -benchtime 20000x -count 5 .
func BenchmarkAudit(b *testing.B) {
	p := newParts(b)
	for _, op := range []string{"read", "create"} {
		for _, audit := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/audit=%v", op, audit), func(b *testing.B) {
				s := startStackAudit(b, p, b.TempDir(), nil, audit)
				defer s.close()
				s.loadDemo(b, p)
				form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.cruds"}}
				req, _ := http.NewRequest("POST", s.base+"/oauth/token", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(ehrClient, ehrSecret)
				token := fetchToken(b, req)
				if op == "read" {
					loadTest(b, token, "GET", s.base+"/fhir/Patient/anna-de-vries", nil, 200)
				} else {
					loadTest(b, token, "POST", s.base+"/fhir/Patient", benchPatient, 201)
				}
			})
		}
	}
}

// benchPatient is a Patient of about 2 KB managed by the EHR's organisation.
var benchPatient = []byte(`{"resourceType":"Patient","identifier":[{"system":"https://regie.nl/fhir/NamingSystem/client","value":"C-2026-000123"}],` +
	`"active":true,"name":[{"use":"official","family":"van der Berg","given":["Johanna","Maria"],"prefix":["mevrouw"]},{"use":"usual","given":["Anneke"]}],` +
	`"telecom":[{"system":"phone","value":"+31612345678","use":"mobile"},{"system":"email","value":"anneke.vanderberg@example.nl","use":"home"}],` +
	`"gender":"female","birthDate":"1984-06-21","address":[{"use":"home","line":["Lange Voorhout 12"],"city":"Den Haag","postalCode":"2514 EE","country":"NL"}],` +
	`"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M","display":"Married"}]},` +
	`"contact":[{"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0131","code":"N","display":"Next-of-Kin"}]}],"name":{"family":"van der Berg","given":["Pieter"]},"telecom":[{"system":"phone","value":"+31687654321"}]}],` +
	`"communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"nl-NL","display":"Dutch (Netherlands)"}]},"preferred":true}],` +
	`"managingOrganization":{"reference":"Organization/wijkteam-noord"},` +
	`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Johanna Maria (Anneke) van der Berg, geboren 21 juni 1984, Lange Voorhout 12, 2514 EE Den Haag. Contactpersoon: Pieter van der Berg, telefoon +31687654321.</p><p>Begeleiding door Wijkteam Noord sinds maart 2025; voorkeurstaal Nederlands.</p><p>Cliëntnummer C-2026-000123.</p></div>"}}`)

// loadTest sends b.N requests over 32 connections and reports the rate
// and the latency percentiles.
func loadTest(b *testing.B, token, method, target string, body []byte, want int) {
	const conns = 32
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	send := func() (time.Duration, error) {
		req, _ := http.NewRequest(method, target, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if body != nil {
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Prefer", "return=minimal")
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		answer, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != want {
			err = fmt.Errorf("%s %s: status %d: %s", method, target, resp.StatusCode, answer)
		}
		return time.Since(t0), err
	}
	for range 200 { // warm up: connections, caches
		if _, err := send(); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, b.N)
	var (
		mu       sync.Mutex
		next     int
		firstErr error
		wg       sync.WaitGroup
	)
	b.ResetTimer()
	t0 := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= b.N {
					return
				}
				d, err := send()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				lat[i] = d
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func fetchToken(b *testing.B, req *http.Request) string {
	b.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || resp.StatusCode != 200 || tok.AccessToken == "" {
		b.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	return tok.AccessToken
}
