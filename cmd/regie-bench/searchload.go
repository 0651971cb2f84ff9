package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"regie/auth"
	"regie/auth/policy"
	"regie/fhir"
	"regie/fhir/search"
	"regie/profiles"
	"regie/server/engine"
	"regie/storage/embedded"
)

// benchBase is the base URL the benchmark's engine and parser run under
// (references are local either way).
const benchBase = "http://localhost:8080/fhir"

// stack is a store with the engine on it, built as `regie serve` and
// `regie import` build theirs.
type stack struct {
	defs   *fhir.Definitions
	store  *embedded.Store
	engine *engine.Engine
	parser *search.Parser
}

// openStack opens the embedded store in dir and builds the engine: the R4
// validator, the access policy, and the indexer unless index is false
// (then every write is stored with no index entries). audit makes the
// engine write an AuditEvent per written resource, as `regie import` does.
func openStack(dir string, index, audit bool) (*stack, error) {
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		return nil, err
	}
	val, err := fhir.NewValidator(defs)
	if err != nil {
		return nil, err
	}
	parser := search.NewParser(defs, search.Config{BaseURL: benchBase})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := embedded.Open(dir, &embedded.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	pol, err := policy.New(policy.Config{Definitions: defs, Source: st, Records: st, Parser: parser, Logger: log})
	if err != nil {
		st.Close()
		return nil, err
	}
	cfg := engine.Config{Definitions: defs, Validator: val, Store: st, Parser: parser, Policy: pol, Audit: audit, Logger: log}
	if index {
		idx, err := search.NewIndexer(defs, search.IndexerConfig{BaseURL: benchBase})
		if err != nil {
			st.Close()
			return nil, err
		}
		cfg.Indexer = idx
	}
	eng, err := engine.New(cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &stack{defs: defs, store: st, engine: eng, parser: parser}, nil
}

// adminCtx is the context of the loading: a system principal, as the
// administration commands use.
func adminCtx(ctx context.Context) context.Context {
	return auth.WithPrincipal(ctx, &auth.Principal{Kind: auth.KindSystem, Subject: "Device/regie-bench", ClientID: "regie-bench", Scopes: []string{"system/*.cruds"}})
}

// transactionBundle returns a transaction Bundle that PUTs rs (update as
// create, so the ids are the generator's).
func transactionBundle(rs []GenResource) []byte {
	n := 64
	for _, r := range rs {
		n += len(r.Body) + len(r.Type) + len(r.ID) + 64
	}
	b := make([]byte, 0, n)
	b = append(b, `{"resourceType":"Bundle","type":"transaction","entry":[`...)
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"resource":`...)
		b = append(b, r.Body...)
		b = append(b, `,"request":{"method":"PUT","url":`...)
		b = fhir.AppendString(b, r.Type+"/"+r.ID)
		b = append(b, `}}`...)
	}
	return append(b, `]}`...)
}

// ingestProgress is kept next to a store being loaded, so that an
// interrupted load resumes where it stopped.
type ingestProgress struct {
	Generator string  `json:"generator"` // what the data set is: source, n, seed
	Copies    int     `json:"copies"`    // copies written, in order (all below are done)
	Shared    bool    `json:"shared"`
	Resources int     `json:"resources"`
	Seconds   float64 `json:"seconds"` // wall time spent loading, over all sessions
	CPU       float64 `json:"cpuSeconds"`
	Sessions  int     `json:"sessions"`
	Complete  bool    `json:"complete"`
	// Marks are the elapsed seconds at every tenth of the resources, to see
	// how the rate changes as the store grows.
	Marks []ingestMark `json:"marks,omitempty"`
}

type ingestMark struct {
	Resources int     `json:"resources"`
	Seconds   float64 `json:"seconds"`
}

func readProgress(path string) (*ingestProgress, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p := &ingestProgress{}
	return p, json.Unmarshal(b, p)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// cpuSeconds is the process's user plus system time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

type ingestOptions struct {
	batch   int // resources per transaction (whole copies)
	workers int
	log     io.Writer
}

// ingest loads the generator's data set into st, resuming from prog (which
// it updates in progPath after every transaction when progPath is set).
func ingest(ctx context.Context, st *stack, g *Generator, prog *ingestProgress, progPath string, o ingestOptions) error {
	ctx = adminCtx(ctx)
	save := func() error {
		if progPath == "" {
			return nil
		}
		return writeJSON(progPath, prog)
	}
	start, cpu0 := time.Now(), cpuSeconds()
	base, baseCPU := prog.Seconds, prog.CPU
	prog.Sessions++
	elapsed := func() float64 { return base + time.Since(start).Seconds() }
	if !prog.Shared {
		if err := runBundle(ctx, st, g.Shared()); err != nil {
			return fmt.Errorf("shared resources: %w", err)
		}
		prog.Shared, prog.Resources = true, prog.Resources+len(g.Shared())
		if err := save(); err != nil {
			return err
		}
	}
	type job struct{ from, to, n int }
	jobs := make(chan job)
	type done struct {
		job
		err error
	}
	results := make(chan done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < o.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				var rs []GenResource
				for k := j.from; k < j.to; k++ {
					rs = append(rs, g.Copy(k)...)
				}
				err := runBundle(ctx, st, rs)
				select {
				case results <- done{j, err}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for k := prog.Copies; k < g.Copies(); {
			j := job{from: k}
			for k < g.Copies() && (j.n == 0 || j.n+g.CopyLen(k) <= o.batch) {
				j.n += g.CopyLen(k)
				k++
			}
			j.to = k
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	finished := map[int]done{} // by from
	nextMark := (len(prog.Marks) + 1) * g.N() / 10
	lastLog := time.Now()
	var firstErr error
	for prog.Copies < g.Copies() && firstErr == nil {
		var d done
		select {
		case d = <-results:
		case <-ctx.Done():
			firstErr = ctx.Err()
			continue
		}
		if d.err != nil {
			firstErr = fmt.Errorf("copies %d to %d: %w", d.from, d.to-1, d.err)
			break
		}
		finished[d.from] = d
		for {
			f, ok := finished[prog.Copies]
			if !ok {
				break
			}
			delete(finished, prog.Copies)
			prog.Copies = f.to
			prog.Resources += f.n
		}
		prog.Seconds, prog.CPU = elapsed(), baseCPU+cpuSeconds()-cpu0
		for nextMark > 0 && prog.Resources >= nextMark && len(prog.Marks) < 10 {
			prog.Marks = append(prog.Marks, ingestMark{Resources: prog.Resources, Seconds: prog.Seconds})
			nextMark = (len(prog.Marks) + 1) * g.N() / 10
		}
		if err := save(); err != nil {
			firstErr = err
			break
		}
		if o.log != nil && time.Since(lastLog) > 15*time.Second {
			lastLog = time.Now()
			fmt.Fprintf(o.log, "  loaded %d of %d resources (%.0f/s, load %s)\n", prog.Resources, g.N(), float64(prog.Resources)/prog.Seconds, loadAvg())
		}
	}
	cancel()
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	prog.Seconds, prog.CPU = elapsed(), baseCPU+cpuSeconds()-cpu0
	prog.Complete = true
	return save()
}

// runBundle writes rs in one transaction through the engine.
func runBundle(ctx context.Context, st *stack, rs []GenResource) error {
	if len(rs) == 0 {
		return nil
	}
	_, results, err := st.engine.Bundle(ctx, transactionBundle(rs))
	if err != nil {
		return err
	}
	for i, r := range results {
		if r.Err != nil {
			return fmt.Errorf("%s: %w", rs[i].Ref(), r.Err)
		}
	}
	return nil
}

// storeFiles returns the size of the store's files in dir.
func storeFiles(dir string) int64 {
	var n int64
	matches, _ := filepath.Glob(filepath.Join(dir, "regie.db*"))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil {
			n += fi.Size()
		}
	}
	return n
}
