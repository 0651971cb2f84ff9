package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// storeFlags are the flags of commands that open the store.
type storeFlags struct {
	data, store, baseURL, logLevel string
}

func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.data, "data", "./data", "directory of the embedded store")
	fs.StringVar(&f.store, "store", "", "store URL (see regie serve)")
	fs.StringVar(&f.baseURL, "base-url", "http://localhost:8080", "external URL of the server (absolute references under it are local)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log level")
}

func (f *storeFlags) open(stderr io.Writer) (*components, error) {
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return nil, err
	}
	return build(f.store, f.data, f.baseURL, log)
}

// reindexCmd recomputes the search index of every resource, after the
// search parameter definitions changed.
func reindexCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reindex", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf storeFlags
	sf.register(fs)
	if err := parseFlags(fs, args, os.Getenv); err != nil {
		return err
	}
	c, err := sf.open(stderr)
	if err != nil {
		return err
	}
	defer c.store.Close()
	n, err := c.engine.Reindex(adminContext(ctx, "reindex"))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "reindexed %d resources\n", n)
	return nil
}

// exportCmd writes every current resource as NDJSON.
func exportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf storeFlags
	sf.register(fs)
	types := fs.String("types", "", "comma-separated resource types to export (default: all)")
	out := fs.String("o", "-", "output file (- for standard output)")
	if err := parseFlags(fs, args, os.Getenv); err != nil {
		return err
	}
	c, err := sf.open(stderr)
	if err != nil {
		return err
	}
	defer c.store.Close()
	var w io.Writer = stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var ts []string
	if *types != "" {
		ts = strings.Split(*types, ",")
	}
	n, err := c.engine.Export(adminContext(ctx, "export"), bw, ts)
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "exported %d resources\n", n)
	return nil
}

// auditCmd groups the audit trail commands: `regie audit verify`.
func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("usage: regie audit verify [--data dir]")
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf storeFlags
	sf.register(fs)
	if err := parseFlags(fs, args[1:], os.Getenv); err != nil {
		return err
	}
	c, err := sf.open(stderr)
	if err != nil {
		return err
	}
	defer c.store.Close()
	n, err := c.engine.VerifyAudit(ctx)
	if err != nil {
		fmt.Fprintf(stdout, "audit trail BROKEN after %d intact AuditEvents: %v\n", n, err)
		return errAuditBroken
	}
	fmt.Fprintf(stdout, "audit trail intact: %d AuditEvents, every link verified\n", n)
	return nil
}

// errAuditBroken makes `regie audit verify` exit non-zero.
var errAuditBroken = errors.New("the audit trail does not verify")
