package symbolize

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// markerLine returns the 1-based line of file containing "@marker" as a whole
// word.
func markerLine(t testing.TB, file, marker string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		for _, f := range strings.Fields(l) {
			if f == "@"+marker {
				return i + 1
			}
		}
	}
	t.Fatalf("marker @%s not found in %s", marker, file)
	return 0
}

// realPath resolves symlinks so paths compare equal to /proc/<pid>/maps.
func realPath(t testing.TB, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	r, err = filepath.Abs(r)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func run(t testing.TB, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// buildGoProg builds testdata/goprog in its own throw-away module (so the
// build is independent of the enclosing module's dependencies) with the
// given extra go build flags and returns the binary path.
func buildGoProg(t testing.TB, flags ...string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	src, err := os.ReadFile(filepath.Join("testdata", "goprog", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	dir := realPath(t, t.TempDir())
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module goprog\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "goprog")
	args := append([]string{"build", "-o", out}, flags...)
	args = append(args, ".")
	run(t, dir, []string{"GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local"}, goTool, args...)
	return out
}

// cBuild is the output of buildCProgs.
type cBuild struct {
	dir    string
	lib    string // libx.so
	pie    string // PIE executable
	nopie  string // non-PIE (ET_EXEC) executable
	progC  string // absolute path of prog.c
	libxC  string // absolute path of libx.c
	srcDir string
}

// buildCProgs builds testdata/cprog: libx.so and prog linked against it, as
// PIE and non-PIE, with debug info.
func buildCProgs(t testing.TB) cBuild {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found")
	}
	srcDir, err := filepath.Abs(filepath.Join("testdata", "cprog"))
	if err != nil {
		t.Fatal(err)
	}
	dir := realPath(t, t.TempDir())
	b := cBuild{
		dir:    dir,
		lib:    filepath.Join(dir, "libx.so"),
		pie:    filepath.Join(dir, "prog_pie"),
		nopie:  filepath.Join(dir, "prog_nopie"),
		progC:  filepath.Join(srcDir, "prog.c"),
		libxC:  filepath.Join(srcDir, "libx.c"),
		srcDir: srcDir,
	}
	common := []string{"-g", "-O0", "-fno-omit-frame-pointer"}
	run(t, dir, nil, gcc, append(common, "-fPIC", "-shared", "-o", b.lib, b.libxC)...)
	link := []string{"-I" + srcDir, b.progC, "-L" + dir, "-lx", "-Wl,-rpath," + dir}
	run(t, dir, nil, gcc, append(append(common, "-pie", "-fPIE", "-o", b.pie), link...)...)
	run(t, dir, nil, gcc, append(append(common, "-no-pie", "-fno-pie", "-o", b.nopie), link...)...)
	return b
}

// child is a running test program.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	pid   uint32
	lines []string
}

// startChild starts path and waits for it to print n lines.
func startChild(t testing.TB, path string, n int) *child {
	t.Helper()
	cmd := exec.Command(path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, pid: uint32(cmd.Process.Pid)}
	t.Cleanup(func() {
		c.stdin.Close()
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	})
	type result struct {
		lines []string
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		r := bufio.NewReader(stdout)
		var lines []string
		for len(lines) < n {
			l, err := r.ReadString('\n')
			if err != nil {
				ch <- result{lines, err}
				return
			}
			lines = append(lines, strings.TrimSpace(l))
		}
		ch <- result{lines, nil}
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatalf("%s: reading output: %v (got %q)", path, res.err, res.lines)
		}
		c.lines = res.lines
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: timed out waiting for output", path)
	}
	return c
}

// exit closes the child's stdin and waits for it to exit.
func (c *child) exit(t testing.TB) {
	t.Helper()
	c.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("child exited: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("child did not exit")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/maps", c.pid)); err == nil {
		t.Fatalf("pid %d still exists after exit", c.pid)
	}
}

func parseHex(t testing.TB, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return v
}

// goPCs parses the "PCS <hex>..." line printed by goprog.
func goPCs(t testing.TB, line string) []uint64 {
	t.Helper()
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "PCS" {
		t.Fatalf("unexpected goprog output %q", line)
	}
	pcs := make([]uint64, 0, len(f)-1)
	for _, s := range f[1:] {
		pcs = append(pcs, parseHex(t, s))
	}
	return pcs
}

// keyValues parses "k=0x... k2=0x..." lines.
func keyValues(t testing.TB, lines ...string) map[string]uint64 {
	t.Helper()
	kv := map[string]uint64{}
	for _, l := range lines {
		for _, f := range strings.Fields(l) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				t.Fatalf("unexpected output %q", l)
			}
			kv[k] = parseHex(t, v)
		}
	}
	return kv
}

func elfType(t testing.TB, path string) elf.Type {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Type
}

// wantFrame describes the expected symbolization of one frame.
type wantFrame struct {
	function  string   // exact function name
	functions []string // alternatively, any of these
	fileSfx   string   // File suffix ("" = don't care)
	line      int      // exact line (0 = only require > 0 when fileSfx is set)
	module    string   // exact Module ("" = don't care)
	moduleSfx string   // Module suffix ("" = don't care)
}

func checkFrame(t testing.TB, got Frame, want wantFrame) {
	t.Helper()
	switch {
	case want.function != "" && got.Function != want.function:
		t.Errorf("frame %v: Function = %q, want %q", got, got.Function, want.function)
	case len(want.functions) > 0 && !slices.Contains(want.functions, got.Function):
		t.Errorf("frame %v: Function = %q, want one of %q", got, got.Function, want.functions)
	}
	if want.fileSfx != "" {
		if !strings.HasSuffix(got.File, want.fileSfx) {
			t.Errorf("frame %v: File = %q, want suffix %q", got, got.File, want.fileSfx)
		}
		if got.Line <= 0 {
			t.Errorf("frame %v: Line = %d, want > 0", got, got.Line)
		}
	}
	if want.line != 0 && got.Line != want.line {
		t.Errorf("frame %v: Line = %d, want %d", got, got.Line, want.line)
	}
	if want.module != "" && got.Module != want.module {
		t.Errorf("frame %v: Module = %q, want %q", got, got.Module, want.module)
	}
	if want.moduleSfx != "" && !strings.HasSuffix(got.Module, want.moduleSfx) {
		t.Errorf("frame %v: Module = %q, want suffix %q", got, got.Module, want.moduleSfx)
	}
}
