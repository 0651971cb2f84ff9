package embedded

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// explain returns SQLite's query plan of q, one line per step.
func explain(t *testing.T, s *Store, q string, args []any) string {
	t.Helper()
	rows, err := s.rdb.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	return strings.Join(lines, "\n")
}

// planStore writes 30 patients and 1,200 observations: 40 per patient,
// 400 per code.
func planStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	err = s.Transact(context.Background(), func(tx storage.Tx) error {
		for i := range 1200 {
			pid := fmt.Sprint("p", i%30)
			if i < 30 {
				if _, err := tx.Write(context.Background(), &storage.Write{Type: "Patient", ID: pid, Body: []byte(`{"resourceType":"Patient"}`),
					Index: []search.Entry{
						{Param: "identifier", Type: fhir.ParamToken, System: "urn:ids", Code: pid},
						{Param: "name", Type: fhir.ParamString, Str: "smith" + pid, Exact: "Smith" + pid},
					}}); err != nil {
					return err
				}
			}
			_, err := tx.Write(context.Background(), &storage.Write{Type: "Observation", ID: fmt.Sprint("o", i), Body: []byte(`{"resourceType":"Observation"}`),
				Index: []search.Entry{
					{Param: "subject", Type: fhir.ParamReference, RefType: "Patient", RefID: pid},
					{Param: "code", Type: fhir.ParamToken, System: "http://loinc.org", Code: fmt.Sprint(i % 3)},
					{Param: "date", Type: fhir.ParamDate, Lo: int64(i), Hi: int64(i)},
				}})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestQueryPlans checks the SQL of the issue-3 query shapes: each drives
// with a search (a seek) of the right index, never a scan of a table.
func TestQueryPlans(t *testing.T) {
	s := planStore(t)
	v := s.poolView()
	ex := newExec(context.Background(), v)
	tok := func(param, system, code string) *search.Match {
		return &search.Match{Param: param, Type: fhir.ParamToken, Values: []search.Value{{System: system, Code: code}}}
	}
	ref := &search.Match{Param: "subject", Type: fhir.ParamReference, Values: []search.Value{{RefType: "Patient", RefID: "p3"}}}
	date := &search.Match{Param: "date", Type: fhir.ParamDate, Values: []search.Value{{Prefix: search.Ge, Lo: 100, Hi: 100}}}
	name := &search.Match{Param: "name", Type: fhir.ParamString, Values: []search.Value{{Str: "smithp1"}}}
	tests := []struct {
		name  string
		typ   string
		conj  []search.Expr
		want  []string // substrings of the scan's plan
		count string   // substring of the count's plan ("" to skip)
	}{
		{"identifier", "Patient", []search.Expr{tok("identifier", "urn:ids", "p7")},
			[]string{"SEARCH d USING PRIMARY KEY (pid=? AND code=? AND sid=? AND rid>?)", "SEARCH r USING INTEGER PRIMARY KEY (rowid=?)"}, ""},
		{"subject and code", "Observation", []search.Expr{ref, tok("code", "http://loinc.org", "0")},
			[]string{"SEARCH d USING PRIMARY KEY (pid=? AND rtid=? AND ref=? AND url=? AND rid>?)",
				"SEARCH x EXISTS USING PRIMARY KEY (pid=? AND code=? AND sid=? AND rid=?)"}, ""},
		{"code and date", "Observation", []search.Expr{tok("code", "http://loinc.org", "0"), date},
			[]string{"SEARCH d USING PRIMARY KEY (pid=? AND code=? AND sid=? AND rid>?)", "SEARCH x EXISTS USING COVERING INDEX idx_date_rid (pid=? AND rid=?)"}, ""},
		{"name prefix", "Patient", []search.Expr{name},
			[]string{"LIST SUBQUERY", "SEARCH idx_string USING PRIMARY KEY (pid=? AND value>? AND value<?)", "SEARCH r USING INTEGER PRIMARY KEY (rowid=?)"}, ""},
		{"count of a code", "Observation", []search.Expr{tok("code", "http://loinc.org", "0")}, nil,
			"SEARCH idx_token USING PRIMARY KEY (pid=? AND code=? AND sid=?)"},
		{"two patients (merged)", "Observation", []search.Expr{&search.Match{Param: "subject", Type: fhir.ParamReference,
			Values: []search.Value{{RefType: "Patient", RefID: "p3"}, {RefType: "Patient", RefID: "p4"}}}},
			[]string{"MERGE (UNION)", "SEARCH idx_reference USING PRIMARY KEY (pid=? AND rtid=? AND ref=? AND url=? AND rid>?)"}, ""},
		{"every observation", "Observation", nil,
			[]string{"SEARCH r USING INDEX resources_type (tid=? AND rowid>?)"}, "resources_type (tid=?)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ex.plan(ex.scopeOf([]string{tc.typ}), tc.conj)
			if err != nil {
				t.Fatal(err)
			}
			if p.none {
				t.Fatal("the plan matches nothing")
			}
			q, args := scanSQL(p, false, p.entries)(0, 51)
			plan := explain(t, s, q, args)
			for _, w := range tc.want {
				if !strings.Contains(plan, w) {
					t.Errorf("plan of %s lacks %q:\n%s", q, w, plan)
				}
			}
			if tc.name == "subject and code" && strings.Contains(plan, "SEARCH e") {
				t.Errorf("the code probe reads entry lists:\n%s", plan)
			}
			if strings.Contains(plan, "SCAN ") && !strings.Contains(plan, "SCAN d") && !strings.Contains(plan, "SCAN (subquery") {
				t.Errorf("plan of %s scans a table:\n%s", q, plan)
			}
			t.Logf("%s:\n%s", tc.name, plan)
			if tc.count != "" {
				a := &p.drv.arms[0]
				cq := "SELECT count(*) FROM " + a.table() + " WHERE " + alias(a.where, a.table())
				if plan := explain(t, s, cq, a.args); !strings.Contains(plan, tc.count) {
					t.Errorf("count plan lacks %q:\n%s", tc.count, plan)
				}
			}
		})
	}
}

// The _revinclude arm seeks the referring rows.
func TestRevIncludePlan(t *testing.T) {
	s := planStore(t)
	ex := newExec(context.Background(), s.poolView())
	p, err := ex.plan(ex.scopeOf([]string{"Patient"}), []search.Expr{&search.Match{Param: "_id", Type: fhir.ParamToken,
		Values: []search.Value{{AnySystem: true, Code: "p3"}}}})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ex.all(p, true)
	if err != nil || len(cs) != 1 {
		t.Fatalf("%d matches, %v", len(cs), err)
	}
	arms, err := ex.revIncludeArms(search.Include{Source: "Observation", Param: "subject"}, cs)
	if err != nil || len(arms) != 1 {
		t.Fatalf("%d arms, %v", len(arms), err)
	}
	plan := explain(t, s, arms[0].sel(""), arms[0].args)
	if !strings.Contains(plan, "SEARCH idx_reference USING PRIMARY KEY (pid=? AND rtid=? AND ref=? AND url=?)") {
		t.Errorf("revinclude plan:\n%s", plan)
	}
	found, err := ex.fetch(arms, nil)
	if err != nil || len(found) != 40 {
		t.Fatalf("revincluded %d, %v", len(found), err)
	}
}

// Every date prefix seeks in an index instead of scanning the parameter's
// rows (ne excepted).
func TestDatePlans(t *testing.T) {
	s := planStore(t)
	ex := newExec(context.Background(), s.poolView())
	for _, pre := range []search.Prefix{search.Eq, search.Gt, search.Lt, search.Ge, search.Le, search.Sa, search.Eb, search.Ap} {
		m := &search.Match{Param: "date", Type: fhir.ParamDate, Values: []search.Value{{Prefix: pre, Lo: 100, Hi: 199}}}
		d, err := ex.driverOf(m, ex.scopeOf([]string{"Observation"}))
		if err != nil || d == nil || len(d.arms) == 0 {
			t.Fatalf("%s: %v %v", pre, d, err)
		}
		var plan string
		for _, a := range d.arms {
			p := explain(t, s, a.sel(""), a.args)
			if strings.Contains(p, "SCAN") || !strings.Contains(p, ">?") && !strings.Contains(p, "<?") {
				t.Errorf("%s: no seek on a range:\n%s", pre, p)
			}
			plan += p + "\n"
		}
		t.Logf("%s:\n%s", pre, plan)
	}
}
