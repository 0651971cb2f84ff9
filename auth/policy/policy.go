// Package policy decides what a principal may read and write in Regie: the
// rules of docs/access.md, compiled into search constraints (search.Expr)
// that the engine adds to every query, and decided for single resources by
// evaluating the same constraints on their index entries, so that searches
// and reads can never disagree. The relationships the rules depend on
// (episodes, care teams, roles, consents, break-the-glass grants) are read
// from the store per principal and cached briefly; any write of a resource
// that can change them invalidates the cache.
package policy

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"regie/auth"
	"regie/fhir"
	"regie/fhir/fhirpath"
	"regie/fhir/search"
	"regie/storage"
)

// Code systems and extensions of the model (docs/access.md).
const (
	StaffRoleSystem    = "https://regie.nl/fhir/CodeSystem/staff-role"
	DossierPartSystem  = "https://regie.nl/fhir/CodeSystem/dossier-part"
	RelationshipSystem = "https://regie.nl/fhir/CodeSystem/relationship"
	ClosedAccessURL    = "https://regie.nl/fhir/StructureDefinition/closed-dossier-access"
	Gezaghebbende      = "gezaghebbende"
)

// Staff roles.
const (
	RoleCoach                = "coach"
	RoleBehaviouralScientist = "behavioural-scientist"
	RoleReferrer             = "referrer"
	RoleHelpdesk             = "helpdesk"
	RoleStaff                = "staff"
)

// BreakGlassDuration is how long break-the-glass access lasts.
const BreakGlassDuration = 4 * time.Hour

// FreshSecondFactor is how recent a second factor must be for actions that
// need a fresh one (break-the-glass, changing who may see a dossier).
const FreshSecondFactor = 5 * time.Minute

//go:embed rules.json
var defaultRules []byte

// Rules are the access rules that are data (rules.json).
type Rules struct {
	// Directory types are readable by everyone authenticated.
	Directory []string `json:"directory"`
	// Participants lists, per message or action type, the reference
	// parameters that name the people taking part; only they see it.
	Participants map[string][]string `json:"participants"`
	// Parts maps dossier parts (Consent codes) to resource types.
	Parts map[string][]string `json:"parts"`
	// StaffNoRead and StaffNoWrite are types professionals never read or write.
	StaffNoRead  []string `json:"staffNoRead"`
	StaffNoWrite []string `json:"staffNoWrite"`
	// ClosedClientRead and ClosedClientWrite are what a client still reads
	// and writes when their dossier is closed and unreadable.
	ClosedClientRead  []string `json:"closedClientRead"`
	ClosedClientWrite []string `json:"closedClientWrite"`
	HelpdeskWrite     []string `json:"helpdeskWrite"`
	CoachCreate       []string `json:"coachCreate"`
	// Restricted types are read and written by unrestricted system clients
	// only: their content cannot be attributed to a dossier.
	Restricted []string `json:"restricted"`
	// Authorship rules hold for every resource a person creates: the
	// author-like elements must name the principal.
	Authorship map[string]string `json:"authorship"`
	// ClientWrite and RelatedWrite say what clients and related persons
	// may write.
	ClientWrite  map[string]*WriteRule `json:"clientWrite"`
	RelatedWrite map[string]*WriteRule `json:"relatedWrite"`

	authorship map[string]*fhirpath.Expression
}

// WriteRule says when a person may create, update or delete a resource
// type: FHIRPath expressions over the resource (the new version; the old
// one for delete) with %principal (their reference), %principalId (their
// id), %coaches (the care managers of the open episodes of the dossier) and
// %actsForYoungChild (a parent with authority acting for a child under
// 12), and for updates the elements they may change.
type WriteRule struct {
	Create            string   `json:"create"`
	Update            string   `json:"update"`
	Delete            string   `json:"delete"`
	Elements          []string `json:"elements"`
	FreshSecondFactor bool     `json:"freshSecondFactor"`

	create, update, delete *fhirpath.Expression
}

// expr returns the rule's expression for an interaction, or nil.
func (r *WriteRule) expr(interaction auth.Interaction) *fhirpath.Expression {
	switch interaction {
	case auth.InteractionCreate:
		return r.create
	case auth.InteractionUpdate, auth.InteractionPatch:
		return r.update
	case auth.InteractionDelete:
		return r.delete
	}
	return nil
}

