package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"regie/fhir/search"
	"regie/storage"
)

// A shape is one kind of query of the benchmark, with realistic parameter
// values drawn from the data set.
type shape struct {
	name  string // short name (flag -shapes)
	label string // how it reads in the table
	typ   string
	// targetP95 is the p95 target in ms (0: none).
	targetP95 float64
	// make returns the i-th query string (after "Type?") and what it must find.
	make func(r *rand.Rand) (string, expect)
}

// expect is what a query must return, checked on the warm-up requests.
type expect struct {
	matches  int // exact number of matches, -1 when not known
	included int // exact number of included resources, -1 when not known
	total    int // Bundle.total (for counts), -1 when not checked
	// count is the number of matches a count query counts (for the rate).
	count int
}

// queryPool draws parameter values from the generator.
type queryPool struct {
	g *Generator
	// complete copies (the last may be cut short)
	copies int
	// occurrences of each Observation code: (source, item index)
	occ    map[string][][2]int
	common []string // the most frequent codes, most frequent first
	rare   []string // the less frequent half
	counts map[string]int
	pmu    sync.Mutex
	pcache map[int]*patientInfo
}

type patientInfo struct {
	id     string
	idents [][2]string // system, value
	family string
}

func newQueryPool(g *Generator) *queryPool {
	q := &queryPool{g: g, copies: max(1, g.Copies()-1), occ: map[string][][2]int{}, pcache: map[int]*patientInfo{}}
	for si, s := range g.sources {
		for i, it := range s.items {
			if it.code != "" {
				q.occ[it.code] = append(q.occ[it.code], [2]int{si, i})
			}
		}
	}
	q.counts = g.CodeCounts()
	codes := make([]string, 0, len(q.counts))
	for c := range q.counts {
		codes = append(codes, c)
	}
	sort.Slice(codes, func(i, j int) bool {
		if q.counts[codes[i]] != q.counts[codes[j]] {
			return q.counts[codes[i]] > q.counts[codes[j]]
		}
		return codes[i] < codes[j]
	})
	q.common = codes[:min(10, len(codes))]
	q.rare = codes[len(codes)/2:]
	return q
}

func (q *queryPool) patient(k int) *patientInfo {
	q.pmu.Lock()
	defer q.pmu.Unlock()
	if p := q.pcache[k]; p != nil {
		return p
	}
	var v struct {
		ID         string
		Identifier []struct{ System, Value string }
		Name       []struct{ Family string }
	}
	_ = json.Unmarshal(q.g.Patient(k).Body, &v)
	p := &patientInfo{id: v.ID}
	for _, id := range v.Identifier {
		p.idents = append(p.idents, [2]string{id.System, id.Value})
	}
	if len(v.Name) > 0 {
		p.family = v.Name[0].Family
	}
	q.pcache[k] = p
	return p
}

// copyOf returns a random complete copy of source si.
func (q *queryPool) copyOf(r *rand.Rand, si int) int {
	S := q.g.Sources()
	gens := (q.copies - si + S - 1) / S
	if gens <= 0 {
		return si % q.copies
	}
	return si + S*r.IntN(gens)
}

func esc(s string) string { return url.QueryEscape(s) }

