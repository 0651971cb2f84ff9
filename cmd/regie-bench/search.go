package main

// The search benchmark (issue 3, "Performance"):
//
//	go run ./cmd/regie-bench search [-n 1000000] [-runs 3] [-requests 2000] [-c 8]
//
// It generates a Synthea-shaped data set (searchgen.go), loads it through
// the engine into an embedded store cached under .cache/bench-search (the
// load resumes when interrupted), measures the ingestion rate with and
// without search indexing and the index size, then copies the store,
// starts `regie serve --dev --demo=false` on the copy and measures the
// issue's query shapes with concurrent clients over HTTP on 127.0.0.1, and
// the same queries directly against the store.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"regie/storage/embedded"
)

// generatorVersion changes whenever the generator's output changes, so
// that a cached store of an older generator is not reused.
const generatorVersion = 1

type searchConfig struct {
	n          int
	seed       uint64
	synthea    string
	cache      string
	batch      int
	workers    int
	noIndex    bool
	runs       int
	requests   int
	warmup     int
	conc       int
	shapes     string
	httpPhase  bool
	direct     bool
	profile    bool
	keep       bool
	remeasure  bool
	auditLoad  bool
	cpuProfile string
	regen      bool
}

func searchMain(args []string) int {
	var c searchConfig
	fs := flag.NewFlagSet("search", flag.ContinueOnError)
	fs.IntVar(&c.n, "n", 1_000_000, "resources in the data set")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the generated ids, shifts and query parameters")
	fs.StringVar(&c.synthea, "synthea", "", "directory of the Synthea bundles (default ../shared/fhir/synthea next to the repository; built-in templates when absent)")
	fs.StringVar(&c.cache, "cache", "", "cache directory for generated stores and results (default .cache/bench-search in the repository)")
	fs.IntVar(&c.batch, "batch", 1000, "resources per ingestion transaction (whole patients)")
	fs.IntVar(&c.workers, "workers", runtime.GOMAXPROCS(0)+1, "concurrent ingestion transactions")
	fs.BoolVar(&c.noIndex, "noindex", true, "also load the data set without search indexing, for the ratio (result cached)")
	fs.BoolVar(&c.remeasure, "remeasure", false, "measure the load without indexing again even when a result is cached")
	fs.BoolVar(&c.regen, "regen", false, "discard the cached store and load results of this data set and load again (after the store's format or code changed)")
	fs.BoolVar(&c.auditLoad, "audit", false, "load with an AuditEvent per resource, as `regie import` does (a separate store)")
	fs.IntVar(&c.runs, "runs", 3, "measured runs per query shape (medians are reported)")
	fs.IntVar(&c.requests, "requests", 2000, "requests per run")
	fs.IntVar(&c.warmup, "warmup", 200, "checked warm-up requests per shape")
	fs.IntVar(&c.conc, "c", 8, "concurrent clients")
	fs.StringVar(&c.shapes, "shapes", "", "comma-separated shapes to run (identifier,subject-code,code-date,name,revinclude,count); default all")
	fs.BoolVar(&c.httpPhase, "http", true, "measure through the HTTP server")
	fs.BoolVar(&c.direct, "direct", true, "measure directly against the store")
	fs.BoolVar(&c.profile, "profile", false, "take a 10 s CPU profile of the server for every shape that misses its target")
	fs.BoolVar(&c.keep, "keep", false, "keep the server's copy of the store")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the indexed load (when it runs) to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runSearch(ctx, &c, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "regie-bench search:", err)
		return 1
	}
	return 0
}

// searchReport is everything one benchmark run measured.
type searchReport struct {
	Started   time.Time         `json:"started"`
	Command   string            `json:"command"`
	Commit    string            `json:"commit"`
	Machine   string            `json:"machine"`
	Data      string            `json:"data"`
	N         int               `json:"resources"`
	Types     map[string]int    `json:"types"`
	Patients  int               `json:"patients"`
	Indexed   *ingestProgress   `json:"ingestIndexed"`
	Unindexed *ingestProgress   `json:"ingestUnindexed,omitempty"`
	Audited   *ingestProgress   `json:"ingestAudited,omitempty"`
	Sizes     *sizeReport       `json:"sizes"`
	HTTP      []shapeResult     `json:"http,omitempty"`
	HTTPOne   []shapeResult     `json:"httpOneClient,omitempty"`
	Direct    []shapeResult     `json:"direct,omitempty"`
	DirectOne []shapeResult     `json:"directOneClient,omitempty"`
	Profiles  map[string]string `json:"profiles,omitempty"`
}

