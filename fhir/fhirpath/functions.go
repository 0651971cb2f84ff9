package fhirpath

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"math"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"regie/fhir"
)

type fnImpl func(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error)

type funcDef struct {
	min, max int
	impl     fnImpl
}

var functions map[string]funcDef

func init() {
	functions = map[string]funcDef{
		// existence
		"empty":      {0, 0, fnEmpty},
		"exists":     {0, 1, fnExists},
		"all":        {1, 1, fnAll},
		"allTrue":    {0, 0, boolAgg(true, true)},
		"anyTrue":    {0, 0, boolAgg(false, true)},
		"allFalse":   {0, 0, boolAgg(true, false)},
		"anyFalse":   {0, 0, boolAgg(false, false)},
		"subsetOf":   {1, 1, fnSubsetOf},
		"supersetOf": {1, 1, fnSupersetOf},
		"count":      {0, 0, fnCount},
		"distinct":   {0, 0, fnDistinct},
		"isDistinct": {0, 0, fnIsDistinct},
		// filtering and projection
		"where":  {1, 1, fnWhere},
		"select": {1, 1, fnSelect},
		"repeat": {1, 1, fnRepeat},
		"ofType": {1, 1, fnOfType},
		// subsetting
		"single":    {0, 0, fnSingle},
		"first":     {0, 0, fnFirst},
		"last":      {0, 0, fnLast},
		"tail":      {0, 0, fnTail},
		"skip":      {1, 1, fnSkip},
		"take":      {1, 1, fnTake},
		"intersect": {1, 1, fnIntersect},
		"exclude":   {1, 1, fnExclude},
		// combining
		"union":   {1, 1, fnUnion},
		"combine": {1, 1, fnCombine},
		// conversion
		"iif":                {2, 3, fnIif},
		"toBoolean":          {0, 0, convFn(toBooleanV)},
		"convertsToBoolean":  {0, 0, convertsFn(toBooleanV)},
		"toInteger":          {0, 0, convFn(toIntegerV)},
		"convertsToInteger":  {0, 0, convertsFn(toIntegerV)},
		"toDecimal":          {0, 0, convFn(toDecimalV)},
		"convertsToDecimal":  {0, 0, convertsFn(toDecimalV)},
		"toString":           {0, 0, convFn(toStringV)},
		"convertsToString":   {0, 0, convertsFn(toStringV)},
		"toDate":             {0, 0, convFn(toDateV)},
		"convertsToDate":     {0, 0, convertsFn(toDateV)},
		"toDateTime":         {0, 0, convFn(toDateTimeV)},
		"convertsToDateTime": {0, 0, convertsFn(toDateTimeV)},
		"toTime":             {0, 0, convFn(toTimeV)},
		"convertsToTime":     {0, 0, convertsFn(toTimeV)},
		"toQuantity":         {0, 1, fnToQuantity},
		"convertsToQuantity": {0, 1, fnConvertsToQuantity},
		// string
		"indexOf":        {1, 1, strFn(fnIndexOf)},
		"substring":      {1, 2, fnSubstring},
		"startsWith":     {1, 1, strFn(fnStartsWith)},
		"endsWith":       {1, 1, strFn(fnEndsWith)},
		"contains":       {1, 1, strFn(fnContainsStr)},
		"upper":          {0, 0, strFn(func(s string, _ []string, _ *callExpr) (Value, bool) { return String(strings.ToUpper(s)), true })},
		"lower":          {0, 0, strFn(func(s string, _ []string, _ *callExpr) (Value, bool) { return String(strings.ToLower(s)), true })},
		"replace":        {2, 2, strFn(fnReplace)},
		"matches":        {1, 2, strFn(fnMatches(false))},
		"matchesFull":    {1, 2, strFn(fnMatches(true))},
		"lastIndexOf":    {1, 1, strFn(fnLastIndexOf)},
		"replaceMatches": {2, 2, strFn(fnReplaceMatches)},
		"length":         {0, 0, strFn(func(s string, _ []string, _ *callExpr) (Value, bool) { return Integer(utf8.RuneCountInString(s)), true })},
		"toChars":        {0, 0, fnToChars},
		"trim":           {0, 0, strFn(func(s string, _ []string, _ *callExpr) (Value, bool) { return String(strings.TrimSpace(s)), true })},
		"split":          {1, 1, fnSplit},
		"join":           {0, 1, fnJoin},
		"encode":         {1, 1, strFn(fnEncode)},
		"decode":         {1, 1, strFn(fnDecode)},
		"escape":         {1, 1, strFn(fnEscape)},
		"unescape":       {1, 1, strFn(fnUnescape)},
		// math
		"abs":      {0, 0, mathFn("abs")},
		"ceiling":  {0, 0, mathFn("ceiling")},
		"exp":      {0, 0, mathFn("exp")},
		"floor":    {0, 0, mathFn("floor")},
		"ln":       {0, 0, mathFn("ln")},
		"log":      {1, 1, mathFn("log")},
		"power":    {1, 1, mathFn("power")},
		"round":    {0, 1, mathFn("round")},
		"sqrt":     {0, 0, mathFn("sqrt")},
		"truncate": {0, 0, mathFn("truncate")},
		// tree navigation
		"children":    {0, 0, fnChildren},
		"descendants": {0, 0, fnDescendants},
		// utility
		"trace":     {1, 2, fnTrace},
		"now":       {0, 0, fnNow},
		"today":     {0, 0, fnToday},
		"timeOfDay": {0, 0, fnTimeOfDay},
		"aggregate": {1, 2, fnAggregate},
		"sort":      {0, 8, fnSort},
		"not":       {0, 0, fnNot},
		"type":      {0, 0, fnType},
		"is":        {1, 1, fnIs},
		"as":        {1, 1, fnAs},
		// boundaries and precision
		"lowBoundary":  {0, 1, boundaryFn(false)},
		"highBoundary": {0, 1, boundaryFn(true)},
		"precision":    {0, 0, fnPrecision},
		"comparable":   {1, 1, fnComparable},
		// FHIR
		"extension":         {1, 1, fnExtension},
		"hasExtension":      {1, 1, fnHasExtension},
		"hasValue":          {0, 0, fnHasValue},
		"getValue":          {0, 0, fnGetValue},
		"resolve":           {0, 0, fnResolve},
		"memberOf":          {1, 1, unsupported("memberOf (needs a terminology service)")},
		"conformsTo":        {1, 1, fnConformsTo},
		"htmlChecks":        {0, 0, fnHTMLChecks},
		"elementDefinition": {0, 0, unsupported("elementDefinition")},
		"slice":             {2, 2, unsupported("slice")},
		"checkModifiers":    {1, 1, fnCheckModifiers},
		"subsumes":          {1, 1, unsupported("subsumes (needs a terminology service)")},
		"subsumedBy":        {1, 1, unsupported("subsumedBy (needs a terminology service)")},
	}
}