func (q *queryPool) shapes() []shape {
	none := expect{matches: -1, included: -1, total: -1}
	return []shape{
		{name: "identifier", label: "`Patient?identifier=system|value`", typ: "Patient", targetP95: 20,
			make: func(r *rand.Rand) (string, expect) {
				p := q.patient(r.IntN(q.copies))
				id := p.idents[r.IntN(len(p.idents))]
				return "identifier=" + esc(id[0]+"|"+id[1]), expect{matches: 1, included: 0, total: -1}
			}},
		{name: "subject-code", label: "`Observation?subject=Patient/X&code=…`", typ: "Observation", targetP95: 20,
			make: func(r *rand.Rand) (string, expect) {
				k := r.IntN(q.copies)
				s := q.g.source(k)
				obs := q.g.obsItems(k)
				code := s.items[obs[r.IntN(len(obs))]].code // weighted by frequency
				if r.IntN(2) == 0 {
					// a code of this patient chosen uniformly: rare ones too
					distinct := make([]string, 0, len(s.codes))
					for c := range s.codes {
						distinct = append(distinct, c)
					}
					sort.Strings(distinct)
					code = distinct[r.IntN(len(distinct))]
				}
				e := expect{matches: min(s.codes[code], storage.DefaultCount), included: 0, total: -1}
				return "subject=Patient/" + q.g.PatientID(k) + "&code=" + esc(code), e
			}},
		{name: "code-date", label: "`Observation?code=…&date=ge…&_count=50`", typ: "Observation", targetP95: 50,
			make: func(r *rand.Rand) (string, expect) {
				code := q.common[r.IntN(len(q.common))]
				if r.IntN(2) == 0 {
					code = q.rare[r.IntN(len(q.rare))]
				}
				o := q.occ[code][r.IntN(len(q.occ[code]))]
				k := q.copyOf(r, o[0])
				date := shiftDate(q.g.sources[o[0]].items[o[1]].date, q.g.Shift(k))
				return "code=" + esc(code) + "&date=ge" + date + "&_count=50", none
			}},
		{name: "name", label: "`Patient?name=…` (prefix)", typ: "Patient", targetP95: 50,
			make: func(r *rand.Rand) (string, expect) {
				fam := q.patient(r.IntN(q.copies)).family
				n := min(len(fam), 3+r.IntN(max(1, len(fam)-2)))
				return "name=" + esc(strings.ToLower(fam[:n])), none
			}},
		{name: "revinclude", label: "`Patient?_id=X&_revinclude=CarePlan:subject`", typ: "Patient", targetP95: 50,
			make: func(r *rand.Rand) (string, expect) {
				k := r.IntN(q.copies)
				return "_id=" + q.g.PatientID(k) + "&_revinclude=CarePlan:subject", expect{matches: 1, included: q.g.carePlans(k), total: -1}
			}},
		{name: "count", label: "`Observation?code=…&_summary=count`", typ: "Observation",
			make: func(r *rand.Rand) (string, expect) {
				code := q.common[r.IntN(min(5, len(q.common)))]
				n := q.counts[code]
				return "code=" + esc(code) + "&_summary=count", expect{matches: -1, included: -1, total: n, count: n}
			}},
	}
}

// request is one prepared query.
type request struct {
	query string
	exp   expect
}

func prepare(sh shape, n int, seed uint64) []request {
	r := rand.New(rand.NewPCG(seed, uint64(len(sh.name))))
	out := make([]request, n)
	for i := range out {
		out[i].query, out[i].exp = sh.make(r)
	}
	return out
}

// runResult is one run of one shape.
type runResult struct {
	lat     []time.Duration
	wall    time.Duration
	errors  int
	errMsg  string
	matches int64 // for counts: matches counted
	bytes   int64
	// found and included add up what checked requests found.
	found, included int64
}

func (r *runResult) pct(p float64) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), r.lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.999999) - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i]) / float64(time.Millisecond)
}

// doer runs one request and reports what it found.
type doer func(ctx context.Context, typ string, rq request, check bool) (found, error)

type found struct {
	matches, included, total int
	bytes                    int
}

// drive runs reqs with conc concurrent clients, each request once.
func drive(ctx context.Context, do doer, typ string, reqs []request, conc int, check bool) *runResult {
	res := &runResult{lat: make([]time.Duration, len(reqs))}
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(reqs) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				f, err := do(ctx, typ, reqs[i], check)
				res.lat[i] = time.Since(t0)
				if err == nil && check {
					err = verify(reqs[i], f)
				}
				mu.Lock()
				if err != nil {
					res.errors++
					if res.errMsg == "" {
						res.errMsg = fmt.Sprintf("%s?%s: %v", typ, reqs[i].query, err)
					}
				}
				res.matches += int64(reqs[i].exp.count)
				res.bytes += int64(f.bytes)
				res.found += int64(f.matches)
				res.included += int64(f.included)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.wall = time.Since(start)
	return res
}

func verify(rq request, f found) error {
	e := rq.exp
	switch {
	case e.matches >= 0 && f.matches != e.matches:
		return fmt.Errorf("%d matches, want %d", f.matches, e.matches)
	case e.included >= 0 && f.included != e.included:
		return fmt.Errorf("%d included, want %d", f.included, e.included)
	case e.total >= 0 && f.total != e.total:
		return fmt.Errorf("total %d, want %d", f.total, e.total)
	}
	return nil
}

