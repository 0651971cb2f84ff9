package regie

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"regie/fhir"
	"regie/profiles"
)

// referenceDate is the day the demo data is written as of (README.md).
const referenceDate = "2026-11-23"

const (
	bsnSystem      = "http://fhir.nl/fhir/NamingSystem/bsn"
	employeeSystem = "https://regie.nl/fhir/NamingSystem/employee-id"
	staffRoleCS    = "https://regie.nl/fhir/CodeSystem/staff-role"
	dossierPartCS  = "https://regie.nl/fhir/CodeSystem/dossier-part"
	relationshipCS = "https://regie.nl/fhir/CodeSystem/relationship"
	closedAccessX  = "https://regie.nl/fhir/StructureDefinition/closed-dossier-access"
	closingReasonX = "https://regie.nl/fhir/StructureDefinition/closing-reason"
)

// demo is the demo data set, parsed.
type demo struct {
	raw  map[string][]byte         // "Type/id" → file contents
	res  map[string]map[string]any // "Type/id" → parsed JSON
	file map[string]string         // "Type/id" → file name
}

func (d *demo) refs() []string {
	out := make([]string, 0, len(d.res))
	for r := range d.res {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func (d *demo) ofType(typ string) []string {
	var out []string
	for _, r := range d.refs() {
		if strings.HasPrefix(r, typ+"/") {
			out = append(out, r)
		}
	}
	return out
}

// nonResources are the demo files that are not FHIR resources.
var nonResources = map[string]bool{"people.json": true, "matrix.json": true}

func loadDemo(t *testing.T) *demo {
	t.Helper()
	d := &demo{raw: map[string][]byte{}, res: map[string]map[string]any{}, file: map[string]string{}}
	entries, err := fs.ReadDir(Demo, "testdata/demo")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") || nonResources[name] {
			continue
		}
		b, err := fs.ReadFile(Demo, "testdata/demo/"+name)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		typ, _ := m["resourceType"].(string)
		id, _ := m["id"].(string)
		if want := typ + "-" + id + ".json"; name != want {
			t.Errorf("%s holds %s/%s; the file must be named %s", name, typ, id, want)
		}
		key := typ + "/" + id
		if _, dup := d.res[key]; dup {
			t.Errorf("%s is defined twice", key)
		}
		d.raw[key], d.res[key], d.file[key] = b, m, name
	}
	if len(d.res) < 100 {
		t.Fatalf("only %d demo resources", len(d.res))
	}
	return d
}

func newValidator(t *testing.T) *fhir.Validator {
	t.Helper()
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.NewValidator(defs)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDemoResourcesValid validates every demo resource against R4.
func TestDemoResourcesValid(t *testing.T) {
	d := loadDemo(t)
	v := newValidator(t)
	for _, r := range d.refs() {
		if _, err := v.Validate(d.raw[r]); err != nil {
			t.Errorf("%s: %v", d.file[r], err)
		}
	}
}

// walk calls fn for every object nested in v, with its JSON path.
func walk(v any, p string, fn func(p string, obj map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(p, x)
		for k, c := range x {
			walk(c, p+"."+k, fn)
		}
	case []any:
		for i, c := range x {
			walk(c, fmt.Sprintf("%s[%d]", p, i), fn)
		}
	}
}

// references returns every Reference.reference in v.
func references(v any) map[string]string {
	out := map[string]string{}
	walk(v, "", func(p string, obj map[string]any) {
		if s, ok := obj["reference"].(string); ok {
			out[p+".reference"] = s
		}
	})
	return out
}

var localRef = regexp.MustCompile(`^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$`)

// TestDemoReferences checks that every reference is local and resolves to
// a demo resource.
func TestDemoReferences(t *testing.T) {
	d := loadDemo(t)
	n := 0
	for _, r := range d.refs() {
		for p, ref := range references(d.res[r]) {
			n++
			if !localRef.MatchString(ref) {
				t.Errorf("%s%s: %q is not a local Type/id reference", r, p, ref)
				continue
			}
			if _, ok := d.res[ref]; !ok {
				t.Errorf("%s%s: %s is not in the demo", r, p, ref)
			}
		}
	}
	if n < 300 {
		t.Errorf("only %d references checked", n)
	}
}

var (
	partialDate = regexp.MustCompile(`^\d{4}(-\d{2})?$`)
	dateRe      = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}($|T)`)
	dateTimeRe  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T`)
	zoneRe      = regexp.MustCompile(`(Z|[+-]\d{2}:\d{2})$`)
	// calendar words in free text would not move with the shifted dates
	calendarWord = regexp.MustCompile(`(?i)\b(januari|februari|maart|april|mei|juni|juli|augustus|september|oktober|` +
		`november|december|maandag|dinsdag|woensdag|donderdag|vrijdag|zaterdag|zondag|zomer|winter|kerst)\b`)
)

