package embedded

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"

	"regie/fhir"
	"regie/fhir/search"
)

// Index tables. The values are stored in the entries blob; never renumber.
const (
	tabString byte = iota + 1
	tabToken
	tabText
	tabReference
	tabDate
	tabNumber
	tabQuantity
	tabURI
	tabOfType
	tabEnd
)

// table describes one typed index table: the layout of its values in a row
// (s: string, i: integer, f: float, consumed in order from row.s, row.i,
// row.f) and its statements. Arguments are (pid, values…, rid, grp) in the
// order the statement's columns are listed by args.
type table struct {
	name   string
	layout string
	insert string
	delete string
	args   func(r *row, rid int64) []any
}

var tables = [tabEnd]table{
	tabString: {
		name: "idx_string", layout: "ss",
		insert: `INSERT OR IGNORE INTO idx_string(pid, value, rid, grp, exact) VALUES (?, ?, ?, ?, ?)`,
		delete: `DELETE FROM idx_string WHERE pid = ? AND value = ? AND rid = ? AND grp = ? AND exact = ?`,
		args:   func(r *row, rid int64) []any { return []any{r.pid, r.s[0], rid, r.grp, r.s[1]} },
	},
	tabToken: {
		name: "idx_token", layout: "si",
		insert: `INSERT OR IGNORE INTO idx_token(pid, code, sid, rid, grp) VALUES (?, ?, ?, ?, ?)`,
		delete: `DELETE FROM idx_token WHERE pid = ? AND code = ? AND sid = ? AND rid = ? AND grp = ?`,
		args:   func(r *row, rid int64) []any { return []any{r.pid, r.s[0], r.i[0], rid, r.grp} },
	},
	tabText: {
		name: "idx_text", layout: "s",
		insert: `INSERT OR IGNORE INTO idx_text(pid, value, rid, grp) VALUES (?, ?, ?, ?)`,
		delete: `DELETE FROM idx_text WHERE pid = ? AND value = ? AND rid = ? AND grp = ?`,
		args:   func(r *row, rid int64) []any { return []any{r.pid, r.s[0], rid, r.grp} },
	},
	tabReference: {
		name: "idx_reference", layout: "isss",
		insert: `INSERT OR IGNORE INTO idx_reference(pid, rtid, ref, url, rid, grp, ver) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		delete: `DELETE FROM idx_reference WHERE pid = ? AND rtid = ? AND ref = ? AND url = ? AND rid = ? AND grp = ? AND ver = ?`,
		args:   func(r *row, rid int64) []any { return []any{r.pid, r.i[0], r.s[0], r.s[1], rid, r.grp, r.s[2]} },
	},
	tabDate: {
		name: "idx_date", layout: "ii",
		insert: `INSERT OR IGNORE INTO idx_date(pid, lo, hi, rid, grp) VALUES (?, ?, ?, ?, ?)`,
		delete: `DELETE FROM idx_date WHERE pid = ? AND lo = ? AND hi = ? AND rid = ? AND grp = ?`,
		args:   func(r *row, rid int64) []any { return []any{r.pid, r.i[0], r.i[1], rid, r.grp} },
	},
	tabNumber: {
		name: "idx_number", layout: "fff",
		insert: `INSERT OR IGNORE INTO idx_number(pid, lo, hi, rid, grp, num) VALUES (?, ?, ?, ?, ?, ?)`,
		delete: `DELETE FROM idx_number WHERE pid = ? AND lo = ? AND hi = ? AND rid = ? AND grp = ? AND num = ?`,
		args:   func(r *row, rid int64) []any { return []any{r.pid, r.f[0], r.f[1], rid, r.grp, r.f[2]} },
	},
	tabQuantity: {
		name: "idx_quantity", layout: "sifffsfff",
		insert: `INSERT OR IGNORE INTO idx_quantity(pid, code, lo, hi, rid, grp, sid, num, ccode, clo, chi, canon) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		delete: `DELETE FROM idx_quantity WHERE pid = ? AND code = ? AND lo = ? AND hi = ? AND rid = ? AND grp = ? AND sid = ? AND num = ?`,
		args: func(r *row, rid int64) []any {
			return []any{r.pid, r.s[0], r.f[0], r.f[1], rid, r.grp, r.i[0], r.f[2], r.s[1], r.f[3], r.f[4], r.f[5]}
		},
	},
	tabURI: {
		name: "idx_uri", layout: "s",
		insert: `INSERT OR IGNORE INTO idx_uri(pid, uri, rid, grp) VALUES (?, ?, ?, ?)`,
		delete: `DELETE FROM idx_uri WHERE pid = ? AND uri = ? AND rid = ? AND grp = ?`,
		args:   func(r *row, rid int64) []any { return []any{r.pid, r.s[0], rid, r.grp} },
	},
	tabOfType: {
		name: "idx_oftype", layout: "sis",
		insert: `INSERT OR IGNORE INTO idx_oftype(pid, tcode, tsid, code, rid, grp) VALUES (?, ?, ?, ?, ?, ?)`,
		delete: `DELETE FROM idx_oftype WHERE pid = ? AND tcode = ? AND tsid = ? AND code = ? AND rid = ? AND grp = ?`,
		args:   func(r *row, rid int64) []any { return []any{r.pid, r.s[0], r.i[0], r.s[1], rid, r.grp} },
	},
}

