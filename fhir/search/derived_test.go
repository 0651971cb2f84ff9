package search

import (
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"regie/fhir"
	"regie/profiles"
)

// TestDerivedParams checks which R4 parameters are found to be unions of
// others: Observation's combo-* parameters, and nothing else.
func TestDerivedParams(t *testing.T) {
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"combo-code":                {"code", "component-code"},
		"combo-code-value-concept":  {"code-value-concept", "component-code-value-concept"},
		"combo-code-value-quantity": {"code-value-quantity", "component-code-value-quantity"},
		"combo-data-absent-reason":  {"component-data-absent-reason", "data-absent-reason"},
		"combo-value-concept":       {"component-value-concept", "value-concept"},
		"combo-value-quantity":      {"component-value-quantity", "value-quantity"},
	}
	got := derivedParams(defs)
	if len(got) != len(want) {
		t.Errorf("derived parameters: got %v, want %v", got, want)
	}
	for code, from := range want {
		if !slices.Equal(got[code], from) {
			t.Errorf("%s: derived from %v, want %v", code, got[code], from)
		}
	}
	ix, err := NewIndexer(defs, IndexerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, sp := range ix.Params("Observation") {
		listed[sp.Code] = true
	}
	for code := range want {
		if !listed[code] {
			t.Errorf("Params(Observation) lacks the derived %s: searches with it are supported", code)
		}
	}
}