func (r *Rules) compile() error {
	for _, set := range []map[string]*WriteRule{r.ClientWrite, r.RelatedWrite} {
		for typ, w := range set {
			for _, x := range []struct {
				src string
				dst **fhirpath.Expression
			}{{w.Create, &w.create}, {w.Update, &w.update}, {w.Delete, &w.delete}} {
				if x.src == "" {
					continue
				}
				e, err := fhirpath.Compile(x.src)
				if err != nil {
					return fmt.Errorf("policy: write rule of %s: %w", typ, err)
				}
				*x.dst = e
			}
		}
	}
	r.authorship = map[string]*fhirpath.Expression{}
	for typ, src := range r.Authorship {
		e, err := fhirpath.Compile(src)
		if err != nil {
			return fmt.Errorf("policy: authorship rule of %s: %w", typ, err)
		}
		r.authorship[typ] = e
	}
	return nil
}

// Source is what the policy reads relationships from: the store, without
// any access constraint.
type Source interface {
	Read(ctx context.Context, typ, id string) (*fhir.Resource, error)
	Search(ctx context.Context, q *search.Query) (*storage.Page, error)
}

// Config configures a Policy.
type Config struct {
	Definitions *fhir.Definitions
	Source      Source
	// Records keeps break-the-glass grants.
	Records storage.Records
	// Parser parses the granular filters of SMART scopes.
	Parser *search.Parser
	// Rules overrides the built-in rules (tests).
	Rules *Rules
	// CacheTTL bounds how long a principal's relationships are reused
	// (default 5 s); writes that change relationships invalidate at once.
	CacheTTL time.Duration
	Now      func() time.Time
	Logger   *slog.Logger
}

// Policy computes Access for principals. It is safe for concurrent use.
type Policy struct {
	defs      *fhir.Definitions
	src       Source
	records   storage.Records
	parser    *search.Parser
	rules     *Rules
	now       func() time.Time
	log       *slog.Logger
	ttl       time.Duration
	directory map[string]bool
	partOf    map[string]string // resource type -> dossier part
	patientC  *fhir.Compartment

	gen   atomic.Int64 // bumped by every relationship change
	mu    sync.Mutex
	cache map[string]*cached
}

type cached struct {
	access *Access
	gen    int64
	until  time.Time
}