// deleteArgs are the arguments of table.delete: insert's, minus the
// non-key columns of idx_quantity.
func deleteArgs(r *row, rid int64) []any {
	a := tables[r.tab].args(r, rid)
	if r.tab == tabQuantity {
		a = a[:8]
	}
	return a
}

// row is one index row of a resource, without its rid.
type row struct {
	tab      byte
	pid, grp int64
	s        [3]string
	i        [2]int64
	f        [6]float64
}

// interner gives dictionary ids to resource types, (type, parameter) pairs
// and systems, creating them when needed.
type interner interface {
	typeID(name string) (int64, error)
	paramID(tid int64, code string) (int64, error)
	systemID(uri string) (int64, error)
}

// rowsOf converts the index entries of a resource of type tid into rows.
// It is part of the database format: the rows stored for a resource are
// derived again from its entry list when it is updated or deleted, so a
// change here needs a new listFormat (and `regie reindex`).
func rowsOf(in interner, tid int64, entries []search.Entry) ([]row, error) {
	rows := make([]row, 0, len(entries)+2)
	for i := range entries {
		e := &entries[i]
		var r row
		r.grp = int64(e.Group)
		switch e.Type {
		case fhir.ParamString:
			if e.Str == "" && e.Exact == "" {
				continue
			}
			r.tab, r.s[0] = tabString, e.Str
			if e.Exact != e.Str {
				r.s[1] = e.Exact
			}
		case fhir.ParamToken:
			if e.Text != "" {
				pid, err := in.paramID(tid, e.Param)
				if err != nil {
					return nil, err
				}
				rows = append(rows, row{tab: tabText, pid: pid, grp: r.grp, s: [3]string{e.Text}})
			}
			if e.TypeCode != "" {
				pid, err := in.paramID(tid, e.Param)
				if err != nil {
					return nil, err
				}
				tsid, err := in.systemID(e.TypeSystem)
				if err != nil {
					return nil, err
				}
				rows = append(rows, row{tab: tabOfType, pid: pid, grp: r.grp, s: [3]string{e.TypeCode, e.Code}, i: [2]int64{tsid}})
			}
			if e.Code == "" && e.System == "" {
				continue
			}
			sid, err := in.systemID(e.System)
			if err != nil {
				return nil, err
			}
			r.tab, r.s[0], r.i[0] = tabToken, e.Code, sid
		case fhir.ParamReference:
			if e.RefID == "" && e.URL == "" {
				if e.Code == "" {
					continue
				}
				// The reference's identifier, for :identifier.
				sid, err := in.systemID(e.System)
				if err != nil {
					return nil, err
				}
				r.tab, r.s[0], r.i[0] = tabToken, e.Code, sid
				break
			}
			var rtid int64
			if e.RefType != "" {
				t, err := in.typeID(e.RefType)
				if err != nil {
					return nil, err
				}
				rtid = t
			}
			r.tab, r.i[0], r.s = tabReference, rtid, [3]string{e.RefID, e.URL, e.RefVersion}
		case fhir.ParamDate:
			r.tab, r.i = tabDate, [2]int64{e.Lo, e.Hi}
		case fhir.ParamNumber:
			if math.IsNaN(e.LoF) || math.IsNaN(e.HiF) || math.IsNaN(e.Num) {
				continue
			}
			r.tab, r.f = tabNumber, [6]float64{e.LoF, e.HiF, e.Num}
		case fhir.ParamQuantity:
			if math.IsNaN(e.LoF) || math.IsNaN(e.HiF) || math.IsNaN(e.Num) || math.IsNaN(e.Canon) || math.IsNaN(e.CanonLo) || math.IsNaN(e.CanonHi) {
				continue
			}
			sid, err := in.systemID(e.UnitSystem)
			if err != nil {
				return nil, err
			}
			r.tab, r.i[0] = tabQuantity, sid
			r.s = [3]string{e.UnitCode, e.CanonUnit}
			r.f = [6]float64{e.LoF, e.HiF, e.Num, e.CanonLo, e.CanonHi, e.Canon}
		case fhir.ParamURI:
			v := e.Str
			if v == "" {
				v = e.Exact
			}
			if v == "" {
				continue
			}
			r.tab, r.s[0] = tabURI, v
		default:
			continue
		}
		pid, err := in.paramID(tid, e.Param)
		if err != nil {
			return nil, err
		}
		r.pid = pid
		rows = append(rows, r)
	}
	return rows, nil
}