// TestDemoDates checks that the loader can shift every date by whole days:
// no partial dates, every dateTime with a time has a zone, nothing but
// appointments and plan periods lies after the reference date, and no free
// text names a month or weekday that the shift would make wrong.
func TestDemoDates(t *testing.T) {
	d := loadDemo(t)
	ref, _ := time.Parse(time.DateOnly, referenceDate)
	future := map[string]bool{"Appointment": true, "CarePlan": true}
	for _, r := range d.refs() {
		typ := strings.SplitN(r, "/", 2)[0]
		var check func(p string, v any)
		check = func(p string, v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, c := range x {
					check(p+"."+k, c)
				}
			case []any:
				for i, c := range x {
					check(fmt.Sprintf("%s[%d]", p, i), c)
				}
			case string:
				if w := calendarWord.FindString(x); w != "" {
					t.Errorf("%s%s: free text names %q", r, p, w)
				}
				if partialDate.MatchString(x) {
					t.Errorf("%s%s: partial date %q cannot be shifted by days", r, p, x)
				}
				if dateTimeRe.MatchString(x) && !zoneRe.MatchString(x) {
					t.Errorf("%s%s: dateTime %q has no zone", r, p, x)
				}
				if dateRe.MatchString(x) {
					day, err := time.Parse(time.DateOnly, x[:10])
					if err == nil && day.After(ref) && !future[typ] {
						t.Errorf("%s%s: %s lies after the reference date", r, p, x)
					}
				}
			}
		}
		check("", d.res[r])
	}
}

// ageOn returns the age in whole years on day, and the days since the last
// and until the next birthday.
func ageOn(birth, day time.Time) (years, since, until int) {
	years = day.Year() - birth.Year()
	last := birth.AddDate(years, 0, 0)
	if last.After(day) {
		years--
		last = birth.AddDate(years, 0, 0)
	}
	next := birth.AddDate(years+1, 0, 0)
	return years, int(day.Sub(last).Hours() / 24), int(next.Sub(day).Hours() / 24)
}

// TestDemoAges checks every client's age on the reference date, far enough
// from a birthday that the age rules (under 12, 12 to 15, from 16) never
// flip because of the day the data is shifted to.
func TestDemoAges(t *testing.T) {
	d := loadDemo(t)
	day, _ := time.Parse(time.DateOnly, referenceDate)
	want := map[string]int{
		"Patient/anna-de-vries": 34, "Patient/johan-mulder": 58, "Patient/lotte-bakker": 19,
		"Patient/daan-jansen": 10, "Patient/sara-el-amrani": 14, "Patient/noah-visser": 17, "Patient/bram-kok": 41,
	}
	patients := d.ofType("Patient")
	if len(patients) != len(want) {
		t.Errorf("demo has %d Patients, the test knows %d", len(patients), len(want))
	}
	bands := map[string]bool{}
	for _, p := range patients {
		b, err := time.Parse(time.DateOnly, str(d.res[p], "birthDate"))
		if err != nil {
			t.Errorf("%s: birthDate: %v", p, err)
			continue
		}
		years, since, until := ageOn(b, day)
		if years != want[p] {
			t.Errorf("%s is %d on %s, want %d", p, years, referenceDate, want[p])
		}
		if since < 60 || until < 60 {
			t.Errorf("%s: birthday too close to the reference date (%d days since, %d until)", p, since, until)
		}
		switch {
		case years < 12:
			bands["under 12"] = true
		case years < 16:
			bands["12 to 15"] = true
		case years < 18:
			bands["16 and 17"] = true
		}
	}
	for _, b := range []string{"under 12", "12 to 15", "16 and 17"} {
		if !bands[b] {
			t.Errorf("no minor aged %s", b)
		}
	}
}

