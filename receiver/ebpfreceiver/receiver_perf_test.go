package ebpfreceiver

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestMeasureOverhead prints what tracing Python and TLS costs; it runs only with
// AGENTTRAIL_MEASURE=1 (numbers, not assertions: tests/bench has the benchmarks).
//
//	AGENTTRAIL_MEASURE=1 go test -run TestMeasureOverhead -v ./receiver/ebpfreceiver/
func TestMeasureOverhead(t *testing.T) {
	if os.Getenv("AGENTTRAIL_MEASURE") == "" {
		t.Skip("set AGENTTRAIL_MEASURE=1 to measure")
	}
	requireKernel(t)
	requirePython(t)
	model := startMockModel(t)
	if stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
		defer stats.Close()
	} else {
		t.Logf("BPF run-time statistics unavailable: %v", err)
	}

	t.Run("audit_event", func(t *testing.T) {
		const script = `
import sys, time
N = int(sys.argv[1])
def rec(d):
    if d == 0:
        t = time.perf_counter()
        for i in range(N):
            sys.audit("agenttrail.bench", i, "x")
        return time.perf_counter() - t
    return rec(d - 1)
print("ready", flush=True)
for line in sys.stdin:
    print("ok %.3f" % (rec(int(line)) / N * 1e9), flush=True)
`
		for _, tc := range []struct {
			depth int
			funcs bool
		}{{0, false}, {30, false}, {30, true}} {
			t.Run(fmt.Sprintf("depth_%d_functions_%v", tc.depth, tc.funcs), func(t *testing.T) {
				p := startProgram(t, python311, "-c", script, "200000")
				p.waitLine(t, "ready")
				base := measureLine(t, p, strconv.Itoa(tc.depth))
				target := TargetConfig{Name: "bench", PID: p.cmd.Process.Pid}
				if tc.funcs {
					// Every one of the 31 frames of rec is a configured function.
					target.PythonFunctions = []PythonFunctionConfig{{Pattern: "*:rec", Role: "function"}}
				}
				startReceiver(t, pythonConfig(target))
				cpu0, bpf0 := cpuTime(), progStats()
				traced := measureLine(t, p, strconv.Itoa(tc.depth))
				time.Sleep(500 * time.Millisecond) // let the reader drain
				cpu := cpuTime() - cpu0
				logProgStats(t, bpf0, progStats())
				t.Logf("audit event, %d Python frames, configured functions on the stack: %v: %.0f ns untraced, %.0f ns traced: +%.2f µs in the process; receiver CPU %.2f µs per event",
					tc.depth+3, tc.funcs, base, traced, (traced-base)/1000, float64(cpu.Nanoseconds())/200000/1000)
			})
		}
	})

	t.Run("ssl_write_read", func(t *testing.T) {
		dir := filepath.Dir(model.ca)
		const server = `
import socket, ssl, sys
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen()
print("ready", ls.getsockname()[1], flush=True)
c, _ = ls.accept()
s = ctx.wrap_socket(c, server_side=True)
while True:
    b = s.recv(65536)
    if not b: break
    s.sendall(b)
`
		srv := startProgram(t, python311, "-c", server, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
		port := strings.Fields(srv.waitLine(t, "ready"))[1]
		const client = `
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[1])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2]))), server_hostname="127.0.0.1")
print("ready", flush=True)
for line in sys.stdin:
    n, size = map(int, line.split())
    data = b"x" * size
    t = time.perf_counter()
    for _ in range(n):
        s.sendall(data)
        got = 0
        while got < size:
            got += len(s.recv(size - got))
    print("ok %.3f" % ((time.perf_counter() - t) / n * 1e9), flush=True)
`
		p := startProgram(t, python311, "-c", client, model.ca, port)
		p.waitLine(t, "ready")
		sizes := []int{100, 4096, 16384}
		base := map[int]float64{}
		for _, size := range sizes {
			base[size] = measureLine(t, p, fmt.Sprintf("20000 %d", size))
		}
		startReceiver(t, pythonConfig(TargetConfig{Name: "bench", PID: p.cmd.Process.Pid}))
		for _, size := range sizes {
			cpu0, bpf0 := cpuTime(), progStats()
			traced := measureLine(t, p, fmt.Sprintf("20000 %d", size))
			time.Sleep(500 * time.Millisecond)
			cpu := cpuTime() - cpu0
			logProgStats(t, bpf0, progStats())
			t.Logf("SSL_write_ex + SSL_read_ex of %d bytes (with Python stacks): %.1f µs untraced, %.1f µs traced: +%.2f µs per write+read; receiver CPU %.2f µs per call",
				size, base[size]/1000, traced/1000, (traced-base[size])/1000, float64(cpu.Nanoseconds())/40000/1000)
		}
	})

	const n = 300
	t.Run("python_llm_client", func(t *testing.T) {
		agent, _ := startPyAgent(t, python311, model)
		measureBench(t, agent, 20) // warm up
		baseS := measureBench(t, agent, n)
		startReceiver(t, pythonConfig(pyAgentTarget(agent.cmd.Process.Pid)))
		bpf0 := progStats()
		tracedS := measureBench(t, agent, n)
		logProgStats(t, bpf0, progStats())
		t.Logf("Python urllib client (new TLS connection per call): %.0f calls/s untraced, %.0f calls/s traced (%+.1f%%)",
			n/baseS, n/tracedS, (n/tracedS-n/baseS)/(n/baseS)*100)
	})
	t.Run("go_llm_client", func(t *testing.T) {
		exe := buildGoTLS(t)
		g := startProgram(t, exe, model.url, model.ca, "model-x")
		g.waitLine(t, "ready")
		measureBench(t, g, 50) // warm up
		baseG := measureBench(t, g, n*3)
		startReceiver(t, testConfig(TargetConfig{Name: "go-bench", PID: g.cmd.Process.Pid}))
		bpf0 := progStats()
		tracedG := measureBench(t, g, n*3)
		logProgStats(t, bpf0, progStats())
		t.Logf("Go net/http client (keep-alive): %.0f calls/s untraced, %.0f calls/s traced (%+.1f%%)",
			n*3/baseG, n*3/tracedG, (n*3/tracedG-n*3/baseG)/(n*3/baseG)*100)
	})
}

