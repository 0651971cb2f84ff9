package engine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"regie/auth"
	"regie/auth/audit"
	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
)

// BundleRequest is one entry of a batch or transaction Bundle.
type BundleRequest struct {
	FullURL  string
	Resource json.RawMessage
	Method   string
	URL      string
	IfMatch  string
	// IfNoneExist is the query of a conditional create.
	IfNoneExist string
}

// EntryResult is the outcome of one Bundle entry, in the entry's order.
type EntryResult struct {
	Method string
	// Resource is the resource written or read (nil for a delete of nothing).
	Resource *fhir.Resource
	Created  bool
	// Page is the result of a history entry.
	Page *storage.Page
	// Search is the result of a search entry.
	Search *SearchResult
	// Err is the entry's failure (batch only; a failing transaction
	// entry fails the whole Bundle).
	Err error
}

// EntryError locates an error at one entry of a Bundle.
type EntryError struct {
	Index int
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("engine: Bundle.entry[%d]: %v", e.Index, e.Err)
}
func (e *EntryError) Unwrap() error { return e.Err }

// ParseBundle reads a batch or transaction Bundle.
func ParseBundle(body []byte) (typ string, entries []BundleRequest, err error) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
			Request  *struct {
				Method      string `json:"method"`
				URL         string `json:"url"`
				IfMatch     string `json:"ifMatch"`
				IfNoneExist string `json:"ifNoneExist"`
			} `json:"request"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return "", nil, fhir.Invalid(fhir.IssueStructure, "Bundle", "the body is not a valid Bundle", err.Error())
	}
	if b.ResourceType != "Bundle" {
		return "", nil, fhir.Invalid(fhir.IssueInvalid, "resourceType", "a batch or transaction must be a Bundle", "")
	}
	if b.Type != "batch" && b.Type != "transaction" {
		return "", nil, fhir.Invalid(fhir.IssueValue, "Bundle.type", "only batch and transaction Bundles can be posted to the base URL", fmt.Sprintf("got %q", b.Type))
	}
	for i, e := range b.Entry {
		path := fmt.Sprintf("Bundle.entry[%d]", i)
		if e.Request == nil {
			return "", nil, fhir.Invalid(fhir.IssueRequired, path+".request", "every entry needs a request", "")
		}
		m := strings.ToUpper(e.Request.Method)
		switch m {
		case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE":
		default:
			return "", nil, fhir.Invalid(fhir.IssueValue, path+".request.method", "unknown request method", "")
		}
		if e.Request.URL == "" {
			return "", nil, fhir.Invalid(fhir.IssueRequired, path+".request.url", "every entry needs a request url", "")
		}
		if (m == "POST" || m == "PUT" || m == "PATCH") && len(e.Resource) == 0 {
			return "", nil, fhir.Invalid(fhir.IssueRequired, path+".resource", "a "+m+" entry needs a resource", "")
		}
		entries = append(entries, BundleRequest{FullURL: e.FullURL, Resource: e.Resource, Method: m, URL: e.Request.URL,
			IfMatch: e.Request.IfMatch, IfNoneExist: e.Request.IfNoneExist})
	}
	return b.Type, entries, nil
}

// entryTarget is a parsed entry URL: Type, Type/id, Type/id/_history[/vid], or Type?query.
type entryTarget struct {
	typ, id, vid string
	history      bool
	rawQuery     string
	hasQuery     bool
}

func parseEntryURL(raw string) (*entryTarget, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	p := strings.Trim(u.Path, "/")
	if u.IsAbs() {
		// an absolute URL: keep the trailing Type[/id[...]] part
		parts := strings.Split(p, "/")
		for i, s := range parts {
			if s != "" && s[0] >= 'A' && s[0] <= 'Z' {
				p = strings.Join(parts[i:], "/")
				break
			}
		}
	}
	t := &entryTarget{}
	parts := strings.Split(p, "/")
	t.typ = parts[0]
	switch {
	case len(parts) == 1:
	case len(parts) == 2 && parts[1] == "_history":
		t.history = true
	case len(parts) == 2:
		t.id = parts[1]
	case len(parts) == 3 && parts[2] == "_history":
		t.id, t.history = parts[1], true
	case len(parts) == 4 && parts[2] == "_history":
		t.id, t.vid = parts[1], parts[3]
	default:
		return nil, errors.New("unsupported url")
	}
	if u.RawQuery != "" {
		t.hasQuery, t.rawQuery = true, u.RawQuery
	}
	return t, nil
}

// Bundle runs a batch or transaction Bundle. For a transaction, every write
// commits together or not at all, and references to the fullUrl of a created
// entry are rewritten to the id it gets. Every entry is an interaction of
// its own for access control and audit.
func (e *Engine) Bundle(ctx context.Context, body []byte) (typ string, results []EntryResult, err error) {
	typ, entries, err := ParseBundle(body)
	if err != nil {
		return "", nil, err
	}
	if typ == "batch" {
		results = make([]EntryResult, len(entries))
		for i := range entries {
			results[i] = e.batchEntry(ctx, &entries[i])
		}
		return typ, results, nil
	}
	results, err = e.transaction(ctx, entries)
	return typ, results, err
}

func (e *Engine) batchEntry(ctx context.Context, r *BundleRequest) EntryResult {
	res := EntryResult{Method: r.Method}
	t, err := parseEntryURL(r.URL)
	if err != nil {
		res.Err = fhir.Invalid(fhir.IssueValue, "request.url", "the request url cannot be understood", err.Error())
		return res
	}
	var out *Result
	switch r.Method {
	case "GET", "HEAD":
		return e.readEntry(ctx, r, t)
	case "POST":
		if t.id != "" || t.history {
			res.Err = fhir.Invalid(fhir.IssueValue, "request.url", "POST goes to a resource type", "")
			return res
		}
		if r.IfNoneExist != "" {
			out, err = e.ConditionalCreate(ctx, t.typ, r.Resource, r.IfNoneExist)
		} else {
			out, err = e.Create(ctx, t.typ, r.Resource)
		}
	case "PUT":
		if t.hasQuery && t.id == "" {
			out, err = e.ConditionalUpdate(ctx, t.typ, r.Resource, t.rawQuery, r.IfMatch)
		} else {
			out, err = e.Update(ctx, t.typ, t.id, r.Resource, r.IfMatch)
		}
	case "PATCH":
		var patch []byte
		patch, err = patchBody(r.Resource)
		if err == nil {
			out, err = e.Patch(ctx, t.typ, t.id, patch, r.IfMatch)
		}
	case "DELETE":
		if t.hasQuery && t.id == "" {
			out, err = e.ConditionalDelete(ctx, t.typ, t.rawQuery)
		} else {
			out, err = e.Delete(ctx, t.typ, t.id, r.IfMatch)
		}
	}
	if err != nil {
		res.Err = err
		return res
	}
	res.Resource, res.Created = out.Resource, out.Created
	return res
}

// patchBody extracts a JSON Patch from a Binary entry resource.
func patchBody(resource []byte) ([]byte, error) {
	var bin struct {
		ResourceType string `json:"resourceType"`
		ContentType  string `json:"contentType"`
		Data         string `json:"data"`
	}
	if err := json.Unmarshal(resource, &bin); err != nil || bin.ResourceType != "Binary" || !strings.HasPrefix(bin.ContentType, "application/json-patch+json") {
		return nil, fhir.Invalid(fhir.IssueNotSupported, "resource", "a PATCH entry must carry a Binary with contentType application/json-patch+json", "")
	}
	p, err := base64.StdEncoding.DecodeString(bin.Data)
	if err != nil {
		return nil, fhir.Invalid(fhir.IssueValue, "resource.data", "the patch is not valid base64", "")
	}
	return p, nil
}

// readEntry runs a GET entry as the interaction it names.
func (e *Engine) readEntry(ctx context.Context, r *BundleRequest, t *entryTarget) EntryResult {
	res := EntryResult{Method: r.Method}
	switch {
	case t.vid != "":
		res.Resource, res.Err = e.VRead(ctx, t.typ, t.id, t.vid)
	case t.history:
		res.Page, res.Err = e.History(ctx, &storage.HistoryQuery{Type: t.typ, ID: t.id})
	case t.id != "":
		res.Resource, res.Err = e.Read(ctx, t.typ, t.id)
	default:
		params, err := search.ParseParams(t.rawQuery)
		if err != nil {
			res.Err = err
			return res
		}
		sr, err := e.Search(ctx, &SearchRequest{Types: []string{t.typ}, Params: params})
		if err != nil {
			res.Err = err
			return res
		}
		res.Search = sr
	}
	return res
}

// txEntry is a transaction entry prepared before the transaction starts.
type txEntry struct {
	t      *entryTarget
	o      *op
	p      *prepared // the new version (POST, PUT)
	patch  []byte    // PATCH
	ifNone *search.Query
	// cond is the resolved condition of a conditional entry: its query and
	// the id it matched outside the transaction ("" for none).
	cond *search.Query
	// existing is set when a conditional create found a match.
	existing bool
}

// transaction runs the entries of a transaction Bundle atomically, in the
// order the specification prescribes: deletes, creates, updates and patches;
// reads run after the commit.
func (e *Engine) transaction(ctx context.Context, entries []BundleRequest) ([]EntryResult, error) {
	tes := make([]*txEntry, len(entries))
	ids := map[string]string{} // fullUrl -> Type/id
	for i := range entries {
		r := &entries[i]
		t, err := parseEntryURL(r.URL)
		if err != nil {
			return nil, &EntryError{i, fhir.Invalid(fhir.IssueValue, "request.url", "the request url cannot be understood", err.Error())}
		}
		if err := e.CheckType(t.typ); err != nil {
			return nil, &EntryError{i, err}
		}
		te := &txEntry{t: t}
		tes[i] = te
		if r.Method == "GET" || r.Method == "HEAD" {
			continue
		}
		interaction, action := map[string]string{"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[r.Method],
			map[string]audit.Action{"POST": audit.ActionCreate, "PUT": audit.ActionUpdate, "PATCH": audit.ActionUpdate, "DELETE": audit.ActionDelete}[r.Method]
		o, err := e.begin(ctx, interaction, action)
		if err == nil {
			err = o.writeGate(t.typ, auth.Interaction(interaction))
		}
		if err != nil {
			return nil, &EntryError{i, o.finish(ctx, err)}
		}
		te.o = o
		switch r.Method {
		case "POST":
			if t.id != "" || t.history {
				return nil, &EntryError{i, fhir.Invalid(fhir.IssueValue, "request.url", "POST goes to a resource type", "")}
			}
			t.id = e.newID()
			if r.IfNoneExist != "" {
				q, match, err := e.resolve(ctx, o, t.typ, r.IfNoneExist)
				if err != nil {
					return nil, &EntryError{i, err}
				}
				if match != nil {
					t.id, te.existing = match.ID, true
				}
				te.ifNone = q
			}
		case "PUT", "DELETE":
			if t.id == "" && t.hasQuery {
				q, match, err := e.resolve(ctx, o, t.typ, t.rawQuery)
				if err != nil {
					return nil, &EntryError{i, err}
				}
				switch {
				case match != nil:
					t.id = match.ID
				case r.Method == "PUT":
					if _, id, _ := fhir.Header(r.Resource); id != "" {
						t.id = id
					} else {
						t.id = e.newID()
					}
				}
				te.cond = q
			}
			if t.id == "" && r.Method == "PUT" {
				return nil, &EntryError{i, fhir.Invalid(fhir.IssueRequired, "request.url", "PUT needs Type/id or a condition", "")}
			}
		case "PATCH":
			if t.id == "" {
				return nil, &EntryError{i, fhir.Invalid(fhir.IssueNotSupported, "request.url", "conditional PATCH is not supported", "")}
			}
		}
		if r.FullURL != "" && t.id != "" && (r.Method == "POST" || strings.HasPrefix(r.FullURL, "urn:")) {
			ids[r.FullURL] = t.typ + "/" + t.id
		}
	}
	// Rewrite references to fullUrls, then validate and index every write
	// before the transaction starts.
	for i := range entries {
		r, te := &entries[i], tes[i]
		body := []byte(r.Resource)
		if len(body) > 0 && len(ids) > 0 {
			var err error
			body, err = fhir.MapStrings(body, func(s string) (string, bool) {
				v, ok := ids[s]
				return v, ok
			})
			if err != nil {
				return nil, &EntryError{i, fhir.Invalid(fhir.IssueStructure, "resource", "the resource is not valid JSON", err.Error())}
			}
		}
		switch r.Method {
		case "POST":
			p, err := e.prepare(te.t.typ, body)
			if err != nil {
				return nil, &EntryError{i, te.o.finish(ctx, err)}
			}
			p.id = te.t.id
			te.p = p
		case "PUT":
			w, err := e.updateWrite(te.t.typ, te.t.id, withID(body, te.t.id, te.cond != nil), r.IfMatch)
			if err != nil {
				return nil, &EntryError{i, te.o.finish(ctx, err)}
			}
			te.p = &prepared{typ: te.t.typ, id: te.t.id, body: w.Body, index: w.Index}
		case "PATCH":
			p, err := patchBody(body)
			if err != nil {
				return nil, &EntryError{i, err}
			}
			te.patch = p
		}
	}
	results := make([]EntryResult, len(entries))
	order := func(m string) int {
		switch m {
		case "DELETE":
			return 0
		case "POST":
			return 1
		case "PUT", "PATCH":
			return 2
		}
		return 3
	}
	err := e.store.Transact(ctx, func(tx storage.Tx) error {
		for pass := 0; pass < 3; pass++ {
			for i := range entries {
				r, te := &entries[i], tes[i]
				if order(r.Method) != pass {
					continue
				}
				res, err := e.txEntry(ctx, tx, r, te)
				if err != nil {
					return &EntryError{i, err}
				}
				results[i] = *res
			}
		}
		return nil
	})
	for _, te := range tes {
		if te.o != nil {
			te.o.committed(err)
		}
	}
	if err != nil {
		var ee *EntryError
		if errors.As(err, &ee) && tes[ee.Index].o != nil {
			ee.Err = tes[ee.Index].o.finish(ctx, ee.Err)
		}
		return nil, err
	}
	for i := range entries {
		if r := &entries[i]; r.Method == "GET" || r.Method == "HEAD" {
			results[i] = e.readEntry(ctx, r, tes[i].t)
		}
	}
	return results, nil
}

// txEntry performs one write entry of a transaction inside tx.
func (e *Engine) txEntry(ctx context.Context, tx storage.Tx, r *BundleRequest, te *txEntry) (*EntryResult, error) {
	res := &EntryResult{Method: r.Method}
	t := te.t
	// a condition resolved before the transaction must still hold
	for _, q := range []*search.Query{te.ifNone, te.cond} {
		if q == nil {
			continue
		}
		match, err := matchOne(ctx, tx, q)
		if err != nil && !errors.Is(err, ErrMultipleMatches) {
			return nil, err
		}
		want := ""
		if te.existing || te.cond != nil {
			want = t.id
		}
		if err != nil || match != nil && match.ID != want || match == nil && (te.existing || r.Method == "DELETE" && t.id != "") {
			return nil, fmt.Errorf("%w: the condition's matches changed during the transaction; retry", storage.ErrVersionConflict)
		}
	}
	if te.existing {
		cur, err := tx.Read(ctx, t.typ, t.id)
		if err != nil {
			return nil, err
		}
		res.Resource = cur
		return res, nil
	}
	var cur *fhir.Resource
	if r.Method != "POST" && t.id != "" {
		c, err := tx.Read(ctx, t.typ, t.id)
		switch {
		case err == nil, errors.Is(err, storage.ErrDeleted):
			cur = c
		case errors.Is(err, storage.ErrNotFound):
		default:
			return nil, err
		}
	}
	var w *storage.Write
	var interaction auth.Interaction
	p := te.p
	switch r.Method {
	case "POST":
		interaction = auth.InteractionCreate
		w = &storage.Write{Type: t.typ, ID: t.id, Body: p.body, Index: p.index, CreateOnly: true}
	case "PUT":
		interaction = auth.InteractionUpdate
		w = &storage.Write{Type: t.typ, ID: t.id, Body: p.body, Index: p.index}
		if r.IfMatch != "" {
			v, err := ParseVersion(r.IfMatch)
			if err != nil {
				return nil, err
			}
			w.IfMatch = v
		}
	case "PATCH":
		interaction = auth.InteractionPatch
		if cur == nil || cur.Deleted {
			return nil, storage.ErrNotFound
		}
		ops, err := decodePatch(te.patch)
		if err != nil {
			return nil, err
		}
		patched, err := ops.Apply(cur.Body)
		if err != nil {
			return nil, fhir.Invalid(fhir.IssueProcessing, "", "the patch cannot be applied to the resource", err.Error())
		}
		uw, err := e.updateWrite(t.typ, t.id, patched, r.IfMatch)
		if err != nil {
			return nil, err
		}
		w, p = uw, &prepared{typ: t.typ, id: t.id, body: uw.Body, index: uw.Index}
	case "DELETE":
		interaction = auth.InteractionDelete
		if t.id == "" || cur == nil || cur.Deleted {
			return res, nil // nothing to delete
		}
		w = &storage.Write{Type: t.typ, ID: t.id, Delete: true}
		p = nil
	}
	if w.IfMatch != 0 && (cur == nil || cur.Version != w.IfMatch) {
		return nil, storage.ErrVersionConflict
	}
	out, err := e.txWrite(ctx, tx, te.o, interaction, cur, p, w)
	if err != nil {
		return nil, err
	}
	res.Resource, res.Created = out.Resource, out.Created
	return res, nil
}

// withID sets the id of a conditional PUT's body to the resolved id when
// the body has none.
func withID(body []byte, id string, conditional bool) []byte {
	if !conditional {
		return body
	}
	if _, has, _ := fhir.Header(body); has != "" {
		return body
	}
	if out, err := fhir.WithID(body, id); err == nil {
		return out
	}
	return body
}

// resolve runs a conditional entry's condition before the transaction:
// the query (re-checked inside the transaction) and its one match, if any.
func (e *Engine) resolve(ctx context.Context, o *op, typ, condition string) (*search.Query, *fhir.Resource, error) {
	q, err := e.condition(o, typ, condition)
	if err != nil {
		return nil, nil, err
	}
	match, err := matchOne(ctx, e.store, q)
	return q, match, err
}
