package auth

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// openidClientDir installs the npm package openid-client into the
// repository's .cache (gitignored) once, and returns its directory.
func openidClientDir(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("interop test skipped in -short mode")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: cannot run the openid-client interop test")
	}
	root, err := filepath.Abs(filepath.Join("..", ".cache", "openid-client"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "node_modules", "openid-client", "package.json")); err == nil {
		return root
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed: cannot fetch openid-client")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--silent", "openid-client@6.8.9")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("npm could not install openid-client (registry unreachable?): %v: %s", err, out)
	}
	return root
}

// TestOpenIDClientInterop has an independent client complete code+PKCE,
// refresh and userinfo against the OP.
func TestOpenIDClientInterop(t *testing.T) {
	dir := openidClientDir(t)
	f := newFixture(t, nil)
	hc := f.browser()
	f.loginAs(hc, citizen())
	// ESM resolves packages from the script's directory: run a copy there
	src, err := os.ReadFile(filepath.Join("testdata", "openid-client.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "interop.mjs")
	if err := os.WriteFile(script, src, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ISSUER="+f.base, "CLIENT_ID=app", "CLIENT_SECRET="+appSecret, "REDIRECT_URI="+appRedirect)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var result map[string]any
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "AUTH "):
			resp := f.get(hc, strings.TrimPrefix(line, "AUTH "))
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("authorize for openid-client: %d", resp.StatusCode)
			}
			fmt.Fprintln(stdin, resp.Header.Get("Location"))
		case strings.HasPrefix(line, "RESULT "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &result); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("openid-client failed: %v\n%s", err, stderr.String())
	}
	claims, _ := result["claims"].(map[string]any)
	if claims == nil || claims["iss"] != f.base || claims["aud"] == nil || claims["fhirUser"] != f.base+"/fhir/Patient/p1" || claims["acr"] != ACRSubstantieel {
		t.Errorf("claims %v", result["claims"])
	}
	if result["refreshed"] != true || result["patient"] != "p1" {
		t.Errorf("result %v", result)
	}
	if ui, _ := result["userinfo"].(map[string]any); ui == nil || ui["sub"] != claims["sub"] {
		t.Errorf("userinfo %v", result["userinfo"])
	}
}
