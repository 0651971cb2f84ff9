package embedded

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

var errNoRows = sql.ErrNoRows

// view is what the read code needs from either the read pool or the
// writer's transaction.
type view struct {
	st       *stmts
	lookup   func(name string) (int64, bool)
	typeName func(id int64) string
	// paramID and systemID look up dictionary ids without creating them.
	paramID  func(tid int64, code string) (int64, bool)
	systemID func(uri string) (int64, bool)
	// Reverse lookups and listings.
	paramKey     func(pid int64) (paramKey, bool)
	systemURIOf  func(sid int64) (string, bool)
	paramsByCode func(code string) []paramRef
	typeIDs      func() []int64
	// q runs the view's queries: a read transaction of the pool (one
	// snapshot for a whole search) or the writer's connection.
	q queryer
}

// queryer is a read transaction of the pool or the writer's connection.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) poolView() *view {
	return &view{
		st:           s.rst,
		lookup:       s.dict.typeID,
		typeName:     s.dict.typeName,
		paramID:      s.dict.paramID,
		systemID:     s.dict.systemID,
		paramKey:     s.dict.paramKey,
		systemURIOf:  s.dict.systemURI,
		paramsByCode: s.dict.paramsByCode,
		typeIDs:      s.dict.typeIDs,
		q:            s.rdb,
	}
}

func (w *wtx) view() *view {
	return &view{st: w.st, lookup: w.lookupType, typeName: w.typeName, paramID: w.lookupParam, systemID: w.lookupSystem,
		paramKey: w.paramKey, systemURIOf: w.systemURI, paramsByCode: w.paramsByCode, typeIDs: w.typeIDs, q: w.s.wconn}
}

// paramCode implements names.
func (v *view) paramCode(pid int64) (string, bool) {
	k, ok := v.paramKey(pid)
	return k.code, ok
}

// systemURI implements names.
func (v *view) systemURI(sid int64) (string, bool) { return v.systemURIOf(sid) }

func notFound(typ string) error {
	return fmt.Errorf("embedded: %s: %w", typ, storage.ErrNotFound)
}

func (v *view) read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tid, ok := v.lookup(typ)
	if !ok {
		return nil, notFound(typ)
	}
	var rid, vid int64
	r := &fhir.Resource{Type: typ, ID: id}
	err := v.st.readCur.QueryRowContext(ctx, tid, id).Scan(&rid, &r.Version, &vid, &r.Body)
	if errors.Is(err, errNoRows) {
		return nil, notFound(typ)
	}
	if err != nil {
		return nil, ctxOr(ctx, err)
	}
	r.LastUpdated = time.UnixMicro(vid).UTC()
	if r.Body == nil {
		r.Deleted = true
		return r, fmt.Errorf("embedded: %s: %w", typ, storage.ErrDeleted)
	}
	return r, nil
}

func (v *view) vread(ctx context.Context, typ, id string, version int64) (*fhir.Resource, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tid, ok := v.lookup(typ)
	if !ok {
		return nil, notFound(typ)
	}
	var vid int64
	r := &fhir.Resource{Type: typ, ID: id, Version: version}
	err := v.st.readVer.QueryRowContext(ctx, tid, id, version).Scan(&vid, &r.Body)
	if errors.Is(err, errNoRows) {
		return nil, notFound(typ)
	}
	if err != nil {
		return nil, ctxOr(ctx, err)
	}
	r.LastUpdated = time.UnixMicro(vid).UTC()
	if r.Body == nil {
		r.Deleted = true
		return r, fmt.Errorf("embedded: %s: %w", typ, storage.ErrDeleted)
	}
	return r, nil
}

