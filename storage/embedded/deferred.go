package embedded

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// Deferred chained writes (storage.Write.Defer).
//
// The writer stores a deferred write, stamped and sealed into the chain, as
// one row of the deferred table, appended in the batch's transaction: one
// B-tree append instead of the eight B-trees (a resource row and its two
// indexes, a version and its two, the entry list, the chain link) and the
// index rows of a written resource. It moves deferred rows into those
// tables later, many per transaction ("materialises" them):
//   - when no request has come for idleDelay;
//   - after a batch, while more than Options.MaxBacklog are waiting (the
//     bound on the backlog, and the backpressure that keeps it);
//   - before anything could see them: a read, search or history that may
//     return a resource of a type with deferred rows, or a write of such a
//     type, first has them all materialised (settle). So callers see what
//     they would have seen had the write not been deferred.
//
// The deferred row keeps the chain position it was sealed at, so
// materialising links it into the chain where it belongs, and WalkChain
// reads both tables.

// idleDelay is how long the writer waits for a request before it
// materialises deferred rows.
const idleDelay = 2 * time.Millisecond

// materialiseChunk is how many deferred writes one background transaction
// materialises: 512 cost 54 cpu-µs each, 128 cost 69 (BenchmarkMaterialiseIdle),
// and a chunk holds up the requests that arrive meanwhile for about 25 ms.
const materialiseChunk = 512

// defaultMaxBacklog bounds the deferred writes waiting to be materialised:
// under a second of the writer's work to settle (about 50 cpu-µs each in
// bulk, BenchmarkMaterialise).
const defaultMaxBacklog = 16384

// backlog is the published count of deferred rows by type name, replaced
// (never changed) after each commit that changed it.
type backlog struct {
	total int64
	types map[string]int64
}

// deferredRow is one row of the deferred table.
type deferredRow struct {
	seq, tid, vid int64
	id            string
	list, body    []byte
}

// backlogOf returns the published backlog.
func (s *Store) backlogOf() *backlog {
	if b := s.backlog.Load(); b != nil {
		return b
	}
	return &backlog{}
}

// Backlog returns the number of deferred writes not yet materialised.
func (s *Store) Backlog() int64 { return s.backlogOf().total }

// publish adds a committed batch's changes to the published backlog.
func (s *Store) publish(delta map[string]int64) {
	if len(delta) == 0 {
		return
	}
	old := s.backlogOf()
	b := &backlog{types: make(map[string]int64, len(old.types)+len(delta))}
	for t, n := range old.types {
		b.types[t] = n
	}
	for t, n := range delta {
		if n += b.types[t]; n > 0 {
			b.types[t] = n
		} else {
			delete(b.types, t)
		}
	}
	for _, n := range b.types {
		b.total += n
	}
	s.backlog.Store(b)
}

// loadBacklog publishes the deferred rows found at open.
func (s *Store) loadBacklog(ctx context.Context) error {
	rows, err := s.wconn.QueryContext(ctx, `SELECT t.name, count(*) FROM deferred d JOIN types t ON t.tid = d.tid GROUP BY t.name`)
	if err != nil {
		return fmt.Errorf("embedded: open: %w", err)
	}
	defer rows.Close()
	delta := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return fmt.Errorf("embedded: open: %w", err)
		}
		delta[name] = n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("embedded: open: %w", err)
	}
	s.publish(delta)
	return nil
}

// Settle materialises every deferred write committed before it is called
// (reads settle by themselves; see deferred.go).
func (s *Store) Settle(ctx context.Context) error {
	if s.isClosed() {
		return fmt.Errorf("embedded: settle: %w", storage.ErrClosed)
	}
	if s.Backlog() == 0 {
		return nil
	}
	return s.submit(ctx, func(w *wtx) error { return w.materialiseAll() })
}

// settleFor settles when a type in types (all types when all is set) has
// deferred rows.
func (s *Store) settleFor(ctx context.Context, all bool, types ...string) error {
	b := s.backlogOf()
	if b.total == 0 {
		return nil
	}
	need := all
	for _, t := range types {
		if b.types[t] > 0 {
			need = true
		}
	}
	if !need {
		return nil
	}
	return s.submit(ctx, func(w *wtx) error { return w.materialiseAll() })
}

// settleSearch settles before a search that may return, or look at, a
// resource of a type with deferred rows: its types, those its includes may
// add, and those its chains and _has clauses look into.
func (s *Store) settleSearch(ctx context.Context, q *search.Query) error {
	if s.Backlog() == 0 {
		return nil
	}
	all, types := searchTypes(q)
	return s.settleFor(ctx, all, types...)
}

