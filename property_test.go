package regie

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"regie/auth"
	"regie/auth/policy"
	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// oracle knows every current resource of the demo with its index entries:
// the brute-force side of the property test.
type oracle struct {
	docs map[string][]*search.Doc // type -> documents
	pol  *policy.Policy
	p    *parts
}

func newOracle(t *testing.T, s *stack, p *parts) *oracle {
	t.Helper()
	o := &oracle{docs: map[string][]*search.Doc{}, p: p}
	var err error
	o.pol, err = policy.New(policy.Config{Definitions: p.defs, Source: s.store, Records: s.store, Parser: p.parser})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, typ := range p.defs.ResourceTypes() {
		q := &search.Query{Types: []string{typ}, Count: storage.MaxCount, Total: search.TotalNone}
		for {
			page, err := s.store.Search(ctx, q)
			if err != nil {
				t.Fatalf("loading %s: %v", typ, err)
			}
			for _, r := range page.Resources {
				entries, err := p.idx.Index(r.Type, r.Body)
				if err != nil {
					t.Fatal(err)
				}
				o.docs[typ] = append(o.docs[typ], &search.Doc{Type: r.Type, ID: r.ID, LastUpdated: r.LastUpdated, Entries: entries})
			}
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
	}
	return o
}

// expected returns the ids ("Type/id") a search of typ with params should
// return for principal pr: every resource that matches the query and that
// the policy's single-resource decision lets pr read.
func (o *oracle) expected(t *testing.T, pr *auth.Principal, typ string, params []search.Param) map[string]bool {
	t.Helper()
	q, _, err := o.p.parser.Parse([]string{typ}, params, search.Options{})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	acc, err := o.pol.For(context.Background(), pr)
	if err != nil {
		t.Fatal(err)
	}
	// chains and _has see only what the principal may read
	visible := &visibleDocs{o: o, acc: acc}
	want := map[string]bool{}
	for _, d := range o.docs[typ] {
		if visible.can(d) && search.Eval(q.Where, d, visible) {
			want[d.Type+"/"+d.ID] = true
		}
	}
	return want
}

// visibleDocs is the oracle seen through one principal's eyes.
type visibleDocs struct {
	o   *oracle
	acc *policy.Access
}

func (v *visibleDocs) can(d *search.Doc) bool {
	return v.acc.CanRead(&policy.Doc{Type: d.Type, ID: d.ID, LastUpdated: d.LastUpdated, Entries: d.Entries}, auth.InteractionSearch) == nil
}

func (v *visibleDocs) Resolve(typ, id string) *search.Doc {
	if d := v.o.Resolve(typ, id); d != nil && v.can(d) {
		return d
	}
	return nil
}

func (v *visibleDocs) Docs(typ string) []*search.Doc {
	var out []*search.Doc
	for _, d := range v.o.docs[typ] {
		if v.can(d) {
			out = append(out, d)
		}
	}
	return out
}

// Resolve and Docs make the oracle a search.Resolver for chains and _has.
func (o *oracle) Resolve(typ, id string) *search.Doc {
	for _, d := range o.docs[typ] {
		if d.ID == id {
			return d
		}
	}
	return nil
}

func (o *oracle) Docs(typ string) []*search.Doc { return o.docs[typ] }

// TestSearchesAgreeWithThePolicy compares, for random principals and random
// searches over the demo dossiers, what the API returns (page by page, with
// totals) with a brute-force oracle that loads everything and filters it
// with the policy's single-resource decision. Target: zero differences,
// zero leaks, no half-empty pages.
func TestSearchesAgreeWithThePolicy(t *testing.T) {
	p := newParts(t)
	s := startStack(t, p, t.TempDir())
	defer s.close()
	s.loadDemo(t, p)
	o := newOracle(t, s, p)

	// the people of the matrix, as tokens and as principals
	type who struct {
		row   *matrixRow
		token string
		p     *auth.Principal
	}
	seen := map[string]bool{}
	var people []*who
	for i, r := range loadMatrix(t) {
		key := r.Principal.Subject + "|" + r.Principal.ActingFor + "|" + r.Principal.Organization
		if seen[key] {
			continue
		}
		seen[key] = true
		row := loadMatrix(t)[i]
		row.Principal.SecondFactorAgeSeconds = nil
		w := &who{row: &row}
		w.token = s.token(t, w.row)
		pr, err := s.broker.AuthenticateBearer(context.Background(), "Bearer "+w.token, auth.RequestMeta{})
		if err != nil {
			t.Fatal(err)
		}
		w.p = pr
		people = append(people, w)
	}
	types := []string{"Patient", "CarePlan", "Goal", "Observation", "Encounter", "Communication", "Task", "DocumentReference",
		"Appointment", "QuestionnaireResponse", "Consent", "EpisodeOfCare", "ServiceRequest", "RelatedPerson", "CareTeam", "Practitioner"}
	var patients []string
	for _, d := range o.docs["Patient"] {
		patients = append(patients, d.ID)
	}
	sort.Strings(patients)
	rng := rand.New(rand.NewPCG(7, 11))
	const rounds = 300
	failures := 0
	// Every principal also runs the searches that look into other
	// resources (side channels), on top of the random ones.
	type fixed struct {
		typ    string
		params []search.Param
	}
	var fixedSearches []fixed
	for _, f := range []fixed{
		{"CarePlan", []search.Param{{Name: "subject:Patient.gender", Value: "male"}}},
		{"CarePlan", []search.Param{{Name: "subject:Patient.gender", Value: "female"}}},
		{"ServiceRequest", []search.Param{{Name: "subject:Patient.gender", Value: "female"}}},
		{"Patient", []search.Param{{Name: "_has:Observation:subject:category", Value: "journal"}}},
		{"Patient", []search.Param{{Name: "_has:Communication:subject:status", Value: "completed"}}},
		{"Patient", []search.Param{{Name: "_has:Task:patient:status", Value: "requested,in-progress,completed"}}},
		{"Goal", []search.Param{{Name: "patient:Patient._has:Observation:subject:category", Value: "journal"}}},
	} {
		f.params = append(f.params, search.Param{Name: "_count", Value: "2"}, search.Param{Name: "_total", Value: "accurate"})
		fixedSearches = append(fixedSearches, f)
	}
	for i := 0; i < rounds+len(people)*len(fixedSearches); i++ {
		w := people[rng.IntN(len(people))]
		typ := types[rng.IntN(len(types))]
		if j := i - rounds; j >= 0 {
			w, typ = people[j/len(fixedSearches)], fixedSearches[j%len(fixedSearches)].typ
			f := fixedSearches[j%len(fixedSearches)]
			want := o.expected(t, w.p, typ, f.params)
			got, err := s.walk(t, w.token, typ, f.params, 2, o, w.p)
			name := fmt.Sprintf("%s acting for %q: %s?%s", w.row.Principal.Subject, w.row.Principal.ActingFor, typ, encodeParams(f.params))
			if err != nil {
				if strings.Contains(err.Error(), "status 403") && len(want) == 0 {
					continue
				}
				t.Errorf("%s: %v", name, err)
				failures++
				continue
			}
			if missing, extra := diff(want, got); len(missing)+len(extra) > 0 {
				t.Errorf("%s: missing %v, extra (LEAK) %v", name, missing, extra)
				failures++
			}
			continue
		}
		var params []search.Param
		if sp := o.p.defs.SearchParam(typ, "patient"); sp != nil && rng.IntN(3) > 0 {
			params = append(params, search.Param{Name: "patient", Value: "Patient/" + patients[rng.IntN(len(patients))]})
		}
		if rng.IntN(4) == 0 {
			params = append(params, search.Param{Name: "_lastUpdated", Value: "ge2000-01-01"})
		}
		// links into other resources: chains, _has, includes
		switch rng.IntN(6) {
		case 0:
			if sp := o.p.defs.SearchParam(typ, "subject"); sp != nil && sp.Type == fhir.ParamReference {
				params = append(params, search.Param{Name: "subject:Patient.gender", Value: []string{"male", "female"}[rng.IntN(2)]})
			}
		case 1:
			if typ == "Patient" {
				params = append(params, search.Param{Name: "_has:Observation:subject:category", Value: "journal"})
			}
		case 2:
			params = append(params, search.Param{Name: "_include", Value: typ + ":*"})
		case 3:
			if typ == "Patient" {
				params = append(params, search.Param{Name: "_revinclude", Value: []string{"Observation:subject", "Communication:subject", "Task:patient", "CarePlan:subject"}[rng.IntN(4)]})
			}
		}
		count := 1 + rng.IntN(4)
		params = append(params, search.Param{Name: "_count", Value: fmt.Sprint(count)}, search.Param{Name: "_total", Value: "accurate"})
		want := o.expected(t, w.p, typ, params)
		got, err := s.walk(t, w.token, typ, params, count, o, w.p)
		name := fmt.Sprintf("%s acting for %q: %s?%s", w.row.Principal.Subject, w.row.Principal.ActingFor, typ, encodeParams(params))
		if err != nil {
			if strings.Contains(err.Error(), "status 403") && len(want) == 0 {
				continue // a type the principal may never read
			}
			t.Errorf("%s: %v", name, err)
			failures++
			continue
		}
		if missing, extra := diff(want, got); len(missing)+len(extra) > 0 {
			t.Errorf("%s: missing %v, extra (LEAK) %v", name, missing, extra)
			failures++
		}
	}
	t.Logf("%d random and %d side-channel searches by %d principals: %d differences", rounds, len(people)*len(fixedSearches), len(people), failures)
}

func encodeParams(ps []search.Param) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, url.QueryEscape(p.Name)+"="+url.QueryEscape(p.Value))
	}
	return strings.Join(parts, "&")
}