func str(m map[string]any, path ...string) string {
	var v any = m
	for _, k := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = mm[k]
	}
	s, _ := v.(string)
	return s
}

func list(m map[string]any, k string) []any {
	l, _ := m[k].([]any)
	return l
}

func codings(v any) []map[string]any {
	var out []map[string]any
	walk(v, "", func(_ string, obj map[string]any) {
		if _, ok := obj["system"].(string); ok {
			if _, ok := obj["code"].(string); ok {
				out = append(out, obj)
			}
		}
	})
	return out
}

func hasCoding(v any, system, code string) bool {
	for _, c := range codings(v) {
		if c["system"] == system && c["code"] == code {
			return true
		}
	}
	return false
}

func extension(m map[string]any, url string) map[string]any {
	for _, e := range list(m, "extension") {
		if em, ok := e.(map[string]any); ok && em["url"] == url {
			return em
		}
	}
	return nil
}

func identifier(m map[string]any, system string) string {
	for _, i := range list(m, "identifier") {
		if im, ok := i.(map[string]any); ok && im["system"] == system {
			s, _ := im["value"].(string)
			return s
		}
	}
	return ""
}

// TestDemoModel checks that the demo keeps to docs/access.md and holds what
// the access matrix relies on.
func TestDemoModel(t *testing.T) {
	d := loadDemo(t)
	// organisations: a wijkteam that keeps closed dossiers readable and a
	// youth team that ends client access at closing, both part of the
	// municipality
	for org, want := range map[string]string{"Organization/wijkteam-noord": "read", "Organization/jeugdteam-rivierstad": "none"} {
		o := d.res[org]
		if o == nil {
			t.Fatalf("%s missing", org)
		}
		x := extension(o, closedAccessX)
		if x == nil || x["valueCode"] != want {
			t.Errorf("%s: closed-dossier-access = %v, want %s", org, x, want)
		}
		if str(o, "partOf", "reference") != "Organization/gemeente-rivierstad" {
			t.Errorf("%s is not part of the municipality", org)
		}
	}
	roles := map[string]bool{}
	for _, r := range d.ofType("PractitionerRole") {
		m := d.res[r]
		ok := false
		for _, c := range codings(m["code"]) {
			if c["system"] == staffRoleCS {
				roles[c["code"].(string)] = true
				ok = true
			}
		}
		if !ok || str(m, "practitioner", "reference") == "" || str(m, "organization", "reference") == "" {
			t.Errorf("%s: needs a staff-role code, a practitioner and an organization", r)
		}
	}
	for _, c := range []string{"coach", "behavioural-scientist", "referrer", "helpdesk", "staff"} {
		if !roles[c] {
			t.Errorf("no PractitionerRole with staff-role %s", c)
		}
	}
	for _, p := range d.ofType("Practitioner") {
		if p == "Practitioner/huisarts-de-jong" {
			continue // an outside referrer, not a municipality login
		}
		if identifier(d.res[p], employeeSystem) == "" {
			t.Errorf("%s has no employee id", p)
		}
	}
	// episodes: closed ones carry an end date and a closing reason
	episodes := map[string][]map[string]any{}
	for _, e := range d.ofType("EpisodeOfCare") {
		m := d.res[e]
		episodes[str(m, "patient", "reference")] = append(episodes[str(m, "patient", "reference")], m)
		closed := str(m, "status") == "finished"
		hasEnd := str(m, "period", "end") != ""
		if closed != hasEnd || closed != (extension(m, closingReasonX) != nil) {
			t.Errorf("%s: status %s, end %v, closing reason %v: a finished episode needs both, an open one neither",
				e, str(m, "status"), hasEnd, extension(m, closingReasonX) != nil)
		}
	}
	for p := range d.res {
		if strings.HasPrefix(p, "Patient/") && len(episodes[p]) == 0 {
			t.Errorf("%s has no EpisodeOfCare", p)
		}
	}
	onlyClosedAt := func(p, org string) {
		eps := episodes[p]
		if len(eps) != 1 || str(eps[0], "status") != "finished" || str(eps[0], "managingOrganization", "reference") != org {
			t.Errorf("%s must have exactly one episode, closed, at %s", p, org)
		}
	}
	onlyClosedAt("Patient/johan-mulder", "Organization/wijkteam-noord")
	onlyClosedAt("Patient/lotte-bakker", "Organization/jeugdteam-rivierstad")
	// related persons: a spouse, parents with and one without gezag
	gezag := map[bool]int{}
	for _, r := range d.ofType("RelatedPerson") {
		m := d.res[r]
		rel := m["relationship"]
		if hasCoding(rel, "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "MTH") ||
			hasCoding(rel, "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "FTH") {
			gezag[hasCoding(rel, relationshipCS, "gezaghebbende")]++
		}
		if identifier(m, bsnSystem) == "" {
			t.Errorf("%s has no BSN", r)
		}
	}
	if gezag[true] < 4 || gezag[false] < 1 {
		t.Errorf("parents with gezag: %d, without: %d", gezag[true], gezag[false])
	}
	// consents: patient-privacy, about a RelatedPerson of the same client,
	// parts from the dossier-part code system
	for _, c := range d.ofType("Consent") {
		m := d.res[c]
		if !hasCoding(m["scope"], "http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy") {
			t.Errorf("%s: scope is not patient-privacy", c)
		}
		prov, _ := m["provision"].(map[string]any)
		for _, a := range list(prov, "actor") {
			rp := str(a.(map[string]any), "reference", "reference")
			if str(d.res[rp], "patient", "reference") != str(m, "patient", "reference") {
				t.Errorf("%s: actor %s is not related to %s", c, rp, str(m, "patient", "reference"))
			}
		}
		for _, cd := range codings(prov) {
			if cd["system"] == dossierPartCS && !slices.Contains([]string{"plan", "documents", "journal", "appointments", "profile"}, cd["code"].(string)) {
				t.Errorf("%s: unknown dossier part %v", c, cd["code"])
			}
		}
	}
	// journal notes carry the journal category
	for _, o := range d.ofType("Observation") {
		if !hasCoding(d.res[o]["category"], dossierPartCS, "journal") {
			t.Errorf("%s has no journal category", o)
		}
	}
}

// 11-proef: 9·d1 + 8·d2 + … + 2·d8 − d9 ≡ 0 (mod 11).
func elfProef(s string) bool {
	if len(s) != 9 || s == "000000000" {
		return false
	}
	sum := 0
	for i := 0; i < 9; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		w := 9 - i
		if i == 8 {
			w = -1
		}
		sum += w * int(s[i]-'0')
	}
	return sum%11 == 0
}