// New returns a Policy.
func New(cfg Config) (*Policy, error) {
	if cfg.Definitions == nil || cfg.Source == nil {
		return nil, errors.New("policy: definitions and source are required")
	}
	rules := cfg.Rules
	if rules == nil {
		rules = &Rules{}
		if err := json.Unmarshal(defaultRules, rules); err != nil {
			return nil, fmt.Errorf("policy: rules: %w", err)
		}
	}
	if err := rules.compile(); err != nil {
		return nil, err
	}
	p := &Policy{
		defs: cfg.Definitions, src: cfg.Source, records: cfg.Records, parser: cfg.Parser, rules: rules,
		now: cfg.Now, log: cfg.Logger, ttl: cfg.CacheTTL,
		directory: map[string]bool{}, partOf: map[string]string{}, cache: map[string]*cached{},
		patientC: cfg.Definitions.Compartment("Patient"),
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.ttl == 0 {
		p.ttl = 5 * time.Second
	}
	if p.parser == nil {
		p.parser = search.NewParser(cfg.Definitions, search.Config{})
	}
	for _, t := range rules.Directory {
		p.directory[t] = true
	}
	for part, types := range rules.Parts {
		for _, t := range types {
			p.partOf[t] = part
		}
	}
	if p.patientC == nil {
		return nil, errors.New("policy: no Patient compartment definition")
	}
	return p, nil
}

// relationshipTypes are the types whose writes can change what someone may see.
var relationshipTypes = map[string]bool{
	"EpisodeOfCare": true, "CareTeam": true, "Consent": true, "PractitionerRole": true,
	"RelatedPerson": true, "Patient": true, "Organization": true,
}

// Changed tells the policy that a resource of typ was written; relationships
// are recomputed for every principal when typ can affect them.
func (p *Policy) Changed(typ string) {
	if relationshipTypes[typ] {
		p.gen.Add(1)
	}
}

// Access is what one principal may do, computed by Policy.For.
type Access struct {
	pol *Policy
	p   *auth.Principal
	// ref is the principal's own reference ("Patient/x", "Practitioner/y").
	ref string
	// unrestricted: a system client not bound to an organisation (its
	// scopes are the only limit).
	unrestricted bool
	// patients whose whole compartment is visible (participant types
	// aside): id -> writable
	full map[string]bool
	// partial access of related persons: patient id -> visible types
	partial map[string]map[string]bool
	// roles of a professional (staff-role codes) and their organisations
	roles map[string]bool
	orgs  map[string]bool
	// client is set for a citizen in care reading their own dossier
	client string
	// clientOpen: the client has an open episode (closed dossiers are
	// read-only for the client, contact details and consents aside)
	clientOpen bool
	// coaches are the care managers of the client's open episodes
	coaches []string
	// a related person and the patient they belong to
	related, relatedPatient string
	// youngChild: the related person has parental authority over a child
	// under 12 and acts for them
	youngChild bool
	// notes on why access is as it is (for audit and debugging)
	breakGlass map[string]bool
}

// Principal returns the principal the access was computed for.
func (a *Access) Principal() *auth.Principal { return a.p }

// Unrestricted reports whether only scopes limit the principal.
func (a *Access) Unrestricted() bool { return a.unrestricted }

// For computes the access of principal pr (cached for a few seconds).
func (p *Policy) For(ctx context.Context, pr *auth.Principal) (*Access, error) {
	if pr == nil || pr.Subject == "" && pr.Kind != auth.KindSystem {
		return nil, auth.ErrUnauthenticated
	}
	key := string(pr.Kind) + "\x00" + pr.Subject + "\x00" + pr.ActingFor + "\x00" + pr.Organization + "\x00" + pr.ClientID
	gen := p.gen.Load()
	now := p.now()
	p.mu.Lock()
	if c := p.cache[key]; c != nil && c.gen == gen && now.Before(c.until) {
		p.mu.Unlock()
		// the principal may differ in scopes and times; the relationships do not
		a := *c.access
		a.p = pr
		return &a, nil
	}
	p.mu.Unlock()
	a, err := p.compute(ctx, pr)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if len(p.cache) > 10000 {
		p.cache = map[string]*cached{}
	}
	p.cache[key] = &cached{access: a, gen: gen, until: now.Add(p.ttl)}
	p.mu.Unlock()
	return a, nil
}

func (p *Policy) compute(ctx context.Context, pr *auth.Principal) (*Access, error) {
	a := &Access{pol: p, p: pr, ref: pr.Subject, full: map[string]bool{}, partial: map[string]map[string]bool{},
		roles: map[string]bool{}, orgs: map[string]bool{}, breakGlass: map[string]bool{}}
	typ, id, _ := strings.Cut(pr.Subject, "/")
	switch {
	case pr.Kind == auth.KindSystem:
		if pr.Organization == "" {
			a.unrestricted = true
			return a, nil
		}
		_, org, _ := strings.Cut(pr.Organization, "/")
		a.orgs[org] = true
		eps, err := p.search(ctx, "EpisodeOfCare", ref("organization", "Organization", org))
		if err != nil {
			return nil, err
		}
		for _, ep := range eps {
			if pid := episodeOf(ep).patient; pid != "" {
				a.full[pid] = true
			}
		}
	case typ == "Patient" && pr.ActingFor == "" || pr.ActingFor == pr.Subject && typ == "Patient":
		if err := p.clientAccess(ctx, a, id); err != nil {
			return nil, err
		}
	case typ == "RelatedPerson":
		if err := p.relatedAccess(ctx, a, id); err != nil {
			return nil, err
		}
	case typ == "Practitioner":
		if err := p.staffAccess(ctx, a, id); err != nil {
			return nil, err
		}
	default:
		// a principal the policy does not know sees the directory only
	}
	return a, nil
}

// episode is what the policy needs of an EpisodeOfCare.
type episode struct {
	patient, status, org, careManager string
	teams                             []string
	end                               time.Time
}

func (e episode) closed(now time.Time) bool {
	switch e.status {
	case "finished", "cancelled", "entered-in-error":
		return true
	}
	return !e.end.IsZero() && e.end.Before(now)
}

func episodeOf(r *fhir.Resource) episode {
	var ep struct {
		Status      string `json:"status"`
		Patient     struct{ Reference string }
		ManagingOrg struct{ Reference string } `json:"managingOrganization"`
		CareManager struct{ Reference string } `json:"careManager"`
		Team        []struct{ Reference string }
		Period      struct{ End string }
	}
	_ = json.Unmarshal(r.Body, &ep)
	e := episode{status: ep.Status, patient: idOf(ep.Patient.Reference, "Patient"), org: idOf(ep.ManagingOrg.Reference, "Organization"),
		careManager: idOf(ep.CareManager.Reference, "Practitioner")}
	for _, t := range ep.Team {
		if id := idOf(t.Reference, "CareTeam"); id != "" {
			e.teams = append(e.teams, id)
		}
	}
	if ep.Period.End != "" {
		if lo, hi, ok := dateRange(ep.Period.End); ok {
			_ = lo
			e.end = hi
		}
	}
	return e
}

// idOf returns the id of a reference "Type/id" (relative or absolute) of
// the given type, or "".
func idOf(ref, typ string) string {
	ref = strings.TrimRight(ref, "/")
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(ref, "/")
	if len(parts) < 2 || parts[len(parts)-2] != typ || !fhir.ValidID(parts[len(parts)-1]) {
		return ""
	}
	return parts[len(parts)-1]
}

// dateRange returns the instants a FHIR date or dateTime covers.
func dateRange(s string) (lo, hi time.Time, ok bool) {
	for _, l := range []struct {
		layout string
		add    func(time.Time) time.Time
	}{
		{time.RFC3339Nano, func(t time.Time) time.Time { return t }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1).Add(-time.Microsecond) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0).Add(-time.Microsecond) }},
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0).Add(-time.Microsecond) }},
	} {
		if t, err := time.Parse(l.layout, s); err == nil {
			return t, l.add(t), true
		}
	}
	return time.Time{}, time.Time{}, false
}

