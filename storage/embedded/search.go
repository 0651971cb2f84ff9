package embedded

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// Cursors. Unsorted searches page by rid: "s<rid>" continues after rid,
// "p<rid>" is the page before rid. Sorted searches carry the last (or
// first) resource's sort keys and rid: "o" (after) or "O" (before), then
// base64url of (hash of the sort keys, keys, rid).

func parseRidCursor(c string) (prev bool, rid int64, err error) {
	if len(c) < 2 || (c[0] != 's' && c[0] != 'p') {
		return false, 0, fmt.Errorf("embedded: search: %w", storage.ErrInvalidCursor)
	}
	n, err := strconv.ParseInt(c[1:], 10, 64)
	if err != nil || n < 0 {
		return false, 0, fmt.Errorf("embedded: search: %w", storage.ErrInvalidCursor)
	}
	return c[0] == 'p', n, nil
}

func sortHash(sorts []search.Sort) uint32 {
	h := fnv.New32a()
	for _, s := range sorts {
		fmt.Fprintf(h, "%s\x00%s\x00%v\x00", s.Param, s.Type, s.Desc)
	}
	return h.Sum32()
}

func sortCursor(before bool, sorts []search.Sort, keys []sortKey, rid int64) string {
	b := binary.BigEndian.AppendUint32(nil, sortHash(sorts))
	for _, k := range keys {
		if !k.ok {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(k.str)))
		b = append(b, k.str...)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(k.num))
	}
	b = binary.AppendVarint(b, rid)
	p := "o"
	if before {
		p = "O"
	}
	return p + base64.RawURLEncoding.EncodeToString(b)
}

