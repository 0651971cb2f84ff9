package search

import (
	"strings"
	"time"

	"regie/fhir"
)

// Matches reports whether a resource with these index entries (all of
// them; entries of other parameters are ignored) matches m. It is the
// reference definition of search semantics that stores implement in their
// own query languages, and the contract tests compare them with it:
//
//   - :missing=true matches when there is no entry for Param, false when
//     there is at least one; otherwise some entry must match some value.
//   - string: Entry.Str starts with Value.Str (both normalised); :contains
//     looks for it anywhere; :exact compares Entry.Exact with Value.Str.
//   - uri: Entry.Str equals Value.Str; :below matches entries equal to the
//     value or under it by path segment (Entry.Str starts with the value
//     followed by "/"), :above entries that the value is equal to or under.
//   - token: Code must equal (when the value has one); System must equal
//     unless AnySystem ("|code" matches codes without a system only).
//     :text matches Entry.Text starting with Value.Str (normalised).
//     :of-type needs TypeSystem, TypeCode and Code to equal.
//   - reference: a URL value matches entries with that URL (and Version,
//     when given, equal to RefVersion). A local value matches entries
//     without URL, with RefID equal, RefType equal unless the value's is
//     empty, and RefVersion equal when the value has a Version.
//     :identifier matches like a token against the identifier entries.
//   - date, number, quantity: the prefix semantics documented on Prefix,
//     over [Lo, Hi] (dates) or [LoF, HiF] (numbers, quantities). A
//     quantity value with a unit matches entries with the same CanonUnit in
//     canonical values, or else entries whose UnitCode (and UnitSystem, if
//     the value has one) equal the value's, in written values.
//   - composite: some Group of the entries matches every component.
//
// "_id", "_lastUpdated" and "_type" have no entries; Eval answers them
// from the Doc.
func (m *Match) Matches(entries []Entry) bool {
	if m.Modifier == "missing" {
		has := false
		prefix := m.Param + "#"
		for i := range entries {
			if entries[i].Param == m.Param || m.Type == fhir.ParamComposite && strings.HasPrefix(entries[i].Param, prefix) {
				has = true
				break
			}
		}
		for _, v := range m.Values {
			if v.Missing != has {
				return true
			}
		}
		return false
	}
	if m.Type == fhir.ParamComposite {
		return m.matchComposite(entries)
	}
	for i := range entries {
		e := &entries[i]
		if e.Param != m.Param {
			continue
		}
		for j := range m.Values {
			if matchEntry(m, &m.Values[j], e) {
				return true
			}
		}
	}
	return false
}

func (m *Match) matchComposite(entries []Entry) bool {
	prefix := m.Param + "#"
	seen := map[int]bool{}
	for i := range entries {
		e := &entries[i]
		if !strings.HasPrefix(e.Param, prefix) || seen[e.Group] {
			continue
		}
		seen[e.Group] = true
		var group []Entry
		for _, f := range entries {
			if f.Group == e.Group && strings.HasPrefix(f.Param, prefix) {
				group = append(group, f)
			}
		}
		for _, v := range m.Values {
			all := len(v.Components) > 0
			for _, c := range v.Components {
				if !c.Matches(group) {
					all = false
					break
				}
			}
			if all {
				return true
			}
		}
	}
	return false
}

func matchEntry(m *Match, v *Value, e *Entry) bool {
	switch m.Type {
	case fhir.ParamString:
		switch m.Modifier {
		case "exact":
			return e.Exact == v.Str
		case "contains":
			return strings.Contains(e.Str, v.Str)
		}
		return strings.HasPrefix(e.Str, v.Str)
	case fhir.ParamURI:
		switch m.Modifier {
		case "below":
			return uriBelow(e.Str, v.Str)
		case "above":
			return e.Str != "" && uriBelow(v.Str, e.Str)
		}
		return e.Str == v.Str
	case fhir.ParamToken:
		switch m.Modifier {
		case "text":
			return e.Text != "" && strings.HasPrefix(e.Text, v.Str)
		case "of-type":
			return e.TypeSystem == v.TypeSystem && e.TypeCode == v.TypeCode && e.Code == v.Code
		}
		return matchToken(v, e)
	case fhir.ParamReference:
		if m.Modifier == "identifier" {
			return e.RefID == "" && e.URL == "" && matchToken(v, e)
		}
		if v.URL != "" {
			return e.URL == v.URL && (v.Version == "" || e.RefVersion == v.Version)
		}
		return e.URL == "" && e.RefID != "" && e.RefID == v.RefID &&
			(v.RefType == "" || e.RefType == v.RefType) &&
			(v.Version == "" || e.RefVersion == v.Version)
	case fhir.ParamDate:
		return compareRange(v.Prefix, e.Lo, e.Hi, v.Lo, v.Hi)
	case fhir.ParamNumber:
		return compareF(v.Prefix, e.LoF, e.HiF, v.LoF, v.HiF)
	case fhir.ParamQuantity:
		if v.CanonUnit != "" && e.CanonUnit == v.CanonUnit {
			return compareF(v.Prefix, e.CanonLo, e.CanonHi, v.CanonLo, v.CanonHi)
		}
		if v.UnitCode != "" || v.UnitSystem != "" {
			if e.UnitCode != v.UnitCode || v.UnitSystem != "" && e.UnitSystem != v.UnitSystem {
				return false
			}
		}
		return compareF(v.Prefix, e.LoF, e.HiF, v.LoF, v.HiF)
	}
	return false
}

