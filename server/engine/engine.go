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

	"regie/auth"
	"regie/auth/audit"
	"regie/auth/policy"
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
	// Policy decides who may do what; nil allows everything (tools and
	// tests of the REST layer). With a policy every request needs a
	// principal in its context (auth.WithPrincipal).
	Policy *policy.Policy
	// Audit makes the engine write one AuditEvent per interaction: in the
	// same transaction as a write, and before answering a read.
	Audit bool
	// Notifier tells clients about break-the-glass access (may be nil).
	Notifier Notifier
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
	policy *policy.Policy
	audit  bool
	notify Notifier
}

// New returns an Engine.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{defs: cfg.Definitions, val: cfg.Validator, store: cfg.Store, idx: cfg.Indexer, log: cfg.Logger, newID: cfg.NewID, parser: cfg.Parser,
		policy: cfg.Policy, audit: cfg.Audit, notify: cfg.Notifier}
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

// SetNotifier sets how clients are told about break-the-glass access; it
// is set after construction because the notifier (the identity broker's
// mailer) needs the engine itself.
func (e *Engine) SetNotifier(n Notifier) { e.notify = n }

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
	o, err := e.begin(ctx, "read", audit.ActionRead)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	if err := e.CheckType(typ); err != nil {
		return nil, o.finish(ctx, err)
	}
	if err := checkID(typ, id); err != nil {
		return nil, o.finish(ctx, err)
	}
	r, _, err := e.visible(ctx, o, e.store, typ, id, auth.InteractionRead)
	if r != nil {
		o.ev.Resource = r.Type + "/" + r.ID + "/_history/" + r.VersionID()
	}
	return r, o.finish(ctx, err)
}

// VRead returns version vid of typ/id.
func (e *Engine) VRead(ctx context.Context, typ, id, vid string) (*fhir.Resource, error) {
	o, err := e.begin(ctx, "vread", audit.ActionRead)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	r, err := e.vread(ctx, o, typ, id, vid)
	if r != nil {
		o.ev.Resource = r.Type + "/" + r.ID + "/_history/" + r.VersionID()
	}
	return r, o.finish(ctx, err)
}

func (e *Engine) vread(ctx context.Context, o *op, typ, id, vid string) (*fhir.Resource, error) {
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
	// the principal must be able to see the resource as it is now
	if _, _, err := e.visible(ctx, o, e.store, typ, id, auth.InteractionVRead); err != nil && !errors.Is(err, storage.ErrDeleted) {
		return nil, err
	}
	r, err := e.store.VRead(ctx, typ, id, v)
	if err != nil {
		return r, err
	}
	if o.acc != nil {
		d, derr := e.doc(r)
		if derr != nil {
			return nil, derr
		}
		if cerr := o.acc.CanRead(d, auth.InteractionVRead); cerr != nil {
			if errors.Is(cerr, policy.ErrNotVisible) {
				return nil, storage.ErrNotFound
			}
			return nil, cerr
		}
	}
	return r, nil
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
	o, err := e.begin(ctx, "create", audit.ActionCreate)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	if err := e.CheckType(typ); err != nil {
		return nil, o.finish(ctx, err)
	}
	if err := o.writeGate(typ, auth.InteractionCreate); err != nil {
		return nil, o.finish(ctx, err)
	}
	p, err := e.prepare(typ, body)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	res, err := e.createFresh(ctx, o, typ, p)
	return res, o.finish(ctx, err)
}

// createFresh stores p under a new server-assigned id. A new id has no
// current version to read first (writeOne's read): the store's CreateOnly
// refuses the write in the unlikely case that the id exists, and another
// id is tried.
func (e *Engine) createFresh(ctx context.Context, o *op, typ string, p *prepared) (*Result, error) {
	for attempt := 1; ; attempt++ {
		p.id = e.newID()
		if err := e.checkWrite(ctx, o, auth.InteractionCreate, nil, p); err != nil {
			return nil, err
		}
		res, err := e.commitWrite(ctx, o, &storage.Write{Type: typ, ID: p.id, Body: p.body, Index: p.index, CreateOnly: true})
		if errors.Is(err, storage.ErrExists) && attempt < maxWriteAttempts {
			continue
		}
		if err != nil {
			return nil, err
		}
		res.Created = res.Resource != nil
		e.changed(typ)
		return res, nil
	}
}

