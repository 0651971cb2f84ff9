package fhirpath_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"regie/fhir"
	"regie/fhir/fhirpath"
	"regie/profiles"
)

// compiledParams compiles the expression and component expressions of
// every R4 search parameter in the embedded definitions.
func compiledParams(t *testing.T) (map[string]*fhirpath.Expression, int) {
	t.Helper()
	b, err := fs.ReadFile(profiles.R4(), "search-parameters.json")
	if err != nil {
		t.Fatal(err)
	}
	var params []fhir.SearchParam
	if err := json.Unmarshal(b, &params); err != nil {
		t.Fatal(err)
	}
	exprs := map[string]*fhirpath.Expression{}
	withExpr := 0
	for _, p := range params {
		srcs := []string{p.Expression}
		if p.Expression != "" {
			withExpr++
		}
		for _, c := range p.Component {
			srcs = append(srcs, c.Expression)
		}
		for _, src := range srcs {
			if src == "" || exprs[src] != nil {
				continue
			}
			e, err := fhirpath.Compile(src)
			if err != nil {
				t.Errorf("%s: %q: %v", p.URL, src, err)
				continue
			}
			exprs[src] = e
		}
	}
	return exprs, withExpr
}

func TestSearchParameterExpressionsCompile(t *testing.T) {
	exprs, withExpr := compiledParams(t)
	if withExpr != 1384 {
		t.Errorf("%d search parameters with an expression, want 1384 (R4 4.0.1)", withExpr)
	}
	t.Logf("%d parameters with an expression, %d distinct expressions compiled", withExpr, len(exprs))
}

// exampleResources yields every resource of the shared example sets: each
// file's resource and, for Bundles, every entry's resource (evaluated in
// place, so references resolve inside the Bundle).
func exampleResources(t *testing.T, defs *fhir.Definitions, dirs []string, fn func(file string, n *fhirpath.Node)) int {
	t.Helper()
	count := 0
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, f := range files {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			root, err := fhirpath.ParseResource(defs, body)
			if err != nil {
				if strings.Contains(err.Error(), "no resourceType") || strings.Contains(err.Error(), "not an object") {
					continue // manifests and counts next to the data
				}
				t.Errorf("%s: %v", f, err)
				continue
			}
			fn(f, root)
			count++
			for _, e := range root.Children("entry") {
				if r := e.Child("resource"); r != nil {
					fn(f, r)
					count++
				}
			}
		}
	}
	return count
}

func TestSearchParameterExpressionsEvaluate(t *testing.T) {
	shared := filepath.Join("..", "..", "..", "shared", "fhir")
	dirs := []string{filepath.Join("testdata", "suite", "input")}
	if _, err := os.Stat(shared); err != nil {
		t.Logf("%s is absent: evaluating on the suite's input resources only", shared)
	} else {
		dirs = append(dirs, filepath.Join(shared, "examples-subset"))
		if !testing.Short() {
			dirs = append(dirs, filepath.Join(shared, "synthea"))
		}
	}
	defs := loadDefs(t)
	exprs, _ := compiledParams(t)
	// parameters the definitions add beyond the R4 core package
	for _, rt := range defs.ResourceTypes() {
		for _, p := range defs.SearchParams(rt) {
			for _, src := range append([]string{p.Expression}, componentExprs(p)...) {
				if src == "" || exprs[src] != nil {
					continue
				}
				e, err := fhirpath.Compile(src)
				if err != nil {
					t.Fatalf("%s: %q: %v", p.URL, src, err)
				}
				exprs[src] = e
			}
		}
	}
	ctx := context.Background()
	var evals, nonEmpty int
	hit := map[string]bool{}
	byType := map[string]int{}
	n := exampleResources(t, defs, dirs, func(file string, root *fhirpath.Node) {
		byType[root.TypeName()]++
		for _, p := range defs.SearchParams(root.TypeName()) {
			if p.Expression == "" {
				continue
			}
			res, err := exprs[p.Expression].Evaluate(ctx, root, nil)
			evals++
			if err != nil {
				t.Errorf("%s on %s (%s): %v", p.URL, root.TypeName(), filepath.Base(file), err)
				continue
			}
			if len(res) > 0 {
				nonEmpty++
				hit[p.URL] = true
			}
			for _, c := range p.Component {
				for _, item := range res {
					if _, err := exprs[c.Expression].EvaluateCollection(ctx, fhirpath.Collection{item}, nil); err != nil {
						t.Errorf("%s component %q on %s: %v", p.URL, c.Expression, filepath.Base(file), err)
					}
					evals++
				}
			}
		}
	})
	types := make([]string, 0, len(byType))
	for k := range byType {
		types = append(types, k)
	}
	sort.Strings(types)
	t.Logf("%d resources of %d types, %d evaluations, %d non-empty results, %d parameters matched at least once",
		n, len(types), evals, nonEmpty, len(hit))
	if n == 0 || nonEmpty == 0 {
		t.Error("nothing was evaluated")
	}
}

func componentExprs(p *fhir.SearchParam) []string {
	var out []string
	for _, c := range p.Component {
		out = append(out, c.Expression)
	}
	return out
}
