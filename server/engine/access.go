package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"regie/auth"
	"regie/auth/audit"
	"regie/auth/policy"
	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// RequestInfo is what the edge knows about a request that the engine needs
// for access decisions and audit.
type RequestInfo struct {
	// ID correlates the request with logs.
	ID string
	// Address is the client's network address.
	Address string
	// BreakGlass is the reason a professional gave to open a dossier
	// outside their care team ("" when none).
	BreakGlass string
}

type requestInfoKey struct{}

// WithRequestInfo returns a context carrying ri.
func WithRequestInfo(ctx context.Context, ri RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, ri)
}

func requestInfo(ctx context.Context) RequestInfo {
	ri, _ := ctx.Value(requestInfoKey{}).(RequestInfo)
	return ri
}

// MinBreakGlassReason is the shortest reason accepted for break-the-glass.
const MinBreakGlassReason = 10

// ErrBreakGlassReason is returned when a break-the-glass reason is too short.
var ErrBreakGlassReason = errors.New("engine: a break-the-glass reason needs at least 10 characters")

// op is one interaction in progress: who asks, what they may do, and the
// audit record it will leave.
type op struct {
	e   *Engine
	p   *auth.Principal
	acc *policy.Access // nil without a policy: everything is allowed
	ev  audit.Event
	ri  RequestInfo
	// audited is set once the interaction's audit record is stored (with
	// its write).
	audited bool
	// wrote lists the types written inside a transaction, for the policy
	// to hear of once it commits.
	wrote []string
}

// committed tells the policy about the types written in a transaction that
// ended with err (nil: committed). Told before the commit, the policy
// could cache access computed from the old relationships under the new
// generation.
func (o *op) committed(err error) {
	if err == nil {
		for _, t := range o.wrote {
			o.e.changed(t)
		}
	}
	o.wrote = nil
}

// begin starts an interaction. Without a policy (tests of the REST layer,
// tools) nothing is checked; with one, the request needs a principal.
func (e *Engine) begin(ctx context.Context, interaction string, action audit.Action) (*op, error) {
	o := &op{e: e, ri: requestInfo(ctx)}
	o.ev = audit.Event{Kind: "rest", Interaction: interaction, Action: action, RequestID: o.ri.ID, Address: o.ri.Address}
	if e.policy == nil {
		return o, nil
	}
	o.p = auth.PrincipalFrom(ctx)
	if o.p != nil {
		o.ev.Who, o.ev.Client, o.ev.OnBehalfOf = o.p.Subject, o.p.ClientID, o.p.ActingFor
		if o.p.SessionID != "" {
			o.ev.Session = o.p.SessionID
		}
	}
	acc, err := e.policy.For(ctx, o.p)
	if err != nil {
		return o, err
	}
	o.acc = acc
	if strings.HasPrefix(o.p.Subject, "Practitioner/") {
		// grants whose time is up end here, with their audit record
		ended, err := e.policy.EndBreakGlass(ctx, o.p.Subject, "")
		if err != nil {
			return o, err
		}
		if err := e.auditEndedGrants(ctx, o, ended); err != nil {
			return o, err
		}
	}
	if o.ri.BreakGlass != "" && !acc.FreshSecondFactor() {
		// break-the-glass needs a fresh second factor, whatever it would open
		return o, policy.ErrStepUp
	}
	return o, nil
}

// writeGate refuses, before anything is looked up, a write the principal
// may never do on typ.
func (o *op) writeGate(typ string, interaction auth.Interaction) error {
	if o.acc == nil {
		return nil
	}
	return o.acc.WriteGate(typ, interaction)
}

// restricted reports whether the policy limits this principal.
func (o *op) restricted() bool { return o.acc != nil && !o.acc.Unrestricted() }

// finish records an interaction's outcome. A failing audit write makes
// the interaction fail (fail closed).
func (o *op) finish(ctx context.Context, err error) error {
	if !o.e.audit || o.audited && err == nil {
		return err
	}
	o.ev.Outcome, o.ev.OutcomeDesc = outcomeOf(err)
	if aerr := o.e.appendAudit(ctx, nil, &o.ev); aerr != nil {
		o.e.log.ErrorContext(ctx, "audit record not stored; refusing the request", "error", aerr, "request_id", o.ri.ID)
		return fmt.Errorf("engine: audit: %w", aerr)
	}
	return err
}

