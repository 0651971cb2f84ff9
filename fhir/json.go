package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// ErrNotObject is returned when JSON that must be an object is not.
var ErrNotObject = errors.New("fhir: JSON value is not an object")

// ScanObject calls fn for each member of the JSON object b, in order, with the
// member's name and the raw bytes of its value. b must be valid JSON (for
// example after json.Valid or json.Compact); ScanObject checks only what it
// needs to find member boundaries. Returning an error from fn stops the scan.
func ScanObject(b []byte, fn func(key string, val []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return ErrNotObject
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return errSyntax(i)
		}
		kend, err := skipString(b, i)
		if err != nil {
			return err
		}
		key, err := unquote(b[i:kend])
		if err != nil {
			return err
		}
		i = skipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return errSyntax(i)
		}
		i = skipSpace(b, i+1)
		vend, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := fn(key, b[i:vend]); err != nil {
			return err
		}
		i = skipSpace(b, vend)
		if i >= len(b) {
			return errSyntax(i)
		}
		if b[i] == '}' {
			return nil
		}
		if b[i] != ',' {
			return errSyntax(i)
		}
		i = skipSpace(b, i+1)
	}
}

// ScanArray calls fn for each element of the JSON array b.
func ScanArray(b []byte, fn func(val []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return errSyntax(i)
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for {
		vend, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := fn(b[i:vend]); err != nil {
			return err
		}
		i = skipSpace(b, vend)
		if i >= len(b) {
			return errSyntax(i)
		}
		if b[i] == ']' {
			return nil
		}
		if b[i] != ',' {
			return errSyntax(i)
		}
		i = skipSpace(b, i+1)
	}
}

func errSyntax(off int) error { return fmt.Errorf("fhir: JSON syntax error at offset %d", off) }

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the offset just past the string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	// Most strings have no escapes: find the closing quote with IndexByte
	// and check that no backslash comes before it.
	if q := bytes.IndexByte(b[i+1:], '"'); q >= 0 && bytes.IndexByte(b[i+1:i+1+q], '\\') < 0 {
		return i + 2 + q, nil
	}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errSyntax(i)
}

// skipValue returns the offset just past the JSON value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax(i)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errSyntax(i)
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if j == i {
					return 0, errSyntax(i)
				}
				return j, nil
			}
			j++
		}
		if j == i {
			return 0, errSyntax(i)
		}
		return j, nil
	}
}

func unquote(q []byte) (string, error) {
	if bytes.IndexByte(q, '\\') < 0 {
		return string(q[1 : len(q)-1]), nil
	}
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return "", err
	}
	return s, nil
}

// StringValue returns the Go string of a raw JSON string value, and false if
// val is not a JSON string.
func StringValue(val []byte) (string, bool) {
	if len(val) < 2 || val[0] != '"' {
		return "", false
	}
	s, err := unquote(val)
	return s, err == nil
}

// Header returns the resourceType and id members of a resource's JSON.
func Header(body []byte) (resourceType, id string, err error) {
	err = ScanObject(body, func(key string, val []byte) error {
		switch key {
		case "resourceType":
			s, ok := StringValue(val)
			if !ok {
				return Invalid(IssueStructure, "resourceType", "resourceType must be a string", "")
			}
			resourceType = s
		case "id":
			s, ok := StringValue(val)
			if !ok {
				return Invalid(IssueStructure, "id", "id must be a string", "")
			}
			id = s
		}
		return nil
	})
	return resourceType, id, err
}

// appendQuoted appends s as a JSON string.
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, `\u00`...)
				dst = append(dst, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// AppendString appends s to dst as a JSON string literal.
func AppendString(dst []byte, s string) []byte { return appendQuoted(dst, s) }

// Stamp returns a copy of the compact resource JSON body with its id set to
// id and meta.versionId and meta.lastUpdated set to version and lastUpdated.
// resourceType stays first, id and meta follow it, and every other member
// keeps its bytes and its order.
func Stamp(body []byte, id string, version int64, lastUpdated time.Time) ([]byte, error) {
	// One pass: the other members go to rest, meta is kept for the header.
	var oldMeta []byte
	rest := make([]byte, 0, len(body))
	if err := ScanObject(body, func(key string, val []byte) error {
		switch key {
		case "meta":
			oldMeta = val
			return nil
		case "resourceType", "id":
			return nil
		}
		rest = append(rest, ',')
		rest = appendQuoted(rest, key)
		rest = append(rest, ':')
		rest = append(rest, val...)
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(rest)+len(oldMeta)+96)
	out = append(out, '{')
	if rt, _, err := Header(body); err == nil && rt != "" {
		out = append(out, `"resourceType":`...)
		out = appendQuoted(out, rt)
		out = append(out, ',')
	}
	out = append(out, `"id":`...)
	out = appendQuoted(out, id)
	out = append(out, `,"meta":{"versionId":"`...)
	out = strconv.AppendInt(out, version, 10)
	out = append(out, `","lastUpdated":"`...)
	out = append(out, FormatInstant(lastUpdated)...)
	out = append(out, '"')
	if oldMeta != nil {
		err := ScanObject(oldMeta, func(key string, val []byte) error {
			if key == "versionId" || key == "lastUpdated" {
				return nil
			}
			out = append(out, ',')
			out = appendQuoted(out, key)
			out = append(out, ':')
			out = append(out, val...)
			return nil
		})
		if err != nil {
			return nil, Invalid(IssueStructure, "meta", "meta must be an object", "")
		}
	}
	out = append(out, '}')
	out = append(out, rest...)
	return append(out, '}'), nil
}

// MapStrings returns a copy of the JSON b in which every string value (not
// member names) for which fn returns (s, true) is replaced by s. It is used
// to rewrite references to a Bundle's fullUrls.
func MapStrings(b []byte, fn func(string) (string, bool)) ([]byte, error) {
	out := make([]byte, 0, len(b))
	expectKey := false
	var stack []byte // '{' or '['
	for i := 0; i < len(b); {
		c := b[i]
		switch c {
		case '{', '[':
			stack = append(stack, c)
			expectKey = c == '{'
			out = append(out, c)
			i++
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			expectKey = false
			out = append(out, c)
			i++
		case ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1] == '{'
			out = append(out, c)
			i++
		case ':':
			expectKey = false
			out = append(out, c)
			i++
		case '"':
			end, err := skipString(b, i)
			if err != nil {
				return nil, err
			}
			if !expectKey {
				s, err := unquote(b[i:end])
				if err != nil {
					return nil, err
				}
				if r, ok := fn(s); ok {
					out = appendQuoted(out, r)
					i = end
					continue
				}
			}
			out = append(out, b[i:end]...)
			i = end
		default:
			out = append(out, c)
			i++
		}
	}
	return out, nil
}

// WithID returns a copy of the compact resource JSON body with its id set
// to id (right after resourceType); every other member keeps its bytes.
func WithID(body []byte, id string) ([]byte, error) {
	out := make([]byte, 0, len(body)+len(id)+8)
	out = append(out, '{')
	wrote := false
	writeID := func() {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, `"id":`...)
		out = appendQuoted(out, id)
		wrote = true
	}
	err := ScanObject(body, func(key string, val []byte) error {
		if key == "id" {
			return nil
		}
		if key != "resourceType" && !wrote {
			writeID()
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = appendQuoted(out, key)
		out = append(out, ':')
		out = append(out, val...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !wrote {
		writeID()
	}
	return append(out, '}'), nil
}
