package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Precision is the precision of a date, date-time or time value.
type Precision uint8

// Precisions, coarsest first. Seconds and milliseconds compare as one
// precision, as the specification requires.
const (
	PrecYear Precision = iota + 1
	PrecMonth
	PrecDay
	PrecHour
	PrecMinute
	PrecSecond
	PrecMillisecond
)

// temporal is the shared representation of Date, DateTime and Time.
type temporal struct {
	year, month, day  int
	hour, minute, sec int
	ms                int
	prec              Precision
	tz                bool // a time-zone offset was given
	off               int  // offset east of UTC in minutes
}

// Date is a FHIRPath System.Date with year, month or day precision.
type Date struct{ t temporal }

// DateTime is a FHIRPath System.DateTime with any precision from year to
// millisecond and an optional time-zone offset.
type DateTime struct{ t temporal }

// Time is a FHIRPath System.Time (a time of day) with hour to millisecond precision.
type Time struct{ t temporal }

func atoiN(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, len(s) > 0
}

// parseDatePart parses YYYY[-MM[-DD]] and returns the rest.
func parseDatePart(s string) (temporal, string, bool) {
	var t temporal
	if len(s) < 4 {
		return t, s, false
	}
	y, ok := atoiN(s[:4])
	if !ok {
		return t, s, false
	}
	t.year, t.month, t.day, t.prec = y, 1, 1, PrecYear
	s = s[4:]
	if len(s) >= 3 && s[0] == '-' {
		m, ok := atoiN(s[1:3])
		if !ok || m < 1 || m > 12 {
			return t, s, false
		}
		t.month, t.prec = m, PrecMonth
		s = s[3:]
		if len(s) >= 3 && s[0] == '-' {
			d, ok := atoiN(s[1:3])
			if !ok || d < 1 || d > daysIn(t.year, t.month) {
				return t, s, false
			}
			t.day, t.prec = d, PrecDay
			s = s[3:]
		}
	}
	return t, s, true
}

