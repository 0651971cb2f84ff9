package search

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"regie/fhir"
	"regie/profiles"
)

func loadDefs(t testing.TB) *fhir.Definitions {
	t.Helper()
	d, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// dump renders an Expr compactly for table tests:
//
//	param[:modifier]:type{value; value}   values list their non-zero fields
//	and(a, b)  or(a, b)  not(x)  chain(param:Target, x)  has(Type:param, x)
//
// Value.Raw is left out; Lo/Hi print as UTC instants.
func dump(e Expr) string {
	switch x := e.(type) {
	case nil:
		return "nil"
	case And:
		return "and(" + dumpList(x) + ")"
	case Or:
		return "or(" + dumpList(x) + ")"
	case Not:
		return "not(" + dump(x.X) + ")"
	case *Chain:
		return "chain(" + x.Param + ":" + x.Target + ", " + dump(x.Where) + ")"
	case *Has:
		return "has(" + x.Type + ":" + x.Param + ", " + dump(x.Where) + ")"
	case *Match:
		var b strings.Builder
		b.WriteString(x.Param)
		if x.Modifier != "" {
			b.WriteString(":" + x.Modifier)
		}
		b.WriteString(":" + string(x.Type) + "{")
		for i, v := range x.Values {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(dumpValue(v))
		}
		b.WriteString("}")
		return b.String()
	}
	return fmt.Sprintf("%T", e)
}

func dumpList(es []Expr) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = dump(e)
	}
	return strings.Join(s, ", ")
}

func dumpValue(v Value) string {
	var parts []string
	rv := reflect.ValueOf(v)
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		f, fv := rt.Field(i), rv.Field(i)
		if f.Name == "Raw" || fv.IsZero() {
			continue
		}
		switch f.Name {
		case "Lo", "Hi":
			parts = append(parts, f.Name+"="+micro(fv.Int()))
			continue
		case "Components":
			cs := make([]string, fv.Len())
			for j := range cs {
				cs[j] = dump(fv.Index(j).Interface().(*Match))
			}
			parts = append(parts, "Components=["+strings.Join(cs, ", ")+"]")
			continue
		}
		switch fv.Kind() {
		case reflect.Bool:
			parts = append(parts, f.Name)
		case reflect.Float64:
			parts = append(parts, fmt.Sprintf("%s=%.6g", f.Name, fv.Float()))
		default:
			parts = append(parts, fmt.Sprintf("%s=%v", f.Name, fv.Interface()))
		}
	}
	return strings.Join(parts, " ")
}

func micro(us int64) string {
	return time.UnixMicro(us).UTC().Format("2006-01-02T15:04:05.999999Z")
}
