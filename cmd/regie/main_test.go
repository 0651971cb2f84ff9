package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseFlagsFromEnvironment(t *testing.T) {
	var cfg serveConfig
	fs := newServeFlags(&cfg)
	env := map[string]string{"REGIE_LISTEN": "127.0.0.1:9999", "REGIE_BASE_URL": "https://regie.example", "REGIE_DEV": "true"}
	if err := parseFlags(fs, []string{"--listen", "127.0.0.1:7777"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7777" || cfg.BaseURL != "https://regie.example" || !cfg.Dev {
		t.Errorf("config %+v: the command line must win over the environment, the environment over defaults", cfg)
	}
	bad := map[string]string{"REGIE_DEV": "perhaps"}
	if err := parseFlags(newServeFlags(&serveConfig{}), nil, func(k string) string { return bad[k] }); err == nil || !strings.Contains(err.Error(), "REGIE_DEV") {
		t.Errorf("a bad environment value is not reported by name: %v", err)
	}
}

func newServeFlags(cfg *serveConfig) *flagSet {
	fs := newFlagSet("serve")
	cfg.flags(fs)
	return fs
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for the server's log writer and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeGracefulShutdown starts `regie serve`, sends a large transaction
// and asks the server to stop while it runs: the transaction must complete,
// the server must stop, and the store must hold the data when reopened.
func TestServeGracefulShutdown(t *testing.T) {
	addr := freeAddr(t)
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--dev", "--demo=false", "--listen", addr, "--data", data}, io.Discard, &logs)
	}()
	base := "http://" + addr
	waitReady(t, base, done)
	token := systemToken(t, base)

	const n = 5000
	var tx strings.Builder
	tx.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			tx.WriteString(",")
		}
		fmt.Fprintf(&tx, `{"resource":{"resourceType":"Patient","id":"p%d","active":true,"name":[{"family":"F%d"}]},"request":{"method":"PUT","url":"Patient/p%d"}}`, i, i, i)
	}
	tx.WriteString("]}")
	type answer struct {
		status int
		err    error
		at     time.Time
	}
	res := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("POST", base+"/fhir", strings.NewReader(tx.String()))
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			res <- answer{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		res <- answer{status: resp.StatusCode, at: time.Now()}
	}()
	time.Sleep(100 * time.Millisecond) // the transaction is in flight
	cancel()                           // as SIGTERM does
	cancelled := time.Now()
	a := <-res
	if a.err != nil || a.status != 200 {
		t.Fatalf("in-flight transaction: status %d, error %v", a.status, a.err)
	}
	if !a.at.After(cancelled) {
		t.Fatalf("the transaction finished before shutdown began; make it larger")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(logs.String(), "store closed") {
		t.Errorf("the store was not closed cleanly; logs:\n%s", logs.String())
	}
	// the data is there after a restart
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() {
		done2 <- run(ctx2, []string{"serve", "--dev", "--demo=false", "--listen", addr, "--data", data}, io.Discard, io.Discard)
	}()
	waitReady(t, base, done2)
	req, _ := http.NewRequest("GET", base+fmt.Sprintf("/fhir/Patient/p%d", n-1), nil)
	req.Header.Set("Authorization", "Bearer "+systemToken(t, base))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("after restart: %v %v", resp, err)
	}
	cancel2()
	<-done2
}

func waitReady(t *testing.T, base string, done chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v", err)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server not ready")
}

