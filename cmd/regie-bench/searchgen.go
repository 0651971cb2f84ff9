package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"regie/fhir"
)

// The generator makes Synthea-shaped data sets of any size from a few
// source bundles: copy k of the data set is a copy of source bundle
// k mod S (its Patient, Encounters, Conditions, CarePlans and Observations,
// in that order) in which every id is replaced by one derived from (k, the
// source id), every reference between them follows, the patient's
// identifiers and names are made unique to the copy and every date is
// shifted by a per-copy number of days. Practitioners and Organizations the
// copies refer to are written once, with their source ids ("shared").
//
// Sources are compiled once into templates (literal JSON with holes), so a
// copy costs little more than concatenation.

// genTypes are the resource types copied, in write order.
var genTypes = []string{"Patient", "Encounter", "Condition", "CarePlan", "Observation"}

// sharedTypes are written once and referred to by every copy.
var sharedTypes = map[string]bool{"Practitioner": true, "Organization": true}

// droppedPaths are elements removed from the copies because they refer to
// types that are not generated.
var droppedPaths = map[string]bool{"CarePlan.goal": true}

// familySuffixes vary the patients' family names between copies of one
// source, so that a name prefix matches a realistic handful of patients.
var familySuffixes = []string{"", "s", "son", "sen", "er", "man", "berg", "ink", "ley", "ford", "ton", "well",
	"by", "dorf", "stra", "huis", "veld", "ens", "ova", "ski", "mann", "ing", "hout", "kamp"}

// GenResource is one generated resource.
type GenResource struct {
	Type, ID string
	Body     []byte
}

// Ref returns "Type/id".
func (r *GenResource) Ref() string { return r.Type + "/" + r.ID }

type holeKind uint8

const (
	holeID     holeKind = iota + 1 // the resource's own new id
	holeRef                        // a reference to another resource of the copy or a shared one
	holeUID                        // a bare source id (an identifier value equal to an id)
	holeDate                       // a date or dateTime, shifted
	holeFamily                     // the patient's family name
	holeGiven                      // a given name
	holeIdent                      // an identifier value with digits, made unique to the copy
)

type segment struct {
	lit  []byte
	kind holeKind
	arg  string // source id, original value
	ref  int    // for holeRef and holeUID: item index in the source, or -1 - shared index
}

type template struct {
	segs []segment
}

// item is one resource of a source bundle.
type item struct {
	typ, srcID string
	tmpl       template
	// Observations: the first coding of code as system|code, and the
	// effective date (unshifted, day precision).
	code, date string
}

type source struct {
	name   string
	items  []item
	byID   map[string]int
	family string
	given  string
	// codes counts the Observation codes.
	codes map[string]int
}

// Generator produces the copies of a data set of a given size.
type Generator struct {
	sources  []*source
	shared   []GenResource
	sharedBy map[string]int
	n        int
	copies   int // copies, the last one possibly cut short
	lastLen  int // resources of the last copy
	seed     uint64
	builtin  bool
	givens   []string
}

// NewGenerator builds a generator of n resources (the shared ones
// included) from the transaction Bundles in bundles; seed varies the
// derived ids and shifts.
func NewGenerator(bundles [][]byte, n int, seed uint64) (*Generator, error) {
	g := &Generator{n: n, seed: seed, sharedBy: map[string]int{}}
	for i, b := range bundles {
		s, err := g.addSource(fmt.Sprintf("bundle %d", i), b)
		if err != nil {
			return nil, err
		}
		if s != nil {
			g.sources = append(g.sources, s)
		}
	}
	if len(g.sources) == 0 {
		return nil, errors.New("bench: no source bundle with a Patient")
	}
	for _, s := range g.sources {
		if err := g.compileSource(s); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, s := range g.sources {
		for _, it := range s.items {
			if it.typ == "Patient" {
				for _, giv := range strings.Fields(s.given) {
					if !seen[giv] {
						seen[giv] = true
						g.givens = append(g.givens, giv)
					}
				}
			}
		}
	}
	sort.Strings(g.givens)
	if n < len(g.shared)+1 {
		return nil, fmt.Errorf("bench: -n must be at least %d", len(g.shared)+1)
	}
	left := n - len(g.shared)
	for k := 0; left > 0; k++ {
		m := len(g.sources[k%len(g.sources)].items)
		g.copies, g.lastLen = k+1, min(m, left)
		left -= m
	}
	return g, nil
}

// LoadSyntheaBundles reads the Synthea transaction Bundles in dir, in name
// order. It returns nil and no error when dir has none.
func LoadSyntheaBundles(dir string) ([][]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var h struct {
			ResourceType string `json:"resourceType"`
			Type         string `json:"type"`
		}
		if json.Unmarshal(b, &h) != nil || h.ResourceType != "Bundle" || h.Type != "transaction" {
			continue // manifest and counts files
		}
		out = append(out, b)
	}
	return out, nil
}

