package embedded_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"regie/fhir"
	"regie/fhir/search"
	"regie/storage"
	"regie/storage/embedded"
)

const crashEnv = "REGIE_EMBEDDED_CRASH_DIR"

// crashChild is the child process of TestCrashSafety: it writes until it is
// killed and prints "ack <type> <id> <version>" after each acknowledged
// write.
func crashChild(dir string) {
	s, err := embedded.Open(dir, nil)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	ack := func(r *fhir.Resource) {
		out.Lock()
		fmt.Printf("ack %s %s %d\n", r.Type, r.ID, r.Version)
		out.Unlock()
	}
	fmt.Println("ready")
	deadline := time.Now().Add(30 * time.Second)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				id := fmt.Sprintf("g%d-%d", g, i%50) // later rounds update
				entries := []search.Entry{{Param: "code", Type: fhir.ParamToken, System: "http://crash", Code: id}}
				if g%4 == 0 {
					// A two-resource transaction.
					var rs []*fhir.Resource
					err := s.Transact(t0, func(tx storage.Tx) error {
						rs = rs[:0]
						for _, typ := range []string{"Encounter", "Condition"} {
							r, err := tx.Write(t0, &storage.Write{Type: typ, ID: id, Body: body(typ, i), Index: entries})
							if err != nil {
								return err
							}
							rs = append(rs, r)
						}
						return nil
					})
					if err != nil {
						fmt.Println("transact:", err)
						os.Exit(2)
					}
					for _, r := range rs {
						ack(r)
					}
					continue
				}
				r, err := s.Write(t0, &storage.Write{Type: "Observation", ID: id, Body: body("Observation", i), Index: entries})
				if err != nil {
					fmt.Println("write:", err)
					os.Exit(2)
				}
				ack(r)
			}
		})
	}
	wg.Wait()
	os.Exit(0)
}

// TestCrashSafety kills a writing process with SIGKILL, three times, and
// checks after each that every acknowledged write survived and the
// database is intact.
func TestCrashSafety(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("starts child processes; skipped in -short")
	}
	dir := t.TempDir()
	acked := map[string]int64{} // "Type/id" → highest acknowledged version
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n, killed := 0, false
		killAt := 200 + 300*round
		timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
		for sc.Scan() {
			line := sc.Text()
			f := strings.Fields(line)
			if len(f) == 4 && f[0] == "ack" {
				v, _ := strconv.ParseInt(f[3], 10, 64)
				key := f[1] + "/" + f[2]
				acked[key] = max(acked[key], v)
				n++
				if n == killAt && !killed {
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
					killed = true
				}
			} else if line != "ready" && !strings.HasPrefix(line, "=== RUN") {
				t.Logf("child: %s", line)
			}
		}
		timer.Stop()
		err = cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child ended after %d acks before it was killed: %v", round, n, err)
		}
		t.Logf("round %d: killed after %d acknowledged writes (%d more arrived before it died)", round, killAt, n-killAt)

		s, err := embedded.Open(dir, nil)
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		if err := s.Check(t.Context()); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for key, v := range acked {
			typ, id, _ := strings.Cut(key, "/")
			r, err := s.Read(t.Context(), typ, id)
			if err != nil {
				t.Fatalf("round %d: acknowledged %s version %d lost: %v", round, key, v, err)
			}
			if r.Version < v {
				t.Fatalf("round %d: %s at version %d, but version %d was acknowledged", round, key, r.Version, v)
			}
			p, err := s.Search(t.Context(), &search.Query{Types: []string{typ},
				Where: &search.Match{Param: "code", Type: fhir.ParamToken, Values: []search.Value{{System: "http://crash", Code: id}}}})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Resources) != 1 || p.Resources[0].ID != id {
				t.Fatalf("round %d: index of %s lost: %d matches", round, key, len(p.Resources))
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d resources acknowledged and found after 3 kills", len(acked))
}