func TestElfProef(t *testing.T) {
	for s, want := range map[string]bool{"999911120": true, "999990019": true, "999911121": false, "123456789": false,
		"000000000": false, "99991112a": false, "99991112": false} {
		if elfProef(s) != want {
			t.Errorf("elfProef(%q) = %v", s, !want)
		}
	}
}

// people is testdata/demo/people.json: the dev simulators' demo people.
type people struct {
	Citizens []struct {
		Label        string `json:"label"`
		BSN          string `json:"bsn"`
		ActingForBSN string `json:"acting_for_bsn"`
	} `json:"citizens"`
	Staff []struct {
		Label      string   `json:"label"`
		EmployeeID string   `json:"employee_id"`
		Groups     []string `json:"groups"`
	} `json:"staff"`
}

func strictJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := fs.ReadFile(Demo, "testdata/demo/"+name)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// TestPeople checks that every demo person logs in as someone in the demo:
// BSNs pass the 11-proef and match Patient or RelatedPerson identifiers the
// way the DigiD federation looks them up; employee ids match one
// Practitioner.
func TestPeople(t *testing.T) {
	d := loadDemo(t)
	var ppl people
	strictJSON(t, "people.json", &ppl)
	byBSN := map[string][]string{}
	for _, r := range d.refs() {
		if b := identifier(d.res[r], bsnSystem); b != "" {
			if !elfProef(b) {
				t.Errorf("%s: BSN %s fails the 11-proef", r, b)
			}
			byBSN[b] = append(byBSN[b], r)
		}
	}
	of := func(bsn, typ string) []string {
		var out []string
		for _, r := range byBSN[bsn] {
			if strings.HasPrefix(r, typ+"/") {
				out = append(out, r)
			}
		}
		return out
	}
	labels := map[string]bool{}
	for _, c := range ppl.Citizens {
		if c.Label == "" || labels[c.Label] {
			t.Errorf("citizen label %q empty or repeated", c.Label)
		}
		labels[c.Label] = true
		if !elfProef(c.BSN) {
			t.Errorf("%s: BSN %s fails the 11-proef", c.Label, c.BSN)
			continue
		}
		if c.ActingForBSN == "" {
			// a Patient, or else a RelatedPerson
			if pats := of(c.BSN, "Patient"); len(pats) > 1 || len(pats) == 0 && len(of(c.BSN, "RelatedPerson")) == 0 {
				t.Errorf("%s: BSN %s matches %v", c.Label, c.BSN, byBSN[c.BSN])
			}
			for _, p := range of(c.BSN, "Patient") {
				if p == "Patient/bram-kok" {
					t.Errorf("%s: the other municipality's client is nobody's demo login", c.Label)
				}
			}
			continue
		}
		if !elfProef(c.ActingForBSN) {
			t.Errorf("%s: acting-for BSN %s fails the 11-proef", c.Label, c.ActingForBSN)
			continue
		}
		kids := of(c.ActingForBSN, "Patient")
		if len(kids) != 1 {
			t.Errorf("%s: acting-for BSN matches %v", c.Label, kids)
			continue
		}
		found := false
		for _, rp := range of(c.BSN, "RelatedPerson") {
			found = found || str(d.res[rp], "patient", "reference") == kids[0]
		}
		if !found {
			t.Errorf("%s: no RelatedPerson with BSN %s for %s", c.Label, c.BSN, kids[0])
		}
	}
	emp := map[string][]string{}
	for _, p := range d.ofType("Practitioner") {
		if e := identifier(d.res[p], employeeSystem); e != "" {
			emp[e] = append(emp[e], p)
		}
	}
	for _, s := range ppl.Staff {
		if s.Label == "" || labels[s.Label] {
			t.Errorf("staff label %q empty or repeated", s.Label)
		}
		labels[s.Label] = true
		if len(emp[s.EmployeeID]) != 1 {
			t.Errorf("%s: employee id %s matches %v", s.Label, s.EmployeeID, emp[s.EmployeeID])
		}
		if len(s.Groups) == 0 || slices.Contains(s.Groups, "") {
			t.Errorf("%s: groups %q", s.Label, s.Groups)
		}
	}
	if len(ppl.Citizens) < 10 || len(ppl.Staff) < 8 {
		t.Errorf("people.json offers %d citizens and %d staff", len(ppl.Citizens), len(ppl.Staff))
	}
}

