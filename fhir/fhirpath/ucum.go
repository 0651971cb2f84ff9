package fhirpath

import (
	"math/big"
	"sort"
	"strconv"
	"strings"
)

// A small UCUM engine: enough of the Unified Code for Units of Measure to
// compare and convert the units that occur in clinical data (mass, length,
// volume, time, pressure, amount of substance, their prefixes, products,
// quotients and powers). Units it does not know are compared by their code.

type ucumUnit struct {
	f    *big.Rat
	dims map[string]int
}

type atomDef struct {
	f    string // factor as a decimal or fraction
	base string // base units as "m2.g.s-2" (each with an exponent)
}

var ucumAtoms = map[string]atomDef{
	"m": {"1", "m"}, "g": {"1", "g"}, "s": {"1", "s"}, "A": {"1", "A"}, "K": {"1", "K"},
	"mol": {"1", "mol"}, "cd": {"1", "cd"}, "1": {"1", ""}, "%": {"1/100", ""},
	"[ppm]": {"1/1000000", ""}, "[ppb]": {"1/1000000000", ""},
	"min": {"60", "s"}, "h": {"3600", "s"}, "d": {"86400", "s"}, "wk": {"604800", "s"},
	"mo": {"2629800", "s"}, "a": {"31557600", "s"},
	"l": {"1/1000", "m3"}, "L": {"1/1000", "m3"},
	"[lb_av]": {"453.59237", "g"}, "[oz_av]": {"28.349523125", "g"}, "[gr]": {"0.06479891", "g"},
	"[in_i]": {"0.0254", "m"}, "[ft_i]": {"0.3048", "m"}, "[yd_i]": {"0.9144", "m"}, "[mi_i]": {"1609.344", "m"},
	"[foz_us]": {"0.0000295735295625", "m3"}, "[pt_us]": {"0.000473176473", "m3"}, "[gal_us]": {"0.003785411784", "m3"},
	"Hz": {"1", "s-1"}, "N": {"1000", "g.m.s-2"}, "Pa": {"1000", "g.m-1.s-2"}, "J": {"1000", "g.m2.s-2"},
	"W": {"1000", "g.m2.s-3"}, "bar": {"100000000", "g.m-1.s-2"}, "m[Hg]": {"133322387.415", "g.m-1.s-2"},
	"m[H2O]": {"9806650", "g.m-1.s-2"}, "[psi]": {"6894757.2932", "g.m-1.s-2"},
	"cal": {"4184", "g.m2.s-2"}, "[Cal]": {"4184000", "g.m2.s-2"}, "t": {"1000000", "g"},
	"eq": {"1", "mol"}, "osm": {"1", "mol"}, "kat": {"1", "mol.s-1"}, "U": {"1/60000000", "mol.s-1"},
	"[iU]": {"1", "[iU]"}, "[IU]": {"1", "[iU]"}, "[arb'U]": {"1", "[arb'U]"}, "[drp]": {"1", "[drp]"},
	"rad": {"1", ""}, "deg": {"1", "deg"}, "Cel": {"1", "Cel"}, "[degF]": {"1", "[degF]"},
	"[beats]": {"1", ""}, "[pH]": {"1", "[pH]"}, "V": {"1000", "g.m2.s-3.A-1"}, "C": {"1", "s.A"},
	"Ohm": {"1000", "g.m2.s-3.A-2"}, "S": {"1/1000", "g-1.m-2.s3.A2"}, "F": {"1/1000", "g-1.m-2.s4.A2"},
	"T": {"1000", "g.s-2.A-1"}, "Wb": {"1000", "g.m2.s-2.A-1"}, "Gy": {"1", "m2.s-2"}, "Sv": {"1", "m2.s-2"},
	"Bq": {"1", "s-1"}, "Ci": {"37000000000", "s-1"}, "[CFU]": {"1", "[CFU]"}, "mm[Hg]": {"133322.387415", "g.m-1.s-2"},
}