// orderDependent are the functions whose result depends on the order of
// their input; in strict mode they may not follow children() or descendants().
var orderDependent = map[string]bool{"first": true, "last": true, "tail": true, "skip": true, "take": true}

type callExpr struct {
	name string
	left expr
	args []expr
	fn   funcDef
	ts   typeSpec       // for is, as, ofType
	re   *regexp.Regexp // a literal pattern of matches, matchesFull, replaceMatches, compiled once
	pos  int
}

func newCall(name string, left expr, args []expr, pos int) (expr, error) {
	fd, ok := functions[name]
	if !ok {
		return nil, &SyntaxError{Pos: pos, Msg: fmt.Sprintf("unknown function %s()", name)}
	}
	if len(args) < fd.min || len(args) > fd.max {
		return nil, &SyntaxError{Pos: pos, Msg: fmt.Sprintf("%s() takes %d to %d arguments, found %d", name, fd.min, fd.max, len(args))}
	}
	c := &callExpr{name: name, left: left, args: args, fn: fd, pos: pos}
	switch name {
	case "is", "as", "ofType":
		ts, ok := typeSpecOf(args[0])
		if !ok {
			return nil, &SyntaxError{Pos: pos, Msg: name + "() needs a type name"}
		}
		c.ts = ts
	case "matches", "matchesFull", "replaceMatches":
		pat, ok1 := literalString(args[0])
		flags, ok2 := "", true
		if name != "replaceMatches" && len(args) == 2 {
			flags, ok2 = literalString(args[1])
		}
		if ok1 && ok2 && pat != "" {
			re, ok := compileRegex(pat, name == "matchesFull", flags)
			if !ok {
				return nil, &SyntaxError{Pos: pos, Msg: name + "(): invalid regular expression"}
			}
			c.re = re
		}
	}
	return c, nil
}

func literalString(x expr) (string, bool) {
	if l, ok := x.(*literalExpr); ok && len(l.val) == 1 {
		if s, ok := l.val[0].(String); ok {
			return string(s), true
		}
	}
	return "", false
}

func typeSpecOf(x expr) (typeSpec, bool) {
	m, ok := x.(*memberExpr)
	if !ok {
		return typeSpec{}, false
	}
	if m.left == nil {
		return typeSpec{name: m.name}, true
	}
	l, ok := m.left.(*memberExpr)
	if !ok || l.left != nil {
		return typeSpec{}, false
	}
	return typeSpec{ns: l.name, name: m.name}, true
}

func (c *callExpr) eval(ec *evalCtx, in Collection, fr *frame) (Collection, error) {
	focus := in
	if c.left != nil {
		var err error
		if focus, err = c.left.eval(ec, in, fr); err != nil {
			return nil, err
		}
	}
	if err := ec.step(); err != nil {
		return nil, err
	}
	if ec.env.Strict && orderDependent[c.name] {
		if l, ok := c.left.(*callExpr); ok && (l.name == "children" || l.name == "descendants") {
			return nil, evalErr("%s() on the unordered result of %s()", c.name, l.name)
		}
	}
	return c.fn.impl(ec, focus, c, fr)
}

// arg evaluates argument i in the enclosing scope.
func (c *callExpr) arg(ec *evalCtx, i int, fr *frame) (Collection, error) {
	return c.args[i].eval(ec, fr.this, fr)
}

// each evaluates argument i once per item of focus with $this and $index set.
func (c *callExpr) each(ec *evalCtx, focus Collection, i int, fr *frame, fn func(k int, item Value, r Collection) (bool, error)) error {
	sub := &frame{hasIndex: true, total: fr.total, hasTotal: fr.hasTotal}
	one := make(Collection, 1)
	for k, item := range focus {
		one = Collection{item}
		sub.this, sub.index = one, k
		r, err := c.args[i].eval(ec, one, sub)
		if err != nil {
			return err
		}
		cont, err := fn(k, item, r)
		if err != nil || !cont {
			return err
		}
	}
	return nil
}

func unsupported(what string) fnImpl {
	return func(*evalCtx, Collection, *callExpr, *frame) (Collection, error) {
		return nil, fmt.Errorf("%w: %s", ErrUnsupported, what)
	}
}

