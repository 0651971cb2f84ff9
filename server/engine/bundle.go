package engine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"regie/fhir"
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
	// Page is the result of a search or history entry.
	Page *storage.Page
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
	query        url.Values
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
		t.hasQuery = true
		t.query, err = url.ParseQuery(u.RawQuery)
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Bundle runs a batch or transaction Bundle. For a transaction, every write
// commits together or not at all, and references to the fullUrl of a created
// entry are rewritten to the id it gets.
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
		return e.readEntry(ctx, e.store, r, t)
	case "POST":
		if t.id != "" || t.history {
			res.Err = fhir.Invalid(fhir.IssueValue, "request.url", "POST goes to a resource type", "")
			return res
		}
		out, err = e.Create(ctx, t.typ, r.Resource)
	case "PUT":
		out, err = e.Update(ctx, t.typ, t.id, r.Resource, r.IfMatch)
	case "PATCH":
		var patch []byte
		patch, err = patchBody(r.Resource)
		if err == nil {
			out, err = e.Patch(ctx, t.typ, t.id, patch, r.IfMatch)
		}
	case "DELETE":
		out, err = e.Delete(ctx, t.typ, t.id, r.IfMatch)
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

func (e *Engine) readEntry(ctx context.Context, rd storage.Reader, r *BundleRequest, t *entryTarget) EntryResult {
	res := EntryResult{Method: r.Method}
	if err := e.CheckType(t.typ); err != nil {
		res.Err = err
		return res
	}
	switch {
	case t.vid != "":
		v, err := ParseVersion(t.vid)
		if err != nil {
			res.Err = storage.ErrNotFound
			return res
		}
		res.Resource, res.Err = rd.VRead(ctx, t.typ, t.id, v)
	case t.history:
		res.Page, res.Err = rd.History(ctx, &storage.HistoryQuery{Type: t.typ, ID: t.id})
	case t.id != "":
		if err := checkID(t.typ, t.id); err != nil {
			res.Err = err
			return res
		}
		res.Resource, res.Err = rd.Read(ctx, t.typ, t.id)
	default:
		res.Err = fhir.Invalid(fhir.IssueNotSupported, "request.url", "search entries are not supported in a Bundle yet", "")
	}
	return res
}

// transaction runs the entries of a transaction Bundle atomically, in the
// order the specification prescribes: deletes, creates, updates and patches,
// then reads.
func (e *Engine) transaction(ctx context.Context, entries []BundleRequest) ([]EntryResult, error) {
	targets := make([]*entryTarget, len(entries))
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
		targets[i] = t
		switch r.Method {
		case "POST":
			if t.id != "" || t.history {
				return nil, &EntryError{i, fhir.Invalid(fhir.IssueValue, "request.url", "POST goes to a resource type", "")}
			}
			t.id = e.newID()
			if r.FullURL != "" {
				ids[r.FullURL] = t.typ + "/" + t.id
			}
		case "PUT", "PATCH", "DELETE":
			if t.id == "" {
				return nil, &EntryError{i, fhir.Invalid(fhir.IssueNotSupported, "request.url", "conditional "+r.Method+" in a transaction is not supported yet", "")}
			}
			if r.FullURL != "" && strings.HasPrefix(r.FullURL, "urn:") {
				ids[r.FullURL] = t.typ + "/" + t.id
			}
		}
	}
	// Rewrite references to fullUrls, then validate and index every write
	// before the transaction starts.
	writes := make([]*storage.Write, len(entries))
	patches := make([][]byte, len(entries))
	for i := range entries {
		r, t := &entries[i], targets[i]
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
			p, err := e.prepare(t.typ, body)
			if err != nil {
				return nil, &EntryError{i, err}
			}
			writes[i] = &storage.Write{Type: t.typ, ID: t.id, Body: p.body, Index: p.index, CreateOnly: true}
		case "PUT":
			w, err := e.updateWrite(t.typ, t.id, body, r.IfMatch)
			if err != nil {
				return nil, &EntryError{i, err}
			}
			writes[i] = w
		case "PATCH":
			p, err := patchBody(body)
			if err != nil {
				return nil, &EntryError{i, err}
			}
			patches[i] = p
		case "DELETE":
			if err := checkID(t.typ, t.id); err != nil {
				return nil, &EntryError{i, err}
			}
			w := &storage.Write{Type: t.typ, ID: t.id, Delete: true}
			if r.IfMatch != "" {
				v, err := ParseVersion(r.IfMatch)
				if err != nil {
					return nil, &EntryError{i, err}
				}
				w.IfMatch = v
			}
			writes[i] = w
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
		for pass := 0; pass < 4; pass++ {
			for i := range entries {
				r := &entries[i]
				if order(r.Method) != pass {
					continue
				}
				res := EntryResult{Method: r.Method}
				switch r.Method {
				case "GET", "HEAD":
					res = e.readEntry(ctx, tx, r, targets[i])
					if res.Err != nil {
						return &EntryError{i, res.Err}
					}
				case "PATCH":
					w, err := e.patchWrite(ctx, tx, targets[i].typ, targets[i].id, patches[i], r.IfMatch)
					if err != nil {
						return &EntryError{i, err}
					}
					out, err := e.write(ctx, tx, w)
					if err != nil {
						return &EntryError{i, err}
					}
					res.Resource, res.Created = out.Resource, out.Created
				default:
					out, err := e.write(ctx, tx, writes[i])
					if err != nil {
						return &EntryError{i, err}
					}
					res.Resource, res.Created = out.Resource, out.Created
				}
				results[i] = res
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// patchWrite applies a JSON Patch to the current version of typ/id as read
// through rd and returns the resulting write.
func (e *Engine) patchWrite(ctx context.Context, rd storage.Reader, typ, id string, patch []byte, ifMatch string) (*storage.Write, error) {
	if err := checkID(typ, id); err != nil {
		return nil, err
	}
	ops, err := decodePatch(patch)
	if err != nil {
		return nil, err
	}
	cur, err := rd.Read(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	if ifMatch != "" {
		want, err := ParseVersion(ifMatch)
		if err != nil {
			return nil, err
		}
		if cur.Version != want {
			return nil, storage.ErrVersionConflict
		}
	}
	patched, err := ops.Apply(cur.Body)
	if err != nil {
		return nil, fhir.Invalid(fhir.IssueProcessing, "", "the patch cannot be applied to the resource", err.Error())
	}
	return e.updateWrite(typ, id, patched, fmt.Sprint(cur.Version))
}
