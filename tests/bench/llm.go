package main

// Section 2c, LLM client throughput: a Go client (net/http over crypto/tls, HTTP/1.1 and HTTP/2)
// and a Python client (http.client over the ssl module, OpenSSL) making chat-completion requests
// to the mock model, in requests per second with nothing attached and under the receiver.

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver"
)

// mockModel is tests/workloads/mock-model serving on loopback.
type mockModel struct {
	cmd     *exec.Cmd
	url, ca string
}

// startMockModel builds and starts the mock model as the receiver's kernel tests do.
func (b *bench) startMockModel() (*mockModel, error) {
	bin := b.path("mock-model")
	if out, err := runCmd("go", "build", "-o", bin, "./tests/workloads/mock-model"); err != nil {
		return nil, fmt.Errorf("build tests/workloads/mock-model: %v: %s", err, firstLine(out))
	}
	dir := b.path("mock-model-run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ready := filepath.Join(dir, "ready")
	// The directory is shared by every section that starts a mock model: a ready file left by an
	// earlier one names its port, which is closed now (the asyncio row once failed on it).
	if err := os.Remove(ready); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "mock-model.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, "-listen", "127.0.0.1:0", "-cert-dir", dir, "-ready-file", ready, "-default-exfil", "http://127.0.0.1:9/upload")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &mockModel{cmd: cmd, ca: filepath.Join(dir, "ca.pem")}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if data, err := os.ReadFile(ready); err == nil && strings.TrimSpace(string(data)) != "" {
			m.url = "https://" + strings.TrimSpace(string(data)) + "/v1/chat/completions"
			return m, nil
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("the mock model did not start in 20 s (log: %s)", log.Name())
		}
	}
}

func (m *mockModel) stop() { _ = m.cmd.Process.Kill(); _ = m.cmd.Wait() }

// inferenceCounter counts the spans the receiver emits and, of them, the inference spans read
// from TLS (those with gen_ai.provider.name) by process.pid.
type inferenceCounter struct {
	spans atomic.Int64
	mu    sync.Mutex
	byPID map[int64]int64
	// unparsed: the inference spans whose response the receiver could not parse
	// (agenttrail.llm.response.unparsed set), by process.pid and reason.
	unparsed map[int64]map[string]int64
}

func (c *inferenceCounter) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }
func (c *inferenceCounter) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	c.spans.Add(int64(td.SpanCount()))
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		var pid int64
		if v, ok := rss.At(i).Resource().Attributes().Get("process.pid"); ok {
			pid = v.Int()
		}
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j).Spans()
			for k := 0; k < ss.Len(); k++ {
				attrs := ss.At(k).Attributes()
				if _, ok := attrs.Get("gen_ai.provider.name"); ok {
					c.mu.Lock()
					if c.byPID == nil {
						c.byPID, c.unparsed = map[int64]int64{}, map[int64]map[string]int64{}
					}
					c.byPID[pid]++
					if why, ok := attrs.Get("agenttrail.llm.response.unparsed"); ok {
						if c.unparsed[pid] == nil {
							c.unparsed[pid] = map[string]int64{}
						}
						c.unparsed[pid][why.AsString()]++
					}
					c.mu.Unlock()
				}
			}
		}
	}
	return nil
}

// inference is the number of inference spans of the processes in pids, and of any others, and
// how many of the former had no parsed response, by reason ("" when none).
func (c *inferenceCounter) inference(pids map[int64]bool) (ours, others int64, unparsed string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	reasons := map[string]int64{}
	for pid, n := range c.byPID {
		if !pids[pid] {
			others += n
			continue
		}
		ours += n
		for why, m := range c.unparsed[pid] {
			reasons[why] += m
		}
	}
	var parts []string
	for why, m := range reasons {
		parts = append(parts, fmt.Sprintf("%d with agenttrail.llm.response.unparsed %q", m, why))
	}
	sort.Strings(parts)
	return ours, others, strings.Join(parts, ", ")
}

