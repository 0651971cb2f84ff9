package fhir_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"regie/fhir"
)

func TestStamp(t *testing.T) {
	ts := time.Date(2026, 11, 23, 10, 0, 0, 123000000, time.UTC)
	cases := []struct {
		name, in, want string
	}{
		{"no id no meta", `{"resourceType":"Patient","active":true}`,
			`{"resourceType":"Patient","id":"a1","meta":{"versionId":"3","lastUpdated":"2026-11-23T10:00:00.123Z"},"active":true}`},
		{"replaces id and keeps meta members", `{"resourceType":"Patient","active":true,"meta":{"versionId":"9","tag":[{"code":"x"}],"lastUpdated":"2000-01-01T00:00:00Z"},"id":"old"}`,
			`{"resourceType":"Patient","id":"a1","meta":{"versionId":"3","lastUpdated":"2026-11-23T10:00:00.123Z","tag":[{"code":"x"}]},"active":true}`},
		{"escapes", `{"resourceType":"Patient","name":[{"text":"a\"b\\c\u00e9"}]}`,
			`{"resourceType":"Patient","id":"a1","meta":{"versionId":"3","lastUpdated":"2026-11-23T10:00:00.123Z"},"name":[{"text":"a\"b\\c\u00e9"}]}`},
		{"keeps decimal text", `{"resourceType":"Observation","valueQuantity":{"value":1.50}}`,
			`{"resourceType":"Observation","id":"a1","meta":{"versionId":"3","lastUpdated":"2026-11-23T10:00:00.123Z"},"valueQuantity":{"value":1.50}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := fhir.Stamp([]byte(c.in), "a1", 3, ts)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
	if _, err := fhir.Stamp([]byte(`{"resourceType":"Patient","meta":[]}`), "a", 1, ts); err == nil {
		t.Error("meta that is not an object was accepted")
	}
}

func TestHeader(t *testing.T) {
	rt, id, err := fhir.Header([]byte(` { "id" : "x\u002dy", "resourceType":"Patient", "a":{"resourceType":"Inner","id":"z"}}`))
	if err != nil || rt != "Patient" || id != "x-y" {
		t.Errorf("Header = %q %q %v", rt, id, err)
	}
	if _, _, err := fhir.Header([]byte(`[1]`)); err == nil {
		t.Error("array accepted as a resource")
	}
	if _, _, err := fhir.Header([]byte(`{"resourceType":1}`)); err == nil {
		t.Error("numeric resourceType accepted")
	}
}

func TestValidID(t *testing.T) {
	for _, ok := range []string{"a", "A-1.b", string(bytes.Repeat([]byte("x"), 64))} {
		if !fhir.ValidID(ok) {
			t.Errorf("%q rejected", ok)
		}
	}
	for _, bad := range []string{"", "a_b", "a/b", "é", string(bytes.Repeat([]byte("x"), 65)), "a b"} {
		if fhir.ValidID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzStamp checks that Stamp never panics and that, for any valid JSON
// object, its output is valid JSON whose members other than id and meta are
// unchanged.
func FuzzStamp(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Patient","active":true}`))
	f.Add([]byte(`{"resourceType":"Patient","meta":{"tag":[]},"id":"q","x":[1,{"y":"}"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var buf bytes.Buffer
		if json.Compact(&buf, in) != nil {
			_, _ = fhir.Stamp(in, "id", 1, time.Unix(0, 0))
			return
		}
		out, err := fhir.Stamp(buf.Bytes(), "id", 1, time.Unix(0, 0))
		var before map[string]any
		if json.Unmarshal(buf.Bytes(), &before) != nil {
			return // valid JSON but not an object
		}
		if m, ok := before["meta"]; ok {
			if _, isObj := m.(map[string]any); !isObj {
				if err == nil {
					t.Fatalf("non-object meta accepted: %s", in)
				}
				return
			}
		}
		if err != nil {
			t.Fatalf("Stamp(%s): %v", in, err)
		}
		var after map[string]any
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatalf("Stamp(%s) = invalid JSON %s: %v", in, out, err)
		}
		if after["id"] != "id" {
			t.Fatalf("id not set: %s", out)
		}
		delete(before, "id")
		delete(after, "id")
		bm, _ := before["meta"].(map[string]any)
		am := after["meta"].(map[string]any)
		delete(am, "versionId")
		delete(am, "lastUpdated")
		if bm != nil {
			delete(bm, "versionId")
			delete(bm, "lastUpdated")
		} else {
			bm = map[string]any{}
		}
		if !reflect.DeepEqual(bm, am) {
			t.Fatalf("meta changed: %v -> %v", bm, am)
		}
		delete(before, "meta")
		delete(after, "meta")
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("members changed:\n%s\n%s", in, out)
		}
	})
}

func TestMapStrings(t *testing.T) {
	in := `{"a":"urn:uuid:1","urn:uuid:1":["urn:uuid:1",{"reference":"urn:uuid:2"}],"n":1,"s":"x\"urn:uuid:1"}`
	got, err := fhir.MapStrings([]byte(in), func(s string) (string, bool) {
		switch s {
		case "urn:uuid:1":
			return "Patient/p1", true
		case "urn:uuid:2":
			return "Observation/o\"2", true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":"Patient/p1","urn:uuid:1":["Patient/p1",{"reference":"Observation/o\"2"}],"n":1,"s":"x\"urn:uuid:1"}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestWithID(t *testing.T) {
	for in, want := range map[string]string{
		`{"resourceType":"Patient","active":true}`:            `{"resourceType":"Patient","id":"x","active":true}`,
		`{"resourceType":"Patient","id":"old","active":true}`: `{"resourceType":"Patient","id":"x","active":true}`,
		`{"resourceType":"Patient"}`:                          `{"resourceType":"Patient","id":"x"}`,
	} {
		got, err := fhir.WithID([]byte(in), "x")
		if err != nil || string(got) != want {
			t.Errorf("WithID(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
}
