package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
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
	// Reverse maps, for decoding entry lists and for searches over every
	// type: parameter id → (type, code), system id → URI, code → ids.
	paramKeys  map[int64]paramKey
	systemURIs map[int64]string
	byCode     map[string][]paramRef
}

// paramRef is a parameter id with its resource type.
type paramRef struct{ tid, pid int64 }

func loadDict(ctx context.Context, c *sql.Conn) (*dict, error) {
	d := &dict{e: newDictEntries(), typeNames: map[int64]string{}, paramKeys: map[int64]paramKey{},
		systemURIs: map[int64]string{}, byCode: map[string][]paramRef{}}
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
			d.addParam(k, id)
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
			d.systemURIs[id] = uri
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
	maps.Copy(d.e.types, e.types)
	maps.Copy(d.e.systems, e.systems)
	for name, id := range e.types {
		d.typeNames[id] = name
	}
	for k, id := range e.params {
		d.addParam(k, id)
	}
	for uri, id := range e.systems {
		d.systemURIs[id] = uri
	}
}

// addParam records a parameter id; d.mu is held (or d is not shared yet).
func (d *dict) addParam(k paramKey, id int64) {
	if _, ok := d.e.params[k]; ok {
		return
	}
	d.e.params[k] = id
	d.paramKeys[id] = k
	d.byCode[k.code] = append(d.byCode[k.code], paramRef{k.tid, id})
}

func (d *dict) paramKey(pid int64) (paramKey, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	k, ok := d.paramKeys[pid]
	return k, ok
}

func (d *dict) systemURI(sid int64) (string, bool) {
	if sid == 0 {
		return "", true
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	u, ok := d.systemURIs[sid]
	return u, ok
}

// paramsByCode returns the parameter ids of code over every type.
func (d *dict) paramsByCode(code string) []paramRef {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return slices.Clone(d.byCode[code])
}

// typeIDs returns the ids of every known resource type.
func (d *dict) typeIDs() []int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	ids := make([]int64, 0, len(d.typeNames))
	for id := range d.typeNames {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