// clientAccess: rule 1.
func (p *Policy) clientAccess(ctx context.Context, a *Access, pid string) error {
	a.client = pid
	eps, err := p.search(ctx, "EpisodeOfCare", ref("patient", "Patient", pid))
	if err != nil {
		return err
	}
	now := p.now()
	readable := len(eps) == 0 // a client without any episode still sees their own record
	for _, r := range eps {
		ep := episodeOf(r)
		if !ep.closed(now) {
			readable, a.clientOpen = true, true
			if ep.careManager != "" && !contains(a.coaches, "Practitioner/"+ep.careManager) {
				a.coaches = append(a.coaches, "Practitioner/"+ep.careManager)
			}
			continue
		}
		if ep.org == "" || p.closedAccess(ctx, ep.org) {
			readable = true
		}
	}
	sort.Strings(a.coaches)
	a.full[pid] = readable
	return nil
}

// closedAccess reads an organisation's closed-dossier-access setting
// (default read).
func (p *Policy) closedAccess(ctx context.Context, orgID string) bool {
	r, err := p.src.Read(ctx, "Organization", orgID)
	if err != nil {
		return true
	}
	var org struct {
		Extension []struct {
			URL       string `json:"url"`
			ValueCode string `json:"valueCode"`
		} `json:"extension"`
	}
	_ = json.Unmarshal(r.Body, &org)
	for _, x := range org.Extension {
		if x.URL == ClosedAccessURL {
			return x.ValueCode != "none"
		}
	}
	return true
}

// relatedAccess: rule 3.
func (p *Policy) relatedAccess(ctx context.Context, a *Access, rid string) error {
	a.related = rid
	rp, err := p.src.Read(ctx, "RelatedPerson", rid)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrDeleted) {
			return nil
		}
		return err
	}
	var rel struct {
		Active       *bool `json:"active"`
		Patient      struct{ Reference string }
		Relationship []struct {
			Coding []struct{ System, Code string }
		}
	}
	_ = json.Unmarshal(rp.Body, &rel)
	if rel.Active != nil && !*rel.Active {
		return nil
	}
	pid := idOf(rel.Patient.Reference, "Patient")
	if pid == "" {
		return nil
	}
	if a.p.ActingFor != "" && a.p.ActingFor != "Patient/"+pid {
		return nil // acting for someone this related person does not belong to
	}
	a.relatedPatient = pid
	gezag := false
	for _, r := range rel.Relationship {
		for _, c := range r.Coding {
			if c.System == RelationshipSystem && c.Code == Gezaghebbende {
				gezag = true
			}
		}
	}
	pat, err := p.src.Read(ctx, "Patient", pid)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrDeleted) {
			return nil
		}
		return err
	}
	var pt struct{ BirthDate string }
	_ = json.Unmarshal(pat.Body, &pt)
	age := -1
	if bd, _, ok := dateRange(pt.BirthDate); ok {
		age = ageOn(bd, p.now())
	}
	permit, deny, err := p.consents(ctx, pid, "RelatedPerson/"+rid)
	if err != nil {
		return err
	}
	parts := map[string]bool{}
	switch {
	case gezag && age >= 0 && age < 12:
		for part := range p.rules.Parts {
			parts[part] = true
		}
	case gezag && age >= 12 && age < 16:
		for part := range p.rules.Parts {
			if !deny[part] {
				parts[part] = true
			}
		}
	default:
		for part := range permit {
			if !deny[part] {
				parts[part] = true
			}
		}
	}
	a.youngChild = gezag && age >= 0 && age < 12
	types := map[string]bool{}
	for part := range parts {
		for _, t := range p.rules.Parts[part] {
			types[t] = true
		}
	}
	a.partial[pid] = types
	return nil
}