type sizeReport struct {
	FileBytes     int64            `json:"fileBytes"`
	ResourceBytes int64            `json:"resourceBytes"`
	IndexBytes    int64            `json:"indexBytes"`
	OtherBytes    int64            `json:"otherBytes"`
	Tables        map[string]int64 `json:"tables"`
}

func runSearch(ctx context.Context, c *searchConfig, stdout, stderr io.Writer) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if c.synthea == "" {
		c.synthea = filepath.Join(root, "..", "shared", "fhir", "synthea")
	}
	if c.cache == "" {
		c.cache = filepath.Join(root, ".cache", "bench-search")
	}
	if err := os.MkdirAll(c.cache, 0o700); err != nil {
		return err
	}
	rep := &searchReport{Started: time.Now().UTC(), Command: "go run ./cmd/regie-bench search " + strings.Join(os.Args[2:], " "),
		Commit: gitDescribe(root), Machine: machine(), N: c.n, Profiles: map[string]string{}}
	fmt.Fprintf(stderr, "machine: %s\ncommit: %s\n", rep.Machine, rep.Commit)

	bundles, err := LoadSyntheaBundles(c.synthea)
	if err != nil {
		return err
	}
	srcName := "synthea"
	if len(bundles) == 0 {
		fmt.Fprintf(stderr, "note: no Synthea bundles in %s: using the built-in templates\n", c.synthea)
		if bundles, err = builtinBundles(); err != nil {
			return err
		}
		srcName = "builtin"
	}
	g, err := NewGenerator(bundles, c.n, c.seed)
	if err != nil {
		return err
	}
	rep.Types, rep.Patients = g.TypeCounts(), g.Copies()
	rep.Data = fmt.Sprintf("%d resources from %d %s bundles: %d patients, %v", g.N(), g.Sources(), srcName, g.Copies(), rep.Types)
	fmt.Fprintf(stderr, "data: %s\n", rep.Data)
	key := fmt.Sprintf("%s-n%d-s%d-g%d", srcName, c.n, c.seed, generatorVersion)
	if free := freeBytes(c.cache); free > 0 && free < int64(c.n)*12_000 {
		fmt.Fprintf(stderr, "warning: %.1f GB free in %s; a run of -n %d may need about %.1f GB\n",
			float64(free)/1e9, c.cache, c.n, float64(c.n)*12_000/1e9)
	}

	// 1. the indexed store (cached, resumable)
	storeDir := filepath.Join(c.cache, "store-"+key)
	progPath := filepath.Join(storeDir, "progress.json")
	if c.regen {
		if err := os.RemoveAll(storeDir); err != nil {
			return err
		}
		c.remeasure = true
	}
	prog, err := readProgress(progPath)
	if err != nil {
		return err
	}
	if prog == nil || !prog.Complete {
		if prog == nil {
			prog = &ingestProgress{Generator: key}
			if err := os.RemoveAll(storeDir); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(stderr, "resuming the load at %d of %d resources\n", prog.Resources, g.N())
		}
		fmt.Fprintf(stderr, "loading %d resources with indexing into %s (transactions of ~%d, %d workers)\n", g.N(), storeDir, c.batch, c.workers)
		if c.cpuProfile != "" {
			f, err := os.Create(c.cpuProfile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return err
			}
			defer f.Close()
		}
		err := loadStore(ctx, storeDir, true, false, g, prog, progPath, c, stderr)
		if c.cpuProfile != "" {
			pprof.StopCPUProfile()
		}
		if err != nil {
			return err
		}
	}
	rep.Indexed = prog
	fmt.Fprintf(stderr, "indexed load: %d resources in %.0f s: %.0f/s (%.0f cpu-µs each)\n", prog.Resources, prog.Seconds,
		float64(prog.Resources)/prog.Seconds, prog.CPU/float64(prog.Resources)*1e6)

	// 2. sizes (dbstat reads every page: cached)
	sizesPath := filepath.Join(storeDir, "sizes.json")
	rep.Sizes = &sizeReport{}
	if b, err := os.ReadFile(sizesPath); err == nil {
		_ = json.Unmarshal(b, rep.Sizes)
	} else {
		st, err := embedded.Open(storeDir, nil)
		if err != nil {
			return err
		}
		sz, err := st.Sizes(ctx)
		st.Close()
		if err != nil {
			return err
		}
		rep.Sizes = &sizeReport{FileBytes: storeFiles(storeDir), ResourceBytes: sz.Resources, IndexBytes: sz.Index, OtherBytes: sz.Other, Tables: sz.Tables}
		if err := writeJSON(sizesPath, rep.Sizes); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "sizes: file %.2f GB, resources %.2f GB, index %.2f GB (index/resource %.2f)\n", float64(rep.Sizes.FileBytes)/1e9,
		float64(rep.Sizes.ResourceBytes)/1e9, float64(rep.Sizes.IndexBytes)/1e9, float64(rep.Sizes.IndexBytes)/float64(rep.Sizes.ResourceBytes))

	// 3. the same load without indexing (and, on request, with audit)
	if c.noIndex {
		if rep.Unindexed, err = cachedLoad(ctx, c, "noindex-"+key, false, false, g, stderr); err != nil {
			return err
		}
	}
	if c.auditLoad {
		if rep.Audited, err = cachedLoad(ctx, c, "audit-"+key, true, true, g, stderr); err != nil {
			return err
		}
	}

	// 4. queries
	pool := newQueryPool(g)
	shapes := pool.shapes()
	if c.shapes != "" {
		var keep []shape
		for _, s := range shapes {
			if strings.Contains(","+c.shapes+",", ","+s.name+",") {
				keep = append(keep, s)
			}
		}
		shapes = keep
	}
	mo := measureOptions{runs: c.runs, requests: c.requests, warmup: c.warmup, conc: c.conc, seed: c.seed, log: stderr}
	runDir := filepath.Join(c.cache, "run-"+key)
	if c.httpPhase || c.direct {
		fmt.Fprintf(stderr, "copying the store to %s\n", runDir)
		if err := copyStore(storeDir, runDir); err != nil {
			return err
		}
		if !c.keep {
			defer os.RemoveAll(runDir)
		}
	}
	if c.httpPhase {
		if err := httpPhase(ctx, c, root, runDir, shapes, mo, rep, stderr); err != nil {
			return err
		}
	}
	if c.direct {
		st, err := openStack(runDir, true, false)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "direct: storage.Store.Search with %d goroutines\n", c.conc)
		do := storeDoer(st.store, st.parser)
		mo.cpu = cpuSeconds
		rep.Direct = measure(ctx, do, shapes, mo)
		rep.DirectOne = measureOne(ctx, do, shapes, mo, stderr)
		st.store.Close()
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	out := filepath.Join(c.cache, fmt.Sprintf("results-%s-%s.json", key, rep.Started.Format("20060102T150405")))
	if err := writeJSON(out, rep); err != nil {
		return err
	}
	printReport(stdout, rep)
	fmt.Fprintf(stderr, "results: %s\n", out)
	return nil
}