var ucumPrefixes = map[string]string{
	"Y": "1000000000000000000000000", "Z": "1000000000000000000000", "E": "1000000000000000000",
	"P": "1000000000000000", "T": "1000000000000", "G": "1000000000", "M": "1000000", "k": "1000",
	"h": "100", "da": "10", "d": "1/10", "c": "1/100", "m": "1/1000", "u": "1/1000000",
	"n": "1/1000000000", "p": "1/1000000000000", "f": "1/1000000000000000", "a": "1/1000000000000000000",
}

func ratOf(s string) *big.Rat {
	r, _ := new(big.Rat).SetString(s)
	return r
}

func (u *ucumUnit) mul(v ucumUnit, exp int) {
	f := v.f
	for i := 0; i < abs(exp); i++ {
		if exp > 0 {
			u.f.Mul(u.f, f)
		} else {
			u.f.Quo(u.f, f)
		}
	}
	for k, e := range v.dims {
		u.dims[k] += e * exp
		if u.dims[k] == 0 {
			delete(u.dims, k)
		}
	}
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

func newUnit() ucumUnit { return ucumUnit{f: big.NewRat(1, 1), dims: map[string]int{}} }

// parseUCUM parses a UCUM unit expression.
func parseUCUM(s string) (ucumUnit, bool) {
	if len(s) > 200 {
		return ucumUnit{}, false
	}
	p := &ucumParser{s: s}
	u, ok := p.term(0)
	if !ok || p.i != len(p.s) {
		return ucumUnit{}, false
	}
	return u, true
}

type ucumParser struct {
	s string
	i int
}

func (p *ucumParser) term(depth int) (ucumUnit, bool) {
	if depth > 10 {
		return ucumUnit{}, false
	}
	u := newUnit()
	sign := 1
	if p.i < len(p.s) && p.s[p.i] == '/' {
		sign = -1
		p.i++
	}
	for {
		c, ok := p.component(depth)
		if !ok {
			return ucumUnit{}, false
		}
		u.mul(c, sign)
		if p.i >= len(p.s) || p.s[p.i] == ')' {
			return u, true
		}
		switch p.s[p.i] {
		case '.':
			sign = 1
		case '/':
			sign = -1
		default:
			return ucumUnit{}, false
		}
		p.i++
	}
}

func (p *ucumParser) component(depth int) (ucumUnit, bool) {
	if p.i >= len(p.s) {
		return ucumUnit{}, false
	}
	var u ucumUnit
	switch {
	case p.s[p.i] == '(':
		p.i++
		inner, ok := p.term(depth + 1)
		if !ok || p.i >= len(p.s) || p.s[p.i] != ')' {
			return ucumUnit{}, false
		}
		p.i++
		u = inner
	case p.s[p.i] == '{':
		end := strings.IndexByte(p.s[p.i:], '}')
		if end < 0 {
			return ucumUnit{}, false
		}
		p.i += end + 1
		return newUnit(), true
	default:
		start := p.i
		for p.i < len(p.s) {
			c := p.s[p.i]
			if c == '.' || c == '/' || c == '(' || c == ')' || c == '{' {
				break
			}
			if c == '[' {
				end := strings.IndexByte(p.s[p.i:], ']')
				if end < 0 {
					return ucumUnit{}, false
				}
				p.i += end + 1
				continue
			}
			p.i++
		}
		sym := p.s[start:p.i]
		// trailing exponent
		j := len(sym)
		for j > 0 && sym[j-1] >= '0' && sym[j-1] <= '9' {
			j--
		}
		if j > 0 && (sym[j-1] == '-' || sym[j-1] == '+') && j < len(sym) {
			j--
		}
		exp := 1
		if j < len(sym) && j > 0 && !strings.HasSuffix(sym[:j], "*") && !strings.HasSuffix(sym[:j], "^") {
			e, err := strconv.Atoi(sym[j:])
			if err != nil {
				return ucumUnit{}, false
			}
			exp, sym = e, sym[:j]
		}
		a, ok := ucumAtom(sym)
		if !ok {
			return ucumUnit{}, false
		}
		u = newUnit()
		u.mul(a, exp)
		// an annotation may follow a unit
		if p.i < len(p.s) && p.s[p.i] == '{' {
			end := strings.IndexByte(p.s[p.i:], '}')
			if end < 0 {
				return ucumUnit{}, false
			}
			p.i += end + 1
		}
		return u, true
	}
	return u, true
}

func ucumAtom(sym string) (ucumUnit, bool) {
	if sym == "" {
		return ucumUnit{}, false
	}
	if a, ok := ucumAtoms[sym]; ok {
		return atomUnit(a), true
	}
	// integer factors: "1000", "10*3", "10^3"
	if n, err := strconv.ParseInt(sym, 10, 64); err == nil && n > 0 {
		u := newUnit()
		u.f.SetInt64(n)
		return u, true
	}
	for _, sep := range []string{"10*", "10^"} {
		if rest, ok := strings.CutPrefix(sym, sep); ok {
			e, err := strconv.Atoi(rest)
			if err != nil || e > 30 || e < -30 {
				return ucumUnit{}, false
			}
			u := newUnit()
			u.mul(ucumUnit{f: big.NewRat(10, 1), dims: map[string]int{}}, e)
			return u, true
		}
	}
	for _, plen := range []int{2, 1} {
		if len(sym) <= plen {
			continue
		}
		pf, ok := ucumPrefixes[sym[:plen]]
		if !ok {
			continue
		}
		a, ok := ucumAtoms[sym[plen:]]
		if !ok {
			continue
		}
		u := atomUnit(a)
		u.f.Mul(u.f, ratOf(pf))
		return u, true
	}
	return ucumUnit{}, false
}

func atomUnit(a atomDef) ucumUnit {
	u := ucumUnit{f: ratOf(a.f), dims: map[string]int{}}
	if a.base == "" {
		return u
	}
	for _, part := range strings.Split(a.base, ".") {
		j := len(part)
		for j > 0 && (part[j-1] >= '0' && part[j-1] <= '9' || part[j-1] == '-') {
			j--
		}
		e := 1
		if j < len(part) {
			e, _ = strconv.Atoi(part[j:])
		}
		u.dims[part[:j]] += e
	}
	return u
}

func dimsKey(d map[string]int) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteString(strconv.Itoa(d[k]))
		b.WriteByte('.')
	}
	return b.String()
}