// ageOn returns the age in whole years on day now of someone born on bd.
func ageOn(bd, now time.Time) int {
	y := now.Year() - bd.Year()
	if now.Month() < bd.Month() || now.Month() == bd.Month() && now.Day() < bd.Day() {
		y--
	}
	return y
}

// consents returns the dossier parts that active privacy Consents of
// patient pid permit and deny to actor (a reference) today.
func (p *Policy) consents(ctx context.Context, pid, actor string) (permit, deny map[string]bool, err error) {
	permit, deny = map[string]bool{}, map[string]bool{}
	rs, err := p.search(ctx, "Consent", ref("patient", "Patient", pid))
	if err != nil {
		return nil, nil, err
	}
	now := p.now()
	for _, r := range rs {
		var c consentDoc
		if json.Unmarshal(r.Body, &c) != nil || c.Status != "active" || !c.privacy() {
			continue
		}
		c.Provision.apply(p, actor, now, "", permit, deny)
	}
	return permit, deny, nil
}

type consentDoc struct {
	Status string `json:"status"`
	Scope  struct {
		Coding []struct{ System, Code string }
	} `json:"scope"`
	Provision provision `json:"provision"`
}

func (c *consentDoc) privacy() bool {
	for _, cd := range c.Scope.Coding {
		if cd.Code == "patient-privacy" {
			return true
		}
	}
	return false
}

type provision struct {
	Type   string `json:"type"`
	Period struct{ Start, End string }
	Actor  []struct {
		Reference struct{ Reference string } `json:"reference"`
	} `json:"actor"`
	Code []struct {
		Coding []struct{ System, Code string }
	} `json:"code"`
	Provision []provision `json:"provision"`
}

// apply records what pv (and its nested provisions, which refine it)
// permits and denies to actor at now. parentType is the enclosing
// provision's type (a nested provision without a type has the opposite of
// its parent's, as in the specification's examples).
func (pv *provision) apply(p *Policy, actor string, now time.Time, parentType string, permit, deny map[string]bool) {
	typ := pv.Type
	if typ == "" {
		typ = "permit"
		if parentType == "permit" {
			typ = "deny"
		}
	}
	if !pv.inPeriod(now) {
		return
	}
	applies := len(pv.Actor) == 0
	for _, ac := range pv.Actor {
		if ac.Reference.Reference == actor {
			applies = true
		}
	}
	if applies {
		var parts []string
		for _, c := range pv.Code {
			for _, cd := range c.Coding {
				if cd.System == DossierPartSystem {
					parts = append(parts, cd.Code)
				}
			}
		}
		if len(pv.Code) == 0 && (len(pv.Actor) > 0 || parentType == "") {
			for part := range p.rules.Parts {
				parts = append(parts, part)
			}
		}
		for _, part := range parts {
			if typ == "permit" && len(pv.Actor) > 0 {
				permit[part] = true
			}
			if typ == "deny" {
				deny[part] = true
			}
		}
	}
	for i := range pv.Provision {
		pv.Provision[i].apply(p, actor, now, typ, permit, deny)
	}
}

func (pv *provision) inPeriod(now time.Time) bool {
	if lo, _, ok := dateRange(pv.Period.Start); ok && now.Before(lo) {
		return false
	}
	if _, hi, ok := dateRange(pv.Period.End); ok && now.After(hi) {
		return false
	}
	return true
}

