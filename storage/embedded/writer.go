package embedded

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// Request states.
const (
	queued int32 = iota
	running
	abandoned
)

// request is one unit of work for the writer: fn runs inside the batch's
// transaction, in its own savepoint.
type request struct {
	ctx   context.Context
	fn    func(w *wtx) error
	lw    *logWrite // instead of fn: a record for the log (dlog.go)
	state atomic.Int32
	err   error
	done  chan struct{}
}

// submit queues fn and waits until it is committed or has failed. A request
// whose ctx ends while it is still queued is abandoned and never runs; once
// it runs, submit waits for the outcome so that a write never happens
// behind an error.
func (s *Store) submit(ctx context.Context, fn func(w *wtx) error) error {
	return s.submitRequest(ctx, &request{ctx: ctx, fn: fn, done: make(chan struct{})})
}

func (s *Store) submitRequest(ctx context.Context, r *request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return fmt.Errorf("embedded: write: %w", storage.ErrClosed)
	}
	select {
	case s.queue <- r:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, abandoned) {
			return ctx.Err()
		}
		<-r.done
		return r.err
	}
}

// writer is the single goroutine that writes to the database.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*request, 0, s.maxBatch)
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	for {
		var r *request
		var ok bool
		if s.idle > 0 && s.Backlog() > 0 && !s.materialiseFailed.Load() {
			// Deferred writes wait: materialise some if no request comes.
			idle.Reset(s.idle)
			select {
			case r, ok = <-s.queue:
				idle.Stop()
			case <-idle.C:
				s.materialiseInBackground()
				continue
			}
		} else {
			r, ok = <-s.queue
		}
		if !ok {
			// Closing: leave the tables whole (a crash leaves the
			// backlog to the next open).
			for s.idle > 0 && s.Backlog() > 0 && !s.materialiseFailed.Load() {
				s.materialiseInBackground()
			}
			return
		}
		batch = append(batch[:0], r)
	fill:
		for len(batch) < s.maxBatch {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.runBatches(batch)
		clear(batch)
		if s.Backlog() > s.maxBacklog && !s.materialiseFailed.Load() {
			// Backpressure: the backlog stays bounded, so settling it does too.
			s.materialiseInBackground()
		}
		if s.walLong.Swap(false) {
			// See checkpointer.
			if _, err := s.wconn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
				s.log.Error("embedded: truncate the WAL", "err", err)
			}
		}
	}
}

// runBatches runs the log requests of a batch (runLogBatch) and then the
// others (runBatch).
func (s *Store) runBatches(batch []*request) {
	logs, others := batch[:0:0], batch[:0:0]
	for _, r := range batch {
		if r.lw != nil {
			logs = append(logs, r)
		} else {
			others = append(others, r)
		}
	}
	if len(logs) > 0 {
		s.runLogBatch(logs)
	}
	if len(others) > 0 {
		s.runBatch(others)
	}
}

