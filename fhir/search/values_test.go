package search

import (
	"math"
	"testing"
)

func TestDateRange(t *testing.T) {
	cases := []struct {
		in     string
		lo, hi string // "" when invalid
	}{
		{"2020", "2020-01-01T00:00:00Z", "2020-12-31T23:59:59.999999Z"},
		{"2021-02", "2021-02-01T00:00:00Z", "2021-02-28T23:59:59.999999Z"},
		{"2020-12-31", "2020-12-31T00:00:00Z", "2020-12-31T23:59:59.999999Z"},
		{"2020-06-15T12:30", "2020-06-15T12:30:00Z", "2020-06-15T12:30:59.999999Z"},
		{"2020-06-15T12:30:15Z", "2020-06-15T12:30:15Z", "2020-06-15T12:30:15.999999Z"},
		{"2020-06-15T12:30:15.123Z", "2020-06-15T12:30:15.123Z", "2020-06-15T12:30:15.123999Z"},
		{"2020-06-15T12:30:15.1234567Z", "2020-06-15T12:30:15.123456Z", "2020-06-15T12:30:15.123456Z"},
		{"2020-06-15T00:30:00+01:00", "2020-06-14T23:30:00Z", "2020-06-14T23:30:00.999999Z"},
		{"2020-06-15T23:30:00-05:30", "2020-06-16T05:00:00Z", "2020-06-16T05:00:00.999999Z"},
		{"2020-06-15T12:30:15", "2020-06-15T12:30:15Z", "2020-06-15T12:30:15.999999Z"},
		{"20", "", ""},
		{"2020-13", "", ""},
		{"2020-00", "", ""},
		{"2019-02-29", "", ""},
		{"2020-1-1", "", ""},
		{"2020-01-01T24:00", "", ""},
		{"2020-01-01T10:60", "", ""},
		{"2020-01-01T10:00:00.", "", ""},
		{"2020-01-01T10:00:00+1", "", ""},
		{"2020-01-01T10:00:00+15:00", "", ""},
		{"2020-01-01 ", "", ""},
		{"2020-01-01T", "", ""},
	}
	for _, c := range cases {
		lo, hi, ok := DateRange(c.in)
		if c.lo == "" {
			if ok {
				t.Errorf("%q accepted as [%s, %s]", c.in, micro(lo), micro(hi))
			}
			continue
		}
		if !ok || micro(lo) != c.lo || micro(hi) != c.hi {
			t.Errorf("%q: got [%s, %s] %v, want [%s, %s]", c.in, micro(lo), micro(hi), ok, c.lo, c.hi)
		}
	}
}

func TestDecimalRange(t *testing.T) {
	cases := []struct {
		in        string
		v, lo, hi float64
		ok        bool
	}{
		{"100", 100, 99.5, 100.5, true},
		{"100.0", 100, 99.95, 100.05, true},
		{"-0.25", -0.25, -0.255, -0.245, true},
		{"1e2", 100, 50, 150, true},
		{"1.5E-3", 0.0015, 0.00145, 0.00155, true},
		{"+7", 7, 6.5, 7.5, true},
		{"1.", 0, 0, 0, false},
		{".5", 0, 0, 0, false},
		{"1e", 0, 0, 0, false},
		{"1e99999", 0, 0, 0, false},
		{"NaN", 0, 0, 0, false},
		{"0x10", 0, 0, 0, false},
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }
	for _, c := range cases {
		v, lo, hi, ok := DecimalRange(c.in)
		if ok != c.ok || ok && (!near(v, c.v) || !near(lo, c.lo) || !near(hi, c.hi)) {
			t.Errorf("%q: got %v [%v, %v] %v, want %v [%v, %v] %v", c.in, v, lo, hi, ok, c.v, c.lo, c.hi, c.ok)
		}
	}
}

func TestNormalize(t *testing.T) {
	cases := map[string]string{
		"abc":           "abc",
		"ABC def":       "abc def",
		"Müller":        "muller",
		"ÆRØ":           "aero",
		"Straße":        "strasse",
		"Łódź":          "lodz",
		"Œuvre":         "oeuvre",
		"ﬁne":           "fine",
		"İstanbul":      "istanbul",
		"Ðorđe":         "dorde",
		"Þór":           "thor",
		"François-José": "francois-jose",
		"van der Berg":  "van der berg",
		"Ĳsselmeer":     "ijsselmeer",
	}
	for in, want := range cases {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
		if got := Normalize(Normalize(in)); got != want {
			t.Errorf("Normalize is not idempotent on %q: %q", in, got)
		}
	}
}

func TestCanonicalize(t *testing.T) {
	cases := []struct {
		code string
		v    float64
		unit string
		cv   float64
	}{
		{"mg", 5, "g", 0.005},
		{"kg", 70, "g", 70000},
		{"g", 1, "g", 1},
		{"[lb_av]", 1, "g", 453.59237},
		{"cm", 180, "m", 1.8},
		{"[in_i]", 10, "m", 0.254},
		{"mL", 250, "L", 0.25},
		{"dL", 1, "L", 0.1},
		{"min", 2, "s", 120},
		{"h", 1, "s", 3600},
		{"d", 1, "s", 86400},
		{"a", 1, "s", 31557600},
		{"mm[Hg]", 120, "Pa", 15998.6864898},
		{"kPa", 16, "Pa", 16000},
		{"Cel", 37, "K", 310.15},
		{"[degF]", 98.6, "K", 310.15},
		{"mg/dL", 100, "g/L", 1},
		{"mmol/L", 5, "mol/L", 0.005},
		{"/min", 60, "/s", 1},
		{"{beats}/min", 72, "/s", 1.2},
		{"kg/m2", 25, "g/m2", 25000},
		{"cm3", 1, "m3", 1e-6},
		{"%", 12, "%", 12},
		{"1", 3, "1", 3},
		{"mL{total}", 5, "L", 0.005},
	}
	for _, c := range cases {
		unit, cv, ok := Canonicalize(c.code, c.v)
		if !ok || unit != c.unit || math.Abs(cv-c.cv) > 1e-9*math.Max(1, math.Abs(c.cv)) {
			t.Errorf("%v %s: got %v %s %v, want %v %s", c.v, c.code, cv, unit, ok, c.cv, c.unit)
		}
	}
	for _, code := range []string{"", "xyz", "Cel/min", "mg/dL/h", "kg.m2", "{", "10*3/uL", "cd"} {
		if unit, _, ok := Canonicalize(code, 1); ok {
			t.Errorf("%q canonicalised to %q", code, unit)
		}
	}
}

func TestEscape(t *testing.T) {
	for _, s := range []string{"", "a", `a,b$c|d\e`, `\\`, "x|"} {
		if got := unescape(escape(s)); got != s {
			t.Errorf("unescape(escape(%q)) = %q", s, got)
		}
	}
	if got := splitEscaped(`a\,b,c\\,d`, ','); len(got) != 3 || got[0] != `a\,b` || got[1] != `c\\` || got[2] != "d" {
		t.Errorf("splitEscaped: %q", got)
	}
}
