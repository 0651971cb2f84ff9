package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"regie/fhir"
)

// importCmd loads resources into the store through the engine, so every
// resource is validated and indexed as if it came through the API. It reads
// .json files (a resource, an array of resources, or a Bundle: transaction
// and batch Bundles are run as such, other Bundles are unpacked) and .ndjson
// files (one resource per line), from the files and directories given.
func importCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "directory of the embedded store")
	storeURL := fs.String("store", "", "store URL (see regie serve)")
	logLevel := fs.String("log-level", "warn", "log level")
	baseURL := fs.String("base-url", "http://localhost:8080", "external URL of the server (absolute references under it are local)")
	if err := parseFlags(fs, args, os.Getenv); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("import: name the files or directories to import")
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	c, err := build(*storeURL, *data, *baseURL, log)
	if err != nil {
		return err
	}
	defer c.store.Close()
	var files []string
	for _, arg := range fs.Args() {
		err := filepath.WalkDir(arg, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && (strings.HasSuffix(p, ".json") || strings.HasSuffix(p, ".ndjson")) {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	sort.Strings(files)
	ctx = adminContext(ctx, "import")
	var n, failed int
	for _, f := range files {
		k, bad, err := importFile(ctx, c, f, stderr)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		n += k
		failed += bad
	}
	fmt.Fprintf(stdout, "imported %d resources from %d files; %d rejected\n", n, len(files), failed)
	if failed > 0 {
		return fmt.Errorf("import: %d resources rejected", failed)
	}
	return nil
}

func importFile(ctx context.Context, c *components, path string, stderr io.Writer) (n, failed int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	if strings.HasSuffix(path, ".ndjson") {
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		line := 0
		for sc.Scan() {
			line++
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			if err := importResource(ctx, c, sc.Bytes()); err != nil {
				fmt.Fprintf(stderr, "%s:%d: %v\n", path, line, err)
				failed++
				continue
			}
			n++
		}
		return n, failed, sc.Err()
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		// a JSON array of resources
		i := 0
		err := fhir.ScanArray(t, func(res []byte) error {
			if err := importResource(ctx, c, res); err != nil {
				fmt.Fprintf(stderr, "%s: element %d: %v\n", path, i, err)
				failed++
			} else {
				n++
			}
			i++
			return nil
		})
		return n, failed, err
	}
	rt, _, err := fhir.Header(b)
	if err != nil {
		return 0, 0, err
	}
	if rt == "Bundle" {
		var bt struct {
			Type  string `json:"type"`
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &bt); err != nil {
			return 0, 0, err
		}
		if bt.Type == "transaction" || bt.Type == "batch" {
			_, results, err := c.engine.Bundle(ctx, b)
			if err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", path, err)
				return 0, 1, nil
			}
			for _, r := range results {
				if r.Err != nil {
					fmt.Fprintf(stderr, "%s: %v\n", path, r.Err)
					failed++
				} else {
					n++
				}
			}
			return n, failed, nil
		}
		for i, e := range bt.Entry {
			if len(e.Resource) == 0 {
				continue
			}
			if err := importResource(ctx, c, e.Resource); err != nil {
				fmt.Fprintf(stderr, "%s: entry %d: %v\n", path, i, err)
				failed++
				continue
			}
			n++
		}
		return n, failed, nil
	}
	if err := importResource(ctx, c, b); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 0, 1, nil
	}
	return 1, 0, nil
}

// importResource stores one resource under its own id (update as create),
// or under a new id when it has none.
func importResource(ctx context.Context, c *components, body []byte) error {
	rt, id, err := fhir.Header(body)
	if err != nil {
		return err
	}
	if id == "" {
		_, err = c.engine.Create(ctx, rt, body)
	} else {
		_, err = c.engine.Update(ctx, rt, id, body, "")
	}
	return err
}
