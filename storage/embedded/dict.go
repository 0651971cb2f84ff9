package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"sync"
)

type paramKey struct {
	tid  int64
	code string
}

// dictEntries is a set of dictionary entries (committed, or pending in a
// transaction).
type dictEntries struct {
	types   map[string]int64
	params  map[paramKey]int64
	systems map[string]int64
}

func newDictEntries() dictEntries {
	return dictEntries{types: map[string]int64{}, params: map[paramKey]int64{}, systems: map[string]int64{}}
}

func (d *dictEntries) empty() bool {
	return len(d.types) == 0 && len(d.params) == 0 && len(d.systems) == 0
}

func (d *dictEntries) merge(o *dictEntries) {
	maps.Copy(d.types, o.types)
	maps.Copy(d.params, o.params)
	maps.Copy(d.systems, o.systems)
}

// dict caches the interned dictionaries (types, params, systems). Only
// committed entries are in it; the writer keeps new ones pending until its
// transaction commits.
type dict struct {
	mu        sync.RWMutex
	e         dictEntries
	typeNames map[int64]string
}

func loadDict(ctx context.Context, c *sql.Conn) (*dict, error) {
	d := &dict{e: newDictEntries(), typeNames: map[int64]string{}}
	load := func(q string, fn func(rows *sql.Rows) error) error {
		rows, err := c.QueryContext(ctx, q)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := fn(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	err := load("SELECT tid, name FROM types", func(rows *sql.Rows) error {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return err
		}
		d.e.types[name] = id
		d.typeNames[id] = name
		return nil
	})
	if err == nil {
		err = load("SELECT pid, tid, code FROM params", func(rows *sql.Rows) error {
			var id int64
			var k paramKey
			if err := rows.Scan(&id, &k.tid, &k.code); err != nil {
				return err
			}
			d.e.params[k] = id
			return nil
		})
	}
	if err == nil {
		err = load("SELECT sid, uri FROM systems", func(rows *sql.Rows) error {
			var id int64
			var uri string
			if err := rows.Scan(&id, &uri); err != nil {
				return err
			}
			d.e.systems[uri] = id
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("embedded: load dictionaries: %w", err)
	}
	return d, nil
}

func (d *dict) typeID(name string) (int64, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	id, ok := d.e.types[name]
	return id, ok
}

func (d *dict) typeName(id int64) string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.typeNames[id]
}

func (d *dict) paramID(tid int64, code string) (int64, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	id, ok := d.e.params[paramKey{tid, code}]
	return id, ok
}

func (d *dict) systemID(uri string) (int64, bool) {
	if uri == "" {
		return 0, true
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	id, ok := d.e.systems[uri]
	return id, ok
}

// commit adds entries whose transaction committed.
func (d *dict) commit(e *dictEntries) {
	if e.empty() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.e.merge(e)
	for name, id := range e.types {
		d.typeNames[id] = name
	}
}