// encodeRows returns the blob of rows (sorted and without duplicates), and
// the encoding of each row in the same order.
func encodeRows(rows []row) (blob []byte, encs []string) {
	encs = make([]string, len(rows))
	var buf []byte
	for i := range rows {
		buf = appendRow(buf[:0], &rows[i])
		encs[i] = string(buf)
	}
	slices.Sort(encs)
	encs = slices.Compact(encs)
	n := 0
	for _, e := range encs {
		n += len(e)
	}
	blob = make([]byte, 0, n)
	for _, e := range encs {
		blob = append(blob, e...)
	}
	return blob, encs
}

func appendRow(b []byte, r *row) []byte {
	b = append(b, r.tab)
	b = binary.AppendUvarint(b, uint64(r.pid))
	b = binary.AppendVarint(b, r.grp)
	var si, ii, fi int
	for _, c := range tables[r.tab].layout {
		switch c {
		case 's':
			b = binary.AppendUvarint(b, uint64(len(r.s[si])))
			b = append(b, r.s[si]...)
			si++
		case 'i':
			b = binary.AppendVarint(b, r.i[ii])
			ii++
		case 'f':
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.f[fi]))
			fi++
		}
	}
	return b
}

var errBadRows = errors.New("embedded: corrupt index entry list")

// splitRows splits a blob into the encodings of its rows.
func splitRows(blob []byte) ([]string, error) {
	var out []string
	for len(blob) > 0 {
		_, n, err := decodeRow(blob)
		if err != nil {
			return nil, err
		}
		out = append(out, string(blob[:n]))
		blob = blob[n:]
	}
	return out, nil
}

// decodeRow decodes the row at the start of b and returns its length.
func decodeRow(b []byte) (row, int, error) {
	var r row
	if len(b) == 0 || b[0] == 0 || b[0] >= tabEnd {
		return r, 0, errBadRows
	}
	r.tab = b[0]
	p := 1
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b[p:])
		if n <= 0 {
			return 0, false
		}
		p += n
		return v, true
	}
	pid, ok := uv()
	if !ok {
		return r, 0, errBadRows
	}
	r.pid = int64(pid)
	grp, n := binary.Varint(b[p:])
	if n <= 0 {
		return r, 0, errBadRows
	}
	p += n
	r.grp = grp
	var si, ii, fi int
	for _, c := range tables[r.tab].layout {
		switch c {
		case 's':
			l, ok := uv()
			if !ok || uint64(len(b)-p) < l {
				return r, 0, errBadRows
			}
			r.s[si] = string(b[p : p+int(l)])
			p += int(l)
			si++
		case 'i':
			v, n := binary.Varint(b[p:])
			if n <= 0 {
				return r, 0, errBadRows
			}
			p += n
			r.i[ii] = v
			ii++
		case 'f':
			if len(b)-p < 8 {
				return r, 0, errBadRows
			}
			r.f[fi] = math.Float64frombits(binary.LittleEndian.Uint64(b[p:]))
			p += 8
			fi++
		}
	}
	return r, p, nil
}
