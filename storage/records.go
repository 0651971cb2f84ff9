package storage

import (
	"context"
	"time"
)

// Records is a small versioned key-value store for state that is not a FHIR
// resource: accounts, sessions, tokens, signing keys, one-time codes, rate
// limit counters. Every backend that implements Store implements Records in
// the same database, so both survive and move together. A backend's Tx may
// implement Records too (detect it with a type assertion): record writes made
// through it commit or roll back with the transaction's resource writes.
type Records interface {
	// GetRecord returns the record kind/key, or an error wrapping
	// ErrNotFound (also when it has expired).
	GetRecord(ctx context.Context, kind, key string) (*Record, error)
	// PutRecord writes r. ifVersion is the precondition: AnyVersion writes
	// unconditionally, 0 requires that no live record exists (else
	// ErrExists), n > 0 requires the current version to be n (else
	// ErrVersionConflict). It returns the record as stored, with its new
	// Version.
	PutRecord(ctx context.Context, r *Record, ifVersion int64) (*Record, error)
	// DeleteRecord removes kind/key; ifVersion as for PutRecord (0 is
	// treated as AnyVersion). Deleting a missing record is not an error.
	DeleteRecord(ctx context.Context, kind, key string, ifVersion int64) error
	// ListRecords calls fn for every live record of kind whose key starts
	// with prefix, in key order, until fn returns an error.
	ListRecords(ctx context.Context, kind, prefix string, fn func(*Record) error) error
}

// AnyVersion as the precondition of PutRecord writes unconditionally.
const AnyVersion int64 = -1

// Record is one entry of Records.
type Record struct {
	Kind, Key string
	Value     []byte
	// Version starts at 1 and grows by one with every put.
	Version int64
	// Expires, when not zero, is when the record stops existing.
	Expires time.Time
}