// loadStore opens a store in dir and loads the data set into it.
func loadStore(ctx context.Context, dir string, index, audit bool, g *Generator, prog *ingestProgress, progPath string, c *searchConfig, log io.Writer) error {
	st, err := openStack(dir, index, audit)
	if err != nil {
		return err
	}
	err = ingest(ctx, st, g, prog, progPath, ingestOptions{batch: c.batch, workers: c.workers, log: log})
	if cerr := st.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// cachedLoad measures a load into a scratch store once and caches the
// result (not the store).
func cachedLoad(ctx context.Context, c *searchConfig, name string, index, audit bool, g *Generator, log io.Writer) (*ingestProgress, error) {
	path := filepath.Join(c.cache, name+".json")
	if !c.remeasure {
		if p, err := readProgress(path); err == nil && p != nil && p.Complete {
			return p, nil
		}
	}
	dir := filepath.Join(c.cache, "scratch-"+name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(log, "loading %d resources into a scratch store (index %v, audit %v)\n", g.N(), index, audit)
	prog := &ingestProgress{Generator: name}
	if err := loadStore(ctx, dir, index, audit, g, prog, "", c, log); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "  %d resources in %.0f s: %.0f/s (%.0f cpu-µs each); store %.2f GB\n", prog.Resources, prog.Seconds,
		float64(prog.Resources)/prog.Seconds, prog.CPU/float64(prog.Resources)*1e6, float64(storeFiles(dir))/1e9)
	return prog, writeJSON(path, prog)
}

// copyStore copies the store files of src into a fresh dst.
func copyStore(src, dst string) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	files, _ := filepath.Glob(filepath.Join(src, "regie.db*"))
	if len(files) == 0 {
		return errors.New("bench: no store to copy in " + src)
	}
	for _, f := range files {
		if out, err := exec.Command("cp", f, dst).CombinedOutput(); err != nil {
			return fmt.Errorf("copy %s: %v: %s", f, err, out)
		}
	}
	return nil
}

