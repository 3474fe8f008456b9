package main

// Section 2d, discovery's cost: the receiver's discover mode on a node of 100 processes of
// which 3 call LLMs. The 97 others: 60 sleep processes (not candidates: neither Go nor an
// OpenSSL user), 30 idle Go programs with crypto/tls (gotls waiting on stdin) and 7 idle Python
// processes that imported ssl (libssl mapped): 37 candidates the receiver traces on probation.
// The 3 LLM clients (2 gotls, 1 Python http.client over OpenSSL) each make one chat completion
// a second. The receiver runs in this process, discover off (a target that never runs) and on,
// for the same window; the machine's other processes are there in both variants (on a shared
// machine some are candidates too: the row says how many candidates there were).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver"
)

// discoveredCounter records when each process was first seen discovered.
type discoveredCounter struct {
	mu    sync.Mutex
	first map[int64]time.Time
}

func (c *discoveredCounter) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }
func (c *discoveredCounter) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		a := td.ResourceSpans().At(i).Resource().Attributes()
		if v, ok := a.Get("agenttrail.discovered"); ok && v.Bool() {
			pid, _ := a.Get("process.pid")
			if _, seen := c.first[pid.Int()]; !seen {
				c.first[pid.Int()] = time.Now()
			}
		}
	}
	return nil
}

func (c *discoveredCounter) when(pid int) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.first[int64(pid)]
	return t, ok
}

// nodeProc is one of the node's processes, stopped at the end.
type nodeProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startNodeProc(args ...string) (*nodeProc, error) {
	cmd := exec.Command(args[0], args[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &nodeProc{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody waits for it
			}
		}
	}()
	return p, nil
}

func (p *nodeProc) stop() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() }

func (p *nodeProc) wait(prefix string, d time.Duration) error {
	t := time.After(d)
	for {
		select {
		case l := <-p.lines:
			if strings.HasPrefix(l, prefix) {
				return nil
			}
		case <-t:
			return fmt.Errorf("%s printed no %q in %s", p.cmd.Path, prefix, d)
		}
	}
}

// byAttr sums a counter of the in-process receiver by one attribute's value.
func (p *inproc) byAttr(name, key string) map[string]int64 {
	var rm metricdata.ResourceMetrics
	_ = p.reader.Collect(context.Background(), &rm)
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, dp := range s.DataPoints {
					v, _ := dp.Attributes.Value(attribute.Key(key))
					out[v.AsString()] += dp.Value
				}
			}
		}
	}
	return out
}

