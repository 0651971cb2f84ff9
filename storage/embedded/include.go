package embedded

import (
	"encoding/json"
	"slices"

	"regie/fhir"
	"regie/fhir/search"
)

// includes returns the resources that _include and _revinclude add to the
// matches of a page: first every include and revinclude of the matches,
// then the :iterate ones of everything found, until nothing new is found.
// Only local references are followed; an included resource must satisfy
// q.Constraint, and matches are not repeated.
func (ex *exec) includes(q *search.Query, matched []*cand) ([]*cand, error) {
	constraint := flatten(nil, q.Constraint)
	seen := make(map[int64]bool, len(matched))
	for _, c := range matched {
		seen[c.rid] = true
	}
	var out []*cand
	apply := func(inc search.Include, rev bool, from []*cand) (bool, error) {
		var arms []arm
		var err error
		if rev {
			arms, err = ex.revIncludeArms(inc, from)
		} else {
			arms, err = ex.includeArms(inc, from)
		}
		if err != nil || len(arms) == 0 {
			return false, err
		}
		found, err := ex.fetch(arms, constraint)
		if err != nil {
			return false, err
		}
		grew := false
		for _, c := range found {
			if !seen[c.rid] {
				seen[c.rid] = true
				out = append(out, c)
				grew = true
			}
		}
		return grew, nil
	}
	for _, inc := range q.Include {
		if _, err := apply(inc, false, matched); err != nil {
			return nil, err
		}
	}
	for _, inc := range q.RevInclude {
		if _, err := apply(inc, true, matched); err != nil {
			return nil, err
		}
	}
	// Each :iterate include is applied to what it has not seen yet (the
	// matches were seen in the first round), until nothing grows.
	type iter struct {
		inc  search.Include
		rev  bool
		done int // resources of matched+out already followed
	}
	var its []*iter
	for _, inc := range q.Include {
		if inc.Iterate {
			its = append(its, &iter{inc: inc, done: len(matched)})
		}
	}
	for _, inc := range q.RevInclude {
		if inc.Iterate {
			its = append(its, &iter{inc: inc, rev: true, done: len(matched)})
		}
	}
	for grew := len(its) > 0; grew; {
		grew = false
		for _, it := range its {
			all := append(slices.Clip(matched), out...)
			if it.done >= len(all) {
				continue
			}
			from := all[it.done:]
			it.done = len(all)
			g, err := apply(it.inc, it.rev, from)
			if err != nil {
				return nil, err
			}
			grew = grew || g
		}
	}
	return out, nil
}

// includeArms selects the resources that from refer to through inc.
func (ex *exec) includeArms(inc search.Include, from []*cand) ([]arm, error) {
	byType := map[string]map[string]bool{}
	for _, c := range from {
		if inc.Source != "*" && c.typeName() != inc.Source {
			continue
		}
		for _, e := range c.entries() {
			if e.Type == fhir.ParamReference && e.URL == "" && e.RefID != "" && e.RefType != "" &&
				(inc.Param == "*" || e.Param == inc.Param) && (inc.Target == "" || e.RefType == inc.Target) {
				if byType[e.RefType] == nil {
					byType[e.RefType] = map[string]bool{}
				}
				byType[e.RefType][e.RefID] = true
			}
		}
		if c.err != nil {
			return nil, c.err
		}
	}
	var arms []arm
	for t, ids := range byType {
		tid, ok := ex.v.lookup(t)
		if !ok {
			continue
		}
		arms = append(arms, arm{raw: "SELECT rid FROM resources WHERE tid = ? AND deleted = 0 AND id IN (SELECT value FROM json_each(?))",
			args: []any{tid, jsonList(ids)}, unique: true})
	}
	return arms, nil
}

// revIncludeArms selects the resources that refer to from through inc.
func (ex *exec) revIncludeArms(inc search.Include, from []*cand) ([]arm, error) {
	ids := map[int64][]string{}
	for _, c := range from {
		if inc.Target == "" || c.typeName() == inc.Target {
			ids[c.tid] = append(ids[c.tid], c.id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var pids []int64
	switch {
	case inc.Source != "*" && inc.Param != "*":
		stid, ok := ex.v.lookup(inc.Source)
		if !ok {
			return nil, nil
		}
		pid, ok := ex.v.paramID(stid, inc.Param)
		if !ok {
			return nil, nil
		}
		pids = []int64{pid}
	default:
		// Every parameter with local references (of the source type).
		all, err := ex.distinct("idx_reference", "pid", "1")
		if err != nil {
			return nil, err
		}
		stid, ok := int64(0), inc.Source == "*"
		if !ok {
			if stid, ok = ex.v.lookup(inc.Source); !ok {
				return nil, nil
			}
		}
		for _, pid := range all {
			if k, ok := ex.v.paramKey(pid); ok && (inc.Source == "*" || k.tid == stid) {
				pids = append(pids, pid)
			}
		}
	}
	var arms []arm
	for _, pid := range pids {
		for tid, list := range ids {
			slices.Sort(list)
			b, _ := json.Marshal(slices.Compact(list))
			arms = append(arms, arm{raw: "SELECT rid FROM idx_reference WHERE pid = ? AND rtid = ? AND ref IN (SELECT value FROM json_each(?)) AND url = ''",
				args: []any{pid, tid, string(b)}})
		}
	}
	return arms, nil
}

// fetch returns the current resources selected by arms that satisfy every
// conjunct of conj, in rid order, with their entries available.
func (ex *exec) fetch(arms []arm, conj []search.Expr) ([]*cand, error) {
	p := &plan{sc: scope{all: true}, drv: &driver{arms: arms, exact: true}}
	for _, c := range conj {
		f, entries, err := ex.pred(c, p.sc)
		if err != nil {
			return nil, err
		}
		p.filters = append(p.filters, f)
		p.entries = p.entries || entries
	}
	return ex.all(p, true)
}
