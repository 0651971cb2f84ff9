package embedded

import (
	"encoding/binary"
	"errors"
	"math"
	"unsafe"

	"regie/fhir"
	"regie/fhir/search"
)

// The entry list of a resource (column entries.list) keeps its index
// entries exactly as the indexer produced them, so that searches can test
// the conditions the index tables cannot answer per resource (ranges,
// prefixes, :missing, multi-value constraints), _sort can read a resource's
// values and ReadEntries can hand them back. The row list (entries.rows) is
// kept beside it because it records exactly which index rows were written.
//
// Encoding: a format byte (listFormat), then per entry:
//
//	pid uvarint, type byte, group varint, field mask uvarint,
//	then every field whose bit is set, in bit order.
//
// A string is written once per list: a uvarint 2×length, then its bytes;
// later occurrences are a uvarint 2×i+1 (the i-th string of the list). A
// float likewise: 0 and 8 bytes little-endian (bit-exact, so NaN and -0
// survive), later a uvarint i+1. Systems, unit systems and identifier type
// systems are interned system ids, RefType a type id; Lo/Hi are varints.
const listFormat byte = 2

// listFormat1 is the first format: every string and float written in full
// (no back references). It is still read.
const listFormat1 byte = 1

// Field bits of an encoded entry.
const (
	fStr = 1 << iota
	fExact
	fExactIsStr // Exact equals Str (no bytes follow)
	fSystem
	fCode
	fText
	fTypeSystem
	fTypeCode
	fRefType
	fRefID
	fRefVersion
	fURL
	fLo
	fHi
	fLoF
	fHiF
	fNum
	fUnitSystem
	fUnitCode
	fCanonUnit
	fCanonLo
	fCanonHi
	fCanon
	fTypeName // a parameter type not in paramTypes: its name follows
)

var paramTypes = []fhir.ParamType{"", fhir.ParamNumber, fhir.ParamDate, fhir.ParamString, fhir.ParamToken,
	fhir.ParamReference, fhir.ParamComposite, fhir.ParamQuantity, fhir.ParamURI, fhir.ParamSpecial}

func paramTypeCode(t fhir.ParamType) (byte, bool) {
	for i, p := range paramTypes {
		if p == t {
			return byte(i), true
		}
	}
	return 0, false
}

// encodeList encodes the entries of a resource of type tid, interning
// parameters, systems and types through in.
func encodeList(in interner, tid int64, entries []search.Entry) ([]byte, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	b := make([]byte, 0, 1+24*len(entries))
	b = append(b, listFormat)
	// Strings and floats repeat across the entries of one resource (a code
	// in code, combo-code and composites; a value in value-quantity and its
	// composites): the second time, a back reference is written.
	strs := map[string]int{}
	str := func(s string) {
		if i, ok := strs[s]; ok {
			b = binary.AppendUvarint(b, uint64(i)<<1|1)
			return
		}
		strs[s] = len(strs)
		b = binary.AppendUvarint(b, uint64(len(s))<<1)
		b = append(b, s...)
	}
	flts := map[uint64]int{}
	flt := func(f float64) {
		bits := math.Float64bits(f)
		if i, ok := flts[bits]; ok {
			b = binary.AppendUvarint(b, uint64(i)+1)
			return
		}
		flts[bits] = len(flts)
		b = append(b, 0)
		b = binary.LittleEndian.AppendUint64(b, bits)
	}
	for i := range entries {
		e := &entries[i]
		pid, err := in.paramID(tid, e.Param)
		if err != nil {
			return nil, err
		}
		var mask uint64
		set := func(bit uint64, ok bool) {
			if ok {
				mask |= bit
			}
		}
		tc, known := paramTypeCode(e.Type)
		set(fTypeName, !known)
		set(fStr, e.Str != "")
		set(fExactIsStr, e.Exact != "" && e.Exact == e.Str)
		set(fExact, e.Exact != "" && e.Exact != e.Str)
		set(fSystem, e.System != "")
		set(fCode, e.Code != "")
		set(fText, e.Text != "")
		set(fTypeSystem, e.TypeSystem != "")
		set(fTypeCode, e.TypeCode != "")
		set(fRefType, e.RefType != "")
		set(fRefID, e.RefID != "")
		set(fRefVersion, e.RefVersion != "")
		set(fURL, e.URL != "")
		set(fLo, e.Lo != 0)
		set(fHi, e.Hi != 0)
		set(fLoF, math.Float64bits(e.LoF) != 0)
		set(fHiF, math.Float64bits(e.HiF) != 0)
		set(fNum, math.Float64bits(e.Num) != 0)
		set(fUnitSystem, e.UnitSystem != "")
		set(fUnitCode, e.UnitCode != "")
		set(fCanonUnit, e.CanonUnit != "")
		set(fCanonLo, math.Float64bits(e.CanonLo) != 0)
		set(fCanonHi, math.Float64bits(e.CanonHi) != 0)
		set(fCanon, math.Float64bits(e.Canon) != 0)

		b = binary.AppendUvarint(b, uint64(pid))
		b = append(b, tc)
		b = binary.AppendVarint(b, int64(e.Group))
		b = binary.AppendUvarint(b, mask)
		sys := func(bit uint64, uri string) error {
			if mask&bit == 0 {
				return nil
			}
			sid, err := in.systemID(uri)
			if err != nil {
				return err
			}
			b = binary.AppendUvarint(b, uint64(sid))
			return nil
		}
		if mask&fStr != 0 {
			str(e.Str)
		}
		if mask&fExact != 0 {
			str(e.Exact)
		}
		if err := sys(fSystem, e.System); err != nil {
			return nil, err
		}
		if mask&fCode != 0 {
			str(e.Code)
		}
		if mask&fText != 0 {
			str(e.Text)
		}
		if err := sys(fTypeSystem, e.TypeSystem); err != nil {
			return nil, err
		}
		if mask&fTypeCode != 0 {
			str(e.TypeCode)
		}
		if mask&fRefType != 0 {
			t, err := in.typeID(e.RefType)
			if err != nil {
				return nil, err
			}
			b = binary.AppendUvarint(b, uint64(t))
		}
		if mask&fRefID != 0 {
			str(e.RefID)
		}
		if mask&fRefVersion != 0 {
			str(e.RefVersion)
		}
		if mask&fURL != 0 {
			str(e.URL)
		}
		if mask&fLo != 0 {
			b = binary.AppendVarint(b, e.Lo)
		}
		if mask&fHi != 0 {
			b = binary.AppendVarint(b, e.Hi)
		}
		if mask&fLoF != 0 {
			flt(e.LoF)
		}
		if mask&fHiF != 0 {
			flt(e.HiF)
		}
		if mask&fNum != 0 {
			flt(e.Num)
		}
		if err := sys(fUnitSystem, e.UnitSystem); err != nil {
			return nil, err
		}
		if mask&fUnitCode != 0 {
			str(e.UnitCode)
		}
		if mask&fCanonUnit != 0 {
			str(e.CanonUnit)
		}
		if mask&fCanonLo != 0 {
			flt(e.CanonLo)
		}
		if mask&fCanonHi != 0 {
			flt(e.CanonHi)
		}
		if mask&fCanon != 0 {
			flt(e.Canon)
		}
		if mask&fTypeName != 0 {
			str(string(e.Type))
		}
	}
	return b, nil
}

