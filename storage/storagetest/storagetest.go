// Package storagetest is the contract suite that every storage backend must
// pass: Run exercises a storage.Store (CRUD, versions, preconditions,
// history, transactions, concurrency, the search index), RunRecords a
// storage.Records. The cases are defined once here, so the embedded store
// and MongoDB are held to the same semantics.
//
// A backend's test does
//
//	storagetest.Run(t, func(t *testing.T) storage.Store { … a fresh, empty store … })
//
// Each case gets its own store from open and must leave closing it to
// t.Cleanup. Groups of cases (store, search) are plain slices of Case, so
// search conformance cases are added as another group.
package storagetest

import (
	"context"
	"testing"

	"regie/storage"
)

// Case is one named contract case.
type Case struct {
	Name string
	Fn   func(t *testing.T, s storage.Store)
}

// RecordsCase is one named contract case of storage.Records.
type RecordsCase struct {
	Name string
	Fn   func(t *testing.T, r storage.Records)
}

// Run runs every Store case, each against a fresh store from open.
func Run(t *testing.T, open func(t *testing.T) storage.Store) {
	t.Helper()
	groups := [][]Case{StoreCases, IndexCases, SearchCases}
	for _, g := range groups {
		for _, c := range g {
			t.Run(c.Name, func(t *testing.T) {
				c.Fn(t, open(t))
			})
		}
	}
}

// RunRecords runs every Records case, each against a fresh, empty Records
// from open.
func RunRecords(t *testing.T, open func(t *testing.T) storage.Records) {
	t.Helper()
	for _, c := range RecordsCases {
		t.Run(c.Name, func(t *testing.T) {
			c.Fn(t, open(t))
		})
	}
}

// ctx returns a context canceled when the test ends.
func ctx(t *testing.T) context.Context { return t.Context() }
