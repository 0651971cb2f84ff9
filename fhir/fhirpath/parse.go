package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits that keep hostile expressions from exhausting the stack or memory.
const (
	maxExprLen   = 64 << 10
	maxExprDepth = 200
)

// SyntaxError is a compile error with the byte offset in the expression.
type SyntaxError struct {
	Pos int
	Msg string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("fhirpath: syntax error at offset %d: %s", e.Pos, e.Msg)
}

// Unwrap returns ErrSyntax.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tDelim // `delimited identifier`
	tString
	tNumber
	tLong
	tDate // @... (text without @)
	tTime // @T... (text without @T)
	tVar  // %name (text is the name)
	tSpecial
	tOp
)

type token struct {
	kind tokKind
	text string
	pos  int
}

type lexer struct {
	s   string
	i   int
	tok []token
}

func lex(s string) ([]token, error) {
	l := &lexer{s: s}
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		l.tok = append(l.tok, t)
		if t.kind == tEOF {
			return l.tok, nil
		}
	}
}

func isIdentStart(c byte) bool { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentChar(c byte) bool  { return isIdentStart(c) || isDigit(c) }

func (l *lexer) errf(pos int, f string, a ...any) error {
	return &SyntaxError{Pos: pos, Msg: fmt.Sprintf(f, a...)}
}

func (l *lexer) skipSpace() error {
	for l.i < len(l.s) {
		c := l.s[l.i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			l.i++
		case c == '/' && l.i+1 < len(l.s) && l.s[l.i+1] == '/':
			for l.i < len(l.s) && l.s[l.i] != '\n' {
				l.i++
			}
		case c == '/' && l.i+1 < len(l.s) && l.s[l.i+1] == '*':
			end := strings.Index(l.s[l.i+2:], "*/")
			if end < 0 {
				return l.errf(l.i, "unterminated comment")
			}
			l.i += end + 4
		default:
			return nil
		}
	}
	return nil
}

func (l *lexer) next() (token, error) {
	if err := l.skipSpace(); err != nil {
		return token{}, err
	}
	start := l.i
	if l.i >= len(l.s) {
		return token{kind: tEOF, pos: start}, nil
	}
	c := l.s[l.i]
	switch {
	case isIdentStart(c):
		for l.i < len(l.s) && isIdentChar(l.s[l.i]) {
			l.i++
		}
		return token{kind: tIdent, text: l.s[start:l.i], pos: start}, nil
	case c == '`':
		s, err := l.quoted('`')
		if err != nil {
			return token{}, err
		}
		return token{kind: tDelim, text: s, pos: start}, nil
	case c == '\'':
		s, err := l.quoted('\'')
		if err != nil {
			return token{}, err
		}
		return token{kind: tString, text: s, pos: start}, nil
	case isDigit(c):
		for l.i < len(l.s) && isDigit(l.s[l.i]) {
			l.i++
		}
		if l.i+1 < len(l.s) && l.s[l.i] == '.' && isDigit(l.s[l.i+1]) {
			l.i++
			for l.i < len(l.s) && isDigit(l.s[l.i]) {
				l.i++
			}
		} else if l.i < len(l.s) && l.s[l.i] == 'L' && (l.i+1 >= len(l.s) || !isIdentChar(l.s[l.i+1])) {
			l.i++
			return token{kind: tLong, text: l.s[start : l.i-1], pos: start}, nil
		}
		return token{kind: tNumber, text: l.s[start:l.i], pos: start}, nil
	case c == '@':
		l.i++
		if l.i < len(l.s) && l.s[l.i] == 'T' {
			l.i++
			ts := l.i
			l.scanTime()
			if l.i == ts {
				return token{}, l.errf(start, "invalid time literal")
			}
			return token{kind: tTime, text: l.s[ts:l.i], pos: start}, nil
		}
		ds := l.i
		if !l.scanDigits(4) {
			return token{}, l.errf(start, "invalid date literal")
		}
		if l.peekDash() {
			l.i++
			if !l.scanDigits(2) {
				return token{}, l.errf(start, "invalid date literal")
			}
			if l.peekDash() {
				l.i++
				if !l.scanDigits(2) {
					return token{}, l.errf(start, "invalid date literal")
				}
			}
		}
		if l.i < len(l.s) && l.s[l.i] == 'T' {
			l.i++
			l.scanTime()
			l.scanZone()
		}
		return token{kind: tDate, text: l.s[ds:l.i], pos: start}, nil
	case c == '%':
		l.i++
		if l.i < len(l.s) && (l.s[l.i] == '`' || l.s[l.i] == '\'') {
			s, err := l.quoted(l.s[l.i])
			if err != nil {
				return token{}, err
			}
			return token{kind: tVar, text: s, pos: start}, nil
		}
		ns := l.i
		for l.i < len(l.s) && isIdentChar(l.s[l.i]) {
			l.i++
		}
		if l.i == ns || isDigit(l.s[ns]) {
			return token{}, l.errf(start, "invalid variable name")
		}
		return token{kind: tVar, text: l.s[ns:l.i], pos: start}, nil
	case c == '$':
		l.i++
		for l.i < len(l.s) && isIdentChar(l.s[l.i]) {
			l.i++
		}
		switch w := l.s[start:l.i]; w {
		case "$this", "$index", "$total":
			return token{kind: tSpecial, text: w, pos: start}, nil
		}
		return token{}, l.errf(start, "unknown special variable %q", l.s[start:l.i])
	}
	for _, op := range []string{"<=", ">=", "!=", "!~"} {
		if strings.HasPrefix(l.s[l.i:], op) {
			l.i += 2
			return token{kind: tOp, text: op, pos: start}, nil
		}
	}
	if strings.IndexByte(".,()[]{}+-*/&|=~<>", c) >= 0 {
		l.i++
		return token{kind: tOp, text: string(c), pos: start}, nil
	}
	r, _ := utf8.DecodeRuneInString(l.s[l.i:])
	return token{}, l.errf(start, "unexpected character %q", r)
}

func (l *lexer) peekDash() bool {
	return l.i+1 < len(l.s) && l.s[l.i] == '-' && isDigit(l.s[l.i+1])
}

func (l *lexer) scanDigits(n int) bool {
	if l.i+n > len(l.s) {
		return false
	}
	for k := 0; k < n; k++ {
		if !isDigit(l.s[l.i+k]) {
			return false
		}
	}
	l.i += n
	return true
}

// scanTime scans hh[:mm[:ss[.fff]]] as far as it goes.
func (l *lexer) scanTime() {
	if !l.scanDigits(2) {
		return
	}
	for k := 0; k < 2; k++ {
		if l.i+2 < len(l.s) && l.s[l.i] == ':' && isDigit(l.s[l.i+1]) && isDigit(l.s[l.i+2]) {
			l.i += 3
		} else {
			return
		}
	}
	if l.i+1 < len(l.s) && l.s[l.i] == '.' && isDigit(l.s[l.i+1]) {
		l.i++
		for l.i < len(l.s) && isDigit(l.s[l.i]) {
			l.i++
		}
	}
}

func (l *lexer) scanZone() {
	if l.i < len(l.s) && l.s[l.i] == 'Z' {
		l.i++
		return
	}
	if l.i+5 < len(l.s)+0 && (l.s[l.i] == '+' || l.s[l.i] == '-') &&
		isDigit(l.s[l.i+1]) && isDigit(l.s[l.i+2]) && l.s[l.i+3] == ':' && isDigit(l.s[l.i+4]) && isDigit(l.s[l.i+5]) {
		l.i += 6
	}
}

// quoted scans a quoted string or identifier and returns it unescaped.
func (l *lexer) quoted(q byte) (string, error) {
	start := l.i
	l.i++
	var b strings.Builder
	for l.i < len(l.s) {
		c := l.s[l.i]
		switch {
		case c == q:
			l.i++
			return b.String(), nil
		case c == '\\':
			if l.i+1 >= len(l.s) {
				return "", l.errf(l.i, "unterminated escape")
			}
			e := l.s[l.i+1]
			l.i += 2
			switch e {
			case '\'', '"', '`', '\\', '/':
				b.WriteByte(e)
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if l.i+4 > len(l.s) {
					return "", l.errf(l.i, "invalid unicode escape")
				}
				v, err := strconv.ParseUint(l.s[l.i:l.i+4], 16, 32)
				if err != nil {
					return "", l.errf(l.i, "invalid unicode escape")
				}
				l.i += 4
				r := rune(v)
				if utf16.IsSurrogate(r) && l.i+6 <= len(l.s) && l.s[l.i] == '\\' && l.s[l.i+1] == 'u' {
					if v2, err := strconv.ParseUint(l.s[l.i+2:l.i+6], 16, 32); err == nil {
						if d := utf16.DecodeRune(r, rune(v2)); d != utf8.RuneError {
							r = d
							l.i += 6
						}
					}
				}
				b.WriteRune(r)
			default:
				return "", l.errf(l.i-2, "invalid escape \\%c", e)
			}
		default:
			b.WriteByte(c)
			l.i++
		}
	}
	return "", l.errf(start, "unterminated quoted text")
}

// parser: precedence climbing over the token list.
type parser struct {
	toks  []token
	p     int
	depth int
	src   string
}

func (p *parser) peek() token { return p.toks[p.p] }
func (p *parser) advance() token {
	t := p.toks[p.p]
	if t.kind != tEOF {
		p.p++
	}
	return t
}

func (p *parser) errf(pos int, f string, a ...any) error {
	return &SyntaxError{Pos: pos, Msg: fmt.Sprintf(f, a...)}
}

func (p *parser) isOp(s string) bool {
	t := p.peek()
	return t.kind == tOp && t.text == s
}

func (p *parser) expect(s string) error {
	if !p.isOp(s) {
		t := p.peek()
		return p.errf(t.pos, "expected %q, found %s", s, describe(t))
	}
	p.advance()
	return nil
}

func describe(t token) string {
	if t.kind == tEOF {
		return "end of expression"
	}
	return strconv.Quote(t.text)
}

// binary operator precedence (higher binds tighter).
func binPrec(t token) int {
	switch t.kind {
	case tOp:
		switch t.text {
		case "*", "/":
			return 10
		case "+", "-", "&":
			return 9
		case "|":
			return 7
		case "<", ">", "<=", ">=":
			return 6
		case "=", "~", "!=", "!~":
			return 5
		}
	case tIdent:
		switch t.text {
		case "div", "mod":
			return 10
		case "is", "as":
			return 8
		case "in", "contains":
			return 4
		case "and":
			return 3
		case "or", "xor":
			return 2
		case "implies":
			return 1
		}
	}
	return 0
}

func (p *parser) expr(minPrec int) (expr, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxExprDepth {
		return nil, p.errf(p.peek().pos, "expression nested too deeply")
	}
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		prec := binPrec(t)
		if prec == 0 || prec < minPrec {
			return left, nil
		}
		p.advance()
		if t.kind == tIdent && (t.text == "is" || t.text == "as") {
			ts, err := p.typeSpec()
			if err != nil {
				return nil, err
			}
			left = &typeExpr{op: t.text, x: left, t: ts, pos: t.pos}
			continue
		}
		right, err := p.expr(prec + 1)
		if err != nil {
			return nil, err
		}
		left = newBinary(t.text, left, right, t.pos)
	}
}