// runBatch runs the requests in one transaction, each in a savepoint, and
// commits them with one COMMIT.
func (s *Store) runBatch(batch []*request) {
	live := batch[:0:0]
	for _, r := range batch {
		if r.state.CompareAndSwap(queued, running) {
			live = append(live, r)
		} else {
			close(r.done)
		}
	}
	if len(live) == 0 {
		return
	}
	s.batches.Add(1)
	s.requests.Add(int64(len(live)))
	finish := func(err error) {
		for _, r := range live {
			if err != nil && r.err == nil {
				r.err = err
			}
			close(r.done)
		}
	}
	if _, err := s.wst.begin.Exec(); err != nil {
		finish(fmt.Errorf("embedded: begin: %w", err))
		return
	}
	w := &wtx{s: s, st: s.wst, batch: newDictEntries(), head: s.head, headLoaded: true}
	if s.dlog != nil {
		w.logOff, w.logSeq = s.dlog.matOff, s.dlog.matSeq
	}
	single := len(live) == 1
	for _, r := range live {
		w.req = newDictEntries()
		w.mark, w.saved = len(w.pending), w.saved[:0]
		head, headLoaded, headDirty := w.head, w.headLoaded, w.headDirty
		logOff, logSeq, logIDs := w.logOff, w.logSeq, len(w.logIDs)
		if single {
			r.err = w.run(r)
			if r.err != nil {
				s.rollback()
				finish(nil)
				return
			}
			w.batch.merge(&w.req)
			w.keepDelta()
			break
		}
		if _, err := s.wst.savepoint.Exec(); err != nil {
			s.rollback()
			finish(fmt.Errorf("embedded: savepoint: %w", err))
			return
		}
		r.err = w.run(r)
		if r.err != nil {
			if _, err := s.wst.rollbackTo.Exec(); err != nil {
				s.rollback()
				finish(fmt.Errorf("embedded: rollback to savepoint: %w", err))
				return
			}
			// Drop the request's pending index rows; rows of earlier
			// requests that it flushed were rolled back and are pending again.
			w.pending = append(append([]pendingRow(nil), w.saved...), w.pending[:w.mark]...)
			w.head, w.headLoaded, w.headDirty = head, headLoaded, headDirty
			w.logOff, w.logSeq, w.logIDs = logOff, logSeq, w.logIDs[:logIDs]
			w.reqDelta = nil
		} else {
			w.batch.merge(&w.req)
			w.keepDelta()
		}
		if _, err := s.wst.release.Exec(); err != nil {
			s.rollback()
			finish(fmt.Errorf("embedded: release savepoint: %w", err))
			return
		}
	}
	if err := w.flush(); err != nil {
		s.rollback()
		finish(fmt.Errorf("embedded: index: %w", err))
		return
	}
	if w.headDirty {
		if _, err := s.wst.putHead.Exec(w.head.seq, w.head.hash); err != nil {
			s.rollback()
			finish(fmt.Errorf("embedded: chain head: %w", err))
			return
		}
	}
	if s.dlog != nil {
		// A link in the database must not follow one the log could lose.
		if err := s.dlog.sync(); err != nil {
			s.rollback()
			finish(err)
			return
		}
	}
	if _, err := s.wst.commit.Exec(); err != nil {
		s.rollback()
		finish(fmt.Errorf("embedded: commit: %w", err))
		return
	}
	s.dict.commit(&w.batch)
	for _, tid := range w.tids {
		s.typeGen(tid).Add(1)
	}
	if w.headDirty {
		s.head = w.head
		h := w.head
		s.pubHead.Store(&h)
	}
	s.logCommitted(w)
	s.publish(w.batchDelta)
	finish(nil)
	select {
	case s.wrote <- struct{}{}:
	default:
	}
}

func (s *Store) rollback() {
	if _, err := s.wconn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		s.log.Error("embedded: rollback failed", "err", err)
	}
}

// nextVID returns a new lastUpdated in microseconds, later than every one
// handed out before. Only the writer calls it.
func (s *Store) nextVID() int64 {
	now := s.now().UnixMicro()
	if now <= s.last {
		now = s.last + 1
	}
	s.last = now
	return now
}

// wtx is the writer's view of the open batch transaction while it runs one
// request.
type wtx struct {
	s     *Store
	st    *stmts
	ctx   context.Context
	batch dictEntries // interned by committed-to-be requests of this batch
	req   dictEntries // interned by the running request

	// Index rows to insert, gathered over the batch and inserted sorted,
	// many per statement, before COMMIT (or earlier, by flush, when a
	// request deletes index rows or searches). pending[:mark] belong to
	// earlier requests; saved holds earlier requests' rows flushed during
	// the running request (inside its savepoint).
	pending []pendingRow
	mark    int
	saved   []pendingRow

	// The hash chain's head as the batch has advanced it (written to
	// chain_head before COMMIT when dirty).
	head       chainHead
	headLoaded bool
	headDirty  bool

	// Deferred rows added (removed, when negative) by type: by the
	// committed-to-be requests of the batch, and by the running request
	// (see deferred.go).
	batchDelta, reqDelta map[string]int64

	// The log materialised up to offset logOff, chain position logSeq, in
	// this transaction; logIDs are the keys of its records materialised
	// (dlog.go).
	logOff, logSeq int64
	logIDs         []string

	entries []search.Entry // reused by materialiseRow

	tids []int64 // the types of the resources written (for typeGen)
}

// wrote notes that the transaction writes a resource of type tid.
func (w *wtx) wrote(tid int64) {
	if !slices.Contains(w.tids, tid) {
		w.tids = append(w.tids, tid)
	}
}

type pendingRow struct {
	enc string // the row's encoding (see appendRow)
	rid int64
}

