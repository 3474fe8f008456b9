package ebpfreceiver

import (
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// processCapture returns the agenttrail.capture.* resource attributes of the process.start span of
// pid (a target's process announces itself when it is traced), as strings.
func processCapture(t *testing.T, c collected, pid int) map[string]string {
	t.Helper()
	for _, i := range c.named("process.start") {
		res := c.res[i].Attributes()
		if v, _ := res.Get("process.pid"); v.Int() != int64(pid) {
			continue
		}
		out := map[string]string{}
		res.Range(func(k string, v pcommon.Value) bool {
			if strings.HasPrefix(k, "agenttrail.capture.") {
				out[strings.TrimPrefix(k, "agenttrail.capture.")] = v.AsString()
			}
			return true
		})
		return out
	}
	t.Fatalf("no process.start span of pid %d", pid)
	return nil
}

func startedBy(pid int) func(collected) bool {
	return func(c collected) bool {
		for _, i := range c.named("process.start") {
			if v, _ := c.res[i].Attributes().Get("process.pid"); v.Int() == int64(pid) {
				return true
			}
		}
		return false
	}
}

// TestCaptureAttributes: every traced process says what the receiver could instrument in it —
// the target's functions found, the TLS library read (Go's crypto/tls, OpenSSL, none) and the
// Python layout — so that an empty trace is not mistaken for a quiet agent.
func TestCaptureAttributes(t *testing.T) {
	requireKernel(t)
	t.Run("go crypto/tls, a function missing", func(t *testing.T) {
		model := startMockModel(t)
		exe := buildGoTLS(t)
		sink := startReceiver(t, testConfig(TargetConfig{
			Name: "go-agent", Executable: exe,
			Functions: []FunctionConfig{{Symbol: "main.(*client).Ask", Role: "prompt"}, {Symbol: "main.noSuchFunction"}},
		}))
		p := startProgram(t, exe, model.url, model.ca, "model-x")
		p.waitLine(t, "ready")
		got := processCapture(t, waitSpans(t, sink, startedBy(p.cmd.Process.Pid)), p.cmd.Process.Pid)
		if got["tls"] != "go" || got["functions"] != "1/2" || got["python"] != "n/a" || got["incomplete"] != "true" ||
			!strings.Contains(got["missing"], "functions: 1 of 2 not instrumented (main.noSuchFunction: ") {
			t.Errorf("capture %v", got)
		}
		if got["syscalls"] != `["connect","accept","execve","openat"]` {
			t.Errorf("syscalls %s", got["syscalls"])
		}
	})
	t.Run("no TLS library", func(t *testing.T) {
		exe, lib := buildCProg(t)
		sink := startReceiver(t, testConfig(TargetConfig{
			Name: "cprog", Executable: exe,
			Functions: []FunctionConfig{{Symbol: "process_record"}, {Symbol: "lib_process", Library: lib}},
		}))
		p := startProgram(t, exe)
		p.do(t, "record x 1", "ok")
		got := processCapture(t, waitSpans(t, sink, startedBy(p.cmd.Process.Pid)), p.cmd.Process.Pid)
		want := map[string]string{"tls": "none", "functions": "2/2", "python": "n/a", "incomplete": "false", "syscalls": `["connect","accept","execve","openat"]`}
		if !mapsEqual(got, want) {
			t.Errorf("capture %v, want %v", got, want)
		}
	})
	t.Run("openssl and a Python layout", func(t *testing.T) {
		requirePython(t)
		// Already running, with libssl loaded by the ssl module, when the receiver starts.
		p := startProgram(t, python311, "-c", "import ssl, sys; print('ready', flush=True); sys.stdin.readline()")
		p.waitLine(t, "ready")
		sink := startReceiver(t, testConfig(TargetConfig{Name: "py", PID: p.cmd.Process.Pid}))
		got := processCapture(t, waitSpans(t, sink, startedBy(p.cmd.Process.Pid)), p.cmd.Process.Pid)
		want := map[string]string{"tls": "openssl", "python": "3.11", "incomplete": "false", "syscalls": `["connect","accept","execve","openat"]`}
		if !mapsEqual(got, want) {
			t.Errorf("capture %v, want %v", got, want)
		}
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if b[k] != a[k] {
			return false
		}
	}
	return true
}
