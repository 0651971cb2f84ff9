package fhirpath

import (
	"errors"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Decimal is a FHIRPath System.Decimal: an exact base-10 number that keeps
// the precision it was written with ("1.50" has scale 2). Arithmetic is exact
// except division, which keeps divScale fractional digits. The zero value is 0.
type Decimal struct {
	u     *big.Int // unscaled value; nil means zero
	scale int32    // digits after the decimal point, >= 0
}

// divScale is the number of fractional digits kept by division.
const divScale = 16

// maxScale bounds the scale of decimals so that hostile input cannot make
// arithmetic allocate without limit.
const maxScale = 4096

var errDecimalSyntax = errors.New("fhirpath: invalid decimal")

var bigTen = big.NewInt(10)

// ParseDecimal parses a decimal in JSON number syntax ("-1.50", "2e3").
func ParseDecimal(s string) (Decimal, error) {
	if s == "" {
		return Decimal{}, errDecimalSyntax
	}
	mant, exp := s, int64(0)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.ParseInt(s[i+1:], 10, 32)
		if err != nil || e > maxScale || e < -maxScale {
			return Decimal{}, errDecimalSyntax
		}
		mant, exp = s[:i], e
	}
	neg := false
	if mant != "" && (mant[0] == '-' || mant[0] == '+') {
		neg = mant[0] == '-'
		mant = mant[1:]
	}
	intPart, frac := mant, ""
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
		if frac == "" {
			return Decimal{}, errDecimalSyntax
		}
	}
	if intPart == "" || len(frac) > maxScale || len(intPart) > maxScale {
		return Decimal{}, errDecimalSyntax
	}
	for _, c := range intPart + frac {
		if c < '0' || c > '9' {
			return Decimal{}, errDecimalSyntax
		}
	}
	var u big.Int
	if len(intPart)+len(frac) <= 18 {
		v, _ := strconv.ParseInt(intPart+frac, 10, 64)
		u.SetInt64(v)
	} else if _, ok := u.SetString(intPart+frac, 10); !ok {
		return Decimal{}, errDecimalSyntax
	}
	if neg {
		u.Neg(&u)
	}
	scale := int64(len(frac)) - exp
	d := Decimal{u: &u}
	if scale < 0 {
		d.u.Mul(d.u, pow10(int32(-scale)))
		scale = 0
	}
	if scale > maxScale {
		return Decimal{}, errDecimalSyntax
	}
	d.scale = int32(scale)
	return d, nil
}

// DecimalFromInt returns i as a Decimal with scale 0.
func DecimalFromInt(i int64) Decimal { return Decimal{u: big.NewInt(i)} }

func pow10(n int32) *big.Int {
	if n <= 18 {
		return big.NewInt(int64(math.Pow10(int(n))))
	}
	return new(big.Int).Exp(bigTen, big.NewInt(int64(n)), nil)
}

func (d Decimal) unscaled() *big.Int {
	if d.u == nil {
		return new(big.Int)
	}
	return d.u
}

// Scale returns the number of digits after the decimal point.
func (d Decimal) Scale() int { return int(d.scale) }

// withScale returns d rescaled to s >= d.scale (exact).
func (d Decimal) withScale(s int32) *big.Int {
	if s == d.scale {
		return d.unscaled()
	}
	return new(big.Int).Mul(d.unscaled(), pow10(s-d.scale))
}

// String formats d with its scale ("1.50").
func (d Decimal) String() string {
	s := d.unscaled().String()
	if d.scale == 0 {
		return s
	}
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	for int32(len(s)) <= d.scale {
		s = "0" + s
	}
	p := int32(len(s)) - d.scale
	s = s[:p] + "." + s[p:]
	if neg {
		s = "-" + s
	}
	return s
}

// Float64 returns the nearest float64.
func (d Decimal) Float64() float64 {
	f, _ := strconv.ParseFloat(d.String(), 64)
	return f
}

// Sign returns -1, 0 or 1.
func (d Decimal) Sign() int { return d.unscaled().Sign() }

// Cmp compares d and e numerically.
func (d Decimal) Cmp(e Decimal) int {
	s := max(d.scale, e.scale)
	return d.withScale(s).Cmp(e.withScale(s))
}

// Add returns d+e.
func (d Decimal) Add(e Decimal) Decimal {
	s := max(d.scale, e.scale)
	return Decimal{u: new(big.Int).Add(d.withScale(s), e.withScale(s)), scale: s}
}