// flush inserts the pending index rows.
func (w *wtx) flush() error {
	if len(w.pending) == 0 {
		return nil
	}
	w.saved = append(w.saved, w.pending[:w.mark]...)
	w.mark = 0
	slices.SortFunc(w.pending, func(a, b pendingRow) int {
		if c := strings.Compare(a.enc, b.enc); c != 0 {
			return c
		}
		return cmp.Compare(a.rid, b.rid)
	})
	var args []any
	for i := 0; i < len(w.pending); {
		t := w.pending[i].enc[0]
		j := i
		args = args[:0]
		for j < len(w.pending) && j-i < maxMultiRows && w.pending[j].enc[0] == t {
			r, _, err := decodeRow([]byte(w.pending[j].enc))
			if err != nil {
				return err
			}
			args = append(args, tables[t].args(&r, w.pending[j].rid)...)
			j++
		}
		st, err := w.st.multiInsert(t, j-i)
		if err != nil {
			return err
		}
		if _, err := st.Exec(args...); err != nil {
			return err
		}
		i = j
	}
	w.pending = w.pending[:0]
	return nil
}

// run calls r.fn, turning a panic into an error so the writer survives.
func (w *wtx) run(r *request) (err error) {
	w.ctx = r.ctx
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("embedded: panic in a write: %v", p)
		}
	}()
	if err := r.ctx.Err(); err != nil {
		return err
	}
	return r.fn(w)
}

