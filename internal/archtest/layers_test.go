package archtest

import (
	"bytes"
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Dir        string
	Name       string
	Imports    []string
	Deps       []string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json", "regie/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func deps(t *testing.T, path string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", path)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", path, err)
	}
	return strings.Fields(string(out))
}

func under(path, prefix string) bool { return path == prefix || strings.HasPrefix(path, prefix+"/") }

// TestImportBoundaries checks the arrows between the layers.
func TestImportBoundaries(t *testing.T) {
	const (
		fiber = "github.com/gofiber/fiber"
		mongo = "go.mongodb.org/mongo-driver"
	)
	for _, p := range listPackages(t) {
		path := p.ImportPath
		for _, d := range deps(t, path) {
			if under(path, "regie/fhir") {
				for _, banned := range []string{"regie/storage", "regie/server", "regie/auth", "regie/cmd", fiber, mongo} {
					if under(d, banned) || strings.HasPrefix(d, banned) {
						t.Errorf("%s depends on %s: fhir/ must not reach storage, server, auth, Fiber or MongoDB", path, d)
					}
				}
			}
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, mongo) && !under(path, "regie/storage/mongo") && !under(path, "regie/cmd") {
				t.Errorf("%s imports %s: only storage/mongo (and cmd/) may import the MongoDB driver", path, imp)
			}
			if strings.HasPrefix(imp, fiber) && !under(path, "regie/server") && !under(path, "regie/cmd") {
				t.Errorf("%s imports %s: only server/ and cmd/ may import Fiber", path, imp)
			}
			if under(path, "regie/storage") && (under(imp, "regie/server") || under(imp, "regie/auth")) {
				t.Errorf("%s imports %s: storage knows neither HTTP nor auth", path, imp)
			}
			if under(path, "regie/auth") && under(imp, "regie/server") {
				t.Errorf("%s imports %s: auth must not know the server", path, imp)
			}
			if under(path, "regie/profiles") && strings.HasPrefix(imp, "regie/") {
				t.Errorf("%s imports %s: profiles is data only", path, imp)
			}
		}
	}
}

// TestPackageComments checks that every package has a package comment.
func TestPackageComments(t *testing.T) {
	for _, p := range listPackages(t) {
		documented := false
		for _, f := range p.GoFiles {
			af, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil && strings.TrimSpace(af.Doc.Text()) != "" {
				documented = true
				break
			}
		}
		if !documented {
			t.Errorf("package %s has no package comment", p.ImportPath)
		}
	}
}