func daysIn(y, m int) int {
	return time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// parseTimePart parses hh[:mm[:ss[.fff]]] into t and returns the rest.
func parseTimePart(t *temporal, s string) (string, bool) {
	if len(s) < 2 {
		return s, false
	}
	h, ok := atoiN(s[:2])
	if !ok || h > 23 {
		return s, false
	}
	t.hour, t.prec = h, PrecHour
	s = s[2:]
	if len(s) >= 3 && s[0] == ':' {
		m, ok := atoiN(s[1:3])
		if !ok || m > 59 {
			return s, false
		}
		t.minute, t.prec = m, PrecMinute
		s = s[3:]
		if len(s) >= 3 && s[0] == ':' {
			sec, ok := atoiN(s[1:3])
			if !ok || sec > 59 {
				return s, false
			}
			t.sec, t.prec = sec, PrecSecond
			s = s[3:]
			if len(s) >= 2 && s[0] == '.' && s[1] >= '0' && s[1] <= '9' {
				i := 1
				for i < len(s) && s[i] >= '0' && s[i] <= '9' {
					i++
				}
				frac := s[1:i] + "00"
				t.ms, _ = atoiN(frac[:3])
				t.prec = PrecMillisecond
				s = s[i:]
			}
		}
	}
	return s, true
}

// parseZone parses Z or +hh:mm / -hh:mm; the whole string must be consumed.
func parseZone(t *temporal, s string) bool {
	switch {
	case s == "":
		return true
	case s == "Z":
		t.tz, t.off = true, 0
		return true
	case len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':':
		h, ok1 := atoiN(s[1:3])
		m, ok2 := atoiN(s[4:6])
		if !ok1 || !ok2 || m > 59 || h*60+m > 14*60 {
			return false
		}
		t.tz, t.off = true, h*60+m
		if s[0] == '-' {
			t.off = -t.off
		}
		return true
	}
	return false
}

// ParseDate parses a FHIR date or FHIRPath date literal text (without "@").
func ParseDate(s string) (Date, bool) {
	t, rest, ok := parseDatePart(s)
	if !ok || rest != "" {
		return Date{}, false
	}
	return Date{t}, true
}

// ParseDateTime parses a FHIR dateTime/instant or FHIRPath date-time
// literal text (without "@"); a trailing "T" with no time is accepted.
func ParseDateTime(s string) (DateTime, bool) {
	t, rest, ok := parseDatePart(s)
	if !ok {
		return DateTime{}, false
	}
	if rest == "" {
		return DateTime{t}, true
	}
	if rest[0] != 'T' {
		return DateTime{}, false
	}
	rest = rest[1:]
	if rest == "" {
		return DateTime{t}, true
	}
	if t.prec != PrecDay {
		return DateTime{}, false
	}
	if rest, ok = parseTimePart(&t, rest); !ok {
		return DateTime{}, false
	}
	if !parseZone(&t, rest) {
		return DateTime{}, false
	}
	return DateTime{t}, true
}

// ParseTime parses a FHIR time or FHIRPath time literal text (without "@T").
func ParseTime(s string) (Time, bool) {
	var t temporal
	rest, ok := parseTimePart(&t, s)
	if !ok || rest != "" {
		return Time{}, false
	}
	return Time{t}, true
}

func (t temporal) formatDate(b *strings.Builder) {
	fmt.Fprintf(b, "%04d", t.year)
	if t.prec >= PrecMonth {
		fmt.Fprintf(b, "-%02d", t.month)
	}
	if t.prec >= PrecDay {
		fmt.Fprintf(b, "-%02d", t.day)
	}
}

func (t temporal) formatTime(b *strings.Builder) {
	fmt.Fprintf(b, "%02d", t.hour)
	if t.prec >= PrecMinute {
		fmt.Fprintf(b, ":%02d", t.minute)
	}
	if t.prec >= PrecSecond {
		fmt.Fprintf(b, ":%02d", t.sec)
	}
	if t.prec >= PrecMillisecond {
		fmt.Fprintf(b, ".%03d", t.ms)
	}
}

func (t temporal) formatZone(b *strings.Builder) {
	if !t.tz {
		return
	}
	if t.off == 0 {
		b.WriteString("Z")
		return
	}
	o, sign := t.off, '+'
	if o < 0 {
		o, sign = -o, '-'
	}
	fmt.Fprintf(b, "%c%02d:%02d", sign, o/60, o%60)
}

// String formats the date as in FHIR ("2020-01").
func (d Date) String() string {
	var b strings.Builder
	d.t.formatDate(&b)
	return b.String()
}

// String formats the date-time as in FHIR ("2020-01-02T10:00:00.000+01:00").
func (d DateTime) String() string {
	var b strings.Builder
	d.t.formatDate(&b)
	if d.t.prec > PrecDay {
		b.WriteByte('T')
		d.t.formatTime(&b)
		d.t.formatZone(&b)
	}
	return b.String()
}

// String formats the time as in FHIR ("10:30:00").
func (t Time) String() string {
	var b strings.Builder
	t.t.formatTime(&b)
	return b.String()
}

// Precision returns the precision of the value.
func (d Date) Precision() Precision { return d.t.prec }

// Precision returns the precision of the value.
func (d DateTime) Precision() Precision { return d.t.prec }

// Precision returns the precision of the value.
func (t Time) Precision() Precision { return t.t.prec }

// HasZone reports whether the date-time carries a time-zone offset.
func (d DateTime) HasZone() bool { return d.t.tz }

// loc returns the fixed zone of t (UTC when none was given).
func (t temporal) loc() *time.Location {
	if !t.tz || t.off == 0 {
		return time.UTC
	}
	return time.FixedZone("", t.off*60)
}

// Time returns the start of the value's precision range as a time.Time, in
// its own offset (UTC when it has none).
func (d DateTime) Time() time.Time { return d.t.start() }

// Time returns the start of the date (UTC midnight).
func (d Date) Time() time.Time { return d.t.start() }

func (t temporal) start() time.Time {
	return time.Date(t.year, time.Month(t.month), t.day, t.hour, t.minute, t.sec, t.ms*1e6, t.loc())
}

// end returns the exclusive end of the precision range.
func (t temporal) end() time.Time {
	s := t.start()
	switch t.prec {
	case PrecYear:
		return s.AddDate(1, 0, 0)
	case PrecMonth:
		return s.AddDate(0, 1, 0)
	case PrecDay:
		return s.AddDate(0, 0, 1)
	case PrecHour:
		return s.Add(time.Hour)
	case PrecMinute:
		return s.Add(time.Minute)
	default:
		return s.Add(time.Millisecond)
	}
}

// Range returns the instants [low, high) the value stands for; a value
// without offset is read as UTC.
func (d DateTime) Range() (low, high time.Time) { return d.t.start(), d.t.end() }

// Range returns the instants [low, high) the date stands for, read as UTC.
func (d Date) Range() (low, high time.Time) { return d.t.start(), d.t.end() }

// cmpPrec maps millisecond precision onto second precision for comparison.
func cmpPrec(p Precision) Precision {
	if p == PrecMillisecond {
		return PrecSecond
	}
	return p
}

// compareTemporal compares two date/date-time values (or two times). It
// returns ok=false when the result is uncertain because the precisions
// differ and the values agree up to the coarser one.
func compareTemporal(a, b temporal) (c int, ok bool) {
	if cmpPrec(a.prec) == cmpPrec(b.prec) && a.tz == b.tz {
		as, bs := a.start(), b.start()
		return as.Compare(bs), true
	}
	al, ah := a.start(), a.end()
	bl, bh := b.start(), b.end()
	// A value without offset could be in any zone (-12:00..+14:00) when the
	// other has one and the precision reaches into hours.
	if a.tz != b.tz {
		const w = 14 * time.Hour
		if !a.tz {
			al, ah = al.Add(-w), ah.Add(w)
		} else {
			bl, bh = bl.Add(-w), bh.Add(w)
		}
	}
	if !ah.After(bl) {
		return -1, true
	}
	if !bh.After(al) {
		return 1, true
	}
	return 0, false
}

// calendar units in the order of temporal precision.
var calendarUnits = map[string]string{
	"year": "year", "years": "year", "month": "month", "months": "month",
	"week": "week", "weeks": "week", "day": "day", "days": "day",
	"hour": "hour", "hours": "hour", "minute": "minute", "minutes": "minute",
	"second": "second", "seconds": "second", "millisecond": "millisecond", "milliseconds": "millisecond",
}

// ucumTimeUnits maps the UCUM time units allowed in date arithmetic.
var ucumTimeUnits = map[string]string{
	"wk": "week", "d": "day", "h": "hour", "min": "minute", "s": "second", "ms": "millisecond",
}

// addDuration adds n units to t, keeping t's precision. unit is a calendar
// unit name ("year", "day", ...).
func (t temporal) addDuration(n int64, unit string, isTime bool) (temporal, error) {
	if n > 1e7 || n < -1e7 {
		return t, fmt.Errorf("%w: duration out of range", ErrEval)
	}
	ms := int64(0)
	switch unit {
	case "year":
		if isTime {
			return t, nil
		}
		return t.addMonths(n * 12), nil
	case "month":
		if isTime {
			return t, nil
		}
		return t.addMonths(n), nil
	case "week":
		ms = n * 7 * 86400000
	case "day":
		ms = n * 86400000
	case "hour":
		ms = n * 3600000
	case "minute":
		ms = n * 60000
	case "second":
		ms = n * 1000
	case "millisecond":
		ms = n
	default:
		return t, fmt.Errorf("%w: %s is not a time unit", ErrEval, unit)
	}
	// Convert the duration to the precision of the value, ignoring the remainder.
	var unitMS int64
	switch t.prec {
	case PrecYear:
		return t.addMonths(ms / (365 * 86400000) * 12), nil
	case PrecMonth:
		return t.addMonths(ms / (30 * 86400000)), nil
	case PrecDay:
		unitMS = 86400000
	case PrecHour:
		unitMS = 3600000
	case PrecMinute:
		unitMS = 60000
	case PrecSecond:
		unitMS = 1000
	default:
		unitMS = 1
	}
	ms = ms / unitMS * unitMS
	s := t.start().Add(time.Duration(ms) * time.Millisecond)
	r := t
	if isTime {
		// wrap around the day
		day := int64(86400000)
		cur := int64(t.hour)*3600000 + int64(t.minute)*60000 + int64(t.sec)*1000 + int64(t.ms)
		v := ((cur+ms)%day + day) % day
		r.hour, r.minute, r.sec, r.ms = int(v/3600000), int(v/60000%60), int(v/1000%60), int(v%1000)
		return r, nil
	}
	r.year, r.month, r.day = s.Year(), int(s.Month()), s.Day()
	r.hour, r.minute, r.sec, r.ms = s.Hour(), s.Minute(), s.Second(), s.Nanosecond()/1e6
	return r, nil
}

func (t temporal) addMonths(n int64) temporal {
	total := int64(t.year)*12 + int64(t.month-1) + n
	r := t
	r.year, r.month = int(total/12), int(total%12)+1
	if d := daysIn(r.year, r.month); r.day > d {
		r.day = d
	}
	return r
}

// temporalFromTime converts a time.Time to a date-time with millisecond precision.
func temporalFromTime(tt time.Time) temporal {
	_, off := tt.Zone()
	return temporal{
		year: tt.Year(), month: int(tt.Month()), day: tt.Day(),
		hour: tt.Hour(), minute: tt.Minute(), sec: tt.Second(), ms: tt.Nanosecond() / 1e6,
		prec: PrecMillisecond, tz: true, off: off / 60,
	}
}

// precisionDigits returns the FHIRPath precision() of a temporal value.
func (t temporal) precisionDigits(isTime bool) int {
	if isTime {
		return [...]int{0, 0, 0, 0, 2, 4, 6, 9}[t.prec]
	}
	return [...]int{0, 4, 6, 8, 10, 12, 14, 17}[t.prec]
}

func itoa(i int) string { return strconv.Itoa(i) }