// calendarToUCUM maps calendar durations of fixed length to UCUM.
var calendarToUCUM = map[string]string{
	"week": "wk", "day": "d", "hour": "h", "minute": "min", "second": "s", "millisecond": "ms",
}

// quantityUnit returns the UCUM-comparable unit of q: calendar units of
// fixed length become UCUM; year and month stay calendar ("cal:year").
func quantityUnit(q Quantity) (ucumUnit, bool) {
	if q.Calendar {
		cu := calendarUnits[q.Unit]
		if uc, ok := calendarToUCUM[cu]; ok {
			return parseUCUM(uc)
		}
		u := newUnit()
		switch cu {
		case "year":
			u.f.SetInt64(12)
		case "month":
		default:
			return ucumUnit{}, false
		}
		u.dims["cal-month"] = 1
		return u, true
	}
	return parseUCUM(q.Unit)
}

func ratOfDecimal(d Decimal) *big.Rat {
	return new(big.Rat).SetFrac(new(big.Int).Set(d.unscaled()), pow10(d.scale))
}

// compareQuantity compares two quantities after unit conversion; ok=false
// when the units are not comparable.
func compareQuantity(a, b Quantity) (int, bool) {
	if a.Unit == b.Unit && a.Calendar == b.Calendar {
		return a.Value.Cmp(b.Value), true
	}
	ua, ok1 := quantityUnit(a)
	ub, ok2 := quantityUnit(b)
	if !ok1 || !ok2 || dimsKey(ua.dims) != dimsKey(ub.dims) {
		return 0, false
	}
	va := new(big.Rat).Mul(ratOfDecimal(a.Value), ua.f)
	vb := new(big.Rat).Mul(ratOfDecimal(b.Value), ub.f)
	return va.Cmp(vb), true
}

// convertQuantity converts q to unit (given in the form of another
// quantity's unit, calendar keywords included).
func convertQuantity(q Quantity, unit string) (Quantity, bool) {
	if q.Unit == unit {
		return q, true
	}
	target := Quantity{Unit: unit, Calendar: calendarUnits[unit] != ""}
	uq, ok1 := quantityUnit(q)
	ut, ok2 := quantityUnit(target)
	if !ok1 || !ok2 || dimsKey(uq.dims) != dimsKey(ut.dims) {
		return Quantity{}, false
	}
	r := new(big.Rat).Mul(ratOfDecimal(q.Value), uq.f)
	r.Quo(r, ut.f)
	target.Value = ratToDecimal(r)
	return target, true
}

