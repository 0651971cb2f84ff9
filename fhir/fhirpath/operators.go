package fhirpath

import (
	"bytes"
	"math"
	"strings"
	"unicode"
)

type binaryExpr struct {
	op   string
	l, r expr
	pos  int
}

func newBinary(op string, l, r expr, pos int) expr {
	return &binaryExpr{op: op, l: l, r: r, pos: pos}
}

func (x *binaryExpr) eval(ec *evalCtx, in Collection, fr *frame) (Collection, error) {
	switch x.op {
	case "and", "or", "implies":
		return x.logic(ec, in, fr)
	}
	l, err := x.l.eval(ec, in, fr)
	if err != nil {
		return nil, err
	}
	r, err := x.r.eval(ec, in, fr)
	if err != nil {
		return nil, err
	}
	if err := ec.step(); err != nil {
		return nil, err
	}
	switch x.op {
	case "|", "=", "!=", "~", "!~", "in", "contains":
	default:
		l, r = values(l), values(r)
	}
	switch x.op {
	case "|":
		return union(ec, l, r), nil
	case "=", "!=":
		eq, ok := collEqual(l, r)
		if !ok {
			return nil, nil
		}
		return Collection{Boolean(eq == (x.op == "="))}, nil
	case "~", "!~":
		eq := collEquivalent(l, r)
		return Collection{Boolean(eq == (x.op == "~"))}, nil
	case "<", ">", "<=", ">=":
		return compareOp(x.op, l, r)
	case "in", "contains":
		elem, coll := l, r
		if x.op == "contains" {
			elem, coll = r, l
		}
		if len(elem) == 0 {
			return nil, nil
		}
		if len(elem) > 1 {
			return nil, evalErr("'%s' with %d items", x.op, len(elem))
		}
		for _, v := range coll {
			if eq, ok := itemEqual(elem[0], v); ok && eq {
				return Collection{Boolean(true)}, nil
			}
		}
		return Collection{Boolean(false)}, nil
	case "xor":
		a, aok, err := toBool(l)
		if err != nil {
			return nil, err
		}
		b, bok, err := toBool(r)
		if err != nil {
			return nil, err
		}
		if !aok || !bok {
			return nil, nil
		}
		return Collection{Boolean(a != b)}, nil
	case "&":
		a, _, err := concatArg(l)
		if err != nil {
			return nil, err
		}
		b, _, err := concatArg(r)
		if err != nil {
			return nil, err
		}
		return Collection{String(a + b)}, nil
	}
	return arith(x.op, l, r)
}

func concatArg(c Collection) (string, bool, error) {
	if len(c) > 1 {
		return "", false, evalErr("'&' with %d items", len(c))
	}
	return singleString(c)
}

// logic implements and, or, implies with three-valued logic and short cuts.
func (x *binaryExpr) logic(ec *evalCtx, in Collection, fr *frame) (Collection, error) {
	l, err := x.l.eval(ec, in, fr)
	if err != nil {
		return nil, err
	}
	a, aok, err := toBool(l)
	if err != nil {
		return nil, err
	}
	switch x.op {
	case "and":
		if aok && !a {
			return Collection{Boolean(false)}, nil
		}
	case "or":
		if aok && a {
			return Collection{Boolean(true)}, nil
		}
	case "implies":
		if aok && !a {
			return Collection{Boolean(true)}, nil
		}
	}
	r, err := x.r.eval(ec, in, fr)
	if err != nil {
		return nil, err
	}
	b, bok, err := toBool(r)
	if err != nil {
		return nil, err
	}
	switch x.op {
	case "and":
		if bok && !b {
			return Collection{Boolean(false)}, nil
		}
		if aok && bok {
			return Collection{Boolean(true)}, nil
		}
	case "or":
		if bok && b {
			return Collection{Boolean(true)}, nil
		}
		if aok && bok {
			return Collection{Boolean(false)}, nil
		}
	case "implies":
		if bok && b {
			return Collection{Boolean(true)}, nil
		}
		if aok && bok {
			return Collection{Boolean(false)}, nil
		}
	}
	return nil, nil
}

