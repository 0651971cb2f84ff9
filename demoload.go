package regie

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"time"

	"regie/auth"
	"regie/fhir"
	"regie/server/engine"
)

// DemoReferenceDate is the date the demo data is written as of.
var DemoReferenceDate = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// demoDate matches the full-precision dates, dateTimes and instants of the
// demo data (it has no partial dates; see testdata/demo/README.md).
var demoDate = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?$`)

// ShiftDemoDates moves every date in a demo resource (or request body) by
// the whole number of days between the reference date and today, so that
// ages, open and closed episodes and consent periods stay as written.
func ShiftDemoDates(body []byte, today time.Time) ([]byte, error) {
	y, m, d := today.Date()
	days := int(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Sub(DemoReferenceDate).Hours() / 24)
	if days == 0 {
		return body, nil
	}
	return fhir.MapStrings(body, func(s string) (string, bool) {
		if !demoDate.MatchString(s) {
			return "", false
		}
		t, err := time.Parse("2006-01-02", s[:10])
		if err != nil {
			return "", false
		}
		return t.AddDate(0, 0, days).Format("2006-01-02") + s[10:], true
	})
}

// LoadDemo writes every demo resource through eng (validated, indexed,
// audited like any other write), with its dates shifted to today. ctx must
// carry a principal that may write everything (a system principal) when
// the engine has an access policy.
func LoadDemo(ctx context.Context, eng *engine.Engine, today time.Time) (int, error) {
	names, err := fs.Glob(Demo, "testdata/demo/*-*.json")
	if err != nil {
		return 0, err
	}
	sort.Strings(names)
	n := 0
	for _, name := range names {
		base := path.Base(name)
		if base == "people.json" || base == "matrix.json" {
			continue
		}
		b, err := fs.ReadFile(Demo, name)
		if err != nil {
			return n, err
		}
		if b, err = ShiftDemoDates(b, today); err != nil {
			return n, fmt.Errorf("%s: %w", base, err)
		}
		typ, id, err := fhir.Header(b)
		if err != nil {
			return n, fmt.Errorf("%s: %w", base, err)
		}
		if _, err := eng.Update(ctx, typ, id, b, ""); err != nil {
			return n, fmt.Errorf("%s: %w", base, err)
		}
		n++
	}
	return n, nil
}

// DemoPeople returns the people the development identity simulators offer.
func DemoPeople() ([]auth.DevCitizen, []auth.DevStaff, error) {
	b, err := fs.ReadFile(Demo, "testdata/demo/people.json")
	if err != nil {
		return nil, nil, err
	}
	var p struct {
		Citizens []struct {
			Label, BSN   string
			ActingForBSN string `json:"acting_for_bsn"`
		} `json:"citizens"`
		Staff []struct {
			Label      string
			EmployeeID string   `json:"employee_id"`
			Groups     []string `json:"groups"`
		} `json:"staff"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, nil, fmt.Errorf("people.json: %w", err)
	}
	var cs []auth.DevCitizen
	for _, c := range p.Citizens {
		cs = append(cs, auth.DevCitizen{Label: c.Label, BSN: c.BSN, ActingForBSN: c.ActingForBSN})
	}
	var ss []auth.DevStaff
	for _, s := range p.Staff {
		ss = append(ss, auth.DevStaff{Label: s.Label, EmployeeID: s.EmployeeID, Groups: s.Groups})
	}
	if len(cs) == 0 || len(ss) == 0 {
		return nil, nil, fmt.Errorf("people.json: no people")
	}
	return cs, ss, nil
}