// TestDerivedSearchesAgree compares, over the Observations of the shared
// examples and Synthea bundles, every search on a derived parameter as the
// parser rewrites it, evaluated on the entries the indexer stores (none
// for derived parameters), with the request as given, evaluated on entries
// that include the derived parameters' own: values, :text, :not,
// :missing, prefixes, units and composite values.
func TestDerivedSearchesAgree(t *testing.T) {
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		t.Fatal(err)
	}
	full, err := NewIndexer(defs, IndexerConfig{keepDerived: true})
	if err != nil {
		t.Fatal(err)
	}
	lean, err := NewIndexer(defs, IndexerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var fullDocs, leanDocs []*Doc
	var leanEntries, fullEntries int
	resources := exampleResources(t, true)
	names := make([]string, 0, len(resources))
	for name := range resources {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		body := resources[name]
		if typ, _, err := fhir.Header(body); err != nil || typ != "Observation" {
			continue
		}
		f, err1 := full.Index("Observation", body)
		l, err2 := lean.Index("Observation", body)
		if err1 != nil || err2 != nil {
			continue
		}
		fullDocs = append(fullDocs, &Doc{Type: "Observation", ID: name, Entries: f})
		leanDocs = append(leanDocs, &Doc{Type: "Observation", ID: name, Entries: l})
		fullEntries += len(f)
		leanEntries += len(l)
	}
	if len(fullDocs) < 100 {
		t.Fatalf("only %d Observations", len(fullDocs))
	}
	t.Logf("%d Observations: %d entries with the derived parameters, %d without (%.0f %% fewer)",
		len(fullDocs), fullEntries, leanEntries, 100*float64(fullEntries-leanEntries)/float64(fullEntries))

	// queries built from values that occur, and some that do not
	r := rand.New(rand.NewPCG(3, 4))
	var queries []string
	tokenValue := func(e Entry) string {
		switch r.IntN(4) {
		case 0:
			return e.Code
		case 1:
			return e.System + "|"
		default:
			return e.System + "|" + e.Code
		}
	}
	quantityValue := func(e Entry) string {
		prefix := []string{"", "gt", "lt", "ge", "le", "ne", "ap", "sa", "eb"}[r.IntN(9)]
		v := strconv.FormatFloat(e.Num*(0.5+r.Float64()), 'f', 1, 64)
		switch r.IntN(3) {
		case 0:
			return prefix + v
		case 1:
			if e.UnitCode == "" {
				return prefix + v
			}
			return prefix + v + "|" + e.UnitSystem + "|" + e.UnitCode
		default:
			if e.UnitCode == "" {
				return prefix + v
			}
			return prefix + v + "||" + e.UnitCode
		}
	}
	for range 400 {
		d := fullDocs[r.IntN(len(fullDocs))]
		for _, e := range d.Entries {
			if r.IntN(4) != 0 || e.Type == fhir.ParamToken && e.Code == "" {
				continue
			}
			switch {
			case e.Param == "combo-code" || e.Param == "combo-value-concept" || e.Param == "combo-data-absent-reason":
				queries = append(queries, e.Param+"="+url.QueryEscape(tokenValue(e)))
				queries = append(queries, e.Param+":not="+url.QueryEscape(tokenValue(e)))
				if w := strings.Trim(strings.Fields(e.Text + " x")[0], ",$|\\"); w != "" {
					queries = append(queries, e.Param+":text="+url.QueryEscape(w))
				}
			case e.Param == "combo-value-quantity":
				queries = append(queries, e.Param+"="+url.QueryEscape(quantityValue(e)))
			case e.Param == "combo-code-value-quantity#0" || e.Param == "combo-code-value-concept#0":
				base := strings.TrimSuffix(e.Param, "#0")
				for _, c := range d.Entries {
					if c.Param == base+"#1" && c.Group == e.Group && !(c.Type == fhir.ParamToken && c.Code == "") {
						v := tokenValue(c)
						if c.Type == fhir.ParamQuantity {
							v = quantityValue(c)
						}
						queries = append(queries, base+"="+url.QueryEscape(tokenValue(e)+"$"+v))
					}
				}
			}
		}
	}
	for code := range derivedParams(defs) {
		queries = append(queries, code+":missing=true", code+":missing=false")
		switch {
		case strings.Contains(code, "code-value"):
			queries = append(queries, code+"=http://example.org|nothing$"+map[bool]string{true: "5", false: "x"}[strings.HasSuffix(code, "quantity")])
		case strings.HasSuffix(code, "quantity"):
			queries = append(queries, code+"=99999|http://example.org|nothing")
		default:
			queries = append(queries, code+"=http://example.org|nothing,nothing-else")
		}
	}
	queries = append(queries, "combo-code=http://loinc.org|8480-6&combo-value-quantity=gt100")
	r.Shuffle(len(queries), func(i, j int) { queries[i], queries[j] = queries[j], queries[i] })
	queries = queries[:min(len(queries), 600)]
	p := NewParser(defs, Config{})
	matched := 0
	for _, raw := range queries {
		ps, err := ParseParams(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		q, warns, err := p.Parse([]string{"Observation"}, ps, Options{Strict: true, Now: time.Now()})
		if err != nil || len(warns) > 0 {
			t.Fatalf("%s: %v %v", raw, err, warns)
		}
		if q.Request == nil {
			t.Fatalf("%s: not rewritten", raw)
		}
		if got := Canonical(q); strings.Contains(got, "component") && !strings.Contains(raw, "component") {
			t.Errorf("%s: canonical form shows the rewrite: %s", raw, got)
		}
		var got, want []string
		for i := range fullDocs {
			if Eval(q.Where, leanDocs[i], nil) {
				got = append(got, leanDocs[i].ID)
			}
			if Eval(q.Request, fullDocs[i], nil) {
				want = append(want, fullDocs[i].ID)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %d matches answered from the constituents, %d with the parameter's own entries", raw, len(got), len(want))
		}
		if len(want) > 0 {
			matched++
		}
	}
	t.Logf("%d searches agree, %d of them with matches", len(queries), matched)
	if matched < len(queries)/3 {
		t.Errorf("only %d of %d searches match anything: the test data misses the point", matched, len(queries))
	}
}

// TestDerivedSort checks that sorting by a derived parameter is reported
// as unsupported (its order would need every constituent's values).
func TestDerivedSort(t *testing.T) {
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		t.Fatal(err)
	}
	p := NewParser(defs, Config{})
	ps, _ := ParseParams("_sort=combo-code")
	if _, _, err := p.Parse([]string{"Observation"}, ps, Options{Strict: true}); err == nil {
		t.Error("sorting by combo-code was accepted")
	}
	ps, _ = ParseParams("_sort=code")
	if _, _, err := p.Parse([]string{"Observation"}, ps, Options{Strict: true}); err != nil {
		t.Errorf("sorting by code: %v", err)
	}
}
