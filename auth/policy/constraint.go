package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"regie/auth"
	"regie/fhir"
	"regie/fhir/fhirpath"
	"regie/fhir/search"
	"regie/storage"
)

// ErrNotVisible is returned (wrapped) by single-resource decisions when the
// principal may not see the resource: the engine answers as if it did not
// exist, because its existence is itself sensitive.
var ErrNotVisible = errors.New("policy: not visible")

// ErrStepUp is returned (wrapped) when an action needs a higher assurance
// level or a second factor passed in the last five minutes.
var ErrStepUp = errors.New("policy: a higher assurance or a fresh second factor is needed")

// MinDossierLevel is the assurance a citizen needs to read a dossier.
const MinDossierLevel = auth.LevelMidden

// nothing is a constraint that matches no resource.
var nothing = search.Or{}

// InPatientCompartment reports whether typ can belong to a patient's dossier.
func (p *Policy) InPatientCompartment(typ string) bool {
	return typ == "Patient" || len(p.patientC.Params(typ)) > 0
}

// compartment returns the constraint "typ is in the compartment of one of
// the patients ids".
func (p *Policy) compartment(typ string, ids []string) search.Expr {
	if len(ids) == 0 {
		return nothing
	}
	sort.Strings(ids)
	var or search.Or
	if typ == "Patient" {
		vals := make([]search.Value, len(ids))
		for i, id := range ids {
			vals[i] = search.Value{AnySystem: true, Code: id}
		}
		or = append(or, &search.Match{Param: "_id", Type: fhir.ParamToken, Values: vals})
	}
	for _, param := range p.patientC.Params(typ) {
		sp := p.defs.SearchParam(typ, param)
		if param == "{def}" || sp == nil || sp.Type != fhir.ParamReference {
			continue
		}
		vals := make([]search.Value, len(ids))
		for i, id := range ids {
			vals[i] = search.Value{RefType: "Patient", RefID: id}
		}
		or = append(or, &search.Match{Param: param, Type: fhir.ParamReference, Values: vals})
	}
	if len(or) == 1 {
		return or[0]
	}
	return or
}

// participant returns the constraint "the principal takes part in this
// message or action", or nil when typ has no participant rule.
func (p *Policy) participant(typ, who string) search.Expr {
	params, ok := p.rules.Participants[typ]
	if !ok {
		return nil
	}
	rtyp, rid, _ := strings.Cut(who, "/")
	var or search.Or
	for _, param := range params {
		if p.defs.SearchParam(typ, param) == nil {
			continue
		}
		or = append(or, ref(param, rtyp, rid))
	}
	return or
}