// Update stores body as the new version of typ/id, creating it when it does
// not exist (update as create). ifMatch, when not empty, is the version the
// client expects to replace.
func (e *Engine) Update(ctx context.Context, typ, id string, body []byte, ifMatch string) (*Result, error) {
	o, err := e.begin(ctx, "update", audit.ActionUpdate)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	if err := e.CheckType(typ); err != nil {
		return nil, o.finish(ctx, err)
	}
	if err := o.writeGate(typ, auth.InteractionUpdate); err != nil {
		return nil, o.finish(ctx, err)
	}
	w, err := e.updateWrite(typ, id, body, ifMatch)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	p := &prepared{typ: typ, id: id, body: w.Body, index: w.Index}
	res, err := e.writeOne(ctx, o, auth.InteractionUpdate, typ, id, w.IfMatch, func(*fhir.Resource) (*storage.Write, *prepared, error) {
		return &storage.Write{Type: typ, ID: id, Body: w.Body, Index: w.Index}, p, nil
	})
	return res, o.finish(ctx, err)
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
	o, err := e.begin(ctx, "delete", audit.ActionDelete)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	res, err := e.delete(ctx, o, typ, id, ifMatch)
	return res, o.finish(ctx, err)
}

func (e *Engine) delete(ctx context.Context, o *op, typ, id, ifMatch string) (*Result, error) {
	if err := e.CheckType(typ); err != nil {
		return nil, err
	}
	if err := checkID(typ, id); err != nil {
		return nil, err
	}
	var want int64
	if ifMatch != "" {
		v, err := ParseVersion(ifMatch)
		if err != nil {
			return nil, err
		}
		want = v
	}
	return e.writeOne(ctx, o, auth.InteractionDelete, typ, id, want, func(cur *fhir.Resource) (*storage.Write, *prepared, error) {
		if cur == nil || cur.Deleted {
			return nil, nil, nil // nothing to delete
		}
		return &storage.Write{Type: typ, ID: id, Delete: true}, nil, nil
	})
}

// Patch applies a JSON Patch (RFC 6902) to the current version of typ/id.
// Without ifMatch it still never loses a concurrent update: the patch is
// applied to the version it read, and re-applied if another write came first.
func (e *Engine) Patch(ctx context.Context, typ, id string, patch []byte, ifMatch string) (*Result, error) {
	o, err := e.begin(ctx, "patch", audit.ActionUpdate)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	res, err := e.patch(ctx, o, typ, id, patch, ifMatch)
	return res, o.finish(ctx, err)
}

func (e *Engine) patch(ctx context.Context, o *op, typ, id string, patch []byte, ifMatch string) (*Result, error) {
	if err := e.CheckType(typ); err != nil {
		return nil, err
	}
	if err := checkID(typ, id); err != nil {
		return nil, err
	}
	ops, err := decodePatch(patch)
	if err != nil {
		return nil, err
	}
	var want int64
	if ifMatch != "" {
		if want, err = ParseVersion(ifMatch); err != nil {
			return nil, err
		}
	}
	return e.writeOne(ctx, o, auth.InteractionPatch, typ, id, want, func(cur *fhir.Resource) (*storage.Write, *prepared, error) {
		if cur == nil {
			return nil, nil, storage.ErrNotFound
		}
		if cur.Deleted {
			return nil, nil, storage.ErrDeleted
		}
		patched, err := ops.Apply(cur.Body)
		if err != nil {
			return nil, nil, fhir.Invalid(fhir.IssueProcessing, "", "the patch cannot be applied to the resource", err.Error())
		}
		w, err := e.updateWrite(typ, id, patched, "")
		if err != nil {
			return nil, nil, err
		}
		return w, &prepared{typ: typ, id: id, body: w.Body, index: w.Index}, nil
	})
}

func decodePatch(patch []byte) (jsonpatch.Patch, error) {
	ops, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, fhir.Invalid(fhir.IssueStructure, "", "the body is not a valid JSON Patch document", err.Error())
	}
	return ops, nil
}

// maxWriteAttempts bounds how often a write without If-Match starts over
// because another write to the same resource came first.
const maxWriteAttempts = 8