// systemToken gets an access token for the dev system client.
func systemToken(t *testing.T, base string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/oauth/token", strings.NewReader("grant_type=client_credentials&scope=system/*.cruds"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("regie-dev", "regie-dev-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

// TestImportExportReindex imports the search test dataset, exports it
// again and rebuilds the index.
func TestImportExportReindex(t *testing.T) {
	data := t.TempDir()
	src, err := os.ReadFile("../../testdata/search/resources.json")
	if err != nil {
		t.Fatal(err)
	}
	var want []struct{ ResourceType, ID string }
	if err := json.Unmarshal(src, &want); err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	wantRefs := map[string]bool{}
	for _, r := range want {
		types[r.ResourceType] = true
		wantRefs[r.ResourceType+"/"+r.ID] = true
	}
	var typeList []string
	for t := range types {
		typeList = append(typeList, t)
	}
	var out, errOut bytes.Buffer
	ctx := context.Background()
	if err := run(ctx, []string{"import", "--data", data, "../../testdata/search/resources.json"}, &out, &errOut); err != nil {
		t.Fatalf("import: %v\n%s", err, errOut.String())
	}
	if got := fmt.Sprintf("imported %d resources from 1 files; 0 rejected\n", len(want)); out.String() != got {
		t.Fatalf("import said %q, want %q", out.String(), got)
	}
	export := func() map[string]bool {
		t.Helper()
		out.Reset()
		if err := run(ctx, []string{"export", "--data", data, "--types", strings.Join(typeList, ",")}, &out, &errOut); err != nil {
			t.Fatalf("export: %v\n%s", err, errOut.String())
		}
		got := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var m struct{ ResourceType, ID string }
			if err := json.Unmarshal([]byte(l), &m); err != nil || m.ResourceType == "" {
				t.Fatalf("export line is not a resource: %s", l)
			}
			got[m.ResourceType+"/"+m.ID] = true
		}
		return got
	}
	if got := export(); len(got) != len(wantRefs) {
		t.Errorf("exported %d resources, imported %d", len(got), len(wantRefs))
	}
	out.Reset()
	if err := run(ctx, []string{"reindex", "--data", data}, &out, &errOut); err != nil {
		t.Fatalf("reindex: %v\n%s", err, errOut.String())
	}
	var n int
	if _, err := fmt.Sscanf(out.String(), "reindexed %d resources", &n); err != nil || n < len(want) {
		t.Errorf("reindex said %q", out.String())
	}
	for ref := range export() {
		if !wantRefs[ref] {
			t.Errorf("after reindex, the export holds %s, which was not imported", ref)
		}
	}
}

// TestAuditVerifyDetectsTampering changes one stored AuditEvent behind
// Regie's back, as someone with access to the database file could, and
// expects `regie audit verify` to name it.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	data := t.TempDir()
	ctx := context.Background()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"import", "--data", data, "../../testdata/search/resources.json"}, &out, &errOut); err != nil {
		t.Fatalf("import: %v\n%s", err, errOut.String())
	}
	out.Reset()
	if err := run(ctx, []string{"audit", "verify", "--data", data}, &out, &errOut); err != nil {
		t.Fatalf("verify of an intact trail: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "intact") {
		t.Fatalf("verify said %q", out.String())
	}
	db, err := sql.Open("sqlite", filepath.Join(data, "regie.db"))
	if err != nil {
		t.Fatal(err)
	}
	var id string
	err = db.QueryRow(`SELECT r.id FROM versions v JOIN resources r ON r.rid = v.rid JOIN types t ON t.tid = v.tid
		WHERE t.name = 'AuditEvent' ORDER BY v.vid LIMIT 1 OFFSET 4`).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`UPDATE versions SET body = CAST(replace(CAST(body AS TEXT), '"outcome":"0"', '"outcome":"4"') AS BLOB)
		WHERE rid = (SELECT rid FROM resources WHERE id = ?)`, id)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("tampering: %v (%d rows)", err, n)
	}
	db.Close()
	out.Reset()
	err = run(ctx, []string{"audit", "verify", "--data", data}, &out, &errOut)
	if err == nil {
		t.Fatalf("a changed AuditEvent went unnoticed: %s", out.String())
	}
	// the link after the changed event no longer matches it
	if !strings.Contains(out.String(), "BROKEN after 5 intact") {
		t.Errorf("verify did not name the first broken link: %s", out.String())
	}
}