func diff(want, got map[string]bool) (missing, extra []string) {
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// walk runs a search through the API and follows every next link. It
// checks that only the last page is short and that every page reports the
// same total, equal to the number of matches; and that no included
// resource is one the policy would hide.
func (s *stack) walk(t *testing.T, token, typ string, params []search.Param, count int, o *oracle, pr *auth.Principal) (map[string]bool, error) {
	t.Helper()
	acc, err := o.pol.For(context.Background(), pr)
	if err != nil {
		return nil, err
	}
	got := map[string]bool{}
	next := s.base + "/fhir/" + typ + "?" + encodeParams(params)
	var total *int
	pages := 0
	short := false
	for next != "" {
		pages++
		if pages > 200 {
			return nil, fmt.Errorf("paging does not end")
		}
		req, _ := http.NewRequest("GET", next, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("status %d: %s", resp.StatusCode, abbreviate(b))
		}
		var bundle struct {
			Total *int `json:"total"`
			Link  []struct{ Relation, URL string }
			Entry []struct {
				Resource json.RawMessage
				Search   struct{ Mode string }
			}
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			return nil, err
		}
		if short {
			return nil, fmt.Errorf("a page after a short page")
		}
		matches := 0
		for _, e := range bundle.Entry {
			rt, id, _ := fhir.Header(e.Resource)
			switch e.Search.Mode {
			case "match":
				matches++
				got[rt+"/"+id] = true
			case "include":
				entries, err := o.p.idx.Index(rt, e.Resource)
				if err != nil {
					return nil, err
				}
				if acc.CanRead(&policy.Doc{Type: rt, ID: id, Entries: entries}, auth.InteractionSearch) != nil {
					return nil, fmt.Errorf("LEAK: included %s/%s", rt, id)
				}
			}
		}
		if bundle.Total != nil {
			if total != nil && *total != *bundle.Total {
				return nil, fmt.Errorf("the total changed between pages: %d, %d", *total, *bundle.Total)
			}
			total = bundle.Total
		}
		next = ""
		for _, l := range bundle.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		if next != "" && matches < count {
			return nil, fmt.Errorf("half-empty page: %d of %d with a next link", matches, count)
		}
		if matches < count {
			short = true
		}
	}
	if total != nil && *total != len(got) {
		return nil, fmt.Errorf("total %d, but %d resources over the pages", *total, len(got))
	}
	return got, nil
}