// writeOne performs one write of typ/id as interaction: it reads the
// current version, lets build make the write from it (a nil write means
// nothing to do), checks the policy on the old and new versions, and
// commits the write together with its audit record. The write is
// conditional on the version read, so a concurrent change makes it start
// over (or fail with a conflict when the client gave If-Match: ifMatch).
func (e *Engine) writeOne(ctx context.Context, o *op, interaction auth.Interaction, typ, id string, ifMatch int64,
	build func(cur *fhir.Resource) (*storage.Write, *prepared, error)) (*Result, error) {
	if err := o.writeGate(typ, interaction); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		cur, err := e.store.Read(ctx, typ, id)
		switch {
		case err == nil, errors.Is(err, storage.ErrDeleted):
		case errors.Is(err, storage.ErrNotFound):
			cur = nil
		default:
			return nil, err
		}
		if ifMatch != 0 && (cur == nil || cur.Version != ifMatch) {
			return nil, storage.ErrVersionConflict
		}
		w, p, err := build(cur)
		if err != nil {
			return nil, err
		}
		var old *fhir.Resource
		if cur != nil && !cur.Deleted {
			old = cur
		}
		if err := e.checkWrite(ctx, o, interaction, old, p); err != nil {
			return nil, err
		}
		if w == nil {
			return &Result{}, nil
		}
		if old != nil {
			w.IfMatch = old.Version
		} else {
			w.CreateOnly = true
		}
		res, err := e.commitWrite(ctx, o, w)
		if (errors.Is(err, storage.ErrVersionConflict) || errors.Is(err, storage.ErrExists)) && ifMatch == 0 && attempt < maxWriteAttempts {
			continue
		}
		if err != nil {
			return nil, err
		}
		res.Created = res.Resource != nil && !w.Delete && old == nil
		e.changed(w.Type)
		return res, nil
	}
}

// commitWrite stores w, together with the interaction's audit record when
// auditing is on, in one transaction.
func (e *Engine) commitWrite(ctx context.Context, o *op, w *storage.Write) (*Result, error) {
	if !e.audit {
		r, err := e.store.Write(ctx, w)
		if err != nil {
			return nil, err
		}
		return &Result{Resource: r}, nil
	}
	var res *Result
	ev := o.ev
	ev.ID = "" // appendAudit gives it a time-ordered id
	err := e.store.Transact(ctx, func(tx storage.Tx) error {
		r, err := tx.Write(ctx, w)
		if err != nil {
			return err
		}
		res = &Result{Resource: r}
		a := ev
		if r != nil {
			a.Resource = r.Type + "/" + r.ID + "/_history/" + r.VersionID()
		}
		return e.appendAudit(ctx, tx, &a)
	})
	if err != nil {
		return nil, err
	}
	o.audited = true
	return res, nil
}

// History returns a page of versions: of one resource, of a type, or of
// everything.
func (e *Engine) History(ctx context.Context, q *storage.HistoryQuery) (*storage.Page, error) {
	interaction := "history-system"
	switch {
	case q.ID != "":
		interaction = "history-instance"
	case q.Type != "":
		interaction = "history-type"
	}
	o, err := e.begin(ctx, interaction, audit.ActionRead)
	if err != nil {
		return nil, o.finish(ctx, err)
	}
	page, err := e.history(ctx, o, q)
	return page, o.finish(ctx, err)
}

func (e *Engine) history(ctx context.Context, o *op, q *storage.HistoryQuery) (*storage.Page, error) {
	if q.Type != "" {
		if err := e.CheckType(q.Type); err != nil {
			return nil, err
		}
	}
	if q.ID != "" {
		if err := checkID(q.Type, q.ID); err != nil {
			return nil, err
		}
		// the history of a resource that never existed, or that the
		// principal may not see, is a 404
		if _, _, err := e.visible(ctx, o, e.store, q.Type, q.ID, auth.InteractionHistory); err != nil && !errors.Is(err, storage.ErrDeleted) {
			return nil, err
		}
		o.ev.Resource = q.Type + "/" + q.ID
	}
	if o.acc != nil && q.ID == "" {
		// (an instance's history was decided above, on its current version)
		var types []string
		if q.Type != "" {
			types = []string{q.Type}
		}
		c, err := o.readConstraint(types, auth.InteractionHistory)
		if err != nil {
			return nil, err
		}
		q.Constraint = c
	}
	page, err := e.store.History(ctx, q)
	if err != nil {
		return nil, err
	}
	e.touchPage(o, page.Resources, page.Entries)
	return page, nil
}

// touchPage records the patients of the returned resources in the audit
// event, from the entries the store returned with them (ents, aligned with
// rs) or else by indexing their bodies.
func (e *Engine) touchPage(o *op, rs []*fhir.Resource, ents [][]search.Entry) {
	if e.policy == nil || !e.audit {
		return
	}
	if len(ents) != len(rs) {
		ents = nil
	}
	for i, r := range rs {
		if r.Deleted || r.Body == nil {
			continue
		}
		if ents != nil {
			o.touched(&policy.Doc{Type: r.Type, ID: r.ID, LastUpdated: r.LastUpdated, Body: r.Body, Entries: ents[i]})
			continue
		}
		if d, err := e.doc(r); err == nil {
			o.touched(d)
		}
	}
}

// changed tells the policy that a resource of typ was written, so that
// relationships derived from it are recomputed.
func (e *Engine) changed(typ string) {
	if e.policy != nil {
		e.policy.Changed(typ)
	}
}