// ctxOr returns ctx's error if it is done (the driver reports an
// interrupted statement in its own words), else err.
func ctxOr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// History cursors are "h<dir><vid>": dir '<' continues with older versions
// (vid < n), '>' goes back to newer ones (vid > n).
func parseHistoryCursor(c string) (older bool, vid int64, err error) {
	if len(c) < 3 || c[0] != 'h' || (c[1] != '<' && c[1] != '>') {
		return false, 0, fmt.Errorf("embedded: history: %w", storage.ErrInvalidCursor)
	}
	vid, err = strconv.ParseInt(c[2:], 10, 64)
	if err != nil || vid <= 0 {
		return false, 0, fmt.Errorf("embedded: history: %w", storage.ErrInvalidCursor)
	}
	return c[1] == '<', vid, nil
}

func pageSize(n int) int {
	switch {
	case n <= 0:
		return storage.DefaultCount
	case n > storage.MaxCount:
		return storage.MaxCount
	}
	return n
}

// historyListMax is the most resources a constraint may select for
// constrained history to list them (rid IN list) rather than test each
// version's resource.
const historyListMax = 4000

// history returns a page of versions, newest first. With a constraint it
// keeps the versions of resources whose current version matches it (a
// deleted resource has no current entries and matches no constraint). The
// whole page is read on one snapshot (s: the store, on the read pool).
func (v *view) history(ctx context.Context, q *storage.HistoryQuery, s *Store) (*storage.Page, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if q.ID != "" && q.Type == "" {
		return nil, fmt.Errorf("embedded: history of an id without a type: %w", storage.ErrUnsupported)
	}
	if err := checkTree(q.Constraint); err != nil {
		return nil, err
	}
	if s != nil && q.Constraint != nil {
		vv, end, err := s.readTx(ctx, v)
		if err != nil {
			return nil, err
		}
		defer end()
		v = vv
	}
	count := pageSize(q.Count)
	older, cur := true, int64(0)
	if q.Cursor != "" {
		var err error
		if older, cur, err = parseHistoryCursor(q.Cursor); err != nil {
			return nil, err
		}
	}
	page := &storage.Page{Total: -1}
	var where []string
	var args []any
	sc := scope{all: true}
	if q.Type != "" {
		tid, ok := v.lookup(q.Type)
		if !ok {
			if q.ID != "" {
				return nil, notFound(q.Type)
			}
			return page, nil
		}
		sc = scope{tids: []int64{tid}}
		if q.ID != "" {
			var rid int64
			err := v.q.QueryRowContext(ctx, "SELECT rid FROM resources WHERE tid = ? AND id = ?", tid, q.ID).Scan(&rid)
			if errors.Is(err, errNoRows) {
				return nil, notFound(q.Type)
			}
			if err != nil {
				return nil, ctxOr(ctx, err)
			}
			where = append(where, "v.rid = ?")
			args = append(args, rid)
		} else {
			where = append(where, "v.tid = ?")
			args = append(args, tid)
		}
	}
	if !q.Since.IsZero() {
		where = append(where, "v.vid >= ?")
		args = append(args, ceilMicro(q.Since))
	}
	if !q.At.IsZero() {
		at := q.At.UnixMicro()
		where = append(where, "v.vid <= ? AND v.vid = (SELECT max(vid) FROM versions x WHERE x.rid = v.rid AND x.vid <= ?)")
		args = append(args, at, at)
	}
	// keep decides, per resource, whether its versions are shown.
	var keep func(rids []int64) (map[int64]bool, error)
	if q.Constraint != nil {
		ex := newExec(ctx, v)
		conj := flatten(nil, q.Constraint)
		p, err := ex.plan(sc, conj)
		if err != nil {
			return nil, err
		}
		if p.none {
			return page, nil
		}
		n, err := ex.estimate(p.drv, historyListMax)
		if err != nil {
			return nil, err
		}
		if n < historyListMax {
			// Few resources can match: list them.
			var rids []int64
			if err := ex.scan(p, 0, false, n, false, func(c *cand) bool { rids = append(rids, c.rid); return true }); err != nil {
				return nil, err
			}
			if len(rids) == 0 {
				return page, nil
			}
			b, _ := json.Marshal(rids)
			where = append(where, "v.rid IN (SELECT value FROM json_each(?))")
			args = append(args, string(b))
		} else {
			decided := map[int64]bool{}
			keep = func(rids []int64) (map[int64]bool, error) {
				var ask []int64
				for _, rid := range rids {
					if _, ok := decided[rid]; !ok {
						ask = append(ask, rid)
						decided[rid] = false
					}
				}
				if len(ask) > 0 {
					b, _ := json.Marshal(ask)
					cs, err := ex.fetch([]arm{{raw: "SELECT rid FROM resources WHERE rid IN (SELECT value FROM json_each(?)) AND deleted = 0",
						args: []any{string(b)}, unique: true}}, conj)
					if err != nil {
						return nil, err
					}
					for _, c := range cs {
						decided[c.rid] = true
					}
				}
				return decided, nil
			}
		}
	}
	base := "SELECT v.vid, v.version, v.body, r.tid, r.id, v.rid FROM versions v JOIN resources r ON r.rid = v.rid WHERE 1"
	for _, w := range where {
		base += " AND " + w
	}
	// run reads versions beyond bound (older: vid < bound, else vid >
	// bound; 0 for no bound), in vid order, until limit are kept.
	run := func(older bool, bound int64, limit int) ([]*fhir.Resource, []int64, error) {
		var out []*fhir.Resource
		var vids []int64
		batch := limit
		if keep != nil {
			batch = max(limit*2, 64)
		}
		for {
			cond, order := "", " ORDER BY v.vid DESC"
			var cargs []any
			switch {
			case older && bound > 0:
				cond, cargs = " AND v.vid < ?", []any{bound}
			case !older:
				cond, cargs, order = " AND v.vid > ?", []any{bound}, " ORDER BY v.vid ASC"
			}
			rows, err := v.q.QueryContext(ctx, base+cond+order+" LIMIT ?", append(append(append([]any{}, args...), cargs...), batch)...)
			if err != nil {
				return nil, nil, ctxOr(ctx, err)
			}
			var got []*fhir.Resource
			var gotVids, gotRids []int64
			for rows.Next() {
				var vid, tid, rid int64
				r := &fhir.Resource{}
				if err := rows.Scan(&vid, &r.Version, &r.Body, &tid, &r.ID, &rid); err != nil {
					rows.Close()
					return nil, nil, err
				}
				r.Type = v.typeName(tid)
				r.LastUpdated = timeOf(vid)
				r.Deleted = r.Body == nil
				got, gotVids, gotRids = append(got, r), append(gotVids, vid), append(gotRids, rid)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, nil, ctxOr(ctx, err)
			}
			var ok map[int64]bool
			if keep != nil {
				if ok, err = keep(gotRids); err != nil {
					return nil, nil, err
				}
			}
			for i, r := range got {
				if ok == nil || ok[gotRids[i]] {
					out, vids = append(out, r), append(vids, gotVids[i])
					if len(out) == limit {
						return out, vids, nil
					}
				}
			}
			if len(got) < batch {
				return out, vids, nil
			}
			bound = gotVids[len(gotVids)-1]
			batch = min(batch*4, 4096)
		}
	}
	var res []*fhir.Resource
	var vids []int64
	var err error
	if older {
		res, vids, err = run(true, cur, count+1)
		if err != nil {
			return nil, err
		}
		if len(res) > count {
			res, vids = res[:count], vids[:count]
			page.Next = "h<" + strconv.FormatInt(vids[count-1], 10)
		}
		if cur > 0 && len(vids) > 0 {
			page.Prev = "h>" + strconv.FormatInt(vids[0], 10)
		}
	} else {
		res, vids, err = run(false, cur, count+1)
		if err != nil {
			return nil, err
		}
		more := len(res) > count
		if more {
			res, vids = res[:count], vids[:count]
		}
		slices.Reverse(res)
		slices.Reverse(vids)
		if len(vids) > 0 {
			page.Next = "h<" + strconv.FormatInt(vids[len(vids)-1], 10)
			if more {
				page.Prev = "h>" + strconv.FormatInt(vids[0], 10)
			}
		}
	}
	page.Resources = res
	return page, nil
}

