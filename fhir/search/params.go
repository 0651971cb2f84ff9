package search

import (
	"net/url"
	"sort"
	"strings"

	"regie/fhir"
)

// Param is one name=value pair of a search request, percent-decoded, in
// the order the request gave it.
type Param struct {
	Name, Value string
}

// ParseParams splits a URL query string or an
// application/x-www-form-urlencoded body (POST …/_search) into its pairs,
// keeping their order. '+' decodes to a space. A malformed percent escape
// is a *fhir.ValidationError.
func ParseParams(raw string) ([]Param, error) {
	var ps []Param
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fhir.Invalid(fhir.IssueInvalid, "", "search: malformed percent-encoding in a parameter name", "")
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fhir.Invalid(fhir.IssueInvalid, name, "search: malformed percent-encoding in a parameter value", "")
		}
		ps = append(ps, Param{Name: name, Value: value})
	}
	return ps, nil
}

// ParamsFromValues converts url.Values into pairs. url.Values has no order
// between names, so the pairs are sorted by name; the values of one name
// keep their order.
func ParamsFromValues(v url.Values) []Param {
	names := make([]string, 0, len(v))
	for n := range v {
		names = append(names, n)
	}
	sort.Strings(names)
	var ps []Param
	for _, n := range names {
		for _, val := range v[n] {
			ps = append(ps, Param{Name: n, Value: val})
		}
	}
	return ps
}