// httpPhase starts `regie serve` on the copy in runDir and measures every
// shape through HTTP.
func httpPhase(ctx context.Context, c *searchConfig, root, runDir string, shapes []shape, mo measureOptions, rep *searchReport, log io.Writer) error {
	bin := filepath.Join(c.cache, "regie")
	build := exec.Command("go", "build", "-o", bin, "./cmd/regie")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(c.cache, "server.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	srv := exec.Command(bin, "serve", "--dev", "--demo=false", "--log-level", "warn", "--listen", addr, "--data", runDir)
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		_ = srv.Process.Signal(os.Interrupt)
		_ = srv.Wait()
	}()
	if err := waitReady("http://" + addr + "/readyz"); err != nil {
		return err
	}
	tok := &tokens{server: "http://" + addr}
	if _, err := tok.get(""); err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}, Timeout: 60 * time.Second}
	do := httpDoer(client, "http://"+addr+"/fhir", tok)
	if c.profile {
		mo.during = func(sh shape, busy func(context.Context)) error {
			pctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go busy(pctx)
			path := filepath.Join(c.cache, "profile-"+sh.name+".pprof")
			if err := fetch("http://"+addr+"/debug/pprof/profile?seconds=10", path); err != nil {
				return err
			}
			cancel()
			top, _ := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", bin, path).CombinedOutput()
			rep.Profiles[sh.name] = string(top)
			fmt.Fprintf(log, "  profile of %s: %s\n", sh.name, path)
			return nil
		}
	}
	pid := srv.Process.Pid
	mo.cpu = func() float64 { return procCPU(pid) }
	fmt.Fprintf(log, "http: regie serve on %s, %d clients\n", addr, c.conc)
	rep.HTTP = measure(ctx, do, shapes, mo)
	rep.HTTPOne = measureOne(ctx, do, shapes, mo, log)
	return nil
}

// measureOne runs the count once more with one client: the counting rate
// of a single request, without queueing behind the other clients.
func measureOne(ctx context.Context, do doer, shapes []shape, mo measureOptions, log io.Writer) []shapeResult {
	var counts []shape
	for _, s := range shapes {
		if s.name == "count" {
			counts = append(counts, s)
		}
	}
	if len(counts) == 0 {
		return nil
	}
	mo.conc, mo.during = 1, nil
	mo.requests = max(20, mo.requests/10)
	mo.warmup = max(5, mo.warmup/10)
	fmt.Fprintln(log, "  the count with one client")
	return measure(ctx, do, counts, mo)
}

func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func freeBytes(dir string) int64 {
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		return 0
	}
	return int64(s.Bavail) * int64(s.Bsize)
}