func (p *parser) typeSpec() (typeSpec, error) {
	t := p.advance()
	if t.kind != tIdent && t.kind != tDelim {
		return typeSpec{}, p.errf(t.pos, "expected type name, found %s", describe(t))
	}
	ts := typeSpec{name: t.text}
	if p.isOp(".") {
		p.advance()
		n := p.advance()
		if n.kind != tIdent && n.kind != tDelim {
			return typeSpec{}, p.errf(n.pos, "expected type name, found %s", describe(n))
		}
		ts = typeSpec{ns: t.text, name: n.text}
	}
	return ts, nil
}

func (p *parser) unary() (expr, error) {
	t := p.peek()
	if t.kind == tOp && (t.text == "+" || t.text == "-") {
		p.advance()
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxExprDepth {
			return nil, p.errf(t.pos, "expression nested too deeply")
		}
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if t.text == "+" {
			return &unaryExpr{neg: false, x: x, pos: t.pos}, nil
		}
		return &unaryExpr{neg: true, x: x, pos: t.pos}, nil
	}
	return p.postfix()
}

func (p *parser) postfix() (expr, error) {
	x, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.isOp("."):
			p.advance()
			t := p.advance()
			if t.kind != tIdent && t.kind != tDelim {
				return nil, p.errf(t.pos, "expected name after '.', found %s", describe(t))
			}
			if t.kind == tIdent && p.isOp("(") {
				f, err := p.call(t, x)
				if err != nil {
					return nil, err
				}
				x = f
			} else {
				x = &memberExpr{left: x, name: t.text}
			}
		case p.isOp("["):
			t := p.advance()
			p.depth++
			idx, err := p.expr(1)
			p.depth--
			if err != nil {
				return nil, err
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			x = &indexerExpr{left: x, index: idx, pos: t.pos}
		default:
			return x, nil
		}
	}
}