// clientRun starts an LLM client (it prints "ready", then answers "bench N" with
// "ok bench SECONDS"), lets attach instrument it, sends warm requests, then reps × "bench n",
// and returns the median requests per second of the reps.
func (b *bench) clientRun(args []string, attach attachFunc, warm, n, reps int) (float64, error) {
	cmd := exec.Command(args[0], args[1:]...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	wait := func(prefix string, d time.Duration) (string, error) {
		t := time.After(d)
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					_ = cmd.Wait()
					return "", fmt.Errorf("%s exited before printing %q: %s", filepath.Base(args[0]), prefix, firstLine(stderr.String()))
				}
				if strings.HasPrefix(line, "error") {
					return "", fmt.Errorf("%s: %s", filepath.Base(args[0]), line)
				}
				if strings.HasPrefix(line, prefix) {
					return line, nil
				}
			case <-t:
				return "", fmt.Errorf("%s printed no %q in %s", filepath.Base(args[0]), prefix, d)
			}
		}
	}
	if _, err := wait("ready", 30*time.Second); err != nil {
		return 0, err
	}
	if attach != nil {
		cleanup, err := attach(cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		defer cleanup()
	}
	bench := func(n int) (float64, error) {
		if _, err := fmt.Fprintf(stdin, "bench %d\n", n); err != nil {
			return 0, err
		}
		line, err := wait("ok bench", 5*time.Minute)
		if err != nil {
			return 0, err
		}
		secs, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "ok bench")), 64)
		if err != nil || secs <= 0 {
			return 0, fmt.Errorf("bad answer %q", line)
		}
		return float64(n) / secs, nil
	}
	if _, err := bench(warm); err != nil {
		return 0, err
	}
	var vals []float64
	for range reps {
		v, err := bench(n)
		if err != nil {
			return 0, err
		}
		vals = append(vals, v)
	}
	return median(vals), nil
}

// pythonSSLLibraries are the OpenSSL libraries python3.11's ssl module loads (the interpreter
// itself does not link them: its _ssl extension module does).
func pythonSSLLibraries() []string {
	out, err := exec.Command(python311, "-c", "import _ssl; print(_ssl.__file__)").Output()
	if err != nil {
		return nil
	}
	return linkedLibraries(strings.TrimSpace(string(out)), "libssl.so")
}

// llmClient is one client of section 2c.
type llmClient struct {
	name, command string
	args          []string
	watch         []string
	// target is the receiver's target for the client's process.
	target func(pid int) ebpfreceiver.TargetConfig
	n      int
	// probe, when set, gets a row of its own: one uprobe program's hits per request.
	probe *probeRow
}

// probeRow is a row for one of the receiver's uprobe programs in a client's run.
type probeRow struct {
	prog string // the program's name (its function's, from the object's BTF)
	name string // the row's name
	what string // what a hit is, and what the receiver would lose without it
}

