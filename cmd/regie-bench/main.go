// Command regie-bench runs Regie's load benchmarks against a real server on
// 127.0.0.1 and prints the figures recorded in docs/benchmarks.md.
//
//	go run ./cmd/regie-bench [-runs 5] [-reads 200000] [-creates 40000] [-c 32]
//	go run ./cmd/regie-bench search [-n 1000000] … (the search benchmark, search.go)
//
// It builds bin/regie, starts `regie serve` on a fresh data directory,
// installs the load tool it drives (rakyll/hey, with go install into
// .cache/bin) and runs each scenario several times with a bounded number of
// requests, reporting the median throughput and latency percentiles.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

const heyVersion = "github.com/rakyll/hey@v0.1.5"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "search" {
		os.Exit(searchMain(os.Args[2:]))
	}
	runs := flag.Int("runs", 5, "runs per scenario (the median is reported)")
	reads := flag.Int("reads", 200000, "requests per read run")
	creates := flag.Int("creates", 40000, "requests per create run")
	conc := flag.Int("c", 32, "concurrent connections")
	flag.Parse()
	if err := run(*runs, *reads, *creates, *conc); err != nil {
		fmt.Fprintln(os.Stderr, "regie-bench:", err)
		os.Exit(1)
	}
}

func run(runs, reads, creates, conc int) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	hey, err := installHey(root)
	if err != nil {
		return err
	}
	bin := filepath.Join(root, "bin", "regie")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/regie").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	data, err := os.MkdirTemp("", "regie-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(data)
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(data, "server.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	srv := exec.Command(bin, "serve", "--dev", "--demo=false", "--listen", addr, "--data", filepath.Join(data, "db"))
	srv.Stderr = logf
	srv.Stdout = logf
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		srv.Process.Signal(os.Interrupt)
		srv.Wait()
	}()
	base := "http://" + addr + "/fhir"
	if err := waitReady("http://" + addr + "/readyz"); err != nil {
		return err
	}
	token, err := systemToken("http://" + addr)
	if err != nil {
		return err
	}
	const authHeader = "Authorization: Bearer <token>" // replaced per run
	body := patient2KB("bench-read")
	req, _ := http.NewRequest("PUT", base+"/Patient/bench-read", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	stored, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 && resp.StatusCode != 200 {
		return fmt.Errorf("seed: %d %s", resp.StatusCode, stored)
	}
	createFile := filepath.Join(data, "create.json")
	if err := os.WriteFile(createFile, patient2KB(""), 0o600); err != nil {
		return err
	}

	cpu := cpuModel()
	fmt.Printf("machine: %d CPUs (%s), %s, Go %s\n", runtime.NumCPU(), cpu, runtime.GOOS+"/"+runtime.GOARCH, runtime.Version())
	fmt.Printf("server: bin/regie serve, embedded store, access log at info to a file; load: hey v0.1.5, %d connections\n", conc)
	fmt.Printf("read resource: %d bytes\n\n", len(stored))

	scenarios := []struct {
		name string
		args []string
	}{
		{"read by id (GET Patient/bench-read)", []string{"-n", strconv.Itoa(reads), "-c", strconv.Itoa(conc), "-H", "Accept: application/fhir+json", "-H", authHeader, base + "/Patient/bench-read"}},
		{"create (POST Patient, durable)", []string{"-n", strconv.Itoa(creates), "-c", strconv.Itoa(conc), "-m", "POST", "-T", "application/fhir+json", "-H", authHeader, "-D", createFile, base + "/Patient"}},
	}
	fmt.Println("| scenario | runs | requests/s (median) | p50 ms | p99 ms | non-2xx |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, sc := range scenarios {
		var rps, p50, p99 []float64
		bad := 0
		for i := 0; i < runs; i++ {
			// system tokens live five minutes: a fresh one for every run
			tok, err := systemToken("http://" + addr)
			if err != nil {
				return err
			}
			args := append([]string(nil), sc.args...)
			for j := range args {
				if args[j] == authHeader {
					args[j] = "Authorization: Bearer " + tok
				}
			}
			out, err := exec.Command(hey, args...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", sc.name, err, out)
			}
			r, err := parseHey(out)
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", sc.name, err, out)
			}
			rps = append(rps, r.rps)
			p50 = append(p50, r.p50*1000)
			p99 = append(p99, r.p99*1000)
			bad += r.non2xx
			fmt.Fprintf(os.Stderr, "  %s run %d: %.0f req/s, p50 %.2f ms, p99 %.2f ms\n", sc.name, i+1, r.rps, r.p50*1000, r.p99*1000)
		}
		fmt.Printf("| %s | %d | %.0f | %.2f | %.2f | %d |\n", sc.name, runs, median(rps), median(p50), median(p99), bad)
	}
	return nil
}