// names resolves dictionary ids when decoding.
type names interface {
	paramCode(pid int64) (string, bool)
	systemURI(sid int64) (string, bool)
	typeNameOf(tid int64) string
}

var errBadList = errors.New("embedded: corrupt index entry list")

// decodeList decodes an entry list into dst (reusing its capacity). The
// strings of the entries share b's memory, so b must never be modified
// afterwards (lists come from a database read and are not).
func decodeList(nm names, b []byte, dst []search.Entry) ([]search.Entry, error) {
	dst = dst[:0]
	if len(b) == 0 {
		return dst, nil
	}
	if cap(dst) == 0 {
		dst = make([]search.Entry, 0, len(b)/20+1)
	}
	if b[0] != listFormat && b[0] != listFormat1 {
		return nil, errBadList
	}
	refs := b[0] == listFormat
	p := 1
	bad := false
	uv := func() uint64 {
		v, n := binary.Uvarint(b[p:])
		if n <= 0 {
			bad = true
			return 0
		}
		p += n
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(b[p:])
		if n <= 0 {
			bad = true
			return 0
		}
		p += n
		return v
	}
	var strs []string
	str := func() string {
		x := uv()
		if bad {
			return ""
		}
		if !refs {
			x <<= 1
		}
		if x&1 == 1 {
			if x>>1 >= uint64(len(strs)) {
				bad = true
				return ""
			}
			return strs[x>>1]
		}
		l := x >> 1
		if uint64(len(b)-p) < l || l == 0 { // empty strings are not stored
			bad = true
			return ""
		}
		s := unsafe.String(&b[p], int(l))
		p += int(l)
		strs = append(strs, s)
		return s
	}
	var flts []float64
	flt := func() float64 {
		var x uint64
		if refs {
			x = uv()
		}
		if bad {
			return 0
		}
		if x > 0 {
			if x-1 >= uint64(len(flts)) {
				bad = true
				return 0
			}
			return flts[x-1]
		}
		if len(b)-p < 8 {
			bad = true
			return 0
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(b[p:]))
		p += 8
		flts = append(flts, f)
		return f
	}
	sys := func() string {
		sid := int64(uv())
		u, ok := nm.systemURI(sid)
		if !ok {
			bad = true
		}
		return u
	}
	for p < len(b) && !bad {
		var e search.Entry
		pid := int64(uv())
		if bad || p >= len(b) {
			return nil, errBadList
		}
		code, ok := nm.paramCode(pid)
		if !ok {
			return nil, errBadList
		}
		e.Param = code
		tc := b[p]
		p++
		if int(tc) < len(paramTypes) {
			e.Type = paramTypes[tc]
		}
		e.Group = int(sv())
		mask := uv()
		if mask&fStr != 0 {
			e.Str = str()
		}
		if mask&fExact != 0 {
			e.Exact = str()
		}
		if mask&fExactIsStr != 0 {
			e.Exact = e.Str
		}
		if mask&fSystem != 0 {
			e.System = sys()
		}
		if mask&fCode != 0 {
			e.Code = str()
		}
		if mask&fText != 0 {
			e.Text = str()
		}
		if mask&fTypeSystem != 0 {
			e.TypeSystem = sys()
		}
		if mask&fTypeCode != 0 {
			e.TypeCode = str()
		}
		if mask&fRefType != 0 {
			e.RefType = nm.typeNameOf(int64(uv()))
			if e.RefType == "" {
				bad = true
			}
		}
		if mask&fRefID != 0 {
			e.RefID = str()
		}
		if mask&fRefVersion != 0 {
			e.RefVersion = str()
		}
		if mask&fURL != 0 {
			e.URL = str()
		}
		if mask&fLo != 0 {
			e.Lo = sv()
		}
		if mask&fHi != 0 {
			e.Hi = sv()
		}
		if mask&fLoF != 0 {
			e.LoF = flt()
		}
		if mask&fHiF != 0 {
			e.HiF = flt()
		}
		if mask&fNum != 0 {
			e.Num = flt()
		}
		if mask&fUnitSystem != 0 {
			e.UnitSystem = sys()
		}
		if mask&fUnitCode != 0 {
			e.UnitCode = str()
		}
		if mask&fCanonUnit != 0 {
			e.CanonUnit = str()
		}
		if mask&fCanonLo != 0 {
			e.CanonLo = flt()
		}
		if mask&fCanonHi != 0 {
			e.CanonHi = flt()
		}
		if mask&fCanon != 0 {
			e.Canon = flt()
		}
		if mask&fTypeName != 0 {
			e.Type = fhir.ParamType(str())
		}
		if mask >= fTypeName<<1 {
			bad = true
		}
		dst = append(dst, e)
	}
	if bad {
		return nil, errBadList
	}
	return dst, nil
}