// outcomeOf maps an error to an audit outcome without personal data.
func outcomeOf(err error) (audit.Outcome, string) {
	var verr *fhir.ValidationError
	switch {
	case err == nil:
		return audit.Success, ""
	case errors.Is(err, auth.ErrUnauthenticated):
		return audit.SeriousFailure, "unauthenticated"
	case errors.Is(err, auth.ErrForbidden), errors.Is(err, policy.ErrStepUp):
		return audit.SeriousFailure, "forbidden"
	case errors.Is(err, storage.ErrNotFound):
		return audit.MinorFailure, "not found"
	case errors.Is(err, storage.ErrDeleted):
		return audit.MinorFailure, "gone"
	case errors.Is(err, storage.ErrVersionConflict):
		return audit.MinorFailure, "version conflict"
	case errors.As(err, &verr):
		return audit.MinorFailure, "invalid request"
	}
	return audit.MajorFailure, "error"
}

// appendAudit stores ev, in tx when the event belongs to a write.
func (e *Engine) appendAudit(ctx context.Context, tx storage.Tx, ev *audit.Event) error {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if ev.ID == "" {
		ev.ID = auditID(ev.Time)
	}
	body := ev.JSON()
	var entries []search.Entry
	if e.idx != nil {
		// The event's own fields give its entries without parsing body
		// back (one AuditEvent per interaction); the indexer when they
		// hold something the shortcut does not interpret.
		var ok bool
		if entries, ok = ev.Entries(); !ok {
			var err error
			if entries, err = e.idx.Index("AuditEvent", body); err != nil {
				return err
			}
		}
	}
	// Deferred: the store appends the sealed event to its log at once and
	// stores it as a resource in bulk later, before anything could see it.
	w := &storage.Write{Type: "AuditEvent", ID: ev.ID, Body: body, Index: entries, CreateOnly: true, Chain: audit.Seal, Defer: true}
	if tx != nil {
		_, err := tx.Write(ctx, w)
		return err
	}
	_, err := e.store.Write(ctx, w)
	return err
}