// ceilMicro rounds t up to a whole microsecond.
func ceilMicro(t time.Time) int64 {
	us := t.UnixMicro()
	if t.Sub(time.UnixMicro(us)) > 0 {
		us++
	}
	return us
}

// Read implements storage.Reader.
func (s *Store) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("embedded: read: %w", storage.ErrClosed)
	}
	if err := s.settleFor(ctx, false, typ); err != nil {
		return nil, err
	}
	r, err := s.poolView().read(ctx, typ, id)
	return r, s.readErr("read", err)
}

// VRead implements storage.Reader.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (*fhir.Resource, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("embedded: vread: %w", storage.ErrClosed)
	}
	if err := s.settleFor(ctx, false, typ); err != nil {
		return nil, err
	}
	r, err := s.poolView().vread(ctx, typ, id, version)
	return r, s.readErr("vread", err)
}

// History implements storage.Reader.
func (s *Store) History(ctx context.Context, q *storage.HistoryQuery) (*storage.Page, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("embedded: history: %w", storage.ErrClosed)
	}
	if err := s.settleFor(ctx, q.Type == "", q.Type); err != nil {
		return nil, err
	}
	p, err := s.poolView().history(ctx, q, s)
	if err != nil {
		return nil, s.readErr("history", err)
	}
	return p, nil
}

