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

// Check runs SQLite's integrity check and returns an error describing the
// first problems it finds.
func (s *Store) Check(ctx context.Context) error {
	if s.isClosed() {
		return fmt.Errorf("embedded: check: %w", storage.ErrClosed)
	}
	rows, err := s.rdb.QueryContext(ctx, "PRAGMA integrity_check(20)")
	if err != nil {
		return fmt.Errorf("embedded: check: %w", ctxOr(ctx, err))
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("embedded: check: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("embedded: check: %w", ctxOr(ctx, err))
	}
	if len(problems) > 0 {
		return fmt.Errorf("embedded: integrity check failed: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Sizes is the space the database uses, in bytes, by purpose.
type Sizes struct {
	// Resources: the resources and versions tables and their indexes
	// (everything needed without search).
	Resources int64
	// Index: the search index (idx_* tables, the per-resource entry lists,
	// the parameter and system dictionaries).
	Index int64
	// Other: records, the type dictionary, the schema and free pages.
	Other int64
	// Tables maps every table and index to its size.
	Tables map[string]int64
}

// Sizes reports how much space resources and the search index take, from
// SQLite's dbstat table (it reads every page: slow on a large database).
func (s *Store) Sizes(ctx context.Context) (*Sizes, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("embedded: sizes: %w", storage.ErrClosed)
	}
	rows, err := s.rdb.QueryContext(ctx, "SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
	if err != nil {
		return nil, fmt.Errorf("embedded: sizes: %w", ctxOr(ctx, err))
	}
	defer rows.Close()
	out := &Sizes{Tables: map[string]int64{}}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, fmt.Errorf("embedded: sizes: %w", err)
		}
		out.Tables[name] = n
		switch {
		case strings.HasPrefix(name, "idx_"), name == "entries",
			strings.HasPrefix(name, "params"), strings.HasPrefix(name, "systems"),
			name == "sqlite_autoindex_params_1", name == "sqlite_autoindex_systems_1":
			out.Index += n
		case strings.HasPrefix(name, "resources"), strings.HasPrefix(name, "versions"):
			out.Resources += n
		default:
			out.Other += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("embedded: sizes: %w", ctxOr(ctx, err))
	}
	var free, pageSize int64
	if err := s.rdb.QueryRowContext(ctx, "PRAGMA freelist_count").Scan(&free); err == nil {
		if err := s.rdb.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err == nil {
			out.Other += free * pageSize
		}
	}
	return out, nil
}

// reindexBatch is how many resources Reindex handles per transaction.
const reindexBatch = 500

// Reindex recomputes the search index of every current resource with fn
// (after the search parameter definitions changed) and returns how many
// resources it reindexed. It runs in batches beside normal traffic: a
// resource written again while its batch is computed keeps the entries of
// that newer write.
func (s *Store) Reindex(ctx context.Context, fn func(*fhir.Resource) ([]search.Entry, error)) (int, error) {
	type item struct {
		rid, tid int64
		res      *fhir.Resource
		entries  []search.Entry
	}
	// Deferred writes carry entries of the indexer that wrote them.
	if err := s.Settle(ctx); err != nil {
		return 0, err
	}
	var after int64
	total := 0
	for {
		if s.isClosed() {
			return total, fmt.Errorf("embedded: reindex: %w", storage.ErrClosed)
		}
		rows, err := s.rdb.QueryContext(ctx, `SELECT r.rid, r.tid, r.id, r.version, r.vid, v.body
			FROM resources r JOIN versions v ON v.vid = r.vid
			WHERE r.rid > ? AND r.deleted = 0 ORDER BY r.rid LIMIT ?`, after, reindexBatch)
		if err != nil {
			return total, fmt.Errorf("embedded: reindex: %w", ctxOr(ctx, err))
		}
		var items []item
		for rows.Next() {
			var it item
			var vid int64
			it.res = &fhir.Resource{}
			if err := rows.Scan(&it.rid, &it.tid, &it.res.ID, &it.res.Version, &vid, &it.res.Body); err != nil {
				rows.Close()
				return total, fmt.Errorf("embedded: reindex: %w", err)
			}
			it.res.Type = s.dict.typeName(it.tid)
			it.res.LastUpdated = time.UnixMicro(vid).UTC()
			items = append(items, it)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return total, fmt.Errorf("embedded: reindex: %w", ctxOr(ctx, err))
		}
		if len(items) == 0 {
			return total, nil
		}
		after = items[len(items)-1].rid
		for i := range items {
			e, err := fn(items[i].res)
			if err != nil {
				return total, fmt.Errorf("embedded: reindex %s: %w", items[i].res.Type, err)
			}
			items[i].entries = e
		}
		n := 0
		err = s.submit(ctx, func(w *wtx) error {
			n = 0
			for _, it := range items {
				var version int64
				var deleted bool
				err := w.st.verByRid.QueryRow(it.rid).Scan(&version, &deleted)
				if errors.Is(err, errNoRows) || (err == nil && (version != it.res.Version || deleted)) {
					continue
				}
				if err != nil {
					return err
				}
				if err := w.replaceRows(it.tid, it.rid, true, it.entries); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("embedded: reindex: %w", err)
		}
		total += n
	}
}