func (p *parser) call(name token, left expr) (expr, error) {
	p.advance() // (
	var args []expr
	if !p.isOp(")") {
		for {
			a, err := p.expr(1)
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			if p.isOp(",") {
				p.advance()
				continue
			}
			break
		}
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	return newCall(name.text, left, args, name.pos)
}

func (p *parser) term() (expr, error) {
	t := p.advance()
	switch t.kind {
	case tEOF:
		return nil, p.errf(t.pos, "unexpected end of expression")
	case tNumber, tLong:
		if t.kind == tNumber {
			// a quantity: number followed by a unit string or calendar keyword
			n := p.peek()
			if n.kind == tString || (n.kind == tIdent && calendarUnits[n.text] != "") {
				p.advance()
				d, err := ParseDecimal(t.text)
				if err != nil {
					return nil, p.errf(t.pos, "invalid number")
				}
				q := Quantity{Value: d, Unit: n.text}
				if n.kind == tIdent {
					q.Calendar = true
				}
				return &literalExpr{val: Collection{q}}, nil
			}
		}
		if !strings.Contains(t.text, ".") {
			i, err := strconv.ParseInt(t.text, 10, 64)
			if err != nil {
				return nil, p.errf(t.pos, "integer out of range")
			}
			return &literalExpr{val: Collection{Integer(i)}}, nil
		}
		d, err := ParseDecimal(t.text)
		if err != nil {
			return nil, p.errf(t.pos, "invalid number")
		}
		return &literalExpr{val: Collection{d}}, nil
	case tString:
		return &literalExpr{val: Collection{String(t.text)}}, nil
	case tDate:
		if !strings.Contains(t.text, "T") {
			d, ok := ParseDate(t.text)
			if !ok {
				return nil, p.errf(t.pos, "invalid date %q", t.text)
			}
			return &literalExpr{val: Collection{d}}, nil
		}
		d, ok := ParseDateTime(t.text)
		if !ok {
			return nil, p.errf(t.pos, "invalid date-time %q", t.text)
		}
		return &literalExpr{val: Collection{d}}, nil
	case tTime:
		tm, ok := ParseTime(t.text)
		if !ok {
			return nil, p.errf(t.pos, "invalid time %q", t.text)
		}
		return &literalExpr{val: Collection{tm}}, nil
	case tVar:
		return &varExpr{name: t.text, pos: t.pos}, nil
	case tSpecial:
		return &specialExpr{name: t.text}, nil
	case tDelim:
		return &memberExpr{name: t.text}, nil
	case tIdent:
		switch t.text {
		case "true":
			return &literalExpr{val: Collection{Boolean(true)}}, nil
		case "false":
			return &literalExpr{val: Collection{Boolean(false)}}, nil
		}
		if p.isOp("(") {
			return p.call(t, nil)
		}
		return &memberExpr{name: t.text}, nil
	case tOp:
		switch t.text {
		case "(":
			x, err := p.expr(1)
			if err != nil {
				return nil, err
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
			return x, nil
		case "{":
			if err := p.expect("}"); err != nil {
				return nil, err
			}
			return &literalExpr{}, nil
		}
	}
	return nil, p.errf(t.pos, "unexpected %s", describe(t))
}

// Expression is a compiled FHIRPath expression. It is immutable and safe
// for concurrent use.
type Expression struct {
	src  string
	root expr
}

// String returns the source text.
func (e *Expression) String() string { return e.src }

// Compile parses a FHIRPath expression. Syntax errors are *SyntaxError
// (wrapping ErrSyntax) with the offset of the problem; unknown functions and
// wrong argument counts are reported here too.
func Compile(src string) (*Expression, error) {
	if len(src) > maxExprLen {
		return nil, &SyntaxError{Pos: maxExprLen, Msg: "expression too long"}
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, src: src}
	x, err := p.expr(1)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errf(t.pos, "unexpected %s", describe(t))
	}
	return &Expression{src: src, root: x}, nil
}

// MustCompile is Compile for expressions known to be valid; it panics on error.
func MustCompile(src string) *Expression {
	e, err := Compile(src)
	if err != nil {
		panic(err)
	}
	return e
}
