package embedded

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"regie/storage"
)

// Records live in the table records (kind, key, value, version, expires);
// an expired row is treated as absent and purged periodically.

func expiresOf(r *storage.Record) int64 {
	if r.Expires.IsZero() {
		return 0
	}
	return r.Expires.UnixMicro()
}

func (s *Store) live(expires int64) bool {
	return expires == 0 || expires > s.now().UnixMicro()
}

func (s *Store) getRecord(ctx context.Context, st *stmts, kind, key string) (*storage.Record, error) {
	r := &storage.Record{Kind: kind, Key: key}
	var expires int64
	err := st.getRec.QueryRowContext(ctx, kind, key).Scan(&r.Value, &r.Version, &expires)
	if errors.Is(err, errNoRows) || (err == nil && !s.live(expires)) {
		return nil, fmt.Errorf("embedded: record %s: %w", kind, storage.ErrNotFound)
	}
	if err != nil {
		return nil, ctxOr(ctx, err)
	}
	if expires != 0 {
		r.Expires = time.UnixMicro(expires)
	}
	if r.Value == nil {
		r.Value = []byte{}
	}
	return r, nil
}

func (w *wtx) putRecord(ctx context.Context, r *storage.Record, ifVersion int64) (*storage.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cur, err := w.s.getRecord(context.Background(), w.st, r.Kind, r.Key)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	switch {
	case ifVersion == 0 && cur != nil:
		return nil, fmt.Errorf("embedded: record %s: %w", r.Kind, storage.ErrExists)
	case ifVersion > 0 && (cur == nil || cur.Version != ifVersion):
		return nil, fmt.Errorf("embedded: record %s: %w", r.Kind, storage.ErrVersionConflict)
	}
	out := &storage.Record{Kind: r.Kind, Key: r.Key, Value: append([]byte{}, r.Value...), Version: 1, Expires: r.Expires}
	if cur != nil {
		out.Version = cur.Version + 1
	}
	if _, err := w.st.putRec.Exec(r.Kind, r.Key, out.Value, out.Version, expiresOf(r)); err != nil {
		return nil, fmt.Errorf("embedded: record %s: %w", r.Kind, err)
	}
	return out, nil
}

func (w *wtx) deleteRecord(ctx context.Context, kind, key string, ifVersion int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ifVersion > 0 {
		cur, err := w.s.getRecord(context.Background(), w.st, kind, key)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if cur == nil || cur.Version != ifVersion {
			return fmt.Errorf("embedded: record %s: %w", kind, storage.ErrVersionConflict)
		}
	}
	if _, err := w.st.delRec.Exec(kind, key); err != nil {
		return fmt.Errorf("embedded: record %s: %w", kind, err)
	}
	return nil
}

func (s *Store) listRecords(ctx context.Context, db preparer, kind, prefix string, fn func(*storage.Record) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q := `SELECT key, value, version, expires FROM records WHERE kind = ? AND key >= ?`
	args := []any{kind, prefix}
	if prefix != "" {
		q += ` AND key < ?`
		args = append(args, prefix+"\xff")
	}
	q += ` ORDER BY key`
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return ctxOr(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		r := &storage.Record{Kind: kind}
		var expires int64
		if err := rows.Scan(&r.Key, &r.Value, &r.Version, &expires); err != nil {
			return err
		}
		if !s.live(expires) || !strings.HasPrefix(r.Key, prefix) {
			continue
		}
		if expires != 0 {
			r.Expires = time.UnixMicro(expires)
		}
		if r.Value == nil {
			r.Value = []byte{}
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return ctxOr(ctx, rows.Err())
}

// GetRecord implements storage.Records.
func (s *Store) GetRecord(ctx context.Context, kind, key string) (*storage.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, fmt.Errorf("embedded: record: %w", storage.ErrClosed)
	}
	r, err := s.getRecord(ctx, s.rst, kind, key)
	return r, s.readErr("record", err)
}

// PutRecord implements storage.Records.
func (s *Store) PutRecord(ctx context.Context, r *storage.Record, ifVersion int64) (*storage.Record, error) {
	var out *storage.Record
	err := s.submit(ctx, func(w *wtx) error {
		var err error
		out, err = w.putRecord(ctx, r, ifVersion)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteRecord implements storage.Records.
func (s *Store) DeleteRecord(ctx context.Context, kind, key string, ifVersion int64) error {
	return s.submit(ctx, func(w *wtx) error { return w.deleteRecord(ctx, kind, key, ifVersion) })
}

// ListRecords implements storage.Records.
func (s *Store) ListRecords(ctx context.Context, kind, prefix string, fn func(*storage.Record) error) error {
	if s.isClosed() {
		return fmt.Errorf("embedded: records: %w", storage.ErrClosed)
	}
	err := s.listRecords(ctx, s.rdb, kind, prefix, fn)
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && s.isClosed() {
		return fmt.Errorf("embedded: records: %w", storage.ErrClosed)
	}
	return err
}

func (t *tx) GetRecord(ctx context.Context, kind, key string) (*storage.Record, error) {
	if err := t.check(ctx); err != nil {
		return nil, err
	}
	return t.w.s.getRecord(context.Background(), t.w.st, kind, key)
}

func (t *tx) PutRecord(ctx context.Context, r *storage.Record, ifVersion int64) (*storage.Record, error) {
	if err := t.check(ctx); err != nil {
		return nil, err
	}
	return t.w.putRecord(ctx, r, ifVersion)
}

func (t *tx) DeleteRecord(ctx context.Context, kind, key string, ifVersion int64) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	return t.w.deleteRecord(ctx, kind, key, ifVersion)
}

func (t *tx) ListRecords(ctx context.Context, kind, prefix string, fn func(*storage.Record) error) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	return t.w.s.listRecords(context.Background(), t.w.st.db, kind, prefix, fn)
}

// purger deletes expired records every interval until Close.
func (s *Store) purger(every time.Duration) {
	defer s.bg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			n, err := s.PurgeExpired(context.Background())
			if err != nil && !errors.Is(err, storage.ErrClosed) {
				s.log.Error("embedded: purge expired records", "err", err)
			} else if n > 0 {
				s.log.Debug("embedded: purged expired records", "count", n)
			}
		}
	}
}

// PurgeExpired deletes expired records (at most 10,000 per call) and
// returns how many it deleted.
func (s *Store) PurgeExpired(ctx context.Context) (int64, error) {
	var n int64
	err := s.submit(ctx, func(w *wtx) error {
		res, err := w.s.wconn.ExecContext(context.Background(), `DELETE FROM records WHERE (kind, key) IN
			(SELECT kind, key FROM records WHERE expires > 0 AND expires <= ? LIMIT 10000)`, s.now().UnixMicro())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}