func (b *bench) discoveryCost() {
	const cmdline = "go run ./tests/bench -only discovery"
	model, err := b.startMockModel()
	if err != nil {
		b.skip(secTax, "discovery on a node of 100 processes", cmdline, err.Error())
		return
	}
	defer model.stop()
	gotls := b.path("gotls")
	if out, err := runCmd("go", "build", "-o", gotls, "./receiver/ebpfreceiver/testdata/gotls"); err != nil {
		b.skip(secTax, "discovery on a node of 100 processes", cmdline, firstLine(out))
		return
	}
	if _, err := os.Stat(python311); err != nil {
		b.skip(secTax, "discovery on a node of 100 processes", cmdline, python311+" is not installed")
		return
	}
	var procs []*nodeProc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	start := func(args ...string) *nodeProc {
		p, err := startNodeProc(args...)
		if err != nil {
			fail("discovery: start "+args[0], err)
		}
		procs = append(procs, p)
		return p
	}
	for range 60 {
		start("sleep", "3600")
	}
	for range 30 {
		start(gotls, model.url, model.ca, "model-x")
	}
	for range 7 {
		start(python311, "-c", "import ssl, sys; print('ready', flush=True); sys.stdin.read()")
	}
	clients := []*nodeProc{
		start(gotls, model.url, model.ca, "model-x"),
		start(gotls, model.url, model.ca, "model-x"),
		start(python311, "-B", "-E", "-s", "tests/bench/pytarget/llmclient.py", model.url, model.ca, "model-x"),
	}
	for _, c := range clients {
		if err := c.wait("ready", 30*time.Second); err != nil {
			b.skip(secTax, "discovery on a node of 100 processes", cmdline, err.Error())
			return
		}
	}
	// Each client makes one chat completion a second, in both variants.
	stopCalls := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stopCalls:
					return
				case <-tick.C:
					_, _ = fmt.Fprintln(c.stdin, "bench 1")
				}
			}
		}()
	}
	defer func() { close(stopCalls); wg.Wait() }()
	if stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
		defer stats.Close()
	}
	window := 20 * time.Second
	if b.opt.quick {
		window = 8 * time.Second
	}
	type variant struct {
		cpu, bpf   time.Duration
		discovered []time.Duration
		outcomes   map[string]int64
		dropped    map[string]int64
	}
	run := func(on bool) (variant, error) {
		cfg := receiverConfig([]ebpfreceiver.TargetConfig{{Name: "bench-never", ProcessName: "agenttrail-bench-never-runs"}}, []string{"connect", "accept", "execve", "openat"})
		if on {
			cfg.Targets = nil
			cfg.Discover.Enabled = true
			cfg.Discover.MaxProbation = 1024 // this machine's other processes are candidates too
			cfg.Discover.ScanInterval = time.Second
		}
		dc := &discoveredCounter{first: map[int64]time.Time{}}
		before := maxProgramID()
		c0, t0 := cpuTime(os.Getpid()), time.Now()
		p, err := startReceiver(cfg, dc)
		if err != nil {
			return variant{}, err
		}
		progs := programsAfter(before)
		s0 := statsOf(progs)
		time.Sleep(window)
		s1 := statsOf(progs)
		v := variant{cpu: cpuTime(os.Getpid()) - c0, outcomes: p.byAttr("agenttrail.ebpf.discovery.processes", "outcome"),
			dropped: p.byAttr("agenttrail.ebpf.discovery.dropped", "reason")}
		p.stop()
		for i := range progs {
			v.bpf += time.Duration(s1[i].ns - s0[i].ns)
		}
		for _, c := range clients {
			if at, ok := dc.when(c.cmd.Process.Pid); ok {
				v.discovered = append(v.discovered, at.Sub(t0))
			}
		}
		return v, nil
	}
	off, err := run(false)
	if err == nil {
		var on variant
		if on, err = run(true); err == nil {
			secs := window.Seconds()
			perSec := func(d time.Duration) string { return fmt.Sprintf("%.1f ms/s", float64(d.Microseconds())/1000/secs) }
			b.add(result{section: secTax, name: "discovery on a node of 100 processes (3 call an LLM once a second): collector CPU, discover off vs on",
				command: cmdline + " (receiver in the harness's process, default configuration; off: a target that never runs; on: discover.enabled, max_probation 1024, scan_interval 1s (8 new candidates a scan); " +
					"CPU of the harness's process over " + window.String() + " from the receiver's start, its first scan and probation attaches included)",
				value: perSec(off.cpu) + " off, " + perSec(on.cpu) + " on",
				ratio: fmt.Sprintf("%.2f", float64(on.cpu)/float64(max(off.cpu, time.Millisecond))), target: "-",
				verdict: fmt.Sprintf("candidates put on probation %d (37 of them this node's idle Go and Python processes, the rest this machine's other processes), rejected %d, discovered %d; spans of probation dropped %d",
					on.outcomes["probation"], on.outcomes["rejected"], on.outcomes["discovered"], on.dropped["probation_spans"])})
			b.add(result{section: secTax, name: "discovery on a node of 100 processes: in-BPF time of the receiver's programs, discover off vs on",
				command: cmdline + " (the kernel's run statistics of the receiver's programs over the window)",
				value:   perSec(off.bpf) + " off, " + perSec(on.bpf) + " on",
				ratio:   fmt.Sprintf("%.2f", float64(on.bpf)/float64(max(off.bpf, time.Microsecond))), target: "-",
				verdict: "the probation processes' syscalls and TLS calls run the programs' traced path"})
			found := make([]string, 0, len(on.discovered))
			for _, d := range on.discovered {
				found = append(found, d.Round(100*time.Millisecond).String())
			}
			verdict := "all 3 discovered"
			if len(on.discovered) < 3 {
				verdict = fmt.Sprintf("only %d of 3 discovered within %s", len(on.discovered), window)
			}
			b.add(result{section: secTax, name: "discovery: time from the receiver's start to each LLM client's first discovered span",
				command: cmdline + " (the first scan at start, then each client's next call)",
				value:   strings.Join(found, ", "), ratio: "-", target: "-", verdict: verdict})
		}
	}
	if err != nil {
		b.skip(secTax, "discovery on a node of 100 processes", cmdline, err.Error())
	}
}