func boolResult(b bool) (Collection, error) { return Collection{Boolean(b)}, nil }

func fnEmpty(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	return boolResult(len(focus) == 0)
}

func fnExists(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	if len(c.args) == 0 {
		return boolResult(len(focus) > 0)
	}
	found := false
	err := c.each(ec, focus, 0, fr, func(_ int, _ Value, r Collection) (bool, error) {
		b, ok, err := toBool(r)
		if err != nil {
			return false, err
		}
		if ok && b {
			found = true
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return boolResult(found)
}

func fnAll(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	all := true
	err := c.each(ec, focus, 0, fr, func(_ int, _ Value, r Collection) (bool, error) {
		b, ok, err := toBool(r)
		if err != nil {
			return false, err
		}
		if !ok || !b {
			all = false
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return boolResult(all)
}

// boolAgg implements allTrue (all, want=true), anyTrue, allFalse, anyFalse.
func boolAgg(all, want bool) fnImpl {
	return func(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
		for _, v := range focus {
			b, ok := sys(v).(Boolean)
			if !ok {
				return nil, evalErr("expected booleans, found %s", typeLabel(v))
			}
			if all && bool(b) != want {
				return boolResult(false)
			}
			if !all && bool(b) == want {
				return boolResult(true)
			}
		}
		return boolResult(all)
	}
}

func subset(ec *evalCtx, a, b Collection) bool {
	for _, v := range a {
		if !containsItem(ec, b, v) {
			return false
		}
	}
	return true
}

func fnSubsetOf(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	other, err := c.arg(ec, 0, fr)
	if err != nil {
		return nil, err
	}
	return boolResult(subset(ec, focus, other))
}

func fnSupersetOf(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	other, err := c.arg(ec, 0, fr)
	if err != nil {
		return nil, err
	}
	return boolResult(subset(ec, other, focus))
}

func fnCount(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	return Collection{Integer(len(focus))}, nil
}

func distinct(ec *evalCtx, c Collection) Collection {
	return dedupe(ec, append(Collection(nil), c...))
}

func fnDistinct(ec *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	return distinct(ec, focus), nil
}

func fnIsDistinct(ec *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	return boolResult(len(distinct(ec, focus)) == len(focus))
}

func fnWhere(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	var out Collection
	err := c.each(ec, focus, 0, fr, func(_ int, item Value, r Collection) (bool, error) {
		b, ok, err := toBool(r)
		if err != nil {
			return false, err
		}
		if ok && b {
			out = append(out, item)
		}
		return true, nil
	})
	return out, err
}

func fnSelect(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	var out Collection
	err := c.each(ec, focus, 0, fr, func(_ int, _ Value, r Collection) (bool, error) {
		out = append(out, r...)
		return true, nil
	})
	return out, err
}

func fnRepeat(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	var out Collection
	cur := focus
	for len(cur) > 0 {
		var next Collection
		err := c.each(ec, cur, 0, fr, func(_ int, _ Value, r Collection) (bool, error) {
			for _, v := range r {
				if !containsItem(ec, out, v) {
					out = append(out, v)
					next = append(next, v)
				}
			}
			return true, nil
		})
		if err != nil {
			return nil, err
		}
		if err := ec.step(); err != nil {
			return nil, err
		}
		cur = next
	}
	return out, nil
}

func fnOfType(ec *evalCtx, focus Collection, c *callExpr, _ *frame) (Collection, error) {
	return ofType(ec, focus, c.ts, true)
}

func fnIs(ec *evalCtx, focus Collection, c *callExpr, _ *frame) (Collection, error) {
	return isOp(ec, focus, c.ts)
}

func fnAs(ec *evalCtx, focus Collection, c *callExpr, _ *frame) (Collection, error) {
	if len(focus) > 1 {
		return nil, evalErr("as() on a collection of %d items", len(focus))
	}
	return ofType(ec, focus, c.ts, true)
}

func fnSingle(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	if len(focus) > 1 {
		return nil, evalErr("single() on a collection of %d items", len(focus))
	}
	return focus, nil
}

func fnFirst(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	if len(focus) == 0 {
		return nil, nil
	}
	return focus[:1:1], nil
}

func fnLast(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	if len(focus) == 0 {
		return nil, nil
	}
	return focus[len(focus)-1:], nil
}

func fnTail(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	if len(focus) < 2 {
		return nil, nil
	}
	return focus[1:], nil
}

func intArg(ec *evalCtx, c *callExpr, i int, fr *frame) (int64, bool, error) {
	a, err := c.arg(ec, i, fr)
	if err != nil {
		return 0, false, err
	}
	if len(a) == 0 {
		return 0, false, nil
	}
	n, ok := toInteger(a)
	if !ok {
		return 0, false, evalErr("%s(): argument must be an integer", c.name)
	}
	return n, true, nil
}

func fnSkip(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	n, ok, err := intArg(ec, c, 0, fr)
	if err != nil || !ok {
		return nil, err
	}
	if n <= 0 {
		return focus, nil
	}
	if n >= int64(len(focus)) {
		return nil, nil
	}
	return focus[n:], nil
}

func fnTake(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	n, ok, err := intArg(ec, c, 0, fr)
	if err != nil || !ok {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	if n >= int64(len(focus)) {
		return focus, nil
	}
	return focus[:n:n], nil
}

func fnIntersect(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	other, err := c.arg(ec, 0, fr)
	if err != nil {
		return nil, err
	}
	var out Collection
	for _, v := range focus {
		if containsItem(ec, other, v) && !containsItem(ec, out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

func fnExclude(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	other, err := c.arg(ec, 0, fr)
	if err != nil {
		return nil, err
	}
	var out Collection
	for _, v := range focus {
		if !containsItem(ec, other, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

func fnUnion(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	other, err := c.arg(ec, 0, fr)
	if err != nil {
		return nil, err
	}
	return union(ec, focus, other), nil
}

func fnCombine(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	other, err := c.arg(ec, 0, fr)
	if err != nil {
		return nil, err
	}
	out := make(Collection, 0, len(focus)+len(other))
	return append(append(out, focus...), other...), nil
}

func fnIif(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	if len(focus) > 1 {
		return nil, evalErr("iif() on a collection of %d items", len(focus))
	}
	sub := fr
	if c.left != nil {
		sub = &frame{this: focus, index: fr.index, hasIndex: fr.hasIndex, total: fr.total, hasTotal: fr.hasTotal}
	}
	cond, err := c.args[0].eval(ec, sub.this, sub)
	if err != nil {
		return nil, err
	}
	if len(cond) > 1 {
		return nil, evalErr("iif() criterion has %d items", len(cond))
	}
	b, ok := false, false
	if len(cond) == 1 {
		v, isB := sys(cond[0]).(Boolean)
		if !isB {
			return nil, evalErr("iif() criterion is not a boolean")
		}
		b, ok = bool(v), true
	}
	if ok && b {
		return c.args[1].eval(ec, sub.this, sub)
	}
	if len(c.args) == 3 {
		return c.args[2].eval(ec, sub.this, sub)
	}
	return nil, nil
}

func fnNot(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	b, ok, err := toBool(focus)
	if err != nil || !ok {
		return nil, err
	}
	return boolResult(!b)
}

func fnType(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	out := make(Collection, 0, len(focus))
	for _, v := range focus {
		out = append(out, typeOf(v))
	}
	return out, nil
}

// conversions

type convFunc func(v Value) (Value, bool)

func convFn(f convFunc) fnImpl {
	return func(_ *evalCtx, focus Collection, c *callExpr, _ *frame) (Collection, error) {
		focus = values(focus)
		if len(focus) == 0 {
			return nil, nil
		}
		if len(focus) > 1 {
			return nil, evalErr("%s() on a collection of %d items", c.name, len(focus))
		}
		r, ok := f(sys(focus[0]))
		if !ok {
			return nil, nil
		}
		return Collection{r}, nil
	}
}

func convertsFn(f convFunc) fnImpl {
	return func(_ *evalCtx, focus Collection, c *callExpr, _ *frame) (Collection, error) {
		focus = values(focus)
		if len(focus) == 0 {
			return nil, nil
		}
		if len(focus) > 1 {
			return nil, evalErr("%s() on a collection of %d items", c.name, len(focus))
		}
		_, ok := f(sys(focus[0]))
		return boolResult(ok)
	}
}

func toBooleanV(v Value) (Value, bool) {
	switch x := v.(type) {
	case Boolean:
		return x, true
	case Integer:
		switch x {
		case 0:
			return Boolean(false), true
		case 1:
			return Boolean(true), true
		}
	case Decimal:
		switch {
		case x.Cmp(DecimalFromInt(0)) == 0:
			return Boolean(false), true
		case x.Cmp(DecimalFromInt(1)) == 0:
			return Boolean(true), true
		}
	case String:
		switch strings.ToLower(string(x)) {
		case "true", "t", "yes", "y", "1", "1.0":
			return Boolean(true), true
		case "false", "f", "no", "n", "0", "0.0":
			return Boolean(false), true
		}
	}
	return nil, false
}

func toIntegerV(v Value) (Value, bool) {
	switch x := v.(type) {
	case Integer:
		return x, true
	case Boolean:
		if x {
			return Integer(1), true
		}
		return Integer(0), true
	case String:
		s := string(x)
		if s == "" {
			return nil, false
		}
		for i := 0; i < len(s); i++ {
			if !isDigit(s[i]) && !(i == 0 && (s[i] == '-' || s[i] == '+') && len(s) > 1) {
				return nil, false
			}
		}
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, false
		}
		return Integer(i), true
	}
	return nil, false
}

func toDecimalV(v Value) (Value, bool) {
	switch x := v.(type) {
	case Integer:
		return DecimalFromInt(int64(x)), true
	case Decimal:
		return x, true
	case Boolean:
		if x {
			return DecimalFromInt(1), true
		}
		return DecimalFromInt(0), true
	case String:
		s := string(x)
		if strings.ContainsAny(s, "eE") {
			return nil, false
		}
		d, err := ParseDecimal(s)
		if err != nil {
			return nil, false
		}
		return d, true
	}
	return nil, false
}

func toStringV(v Value) (Value, bool) {
	switch v.(type) {
	case String, Integer, Decimal, Boolean, Date, DateTime, Time, Quantity:
		return String(Format(v)), true
	}
	return nil, false
}

func toDateV(v Value) (Value, bool) {
	switch x := v.(type) {
	case Date:
		return x, true
	case DateTime:
		t := x.t
		if t.prec > PrecDay {
			t.prec = PrecDay
		}
		t.hour, t.minute, t.sec, t.ms, t.tz, t.off = 0, 0, 0, 0, false, 0
		return Date{t}, true
	case String:
		if d, ok := ParseDate(string(x)); ok {
			return d, true
		}
		if dt, ok := ParseDateTime(string(x)); ok {
			return toDateV(dt)
		}
	}
	return nil, false
}

func toDateTimeV(v Value) (Value, bool) {
	switch x := v.(type) {
	case DateTime:
		return x, true
	case Date:
		return DateTime(x), true
	case String:
		if d, ok := ParseDateTime(string(x)); ok {
			return d, true
		}
	}
	return nil, false
}

func toTimeV(v Value) (Value, bool) {
	switch x := v.(type) {
	case Time:
		return x, true
	case String:
		if t, ok := ParseTime(string(x)); ok {
			return t, true
		}
	}
	return nil, false
}

func toQuantityV(v Value) (Value, bool) {
	switch x := v.(type) {
	case Quantity:
		return x, true
	case Integer:
		return Quantity{Value: DecimalFromInt(int64(x)), Unit: "1"}, true
	case Decimal:
		return Quantity{Value: x, Unit: "1"}, true
	case Boolean:
		if x {
			return Quantity{Value: DecimalFromInt(1), Unit: "1"}, true
		}
		return Quantity{Value: DecimalFromInt(0), Unit: "1"}, true
	case String:
		return parseQuantityString(string(x))
	}
	return nil, false
}

// parseQuantityString parses "10 'mg'", "4 days", "1.5".
func parseQuantityString(s string) (Value, bool) {
	s = strings.TrimSpace(s)
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	for i < len(s) && (isDigit(s[i]) || s[i] == '.') {
		i++
	}
	d, err := ParseDecimal(s[:i])
	if err != nil {
		return nil, false
	}
	rest := strings.TrimSpace(s[i:])
	switch {
	case rest == "":
		return Quantity{Value: d, Unit: "1"}, true
	case len(rest) >= 2 && rest[0] == '\'' && rest[len(rest)-1] == '\'':
		return Quantity{Value: d, Unit: rest[1 : len(rest)-1]}, true
	case calendarUnits[rest] != "":
		return Quantity{Value: d, Unit: rest, Calendar: true}, true
	}
	return nil, false
}

func fnToQuantity(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	r, err := convFn(toQuantityV)(ec, focus, c, fr)
	if err != nil || len(r) == 0 || len(c.args) == 0 {
		return r, err
	}
	unit, ok, err := singleStringArg(ec, c, 0, fr)
	if err != nil || !ok {
		return nil, err
	}
	q, ok := convertQuantity(r[0].(Quantity), unit)
	if !ok {
		return nil, nil
	}
	return Collection{q}, nil
}

func fnConvertsToQuantity(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	focus = values(focus)
	if len(focus) == 0 {
		return nil, nil
	}
	r, err := fnToQuantity(ec, focus, c, fr)
	if err != nil {
		return nil, err
	}
	return boolResult(len(r) == 1)
}

func singleStringArg(ec *evalCtx, c *callExpr, i int, fr *frame) (string, bool, error) {
	a, err := c.arg(ec, i, fr)
	if err != nil {
		return "", false, err
	}
	return singleString(a)
}

// strings

type strFunc func(s string, args []string, c *callExpr) (Value, bool)

// strFn wraps a function on a single string with string arguments; an
// empty focus or argument gives an empty result.
func strFn(f strFunc) fnImpl {
	return func(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
		focus = values(focus)
		if len(focus) == 0 {
			return nil, nil
		}
		if len(focus) > 1 {
			return nil, evalErr("%s() on a collection of %d items", c.name, len(focus))
		}
		s, ok := sys(focus[0]).(String)
		if !ok {
			return nil, evalErr("%s() on %s", c.name, typeLabel(focus[0]))
		}
		args := make([]string, len(c.args))
		for i := range c.args {
			a, ok, err := singleStringArg(ec, c, i, fr)
			if err != nil || !ok {
				return nil, err
			}
			args[i] = a
		}
		r, ok := f(string(s), args, c)
		if !ok {
			return nil, nil
		}
		return Collection{r}, nil
	}
}

func fnIndexOf(s string, a []string, _ *callExpr) (Value, bool) {
	i := strings.Index(s, a[0])
	if i > 0 {
		i = utf8.RuneCountInString(s[:i])
	}
	return Integer(i), true
}

func fnStartsWith(s string, a []string, _ *callExpr) (Value, bool) {
	return Boolean(strings.HasPrefix(s, a[0])), true
}
func fnEndsWith(s string, a []string, _ *callExpr) (Value, bool) {
	return Boolean(strings.HasSuffix(s, a[0])), true
}
func fnContainsStr(s string, a []string, _ *callExpr) (Value, bool) {
	return Boolean(strings.Contains(s, a[0])), true
}

func fnReplace(s string, a []string, _ *callExpr) (Value, bool) {
	if len(s) > 1<<20 {
		return nil, false
	}
	return String(strings.ReplaceAll(s, a[0], a[1])), true
}

// compileRegex compiles a FHIRPath regular expression: single-line mode
// (. matches newlines) always, "i" and "m" flags on request.
func compileRegex(p string, full bool, flags string) (*regexp.Regexp, bool) {
	if full {
		p = `\A(?:` + p + `)\z`
	}
	mode := "s"
	for _, f := range flags {
		switch f {
		case 'i', 'm':
			mode += string(f)
		default:
			return nil, false
		}
	}
	re, err := regexp.Compile("(?" + mode + ")" + p)
	return re, err == nil
}

func fnLastIndexOf(s string, a []string, _ *callExpr) (Value, bool) {
	i := strings.LastIndex(s, a[0])
	if i > 0 {
		i = utf8.RuneCountInString(s[:i])
	}
	return Integer(i), true
}

func fnMatches(full bool) strFunc {
	return func(s string, a []string, c *callExpr) (Value, bool) {
		re := c.re
		if re == nil {
			flags := ""
			if len(a) > 1 {
				flags = a[1]
			}
			var ok bool
			if re, ok = compileRegex(a[0], full, flags); !ok {
				return nil, false
			}
		}
		return Boolean(re.MatchString(s)), true
	}
}

func fnReplaceMatches(s string, a []string, c *callExpr) (Value, bool) {
	if a[0] == "" {
		return String(s), true
	}
	re := c.re
	if re == nil {
		var ok bool
		if re, ok = compileRegex(a[0], false, ""); !ok {
			return nil, false
		}
	}
	// FHIRPath uses $1 for groups, as Go does.
	return String(re.ReplaceAllString(s, a[1])), true
}

func fnSubstring(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	focus = values(focus)
	if len(focus) == 0 {
		return nil, nil
	}
	if len(focus) > 1 {
		return nil, evalErr("substring() on a collection of %d items", len(focus))
	}
	s, ok := sys(focus[0]).(String)
	if !ok {
		return nil, evalErr("substring() on %s", typeLabel(focus[0]))
	}
	r := []rune(string(s))
	start, ok, err := intArg(ec, c, 0, fr)
	if err != nil || !ok {
		return nil, err
	}
	if start < 0 || start >= int64(len(r)) {
		return nil, nil
	}
	end := int64(len(r))
	if len(c.args) == 2 {
		n, ok, err := intArg(ec, c, 1, fr)
		if err != nil {
			return nil, err
		}
		if ok {
			if n < 0 {
				n = 0
			}
			if start+n < end {
				end = start + n
			}
		}
	}
	return Collection{String(r[start:end])}, nil
}

func fnToChars(_ *evalCtx, focus Collection, c *callExpr, _ *frame) (Collection, error) {
	focus = values(focus)
	if len(focus) == 0 {
		return nil, nil
	}
	if len(focus) > 1 {
		return nil, evalErr("toChars() on a collection of %d items", len(focus))
	}
	s, ok := sys(focus[0]).(String)
	if !ok {
		return nil, evalErr("toChars() on %s", typeLabel(focus[0]))
	}
	var out Collection
	for _, r := range string(s) {
		out = append(out, String(string(r)))
	}
	return out, nil
}

func fnSplit(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	focus = values(focus)
	if len(focus) == 0 {
		return nil, nil
	}
	if len(focus) > 1 {
		return nil, evalErr("split() on a collection of %d items", len(focus))
	}
	s, ok := sys(focus[0]).(String)
	if !ok {
		return nil, evalErr("split() on %s", typeLabel(focus[0]))
	}
	sep, ok, err := singleStringArg(ec, c, 0, fr)
	if err != nil || !ok {
		return nil, err
	}
	var out Collection
	for _, p := range strings.Split(string(s), sep) {
		out = append(out, String(p))
	}
	return out, nil
}

func fnJoin(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	sep := ""
	if len(c.args) == 1 {
		s, ok, err := singleStringArg(ec, c, 0, fr)
		if err != nil {
			return nil, err
		}
		if ok {
			sep = s
		}
	}
	parts := make([]string, 0, len(focus))
	for _, v := range values(focus) {
		s, ok := sys(v).(String)
		if !ok {
			return nil, evalErr("join() on %s", typeLabel(v))
		}
		parts = append(parts, string(s))
	}
	return Collection{String(strings.Join(parts, sep))}, nil
}

func fnEncode(s string, a []string, _ *callExpr) (Value, bool) {
	switch a[0] {
	case "hex":
		return String(hex.EncodeToString([]byte(s))), true
	case "base64":
		return String(base64.StdEncoding.EncodeToString([]byte(s))), true
	case "urlbase64":
		return String(base64.URLEncoding.EncodeToString([]byte(s))), true
	}
	return nil, false
}

func fnDecode(s string, a []string, _ *callExpr) (Value, bool) {
	var b []byte
	var err error
	switch a[0] {
	case "hex":
		b, err = hex.DecodeString(s)
	case "base64":
		b, err = base64.StdEncoding.DecodeString(s)
	case "urlbase64":
		b, err = base64.URLEncoding.DecodeString(s)
	default:
		return nil, false
	}
	if err != nil {
		return nil, false
	}
	return String(b), true
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")

func fnEscape(s string, a []string, _ *callExpr) (Value, bool) {
	switch a[0] {
	case "html":
		return String(htmlEscaper.Replace(s)), true
	case "json":
		b := fhir.AppendString(nil, s)
		return String(b[1 : len(b)-1]), true
	}
	return nil, false
}

func fnUnescape(s string, a []string, _ *callExpr) (Value, bool) {
	switch a[0] {
	case "html":
		return String(html.UnescapeString(s)), true
	case "json":
		var u string
		q := strings.ReplaceAll(strings.ReplaceAll(s, `\\`, "\x00"), `\"`, "\x01")
		q = strings.ReplaceAll(q, `"`, `\"`)
		q = strings.ReplaceAll(strings.ReplaceAll(q, "\x01", `\"`), "\x00", `\\`)
		if err := json.Unmarshal([]byte(`"`+q+`"`), &u); err != nil {
			return nil, false
		}
		return String(u), true
	}
	return nil, false
}

// math

func mathFn(op string) fnImpl {
	return func(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
		focus = values(focus)
		if len(focus) == 0 {
			return nil, nil
		}
		if len(focus) > 1 {
			return nil, evalErr("%s() on a collection of %d items", op, len(focus))
		}
		v := sys(focus[0])
		if q, ok := v.(Quantity); ok {
			switch op {
			case "abs", "ceiling", "floor", "truncate", "round":
				r, err := mathFn(op)(ec, Collection{q.Value}, c, fr)
				if err != nil || len(r) == 0 {
					return r, err
				}
				d, _ := toDecimal(r[0])
				q.Value = d
				return Collection{q}, nil
			}
		}
		d, ok := toDecimal(v)
		if !ok {
			return nil, evalErr("%s() on %s", op, typeLabel(v))
		}
		_, isInt := v.(Integer)
		var arg Decimal
		hasArg, argIsInt := false, false
		if len(c.args) == 1 {
			a, err := c.arg(ec, 0, fr)
			if err != nil {
				return nil, err
			}
			a = values(a)
			if len(a) == 0 && op == "round" {
				a = Collection{Integer(0)}
			}
			if len(a) == 0 {
				return nil, nil
			}
			if len(a) > 1 {
				return nil, evalErr("%s(): argument has %d items", op, len(a))
			}
			_, argIsInt = sys(a[0]).(Integer)
			if arg, ok = toDecimal(sys(a[0])); !ok {
				return nil, evalErr("%s(): argument is not a number", op)
			}
			hasArg = true
		}
		fromFloat := func(f float64) (Collection, error) {
			r, ok := DecimalFromFloat(f)
			if !ok {
				return nil, nil
			}
			return Collection{r}, nil
		}
		switch op {
		case "abs":
			if isInt {
				i := v.(Integer)
				if i < 0 {
					i = -i
				}
				return Collection{i}, nil
			}
			if d.Sign() < 0 {
				d = d.Neg()
			}
			return Collection{d}, nil
		case "ceiling":
			i, _ := d.Ceil().Int64()
			return Collection{Integer(i)}, nil
		case "floor":
			i, _ := d.Floor().Int64()
			return Collection{Integer(i)}, nil
		case "truncate":
			i, _ := d.Truncate().Int64()
			return Collection{Integer(i)}, nil
		case "round":
			n := int64(0)
			if hasArg {
				n, _ = arg.Int64()
				if n < 0 || n > 100 {
					return nil, evalErr("round(): precision out of range")
				}
			}
			return Collection{d.Round(int32(n))}, nil
		case "exp":
			return fromFloat(math.Exp(d.Float64()))
		case "ln":
			if d.Sign() <= 0 {
				return nil, nil
			}
			return fromFloat(math.Log(d.Float64()))
		case "log":
			if d.Sign() <= 0 || arg.Sign() <= 0 {
				return nil, nil
			}
			return fromFloat(math.Log(d.Float64()) / math.Log(arg.Float64()))
		case "sqrt":
			if d.Sign() < 0 {
				return nil, nil
			}
			return fromFloat(math.Sqrt(d.Float64()))
		case "power":
			return power(v, d, arg, argIsInt)
		}
		return nil, evalErr("unknown math function %s", op)
	}
}

// power raises base (v, also as decimal d) to exp: exactly for integer
// exponents up to 64, through float64 otherwise. An Integer result that
// does not fit, a zero base with a negative exponent and non-real results
// are empty.
func power(v Value, d, exp Decimal, expIsInt bool) (Collection, error) {
	if expIsInt {
		e, _ := exp.Int64()
		if e >= -64 && e <= 64 {
			if _, isInt := v.(Integer); isInt && e >= 0 {
				r := new(big.Int).Exp(d.unscaled(), big.NewInt(e), nil)
				if !r.IsInt64() {
					return nil, nil
				}
				return Collection{Integer(r.Int64())}, nil
			}
			r := DecimalFromInt(1)
			for i := int64(0); i < abs64(e); i++ {
				r = r.Mul(d)
			}
			if e < 0 {
				q, ok := DecimalFromInt(1).Quo(r)
				if !ok {
					return nil, nil
				}
				r = q
			}
			return Collection{r}, nil
		}
	}
	f := math.Pow(d.Float64(), exp.Float64())
	r, ok := DecimalFromFloat(f)
	if !ok {
		return nil, nil
	}
	return Collection{r}, nil
}

func abs64(i int64) int64 {
	if i < 0 {
		return -i
	}
	return i
}

// tree navigation

func fnChildren(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	var out Collection
	for _, v := range focus {
		if n, ok := v.(*Node); ok {
			for _, f := range n.fields {
				for _, c := range f.nodes {
					out = append(out, c)
				}
			}
		}
	}
	return out, nil
}

func fnDescendants(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	var out Collection
	cur := focus
	for len(cur) > 0 {
		next, _ := fnChildren(ec, cur, c, fr)
		out = append(out, next...)
		if err := ec.step(); err != nil {
			return nil, err
		}
		cur = next
	}
	return out, nil
}

// utility

func fnTrace(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	name, _, err := singleStringArg(ec, c, 0, fr)
	if err != nil {
		return nil, err
	}
	if ec.env.Trace != nil {
		out := focus
		if len(c.args) == 2 {
			var sel Collection
			err := c.each(ec, focus, 1, fr, func(_ int, _ Value, r Collection) (bool, error) {
				sel = append(sel, r...)
				return true, nil
			})
			if err != nil {
				return nil, err
			}
			out = sel
		}
		ec.env.Trace(name, out)
	}
	return focus, nil
}

func fnNow(ec *evalCtx, _ Collection, _ *callExpr, _ *frame) (Collection, error) {
	return Collection{DateTime{temporalFromTime(ec.now)}}, nil
}

func fnToday(ec *evalCtx, _ Collection, _ *callExpr, _ *frame) (Collection, error) {
	t := temporalFromTime(ec.now)
	t.prec, t.hour, t.minute, t.sec, t.ms, t.tz, t.off = PrecDay, 0, 0, 0, 0, false, 0
	return Collection{Date{t}}, nil
}

func fnTimeOfDay(ec *evalCtx, _ Collection, _ *callExpr, _ *frame) (Collection, error) {
	t := temporalFromTime(ec.now)
	t.year, t.month, t.day, t.tz, t.off = 0, 1, 1, false, 0
	return Collection{Time{t}}, nil
}

func fnAggregate(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	var total Collection
	if len(c.args) == 2 {
		var err error
		if total, err = c.arg(ec, 1, fr); err != nil {
			return nil, err
		}
	}
	sub := &frame{hasIndex: true, hasTotal: true}
	for k, item := range focus {
		one := Collection{item}
		sub.this, sub.index, sub.total = one, k, total
		r, err := c.args[0].eval(ec, one, sub)
		if err != nil {
			return nil, err
		}
		total = r
	}
	return total, nil
}

func fnSort(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	type keyed struct {
		v    Value
		keys []Collection
	}
	items := make([]keyed, len(focus))
	desc := make([]bool, len(c.args))
	args := make([]expr, len(c.args))
	for i, a := range c.args {
		args[i] = a
		if u, ok := a.(*unaryExpr); ok && u.neg {
			desc[i], args[i] = true, u.x
		}
	}
	sub := &frame{hasIndex: true}
	for k, v := range focus {
		items[k].v = v
		for _, a := range args {
			sub.this, sub.index = Collection{v}, k
			r, err := a.eval(ec, sub.this, sub)
			if err != nil {
				return nil, err
			}
			items[k].keys = append(items[k].keys, r)
		}
	}
	var sortErr error
	cmp := func(a, b Collection) int {
		switch {
		case len(a) == 0 && len(b) == 0:
			return 0
		case len(a) == 0:
			return 1 // empty sorts last
		case len(b) == 0:
			return -1
		}
		c, _, err := compareValues(a[0], b[0])
		if err != nil && sortErr == nil {
			sortErr = err
		}
		return c
	}
	sort.SliceStable(items, func(i, j int) bool {
		if len(args) == 0 {
			return cmp(Collection{items[i].v}, Collection{items[j].v}) < 0
		}
		for k := range args {
			c := cmp(items[i].keys[k], items[j].keys[k])
			if desc[k] {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		return false
	})
	if sortErr != nil {
		return nil, sortErr
	}
	out := make(Collection, len(items))
	for i := range items {
		out[i] = items[i].v
	}
	return out, nil
}

// FHIR functions

func fnExtension(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	url, ok, err := singleStringArg(ec, c, 0, fr)
	if err != nil || !ok {
		return nil, err
	}
	var out Collection
	for _, v := range focus {
		n, ok := v.(*Node)
		if !ok {
			continue
		}
		for _, e := range n.Children("extension") {
			if e.ChildText("url") == url {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// fnHasExtension is extension(url).exists(); R4's search parameter
// QuestionnaireResponse-item-subject uses it.
func fnHasExtension(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	r, err := fnExtension(ec, focus, c, fr)
	if err != nil {
		return nil, err
	}
	return boolResult(len(r) > 0)
}

func fnHasValue(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	if len(focus) != 1 {
		return boolResult(false)
	}
	n, ok := focus[0].(*Node)
	return boolResult(ok && n.HasValue())
}

func fnGetValue(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	if len(focus) != 1 {
		return nil, nil
	}
	n, ok := focus[0].(*Node)
	if !ok || !n.HasValue() {
		return nil, nil
	}
	v, ok := n.System()
	if !ok {
		return nil, nil
	}
	return Collection{v}, nil
}

func fnConformsTo(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	url, ok, err := singleStringArg(ec, c, 0, fr)
	if err != nil || !ok {
		return nil, err
	}
	// Only the base resource profiles are known: a resource conforms to the
	// StructureDefinition of its own type (or a base type).
	name, ok := strings.CutPrefix(url, "http://hl7.org/fhir/StructureDefinition/")
	if !ok || ec.defs == nil || ec.defs.Type(name) == nil {
		return nil, fmt.Errorf("%w: conformsTo(%q): only core StructureDefinitions are known", ErrUnsupported, url)
	}
	if len(focus) != 1 {
		return nil, nil
	}
	n, isNode := focus[0].(*Node)
	return boolResult(isNode && ec.defs.IsA(n.typ, name))
}

// fnHTMLChecks reports true: narrative XHTML is checked by the validator on
// write, not by the FHIRPath engine.
func fnHTMLChecks(_ *evalCtx, focus Collection, _ *callExpr, _ *frame) (Collection, error) {
	return boolResult(true)
}

// fnCheckModifiers returns its input when no modifier extension outside the
// given URLs is present.
func fnCheckModifiers(ec *evalCtx, focus Collection, c *callExpr, fr *frame) (Collection, error) {
	urls, err := c.arg(ec, 0, fr)
	if err != nil {
		return nil, err
	}
	for _, v := range focus {
		n, ok := v.(*Node)
		if !ok {
			continue
		}
		for _, m := range n.Children("modifierExtension") {
			if !containsItem(ec, urls, String(m.ChildText("url"))) {
				return nil, evalErr("unknown modifier extension %s", m.ChildText("url"))
			}
		}
	}
	return focus, nil
}