func measureLine(t *testing.T, p *program, cmd string) float64 {
	t.Helper()
	if _, err := fmt.Fprintln(p.stdin, cmd); err != nil {
		t.Fatal(err)
	}
	line := p.waitLine(t, "ok")
	v, err := strconv.ParseFloat(strings.Fields(line)[1], 64)
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return v
}

func measureBench(t *testing.T, p *program, n int) float64 {
	t.Helper()
	if _, err := fmt.Fprintf(p.stdin, "bench %d\n", n); err != nil {
		t.Fatal(err)
	}
	line := p.waitLine(t, "ok bench")
	v, err := strconv.ParseFloat(strings.Fields(line)[2], 64)
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return v
}

type progStat struct {
	runs uint64
	time time.Duration
}

// progStats reads the run counts and times of the receiver's programs (kernel.bpf_stats_enabled).
func progStats() map[string]progStat {
	out := map[string]progStat{}
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return out
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		info, err1 := p.Info()
		stats, err2 := p.Stats()
		p.Close()
		if err1 != nil || err2 != nil {
			continue
		}
		st := out[info.Name]
		st.runs += stats.RunCount
		st.time += stats.Runtime
		out[info.Name] = st
	}
}

func logProgStats(t *testing.T, before, after map[string]progStat) {
	t.Helper()
	for name, a := range after {
		b := before[name]
		if n := a.runs - b.runs; n > 0 && (strings.HasPrefix(name, "python") || strings.HasPrefix(name, "ssl") || strings.HasPrefix(name, "sys_") || strings.HasPrefix(name, "go_tls")) {
			t.Logf("  kernel program %s: %d runs, %.2f µs per run", name, n, float64((a.time-b.time).Nanoseconds())/float64(n)/1000)
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