func (w *wtx) typeID(name string) (int64, error) {
	if id, ok := w.lookupType(name); ok {
		return id, nil
	}
	res, err := w.st.insType.Exec(name)
	if err != nil {
		return 0, fmt.Errorf("embedded: intern type: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	w.req.types[name] = id
	return id, nil
}

func (w *wtx) lookupType(name string) (int64, bool) {
	if id, ok := w.s.dict.typeID(name); ok {
		return id, true
	}
	if id, ok := w.batch.types[name]; ok {
		return id, true
	}
	id, ok := w.req.types[name]
	return id, ok
}

func (w *wtx) typeName(id int64) string {
	if n := w.s.dict.typeName(id); n != "" {
		return n
	}
	for _, m := range []map[string]int64{w.batch.types, w.req.types} {
		for n, i := range m {
			if i == id {
				return n
			}
		}
	}
	return ""
}

func (w *wtx) paramKey(pid int64) (paramKey, bool) {
	if k, ok := w.s.dict.paramKey(pid); ok {
		return k, true
	}
	for _, m := range []map[paramKey]int64{w.batch.params, w.req.params} {
		for k, id := range m {
			if id == pid {
				return k, true
			}
		}
	}
	return paramKey{}, false
}

func (w *wtx) systemURI(sid int64) (string, bool) {
	if u, ok := w.s.dict.systemURI(sid); ok {
		return u, true
	}
	for _, m := range []map[string]int64{w.batch.systems, w.req.systems} {
		for u, id := range m {
			if id == sid {
				return u, true
			}
		}
	}
	return "", false
}

func (w *wtx) paramsByCode(code string) []paramRef {
	out := w.s.dict.paramsByCode(code)
	for _, m := range []map[paramKey]int64{w.batch.params, w.req.params} {
		for k, id := range m {
			if k.code == code {
				out = append(out, paramRef{k.tid, id})
			}
		}
	}
	return out
}

func (w *wtx) typeIDs() []int64 {
	out := w.s.dict.typeIDs()
	for _, m := range []map[string]int64{w.batch.types, w.req.types} {
		for _, id := range m {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (w *wtx) paramID(tid int64, code string) (int64, error) {
	if id, ok := w.lookupParam(tid, code); ok {
		return id, nil
	}
	res, err := w.st.insParam.Exec(tid, code)
	if err != nil {
		return 0, fmt.Errorf("embedded: intern parameter: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	w.req.params[paramKey{tid, code}] = id
	return id, nil
}

func (w *wtx) lookupParam(tid int64, code string) (int64, bool) {
	if id, ok := w.s.dict.paramID(tid, code); ok {
		return id, true
	}
	k := paramKey{tid, code}
	if id, ok := w.batch.params[k]; ok {
		return id, true
	}
	id, ok := w.req.params[k]
	return id, ok
}

func (w *wtx) systemID(uri string) (int64, error) {
	if id, ok := w.lookupSystem(uri); ok {
		return id, nil
	}
	res, err := w.st.insSystem.Exec(uri)
	if err != nil {
		return 0, fmt.Errorf("embedded: intern system: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	w.req.systems[uri] = id
	return id, nil
}

func (w *wtx) lookupSystem(uri string) (int64, bool) {
	if id, ok := w.s.dict.systemID(uri); ok {
		return id, true
	}
	if id, ok := w.batch.systems[uri]; ok {
		return id, true
	}
	id, ok := w.req.systems[uri]
	return id, ok
}

// write applies one storage.Write inside the transaction.
func (w *wtx) write(ctx context.Context, wr *storage.Write) (*fhir.Resource, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if wr.Type == "" || !fhir.ValidID(wr.ID) {
		return nil, fmt.Errorf("embedded: write: invalid key %q/%q", wr.Type, wr.ID)
	}
	if !wr.Delete && len(wr.Body) == 0 {
		return nil, fmt.Errorf("embedded: write %s: empty body", wr.Type)
	}
	if wr.Defer {
		return w.deferWrite(ctx, wr)
	}
	if err := w.settleFor(wr.Type); err != nil {
		return nil, err
	}
	tid, err := w.typeID(wr.Type)
	if err != nil {
		return nil, err
	}
	var rid, version int64
	var deleted bool
	err = w.st.curKey.QueryRow(tid, wr.ID).Scan(&rid, &version, &deleted)
	exists := err == nil
	if err != nil && !errors.Is(err, errNoRows) {
		return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, err)
	}
	if exists {
		var one int
		err := w.st.isChained.QueryRow(rid).Scan(&one)
		if err == nil {
			return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, storage.ErrImmutable)
		}
		if !errors.Is(err, errNoRows) {
			return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, err)
		}
	}
	switch {
	case wr.Chain != nil && (exists || wr.Delete):
		return nil, fmt.Errorf("embedded: chained write %s: %w", wr.Type, storage.ErrExists)
	case wr.IfMatch != 0 && (!exists || version != wr.IfMatch):
		return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, storage.ErrVersionConflict)
	case wr.Delete && (!exists || deleted):
		return nil, nil
	case wr.CreateOnly && exists && !deleted:
		return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, storage.ErrExists)
	}
	w.wrote(tid)
	vid := w.s.nextVID()
	res := &fhir.Resource{Type: wr.Type, ID: wr.ID, Version: version + 1, LastUpdated: time.UnixMicro(vid).UTC(), Deleted: wr.Delete}
	var body []byte
	var next chainHead
	if !wr.Delete {
		body, err = fhir.Stamp(wr.Body, wr.ID, res.Version, res.LastUpdated)
		if err != nil {
			return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, err)
		}
		if wr.Chain != nil {
			if body, next, err = w.seal(wr.Chain, body); err != nil {
				return nil, fmt.Errorf("embedded: chained write %s: %w", wr.Type, err)
			}
		}
		res.Body = body
	}
	if exists {
		if _, err := w.st.updRes.Exec(res.Version, vid, wr.Delete, rid); err != nil {
			return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, err)
		}
	} else {
		r, err := w.st.insRes.Exec(tid, wr.ID, res.Version, vid, wr.Delete)
		if err != nil {
			return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, err)
		}
		if rid, err = r.LastInsertId(); err != nil {
			return nil, err
		}
	}
	if _, err := w.st.insVer.Exec(vid, rid, tid, res.Version, body); err != nil {
		return nil, fmt.Errorf("embedded: write %s: %w", wr.Type, err)
	}
	if err := w.index(tid, rid, exists, wr); err != nil {
		return nil, fmt.Errorf("embedded: index %s: %w", wr.Type, err)
	}
	if wr.Chain != nil {
		if _, err := w.st.insChain.Exec(next.seq, rid, vid); err != nil {
			return nil, fmt.Errorf("embedded: chained write %s: %w", wr.Type, err)
		}
		w.head, w.headDirty = next, true
	}
	return res, nil
}

// chainHead is the last link of the hash chain.
type chainHead struct {
	seq  int64  // its position (0: the chain is empty)
	hash []byte // its hash
}

// seal links a stamped body to the chain: it calls fn with the head's hash
// and the body, and returns the sealed body and what the head becomes once
// the write is stored (written to chain_head before the batch commits).
// The head is read once per batch.
func (w *wtx) seal(fn func(prev, stamped []byte) (sealed, hash []byte, err error), body []byte) ([]byte, chainHead, error) {
	if !w.headLoaded {
		err := w.st.getHead.QueryRow().Scan(&w.head.seq, &w.head.hash)
		if err != nil && !errors.Is(err, errNoRows) {
			return nil, chainHead{}, err
		}
		w.headLoaded = true
	}
	sealed, hash, err := fn(w.head.hash, body)
	if err != nil {
		return nil, chainHead{}, err
	}
	if len(sealed) == 0 || len(hash) == 0 {
		return nil, chainHead{}, errors.New("embedded: the chain function returned no body or hash")
	}
	return sealed, chainHead{seq: w.head.seq + 1, hash: slices.Clone(hash)}, nil
}

// index replaces the index rows of resource rid by those of wr (none for a
// delete), touching only the rows that changed.
func (w *wtx) index(tid, rid int64, existed bool, wr *storage.Write) error {
	if wr.Delete {
		return w.replaceRows(tid, rid, existed, nil)
	}
	return w.replaceRows(tid, rid, existed, wr.Index)
}

// oldRows returns the encodings of the index rows stored for resource rid
// (of type tid), sorted: derived from its entry list (the rows of a
// resource are a function of its entries, rowsOf), or read from the row
// list of a resource written by schema 1.
func (w *wtx) oldRows(tid, rid int64) ([]string, error) {
	var rows, list []byte
	err := w.st.getEntries.QueryRow(rid).Scan(&rows, &list)
	if errors.Is(err, errNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if list == nil {
		return splitRows(rows)
	}
	entries, err := decodeList(w.view(), list, nil)
	if err != nil {
		return nil, err
	}
	old, err := rowsOf(w, tid, entries)
	if err != nil {
		return nil, err
	}
	_, encs := encodeRows(old)
	return encs, nil
}

// replaceRows makes entries the index entries of resource rid (of type
// tid): it writes its entry list and the index rows that changed.
func (w *wtx) replaceRows(tid, rid int64, existed bool, entries []search.Entry) error {
	newRows, err := rowsOf(w, tid, entries)
	if err != nil {
		return err
	}
	list, err := encodeList(w, tid, entries)
	if err != nil {
		return err
	}
	_, newEncs := encodeRows(newRows)
	var oldEncs []string
	if existed {
		if oldEncs, err = w.oldRows(tid, rid); err != nil {
			return err
		}
	}
	// Both lists are sorted: walk them together. Deletes run at once
	// (after flushing pending inserts, which they may concern); inserts
	// join the batch's pending rows.
	flushed := false
	i, j := 0, 0
	for i < len(oldEncs) || j < len(newEncs) {
		switch {
		case j == len(newEncs) || (i < len(oldEncs) && oldEncs[i] < newEncs[j]):
			if !flushed {
				if err := w.flush(); err != nil {
					return err
				}
				flushed = true
			}
			r, _, err := decodeRow([]byte(oldEncs[i]))
			if err != nil {
				return err
			}
			if _, err := w.st.idxDelete[r.tab].Exec(deleteArgs(&r, rid)...); err != nil {
				return err
			}
			i++
		case i == len(oldEncs) || newEncs[j] < oldEncs[i]:
			w.pending = append(w.pending, pendingRow{newEncs[j], rid})
			j++
		default:
			i++
			j++
		}
	}
	switch {
	case len(list) > 0:
		_, err = w.st.putEntries.Exec(rid, list)
	case existed:
		_, err = w.st.delEntries.Exec(rid)
	}
	return err
}

// Write implements storage.Store.
func (s *Store) Write(ctx context.Context, wr *storage.Write) (*fhir.Resource, error) {
	if wr.Defer {
		if lw, ok := s.forLog(wr); ok {
			if err := s.submitRequest(ctx, &request{ctx: ctx, lw: lw, done: make(chan struct{})}); err != nil {
				return nil, err
			}
			return lw.res, nil
		}
	}
	var res *fhir.Resource
	err := s.submit(ctx, func(w *wtx) error {
		var err error
		res, err = w.write(ctx, wr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Transact implements storage.Store. fn runs on the writer goroutine inside
// the open group-commit transaction: it must be quick and must not call the
// Store's own write methods (that would wait for itself). The Tx also
// implements storage.Records; its record writes commit with the
// transaction.
func (s *Store) Transact(ctx context.Context, fn func(tx storage.Tx) error) error {
	return s.submit(ctx, func(w *wtx) error {
		t := &tx{w: w, ctx: ctx}
		defer func() { t.done = true }()
		return fn(t)
	})
}