// ratToDecimal converts r with up to divScale fractional digits.
func ratToDecimal(r *big.Rat) Decimal {
	num := new(big.Int).Mul(r.Num(), pow10(divScale))
	q := new(big.Int).Quo(num, r.Denom())
	return Decimal{u: q, scale: divScale}.trim(0)
}

func ucumOf(q Quantity) string {
	if q.Calendar {
		if uc, ok := calendarToUCUM[calendarUnits[q.Unit]]; ok {
			return uc
		}
	}
	return q.Unit
}

func joinUnits(a, op, b string) string {
	wrap := func(s string) string {
		if strings.ContainsAny(s, "./") {
			return "(" + s + ")"
		}
		return s
	}
	if b == "1" {
		return a
	}
	if a == "1" && op == "." {
		return b
	}
	return wrap(a) + op + wrap(b)
}

func quantityArith(op string, a Quantity, b Value) (Collection, error) {
	switch y := b.(type) {
	case Quantity:
		switch op {
		case "+", "-":
			yc, ok := convertQuantity(y, a.Unit)
			if !ok {
				return nil, evalErr("cannot add %s and %s", a, y)
			}
			if op == "+" {
				a.Value = a.Value.Add(yc.Value)
			} else {
				a.Value = a.Value.Sub(yc.Value)
			}
			return Collection{a}, nil
		case "*":
			return Collection{Quantity{Value: a.Value.Mul(y.Value), Unit: joinUnits(ucumOf(a), ".", ucumOf(y))}}, nil
		case "/":
			v, ok := a.Value.Quo(y.Value)
			if !ok {
				return nil, nil
			}
			return Collection{Quantity{Value: v, Unit: joinUnits(ucumOf(a), "/", ucumOf(y))}}, nil
		}
	case Integer, Decimal:
		d, _ := toDecimal(y)
		switch op {
		case "*":
			a.Value = a.Value.Mul(d)
			return Collection{a}, nil
		case "/":
			v, ok := a.Value.Quo(d)
			if !ok {
				return nil, nil
			}
			a.Value = v
			return Collection{a}, nil
		}
	}
	return nil, evalErr("'%s' on %s and %s", op, typeLabel(a), typeLabel(b))
}

// comparableUnits reports whether two quantities can be converted into each other.
func comparableUnits(a, b Quantity) bool {
	ua, ok1 := quantityUnit(a)
	ub, ok2 := quantityUnit(b)
	return ok1 && ok2 && dimsKey(ua.dims) == dimsKey(ub.dims)
}

// Canonical returns q converted to UCUM base units (g, m, s, mol, A, K, cd
// and the arbitrary units such as [iU]) with a canonical unit code, e.g.
// 185 '[lb_av]' becomes 83914.58845 'g' and 5 'mg/dL' becomes 50 'g.m-3'.
// Quantities with the same canonical unit can be compared by value. It
// reports false when the unit is not a UCUM unit the engine knows, and for
// the calendar durations year and month, which have no fixed length.
func (q Quantity) Canonical() (Quantity, bool) {
	if q.Calendar && calendarToUCUM[calendarUnits[q.Unit]] == "" {
		return Quantity{}, false
	}
	u, ok := quantityUnit(q)
	if !ok {
		return Quantity{}, false
	}
	for k := range u.dims {
		switch k {
		case "Cel", "[degF]", "[pH]":
			return Quantity{}, false // units with an offset or a log scale
		}
	}
	keys := make([]string, 0, len(u.dims))
	for k := range u.dims {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(k)
		if e := u.dims[k]; e != 1 {
			b.WriteString(strconv.Itoa(e))
		}
	}
	unit := b.String()
	if unit == "" {
		unit = "1"
	}
	v := new(big.Rat).Mul(ratOfDecimal(q.Value), u.f)
	return Quantity{Value: ratToDecimal(v), Unit: unit}, true
}
