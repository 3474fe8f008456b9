package pyinfo

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestInspectPython311(t *testing.T) {
	const python = "/usr/bin/python3.11"
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s is not installed", python)
	}
	in, err := Inspect(python)
	if err != nil {
		t.Fatal(err)
	}
	if in.Version != "3.11" || in.Layout == nil || in.Layout.ID != 1 {
		t.Errorf("version %q layout %v", in.Version, in.Layout)
	}
	if in.RuntimeAddr == 0 || in.Audit == nil || in.Audit.SemaphoreOffset == 0 {
		t.Errorf("runtime %#x audit %+v", in.RuntimeAddr, in.Audit)
	}
	if _, err := Inspect("/bin/true"); err == nil {
		t.Error("/bin/true is taken for a Python interpreter")
	}
}

// TestInspectPyenv: pyenv's 3.12 and 3.13 builds are shared libpythons without USDT probes.
func TestInspectPyenv(t *testing.T) {
	for _, v := range []string{"3.12", "3.13"} {
		t.Run(v, func(t *testing.T) {
			libs, _ := filepath.Glob("/root/.pyenv/versions/" + v + ".*/lib/libpython" + v + ".so.1.0")
			if len(libs) == 0 {
				t.Skipf("no CPython %s on this machine (pyenv's /root/.pyenv/versions/%s.*): Debian packages only 3.11", v, v)
			}
			in, err := Inspect(libs[0])
			if err != nil {
				t.Fatal(err)
			}
			if in.Version != v || in.Layout != Layouts[v] || !in.Shared || in.RuntimeAddr == 0 || in.Audit != nil {
				t.Errorf("version %q layout %v shared %v runtime %#x audit %+v", in.Version, in.Layout, in.Shared, in.RuntimeAddr, in.Audit)
			}
		})
	}
}

// TestInspectFreeThreaded: a free-threaded build (python3.13t; here a copy of 3.11 named so)
// lays its objects out differently: no layout, so native frames only.
func TestInspectFreeThreaded(t *testing.T) {
	const python = "/usr/bin/python3.11"
	b, err := os.ReadFile(python)
	if err != nil {
		t.Skipf("%s is not installed", python)
	}
	path := filepath.Join(t.TempDir(), "python3.11t")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if in.Version != "3.11t" || in.Layout != nil {
		t.Errorf("version %q layout %v", in.Version, in.Layout)
	}
}

func TestCandidatesAndBias(t *testing.T) {
	const python = "/usr/bin/python3.11"
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s is not installed", python)
	}
	cmd := exec.Command(python, "-c", "import sys; sys.stdin.read()")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	var ms []Mapping
	var err error
	for i := 0; i < 100 && len(ms) == 0; i++ {
		ms, err = Candidates("/proc", uint32(cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(ms) == 0 || ms[0].Path != python {
		t.Fatalf("candidates %+v", ms)
	}
	in, err := Inspect(python)
	if err != nil {
		t.Fatal(err)
	}
	if b := in.Bias(ms[0]); b != 0 {
		t.Errorf("Debian's python3.11 is not PIE, bias %#x", b)
	}
	m, ok := FirstMapping("/proc", uint32(cmd.Process.Pid), ms[0].Dev, ms[0].Inode)
	if !ok || m.Start != ms[0].Start {
		t.Errorf("FirstMapping %+v %v", m, ok)
	}
}

// TestReadCodeObjects reads code objects of a running python3.11 by address (id() of a code
// object is its address in CPython) and compares what the 3.11 layout yields with what the
// interpreter says of them.
func TestReadCodeObjects(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3.11"); err != nil {
		t.Skip("/usr/bin/python3.11 is not installed")
	}
	const script = `
import json, sys
class Agent:
    def handle_prompt(self, prompt):
        return prompt
def café_ли():  # a non-ASCII name
    pass
codes = [Agent.handle_prompt.__code__, json.dumps.__code__, globals()["café_ли"].__code__]
print(json.dumps([[id(c), c.co_qualname, c.co_filename, c.co_firstlineno] for c in codes]), flush=True)
sys.stdin.read()
`
	cmd := exec.Command("/usr/bin/python3.11", "-c", script)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	var rows [][]any
	if err := json.NewDecoder(stdout).Decode(&rows); err != nil {
		t.Fatal(err)
	}
	r := NewReader("/proc")
	defer r.Close()
	for _, row := range rows {
		addr := uint64(row[0].(float64))
		code, err := r.Code(uint32(cmd.Process.Pid), Layouts["3.11"], addr, nil)
		if err != nil {
			t.Fatalf("%v: %v", row[1], err)
		}
		if code.Qualname != row[1] || code.Filename != row[2] || code.FirstLine != int(row[3].(float64)) {
			t.Errorf("read %q %q %d, python says %v", code.Qualname, code.Filename, code.FirstLine, row[1:4])
		}
		if again, _ := r.Code(uint32(cmd.Process.Pid), Layouts["3.11"], addr, nil); again != code {
			t.Error("the code object was not cached")
		}
	}
	if rows[0][1] != "Agent.handle_prompt" || rows[1][2] == "" {
		t.Errorf("rows %v", rows)
	}
}
