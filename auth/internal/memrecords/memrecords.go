// Package memrecords is a minimal in-memory storage.Records for the auth
// tests, used until the embedded store's Records implementation lands. It
// implements the documented contract (versions, create-only and CAS puts,
// expiry, ordered prefix listing) and nothing more.
package memrecords

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"regie/storage"
)

// Records is an in-memory storage.Records.
type Records struct {
	mu  sync.Mutex
	m   map[string]storage.Record
	now func() time.Time
}

// New returns an empty store; now may be nil (time.Now).
func New(now func() time.Time) *Records {
	if now == nil {
		now = time.Now
	}
	return &Records{m: map[string]storage.Record{}, now: now}
}

var _ storage.Records = (*Records)(nil)

func (s *Records) live(k string) (storage.Record, bool) {
	r, ok := s.m[k]
	if ok && !r.Expires.IsZero() && !s.now().Before(r.Expires) {
		delete(s.m, k)
		return storage.Record{}, false
	}
	return r, ok
}

// GetRecord implements storage.Records.
func (s *Records) GetRecord(ctx context.Context, kind, key string) (*storage.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.live(kind + "\x00" + key)
	if !ok {
		return nil, fmt.Errorf("memrecords: %s: %w", kind, storage.ErrNotFound)
	}
	r.Value = append([]byte(nil), r.Value...)
	return &r, nil
}

// PutRecord implements storage.Records.
func (s *Records) PutRecord(ctx context.Context, r *storage.Record, ifVersion int64) (*storage.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := r.Kind + "\x00" + r.Key
	cur, ok := s.live(k)
	switch {
	case ifVersion == 0 && ok:
		return nil, fmt.Errorf("memrecords: %s: %w", r.Kind, storage.ErrExists)
	case ifVersion > 0 && (!ok || cur.Version != ifVersion):
		return nil, fmt.Errorf("memrecords: %s: %w", r.Kind, storage.ErrVersionConflict)
	}
	n := *r
	n.Value = append([]byte(nil), r.Value...)
	n.Version = 1
	if ok {
		n.Version = cur.Version + 1
	}
	s.m[k] = n
	out := n
	return &out, nil
}

// DeleteRecord implements storage.Records.
func (s *Records) DeleteRecord(ctx context.Context, kind, key string, ifVersion int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := kind + "\x00" + key
	cur, ok := s.live(k)
	if !ok {
		return nil
	}
	if ifVersion > 0 && cur.Version != ifVersion {
		return fmt.Errorf("memrecords: %s: %w", kind, storage.ErrVersionConflict)
	}
	delete(s.m, k)
	return nil
}

// ListRecords implements storage.Records.
func (s *Records) ListRecords(ctx context.Context, kind, prefix string, fn func(*storage.Record) error) error {
	s.mu.Lock()
	var out []storage.Record
	for k := range s.m {
		if strings.HasPrefix(k, kind+"\x00"+prefix) {
			if r, ok := s.live(k); ok {
				r.Value = append([]byte(nil), r.Value...)
				out = append(out, r)
			}
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	for i := range out {
		if err := fn(&out[i]); err != nil {
			return err
		}
	}
	return nil
}
