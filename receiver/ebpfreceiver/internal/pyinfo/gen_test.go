package pyinfo

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestGenLayout holds each version's generator layout and gen_dealloc discovery to a running
// interpreter (Debian's python3.11, pyenv's 3.12 and 3.13 where installed): three coroutines of
// one async def (never started, suspended at an await, finished but still referenced) are read
// through /proc/<pid>/mem as gen_dealloc's probe reads them: the frame at Gen.Frame runs the
// function's code object, gi_frame_state says created, suspended and cleared, CoroutineEnd
// names them, and PyCoro_Type's tp_dealloc in memory is the binary's GenDealloc plus the bias.
func TestGenLayout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reading another process's memory needs root (or CAP_SYS_PTRACE)")
	}
	interpreters := map[string][2]string{ // version: the program, the file holding the interpreter
		"3.11": {"/usr/bin/python3.11", "/usr/bin/python3.11"},
		"3.12": {"/root/.pyenv/versions/3.12.1/bin/python3.12", "/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0"},
		"3.13": {"/root/.pyenv/versions/3.13.0/bin/python3.13", "/root/.pyenv/versions/3.13.0/lib/libpython3.13.so.1.0"},
	}
	const script = `
import sys, types
@types.coroutine
def pause():
    yield
async def handle():
    await pause()
created = handle()
suspended = handle()
suspended.send(None)
done = handle()
done.send(None)
try:
    done.send(None)
except StopIteration:
    pass
print(hex(id(created)), hex(id(suspended)), hex(id(done)), hex(id(handle.__code__)), hex(id(types.CoroutineType)), flush=True)
sys.stdin.readline()
created.close()
`
	ran := 0
	for version, files := range interpreters {
		l := Layouts[version]
		if _, err := os.Stat(files[0]); err != nil {
			t.Logf("%s: %s is not installed", version, files[0])
			continue
		}
		ran++
		t.Run(version, func(t *testing.T) {
			in, err := Inspect(files[1])
			if err != nil {
				t.Fatal(err)
			}
			if in.GenDealloc == 0 || in.GenDeallocErr != nil {
				t.Fatalf("gen_dealloc not found: %v", in.GenDeallocErr)
			}
			cmd := exec.Command(files[0], "-c", script)
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
			var addrs []uint64
			for _, f := range strings.Fields(line) {
				a, err := strconv.ParseUint(strings.TrimPrefix(f, "0x"), 16, 64)
				if err != nil {
					t.Fatal(err)
				}
				addrs = append(addrs, a)
			}
			if len(addrs) != 5 {
				t.Fatalf("script printed %q", line)
			}
			mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			defer mem.Close()
			read := func(addr uint64, n int) []byte {
				b := make([]byte, n)
				if _, err := mem.ReadAt(b, int64(addr)); err != nil {
					t.Fatalf("read %#x: %v", addr, err)
				}
				return b
			}
			code := addrs[3]
			for i, want := range []string{CoroutineAbandoned, CoroutineAbandoned, CoroutineCompleted} {
				coro := addrs[i]
				if got := binary.LittleEndian.Uint64(read(coro+l.Gen.Frame+uint64(l.Kernel.FrameCode), 8)); got != code {
					t.Errorf("coroutine %d: frame's code %#x, want %#x", i, got, code)
				}
				state := int8(read(coro+l.Gen.FrameState, 1)[0])
				if got := l.Gen.CoroutineEnd(state); got != want {
					t.Errorf("coroutine %d: state %d reads as %s, want %s", i, state, got, want)
				}
				if wantState := []int8{l.Gen.Created, 0, l.Gen.Cleared}[i]; i != 1 && state != wantState {
					t.Errorf("coroutine %d: state %d, want %d", i, state, wantState)
				}
			}
			cands, err := Candidates("/proc", uint32(cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			m, ok := firstMappingByPath(cands, files[1])
			if !ok {
				t.Fatalf("%s is not mapped", files[1])
			}
			slot := binary.LittleEndian.Uint64(read(addrs[4]+typeDeallocOffset, 8))
			if want := in.GenDealloc + in.Bias(m); slot != want {
				t.Errorf("PyCoro_Type.tp_dealloc is %#x in memory, GenDealloc plus the bias %#x", slot, want)
			}
		})
	}
	if ran == 0 {
		t.Skip("no CPython with a layout is installed")
	}
}

func firstMappingByPath(cands []Mapping, path string) (Mapping, bool) {
	for _, m := range cands {
		if m.Path == path {
			return m, true
		}
	}
	return Mapping{}, false
}

// TestCoroutineEnd: the state values of each layout name the end they mean.
func TestCoroutineEnd(t *testing.T) {
	for v, l := range Layouts {
		g := l.Gen
		for _, s := range g.Suspended {
			if g.CoroutineEnd(s) != CoroutineAbandoned {
				t.Errorf("%s: suspended %d is %s", v, s, g.CoroutineEnd(s))
			}
		}
		for s, want := range map[int8]string{g.Created: CoroutineAbandoned, g.Cleared: CoroutineCompleted, g.Completed: CoroutineCompleted, 0: CoroutineStateUnknown, 99: CoroutineStateUnknown} {
			if got := g.CoroutineEnd(s); got != want {
				t.Errorf("%s: state %d is %s, want %s", v, s, got, want)
			}
		}
		if g.Frame == 0 || g.FrameState == 0 || g.FrameState >= g.Frame || g.Frame >= 1<<16 {
			t.Errorf("%s: frame at %d, state at %d", v, g.Frame, g.FrameState)
		}
	}
}