func (b *bench) llmThroughput() {
	model, err := b.startMockModel()
	if err != nil {
		b.skip(secLLM, "LLM client throughput", "tests/workloads/mock-model", err.Error())
		return
	}
	defer model.stop()
	n := b.opt.llmRequests
	var clients []llmClient
	gotls := b.path("gotls")
	if out, err := runCmd("go", "build", "-o", gotls, "./receiver/ebpfreceiver/testdata/gotls"); err != nil {
		b.skip(secLLM, "Go net/http LLM client", "go build ./receiver/ebpfreceiver/testdata/gotls", firstLine(out))
	} else {
		for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
			args := []string{gotls, model.url, model.ca, "model-x"}
			cmdline := "gotls MODEL_URL CA_FILE model-x"
			if proto == "HTTP/2" {
				args = append(args, "h2")
				cmdline += " h2"
			}
			clients = append(clients, llmClient{
				name: "Go net/http client (crypto/tls, " + proto + "): chat completions per second, receiver off and on",
				command: cmdline + " (receiver/ebpfreceiver/testdata/gotls: 'bench N' makes N chat-completion requests with net/http, one after the other on one keep-alive connection)" +
					"; on: target executable gotls, no functions (the Go TLS probes: crypto/tls.(*Conn).Write at entry, (*Conn).Read at entry and at each RET)",
				args: args, watch: []string{gotls}, n: n,
				target: func(int) ebpfreceiver.TargetConfig {
					return ebpfreceiver.TargetConfig{Name: "bench-gotls", Executable: gotls}
				},
			})
		}
	}
	const pyScript = "tests/bench/pytarget/llmclient.py"
	if _, err := os.Stat(python311); err != nil {
		b.skip(secLLM, "Python http.client LLM client", "python3.11 "+pyScript, python311+" is not installed (apt-get install python3.11)")
	} else {
		clients = append(clients, llmClient{
			name: "Python http.client client (ssl module: OpenSSL SSL_write_ex / SSL_read_ex, HTTP/1.1): chat completions per second, receiver off and on",
			command: "python3.11 " + pyScript + " MODEL_URL CA_FILE model-x ('bench N': N chat-completion requests with http.client over ssl, one after the other on one keep-alive connection)" +
				"; on: target pid of the client (OpenSSL probes on libssl.so.3; Python support: audit USDT probe, Python stacks)",
			args: []string{python311, "-B", "-E", "-s", pyScript, model.url, model.ca, "model-x"}, n: n,
			watch: append([]string{python311}, pythonSSLLibraries()...),
			target: func(pid int) ebpfreceiver.TargetConfig {
				return ebpfreceiver.TargetConfig{Name: "bench-pyclient", PID: pid}
			},
		})
	}
	b.llmMeasure(clients)
}