// union merges two collections removing duplicates.
func union(ec *evalCtx, l, r Collection) Collection {
	switch {
	case len(l)+len(r) == 0:
		return nil
	case len(r) == 0 && len(l) == 1:
		return l
	case len(l) == 0 && len(r) == 1:
		return r
	}
	all := make(Collection, 0, len(l)+len(r))
	return dedupe(ec, append(append(all, l...), r...))
}

// hashThreshold is the collection size from which dedupe hashes the items
// that have a key instead of comparing all pairs.
const hashThreshold = 32

// dedupe removes later duplicates from c, compacting it in place.
func dedupe(ec *evalCtx, c Collection) Collection {
	out := c[:0]
	if len(c) < hashThreshold {
		for _, v := range c {
			if !containsItem(ec, out, v) {
				out = append(out, v)
			}
		}
		return out
	}
	seen := make(map[string]bool, len(c))
	var others Collection // items without a key: compared pairwise
	for _, v := range c {
		if ec.work(1) != nil {
			return out
		}
		if k, ok := equalityKey(v); ok {
			if !seen[k] {
				seen[k] = true
				out = append(out, v)
			}
			continue
		}
		if !containsItem(ec, others, v) {
			others = append(others, v)
			out = append(out, v)
		}
	}
	return out
}

// equalityKey returns a string that is equal for two items exactly when
// '=' says they are equal, for the kinds of items where that is simple:
// strings, booleans, numbers and dates/times. Quantities and complex nodes
// have none.
func equalityKey(v Value) (string, bool) {
	if n, ok := v.(*Node); ok && n.kind == 'o' {
		return "", false
	}
	switch x := sys(v).(type) {
	case String:
		return "s" + string(x), true
	case Boolean:
		if x {
			return "btrue", true
		}
		return "bfalse", true
	case Integer:
		return "n" + DecimalFromInt(int64(x)).String(), true
	case Decimal:
		return "n" + x.trim(0).String(), true
	case Date:
		return temporalKey("d", x.t), true
	case DateTime:
		return temporalKey("d", x.t), true
	case Time:
		return temporalKey("t", x.t), true
	}
	return "", false
}

func temporalKey(kind string, t temporal) string {
	tz := "n"
	if t.tz {
		tz = "z"
	}
	return kind + tz + itoa(int(cmpPrec(t.prec))) + t.start().UTC().Format("2006-01-02T15:04:05.000")
}

// containsItem reports whether c has an item equal to v. Its work counts
// towards the evaluation's context checks.
func containsItem(ec *evalCtx, c Collection, v Value) bool {
	if ec.work(len(c)) != nil {
		return false
	}
	for _, w := range c {
		if eq, ok := itemEqual(w, v); ok && eq {
			return true
		}
	}
	return false
}

// collEqual implements '=' on collections; ok=false means empty result.
func collEqual(l, r Collection) (eq, ok bool) {
	if len(l) == 0 || len(r) == 0 {
		return false, false
	}
	if len(l) != len(r) {
		return false, true
	}
	for i := range l {
		e, ok := itemEqual(l[i], r[i])
		if !ok {
			return false, false
		}
		if !e {
			return false, true
		}
	}
	return true, true
}

func collEquivalent(l, r Collection) bool {
	if len(l) != len(r) {
		return false
	}
	used := make([]bool, len(r))
outer:
	for _, a := range l {
		for j, b := range r {
			if !used[j] && itemEquivalent(a, b) {
				used[j] = true
				continue outer
			}
		}
		return false
	}
	return true
}

