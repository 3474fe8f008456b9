package pyinfo

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestCoroutineFlags reads the code objects of an async def, an async generator and a plain
// function from a running interpreter of each version with a layout (Debian's python3.11,
// pyenv's 3.12 and 3.13 where installed), through /proc/<pid>/mem as the receiver does: co_flags
// is where the layout says, and Coroutine tells them apart.
func TestCoroutineFlags(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reading another process's memory needs root (or CAP_SYS_PTRACE)")
	}
	interpreters := map[string]string{
		"3.11": "/usr/bin/python3.11",
		"3.12": "/root/.pyenv/versions/3.12.1/bin/python3.12",
		"3.13": "/root/.pyenv/versions/3.13.0/bin/python3.13",
	}
	const script = `
import sys
async def handle(): pass
async def agen(): yield 1
def plain(): pass
print(hex(id(handle.__code__)), hex(id(agen.__code__)), hex(id(plain.__code__)), flush=True)
sys.stdin.readline()
`
	ran := 0
	for version, python := range interpreters {
		l := Layouts[version]
		if l == nil {
			t.Fatalf("no layout for %s", version)
		}
		if _, err := os.Stat(python); err != nil {
			t.Logf("%s: %s is not installed", version, python)
			continue
		}
		t.Run(version, func(t *testing.T) {
			cmd := exec.Command(python, "-c", script)
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			defer mem.Close()
			for i, f := range strings.Fields(line) {
				addr, err := strconv.ParseUint(strings.TrimPrefix(f, "0x"), 16, 64)
				if err != nil {
					t.Fatal(err)
				}
				c, _, err := readCode(mem, l, addr)
				if err != nil {
					t.Fatal(err)
				}
				if want := i < 2; c.Coroutine() != want || c.Qualname != []string{"handle", "agen", "plain"}[i] {
					t.Errorf("%s: coroutine %v (flags %#x), want %v", c.Qualname, c.Coroutine(), c.Flags, want)
				}
			}
		})
		ran++
	}
	if ran == 0 {
		t.Skip("no CPython with a layout is installed")
	}
}