type heyResult struct {
	rps, p50, p99 float64
	non2xx        int
}

var (
	reRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reP50    = regexp.MustCompile(`50%+ in ([0-9.]+) secs`)
	reP99    = regexp.MustCompile(`99%+ in ([0-9.]+) secs`)
	reStatus = regexp.MustCompile(`\[(\d{3})\]\s+(\d+) responses`)
)

func parseHey(out []byte) (heyResult, error) {
	var r heyResult
	get := func(re *regexp.Regexp) (float64, error) {
		m := re.FindSubmatch(out)
		if m == nil {
			return 0, errors.New("unexpected hey output")
		}
		return strconv.ParseFloat(string(m[1]), 64)
	}
	var err error
	if r.rps, err = get(reRPS); err != nil {
		return r, err
	}
	if r.p50, err = get(reP50); err != nil {
		return r, err
	}
	if r.p99, err = get(reP99); err != nil {
		return r, err
	}
	for _, m := range reStatus.FindAllSubmatch(out, -1) {
		if m[1][0] != '2' {
			n, _ := strconv.Atoi(string(m[2]))
			r.non2xx += n
		}
	}
	if bytes.Contains(out, []byte("Error distribution")) {
		r.non2xx++ // transport errors count as failures
	}
	return r, nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// patient2KB returns a realistic Patient of about 2 KB.
func patient2KB(id string) []byte {
	idPart := ""
	if id != "" {
		idPart = `"id":"` + id + `",`
	}
	return []byte(`{"resourceType":"Patient",` + idPart + `"identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999911120"},{"system":"https://regie.nl/fhir/NamingSystem/client","value":"C-2026-000123"}],` +
		`"active":true,"name":[{"use":"official","family":"van der Berg","given":["Johanna","Maria"],"prefix":["mevrouw"]},{"use":"usual","given":["Anneke"]}],` +
		`"telecom":[{"system":"phone","value":"+31612345678","use":"mobile"},{"system":"email","value":"anneke.vanderberg@example.nl","use":"home"}],` +
		`"gender":"female","birthDate":"1984-06-21","address":[{"use":"home","line":["Lange Voorhout 12"],"city":"Den Haag","postalCode":"2514 EE","country":"NL"}],` +
		`"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M","display":"Married"}]},` +
		`"contact":[{"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0131","code":"N","display":"Next-of-Kin"}]}],"name":{"family":"van der Berg","given":["Pieter"]},"telecom":[{"system":"phone","value":"+31687654321"}]}],` +
		`"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-nationality","extension":[{"url":"code","valueCodeableConcept":{"coding":[{"system":"urn:iso:std:iso:3166","code":"NL","display":"Netherlands"}]}}]}],"communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"nl-NL","display":"Dutch (Netherlands)"}]},"preferred":true}],` +
		`"generalPractitioner":[{"reference":"Practitioner/huisarts-1","display":"dr. H. de Vries"}],"managingOrganization":{"reference":"Organization/wijkteam-centrum","display":"Wijkteam Centrum"},` +
		`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Johanna Maria (Anneke) van der Berg, geboren 21 juni 1984, Lange Voorhout 12, 2514 EE Den Haag. Contactpersoon: Pieter van der Berg, telefoon +31687654321.</p><p>Huisarts: dr. H. de Vries. Begeleiding door Wijkteam Centrum sinds maart 2025; voorkeurstaal Nederlands.</p><p>Cliëntnummer C-2026-000123.</p></div>"}}`)
}

// systemToken gets a token for the development system client (the server
// runs with --dev for the benchmark, without demo data).
func systemToken(base string) (string, error) {
	req, _ := http.NewRequest("POST", base+"/oauth/token", strings.NewReader("grant_type=client_credentials&scope=system/*.cruds"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("regie-dev", "regie-dev-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("token: status %d", resp.StatusCode)
	}
	return tok.AccessToken, nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the repository")
	}
	return filepath.Dir(mod), nil
}

func installHey(root string) (string, error) {
	binDir := filepath.Join(root, ".cache", "bin")
	hey := filepath.Join(binDir, "hey")
	if _, err := os.Stat(hey); err == nil {
		return hey, nil
	}
	cmd := exec.Command("go", "install", heyVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+binDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("installing hey: %v\n%s", err, out)
	}
	return hey, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitReady(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("server did not become ready")
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
