// Package engine is Regie's one interaction engine: create, read, vread,
// update, patch, delete, history, search, batch and transaction, each
// validated and indexed the same way whether the request came from the REST
// API or the portal. Nothing else touches storage. It speaks in domain
// values and errors; package server turns them into HTTP and
// OperationOutcomes.
package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// Indexer extracts the search index entries of a resource.
type Indexer interface {
	Index(resourceType string, body []byte) ([]search.Entry, error)
}

// Config holds what an Engine is built from.
type Config struct {
	Definitions *fhir.Definitions
	Validator   *fhir.Validator
	Store       storage.Store
	// Indexer extracts search index entries on write; nil indexes nothing.
	Indexer Indexer
	Logger  *slog.Logger
	// NewID returns a fresh logical id for a create; nil uses random UUIDs.
	NewID func() string
	// Parser parses search requests; nil builds one without a base URL.
	Parser *search.Parser
}

// Validate reports a missing part of the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Definitions == nil:
		return errors.New("engine: no definitions")
	case c.Validator == nil:
		return errors.New("engine: no validator")
	case c.Store == nil:
		return errors.New("engine: no store")
	}
	return nil
}

// Engine runs FHIR interactions. It is safe for concurrent use.
type Engine struct {
	defs   *fhir.Definitions
	val    *fhir.Validator
	store  storage.Store
	idx    Indexer
	log    *slog.Logger
	newID  func() string
	parser *search.Parser
}

// New returns an Engine.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{defs: cfg.Definitions, val: cfg.Validator, store: cfg.Store, idx: cfg.Indexer, log: cfg.Logger, newID: cfg.NewID, parser: cfg.Parser}
	if e.parser == nil {
		e.parser = search.NewParser(cfg.Definitions, search.Config{})
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.newID == nil {
		e.newID = NewUUID
	}
	return e, nil
}

// Definitions returns the definitions the engine runs on.
func (e *Engine) Definitions() *fhir.Definitions { return e.defs }

// NewUUID returns a random (version 4) UUID in its lower-case text form.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Result is the outcome of a write.
type Result struct {
	// Resource is the version written (for a delete: the deletion, or nil
	// when there was nothing to delete).
	Resource *fhir.Resource
	// Created is set when the write created the resource.
	Created bool
}

// CheckType returns an error unless typ is a concrete resource type.
func (e *Engine) CheckType(typ string) error {
	if !e.defs.IsResourceType(typ) {
		return &UnknownTypeError{Type: typ}
	}
	return nil
}

// UnknownTypeError reports a resource type that R4 does not define.
type UnknownTypeError struct{ Type string }

func (e *UnknownTypeError) Error() string { return "engine: unknown resource type" }

func checkID(typ, id string) error {
	if !fhir.ValidID(id) {
		return fhir.Invalid(fhir.IssueValue, typ+".id", `the id must match [A-Za-z0-9\-\.]{1,64}`, "")
	}
	return nil
}

// ParseVersion reads a version id as given in a URL or in If-Match
// (W/"3", "3" or 3).
func ParseVersion(s string) (int64, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	s = strings.Trim(s, `"`)
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 {
		return 0, fhir.Invalid(fhir.IssueValue, "versionId", "a version id is a positive integer", "")
	}
	return v, nil
}

// Read returns the current version of typ/id.
func (e *Engine) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	if err := e.CheckType(typ); err != nil {
		return nil, err
	}
	if err := checkID(typ, id); err != nil {
		return nil, err
	}
	return e.store.Read(ctx, typ, id)
}

// VRead returns version vid of typ/id.
func (e *Engine) VRead(ctx context.Context, typ, id, vid string) (*fhir.Resource, error) {
	if err := e.CheckType(typ); err != nil {
		return nil, err
	}
	if err := checkID(typ, id); err != nil {
		return nil, err
	}
	v, err := ParseVersion(vid)
	if err != nil {
		return nil, storage.ErrNotFound
	}
	return e.store.VRead(ctx, typ, id, v)
}

// prepared is a validated, indexed resource ready to write.
type prepared struct {
	typ, id string
	body    []byte
	index   []search.Entry
}

