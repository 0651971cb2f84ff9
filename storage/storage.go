// Package storage defines how FHIR resources, their history and their search
// index are persisted: one Store interface that every backend implements
// (storage/embedded, the default, and storage/mongo), the sentinel errors
// they return, and the contract suite in storage/storagetest that every
// backend must pass. Stores know the search query tree and index entries of
// package fhir/search, never HTTP.
package storage

import (
	"context"
	"errors"
	"time"

	"regie/fhir"
	"regie/fhir/search"
)

// Errors returned (wrapped) by stores. Test them with errors.Is.
var (
	// ErrNotFound: the resource or version never existed.
	ErrNotFound = errors.New("storage: not found")
	// ErrDeleted: the resource's current version is a deletion.
	ErrDeleted = errors.New("storage: deleted")
	// ErrVersionConflict: an If-Match precondition did not hold.
	ErrVersionConflict = errors.New("storage: version conflict")
	// ErrExists: a create-only write found the resource present.
	ErrExists = errors.New("storage: already exists")
	// ErrInvalidCursor: a paging cursor was not issued by this store, or
	// refers to a search it no longer matches.
	ErrInvalidCursor = errors.New("storage: invalid cursor")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("storage: closed")
	// ErrUnsupported: the store cannot answer this query (an unsupported
	// parameter type, modifier or combination).
	ErrUnsupported = errors.New("storage: unsupported")
	// ErrImmutable: the resource was written with Write.Chain (the audit
	// trail) and can never be updated or deleted.
	ErrImmutable = errors.New("storage: immutable")
)

// Store persists FHIR resources with full version history and a search index.
// Implementations are safe for concurrent use, return promptly with ctx.Err()
// once ctx is done, and make every acknowledged write durable.
type Store interface {
	Reader

	// Write performs one create, update or delete and returns the new
	// version as stored. It is a one-write transaction.
	Write(ctx context.Context, w *Write) (*fhir.Resource, error)

	// Transact runs fn in one atomic, serialisable transaction: either every
	// write fn made is committed, or none is. fn may be called more than once
	// if the store retries; it must not have effects outside tx. If fn
	// returns an error, nothing is committed and Transact returns that error.
	Transact(ctx context.Context, fn func(tx Tx) error) error

	// Close releases the store; writes still queued are finished first.
	Close() error
}

// Reader is the read side shared by a Store and a transaction.
type Reader interface {
	// Read returns the current version of typ/id: an error wrapping
	// ErrNotFound if it never existed, ErrDeleted (with the deletion
	// version as the returned resource) if its latest version is a deletion.
	Read(ctx context.Context, typ, id string) (*fhir.Resource, error)
	// VRead returns one version. A version that is a deletion is returned
	// with Deleted set and an error wrapping ErrDeleted.
	VRead(ctx context.Context, typ, id string, version int64) (*fhir.Resource, error)
	// History returns versions, newest first.
	History(ctx context.Context, q *HistoryQuery) (*Page, error)
	// Search runs a search query.
	Search(ctx context.Context, q *search.Query) (*Page, error)
}

// Tx is a transaction. Reads see the transaction's own writes.
type Tx interface {
	Reader
	Write(ctx context.Context, w *Write) (*fhir.Resource, error)
}

// Write is one change to a resource.
type Write struct {
	Type, ID string
	// Body is the resource's compact JSON (as returned by
	// fhir.Validator.Validate). The store stamps id, meta.versionId and
	// meta.lastUpdated into it. Nil for a delete.
	Body []byte
	// Index holds the search index entries of Body.
	Index []search.Entry
	// Delete marks the resource deleted (a new version without body).
	// Deleting a resource that does not exist or is already deleted is not
	// an error and writes nothing; the returned resource is nil then.
	Delete bool
	// IfMatch, when non-zero, requires the current version to be IfMatch,
	// else the write fails with ErrVersionConflict.
	IfMatch int64
	// CreateOnly fails the write with ErrExists if the resource exists
	// (a deleted resource does not count as existing).
	CreateOnly bool
	// Chain, when set, appends this write to the store's hash chain (the
	// audit trail). Inside the transaction, after stamping id and meta, the
	// store calls Chain with the hash of the previous chained write (nil for
	// the first) and the stamped body; it stores the sealed body Chain
	// returns, and hash becomes the head of the chain, in the same
	// transaction. Chained writes are never updated or deleted: a later
	// write of the resource fails with ErrImmutable. A chained write must
	// create its resource (ErrExists if the id was ever used).
	Chain func(prev, stamped []byte) (sealed, hash []byte, err error)
	// Defer, on a chained create, lets the store append the sealed write
	// to a log and store it as a resource later, in bulk: the write is
	// durable and chained when it returns, and every read, search and
	// history that starts after it returned sees it (the store finishes
	// what it deferred first), so it behaves as an ordinary chained write
	// that costs the writer less. A store may ignore it.
	Defer bool
}

// HistoryQuery selects versions for _history.
type HistoryQuery struct {
	// Type and ID narrow the history to a type or one resource; both empty
	// means system-level history.
	Type, ID string
	// Since keeps versions last updated at or after this instant (zero: all).
	Since time.Time
	// At keeps, per resource, the version current at this instant (zero: all versions).
	At time.Time
	// Count is the page size (0 means the store's default).
	Count int
	// Cursor continues a previous page.
	Cursor string
	// Constraint limits the history to resources whose current version
	// matches it (the access policy); nil means no constraint.
	Constraint search.Expr
}

// Page is one page of search or history results.
type Page struct {
	// Resources are the matches (for history: versions, deletions included
	// with Deleted set and no Body).
	Resources []*fhir.Resource
	// Included are resources added by _include and _revinclude.
	Included []*fhir.Resource
	// Entries and IncludedEntries are, for a store that keeps each
	// resource's index entries (EntryReader), the entries of Resources and
	// Included, in the same order (an element is nil for a resource
	// without entries), so that a caller deciding on entries (the access
	// policy, the audit) need not index the bodies again. Both are nil
	// for a store that does not keep them, and for history pages.
	Entries, IncludedEntries [][]search.Entry
	// Total is the number of matches of the whole search, or -1 if not counted.
	Total int
	// Next and Prev are cursors for the neighbouring pages ("" when none).
	Next, Prev string
}

// DefaultCount is the page size used when a query gives none.
const DefaultCount = 50

// MaxCount is the largest page size a store returns.
const MaxCount = 1000

// EntryReader is implemented by stores that keep each resource's search
// index entries and can return them with the resource, so that a caller
// deciding access on index entries (the access policy) need not index the
// body again. Detect it with a type assertion on a Store or Tx.
type EntryReader interface {
	// ReadEntries is Read, plus the index entries stored with the current
	// version (as given in Write.Index; nil for a deletion). Errors as Read.
	ReadEntries(ctx context.Context, typ, id string) (*fhir.Resource, []search.Entry, error)
}