// matrixRow is one row of testdata/demo/matrix.json (README.md).
type matrixRow struct {
	Name      string `json:"name"`
	Rule      int    `json:"rule"`
	Principal struct {
		Subject                string `json:"subject"`
		ActingFor              string `json:"acting_for"`
		SecondFactorAgeSeconds *int   `json:"second_factor_age_seconds"`
		Scopes                 string `json:"scopes"`
		Organization           string `json:"organization"`
	} `json:"principal"`
	Request struct {
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Headers map[string]string `json:"headers"`
		Body    json.RawMessage   `json:"body"`
	} `json:"request"`
	Expect struct {
		Status  int      `json:"status"`
		Include []string `json:"include"`
		Exclude []string `json:"exclude"`
		Total   *int     `json:"total"`
	} `json:"expect"`
}

func loadMatrix(t *testing.T) []matrixRow {
	t.Helper()
	var rows []matrixRow
	strictJSON(t, "matrix.json", &rows)
	return rows
}

// target returns the Type/id a request path names directly, if any.
func target(p string) (typ, id string) {
	segs := strings.Split(strings.TrimPrefix(strings.SplitN(p, "?", 2)[0], "/"), "/")
	if len(segs) >= 2 && !strings.HasPrefix(segs[1], "_") && !strings.HasPrefix(segs[1], "$") {
		return segs[0], segs[1]
	}
	return segs[0], ""
}

