package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// ErrChainTruncated is returned (wrapped) by WalkChain when the stored
// links end before the chain's head: links at the end were removed.
var ErrChainTruncated = errors.New("embedded: audit chain truncated")

// Interface guards.
var (
	_ storage.EntryReader = (*Store)(nil)
	_ storage.EntryReader = (*tx)(nil)
)

// ChainHead returns the position (1 for the first link; 0 when the chain
// is empty) and hash of the last link of the hash chain (see
// storage.Write.Chain), deferred writes included.
func (s *Store) ChainHead(ctx context.Context) (seq int64, hash []byte, err error) {
	if s.isClosed() {
		return 0, nil, fmt.Errorf("embedded: chain head: %w", storage.ErrClosed)
	}
	h := s.pubHead.Load()
	return h.seq, slices.Clone(h.hash), nil
}

// WalkChain calls fn with the id and stored body of every chained write
// (see storage.Write.Chain), in chain order, deferred ones included (those
// in the log too), from one consistent snapshot, for `regie audit verify`.
// A link whose version was removed is passed with a nil body (and an empty
// id if its resource row is gone too), so the verifier reports the break
// where it is. If fn returns an error, WalkChain stops and returns it.
// After the last link it checks that the links are numbered without a gap
// and reach the head stored in the database: if not, it returns an error
// wrapping ErrChainTruncated.
func (s *Store) WalkChain(ctx context.Context, fn func(id string, body []byte) error) error {
	if s.isClosed() {
		return fmt.Errorf("embedded: walk chain: %w", storage.ErrClosed)
	}
	if s.dlog != nil {
		// the log is not emptied while it is read
		s.dlog.walkMu.RLock()
		defer s.dlog.walkMu.RUnlock()
	}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return s.readErr("walk chain", ctxOr(ctx, err))
	}
	defer tx.Rollback()
	var head, logSeq, logOff int64
	var hash []byte
	if err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM chain_head WHERE id = 1`).Scan(&head, &hash); err != nil && !errors.Is(err, errNoRows) {
		return s.readErr("walk chain", ctxOr(ctx, err))
	}
	if err := tx.QueryRowContext(ctx, `SELECT off, seq FROM log_state WHERE id = 1`).Scan(&logOff, &logSeq); err != nil && !errors.Is(err, errNoRows) {
		return s.readErr("walk chain", ctxOr(ctx, err))
	}
	// The log's records not materialised in this snapshot, read first (the
	// log only grows meanwhile, and records materialised since stay in it).
	type link struct {
		seq  int64
		id   string
		body []byte
	}
	var logged []link
	if s.dlog != nil {
		err := s.dlog.walkLog(logSeq, func(d *deferredRow) error {
			logged = append(logged, link{d.seq, d.id, d.body})
			return nil
		})
		if err != nil {
			return err
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT c.seq, coalesce(r.id, ''), v.body FROM chain c
		LEFT JOIN resources r ON r.rid = c.rid LEFT JOIN versions v ON v.vid = c.vid
		UNION ALL SELECT seq, id, body FROM deferred ORDER BY 1`)
	if err != nil {
		return s.readErr("walk chain", ctxOr(ctx, err))
	}
	defer rows.Close()
	var last, n int64
	emit := func(l link) error {
		last = l.seq
		n++
		return fn(l.id, l.body)
	}
	for rows.Next() {
		var l link
		if err := rows.Scan(&l.seq, &l.id, &l.body); err != nil {
			return s.readErr("walk chain", err)
		}
		for len(logged) > 0 && logged[0].seq < l.seq {
			if err := emit(logged[0]); err != nil {
				return err
			}
			logged = logged[1:]
		}
		if err := emit(l); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.readErr("walk chain", ctxOr(ctx, err))
	}
	for _, l := range logged {
		if err := emit(l); err != nil {
			return err
		}
	}
	if last != n || last < head {
		return fmt.Errorf("%w: %d links stored, the last at position %d, but the head is at position %d", ErrChainTruncated, n, last, head)
	}
	return nil
}

// readEntries reads the current version of typ/id with its index entries.
func (v *view) readEntries(ctx context.Context, typ, id string) (*fhir.Resource, []search.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	tid, ok := v.lookup(typ)
	if !ok {
		return nil, nil, notFound(typ)
	}
	var rid, vid int64
	var list, rows []byte
	r := &fhir.Resource{Type: typ, ID: id}
	err := v.st.readEntries.QueryRowContext(ctx, tid, id).Scan(&rid, &r.Version, &vid, &r.Body, &list, &rows)
	if errors.Is(err, errNoRows) {
		return nil, nil, notFound(typ)
	}
	if err != nil {
		return nil, nil, ctxOr(ctx, err)
	}
	r.LastUpdated = timeOf(vid)
	if r.Body == nil {
		r.Deleted = true
		return r, nil, fmt.Errorf("embedded: %s: %w", typ, storage.ErrDeleted)
	}
	entries, err := v.entriesOf(list, rows, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded: %s: %w", typ, err)
	}
	return r, entries, nil
}

// entriesOf decodes a resource's entry list, or rebuilds its entries from
// its row list when it has none (written by schema 1).
func (v *view) entriesOf(list, rows []byte, dst []search.Entry) ([]search.Entry, error) {
	if list == nil && len(rows) > 0 {
		return entriesFromRows(v, rows)
	}
	return decodeList(v, list, dst)
}

// ReadEntries implements storage.EntryReader.
func (s *Store) ReadEntries(ctx context.Context, typ, id string) (*fhir.Resource, []search.Entry, error) {
	if s.isClosed() {
		return nil, nil, fmt.Errorf("embedded: read: %w", storage.ErrClosed)
	}
	if err := s.settleFor(ctx, false, typ); err != nil {
		return nil, nil, err
	}
	r, e, err := s.poolView().readEntries(ctx, typ, id)
	return r, e, s.readErr("read", err)
}

// ReadEntries implements storage.EntryReader inside a transaction.
func (t *tx) ReadEntries(ctx context.Context, typ, id string) (*fhir.Resource, []search.Entry, error) {
	if err := t.check(ctx); err != nil {
		return nil, nil, err
	}
	if err := t.w.settleFor(typ); err != nil {
		return nil, nil, err
	}
	return t.w.view().readEntries(context.Background(), typ, id)
}