// addSource reads one Bundle: the shared resources go to g.shared, the
// generated types into a source.
func (g *Generator) addSource(name string, b []byte) (*source, error) {
	var bundle struct {
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	s := &source{name: name, byID: map[string]int{}, codes: map[string]int{}}
	byType := map[string][]item{}
	for _, e := range bundle.Entry {
		typ, id, err := fhir.Header(e.Resource)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", name, err)
		}
		if id == "" {
			id = strings.TrimPrefix(e.FullURL, "urn:uuid:")
		}
		var compact []byte
		if compact, err = compactJSON(e.Resource); err != nil {
			return nil, fmt.Errorf("bench: %s: %w", name, err)
		}
		switch {
		case sharedTypes[typ]:
			if _, ok := g.sharedBy[id]; !ok {
				g.sharedBy[id] = len(g.shared)
				g.shared = append(g.shared, GenResource{Type: typ, ID: id, Body: compact})
			}
		case slices.Contains(genTypes, typ):
			it := item{typ: typ, srcID: id, tmpl: template{segs: []segment{{lit: compact}}}}
			if typ == "Observation" {
				var o struct {
					Code struct {
						Coding []struct{ System, Code string }
					}
					EffectiveDateTime string
				}
				if err := json.Unmarshal(compact, &o); err != nil {
					return nil, fmt.Errorf("bench: %s: %w", name, err)
				}
				if len(o.Code.Coding) > 0 {
					it.code = o.Code.Coding[0].System + "|" + o.Code.Coding[0].Code
					s.codes[it.code]++
				}
				if isDate(o.EffectiveDateTime) {
					it.date = o.EffectiveDateTime[:10]
				}
			}
			byType[typ] = append(byType[typ], it)
		}
	}
	if len(byType["Patient"]) != 1 {
		return nil, nil
	}
	for _, t := range genTypes {
		for _, it := range byType[t] {
			s.byID[it.srcID] = len(s.items)
			s.items = append(s.items, it)
		}
	}
	return s, nil
}

func compactJSON(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// compileSource turns every item of s (still holding its compact JSON) into
// a template.
func (g *Generator) compileSource(s *source) error {
	for i := range s.items {
		it := &s.items[i]
		body := it.tmpl.segs[0].lit
		c := &compiler{g: g, s: s, it: it}
		if err := c.walk(body, it.typ, true); err != nil {
			return fmt.Errorf("bench: %s: %s/%s: %w", s.name, it.typ, it.srcID, err)
		}
		c.flush()
		it.tmpl = template{segs: c.segs}
	}
	return nil
}

type compiler struct {
	g    *Generator
	s    *source
	it   *item
	segs []segment
	lit  []byte
}

func (c *compiler) flush() {
	if len(c.lit) > 0 {
		c.segs = append(c.segs, segment{lit: c.lit})
		c.lit = nil
	}
}

func (c *compiler) hole(h segment) {
	c.flush()
	c.segs = append(c.segs, h)
}

// walk copies the JSON value b at path into the template, turning the
// strings that vary per copy into holes.
func (c *compiler) walk(b []byte, path string, top bool) error {
	switch b[0] {
	case '{':
		c.lit = append(c.lit, '{')
		first := true
		err := fhir.ScanObject(b, func(key string, val []byte) error {
			p := path + "." + key
			if droppedPaths[p] {
				return nil
			}
			if !first {
				c.lit = append(c.lit, ',')
			}
			first = false
			c.lit = fhir.AppendString(c.lit, key)
			c.lit = append(c.lit, ':')
			if top && key == "id" {
				c.hole(segment{kind: holeID})
				return nil
			}
			return c.walk(val, p, false)
		})
		c.lit = append(c.lit, '}')
		return err
	case '[':
		c.lit = append(c.lit, '[')
		first := true
		err := fhir.ScanArray(b, func(val []byte) error {
			if !first {
				c.lit = append(c.lit, ',')
			}
			first = false
			return c.walk(val, path, false)
		})
		c.lit = append(c.lit, ']')
		return err
	case '"':
		s, ok := fhir.StringValue(b)
		if !ok {
			return errors.New("bad string")
		}
		return c.str(s, path)
	}
	c.lit = append(c.lit, b...)
	return nil
}

func (c *compiler) str(s, path string) error {
	switch {
	case strings.HasSuffix(path, ".reference") && strings.HasPrefix(s, "urn:uuid:"):
		id := strings.TrimPrefix(s, "urn:uuid:")
		if i, ok := c.s.byID[id]; ok {
			c.hole(segment{kind: holeRef, arg: id, ref: i})
			return nil
		}
		if i, ok := c.g.sharedBy[id]; ok {
			c.hole(segment{kind: holeRef, arg: id, ref: -1 - i})
			return nil
		}
		return fmt.Errorf("reference %s at %s to a resource that is not generated", s, path)
	case path == "Patient.identifier.value":
		if i, ok := c.s.byID[s]; ok {
			c.hole(segment{kind: holeUID, arg: s, ref: i})
			return nil
		}
		if countDigits(s) >= 7 {
			c.hole(segment{kind: holeIdent, arg: s})
			return nil
		}
	case path == "Patient.name.family":
		if c.s.family == "" {
			c.s.family = s
		}
		c.hole(segment{kind: holeFamily, arg: s})
		return nil
	case path == "Patient.name.given":
		if c.s.given == "" {
			c.s.given = s
		}
		c.hole(segment{kind: holeGiven, arg: s})
		return nil
	case isDate(s):
		c.hole(segment{kind: holeDate, arg: s})
		return nil
	}
	c.lit = fhir.AppendString(c.lit, s)
	return nil
}

func countDigits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			n++
		}
	}
	return n
}