// itemEqual compares two items; ok=false means the answer is unknown
// (temporal values of different precision).
func itemEqual(a, b Value) (eq, ok bool) {
	na, aNode := a.(*Node)
	nb, bNode := b.(*Node)
	if aNode && bNode {
		if na == nb {
			return true, true
		}
		if na.kind == 'o' || nb.kind == 'o' {
			if na.kind != nb.kind {
				return false, true
			}
			return nodeDeepEqual(na, nb, false), true
		}
	}
	a, b = sys(a), sys(b)
	if aNode && na.kind == 'o' {
		if q, ok := na.System(); ok {
			a = q
		}
	}
	if bNode && nb.kind == 'o' {
		if q, ok := nb.System(); ok {
			b = q
		}
	}
	switch x := a.(type) {
	case Boolean:
		y, ok := b.(Boolean)
		return ok && x == y, true
	case String:
		y, ok := b.(String)
		return ok && x == y, true
	case Integer:
		switch y := b.(type) {
		case Integer:
			return x == y, true
		case Decimal:
			return DecimalFromInt(int64(x)).Cmp(y) == 0, true
		}
		return false, true
	case Decimal:
		switch y := b.(type) {
		case Integer:
			return x.Cmp(DecimalFromInt(int64(y))) == 0, true
		case Decimal:
			return x.Cmp(y) == 0, true
		}
		return false, true
	case Date, DateTime:
		ta := temporalOf(a)
		tb, ok := temporalOfDate(b)
		if !ok {
			return false, true
		}
		c, known := compareTemporal(ta, tb)
		if !known {
			return false, false
		}
		return c == 0, true
	case Time:
		y, ok := b.(Time)
		if !ok {
			return false, true
		}
		c, known := compareTemporal(x.t, y.t)
		if !known {
			return false, false
		}
		return c == 0, true
	case Quantity:
		y, ok := b.(Quantity)
		if !ok {
			return false, true
		}
		c, known := compareQuantity(x, y)
		if !known {
			return false, false
		}
		return c == 0, true
	case TypeInfo:
		y, ok := b.(TypeInfo)
		return ok && x == y, true
	case *Node:
		return false, true
	}
	return false, true
}

func temporalOf(v Value) temporal {
	switch x := v.(type) {
	case Date:
		return x.t
	case DateTime:
		return x.t
	case Time:
		return x.t
	}
	return temporal{}
}

func temporalOfDate(v Value) (temporal, bool) {
	switch x := v.(type) {
	case Date:
		return x.t, true
	case DateTime:
		return x.t, true
	}
	return temporal{}, false
}

func normalizeSpace(s string) string {
	return strings.ToLower(strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " "))
}

func itemEquivalent(a, b Value) bool {
	na, aNode := a.(*Node)
	nb, bNode := b.(*Node)
	if aNode && bNode && (na.kind == 'o' || nb.kind == 'o') {
		if na == nb {
			return true
		}
		if na.kind != nb.kind {
			return false
		}
		return nodeDeepEqual(na, nb, true)
	}
	a, b = sys(a), sys(b)
	if aNode && na.kind == 'o' {
		if q, ok := na.System(); ok {
			a = q
		}
	}
	if bNode && nb.kind == 'o' {
		if q, ok := nb.System(); ok {
			b = q
		}
	}
	switch x := a.(type) {
	case String:
		y, ok := b.(String)
		return ok && normalizeSpace(string(x)) == normalizeSpace(string(y))
	case Integer, Decimal:
		dx, ok1 := toDecimal(a)
		dy, ok2 := toDecimal(b)
		if !ok1 || !ok2 {
			return false
		}
		s := min(dx.scale, dy.scale)
		return dx.Round(s).Cmp(dy.Round(s)) == 0
	case Quantity:
		y, ok := b.(Quantity)
		if !ok {
			return false
		}
		yc, ok := convertQuantity(y, x.Unit)
		if !ok {
			return false
		}
		s := min(x.Value.scale, y.Value.scale)
		return x.Value.Round(s).Cmp(yc.Value.Round(s)) == 0
	}
	eq, ok := itemEqual(a, b)
	return ok && eq
}

