package embedded

import (
	"fmt"

	"regie/fhir"
	"regie/fhir/search"
)

// cand is a candidate resource of a scan: its resources row and, when a
// filter needs them, its index entries (decoded on first use).
type cand struct {
	v                      *view
	rid, tid, vid, version int64
	id                     string
	list, rows             []byte
	ents                   []search.Entry
	decoded                bool
	err                    error
	sortKeys               []sortKey
	typeNameCache          string
	// buf, when set, is the scan's entry buffer that decoding reuses: a
	// candidate kept beyond its callback must be detached (keep).
	buf *[]search.Entry
}

// keep returns a copy of c that owns its memory (entries are decoded
// again when needed).
func (c *cand) keep() *cand {
	cc := *c
	if cc.buf != nil {
		cc.buf, cc.ents, cc.decoded = nil, nil, false
	}
	return &cc
}

// entries returns the candidate's index entries.
func (c *cand) entries() []search.Entry {
	if !c.decoded {
		c.decoded = true
		var dst []search.Entry
		if c.buf != nil {
			dst = *c.buf
		}
		c.ents, c.err = c.v.entriesOf(c.list, c.rows, dst)
		if c.buf != nil && c.err == nil {
			*c.buf = c.ents
		}
	}
	return c.ents
}

func (c *cand) typeName() string {
	if c.typeNameCache == "" {
		c.typeNameCache = c.v.typeName(c.tid)
	}
	return c.typeNameCache
}

// pred compiles e into a test of one candidate with the semantics of
// search.Eval, and reports whether it reads the candidate's entries.
// Chains and _has are evaluated into sets first.
func (ex *exec) pred(e search.Expr, sc scope) (func(*cand) bool, bool, error) {
	switch x := e.(type) {
	case nil:
		return func(*cand) bool { return true }, false, nil
	case search.And:
		fs, entries, err := ex.preds(x, sc)
		if err != nil {
			return nil, false, err
		}
		return func(c *cand) bool {
			for _, f := range fs {
				if !f(c) {
					return false
				}
			}
			return true
		}, entries, nil
	case search.Or:
		fs, entries, err := ex.preds(x, sc)
		if err != nil {
			return nil, false, err
		}
		return func(c *cand) bool {
			for _, f := range fs {
				if f(c) {
					return true
				}
			}
			return false
		}, entries, nil
	case search.Not:
		f, entries, err := ex.pred(x.X, sc)
		if err != nil {
			return nil, false, err
		}
		return func(c *cand) bool { return !f(c) }, entries, nil
	case *search.Match:
		return ex.matchPred(x)
	case *search.Chain:
		set, err := ex.chainSet(x)
		if err != nil {
			return nil, false, err
		}
		return func(c *cand) bool {
			for _, en := range c.entries() {
				if en.Param == x.Param && en.URL == "" && en.RefID != "" && en.RefType == x.Target && set[en.RefID] {
					return true
				}
			}
			return false
		}, true, nil
	case *search.Has:
		set, err := ex.hasSet(x)
		if err != nil {
			return nil, false, err
		}
		return func(c *cand) bool { return set[c.typeName()+"/"+c.id] }, false, nil
	}
	return nil, false, unsupported(fmt.Sprintf("expression %T", e))
}

func (ex *exec) preds(es []search.Expr, sc scope) ([]func(*cand) bool, bool, error) {
	fs := make([]func(*cand) bool, len(es))
	any := false
	for i, e := range es {
		f, entries, err := ex.pred(e, sc)
		if err != nil {
			return nil, false, err
		}
		fs[i], any = f, any || entries
	}
	return fs, any, nil
}

// matchPred tests one Match: _id, _type and _lastUpdated on the
// candidate's columns, everything else on its entries.
func (ex *exec) matchPred(m *search.Match) (func(*cand) bool, bool, error) {
	if err := checkModifier(m); err != nil {
		return nil, false, err
	}
	switch m.Param {
	case "_id":
		return func(c *cand) bool {
			e := [1]search.Entry{{Param: "_id", Type: fhir.ParamToken, Code: c.id}}
			return m.Matches(e[:])
		}, false, nil
	case "_type":
		return func(c *cand) bool {
			e := [1]search.Entry{{Param: "_type", Type: fhir.ParamToken, Code: c.typeName()}}
			return m.Matches(e[:])
		}, false, nil
	case "_lastUpdated":
		return func(c *cand) bool {
			e := [1]search.Entry{{Param: "_lastUpdated", Type: fhir.ParamDate, Lo: c.vid, Hi: c.vid}}
			return m.Matches(e[:])
		}, false, nil
	}
	if f := fastMatch(m); f != nil {
		return func(c *cand) bool { return f(c.entries()) }, true, nil
	}
	return func(c *cand) bool { return m.Matches(c.entries()) }, true, nil
}

// fastMatch returns, for a Match with many plain token or local reference
// values (an access constraint over many patients), a test by set lookup
// that agrees with (*search.Match).Matches; nil otherwise.
func fastMatch(m *search.Match) func([]search.Entry) bool {
	if len(m.Values) < 8 || m.Modifier != "" || (m.Type != fhir.ParamToken && m.Type != fhir.ParamReference) {
		return nil
	}
	anyCode := map[string]bool{}  // token code in any system; reference id of any type
	pairs := map[[2]string]bool{} // token (system, code); reference (type, id)
	var rest []search.Value
	for _, v := range m.Values {
		switch {
		case m.Type == fhir.ParamToken && v.AnySystem && v.Code != "":
			anyCode[v.Code] = true
		case m.Type == fhir.ParamToken && !v.AnySystem && v.Code != "":
			pairs[[2]string{v.System, v.Code}] = true
		case m.Type == fhir.ParamReference && v.URL == "" && v.RefID != "" && v.Version == "" && v.RefType == "":
			anyCode[v.RefID] = true
		case m.Type == fhir.ParamReference && v.URL == "" && v.RefID != "" && v.Version == "":
			pairs[[2]string{v.RefType, v.RefID}] = true
		default:
			rest = append(rest, v)
		}
	}
	slow := &search.Match{Param: m.Param, Type: m.Type, Values: rest}
	token := m.Type == fhir.ParamToken
	return func(entries []search.Entry) bool {
		for i := range entries {
			e := &entries[i]
			if e.Param != m.Param {
				continue
			}
			if token {
				if e.Code != "" && (anyCode[e.Code] || pairs[[2]string{e.System, e.Code}]) {
					return true
				}
			} else if e.URL == "" && e.RefID != "" && (anyCode[e.RefID] || pairs[[2]string{e.RefType, e.RefID}]) {
				return true
			}
		}
		return len(rest) > 0 && slow.Matches(entries)
	}
}