// searchTypes lists the types a search may touch; all when it cannot say.
func searchTypes(q *search.Query) (all bool, types []string) {
	if len(q.Types) == 0 {
		return true, nil
	}
	types = append(types, q.Types...)
	for _, in := range q.Include {
		if in.Target == "" || in.Target == "*" {
			all = true
		}
		types = append(types, in.Target)
	}
	for _, in := range q.RevInclude {
		if in.Source == "*" {
			all = true
		}
		types = append(types, in.Source)
	}
	walk := func(e search.Expr) {
		switch x := e.(type) {
		case *search.Chain:
			if x.Target == "" {
				all = true
			}
			types = append(types, x.Target)
		case *search.Has:
			types = append(types, x.Type)
		}
	}
	search.Walk(q.Where, walk)
	search.Walk(q.Constraint, walk)
	return all, types
}

// settleSearch settles, inside the transaction, before a search that may
// touch a type with deferred rows.
func (w *wtx) settleSearch(q *search.Query) error {
	if !w.deferredAny() {
		return nil
	}
	all, types := searchTypes(q)
	if all {
		return w.settleFor("")
	}
	for _, t := range types {
		if err := w.settleFor(t); err != nil {
			return err
		}
	}
	return nil
}

// deferredOf is how many deferred rows of typ the running request sees.
func (w *wtx) deferredOf(typ string) int64 {
	return w.s.backlogOf().types[typ] + w.batchDelta[typ] + w.reqDelta[typ]
}

// deferredAny reports whether the running request sees deferred rows.
func (w *wtx) deferredAny() bool {
	if w.s.backlogOf().total > 0 {
		return true
	}
	for _, d := range []map[string]int64{w.batchDelta, w.reqDelta} {
		for _, n := range d {
			if n != 0 {
				return true
			}
		}
	}
	return false
}

// settleFor materialises, inside the transaction, every deferred row when
// typ (any type when typ is "") has some: a read or write in a
// transaction sees deferred writes as stored.
func (w *wtx) settleFor(typ string) error {
	if typ == "" && !w.deferredAny() || typ != "" && w.deferredOf(typ) == 0 {
		return nil
	}
	return w.materialiseAll()
}

// deferWrite stores a deferred chained write (see storage.Write.Defer).
func (w *wtx) deferWrite(ctx context.Context, wr *storage.Write) (*fhir.Resource, error) {
	if wr.Chain == nil || wr.Delete || wr.IfMatch != 0 {
		return nil, fmt.Errorf("embedded: deferred write %s: only a chained create may be deferred", wr.Type)
	}
	tid, err := w.typeID(wr.Type)
	if err != nil {
		return nil, err
	}
	var rid, version int64
	var deleted bool
	switch err := w.st.curKey.QueryRow(tid, wr.ID).Scan(&rid, &version, &deleted); {
	case err == nil:
		return nil, w.existsErr(wr.Type, rid)
	case !errors.Is(err, errNoRows):
		return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, err)
	}
	if l := w.s.dlog; l != nil {
		if _, ok := l.ids[wr.Type+"/"+wr.ID]; ok {
			return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, storage.ErrImmutable)
		}
	}
	list, err := encodeList(w, tid, wr.Index)
	if err != nil {
		return nil, fmt.Errorf("embedded: index %s: %w", wr.Type, err)
	}
	w.wrote(tid)
	vid := w.s.nextVID()
	res := &fhir.Resource{Type: wr.Type, ID: wr.ID, Version: 1, LastUpdated: time.UnixMicro(vid).UTC()}
	body, err := fhir.Stamp(wr.Body, wr.ID, 1, res.LastUpdated)
	if err != nil {
		return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, err)
	}
	body, next, err := w.seal(wr.Chain, body)
	if err != nil {
		return nil, fmt.Errorf("embedded: chained write %s: %w", wr.Type, err)
	}
	if _, err := w.st.insDeferred.Exec(next.seq, tid, wr.ID, vid, list, body); err != nil {
		if strings.Contains(err.Error(), "UNIQUE constraint failed") {
			// a deferred write of this id waits: chained, so immutable
			return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, storage.ErrImmutable)
		}
		return nil, fmt.Errorf("embedded: deferred write %s: %w", wr.Type, err)
	}
	w.head, w.headDirty = next, true
	w.addDelta(wr.Type, 1)
	res.Body = body
	return res, nil
}

// addDelta counts n deferred rows of typ added (removed when negative) by
// the running request.
func (w *wtx) addDelta(typ string, n int64) {
	if w.reqDelta == nil {
		w.reqDelta = map[string]int64{}
	}
	w.reqDelta[typ] += n
}