// Search implements storage.Reader.
func (s *Store) Search(ctx context.Context, q *search.Query) (*storage.Page, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("embedded: search: %w", storage.ErrClosed)
	}
	if err := s.settleSearch(ctx, q); err != nil {
		return nil, err
	}
	p, err := s.poolView().search(ctx, q, s)
	if err != nil {
		return nil, s.readErr("search", err)
	}
	return p, nil
}

// tx is the storage.Tx handed to a Transact function.
type tx struct {
	w    *wtx
	ctx  context.Context
	done bool
}

var errTxDone = errors.New("embedded: transaction already finished")

func (t *tx) check(ctx context.Context) error {
	if t.done {
		return errTxDone
	}
	return ctx.Err()
}

func (t *tx) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	if err := t.check(ctx); err != nil {
		return nil, err
	}
	if err := t.w.settleFor(typ); err != nil {
		return nil, err
	}
	return t.w.view().read(context.Background(), typ, id)
}

func (t *tx) VRead(ctx context.Context, typ, id string, version int64) (*fhir.Resource, error) {
	if err := t.check(ctx); err != nil {
		return nil, err
	}
	if err := t.w.settleFor(typ); err != nil {
		return nil, err
	}
	return t.w.view().vread(context.Background(), typ, id, version)
}

func (t *tx) History(ctx context.Context, q *storage.HistoryQuery) (*storage.Page, error) {
	if err := t.check(ctx); err != nil {
		return nil, err
	}
	if err := t.w.settleFor(q.Type); err != nil {
		return nil, err
	}
	return t.w.view().history(context.Background(), q, nil)
}

func (t *tx) Search(ctx context.Context, q *search.Query) (*storage.Page, error) {
	if err := t.check(ctx); err != nil {
		return nil, err
	}
	if err := t.w.settleSearch(q); err != nil {
		return nil, err
	}
	if err := t.w.flush(); err != nil {
		return nil, err
	}
	return t.w.view().search(context.Background(), q, nil)
}

func (t *tx) Write(ctx context.Context, wr *storage.Write) (*fhir.Resource, error) {
	if err := t.check(ctx); err != nil {
		return nil, err
	}
	return t.w.write(ctx, wr)
}

// timeOf converts a vid (lastUpdated in Unix microseconds) to a UTC time.
func timeOf(vid int64) time.Time { return time.UnixMicro(vid).UTC() }

// typeNameOf implements names.
func (v *view) typeNameOf(tid int64) string { return v.typeName(tid) }
