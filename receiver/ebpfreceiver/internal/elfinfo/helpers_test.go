package elfinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fixtures are the test programs, built from testdata into a test's
// temporary directory.
type fixtures struct {
	goBin       string // go build, optimised, with DWARF
	goStripped  string // go build -ldflags='-s -w'
	cBin        string // gcc -g -O1
	cStrippedDW string // gcc -O1 without -g
}

func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

func run(t testing.TB, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// goEnv pins the fixture build to the toolchain running the tests.
func goEnv(extra ...string) []string {
	return append([]string{"GOTOOLCHAIN=local", "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0"}, extra...)
}

// buildGo builds testdata/goprog into dir/name with extra go build flags.
func buildGo(t testing.TB, dir, name string, env []string, flags ...string) string {
	t.Helper()
	goTool := requireTool(t, "go")
	out := filepath.Join(dir, name)
	src, err := filepath.Abs(filepath.Join("testdata", "goprog"))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"build", "-o", out}, flags...)
	args = append(args, ".")
	run(t, src, env, goTool, args...)
	return out
}

// buildC compiles testdata/cprog/prog.c into dir/name with gcc.
func buildC(t testing.TB, dir, name string, flags ...string) string {
	t.Helper()
	gcc := requireTool(t, "gcc")
	out := filepath.Join(dir, name)
	src, err := filepath.Abs(filepath.Join("testdata", "cprog", "prog.c"))
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, flags...), "-o", out, src)
	run(t, dir, nil, gcc, args...)
	return out
}

func buildFixtures(t *testing.T) fixtures {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the fixtures are linux ELF binaries")
	}
	dir := t.TempDir()
	return fixtures{
		goBin:       buildGo(t, dir, "goprog", goEnv()),
		goStripped:  buildGo(t, dir, "goprog-stripped", goEnv(), "-ldflags=-s -w"),
		cBin:        buildC(t, dir, "cprog", "-g", "-O1"),
		cStrippedDW: buildC(t, dir, "cprog-nodebug", "-O1"),
	}
}

func openBinary(t *testing.T, path string) *Binary {
	t.Helper()
	b, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func mustFunction(t *testing.T, b *Binary, name string) Function {
	t.Helper()
	fn, err := b.Function(name)
	if err != nil {
		t.Fatalf("Function(%q): %v", name, err)
	}
	return fn
}

// buildRust compiles testdata/rustprog/prog.rs with rustc, skipping the test
// if rustc is not installed (it is optional for this package).
func buildRust(t *testing.T) string {
	t.Helper()
	rustc, err := exec.LookPath("rustc")
	if err != nil {
		if home, herr := os.UserHomeDir(); herr == nil {
			if p := filepath.Join(home, ".cargo", "bin", "rustc"); fileExists(p) {
				rustc, err = p, nil
			}
		}
	}
	if err != nil {
		t.Skipf("rustc not installed: %v", err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "rustprog")
	src, err := filepath.Abs(filepath.Join("testdata", "rustprog", "prog.rs"))
	if err != nil {
		t.Fatal(err)
	}
	run(t, dir, nil, rustc, "-g", "-C", "opt-level=1", "-o", out, src)
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// symbolWithPrefix returns the one function symbol starting with prefix
// (Rust symbols end in a hash).
func symbolWithPrefix(t *testing.T, b *Binary, prefix string) string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var found []string
	for _, s := range b.symbols().symtab {
		if strings.HasPrefix(s.Name, prefix) {
			found = append(found, s.Name)
		}
	}
	if len(found) != 1 {
		t.Fatalf("symbols with prefix %q: %q", prefix, found)
	}
	return found[0]
}
