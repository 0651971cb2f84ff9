package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"regie/auth"
	"regie/auth/audit"
	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// Directory is the identity broker's view of the store: it links logins to
// Patient, RelatedPerson and Practitioner resources. Its lookups are part of
// a login, which the broker audits as such, so they are not audited one by
// one.
type Directory struct{ e *Engine }

// Directory returns the lookups the identity broker needs.
func (e *Engine) Directory() *Directory { return &Directory{e} }

// FindByIdentifier returns the references of the current resources of typ
// with identifier system|value.
func (d *Directory) FindByIdentifier(ctx context.Context, typ, system, value string) ([]string, error) {
	if err := d.e.CheckType(typ); err != nil {
		return nil, err
	}
	q := &search.Query{Types: []string{typ}, Count: 10, Total: search.TotalNone, Where: &search.Match{
		Param: "identifier", Type: fhir.ParamToken, Values: []search.Value{{System: system, Code: value}},
	}}
	page, err := d.e.store.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, r := range page.Resources {
		refs = append(refs, r.Type+"/"+r.ID)
	}
	return refs, nil
}

// Read returns the JSON of the resource ref ("Type/id").
func (d *Directory) Read(ctx context.Context, ref string) ([]byte, error) {
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || d.e.CheckType(typ) != nil || !fhir.ValidID(id) {
		return nil, fmt.Errorf("engine: directory: %w", storage.ErrNotFound)
	}
	r, err := d.e.store.Read(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	return r.Body, nil
}

// Audit stores a security event of the identity broker (login, failed
// login, step-up, logout, ...) as an AuditEvent.
func (e *Engine) Audit(ctx context.Context, ae auth.AuditEvent) error {
	if !e.audit {
		return nil
	}
	ev := audit.Event{Time: ae.When, Who: ae.Subject, OnBehalfOf: ae.ActingFor, Client: ae.ClientID, Session: ae.SessionID,
		Address: ae.IP, Action: audit.ActionExecute, RequestID: requestInfo(ctx).ID}
	switch ae.Action {
	case "login", "logout", "step-up":
		ev.Kind = ae.Action
	case "login-failed", "lockout":
		ev.Kind = "login-failed"
	case "step-up-failed":
		ev.Kind = "step-up"
	default:
		ev.Kind = "login"
		ev.PurposeText = ae.Action
	}
	if ae.Outcome != "success" {
		ev.Outcome = audit.SeriousFailure
	}
	ev.OutcomeDesc = strings.TrimSpace(ae.Action + " " + ae.Reason)
	if strings.HasPrefix(ae.ActingFor, "Patient/") {
		ev.Patients = []string{strings.TrimPrefix(ae.ActingFor, "Patient/")}
	} else if strings.HasPrefix(ae.Subject, "Patient/") {
		ev.Patients = []string{strings.TrimPrefix(ae.Subject, "Patient/")}
	}
	return e.appendAudit(ctx, nil, &ev)
}

// MailNotifier notifies clients by e-mail at the address in their Patient
// resource.
type MailNotifier struct {
	Engine *Engine
	Mailer auth.Mailer
}

// BreakGlass tells the client that someone opened their dossier.
func (n *MailNotifier) BreakGlass(ctx context.Context, patientID, who, reason string, until time.Time) error {
	r, err := n.Engine.store.Read(ctx, "Patient", patientID)
	if err != nil {
		return err
	}
	var p struct {
		Telecom []struct{ System, Value string }
	}
	_ = json.Unmarshal(r.Body, &p)
	to := ""
	for _, t := range p.Telecom {
		if t.System == "email" && t.Value != "" {
			to = t.Value
			break
		}
	}
	if to == "" {
		return fmt.Errorf("engine: notify: patient has no e-mail address")
	}
	body := "Beste,\n\nEen medewerker die niet tot uw vaste team hoort, heeft uw dossier geopend met de reden:\n\n  " + reason +
		"\n\nDeze toegang duurt tot " + until.Local().Format("2-1-2006 15:04") + ". U ziet dit ook in het overzicht 'Wie heeft mijn dossier bekeken' in het portaal.\n\nMet vriendelijke groet,\nRegie"
	return n.Mailer.SendMail(ctx, to, "Uw dossier is geopend door een medewerker buiten uw team", body)
}