// keepDelta adds the finished request's counts to the batch's.
func (w *wtx) keepDelta() {
	if len(w.reqDelta) == 0 {
		return
	}
	if w.batchDelta == nil {
		w.batchDelta = map[string]int64{}
	}
	for t, n := range w.reqDelta {
		w.batchDelta[t] += n
	}
	w.reqDelta = nil
}

// existsErr is the error of a chained write of an id in use by resource rid:
// ErrImmutable if that is chained, ErrExists otherwise.
func (w *wtx) existsErr(typ string, rid int64) error {
	var one int
	err := w.st.isChained.QueryRow(rid).Scan(&one)
	switch {
	case err == nil:
		return fmt.Errorf("embedded: write %s: %w", typ, storage.ErrImmutable)
	case errors.Is(err, errNoRows):
		return fmt.Errorf("embedded: chained write %s: %w", typ, storage.ErrExists)
	}
	return fmt.Errorf("embedded: write %s: %w", typ, err)
}

// materialiseAll materialises every deferred row.
func (w *wtx) materialiseAll() error {
	for {
		n, err := w.materialise(1024)
		if err != nil || n == 0 {
			return err
		}
	}
}

// materialise moves up to limit deferred writes, the deferred table's
// first (oldest first), then the log's, into the resource, version, entry,
// index and chain tables, and returns how many it moved.
func (w *wtx) materialise(limit int) (int, error) {
	n, err := w.materialiseTable(limit)
	if err != nil || n == limit {
		return n, err
	}
	m, err := w.materialiseLog(limit - n)
	return n + m, err
}

// materialiseTable materialises up to limit rows of the deferred table.
func (w *wtx) materialiseTable(limit int) (int, error) {
	rows, err := w.st.getDeferred.Query(limit)
	if err != nil {
		return 0, fmt.Errorf("embedded: materialise: %w", err)
	}
	var batch []deferredRow
	for rows.Next() {
		var d deferredRow
		if err := rows.Scan(&d.seq, &d.tid, &d.id, &d.vid, &d.list, &d.body); err != nil {
			rows.Close()
			return 0, fmt.Errorf("embedded: materialise: %w", err)
		}
		batch = append(batch, d)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("embedded: materialise: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	for i := range batch {
		if err := w.materialiseRow(&batch[i]); err != nil {
			return 0, err
		}
	}
	if _, err := w.st.delDeferred.Exec(batch[len(batch)-1].seq); err != nil {
		return 0, fmt.Errorf("embedded: materialise: %w", err)
	}
	return len(batch), nil
}

// materialiseRow stores one deferred write as a resource with its only
// version, entry list, index rows and chain link.
func (w *wtx) materialiseRow(d *deferredRow) error {
	typ := w.typeName(d.tid)
	w.wrote(d.tid)
	res, err := w.st.insRes.Exec(d.tid, d.id, 1, d.vid, false)
	if err != nil {
		return fmt.Errorf("embedded: materialise %s/%s: %w", typ, d.id, err)
	}
	rid, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if _, err := w.st.insVer.Exec(d.vid, rid, d.tid, 1, d.body); err != nil {
		return fmt.Errorf("embedded: materialise %s/%s: %w", typ, d.id, err)
	}
	if len(d.list) > 0 {
		if w.entries, err = decodeList(w.view(), d.list, w.entries[:0]); err != nil {
			return fmt.Errorf("embedded: materialise %s/%s: %w", typ, d.id, err)
		}
		rs, err := rowsOf(w, d.tid, w.entries)
		if err != nil {
			return fmt.Errorf("embedded: materialise %s/%s: %w", typ, d.id, err)
		}
		_, encs := encodeRows(rs)
		for _, enc := range encs {
			w.pending = append(w.pending, pendingRow{enc, rid})
		}
		if _, err := w.st.putEntries.Exec(rid, d.list); err != nil {
			return fmt.Errorf("embedded: materialise %s/%s: %w", typ, d.id, err)
		}
	}
	if _, err := w.st.insChain.Exec(d.seq, rid, d.vid); err != nil {
		return fmt.Errorf("embedded: materialise %s/%s: %w", typ, d.id, err)
	}
	w.addDelta(typ, -1)
	return nil
}

// materialiseInBackground runs one transaction materialising up to
// materialiseChunk deferred rows on the writer goroutine.
func (s *Store) materialiseInBackground() {
	r := &request{ctx: context.Background(), done: make(chan struct{}), fn: func(w *wtx) error {
		_, err := w.materialise(materialiseChunk)
		return err
	}}
	r.state.Store(queued)
	s.runBatch([]*request{r})
	if r.err != nil {
		s.log.Error("embedded: materialise deferred writes", "err", r.err)
		s.materialiseFailed.Store(true)
	}
}