// TestMatrix checks that the access matrix parses, names only demo
// resources and people, and covers every rule, role and interaction.
func TestMatrix(t *testing.T) {
	d := loadDemo(t)
	v := newValidator(t)
	rows := loadMatrix(t)
	names := map[string]bool{}
	perRule := map[int]int{}
	statuses := map[int]bool{200: true, 201: true, 204: true, 400: true, 403: true, 404: true}
	exists := func(r string) bool { _, ok := d.res[r]; return ok }
	cells := map[string]bool{} // rule:method:status
	principals := map[string]bool{}
	for i, r := range rows {
		where := fmt.Sprintf("row %d %q", i, r.Name)
		if r.Name == "" || names[r.Name] {
			t.Errorf("%s: name empty or repeated", where)
		}
		names[r.Name] = true
		if r.Rule < 1 || r.Rule > 7 {
			t.Errorf("%s: rule %d", where, r.Rule)
		}
		perRule[r.Rule]++
		// principal
		p := r.Principal
		principals[p.Subject+"|"+p.ActingFor] = true
		switch {
		case p.Subject == "system":
			if p.Scopes == "" || !strings.HasPrefix(p.Scopes, "system/") || !exists(p.Organization) {
				t.Errorf("%s: a system principal needs system scopes and an existing organization", where)
			}
		case strings.HasPrefix(p.Subject, "Patient/"), strings.HasPrefix(p.Subject, "RelatedPerson/"),
			strings.HasPrefix(p.Subject, "Practitioner/"):
			if !exists(p.Subject) {
				t.Errorf("%s: principal %s is not in the demo", where, p.Subject)
			}
			if p.Organization != "" {
				t.Errorf("%s: only system principals name an organization", where)
			}
		default:
			t.Errorf("%s: principal subject %q", where, p.Subject)
		}
		if p.ActingFor != "" && (!strings.HasPrefix(p.ActingFor, "Patient/") || !exists(p.ActingFor) ||
			!strings.HasPrefix(p.Subject, "RelatedPerson/")) {
			t.Errorf("%s: acting_for %q must be a demo Patient, for a RelatedPerson", where, p.ActingFor)
		}
		if s := p.SecondFactorAgeSeconds; s != nil && *s < 0 {
			t.Errorf("%s: negative second factor age", where)
		}
		// request
		q := r.Request
		if !slices.Contains([]string{"GET", "POST", "PUT", "PATCH", "DELETE"}, q.Method) || !strings.HasPrefix(q.Path, "/") {
			t.Errorf("%s: request %s %s", where, q.Method, q.Path)
		}
		if u, err := url.Parse(q.Path); err != nil {
			t.Errorf("%s: path: %v", where, err)
		} else {
			for k, vals := range u.Query() {
				for _, val := range vals {
					for _, part := range strings.Split(val, ",") {
						if m := localRef.FindStringSubmatch(part); m != nil && d.res[m[0]] == nil {
							t.Errorf("%s: parameter %s names %s, not in the demo", where, k, part)
						}
					}
				}
			}
		}
		typ, id := target(q.Path)
		if id != "" && typ != "AuditEvent" && !exists(typ+"/"+id) {
			// the demo holds no AuditEvents: the engine writes them
			t.Errorf("%s: path names %s/%s, not in the demo", where, typ, id)
		}
		if bg, ok := q.Headers["X-Regie-Break-Glass"]; ok && !strings.HasPrefix(p.Subject, "Practitioner/") {
			t.Errorf("%s: break-the-glass header %q for a non-professional", where, bg)
		}
		switch q.Method {
		case "POST", "PUT":
			if len(q.Body) == 0 {
				t.Errorf("%s: %s without a body", where, q.Method)
				break
			}
			var body map[string]any
			if err := json.Unmarshal(q.Body, &body); err != nil {
				t.Errorf("%s: body: %v", where, err)
				break
			}
			if body["resourceType"] != typ {
				t.Errorf("%s: body is a %v, path names %s", where, body["resourceType"], typ)
			}
			if q.Method == "POST" && body["id"] != nil {
				t.Errorf("%s: a create body has no id", where)
			}
			if q.Method == "PUT" && body["id"] != id {
				t.Errorf("%s: body id %v, path id %s", where, body["id"], id)
			}
			if _, err := v.Validate(q.Body); err != nil {
				t.Errorf("%s: body: %v", where, err)
			}
			for bp, ref := range references(body) {
				if !exists(ref) {
					t.Errorf("%s: body%s: %s is not in the demo", where, bp, ref)
				}
			}
		case "PATCH":
			var ops []map[string]any
			if err := json.Unmarshal(q.Body, &ops); err != nil || len(ops) == 0 {
				t.Errorf("%s: a PATCH body is a JSON Patch array: %v", where, err)
			}
		default:
			if len(q.Body) != 0 {
				t.Errorf("%s: %s with a body", where, q.Method)
			}
		}
		// expectations
		e := r.Expect
		if !statuses[e.Status] {
			t.Errorf("%s: status %d", where, e.Status)
		}
		if e.Status >= 300 && (len(e.Include) > 0 || e.Total != nil) {
			t.Errorf("%s: a denied row includes nothing", where)
		}
		if e.Total != nil && !strings.Contains(q.Path, "_total=accurate") {
			t.Errorf("%s: a total is only checked with _total=accurate", where)
		}
		for _, x := range append(slices.Clone(e.Include), e.Exclude...) {
			if !exists(x) {
				t.Errorf("%s: %s is not in the demo", where, x)
			}
		}
		for _, x := range e.Include {
			if slices.Contains(e.Exclude, x) {
				t.Errorf("%s: %s both included and excluded", where, x)
			}
		}
		for _, x := range e.Include {
			if strings.Contains(x, "bram-kok") || strings.Contains(x, "bram-") {
				t.Errorf("%s: the other municipality's client is visible to nobody in the demo", where)
			}
		}
		cells[fmt.Sprintf("%d:%s:%d", r.Rule, q.Method, e.Status/100)] = true
	}
	if len(rows) < 150 {
		t.Errorf("matrix has %d rows", len(rows))
	}
	for rule := 1; rule <= 7; rule++ {
		if perRule[rule] < 20 {
			t.Errorf("rule %d has %d rows", rule, perRule[rule])
		}
		// every rule has allowed and denied reads
		for _, c := range []string{"GET:2", "GET:4"} {
			if !cells[fmt.Sprintf("%d:%s", rule, c)] {
				t.Errorf("rule %d has no %s row", rule, c)
			}
		}
	}
	for _, rule := range []int{1, 2, 3, 4, 5, 6, 7} {
		if !cells[fmt.Sprintf("%d:POST:4", rule)] {
			t.Errorf("rule %d has no denied create", rule)
		}
	}
	// every person the model distinguishes is a principal somewhere
	for _, who := range []string{
		"Patient/anna-de-vries|", "Patient/johan-mulder|", "Patient/lotte-bakker|", "Patient/sara-el-amrani|",
		"Patient/noah-visser|", "RelatedPerson/mark-de-vries|", "RelatedPerson/ingrid-kramer|",
		"RelatedPerson/linda-jansen|Patient/daan-jansen", "RelatedPerson/peter-jansen|Patient/daan-jansen",
		"RelatedPerson/fatima-el-amrani|Patient/sara-el-amrani", "RelatedPerson/karim-el-amrani|Patient/sara-el-amrani",
		"RelatedPerson/ellen-visser|Patient/noah-visser", "RelatedPerson/robert-visser|Patient/noah-visser",
		"Practitioner/coach-sanne|", "Practitioner/coach-thomas|", "Practitioner/coach-eva|", "Practitioner/coach-youssef|",
		"Practitioner/gedragswetenschapper-marieke|", "Practitioner/medewerker-ruud|", "Practitioner/zorgcoordinator-ilse|",
		"Practitioner/helpdesk-joost|", "system|",
	} {
		if !principals[who] {
			t.Errorf("no row has principal %s", who)
		}
	}
	// every dossier type, messages, actions, referrals and the audit trail
	// are exercised
	types := map[string]bool{}
	for _, r := range rows {
		typ, _ := target(r.Request.Path)
		types[typ] = true
	}
	for _, typ := range []string{"Patient", "CarePlan", "Goal", "Observation", "Encounter", "DocumentReference",
		"Appointment", "QuestionnaireResponse", "Communication", "Task", "ServiceRequest", "EpisodeOfCare", "Consent",
		"AuditEvent", "RelatedPerson", "Organization", "Location", "Practitioner", "PractitionerRole", "CareTeam"} {
		if !types[typ] {
			t.Errorf("no row requests %s", typ)
		}
	}
}