func and(a, b search.Expr) search.Expr {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return search.And{a, b}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// patientsWhere returns the ids of the patients with full access for which
// keep(writable) holds, sorted.
func (a *Access) patientsWhere(keep func(writable bool) bool) []string {
	var ids []string
	for id, w := range a.full {
		if keep(w) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// isStaffWithCare reports whether the principal has a role that can give
// access to dossiers (anyone but a pure referrer or helpdesk user).
func (a *Access) isStaffWithCare() bool {
	return a.roles[RoleCoach] || a.roles[RoleBehaviouralScientist] || a.roles[RoleStaff] || len(a.full) > 0
}

// isStaff reports whether the principal is a professional.
func (a *Access) isStaff() bool {
	return strings.HasPrefix(a.ref, "Practitioner/") && a.p.Kind != auth.KindSystem
}

// participantOnly reports whether typ is a message or action type.
func (p *Policy) participantOnly(typ string) bool {
	_, ok := p.rules.Participants[typ]
	return ok
}

// ReadConstraint returns what the principal may read of typ, as a
// constraint to add to queries. (nil, nil) means no restriction. An error
// wrapping auth.ErrForbidden means the principal may never read typ: that
// depends on the principal, the type and the interaction only.
func (a *Access) ReadConstraint(typ string, interaction auth.Interaction) (search.Expr, error) {
	c, err := a.readPolicy(typ)
	if err != nil {
		return nil, err
	}
	scope, err := a.scopeConstraint(typ, interaction)
	if err != nil {
		return nil, err
	}
	return and(c, scope), nil
}

func (a *Access) readPolicy(typ string) (search.Expr, error) {
	p := a.pol
	forbidden := fmt.Errorf("%w: %s is not readable for this principal", auth.ErrForbidden, typ)
	if a.unrestricted {
		return nil, nil
	}
	if p.directory[typ] {
		return nil, nil
	}
	if (a.client != "" || a.related != "") && a.p.Level < MinDossierLevel {
		// citizens read a dossier with at least DigiD Midden
		return nil, fmt.Errorf("%w: reading a dossier needs assurance level %s", ErrStepUp, MinDossierLevel)
	}
	inPC := p.InPatientCompartment(typ)
	part := p.participant(typ, a.ref)
	switch {
	case a.p.Kind == auth.KindSystem:
		// an organisation's system client sees its organisation's dossiers,
		// but never messages and actions: it takes part in none
		if p.participantOnly(typ) || contains(p.rules.Restricted, typ) {
			return nil, forbidden
		}
		if !inPC {
			return nil, nil
		}
		return p.compartment(typ, a.patientsWhere(func(bool) bool { return true })), nil

	case a.client != "":
		if !inPC && part == nil {
			return nil, forbidden
		}
		if !a.full[a.client] && !contains(p.rules.ClosedClientRead, typ) {
			// a closed dossier at an organisation that ends access: the
			// client keeps their own record, consents and access log
			return nothing, nil
		}
		if !inPC {
			return part, nil
		}
		return and(p.compartment(typ, []string{a.client}), part), nil

	case a.related != "":
		if part != nil {
			if a.relatedPatient == "" {
				return nothing, nil
			}
			if !inPC {
				return part, nil
			}
			return and(p.compartment(typ, []string{a.relatedPatient}), part), nil
		}
		if p.partOf[typ] == "" {
			return nil, forbidden // no Consent can ever grant this type
		}
		if a.relatedPatient == "" || !a.partial[a.relatedPatient][typ] {
			return nothing, nil
		}
		return p.compartment(typ, []string{a.relatedPatient}), nil

	case a.isStaff():
		var or search.Or
		if a.roles[RoleReferrer] && typ == "ServiceRequest" {
			_, id, _ := strings.Cut(a.ref, "/")
			or = append(or, ref("requester", "Practitioner", id))
		}
		if !a.isStaffWithCare() || contains(p.rules.StaffNoRead, typ) || contains(p.rules.Restricted, typ) {
			if len(or) == 0 {
				return nil, forbidden
			}
			return or, nil
		}
		switch {
		case !inPC && part != nil:
			or = append(or, part)
		case !inPC:
			return nil, nil
		default:
			if ids := a.patientsWhere(func(bool) bool { return true }); len(ids) > 0 {
				or = append(or, and(p.compartment(typ, ids), part))
			}
		}
		if len(or) == 1 {
			return or[0], nil
		}
		return or, nil
	}
	return nil, forbidden
}

// WriteGate decides, before anything is looked up, whether the principal
// may ever perform interaction (create, update, patch or delete) on typ. It
// returns nil or an error wrapping auth.ErrForbidden.
func (a *Access) WriteGate(typ string, interaction auth.Interaction) error {
	p := a.pol
	forbidden := func(why string) error {
		return fmt.Errorf("%w: %s of %s: %s", auth.ErrForbidden, interaction, typ, why)
	}
	if typ == "AuditEvent" {
		return forbidden("AuditEvents are written by Regie only and never change")
	}
	if err := auth.CheckScope(a.p, typ, interaction); err != nil {
		return err
	}
	if a.unrestricted {
		return nil
	}
	switch {
	case a.p.Kind == auth.KindSystem:
		if p.participantOnly(typ) || contains(p.rules.Restricted, typ) {
			return forbidden("system clients take part in no messages or actions")
		}
		return nil
	case a.client != "":
		rule := p.rules.ClientWrite[typ]
		if rule == nil || rule.expr(interaction) == nil {
			return forbidden("clients do not do this")
		}
		if !a.clientOpen && !contains(p.rules.ClosedClientWrite, typ) {
			return forbidden("the dossier is closed")
		}
		return nil
	case a.related != "":
		rule := p.rules.RelatedWrite[typ]
		if rule == nil || rule.expr(interaction) == nil {
			return forbidden("related persons read what is shared with them")
		}
		return nil
	case a.isStaff():
		if a.roles[RoleHelpdesk] && contains(p.rules.HelpdeskWrite, typ) {
			return nil
		}
		if a.roles[RoleReferrer] && typ == "ServiceRequest" && interaction == auth.InteractionCreate {
			return nil
		}
		if p.directory[typ] {
			return forbidden("the directory is managed by the helpdesk")
		}
		if !a.isStaffWithCare() {
			return forbidden("this role does not write dossiers")
		}
		if contains(p.rules.StaffNoWrite, typ) || contains(p.rules.Restricted, typ) {
			return forbidden("professionals do not write this")
		}
		return nil
	}
	return forbidden("not allowed")
}

// scopeConstraint applies the principal's SMART scopes: the interaction
// must be granted, granular filters narrow it, and patient-context scopes
// limit it to the launch patient's compartment.
func (a *Access) scopeConstraint(typ string, interaction auth.Interaction) (search.Expr, error) {
	grants, err := auth.ScopeGrants(a.p, typ, interaction)
	if err != nil {
		return nil, err
	}
	var or search.Or
	for _, g := range grants {
		var c search.Expr
		if g.Context == "patient" {
			pid := idOf(a.p.Patient, "Patient")
			if pid == "" {
				pid = idOf(a.p.ActingFor, "Patient")
			}
			if pid == "" && strings.HasPrefix(a.p.Subject, "Patient/") {
				pid = idOf(a.p.Subject, "Patient")
			}
			if pid == "" {
				pid = a.relatedPatient
			}
			switch {
			case a.pol.directory[typ] || a.pol.participantOnly(typ) && !a.pol.InPatientCompartment(typ):
				// the directory, and actions (outside the compartment,
				// visible to their participants only, which the policy
				// decides)
			case pid == "" || !a.pol.InPatientCompartment(typ):
				continue
			default:
				c = a.pol.compartment(typ, []string{pid})
			}
		}
		for _, f := range g.Constraints {
			q, _, err := a.pol.parser.Parse([]string{typ}, []search.Param{{Name: f.Param, Value: f.Value}}, search.Options{Strict: true})
			if err != nil {
				return nil, fmt.Errorf("%w: scope filter %s=%s cannot be applied", auth.ErrForbidden, f.Param, f.Value)
			}
			c = and(c, q.Where)
		}
		if c == nil {
			return nil, nil // an unconstrained grant
		}
		or = append(or, c)
	}
	for _, c := range or {
		if c == nil {
			return nil, nil
		}
	}
	if len(or) == 0 {
		return nothing, nil
	}
	if len(or) == 1 {
		return or[0], nil
	}
	return or, nil
}

// Doc is a resource as the policy decides on it.
type Doc struct {
	Type, ID    string
	LastUpdated time.Time
	Body        []byte
	Entries     []search.Entry
}

func (d *Doc) searchDoc() *search.Doc {
	return &search.Doc{Type: d.Type, ID: d.ID, LastUpdated: d.LastUpdated, Entries: d.Entries}
}

// CanRead reports whether the principal may read d, by evaluating the read
// constraint on its index entries.
func (a *Access) CanRead(d *Doc, interaction auth.Interaction) error {
	c, err := a.ReadConstraint(d.Type, interaction)
	if err != nil {
		return err
	}
	if !search.Eval(c, d.searchDoc(), nil) {
		return ErrNotVisible
	}
	return nil
}

// PatientsOf returns the ids of the patients whose dossier d is part of.
func (p *Policy) PatientsOf(d *Doc) []string {
	seen := map[string]bool{}
	var ids []string
	add := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if d.Type == "Patient" {
		add(d.ID)
	}
	for _, param := range p.patientC.Params(d.Type) {
		for _, e := range d.Entries {
			if e.Param == param && e.RefType == "Patient" && e.URL == "" {
				add(e.RefID)
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// CheckWrite decides a create, update, patch or delete: old is the current
// version (nil for a create), new the version to write (nil for a delete).
// It returns nil, or an error wrapping ErrNotVisible (the current version
// is in a dossier the principal may not see), auth.ErrForbidden or
// ErrStepUp.
func (a *Access) CheckWrite(ctx context.Context, interaction auth.Interaction, old, new *Doc) error {
	typ := docType(old, new)
	if err := a.WriteGate(typ, interaction); err != nil {
		return err
	}
	p := a.pol
	forbidden := func(why string) error { return fmt.Errorf("%w: %s", auth.ErrForbidden, why) }
	// The current version must be visible (else it does not exist for the
	// principal), and what is written must stay within what they may read.
	if old != nil {
		if err := a.CanRead(old, auth.InteractionRead); err != nil {
			return err
		}
	}
	if new != nil {
		if err := a.CanRead(new, auth.InteractionRead); err != nil {
			if !errors.Is(err, ErrNotVisible) {
				return err
			}
			if old != nil || !a.mayCreateOutside(ctx, new) {
				return forbidden("you could not see the result: it belongs to a dossier or conversation you have no access to")
			}
		}
	}
	if a.unrestricted || a.p.Kind == auth.KindSystem {
		return nil
	}
	if new != nil && old == nil {
		if rule := p.rules.authorship[typ]; rule != nil {
			if err := a.evalRule(ctx, rule, new); err != nil {
				return forbidden("you can only write in your own name")
			}
		}
	}
	switch {
	case a.client != "":
		return a.personWrite(ctx, p.rules.ClientWrite, interaction, old, new)
	case a.related != "":
		return a.personWrite(ctx, p.rules.RelatedWrite, interaction, old, new)
	case a.isStaff():
		if a.roles[RoleHelpdesk] && contains(p.rules.HelpdeskWrite, typ) {
			return nil
		}
		if a.roles[RoleReferrer] && typ == "ServiceRequest" && old == nil {
			return a.ruleHolds(ctx, `requester.reference = %principal and performer.empty()`, new)
		}
		for _, doc := range []*Doc{old, new} {
			if doc == nil {
				continue
			}
			for _, pid := range p.PatientsOf(doc) {
				if w, ok := a.full[pid]; ok && !w {
					return forbidden("read-only: the dossier is closed, or opened by break-the-glass")
				}
			}
		}
		return nil
	}
	return forbidden("not allowed")
}

func docType(old, new *Doc) string {
	if new != nil {
		return new.Type
	}
	return old.Type
}

// mayCreateOutside reports whether a professional may create d although it
// is not (yet) in a dossier they can see: coaches register new clients and
// open their episodes.
func (a *Access) mayCreateOutside(ctx context.Context, d *Doc) bool {
	if !a.roles[RoleCoach] || !contains(a.pol.rules.CoachCreate, d.Type) {
		return false
	}
	if d.Type == "EpisodeOfCare" {
		return a.ruleHolds(ctx, `careManager.reference = %principal`, d) == nil
	}
	return true
}

// personWrite applies a client's or related person's write rule.
func (a *Access) personWrite(ctx context.Context, rules map[string]*WriteRule, interaction auth.Interaction, old, new *Doc) error {
	typ := docType(old, new)
	rule := rules[typ]
	if rule == nil || rule.expr(interaction) == nil {
		return fmt.Errorf("%w: %s of %s is not yours to do", auth.ErrForbidden, interaction, typ)
	}
	if rule.FreshSecondFactor && !a.FreshSecondFactor() {
		return ErrStepUp
	}
	d := new
	if d == nil {
		d = old
	}
	if err := a.evalRule(ctx, rule.expr(interaction), d); err != nil {
		return err
	}
	if old != nil && new != nil && len(rule.Elements) > 0 {
		changed, err := changedMembers(old.Body, new.Body)
		if err != nil {
			return err
		}
		for _, m := range changed {
			if !contains(rule.Elements, m) {
				return fmt.Errorf("%w: you may change only %s of %s", auth.ErrForbidden, strings.Join(rule.Elements, ", "), typ)
			}
		}
	}
	return nil
}

// FreshSecondFactor reports whether the principal passed a second factor
// within the last five minutes.
func (a *Access) FreshSecondFactor() bool {
	t := a.p.SecondFactorTime
	return !t.IsZero() && a.pol.now().Sub(t) <= FreshSecondFactor
}

func (a *Access) ruleHolds(ctx context.Context, src string, d *Doc) error {
	expr, err := fhirpath.Compile(src)
	if err != nil {
		return err
	}
	return a.evalRule(ctx, expr, d)
}

// evalRule evaluates a write rule on d with %principal, %principalId and
// %coaches bound.
func (a *Access) evalRule(ctx context.Context, expr *fhirpath.Expression, d *Doc) error {
	root, err := fhirpath.ParseResource(a.pol.defs, d.Body)
	if err != nil {
		return err
	}
	_, pid, _ := strings.Cut(a.ref, "/")
	coaches := a.coaches
	if a.related != "" && a.relatedPatient != "" {
		coaches = a.pol.coachesOf(ctx, a.relatedPatient)
	}
	young := fhirpath.Collection{fhirpath.Boolean(a.youngChild)}
	var cs fhirpath.Collection
	for _, c := range coaches {
		cs = append(cs, fhirpath.String(c))
	}
	env := &fhirpath.Env{Vars: map[string]fhirpath.Collection{
		"principal":         {fhirpath.String(a.ref)},
		"principalId":       {fhirpath.String(pid)},
		"coaches":           cs,
		"actsForYoungChild": young,
	}}
	res, err := expr.Evaluate(ctx, root, env)
	if err != nil {
		return fmt.Errorf("%w: the write rule cannot be evaluated on this resource", auth.ErrForbidden)
	}
	if len(res) == 1 {
		if b, ok := res[0].(fhirpath.Boolean); ok && bool(b) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s does not satisfy %q", auth.ErrForbidden, d.Type, expr.String())
}

// coachesOf returns the care managers of a patient's open episodes.
func (p *Policy) coachesOf(ctx context.Context, pid string) []string {
	eps, err := p.search(ctx, "EpisodeOfCare", ref("patient", "Patient", pid))
	if err != nil {
		return nil
	}
	var out []string
	now := p.now()
	for _, r := range eps {
		if ep := episodeOf(r); ep.closed(now) {
			continue
		}
		if cm := episodeOf(r).careManager; cm != "" && !contains(out, "Practitioner/"+cm) {
			out = append(out, "Practitioner/"+cm)
		}
	}
	return out
}

// changedMembers lists the top-level members that differ between two
// versions of a resource (meta and id aside).
func changedMembers(a, b []byte) ([]string, error) {
	ma, mb := map[string]string{}, map[string]string{}
	for _, x := range []struct {
		body []byte
		m    map[string]string
	}{{a, ma}, {b, mb}} {
		if err := fhir.ScanObject(x.body, func(k string, v []byte) error {
			x.m[k] = string(v)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	var changed []string
	for k, v := range ma {
		if k != "meta" && k != "id" && mb[k] != v {
			changed = append(changed, k)
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok && k != "meta" && k != "id" {
			changed = append(changed, k)
		}
	}
	sort.Strings(changed)
	return changed, nil
}

// breakGlassKind is the Records kind of break-the-glass grants; the key is
// "<practitioner reference>|<patient id>".
const breakGlassKind = "policy.breakglass"

// MayBreakGlass reports whether the principal is staff of an organisation
// with an episode of patient pid, and so may open the dossier by stating a
// reason.
func (p *Policy) MayBreakGlass(ctx context.Context, a *Access, pid string) (bool, error) {
	if !strings.HasPrefix(a.ref, "Practitioner/") || !a.isStaffWithCare() && !a.roles[RoleStaff] {
		return false, nil
	}
	if _, ok := a.full[pid]; ok {
		return false, nil // already has access
	}
	eps, err := p.search(ctx, "EpisodeOfCare", ref("patient", "Patient", pid))
	if err != nil {
		return false, err
	}
	for _, r := range eps {
		if org := episodeOf(r).org; org != "" && a.orgs[org] {
			return true, nil
		}
	}
	return false, nil
}

// grant is a break-the-glass grant as stored.
type grant struct {
	Reason string    `json:"reason"`
	Until  time.Time `json:"until"`
}

// BreakGlass records that the principal opened patient pid's dossier for
// reason; access lasts BreakGlassDuration. The caller audits and notifies.
func (p *Policy) BreakGlass(ctx context.Context, a *Access, pid, reason string) (time.Time, error) {
	if p.records == nil {
		return time.Time{}, errors.New("policy: no records store for break-the-glass")
	}
	until := p.now().Add(BreakGlassDuration)
	b, _ := json.Marshal(grant{Reason: reason, Until: until})
	_, err := p.records.PutRecord(ctx, &storage.Record{
		// kept a while after it ends, so that its end can be audited
		Kind: breakGlassKind, Key: a.ref + "|" + pid, Value: b, Expires: until.Add(30 * 24 * time.Hour),
	}, storage.AnyVersion)
	if err != nil {
		return time.Time{}, err
	}
	p.gen.Add(1)
	return until, nil
}

// EndedGrant is a break-the-glass grant that ended.
type EndedGrant struct {
	Patient, Reason string
	Until           time.Time
}

// EndBreakGlass ends break-the-glass grants of who (a Practitioner
// reference): the one for patient pid, or with pid empty every grant whose
// time is up. It returns the grants it ended; of concurrent callers, only
// one ends (and so audits) each grant.
func (p *Policy) EndBreakGlass(ctx context.Context, who, pid string) ([]EndedGrant, error) {
	if p.records == nil {
		return nil, nil
	}
	var ended []EndedGrant
	now := p.now()
	var recs []*storage.Record
	err := p.records.ListRecords(ctx, breakGlassKind, who+"|", func(rec *storage.Record) error {
		recs = append(recs, rec)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, rec := range recs {
		_, gp, _ := strings.Cut(rec.Key, "|")
		var g grant
		_ = json.Unmarshal(rec.Value, &g)
		if pid != "" && gp != pid || pid == "" && now.Before(g.Until) {
			continue
		}
		err := p.records.DeleteRecord(ctx, breakGlassKind, rec.Key, rec.Version)
		if errors.Is(err, storage.ErrVersionConflict) {
			continue // someone else ended it
		}
		if err != nil {
			return ended, err
		}
		ended = append(ended, EndedGrant{Patient: gp, Reason: g.Reason, Until: g.Until})
	}
	if len(ended) > 0 {
		p.gen.Add(1)
	}
	return ended, nil
}

// BrokeGlass reports whether the principal's access to patient pid comes
// from break-the-glass.
func (a *Access) BrokeGlass(pid string) bool { return a.breakGlass[pid] }