// Sub returns d-e.
func (d Decimal) Sub(e Decimal) Decimal {
	s := max(d.scale, e.scale)
	return Decimal{u: new(big.Int).Sub(d.withScale(s), e.withScale(s)), scale: s}
}

// Mul returns d*e.
func (d Decimal) Mul(e Decimal) Decimal {
	r := Decimal{u: new(big.Int).Mul(d.unscaled(), e.unscaled()), scale: d.scale + e.scale}
	if r.scale > maxScale {
		r = r.Round(maxScale)
	}
	return r
}

// Neg returns -d.
func (d Decimal) Neg() Decimal { return Decimal{u: new(big.Int).Neg(d.unscaled()), scale: d.scale} }

// Quo returns d/e rounded to divScale digits with trailing zeros removed,
// and false when e is zero.
func (d Decimal) Quo(e Decimal) (Decimal, bool) {
	if e.Sign() == 0 {
		return Decimal{}, false
	}
	// d/e = (du/10^ds) / (eu/10^es); scale the numerator so the quotient has
	// divScale+1 digits, then round.
	target := int32(divScale + 1)
	num := new(big.Int).Mul(d.unscaled(), pow10(target+e.scale))
	den := new(big.Int).Mul(e.unscaled(), pow10(d.scale))
	q := new(big.Int).Quo(num, den)
	r := Decimal{u: q, scale: target}.Round(divScale)
	return r.trim(0), true
}

// trim removes trailing fractional zeros down to scale min.
func (d Decimal) trim(minScale int32) Decimal {
	u := new(big.Int).Set(d.unscaled())
	s := d.scale
	m := new(big.Int)
	for s > minScale {
		q, r := new(big.Int).QuoRem(u, bigTen, m)
		if r.Sign() != 0 {
			break
		}
		u = q
		s--
	}
	return Decimal{u: u, scale: s}
}

// Round rounds half away from zero to n fractional digits (n >= 0).
func (d Decimal) Round(n int32) Decimal {
	if n >= d.scale {
		return Decimal{u: d.withScale(n), scale: n}
	}
	p := pow10(d.scale - n)
	u := d.unscaled()
	q, r := new(big.Int).QuoRem(u, p, new(big.Int))
	r2 := new(big.Int).Mul(new(big.Int).Abs(r), big.NewInt(2))
	if r2.Cmp(p) >= 0 {
		if u.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return Decimal{u: q, scale: n}
}

// Truncate drops the fractional part.
func (d Decimal) Truncate() Decimal {
	return Decimal{u: new(big.Int).Quo(d.unscaled(), pow10(d.scale))}
}

// Floor returns the greatest integer <= d.
func (d Decimal) Floor() Decimal {
	q, m := new(big.Int).DivMod(d.unscaled(), pow10(d.scale), new(big.Int))
	_ = m
	return Decimal{u: q}
}

// Ceil returns the least integer >= d.
func (d Decimal) Ceil() Decimal {
	f := d.Floor()
	if f.Cmp(d) != 0 {
		return Decimal{u: new(big.Int).Add(f.u, big.NewInt(1))}
	}
	return f
}

// IsInteger reports whether d has no fractional part.
func (d Decimal) IsInteger() bool {
	return new(big.Int).Rem(d.unscaled(), pow10(d.scale)).Sign() == 0
}

// Int64 returns the integer part of d and whether it fits in an int64.
func (d Decimal) Int64() (int64, bool) {
	t := d.Truncate().u
	return t.Int64(), t.IsInt64()
}

// DecimalFromFloat converts f using the shortest representation that
// round-trips; false for NaN and infinities.
func DecimalFromFloat(f float64) (Decimal, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Decimal{}, false
	}
	d, err := ParseDecimal(strconv.FormatFloat(f, 'f', -1, 64))
	return d, err == nil
}

// divInt returns d div e (truncated integer division) and false on e == 0.
func (d Decimal) divInt(e Decimal) (Decimal, bool) {
	if e.Sign() == 0 {
		return Decimal{}, false
	}
	s := max(d.scale, e.scale)
	return Decimal{u: new(big.Int).Quo(d.withScale(s), e.withScale(s))}, true
}

// mod returns d mod e (sign of the dividend) and false on e == 0.
func (d Decimal) mod(e Decimal) (Decimal, bool) {
	if e.Sign() == 0 {
		return Decimal{}, false
	}
	s := max(d.scale, e.scale)
	return Decimal{u: new(big.Int).Rem(d.withScale(s), e.withScale(s)), scale: s}, true
}
