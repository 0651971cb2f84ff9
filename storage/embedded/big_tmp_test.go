package embedded

import (
	"context"
	"math/rand/v2"
	"os"
	"sort"
	"testing"
	"time"

	"regie/fhir"
	"regie/fhir/search"
)

func TestBigTmp(t *testing.T) {
	dir := os.Getenv("BIG")
	if dir == "" {
		t.Skip()
	}
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	// sample (subject, code) pairs of observations
	rows, err := s.rdb.Query(`SELECT r.rid FROM resources r WHERE r.tid = (SELECT tid FROM types WHERE name='Observation') AND r.rid % 997 = 0 LIMIT 400`)
	if err != nil {
		t.Fatal(err)
	}
	var rids []int64
	for rows.Next() {
		var rid int64
		rows.Scan(&rid)
		rids = append(rids, rid)
	}
	rows.Close()
	v := s.poolView()
	type pair struct{ subj, sys, code string; date int64 }
	var pairs []pair
	for _, rid := range rids {
		var list, rw []byte
		s.rdb.QueryRow(`SELECT list, rows FROM entries WHERE rid = ?`, rid).Scan(&list, &rw)
		es, err := v.entriesOf(list, rw, nil)
		if err != nil {
			t.Fatal(err)
		}
		var p pair
		for _, e := range es {
			switch e.Param {
			case "subject":
				p.subj = e.RefID
			case "code":
				if e.Code != "" {
					p.sys, p.code = e.System, e.Code
				}
			case "date":
				p.date = e.Lo
			}
		}
		if p.subj != "" && p.code != "" {
			pairs = append(pairs, p)
		}
	}
	shapes := map[string]func(p pair) *search.Query{
		"subject-code": func(p pair) *search.Query {
			return &search.Query{Types: []string{"Observation"}, Where: search.And{
				&search.Match{Param: "subject", Type: fhir.ParamReference, Values: []search.Value{{RefType: "Patient", RefID: p.subj}}},
				&search.Match{Param: "code", Type: fhir.ParamToken, Values: []search.Value{{System: p.sys, Code: p.code}}},
			}}
		},
		"code-date": func(p pair) *search.Query {
			return &search.Query{Types: []string{"Observation"}, Count: 50, Where: search.And{
				&search.Match{Param: "code", Type: fhir.ParamToken, Values: []search.Value{{System: p.sys, Code: p.code}}},
				&search.Match{Param: "date", Type: fhir.ParamDate, Values: []search.Value{{Prefix: search.Ge, Lo: p.date, Hi: p.date + 86400e6 - 1}}},
			}}
		},
	}
	for _, name := range []string{"subject-code", "code-date"} {
		var lat []time.Duration
		r := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < 300; i++ {
			p := pairs[r.IntN(len(pairs))]
			t0 := time.Now()
			if _, err := s.Search(ctx, shapes[name](p)); err != nil {
				t.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("%s: p50 %v p95 %v max %v", name, lat[len(lat)/2], lat[len(lat)*95/100], lat[len(lat)-1])
	}
}