func toDecimal(v Value) (Decimal, bool) {
	switch x := v.(type) {
	case Integer:
		return DecimalFromInt(int64(x)), true
	case Decimal:
		return x, true
	}
	return Decimal{}, false
}

// nodeDeepEqual compares two complex nodes member by member.
func nodeDeepEqual(a, b *Node, equiv bool) bool {
	if a.kind != 'o' || b.kind != 'o' {
		if a.kind == 'o' || b.kind == 'o' {
			return false
		}
		if equiv {
			return itemEquivalent(a, b)
		}
		eq, ok := itemEqual(a, b)
		if !ok || !eq {
			return false
		}
		return fieldsEqual(a, b, equiv)
	}
	if !equiv && bytes.Equal(a.raw, b.raw) {
		return true
	}
	return fieldsEqual(a, b, equiv)
}

func fieldsEqual(a, b *Node, equiv bool) bool {
	count := func(n *Node) int {
		k := 0
		for _, f := range n.fields {
			if equiv && f.name == "id" {
				continue
			}
			k += len(f.nodes)
		}
		return k
	}
	if count(a) != count(b) {
		return false
	}
	for _, f := range a.fields {
		if equiv && f.name == "id" {
			continue
		}
		var g []*Node
		for _, h := range b.fields {
			if h.name == f.name {
				g = h.nodes
				break
			}
		}
		if len(g) != len(f.nodes) {
			return false
		}
		for i := range g {
			if !nodeDeepEqual(f.nodes[i], g[i], equiv) {
				return false
			}
		}
	}
	return true
}

// compareValues orders two single items: ok=false when unknown.
func compareValues(a, b Value) (c int, ok bool, err error) {
	a, b = sys(a), sys(b)
	if n, isNode := a.(*Node); isNode {
		if q, qok := n.System(); qok {
			a = q
		}
	}
	if n, isNode := b.(*Node); isNode {
		if q, qok := n.System(); qok {
			b = q
		}
	}
	switch x := a.(type) {
	case Integer:
		switch y := b.(type) {
		case Integer:
			return cmpInt(int64(x), int64(y)), true, nil
		case Decimal:
			return DecimalFromInt(int64(x)).Cmp(y), true, nil
		}
	case Decimal:
		switch y := b.(type) {
		case Integer:
			return x.Cmp(DecimalFromInt(int64(y))), true, nil
		case Decimal:
			return x.Cmp(y), true, nil
		}
	case String:
		if y, ok := b.(String); ok {
			return strings.Compare(string(x), string(y)), true, nil
		}
	case Date, DateTime:
		if tb, ok := temporalOfDate(b); ok {
			c, known := compareTemporal(temporalOf(a), tb)
			return c, known, nil
		}
	case Time:
		if y, ok := b.(Time); ok {
			c, known := compareTemporal(x.t, y.t)
			return c, known, nil
		}
	case Quantity:
		if y, ok := b.(Quantity); ok {
			c, known := compareQuantity(x, y)
			if !known {
				return 0, false, evalErr("quantities %s and %s are not comparable", x, y)
			}
			return c, true, nil
		}
	}
	return 0, false, evalErr("cannot compare %s with %s", typeLabel(a), typeLabel(b))
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compareOp(op string, l, r Collection) (Collection, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, evalErr("'%s' on a collection of several items", op)
	}
	c, ok, err := compareValues(l[0], r[0])
	if err != nil || !ok {
		return nil, err
	}
	var res bool
	switch op {
	case "<":
		res = c < 0
	case ">":
		res = c > 0
	case "<=":
		res = c <= 0
	default:
		res = c >= 0
	}
	return Collection{Boolean(res)}, nil
}

