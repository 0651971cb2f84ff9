package regie

import (
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

// BenchmarkAuditedRead measures what the AuditEvent of every read costs
// a client: a whole Regie (identity, policy, engine, embedded store) on
// 127.0.0.1 with the demo loaded, an EHR's system token bound to its
// organisation, and 32 concurrent connections reading one Patient by id,
// with and without audit. b.N is the number of reads, shared by the
// connections (run with -benchtime 20000x). It reports reads/s and the
// median and p99 latency; docs/benchmarks.md has the figures.
//
//	go test -run '^$' -bench AuditedRead -benchtime 20000x -count 5 .
func BenchmarkAuditedRead(b *testing.B) {
	const conns = 32
	p := newParts(b)
	for _, audit := range []bool{false, true} {
		b.Run(fmt.Sprintf("audit=%v", audit), func(b *testing.B) {
			s := startStackAudit(b, p, b.TempDir(), nil, audit)
			defer s.close()
			s.loadDemo(b, p)
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.cruds"}}
			req, _ := http.NewRequest("POST", s.base+"/oauth/token", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(ehrClient, ehrSecret)
			token := fetchToken(b, req)
			target := s.base + "/fhir/Patient/anna-de-vries"
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
			read := func() (time.Duration, error) {
				req, _ := http.NewRequest("GET", target, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					return 0, err
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				return time.Since(t0), err
			}
			for range 200 { // warm up: connections, caches
				if _, err := read(); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, b.N)
			var next int64
			var mu sync.Mutex
			var firstErr error
			var wg sync.WaitGroup
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
						if i >= int64(b.N) {
							return
						}
						d, err := read()
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
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "reads/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
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