// isDate reports whether s is a FHIR date or dateTime with at least a day.
func isDate(s string) bool {
	if len(s) < 10 || len(s) > 10 && s[10] != 'T' {
		return false
	}
	for i := 0; i < 10; i++ {
		switch i {
		case 4, 7:
			if s[i] != '-' {
				return false
			}
		default:
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
	}
	return true
}

// Builtin reports whether the generator runs on the built-in templates.
func (g *Generator) Builtin() bool { return g.builtin }

// N is the number of resources of the data set.
func (g *Generator) N() int { return g.n }

// Copies is the number of copies (patients); the last may be cut short.
func (g *Generator) Copies() int { return g.copies }

// Sources is the number of source bundles.
func (g *Generator) Sources() int { return len(g.sources) }

// CopyLen is the number of resources copy k has.
func (g *Generator) CopyLen(k int) int {
	if k == g.copies-1 {
		return g.lastLen
	}
	return len(g.sources[k%len(g.sources)].items)
}

// Shared returns the resources written once.
func (g *Generator) Shared() []GenResource { return g.shared }

// NewID returns the id of source resource srcID in copy k: a UUID derived
// from the seed, k and srcID.
func (g *Generator) NewID(k int, srcID string) string {
	h := sha1.New()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], g.seed)
	binary.BigEndian.PutUint64(b[8:], uint64(k))
	h.Write(b[:])
	h.Write([]byte(srcID))
	sum := h.Sum(nil)
	sum[6] = sum[6]&0x0f | 0x50
	sum[8] = sum[8]&0x3f | 0x80
	x := hex.EncodeToString(sum[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// mix is a per-copy pseudo-random number.
func (g *Generator) mix(k int, salt uint64) uint64 {
	x := g.seed ^ uint64(k)*0x9e3779b97f4a7c15 ^ salt*0xbf58476d1ce4e5b9
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Shift is the number of days copy k's dates are moved (0 to 5 years back).
func (g *Generator) Shift(k int) int { return -int(g.mix(k, 1) % 1826) }

// Family is the family name of copy k's patient.
func (g *Generator) Family(k int, orig string) string {
	return orig + familySuffixes[(k/len(g.sources))%len(familySuffixes)]
}

func (g *Generator) given(k int, orig string) string {
	if len(g.givens) == 0 || k < len(g.sources) {
		return orig
	}
	return g.givens[g.mix(k, 2)%uint64(len(g.givens))]
}

// ident makes an identifier value unique to copy k: its last seven digits
// become k.
func ident(k int, orig string) string {
	digits := []byte(fmt.Sprintf("%07d", k))
	b := []byte(orig)
	j := len(digits) - 1
	for i := len(b) - 1; i >= 0 && j >= 0; i-- {
		if b[i] >= '0' && b[i] <= '9' {
			b[i] = digits[j]
			j--
		}
	}
	return string(b)
}

func shiftDate(s string, days int) string {
	t, err := time.Parse("2006-01-02", s[:10])
	if err != nil {
		return s
	}
	return t.AddDate(0, 0, days).Format("2006-01-02") + s[10:]
}

// Copy returns the resources of copy k, in write order.
func (g *Generator) Copy(k int) []GenResource {
	s := g.source(k)
	ids := make([]string, len(s.items))
	for i := range s.items {
		ids[i] = g.NewID(k, s.items[i].srcID)
	}
	out := make([]GenResource, g.CopyLen(k))
	for i := range out {
		out[i] = g.render(k, i, ids)
	}
	return out
}

// Patient returns the Patient of copy k (its first resource).
func (g *Generator) Patient(k int) GenResource {
	s := g.source(k)
	ids := make([]string, len(s.items))
	for i := range s.items {
		ids[i] = g.NewID(k, s.items[i].srcID)
	}
	return g.render(k, 0, ids)
}

// render fills the template of item i of copy k; ids are the copy's ids.
func (g *Generator) render(k, i int, ids []string) GenResource {
	s := g.source(k)
	it := &s.items[i]
	shift := g.Shift(k)
	var b []byte
	for _, sg := range it.tmpl.segs {
		switch sg.kind {
		case 0:
			b = append(b, sg.lit...)
		case holeID:
			b = fhir.AppendString(b, ids[i])
		case holeRef:
			if sg.ref >= 0 {
				b = fhir.AppendString(b, s.items[sg.ref].typ+"/"+ids[sg.ref])
			} else {
				sh := &g.shared[-1-sg.ref]
				b = fhir.AppendString(b, sh.Type+"/"+sh.ID)
			}
		case holeUID:
			b = fhir.AppendString(b, ids[sg.ref])
		case holeDate:
			b = fhir.AppendString(b, shiftDate(sg.arg, shift))
		case holeFamily:
			b = fhir.AppendString(b, g.Family(k, sg.arg))
		case holeGiven:
			b = fhir.AppendString(b, g.given(k, sg.arg))
		case holeIdent:
			b = fhir.AppendString(b, ident(k, sg.arg))
		}
	}
	return GenResource{Type: it.typ, ID: ids[i], Body: b}
}

// PatientID is the id of copy k's Patient (always the copy's first resource).
func (g *Generator) PatientID(k int) string {
	s := g.sources[k%len(g.sources)]
	return g.NewID(k, s.items[0].srcID)
}

// CodeCounts returns, per Observation code (system|code), how many
// Observations of the whole data set have it.
func (g *Generator) CodeCounts() map[string]int {
	out := map[string]int{}
	for k := 0; k < g.copies; k++ {
		s := g.sources[k%len(g.sources)]
		if k < g.copies-1 {
			for c, n := range s.codes {
				out[c] += n
			}
			continue
		}
		for i := 0; i < g.lastLen; i++ {
			if s.items[i].code != "" {
				out[s.items[i].code]++
			}
		}
	}
	return out
}

// TypeCounts returns how many resources of each type the data set has.
func (g *Generator) TypeCounts() map[string]int {
	out := map[string]int{}
	for _, r := range g.shared {
		out[r.Type]++
	}
	for k := 0; k < g.copies; k++ {
		s := g.sources[k%len(g.sources)]
		for i := 0; i < g.CopyLen(k); i++ {
			out[s.items[i].typ]++
		}
	}
	return out
}

// source returns the source of copy k.
func (g *Generator) source(k int) *source { return g.sources[k%len(g.sources)] }

// obsItems returns the indexes of copy k's Observations.
func (g *Generator) obsItems(k int) []int {
	s := g.source(k)
	var out []int
	for i := 0; i < g.CopyLen(k); i++ {
		if s.items[i].typ == "Observation" && s.items[i].code != "" {
			out = append(out, i)
		}
	}
	return out
}

// carePlans returns how many CarePlans copy k has.
func (g *Generator) carePlans(k int) int {
	s := g.source(k)
	n := 0
	for i := 0; i < g.CopyLen(k); i++ {
		if s.items[i].typ == "CarePlan" {
			n++
		}
	}
	return n
}
