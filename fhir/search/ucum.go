package search

import "strings"

// UCUM is the system URI of the Unified Code for Units of Measure.
const UCUM = "http://unitsofmeasure.org"

// Canonicalize converts value v in UCUM unit code to the base unit Regie
// compares quantities in, and reports false for units it does not know.
//
// Coverage (by design a table, not a full UCUM parser): the metric
// prefixes (f p n u m c d da h k M G T) on g, m, L (and l), s, mol, eq, Pa,
// bar, J, cal, U and [iU]; the time units min, h, d, wk, mo, a; [lb_av],
// [oz_av], [in_i], [ft_i], [mi_i]; mm[Hg], cm[H2O]; Cel, [degF], K
// (converted to K with their offsets); %, 1 and annotations such as
// {beats}; and one quotient or product of those (mg/dL, mmol/L, /min,
// {beats}/min, mL/min, kg/m2, mg/kg, ug/mL). Base units: g, m, L, s, mol,
// eq, Pa, J, U, [iU], K, % and "1", and their quotients and products.
func Canonicalize(code string, v float64) (unit string, cv float64, ok bool) {
	u, ok := lookupUnit(code)
	if !ok {
		return "", 0, false
	}
	return u.base, u.apply(v), true
}

func (u canonUnit) apply(v float64) float64 { return v*u.factor + u.offset }

// canonUnit is a unit as a factor (and offset, for temperatures) of its base.
type canonUnit struct {
	base           string
	factor, offset float64
}

func lookupUnit(code string) (canonUnit, bool) {
	if u, ok := specialUnits[code]; ok { // the common case, without allocation
		return u, true
	}
	if u, ok := baseUnits[code]; ok {
		return u, true
	}
	return parseUnit(code)
}

func parseUnit(code string) (canonUnit, bool) {
	if code == "" {
		return canonUnit{}, false
	}
	if num, den, found := strings.Cut(code, "/"); found {
		if strings.Contains(den, "/") {
			return canonUnit{}, false
		}
		n := canonUnit{base: "1", factor: 1}
		if num != "" {
			var ok bool
			if n, ok = termUnit(num); !ok || n.offset != 0 {
				return canonUnit{}, false
			}
		}
		d, ok := termUnit(den)
		if !ok || d.offset != 0 {
			return canonUnit{}, false
		}
		base := n.base + "/" + d.base
		if n.base == "1" {
			base = "/" + d.base
		}
		return canonUnit{base: base, factor: n.factor / d.factor}, true
	}
	return termUnit(code)
}

// termUnit handles one term: a simple unit, optionally with an exponent
// (m2, cm3) or a product with a "." (kg.m2 is not supported).
func termUnit(t string) (canonUnit, bool) {
	if t == "" {
		return canonUnit{}, false
	}
	if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
		return canonUnit{base: "1", factor: 1}, true
	}
	// Strip a trailing annotation ("mL{total}").
	if i := strings.IndexByte(t, '{'); i > 0 && strings.HasSuffix(t, "}") {
		t = t[:i]
	}
	if u, ok := specialUnits[t]; ok {
		return u, true
	}
	// An exponent: m2, cm3.
	exp := 1
	if n := len(t); n > 1 && t[n-1] >= '2' && t[n-1] <= '3' && !strings.HasSuffix(t, "]") {
		exp = int(t[n-1] - '0')
		t = t[:n-1]
	}
	u, ok := prefixedUnit(t)
	if !ok {
		return canonUnit{}, false
	}
	if exp > 1 {
		if u.offset != 0 {
			return canonUnit{}, false
		}
		f := u.factor
		for i := 1; i < exp; i++ {
			u.factor *= f
		}
		u.base += string(rune('0' + exp))
	}
	return u, true
}

func prefixedUnit(t string) (canonUnit, bool) {
	if b, ok := baseUnits[t]; ok {
		return b, true
	}
	for _, p := range unitPrefixes {
		if strings.HasPrefix(t, p.sym) {
			if b, ok := baseUnits[t[len(p.sym):]]; ok && b.offset == 0 {
				return canonUnit{base: b.base, factor: b.factor * p.factor}, true
			}
		}
	}
	return canonUnit{}, false
}

var unitPrefixes = []struct {
	sym    string
	factor float64
}{
	{"da", 1e1}, {"f", 1e-15}, {"p", 1e-12}, {"n", 1e-9}, {"u", 1e-6}, {"m", 1e-3},
	{"c", 1e-2}, {"d", 1e-1}, {"h", 1e2}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// baseUnits take metric prefixes.
var baseUnits = map[string]canonUnit{
	"g":    {"g", 1, 0},
	"m":    {"m", 1, 0},
	"L":    {"L", 1, 0},
	"l":    {"L", 1, 0},
	"s":    {"s", 1, 0},
	"mol":  {"mol", 1, 0},
	"eq":   {"eq", 1, 0},
	"Pa":   {"Pa", 1, 0},
	"bar":  {"Pa", 1e5, 0},
	"J":    {"J", 1, 0},
	"cal":  {"J", 4.184, 0},
	"U":    {"U", 1, 0},
	"[iU]": {"[iU]", 1, 0},
	"[IU]": {"[iU]", 1, 0},
	"K":    {"K", 1, 0},
}

// specialUnits take no prefixes.
var specialUnits = map[string]canonUnit{
	"1":       {"1", 1, 0},
	"%":       {"%", 1, 0},
	"min":     {"s", 60, 0},
	"h":       {"s", 3600, 0},
	"d":       {"s", 86400, 0},
	"wk":      {"s", 7 * 86400, 0},
	"mo":      {"s", 365.25 / 12 * 86400, 0},
	"a":       {"s", 365.25 * 86400, 0},
	"[lb_av]": {"g", 453.59237, 0},
	"[oz_av]": {"g", 28.349523125, 0},
	"[in_i]":  {"m", 0.0254, 0},
	"[ft_i]":  {"m", 0.3048, 0},
	"[mi_i]":  {"m", 1609.344, 0},
	"mm[Hg]":  {"Pa", 133.322387415, 0},
	"cm[H2O]": {"Pa", 98.0665, 0},
	"Cel":     {"K", 1, 273.15},
	"[degF]":  {"K", 5.0 / 9, 459.67 * 5 / 9},
}