// staffAccess: rules 4, 5, 6 and 7 (helpdesk).
func (p *Policy) staffAccess(ctx context.Context, a *Access, xid string) error {
	me := ref
	roles, err := p.search(ctx, "PractitionerRole", me("practitioner", "Practitioner", xid))
	if err != nil {
		return err
	}
	now := p.now()
	for _, r := range roles {
		var pr struct {
			Active       *bool `json:"active"`
			Period       struct{ Start, End string }
			Organization struct{ Reference string }
			Code         []struct {
				Coding []struct{ System, Code string }
			}
		}
		if json.Unmarshal(r.Body, &pr) != nil || pr.Active != nil && !*pr.Active {
			continue
		}
		if _, hi, ok := dateRange(pr.Period.End); ok && now.After(hi) {
			continue
		}
		if org := idOf(pr.Organization.Reference, "Organization"); org != "" {
			a.orgs[org] = true
		}
		for _, c := range pr.Code {
			for _, cd := range c.Coding {
				if cd.System == StaffRoleSystem {
					a.roles[cd.Code] = true
				}
			}
		}
	}
	teams, err := p.search(ctx, "CareTeam", me("participant", "Practitioner", xid))
	if err != nil {
		return err
	}
	var teamIDs []search.Value
	for _, t := range teams {
		if memberNow(t, "Practitioner/"+xid, now) {
			teamIDs = append(teamIDs, search.Value{RefType: "CareTeam", RefID: t.ID})
		}
	}
	var where search.Expr = ref("care-manager", "Practitioner", xid)
	if len(teamIDs) > 0 {
		where = search.Or{where, &search.Match{Param: "team", Type: fhir.ParamReference, Values: teamIDs}}
	}
	eps, err := p.search(ctx, "EpisodeOfCare", where)
	if err != nil {
		return err
	}
	for _, r := range eps {
		ep := episodeOf(r)
		if ep.patient == "" {
			continue
		}
		// write access while any connecting episode is open (rule 6)
		a.full[ep.patient] = a.full[ep.patient] || !ep.closed(now)
	}
	// break-the-glass grants
	if p.records != nil {
		err := p.records.ListRecords(ctx, breakGlassKind, "Practitioner/"+xid+"|", func(rec *storage.Record) error {
			_, pid, _ := strings.Cut(rec.Key, "|")
			var g grant
			if json.Unmarshal(rec.Value, &g) != nil || !now.Before(g.Until) {
				return nil // ended
			}
			if fhir.ValidID(pid) {
				if _, ok := a.full[pid]; !ok {
					a.full[pid] = false // break-the-glass opens a dossier for reading only
				}
				a.breakGlass[pid] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// memberNow reports whether who is an active participant of care team r at now.
func memberNow(r *fhir.Resource, who string, now time.Time) bool {
	var ct struct {
		Status      string `json:"status"`
		Participant []struct {
			Member struct{ Reference string }  `json:"member"`
			Period struct{ Start, End string } `json:"period"`
		} `json:"participant"`
	}
	if json.Unmarshal(r.Body, &ct) != nil {
		return false
	}
	switch ct.Status {
	case "inactive", "entered-in-error":
		return false
	}
	for _, pt := range ct.Participant {
		if pt.Member.Reference != who && idOf(pt.Member.Reference, "Practitioner") != strings.TrimPrefix(who, "Practitioner/") {
			continue
		}
		if lo, _, ok := dateRange(pt.Period.Start); ok && now.Before(lo) {
			continue
		}
		if _, hi, ok := dateRange(pt.Period.End); ok && now.After(hi) {
			continue
		}
		return true
	}
	return false
}

// ref is a reference Match: param = Type/id.
func ref(param, typ, id string) *search.Match {
	return &search.Match{Param: param, Type: fhir.ParamReference, Values: []search.Value{{RefType: typ, RefID: id}}}
}

// search returns every current resource of typ matching where, through
// all pages.
func (p *Policy) search(ctx context.Context, typ string, where search.Expr) ([]*fhir.Resource, error) {
	q := &search.Query{Types: []string{typ}, Where: where, Count: storage.MaxCount, Total: search.TotalNone}
	var out []*fhir.Resource
	for i := 0; i < 100; i++ {
		page, err := p.src.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("policy: looking up %s: %w", typ, err)
		}
		out = append(out, page.Resources...)
		if page.Next == "" {
			return out, nil
		}
		q.Cursor = page.Next
	}
	return nil, fmt.Errorf("policy: too many %s resources for one principal", typ)
}