// tokens keeps a system token of the development client, fetched again
// before it expires (access tokens live ten minutes).
type tokens struct {
	server string
	mu     sync.Mutex
	token  string
	at     time.Time
}

func (t *tokens) get(stale string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && t.token != stale && time.Since(t.at) < 4*time.Minute {
		return t.token, nil
	}
	tok, err := systemToken(t.server)
	if err != nil {
		return "", err
	}
	t.token, t.at = tok, time.Now()
	return tok, nil
}

// httpDoer runs queries against the server at base with a bearer token.
func httpDoer(client *http.Client, base string, tok *tokens) doer {
	return func(ctx context.Context, typ string, rq request, check bool) (found, error) {
		var resp *http.Response
		stale := ""
		for attempt := 0; attempt < 2; attempt++ {
			token, err := tok.get(stale)
			if err != nil {
				return found{}, err
			}
			req, err := http.NewRequestWithContext(ctx, "GET", base+"/"+typ+"?"+rq.query, nil)
			if err != nil {
				return found{}, err
			}
			req.Header.Set("Accept", "application/fhir+json")
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err = client.Do(req); err != nil {
				return found{}, err
			}
			if resp.StatusCode != http.StatusUnauthorized || attempt == 1 {
				break
			}
			// expired: once more with a new token
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			stale = token
		}
		defer resp.Body.Close()
		if !check && resp.StatusCode == 200 {
			n, err := io.Copy(io.Discard, resp.Body)
			return found{bytes: int(n)}, err
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return found{}, err
		}
		if resp.StatusCode != 200 {
			return found{bytes: len(body)}, fmt.Errorf("status %d: %s", resp.StatusCode, truncate(string(body), 300))
		}
		var b struct {
			Total *int `json:"total"`
			Entry []struct {
				Search struct {
					Mode string `json:"mode"`
				} `json:"search"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			return found{bytes: len(body)}, err
		}
		f := found{total: -1, bytes: len(body)}
		if b.Total != nil {
			f.total = *b.Total
		}
		for _, e := range b.Entry {
			switch e.Search.Mode {
			case "match":
				f.matches++
			case "include":
				f.included++
			}
		}
		return f, nil
	}
}

// storeDoer runs queries directly against a store, parsed as the engine
// parses them.
func storeDoer(st storage.Store, parser *search.Parser) doer {
	return func(ctx context.Context, typ string, rq request, check bool) (found, error) {
		params, err := search.ParseParams(rq.query)
		if err != nil {
			return found{}, err
		}
		q, _, err := parser.Parse([]string{typ}, params, search.Options{Now: time.Now()})
		if err != nil {
			return found{}, err
		}
		page, err := st.Search(ctx, q)
		if err != nil {
			return found{}, err
		}
		n := 0
		for _, r := range page.Resources {
			n += len(r.Body)
		}
		for _, r := range page.Included {
			n += len(r.Body)
		}
		return found{matches: len(page.Resources), included: len(page.Included), total: page.Total, bytes: n}, nil
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// shapeResult is the outcome of all runs of one shape.
type shapeResult struct {
	Shape    string  `json:"shape"`
	Label    string  `json:"label"`
	Conc     int     `json:"concurrency"`
	Runs     int     `json:"runs"`
	Requests int     `json:"requestsPerRun"`
	P50      float64 `json:"p50ms"`
	P95      float64 `json:"p95ms"`
	P99      float64 `json:"p99ms"`
	RPS      float64 `json:"requestsPerSecond"`
	// CountRate is, for counts, the matches counted per second of request
	// latency (Σ matches / Σ latency), and Throughput the matches counted
	// per second of wall time by all clients together.
	CountRate  float64 `json:"countRate,omitempty"`
	Throughput float64 `json:"countThroughput,omitempty"`
	Matches    float64 `json:"meanMatchesPerRequest"`
	Included   float64 `json:"meanIncludedPerRequest"`
	Bytes      float64 `json:"meanResponseBytes"`
	CPUms      float64 `json:"cpuMsPerRequest,omitempty"`
	Errors     int     `json:"errors"`
	WarmupBad  int     `json:"warmupWrong"`
	ErrMsg     string  `json:"firstError,omitempty"`
	TargetP95  float64 `json:"targetP95ms,omitempty"`
	Load       string  `json:"loadAverage"`
	Skipped    string  `json:"skipped,omitempty"`
}

type measureOptions struct {
	runs, requests, warmup, conc int
	seed                         uint64
	log                          io.Writer
	// cpu, when set, returns the CPU seconds used so far by the process
	// that answers (the server, or this process for the store), for the
	// CPU time per request, which depends less on other work on the machine
	// than latencies do.
	cpu func() float64
	// during, when set, is called for an extra run of every shape whose
	// p95 misses its target, with a function that keeps it busy (profiling).
	during func(sh shape, busy func(ctx context.Context)) error
}

// measure runs every shape: a checked warm-up, then runs of bounded
// request counts, and reports the medians over the runs.
func measure(ctx context.Context, do doer, shapes []shape, o measureOptions) []shapeResult {
	var out []shapeResult
	for si, sh := range shapes {
		all := prepare(sh, o.warmup+o.runs*o.requests, o.seed+uint64(si))
		res := shapeResult{Shape: sh.name, Label: sh.label, Conc: o.conc, Runs: o.runs, Requests: o.requests, TargetP95: sh.targetP95}
		l0 := loadAvg()
		warm := drive(ctx, do, sh.typ, all[:o.warmup], o.conc, true)
		res.WarmupBad = warm.errors
		if warm.errors > 0 {
			res.ErrMsg = warm.errMsg
			if warm.errors == o.warmup {
				res.Skipped = "every request failed: " + warm.errMsg
				res.Load = l0
				fmt.Fprintf(o.log, "  %s: skipped: %s\n", sh.name, truncate(warm.errMsg, 200))
				out = append(out, res)
				continue
			}
		}
		var p50, p95, p99, rps, rate, thr, bytes, cpu []float64
		for i := 0; i < o.runs; i++ {
			reqs := all[o.warmup+i*o.requests : o.warmup+(i+1)*o.requests]
			var c0 float64
			if o.cpu != nil {
				c0 = o.cpu()
			}
			r := drive(ctx, do, sh.typ, reqs, o.conc, false)
			if o.cpu != nil {
				cpu = append(cpu, (o.cpu()-c0)/float64(len(reqs))*1000)
			}
			res.Errors += r.errors
			if res.ErrMsg == "" {
				res.ErrMsg = r.errMsg
			}
			p50, p95, p99 = append(p50, r.pct(0.50)), append(p95, r.pct(0.95)), append(p99, r.pct(0.99))
			rps = append(rps, float64(len(reqs))/r.wall.Seconds())
			var sum time.Duration
			for _, l := range r.lat {
				sum += l
			}
			if r.matches > 0 {
				rate = append(rate, float64(r.matches)/sum.Seconds())
				thr = append(thr, float64(r.matches)/r.wall.Seconds())
			}
			bytes = append(bytes, float64(r.bytes)/float64(len(reqs)))
			fmt.Fprintf(o.log, "  %s run %d: p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, %.0f req/s, %d errors\n",
				sh.name, i+1, r.pct(0.5), r.pct(0.95), r.pct(0.99), float64(len(reqs))/r.wall.Seconds(), r.errors)
		}
		// matches per request: what the checked warm-up found (for counts:
		// the total counted)
		res.Matches = float64(warm.found) / float64(o.warmup)
		res.Included = float64(warm.included) / float64(o.warmup)
		if warm.matches > 0 {
			res.Matches = float64(warm.matches) / float64(o.warmup)
		}
		res.P50, res.P95, res.P99, res.RPS = median(p50), median(p95), median(p99), median(rps)
		res.CountRate, res.Throughput = median(rate), median(thr)
		res.Bytes = median(bytes)
		res.CPUms = median(cpu)
		res.Load = l0 + " → " + loadAvg()
		out = append(out, res)
		if o.during != nil && sh.targetP95 > 0 && res.P95 > sh.targetP95 {
			busy := func(ctx context.Context) {
				for i := 0; ctx.Err() == nil; i++ {
					drive(ctx, do, sh.typ, all[o.warmup:], o.conc, false)
				}
			}
			if err := o.during(sh, busy); err != nil {
				fmt.Fprintf(o.log, "  %s: profile: %v\n", sh.name, err)
			}
		}
	}
	return out
}

// procCPU returns the user and system CPU seconds of process pid.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// the command name may hold spaces: fields start after its ')'
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	var ut, st float64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return (ut + st) / 100 // USER_HZ
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return f[0] + "/" + f[1] + "/" + f[2]
}
