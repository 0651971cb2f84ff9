package search

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// DateRange returns the instant range covered by a FHIR date, dateTime or
// instant, or by a search date: YYYY, YYYY-MM, YYYY-MM-DD or
// YYYY-MM-DDThh:mm[:ss[.fraction]][Z|(+|-)hh:mm]. lo and hi are Unix
// microseconds in UTC, both inclusive: "2020-03" covers all of March 2020,
// "2020-03-01T10:00:00.5Z" the 100 ms from 10:00:00.500. A value with a
// time but no time zone is taken as UTC, and so are dates without a time
// (a date has no zone in FHIR; Regie's servers run in UTC).
func DateRange(s string) (lo, hi int64, ok bool) {
	num := func(i, n int) (int, bool) {
		if i+n > len(s) {
			return 0, false
		}
		v := 0
		for j := i; j < i+n; j++ {
			c := s[j]
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok := num(0, 4)
	if !ok {
		return 0, 0, false
	}
	month, day, hour, minute, sec, micro := 1, 1, 0, 0, 0, 0
	i := 4
	var step func(t time.Time) time.Time
	step = func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }
	var stepMicro int64
	off := 0 // zone offset east of UTC, seconds
	if i < len(s) {
		if s[i] != '-' {
			return 0, 0, false
		}
		if month, ok = num(i+1, 2); !ok || month < 1 || month > 12 {
			return 0, 0, false
		}
		i += 3
		step = func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }
	}
	if i < len(s) {
		if s[i] != '-' {
			return 0, 0, false
		}
		if day, ok = num(i+1, 2); !ok || day < 1 || day > daysIn(year, month) {
			return 0, 0, false
		}
		i += 3
		step = func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
	}
	if i < len(s) {
		if s[i] != 'T' {
			return 0, 0, false
		}
		if hour, ok = num(i+1, 2); !ok || hour > 23 {
			return 0, 0, false
		}
		if i+3 >= len(s) || s[i+3] != ':' {
			return 0, 0, false
		}
		if minute, ok = num(i+4, 2); !ok || minute > 59 {
			return 0, 0, false
		}
		i += 6
		step = nil
		stepMicro = 60e6
		if i < len(s) && s[i] == ':' {
			if sec, ok = num(i+1, 2); !ok || sec > 59 {
				return 0, 0, false
			}
			i += 3
			stepMicro = 1e6
			if i < len(s) && s[i] == '.' {
				j := i + 1
				digits := 0
				for j < len(s) && s[j] >= '0' && s[j] <= '9' {
					if digits < 6 {
						micro = micro*10 + int(s[j]-'0')
					}
					digits++
					j++
				}
				if digits == 0 {
					return 0, 0, false
				}
				d := min(digits, 6)
				for k := d; k < 6; k++ {
					micro *= 10
				}
				stepMicro = int64(math.Pow10(6 - d))
				i = j
			}
		}
		if i < len(s) {
			switch s[i] {
			case 'Z':
				i++
			case '+', '-':
				oh, ok1 := num(i+1, 2)
				om, ok2 := num(i+4, 2)
				if !ok1 || !ok2 || s[i+3] != ':' || oh > 14 || om > 59 {
					return 0, 0, false
				}
				off = oh*3600 + om*60
				if s[i] == '-' {
					off = -off
				}
				i += 6
			default:
				return 0, 0, false
			}
		}
	}
	if i != len(s) {
		return 0, 0, false
	}
	start := time.Date(year, time.Month(month), day, hour, minute, sec, micro*1000, time.UTC)
	start = start.Add(-time.Duration(off) * time.Second)
	lo = start.UnixMicro()
	if step != nil {
		hi = step(start).UnixMicro() - 1
	} else {
		hi = lo + stepMicro - 1
	}
	return lo, hi, true
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// DecimalRange parses a decimal in FHIR/JSON syntax (an optional sign,
// digits, an optional fraction and exponent) and returns its value and the
// range implied by its precision: "100" is [99.5, 100.5], "100.00" is
// [99.995, 100.005], "1e2" is [50, 150].
func DecimalRange(s string) (v, lo, hi float64, ok bool) {
	if !decimalSyntax(s) {
		return 0, 0, 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, 0, 0, false
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil {
			return 0, 0, 0, false
		}
		mant, exp = s[:i], e
	}
	frac := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		frac = len(mant) - i - 1
	}
	half := 0.5 * math.Pow10(exp-frac)
	return v, v - half, v + half, true
}

// decimalSyntax reports whether s is [+-]digits[.digits][(e|E)[+-]digits].
func decimalSyntax(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	d := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		d++
	}
	if d == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		d = 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			d++
		}
		if d == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			i++
		}
		d = 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			d++
		}
		if d == 0 || d > 4 {
			return false
		}
	}
	return i == len(s)
}

// splitEscaped splits s at every sep that is not escaped with a backslash.
// The parts keep their escapes.
func splitEscaped(s string, sep byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// cutEscaped splits s at the first sep that is not escaped.
func cutEscaped(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// unescape removes the search escapes \, \$ \| and \\. Any other backslash
// is kept.
func unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case ',', '$', '|', '\\':
				b.WriteByte(s[i+1])
				i++
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// escape is the inverse of unescape.
func escape(s string) string {
	if !strings.ContainsAny(s, `,$|\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', '$', '|', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