// arith implements + - * / div mod.
func arith(op string, l, r Collection) (Collection, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, evalErr("'%s' on a collection of several items", op)
	}
	a, b := sys(l[0]), sys(r[0])
	if n, ok := a.(*Node); ok {
		if q, qok := n.System(); qok {
			a = q
		}
	}
	if n, ok := b.(*Node); ok {
		if q, qok := n.System(); qok {
			b = q
		}
	}
	switch x := a.(type) {
	case Integer:
		if y, ok := b.(Integer); ok {
			switch op {
			case "+":
				if r := x + y; (r > x) == (y > 0) {
					return Collection{r}, nil
				}
				return nil, evalErr("integer overflow")
			case "-":
				if r := x - y; (r < x) == (y > 0) {
					return Collection{r}, nil
				}
				return nil, evalErr("integer overflow")
			case "*":
				if x == 0 || y == 0 {
					return Collection{Integer(0)}, nil
				}
				if r := x * y; r/y == x && !(x == -1 && y == math.MinInt64) && !(y == -1 && x == math.MinInt64) {
					return Collection{r}, nil
				}
				return nil, evalErr("integer overflow")
			case "div":
				if y == 0 {
					return nil, nil
				}
				return Collection{x / y}, nil
			case "mod":
				if y == 0 {
					return nil, nil
				}
				return Collection{x % y}, nil
			}
		}
	case String:
		if y, ok := b.(String); ok && op == "+" {
			return Collection{x + y}, nil
		}
		return nil, evalErr("'%s' on strings", op)
	case Date, DateTime, Time:
		q, ok := b.(Quantity)
		if !ok || (op != "+" && op != "-") {
			return nil, evalErr("'%s' on %s and %s", op, typeLabel(a), typeLabel(b))
		}
		return dateArith(a, q, op == "-")
	case Quantity:
		return quantityArith(op, x, b)
	}
	da, ok1 := toDecimal(a)
	db, ok2 := toDecimal(b)
	if ok1 && ok2 {
		switch op {
		case "+":
			return Collection{da.Add(db)}, nil
		case "-":
			return Collection{da.Sub(db)}, nil
		case "*":
			return Collection{da.Mul(db)}, nil
		case "/":
			q, ok := da.Quo(db)
			if !ok {
				return nil, nil
			}
			return Collection{q}, nil
		case "div":
			q, ok := da.divInt(db)
			if !ok {
				return nil, nil
			}
			if _, isInt := a.(Integer); isInt {
				if _, isInt := b.(Integer); isInt {
					i, _ := q.Int64()
					return Collection{Integer(i)}, nil
				}
			}
			return Collection{q}, nil
		case "mod":
			m, ok := da.mod(db)
			if !ok {
				return nil, nil
			}
			return Collection{m}, nil
		}
	}
	if _, ok := b.(Quantity); ok && op == "*" {
		if _, ok := toDecimal(a); ok {
			return quantityArith(op, b.(Quantity), a)
		}
	}
	return nil, evalErr("'%s' on %s and %s", op, typeLabel(a), typeLabel(b))
}

func dateArith(a Value, q Quantity, neg bool) (Collection, error) {
	unit := q.Unit
	if cu, ok := calendarUnits[unit]; ok {
		unit = cu
	} else if u, ok := ucumTimeUnits[unit]; ok {
		unit = u
	} else {
		return nil, evalErr("'%s' is not a calendar duration", q.Unit)
	}
	n, _ := q.Value.Truncate().Int64()
	if neg {
		n = -n
	}
	switch x := a.(type) {
	case Date:
		t, err := x.t.addDuration(n, unit, false)
		if err != nil {
			return nil, err
		}
		return Collection{Date{t}}, nil
	case DateTime:
		t, err := x.t.addDuration(n, unit, false)
		if err != nil {
			return nil, err
		}
		return Collection{DateTime{t}}, nil
	case Time:
		t, err := x.t.addDuration(n, unit, true)
		if err != nil {
			return nil, err
		}
		return Collection{Time{t}}, nil
	}
	return nil, evalErr("date arithmetic on %s", typeLabel(a))
}