// doc returns the policy's view of a stored resource.
func (e *Engine) doc(r *fhir.Resource) (*policy.Doc, error) {
	d := &policy.Doc{Type: r.Type, ID: r.ID, LastUpdated: r.LastUpdated, Body: r.Body}
	if e.idx != nil && r.Body != nil {
		var err error
		if d.Entries, err = e.idx.Index(r.Type, r.Body); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// touched records the patients whose dossier r belongs to in the audit event.
func (o *op) touched(d *policy.Doc) {
	if o.e.policy == nil || d == nil {
		return
	}
	for _, pid := range o.e.policy.PatientsOf(d) {
		if !contains(o.ev.Patients, pid) {
			o.ev.Patients = append(o.ev.Patients, pid)
		}
	}
	sort.Strings(o.ev.Patients)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// readConstraint is the constraint for reading types (all types when
// none are named), type-aware: a resource of type T must satisfy T's
// constraint. It is nil when nothing limits the principal.
func (o *op) readConstraint(types []string, interaction auth.Interaction) (search.Expr, error) {
	if o.acc == nil {
		return nil, nil
	}
	if len(types) == 0 {
		types = o.e.defs.ResourceTypes()
	}
	var or search.Or
	allOpen := true
	readable := 0
	for _, t := range types {
		c, err := o.acc.ReadConstraint(t, interaction)
		if err != nil {
			if errors.Is(err, auth.ErrForbidden) && len(types) > 1 {
				allOpen = false
				continue // a type the principal can never read contributes nothing
			}
			return nil, err
		}
		readable++
		if c != nil {
			allOpen = false
		}
		typeMatch := &search.Match{Param: "_type", Type: fhir.ParamToken, Values: []search.Value{{AnySystem: true, Code: t}}}
		if c == nil {
			or = append(or, typeMatch)
		} else {
			or = append(or, search.And{typeMatch, c})
		}
	}
	if readable == 0 {
		return nil, fmt.Errorf("%w: none of the searched types is readable", auth.ErrForbidden)
	}
	if allOpen {
		return nil, nil
	}
	if len(types) == 1 {
		c, _ := o.acc.ReadConstraint(types[0], interaction)
		return c, nil
	}
	return or, nil
}

// visible reads typ/id and returns it when the principal may see it. A
// type the principal may never read is forbidden before anything is looked
// up; a resource they may not see is reported as not found.
func (e *Engine) visible(ctx context.Context, o *op, rd storage.Reader, typ, id string, interaction auth.Interaction) (*fhir.Resource, *policy.Doc, error) {
	var c search.Expr
	if o.acc != nil {
		var err error
		if c, err = o.acc.ReadConstraint(typ, interaction); err != nil {
			return nil, nil, err
		}
	}
	var r *fhir.Resource
	var entries []search.Entry
	var err error
	if er, ok := rd.(storage.EntryReader); ok {
		r, entries, err = er.ReadEntries(ctx, typ, id)
	} else {
		r, err = rd.Read(ctx, typ, id)
	}
	if err != nil && !errors.Is(err, storage.ErrDeleted) {
		return nil, nil, err
	}
	deleted := errors.Is(err, storage.ErrDeleted)
	if c == nil && (deleted || !e.audit || e.policy == nil) {
		// nothing to decide, and no patients to record
		return r, nil, err
	}
	// decide on the current version, or for a deletion on the last version
	// that had content
	cur := r
	if deleted {
		if r.Version < 2 {
			return nil, nil, storage.ErrNotFound
		}
		if cur, err = rd.VRead(ctx, typ, id, r.Version-1); err != nil {
			return nil, nil, storage.ErrNotFound
		}
	}
	var d *policy.Doc
	if entries != nil && !deleted {
		d = &policy.Doc{Type: cur.Type, ID: cur.ID, LastUpdated: cur.LastUpdated, Body: cur.Body, Entries: entries}
	} else if d, err = e.doc(cur); err != nil {
		return nil, nil, err
	}
	if c != nil && !search.Eval(c, &search.Doc{Type: d.Type, ID: d.ID, LastUpdated: d.LastUpdated, Entries: d.Entries}, nil) {
		if ok, bgErr := e.tryBreakGlass(ctx, o, d); bgErr != nil {
			return nil, nil, bgErr
		} else if ok {
			return e.visible(ctx, o, rd, typ, id, interaction)
		}
		return nil, nil, storage.ErrNotFound
	}
	o.touched(d)
	if deleted {
		return r, nil, storage.ErrDeleted
	}
	return r, d, nil
}

// tryBreakGlass opens the dossier of d's patient when the request carries
// a break-the-glass reason and the principal may state one. It reports
// whether access was granted.
func (e *Engine) tryBreakGlass(ctx context.Context, o *op, d *policy.Doc) (bool, error) {
	if o.ri.BreakGlass == "" || o.acc == nil {
		return false, nil
	}
	for _, pid := range e.policy.PatientsOf(d) {
		if ok, err := e.breakGlass(ctx, o, pid); err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// breakGlass grants o's principal access to patient pid's dossier for a
// limited time, audits it (DICOM 110113/110127 with the reason), notifies
// the client and invalidates the principal's cached access.
func (e *Engine) breakGlass(ctx context.Context, o *op, pid string) (bool, error) {
	reason := strings.TrimSpace(o.ri.BreakGlass)
	ok, err := e.policy.MayBreakGlass(ctx, o.acc, pid)
	if err != nil || !ok {
		return false, err
	}
	if len([]rune(reason)) < MinBreakGlassReason {
		return false, fmt.Errorf("%w: %w", auth.ErrForbidden, ErrBreakGlassReason)
	}
	if !o.acc.FreshSecondFactor() {
		return false, policy.ErrStepUp
	}
	until, err := e.policy.BreakGlass(ctx, o.acc, pid, reason)
	if err != nil {
		return false, err
	}
	ev := o.ev
	ev.ID, ev.Time = "", time.Time{}
	ev.Kind, ev.Interaction, ev.Action = "break-glass-start", "", audit.ActionExecute
	ev.Purpose, ev.PurposeText, ev.OutcomeDesc = "ETREAT", reason, reason
	ev.Patients, ev.Resource, ev.Query = []string{pid}, "", ""
	if err := e.appendAudit(ctx, nil, &ev); err != nil {
		return false, err
	}
	if e.notify != nil {
		if err := e.notify.BreakGlass(ctx, pid, o.p.Subject, reason, until); err != nil {
			e.log.WarnContext(ctx, "break-the-glass notification failed", "error", err, "request_id", o.ri.ID)
		}
	}
	acc, err := e.policy.For(ctx, o.p)
	if err != nil {
		return false, err
	}
	o.acc = acc
	o.ev.Purpose, o.ev.PurposeText = "ETREAT", reason
	return true, nil
}

// Notifier tells a client that someone opened their dossier.
type Notifier interface {
	BreakGlass(ctx context.Context, patientID, who, reason string, until time.Time) error
}

// checkWrite decides a write: old is the current version (nil for a
// create), new the prepared new version (nil for a delete).
func (e *Engine) checkWrite(ctx context.Context, o *op, interaction auth.Interaction, old *fhir.Resource, new *prepared) error {
	if o.acc == nil {
		return nil
	}
	var od, nd *policy.Doc
	var err error
	if old != nil && !old.Deleted {
		if od, err = e.doc(old); err != nil {
			return err
		}
	}
	if new != nil {
		nd = &policy.Doc{Type: new.typ, ID: new.id, Body: new.body, Entries: new.index}
	}
	if od == nil && nd == nil {
		return nil
	}
	err = o.acc.CheckWrite(ctx, interaction, od, nd)
	if errors.Is(err, policy.ErrNotVisible) && od != nil {
		if ok, bgErr := e.tryBreakGlass(ctx, o, od); bgErr != nil {
			return bgErr
		} else if ok {
			err = o.acc.CheckWrite(ctx, interaction, od, nd)
		}
	}
	if errors.Is(err, policy.ErrNotVisible) {
		return storage.ErrNotFound
	}
	o.touched(od)
	o.touched(nd)
	return err
}

// auditEndedGrants writes a break-the-glass stop event per ended grant.
func (e *Engine) auditEndedGrants(ctx context.Context, o *op, ended []policy.EndedGrant) error {
	for _, g := range ended {
		ev := o.ev
		ev.ID, ev.Time = "", time.Time{}
		ev.Kind, ev.Interaction, ev.Action = "break-glass-stop", "", audit.ActionExecute
		ev.Purpose, ev.PurposeText, ev.OutcomeDesc = "ETREAT", g.Reason, g.Reason
		ev.Patients, ev.Resource, ev.Query = []string{g.Patient}, "", ""
		if e.audit {
			if err := e.appendAudit(ctx, nil, &ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// EndBreakGlass ends the principal's break-the-glass access to patient
// pid's dossier before its time is up. Ending what was not granted is not
// an error.
func (e *Engine) EndBreakGlass(ctx context.Context, pid string) error {
	o, err := e.begin(ctx, "operation", audit.ActionExecute)
	if err != nil {
		return o.finish(ctx, err)
	}
	o.ev.Operation, o.ev.Query = "end-break-glass", "Patient/"+pid+"/$end-break-glass"
	if err := checkID("Patient", pid); err != nil {
		return o.finish(ctx, err)
	}
	if o.acc == nil || o.p == nil || !strings.HasPrefix(o.p.Subject, "Practitioner/") {
		return o.finish(ctx, fmt.Errorf("%w: only professionals break and end the glass", auth.ErrForbidden))
	}
	ended, err := e.policy.EndBreakGlass(ctx, o.p.Subject, pid)
	if err == nil {
		err = e.auditEndedGrants(ctx, o, ended)
	}
	o.ev.Patients = []string{pid}
	return o.finish(ctx, err)
}

// auditID returns the id of a new AuditEvent: the time in microseconds
// (hex) and 64 random bits. Ids that grow with time append at the end of
// the store's key index instead of landing anywhere in it, which matters
// when every read writes one.
func auditID(t time.Time) string {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%013x-%x", t.UnixMicro(), r)
}