// prepare validates body as a resource of type typ, and indexes it.
func (e *Engine) prepare(typ string, body []byte) (*prepared, error) {
	if err := e.CheckType(typ); err != nil {
		return nil, err
	}
	p, err := e.val.Validate(body)
	if err != nil {
		return nil, err
	}
	if p.Type != typ {
		return nil, fhir.Invalid(fhir.IssueInvalid, "resourceType",
			"the resourceType of the body does not match the type in the URL",
			fmt.Sprintf("body has %q, URL has %q", p.Type, typ))
	}
	r := &prepared{typ: p.Type, id: p.ID, body: p.Body}
	if e.idx != nil {
		r.index, err = e.idx.Index(p.Type, p.Body)
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Create stores body as a new resource of type typ with a server-assigned id
// (an id in the body is ignored, as the specification requires).
func (e *Engine) Create(ctx context.Context, typ string, body []byte) (*Result, error) {
	p, err := e.prepare(typ, body)
	if err != nil {
		return nil, err
	}
	return e.write(ctx, e.store, &storage.Write{Type: typ, ID: e.newID(), Body: p.body, Index: p.index, CreateOnly: true})
}

// Update stores body as the new version of typ/id, creating it when it does
// not exist (update as create). ifMatch, when not empty, is the version the
// client expects to replace.
func (e *Engine) Update(ctx context.Context, typ, id string, body []byte, ifMatch string) (*Result, error) {
	w, err := e.updateWrite(typ, id, body, ifMatch)
	if err != nil {
		return nil, err
	}
	return e.write(ctx, e.store, w)
}

func (e *Engine) updateWrite(typ, id string, body []byte, ifMatch string) (*storage.Write, error) {
	if err := e.CheckType(typ); err != nil {
		return nil, err
	}
	if err := checkID(typ, id); err != nil {
		return nil, err
	}
	p, err := e.prepare(typ, body)
	if err != nil {
		return nil, err
	}
	if p.id == "" {
		return nil, fhir.Invalid(fhir.IssueRequired, typ+".id", "an update needs the id in the body", "")
	}
	if p.id != id {
		return nil, fhir.Invalid(fhir.IssueInvalid, typ+".id", "the id in the body does not match the id in the URL",
			fmt.Sprintf("body has %q, URL has %q", p.id, id))
	}
	w := &storage.Write{Type: typ, ID: id, Body: p.body, Index: p.index}
	if ifMatch != "" {
		if w.IfMatch, err = ParseVersion(ifMatch); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Delete deletes typ/id. Deleting what does not exist succeeds.
func (e *Engine) Delete(ctx context.Context, typ, id, ifMatch string) (*Result, error) {
	if err := e.CheckType(typ); err != nil {
		return nil, err
	}
	if err := checkID(typ, id); err != nil {
		return nil, err
	}
	w := &storage.Write{Type: typ, ID: id, Delete: true}
	if ifMatch != "" {
		v, err := ParseVersion(ifMatch)
		if err != nil {
			return nil, err
		}
		w.IfMatch = v
	}
	return e.write(ctx, e.store, w)
}

// Patch applies a JSON Patch (RFC 6902) to the current version of typ/id.
// Without ifMatch it still never loses a concurrent update: the patch is
// applied to the version it read, and re-applied if another write came first.
func (e *Engine) Patch(ctx context.Context, typ, id string, patch []byte, ifMatch string) (*Result, error) {
	if err := e.CheckType(typ); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		w, err := e.patchWrite(ctx, e.store, typ, id, patch, ifMatch)
		if err != nil {
			return nil, err
		}
		res, err := e.write(ctx, e.store, w)
		if errors.Is(err, storage.ErrVersionConflict) && ifMatch == "" && attempt < 5 {
			continue
		}
		return res, err
	}
}

func decodePatch(patch []byte) (jsonpatch.Patch, error) {
	ops, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, fhir.Invalid(fhir.IssueStructure, "", "the body is not a valid JSON Patch document", err.Error())
	}
	return ops, nil
}

type writer interface {
	Write(ctx context.Context, w *storage.Write) (*fhir.Resource, error)
}

func (e *Engine) write(ctx context.Context, s writer, w *storage.Write) (*Result, error) {
	r, err := s.Write(ctx, w)
	if err != nil {
		return nil, err
	}
	res := &Result{Resource: r}
	if r != nil && !w.Delete && (r.Version == 1 || w.CreateOnly) {
		res.Created = true
	}
	if r != nil && !w.Delete && !res.Created {
		// an update of a deleted resource re-creates it
		if prev, err := s.(storage.Reader).VRead(ctx, r.Type, r.ID, r.Version-1); err != nil && errors.Is(err, storage.ErrDeleted) || (prev != nil && prev.Deleted) {
			res.Created = true
		}
	}
	return res, nil
}

// History returns a page of versions: of one resource, of a type, or of
// everything.
func (e *Engine) History(ctx context.Context, q *storage.HistoryQuery) (*storage.Page, error) {
	if q.Type != "" {
		if err := e.CheckType(q.Type); err != nil {
			return nil, err
		}
	}
	if q.ID != "" {
		if err := checkID(q.Type, q.ID); err != nil {
			return nil, err
		}
		// the history of a resource that never existed is a 404
		if _, err := e.store.Read(ctx, q.Type, q.ID); err != nil && !errors.Is(err, storage.ErrDeleted) {
			return nil, err
		}
	}
	return e.store.History(ctx, q)
}