// uriBelow reports whether uri is base or lies under it by path segments:
// http://x/ValueSet/1 is below http://x/ValueSet and http://x/ValueSet/, not
// below http://x/Value.
func uriBelow(uri, base string) bool {
	if uri == base {
		return true
	}
	b := strings.TrimSuffix(base, "/") + "/"
	return strings.HasPrefix(uri, b)
}

func matchToken(v *Value, e *Entry) bool {
	if v.Code != "" && e.Code != v.Code {
		return false
	}
	if v.AnySystem {
		return v.Code != ""
	}
	return e.System == v.System && (v.Code != "" || e.Code != "")
}

// compareRange applies prefix p to the entry range [tl, th] and the search
// range [sl, sh]; see Prefix.
func compareRange[T int64 | float64](p Prefix, tl, th, sl, sh T) bool {
	eq := sl <= tl && th <= sh
	switch p {
	case Ne:
		return !eq
	case Gt:
		return th > sh
	case Lt:
		return tl < sl
	case Ge:
		return th > sh || eq
	case Le:
		return tl < sl || eq
	case Sa:
		return tl > sh
	case Eb:
		return th < sl
	case Ap:
		return tl <= sh && th >= sl
	}
	return eq
}

func compareF(p Prefix, tl, th, sl, sh float64) bool { return compareRange(p, tl, th, sl, sh) }

// Doc is a resource as Eval sees it: its identity, its last update and its
// index entries.
type Doc struct {
	Type, ID    string
	LastUpdated time.Time
	Entries     []Entry
}

// Resolver gives Eval the other resources that chains and _has need.
type Resolver interface {
	// Resolve returns the current resource typ/id, or nil.
	Resolve(typ, id string) *Doc
	// Docs returns every current resource of typ.
	Docs(typ string) []*Doc
}

// Eval reports whether d matches e, following chains and _has through r.
// It is the reference evaluator of the query tree: slow (it scans), but
// the definition stores are tested against. A nil e matches. With a nil r,
// Chain and Has nodes match nothing.
func Eval(e Expr, d *Doc, r Resolver) bool {
	switch x := e.(type) {
	case nil:
		return true
	case And:
		for _, o := range x {
			if !Eval(o, d, r) {
				return false
			}
		}
		return true
	case Or:
		for _, o := range x {
			if Eval(o, d, r) {
				return true
			}
		}
		return false
	case Not:
		return !Eval(x.X, d, r)
	case *Match:
		switch x.Param {
		case "_id":
			return x.Matches([]Entry{{Param: "_id", Type: fhir.ParamToken, Code: d.ID}})
		case "_type":
			return x.Matches([]Entry{{Param: "_type", Type: fhir.ParamToken, Code: d.Type}})
		case "_lastUpdated":
			t := Instant(d.LastUpdated)
			return x.Matches([]Entry{{Param: "_lastUpdated", Type: fhir.ParamDate, Lo: t, Hi: t}})
		}
		return x.Matches(d.Entries)
	case *Chain:
		if r == nil {
			return false
		}
		for i := range d.Entries {
			en := &d.Entries[i]
			if en.Param != x.Param || en.URL != "" || en.RefID == "" || en.RefType != x.Target {
				continue
			}
			if t := r.Resolve(en.RefType, en.RefID); t != nil && Eval(x.Where, t, r) {
				return true
			}
		}
		return false
	case *Has:
		if r == nil {
			return false
		}
		for _, o := range r.Docs(x.Type) {
			refers := false
			for i := range o.Entries {
				en := &o.Entries[i]
				if en.Param == x.Param && en.URL == "" && en.RefType == d.Type && en.RefID == d.ID {
					refers = true
					break
				}
			}
			if refers && Eval(x.Where, o, r) {
				return true
			}
		}
		return false
	}
	return false
}

// SortKey is what a resource sorts by for s, from its entries of s.Param:
// the lowest value for ascending order, the highest for descending (dates,
// numbers and quantities by the low end of their range ascending, the high
// end descending; references as Type/id). ok is false when it has no
// entry, and such resources sort last. _id, _lastUpdated and _type are
// not entries: stores answer them from their own columns.
func SortKey(entries []Entry, s Sort) (str string, num float64, ok bool) {
	for _, e := range entries {
		if e.Param != s.Param {
			continue
		}
		var es string
		var en float64
		switch s.Type {
		case fhir.ParamDate:
			en = float64(e.Lo)
			if s.Desc {
				en = float64(e.Hi)
			}
		case fhir.ParamNumber, fhir.ParamQuantity:
			en = e.LoF
			if s.Desc {
				en = e.HiF
			}
		case fhir.ParamString, fhir.ParamURI:
			es = e.Str
		case fhir.ParamToken:
			es = e.Code
		case fhir.ParamReference:
			es = e.RefType + "/" + e.RefID
		}
		better := es < str || en < num
		if s.Desc {
			better = es > str || en > num
		}
		if !ok || better {
			str, num, ok = es, en, true
		}
	}
	return str, num, ok
}
