package regie

import (
	"bytes"
	"context"
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
// or create journal notes of about 1.5 KB, with and without audit. b.N is the
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
				var elapsed time.Duration
				if op == "read" {
					elapsed = loadTest(b, token, "GET", s.base+"/fhir/Patient/anna-de-vries", nil, 200)
				} else {
					elapsed = loadTest(b, token, "POST", s.base+"/fhir/Observation", benchNote, 201)
				}
				// What the load left to materialise: the sustained rate
				// counts the time to store every AuditEvent as a resource.
				backlog := s.store.Backlog()
				t := time.Now()
				if err := s.store.Settle(context.Background()); err != nil {
					b.Fatal(err)
				}
				settle := time.Since(t)
				b.ReportMetric(float64(backlog), "backlog")
				b.ReportMetric(float64(settle.Microseconds())/1000, "settle-ms")
				b.ReportMetric(float64(b.N)/(elapsed+settle).Seconds(), "sustained-req/s")
			})
		}
	}
}

// benchNote is a journal note of about 1.5 KB in a dossier of the EHR's
// organisation (what an EHR writes most).
var benchNote = []byte(`{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"https://regie.nl/fhir/CodeSystem/dossier-part","code":"journal","display":"Contactjournaal"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"11506-3","display":"Progress note"}],"text":"Journaalnotitie"},"subject":{"reference":"Patient/anna-de-vries"},"performer":[{"reference":"Practitioner/coach-sanne"}],"effectiveDateTime":"2026-11-20T10:15:00+01:00","valueString":"Telefonisch contact met Anna over de voortgang van het plan. Zij heeft de loonstroken van de afgelopen drie maanden verzameld en wil die samen met de coach doornemen voordat het gesprek met de schuldhulpverlening plaatsvindt. Afgesproken dat de coach een afspraak maakt bij het wijkcentrum De Kern en dat Anna de brief van de woningcorporatie meeneemt. Anna geeft aan dat het beter gaat met slapen sinds zij overdag weer een vaste structuur heeft; het vrijwilligerswerk bij de voedselbank bevalt goed. Zorgen over de kosten van de nieuwe bril voor haar dochter: besproken welke regelingen de gemeente daarvoor heeft en dat de coach de aanvraag voor de bijzondere bijstand voorbereidt. Volgende contact over twee weken, telefonisch, op dinsdagochtend. Anna wil het signaleringsplan bij het volgende huisbezoek samen bijwerken; zij heeft zelf al een paar punten opgeschreven over wat haar helpt als de spanning oploopt. Coach stuurt een samenvatting van dit gesprek via het portaal."}`)

// loadTest sends b.N requests over 32 connections and reports the rate
// and the latency percentiles.
func loadTest(b *testing.B, token, method, target string, body []byte, want int) time.Duration {
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
	return elapsed
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