func gitDescribe(root string) string {
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func machine() string {
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
		}
	}
	return fmt.Sprintf("%d CPUs (%s)%s, %s/%s, %s", runtime.NumCPU(), cpuModel(), mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// printReport writes the figures as Markdown.
func printReport(w io.Writer, r *searchReport) {
	fmt.Fprintf(w, "machine: %s; commit %s; started %s\n", r.Machine, r.Commit, r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "data: %s\n\n", r.Data)
	fmt.Fprintln(w, "| ingestion | resources | seconds | resources/s | cpu-µs/resource | sessions |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	row := func(name string, p *ingestProgress) {
		if p == nil {
			return
		}
		fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.0f | %d |\n", name, p.Resources, p.Seconds, float64(p.Resources)/p.Seconds, p.CPU/float64(p.Resources)*1e6, p.Sessions)
	}
	row("with indexing", r.Indexed)
	row("without indexing", r.Unindexed)
	row("with indexing and an AuditEvent per resource", r.Audited)
	if r.Unindexed != nil {
		a := float64(r.Indexed.Resources) / r.Indexed.Seconds
		b := float64(r.Unindexed.Resources) / r.Unindexed.Seconds
		fmt.Fprintf(w, "\nunindexed/indexed rate: %.2f× (wall), %.2f× (cpu per resource)\n", b/a,
			(r.Indexed.CPU/float64(r.Indexed.Resources))/(r.Unindexed.CPU/float64(r.Unindexed.Resources)))
	}
	if len(r.Indexed.Marks) > 0 {
		fmt.Fprint(w, "indexed load, rate per tenth: ")
		prev := ingestMark{}
		for i, m := range r.Indexed.Marks {
			if i > 0 {
				fmt.Fprint(w, ", ")
			}
			fmt.Fprintf(w, "%.0f", float64(m.Resources-prev.Resources)/(m.Seconds-prev.Seconds))
			prev = m
		}
		fmt.Fprintln(w, " /s")
	}
	if s := r.Sizes; s != nil {
		fmt.Fprintf(w, "\nstore file %.2f GB; resources %.2f GB; index %.2f GB; other %.2f GB; index/resource %.2f\n\n",
			float64(s.FileBytes)/1e9, float64(s.ResourceBytes)/1e9, float64(s.IndexBytes)/1e9, float64(s.OtherBytes)/1e9,
			float64(s.IndexBytes)/float64(s.ResourceBytes))
	}
	table := func(title string, rs []shapeResult) {
		if len(rs) == 0 {
			return
		}
		fmt.Fprintf(w, "%s\n\n| query | clients | p50 ms | p95 ms | p99 ms | req/s | cpu-ms/req | matches (+included)/req | bytes/req | target | errors | load |\n", title)
		fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
		for _, s := range rs {
			if s.Skipped != "" {
				fmt.Fprintf(w, "| %s | %d | – | – | – | – | – | – | – | %s | not run: %s | %s |\n", s.Label, s.Conc, target(s), truncate(s.Skipped, 120), s.Load)
				continue
			}
			m := fmt.Sprintf("%.1f", s.Matches)
			if s.Included > 0 {
				m += fmt.Sprintf(" (+%.1f)", s.Included)
			}
			fmt.Fprintf(w, "| %s | %d | %.2f | %.2f | %.2f | %.0f | %.2f | %s | %.0f | %s | %d (+%d warm-up) | %s |\n", s.Label, s.Conc, s.P50, s.P95, s.P99, s.RPS,
				s.CPUms, m, s.Bytes, target(s), s.Errors, s.WarmupBad, s.Load)
		}
		for _, s := range rs {
			if s.CountRate > 0 {
				fmt.Fprintf(w, "\ncount (%d client(s)): %.2f M matches/s per request (Σ matches / Σ latency), %.2f M/s all clients together\n",
					s.Conc, s.CountRate/1e6, s.Throughput/1e6)
			}
			if s.ErrMsg != "" {
				fmt.Fprintf(w, "\n%s: first error: %s\n", s.Shape, truncate(s.ErrMsg, 300))
			}
		}
		fmt.Fprintln(w)
	}
	table("Through HTTP (`regie serve`, AuditEvent per search)", r.HTTP)
	table("Through HTTP, one client", r.HTTPOne)
	table("Directly against the store (storage.Store.Search)", r.Direct)
	table("Directly against the store, one client", r.DirectOne)
	for name, p := range r.Profiles {
		fmt.Fprintf(w, "profile of %s:\n```\n%s```\n", name, p)
	}
}

func target(s shapeResult) string {
	switch {
	case s.Skipped != "" || s.Errors > 0:
		return "not measured"
	case s.TargetP95 > 0:
		mark := "met"
		if s.P95 > s.TargetP95 {
			mark = "missed"
		}
		return fmt.Sprintf("p95 ≤ %.0f ms: %s", s.TargetP95, mark)
	case s.CountRate > 0 && s.Conc == 1:
		mark := "met"
		if s.CountRate < 2e6 {
			mark = "missed"
		}
		return fmt.Sprintf("≥ 2 M/s: %.2f M/s, %s", s.CountRate/1e6, mark)
	case s.CountRate > 0:
		return "(see one client)"
	}
	return ""
}
