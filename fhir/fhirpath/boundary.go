package fhirpath

import "math/big"

// boundaryFn implements lowBoundary() and highBoundary(): the least or
// greatest value the input could stand for given its precision, expressed
// with the requested precision.
func boundaryFn(high bool) fnImpl {
	return func(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
		focus = values(focus)
		if len(focus) == 0 {
			return nil, nil
		}
		if len(focus) > 1 {
			return nil, evalErr("%s() on a collection of %d items", c.name, len(focus))
		}
		prec, hasPrec := int64(-1), false
		if len(c.args) == 1 {
			p, ok, err := intArg(ec, c, 0, fr)
			if err != nil {
				return nil, err
			}
			if ok {
				prec, hasPrec = p, true
			}
		}
		switch v := sys(focus[0]).(type) {
		case Integer:
			return decimalBoundary(DecimalFromInt(int64(v)), prec, hasPrec, high)
		case Decimal:
			return decimalBoundary(v, prec, hasPrec, high)
		case Quantity:
			r, err := decimalBoundary(v.Value, prec, hasPrec, high)
			if err != nil || len(r) == 0 {
				return r, err
			}
			v.Value = r[0].(Decimal)
			return Collection{v}, nil
		case Date:
			if !hasPrec {
				prec = 8
			}
			t, ok := temporalBoundary(v.t, prec, high, false)
			if !ok {
				return nil, nil
			}
			if t.prec <= PrecDay {
				return Collection{Date{t}}, nil
			}
			return Collection{DateTime{t}}, nil
		case DateTime:
			if !hasPrec {
				prec = 17
			}
			t, ok := temporalBoundary(v.t, prec, high, false)
			if !ok {
				return nil, nil
			}
			if t.prec <= PrecDay {
				return Collection{Date{t}}, nil
			}
			return Collection{DateTime{t}}, nil
		case Time:
			if !hasPrec {
				prec = 9
			}
			t, ok := temporalBoundary(v.t, prec, high, true)
			if !ok {
				return nil, nil
			}
			return Collection{Time{t}}, nil
		}
		return nil, evalErr("%s() on %s", c.name, typeLabel(focus[0]))
	}
}

func decimalBoundary(d Decimal, prec int64, hasPrec, high bool) (Collection, error) {
	if !hasPrec {
		prec = 8
	}
	if prec < 0 || prec > 28 {
		return nil, nil
	}
	// half a unit in the last place
	half := Decimal{u: big.NewInt(5), scale: d.scale + 1}
	var b Decimal
	if high {
		b = d.Add(half)
	} else {
		b = d.Sub(half)
	}
	p := int32(prec)
	if p >= b.scale {
		return Collection{Decimal{u: b.withScale(p), scale: p}}, nil
	}
	unit := pow10(b.scale - p)
	q, m := new(big.Int).DivMod(b.unscaled(), unit, new(big.Int)) // floor
	if high && m.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return Collection{Decimal{u: q, scale: p}}, nil
}

// temporalBoundary fills the components below the value's precision with
// their least or greatest values, up to the precision given in digits.
func temporalBoundary(t temporal, digits int64, high, isTime bool) (temporal, bool) {
	var target Precision
	if isTime {
		switch digits {
		case 2:
			target = PrecHour
		case 4:
			target = PrecMinute
		case 6:
			target = PrecSecond
		case 9:
			target = PrecMillisecond
		default:
			return t, false
		}
	} else {
		switch digits {
		case 4:
			target = PrecYear
		case 6:
			target = PrecMonth
		case 8:
			target = PrecDay
		case 10:
			target = PrecHour
		case 12:
			target = PrecMinute
		case 14:
			target = PrecSecond
		case 17:
			target = PrecMillisecond
		default:
			return t, false
		}
	}
	r := t
	if high {
		if r.prec < PrecMonth {
			r.month = 12
		}
		if r.prec < PrecDay {
			r.day = daysIn(r.year, r.month)
		}
		if r.prec < PrecHour {
			r.hour = 23
		}
		if r.prec < PrecMinute {
			r.minute = 59
		}
		if r.prec < PrecSecond {
			r.sec = 59
		}
		if r.prec < PrecMillisecond {
			r.ms = 999
		}
	} else {
		if r.prec < PrecMonth {
			r.month = 1
		}
		if r.prec < PrecDay {
			r.day = 1
		}
		if r.prec < PrecHour {
			r.hour = 0
		}
		if r.prec < PrecMinute {
			r.minute = 0
		}
		if r.prec < PrecSecond {
			r.sec = 0
		}
		if r.prec < PrecMillisecond {
			r.ms = 0
		}
	}
	if !isTime && target > PrecDay && !r.tz {
		// without offset the value could be in any zone
		r.tz = true
		if high {
			r.off = -12 * 60
		} else {
			r.off = 14 * 60
		}
	}
	r.prec = target
	if target <= PrecDay {
		r.tz, r.off = false, 0
	}
	return r, true
}

func fnPrecision(_ *evalCtx, focus Collection, c *callExpr, _ *frame) (Collection, error) {
	focus = values(focus)
	if len(focus) == 0 {
		return nil, nil
	}
	if len(focus) > 1 {
		return nil, evalErr("precision() on a collection of %d items", len(focus))
	}
	switch v := sys(focus[0]).(type) {
	case Integer:
		return Collection{Integer(0)}, nil
	case Decimal:
		return Collection{Integer(v.scale)}, nil
	case Quantity:
		return Collection{Integer(v.Value.scale)}, nil
	case Date:
		return Collection{Integer(v.t.precisionDigits(false))}, nil
	case DateTime:
		return Collection{Integer(v.t.precisionDigits(false))}, nil
	case Time:
		return Collection{Integer(v.t.precisionDigits(true))}, nil
	}
	return nil, evalErr("precision() on %s", typeLabel(focus[0]))
}

func fnComparable(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	other, err := c.arg(ec, 0, fr)
	if err != nil {
		return nil, err
	}
	if len(focus) != 1 || len(other) != 1 {
		return nil, nil
	}
	a, ok1 := sys(focus[0]).(Quantity)
	b, ok2 := sys(other[0]).(Quantity)
	if !ok1 || !ok2 {
		return nil, evalErr("comparable() needs quantities")
	}
	return boolResult(comparableUnits(a, b))
}