// llmMeasure measures each client's requests per second with the receiver off and on, and adds
// its row.
func (b *bench) llmMeasure(clients []llmClient) {
	warm := max(10, b.opt.llmRequests/20)
	defaults := ebpfreceiver.NewFactory().CreateDefaultConfig().(*ebpfreceiver.Config)
	// The kernel's BPF run statistics, as in compare: on for both variants alike.
	if stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
		defer stats.Close()
	}
	defer func() { b.warn = "" }()
	for _, c := range clients {
		per := b.repsPerRun()
		rr := &recvRun{}
		counter := &inferenceCounter{}
		rr.next = counter
		var cfg *ebpfreceiver.Config
		pids := map[int64]bool{} // the clients run under the receiver
		on := func(pid int) (func(), error) {
			pids[int64(pid)] = true
			cfg = receiverConfig([]ebpfreceiver.TargetConfig{c.target(pid)}, defaults.Syscalls)
			return withReceiver(rr, cfg)(pid)
		}
		var off, onv []float64
		warn := ""
		var runErr error
		for r := 0; r < b.rounds() && runErr == nil; r++ {
			for i, v := range []attachFunc{nil, on} {
				if warn == "" {
					warn = interference(c.watch...)
				}
				x, err := b.clientRun(c.args, v, warm, c.n, per)
				if err != nil {
					runErr = fmt.Errorf("%s run %d: %w", map[bool]string{true: "receiver on", false: "receiver off"}[i == 1], r+1, err)
					break
				}
				if i == 0 {
					off = append(off, x)
				} else {
					onv = append(onv, x)
				}
			}
		}
		command := fmt.Sprintf("%s; mock model on loopback; %d runs each off and on, alternating: each run starts the client, attaches (on) or not, "+
			"sends 'bench %d' (warm-up: the connection, the handshake), then %d × 'bench %d' timed; requests/s = N ÷ the client's seconds, "+
			"median over runs of each run's median", c.command, b.rounds(), warm, per, c.n)
		if runErr != nil {
			b.skip(secLLM, c.name, command, runErr.Error())
			continue
		}
		if warn == "" {
			warn = interference(c.watch...)
		}
		if warn != "" {
			fmt.Println("   " + warn)
		}
		b.warn = warn
		offR, onR := median(off), median(onv)
		requests := int64(b.rounds() * (warm + per*c.n))
		inf, others, unparsed := counter.inference(pids)
		check := fmt.Sprintf("%.2f inference spans per request (%d of %d requests, warm-up included)", float64(inf)/float64(requests), inf, requests)
		if unparsed != "" {
			check += " (" + unparsed + ")"
		}
		vd := "measured"
		if inf != requests {
			vd = fmt.Sprintf("measured; spans ≠ requests: the receiver emitted %d inference spans for the client's %d requests", inf, requests)
			if unparsed != "" {
				vd += ", " + unparsed
			}
		}
		if others > 0 {
			check += fmt.Sprintf("; %d more inference spans of other processes (not the client's)", others)
		}
		tlsKey := fmt.Sprintf("tls: {enabled: %v, go: %v, libraries: %v, capture_bytes: %d}, python: {enabled: %v, audit: %v}, syscalls: %v",
			cfg.TLS.Enabled, cfg.TLS.Go, cfg.TLS.Libraries, cfg.TLS.CaptureBytes, cfg.Python.Enabled, cfg.Python.Audit, cfg.Syscalls)
		b.add(result{section: secLLM, name: c.name,
			command: command + "; the ebpf receiver in the harness (" + tlsKey + ")",
			value: fmt.Sprintf("off %.0f req/s, on %.0f req/s (+%.1f µs per request); %s; %.1f uprobe hits and %.1f µs in-BPF time per request (the receiver's uprobe programs; "+
				"its tracepoint programs, which run at every process's syscalls: %.1f µs per request); %d records, %d spans in all",
				offR, onR, (1/onR-1/offR)*1e6, check, float64(rr.uprobeRuns)/float64(requests), rr.uprobePerOp(int(requests))/1000,
				rr.tracepointPerOp(int(requests))/1000, rr.records, counter.spans.Load()),
			ratio: fmt.Sprintf("%.3f", onR/offR), target: "-", verdict: vd})
		if c.probe != nil {
			b.addProbeRow(c, rr, requests, command)
		}
	}
}

// addProbeRow adds the row of one uprobe program of a client's receiver-on runs: its hits per
// request and in-BPF time per hit, against the bare uprobe hit of section 1 (the trap floor).
func (b *bench) addProbeRow(c llmClient, rr *recvRun, requests int64, command string) {
	pr := c.probe
	st, ok := rr.progRuns[pr.prog]
	if !ok || st[0] == 0 {
		names := slices.Sorted(maps.Keys(rr.progRuns))
		b.skip(secLLM, pr.name, command, "the program "+pr.prog+" did not run (not attached: see the receiver's log); programs: "+strings.Join(names, ", "))
		return
	}
	hits := float64(st[0]) / float64(requests)
	nsPerHit := float64(st[1]) / float64(st[0])
	value := fmt.Sprintf("%.1f hits per request (%d in %d requests, warm-up included), %.0f ns in BPF per hit; %s", hits, st[0], requests, nsPerHit, pr.what)
	ratio := "- (the trap floor was not measured in this run: section overhead)"
	if b.uprobeFloorNs > 0 {
		value += fmt.Sprintf("; trap floor %.1f × %.2f µs = %.1f µs per request", hits, b.uprobeFloorNs/1000, hits*b.uprobeFloorNs/1000)
		ratio = fmt.Sprintf("%.2f × floor per hit (floor %.2f µs + %.0f ns in BPF)", (b.uprobeFloorNs+nsPerHit)/b.uprobeFloorNs, b.uprobeFloorNs/1000, nsPerHit)
	}
	b.add(result{section: secLLM, name: pr.name, command: "the receiver-on runs above: the program's BPF run statistics ÷ requests", value: value, ratio: ratio, target: "-", verdict: "counted"})
}