// entriesFromRows rebuilds entries from an index row list, for resources
// written before entry lists were kept (schema 1). It is lossy where rows
// are: a token's display text and identifier type become separate entries,
// and an entry that produced no row is absent. `regie reindex` replaces
// such lists.
func entriesFromRows(nm names, blob []byte) ([]search.Entry, error) {
	encs, err := splitRows(blob)
	if err != nil {
		return nil, err
	}
	var out []search.Entry
	for _, enc := range encs {
		r, _, err := decodeRow([]byte(enc))
		if err != nil {
			return nil, err
		}
		code, ok := nm.paramCode(r.pid)
		if !ok {
			return nil, errBadRows
		}
		e := search.Entry{Param: code, Group: int(r.grp)}
		switch r.tab {
		case tabString:
			e.Type, e.Str, e.Exact = fhir.ParamString, r.s[0], r.s[1]
			if e.Exact == "" {
				e.Exact = e.Str
			}
		case tabToken:
			e.Type, e.Code = fhir.ParamToken, r.s[0]
			e.System, _ = nm.systemURI(r.i[0])
		case tabText:
			e.Type, e.Text = fhir.ParamToken, r.s[0]
		case tabOfType:
			// The identifier's own system is not in the row: a system no
			// search value carries keeps it from matching plain tokens.
			e.Type, e.TypeCode, e.Code, e.System = fhir.ParamToken, r.s[0], r.s[1], "\x00"
			e.TypeSystem, _ = nm.systemURI(r.i[0])
		case tabReference:
			e.Type, e.RefID, e.URL, e.RefVersion = fhir.ParamReference, r.s[0], r.s[1], r.s[2]
			if r.i[0] != 0 {
				e.RefType = nm.typeNameOf(r.i[0])
			}
		case tabDate:
			e.Type, e.Lo, e.Hi = fhir.ParamDate, r.i[0], r.i[1]
		case tabNumber:
			e.Type, e.LoF, e.HiF, e.Num = fhir.ParamNumber, r.f[0], r.f[1], r.f[2]
		case tabQuantity:
			e.Type, e.UnitCode, e.CanonUnit = fhir.ParamQuantity, r.s[0], r.s[1]
			e.UnitSystem, _ = nm.systemURI(r.i[0])
			e.LoF, e.HiF, e.Num, e.CanonLo, e.CanonHi, e.Canon = r.f[0], r.f[1], r.f[2], r.f[3], r.f[4], r.f[5]
		case tabURI:
			e.Type, e.Str, e.Exact = fhir.ParamURI, r.s[0], r.s[0]
		}
		out = append(out, e)
	}
	return out, nil
}