func parseSortCursor(c string, sorts []search.Sort) (before bool, keys []sortKey, rid int64, err error) {
	bad := fmt.Errorf("embedded: search: %w", storage.ErrInvalidCursor)
	if len(c) < 2 || (c[0] != 'o' && c[0] != 'O') {
		return false, nil, 0, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(c[1:])
	if err != nil || len(b) < 4 || binary.BigEndian.Uint32(b) != sortHash(sorts) {
		return false, nil, 0, bad
	}
	b = b[4:]
	for range sorts {
		if len(b) == 0 {
			return false, nil, 0, bad
		}
		flag := b[0]
		b = b[1:]
		if flag == 0 {
			keys = append(keys, sortKey{})
			continue
		}
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l+8 {
			return false, nil, 0, bad
		}
		s := string(b[n : n+int(l)])
		b = b[n+int(l):]
		keys = append(keys, sortKey{str: s, num: math.Float64frombits(binary.BigEndian.Uint64(b)), ok: true})
		b = b[8:]
	}
	rid, n := binary.Varint(b)
	if n <= 0 || n != len(b) {
		return false, nil, 0, bad
	}
	return c[0] == 'O', keys, rid, nil
}

// search runs q on v. On the read pool (s set) it runs in one read
// transaction, so that every statement of the search sees the same
// snapshot, with the store's statement cache.
func (v *view) search(ctx context.Context, q *search.Query, s *Store) (*storage.Page, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkSorts(q.Sort); err != nil {
		return nil, err
	}
	if err := checkTree(q.Where); err != nil {
		return nil, err
	}
	if err := checkTree(q.Constraint); err != nil {
		return nil, err
	}
	if s != nil {
		vv, end, err := s.readTx(ctx, v)
		if err != nil {
			return nil, err
		}
		defer end()
		v = vv
	}
	ex := newExec(ctx, v)
	ex.constrain(q.Constraint)
	sc := ex.scopeOf(q.Types)
	conj := flatten(flatten(nil, q.Where), q.Constraint)
	p, err := ex.plan(sc, conj)
	if err != nil {
		return nil, err
	}
	page := &storage.Page{Total: -1}
	countOnly := q.Summary == search.SummaryCount
	if countOnly {
		if q.Total != search.TotalNone {
			if page.Total, err = ex.count(p); err != nil {
				return nil, err
			}
		}
		return page, nil
	}
	includes := len(q.Include) > 0 || len(q.RevInclude) > 0
	var res []*cand
	if len(q.Sort) > 0 {
		res, err = ex.sortedPage(p, q, page, includes)
	} else {
		res, err = ex.page(p, q, page, includes)
	}
	if err != nil {
		return nil, err
	}
	var inc []*cand
	if includes {
		if inc, err = ex.includes(q, res); err != nil {
			return nil, err
		}
	}
	if page.Resources, page.Entries, err = ex.bodies(res); err != nil {
		return nil, err
	}
	if page.Included, page.IncludedEntries, err = ex.bodies(inc); err != nil {
		return nil, err
	}
	return page, nil
}

// page fills page with the resources of an unsorted search at its
// cursor, in rid order, and counts when asked.
func (ex *exec) page(p *plan, q *search.Query, page *storage.Page, entries bool) ([]*cand, error) {
	count := pageSize(q.Count)
	prev, from := false, int64(0)
	if q.Cursor != "" {
		var err error
		if prev, from, err = parseRidCursor(q.Cursor); err != nil {
			return nil, err
		}
	}
	collect := func(from int64, desc bool) ([]*cand, error) {
		var out []*cand
		err := ex.scan(p, from, desc, count+1, entries, func(c *cand) bool {
			out = append(out, c.keep())
			return len(out) <= count
		})
		return out, err
	}
	var res []*cand
	var err error
	counting := q.Total == search.TotalAccurate || q.Total == search.TotalEstimate
	if counting && !prev && from == 0 && len(p.filters) > 0 {
		// The first page of a filtered search: count in the same pass.
		n := 0
		err := ex.scan(p, 0, false, 4096, entries, func(c *cand) bool {
			if n <= count {
				res = append(res, c.keep())
			}
			n++
			return true
		})
		if err != nil {
			return nil, err
		}
		if len(res) > count {
			res = res[:count]
			page.Next = "s" + strconv.FormatInt(res[count-1].rid, 10)
		}
		page.Total = n
		return res, nil
	}
	if prev {
		if res, err = collect(from, true); err != nil {
			return nil, err
		}
		if len(res) > count {
			res = res[:count]
			slices.Reverse(res)
			page.Prev = "p" + strconv.FormatInt(res[0].rid, 10)
			page.Next = "s" + strconv.FormatInt(res[len(res)-1].rid, 10)
		} else {
			// The start is reached: the previous page is the first page.
			prev, from = false, 0
		}
	}
	if !prev {
		if res, err = collect(from, false); err != nil {
			return nil, err
		}
		if len(res) > count {
			res = res[:count]
			page.Next = "s" + strconv.FormatInt(res[count-1].rid, 10)
		}
		if from > 0 && len(res) > 0 {
			page.Prev = "p" + strconv.FormatInt(res[0].rid, 10)
		}
	}
	switch {
	case counting:
		if page.Total, err = ex.count(p); err != nil {
			return nil, err
		}
	case q.Total == "" && from == 0 && !prev && page.Next == "":
		page.Total = len(res) // the whole result is this one page
	}
	return res, nil
}

// sortedPage fills page with the resources of a sorted search at its
// cursor: every match is read and sorted (docs/storage.md).
func (ex *exec) sortedPage(p *plan, q *search.Query, page *storage.Page, entries bool) ([]*cand, error) {
	count := pageSize(q.Count)
	all, err := ex.all(p, true)
	if err != nil {
		return nil, err
	}
	for _, c := range all {
		c.sortKeys = c.keys(q.Sort)
		if c.err != nil {
			return nil, c.err
		}
	}
	slices.SortFunc(all, func(a, b *cand) int { return compareKeys(q.Sort, a.sortKeys, a.rid, b.sortKeys, b.rid) })
	start := 0
	if q.Cursor != "" {
		before, keys, rid, err := parseSortCursor(q.Cursor, q.Sort)
		if err != nil {
			return nil, err
		}
		// i is the first resource after the cursor's position.
		i, _ := slices.BinarySearchFunc(all, 0, func(c *cand, _ int) int {
			if compareKeys(q.Sort, c.sortKeys, c.rid, keys, rid) <= 0 {
				return -1
			}
			return 1
		})
		start = i
		if before {
			j, _ := slices.BinarySearchFunc(all, 0, func(c *cand, _ int) int {
				if compareKeys(q.Sort, c.sortKeys, c.rid, keys, rid) < 0 {
					return -1
				}
				return 1
			})
			start = max(0, j-count)
		}
	}
	end := min(len(all), start+count)
	res := all[start:end]
	if end < len(all) && len(res) > 0 {
		l := res[len(res)-1]
		page.Next = sortCursor(false, q.Sort, l.sortKeys, l.rid)
	}
	if start > 0 && len(res) > 0 {
		page.Prev = sortCursor(true, q.Sort, res[0].sortKeys, res[0].rid)
	}
	if q.Total != search.TotalNone {
		page.Total = len(all)
	}
	return res, nil
}

// bodies reads the stored bodies of cs.
func (ex *exec) bodies(cs []*cand) ([]*fhir.Resource, [][]search.Entry, error) {
	if len(cs) == 0 {
		return nil, nil, nil
	}
	out := make([]*fhir.Resource, len(cs))
	ents := make([][]search.Entry, len(cs))
	byVid := make(map[int64]int, len(cs))
	vids := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = &fhir.Resource{Type: c.typeName(), ID: c.id, Version: c.version, LastUpdated: timeOf(c.vid)}
		byVid[c.vid] = i
		vids[i] = c.vid
	}
	list, _ := json.Marshal(vids)
	// Search answers current versions, whose entries are those stored
	// for the resource.
	rows, err := ex.v.q.QueryContext(ex.ctx, `SELECT v.vid, v.body, e.list, e.rows FROM versions v LEFT JOIN entries e ON e.rid = v.rid
		WHERE v.vid IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, nil, ex.err(err)
	}
	defer rows.Close()
	for rows.Next() {
		var vid int64
		var body, elist, erows []byte
		if err := rows.Scan(&vid, &body, &elist, &erows); err != nil {
			return nil, nil, err
		}
		i, ok := byVid[vid]
		if !ok {
			continue
		}
		out[i].Body = body
		if elist != nil || len(erows) > 0 {
			if ents[i], err = ex.v.entriesOf(elist, erows, nil); err != nil {
				return nil, nil, fmt.Errorf("embedded: search: %s: %w", out[i].Type, err)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, ex.err(err)
	}
	for _, r := range out {
		if r.Body == nil {
			return nil, nil, fmt.Errorf("embedded: search: %s has no body", r.Type)
		}
	}
	return out, ents, nil
}
