// Command bench runs AgentTrail's benchmarks on this machine and writes BENCHMARKS.md: the cost of
// a bare uprobe trap and tracepoint hit, the cost per instrumented call and syscall event as a
// ratio to that floor, the user-space pipeline's throughput and the collector's memory under
// load, and the Go benchmarks of the components. Every ratio compares numbers measured in the
// same run. Usage (make bench does this): go run ./tests/bench -out BENCHMARKS.md
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver"
)

type result struct {
	section, name, command, value, ratio, target, verdict string
}

type bench struct {
	dir     string
	n, reps int
	results []result
}

func main() {
	out := flag.String("out", "BENCHMARKS.md", "file to write")
	n := flag.Int("n", 20000, "operations per repetition of the overhead measurements")
	reps := flag.Int("reps", 9, "repetitions (the median is reported)")
	collector := flag.String("collector", "_build/otelcol-agenttrail", "collector binary for the memory measurement")
	flag.Parse()
	dir, err := os.MkdirTemp("", "agenttrail-bench-")
	if err != nil {
		fail("temp dir", err)
	}
	defer os.RemoveAll(dir)
	b := &bench{dir: dir, n: *n, reps: *reps}
	b.build("go target", "go", "build", "-o", filepath.Join(dir, "target"), "./tests/bench/target")
	b.build("C target", "gcc", "-O1", "-g", "-fno-omit-frame-pointer", "-o", filepath.Join(dir, "ctarget"), "tests/bench/ctarget/target.c")

	b.probeOverhead(filepath.Join(dir, "target"), filepath.Join(dir, "ctarget"))
	b.syscallOverhead(filepath.Join(dir, "target"))
	b.goBenchmarks()
	b.collectorMemory(*collector, filepath.Join(dir, "target"))
	if err := b.write(*out); err != nil {
		fail("write "+*out, err)
	}
	fmt.Printf("wrote %s\n", *out)
}

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "bench: %s: %v\n", what, err)
	os.Exit(1)
}

func (b *bench) build(what string, cmd ...string) {
	out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
	if err != nil {
		fail("build "+what, fmt.Errorf("%v\n%s", err, out))
	}
}

// run starts a target, lets attach() instrument it, releases it and returns the median
// nanoseconds per operation over its repetitions.
func (b *bench) run(args []string, attach func(pid int) (cleanup func(), err error)) (float64, error) {
	cmd := exec.Command(args[0], args[1:]...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if attach != nil {
		cleanup, err := attach(cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		defer cleanup()
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return 0, err
	}
	var vals []float64
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		v, err := strconv.ParseFloat(strings.TrimSpace(sc.Text()), 64)
		if err == nil {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return 0, fmt.Errorf("%s printed no measurements", args[0])
	}
	return median(vals), nil
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

// noopProgram is a BPF program that does nothing: attached, it measures the hook's own cost.
func noopProgram(typ ebpf.ProgramType) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         typ,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
}

func noopUprobe(exe, symbol string, ret bool) func(int) (func(), error) {
	return func(int) (func(), error) {
		prog, err := noopProgram(ebpf.Kprobe)
		if err != nil {
			return nil, err
		}
		ex, err := link.OpenExecutable(exe)
		if err != nil {
			return nil, err
		}
		l, err := ex.Uprobe(symbol, prog, nil)
		if err != nil {
			return nil, err
		}
		links := []link.Link{l}
		if ret {
			r, err := ex.Uretprobe(symbol, prog, nil)
			if err != nil {
				return nil, err
			}
			links = append(links, r)
		}
		return func() {
			for _, l := range links {
				l.Close()
			}
			prog.Close()
		}, nil
	}
}

// countingSink counts spans the receiver emits, to check every call was recorded.
type countingSink struct{ spans atomic.Int64 }

func (c *countingSink) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }
func (c *countingSink) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	c.spans.Add(int64(td.SpanCount()))
	return nil
}

// withReceiver runs the AgentTrail receiver in this process, tracing the target.
func withReceiver(sink *countingSink, target ebpfreceiver.TargetConfig, syscalls []string) func(int) (func(), error) {
	return func(int) (func(), error) {
		f := ebpfreceiver.NewFactory()
		cfg := f.CreateDefaultConfig().(*ebpfreceiver.Config)
		cfg.Targets = []ebpfreceiver.TargetConfig{target}
		cfg.Syscalls = syscalls
		cfg.FlushInterval = 100 * time.Millisecond
		r, err := f.CreateTraces(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, sink)
		if err != nil {
			return nil, err
		}
		if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
			return nil, err
		}
		return func() { _ = r.Shutdown(context.Background()) }, nil
	}
}

func (b *bench) probeOverhead(goTarget, cTarget string) {
	goArgs := []string{goTarget, "-mode", "func", "-n", strconv.Itoa(b.n), "-reps", strconv.Itoa(b.reps)}
	cArgs := []string{cTarget, strconv.Itoa(b.n), strconv.Itoa(b.reps)}
	base, err := b.run(goArgs, nil)
	if err != nil {
		fail("go baseline", err)
	}
	noop, err := b.run(goArgs, noopUprobe(goTarget, "main.Work", false))
	if err != nil {
		fail("no-op uprobe", err)
	}
	floor := noop - base
	b.add(result{section: "Probe floor", name: "bare no-op uprobe hit (Go function entry)", command: "target -mode func with a no-op BPF program on main.Work",
		value: fmt.Sprintf("%.2f µs", floor/1000), ratio: "1.00 (floor)", target: "≈ 20 µs on these VMs", verdict: "measured"})

	sink := &countingSink{}
	inst, err := b.run(goArgs, withReceiver(sink, ebpfreceiver.TargetConfig{Name: "bench", Executable: goTarget,
		Functions: []ebpfreceiver.FunctionConfig{{Symbol: "main.Work"}}}, nil))
	if err != nil {
		fail("instrumented go call", err)
	}
	cost := inst - base
	ratio := cost / floor
	b.add(result{section: "Per instrumented call", name: "Go function: entry + RET probes + events → spans",
		command: "target -mode func under the ebpf receiver (function main.Work)",
		value:   fmt.Sprintf("%.2f µs (%d spans of %d calls)", cost/1000, sink.spans.Load(), b.n*b.reps), ratio: fmt.Sprintf("%.2f", ratio),
		target: "≤ 2.0 × floor", verdict: verdict(ratio <= 2.0, "two traps (entry and RET) are the minimum: 2.0 × floor is the floor for any entry+return tracing")})

	cbase, err := b.run(cArgs, nil)
	if err != nil {
		fail("C baseline", err)
	}
	cnoop, err := b.run(cArgs, noopUprobe(cTarget, "work", false))
	if err != nil {
		fail("C no-op uprobe", err)
	}
	csink := &countingSink{}
	cinst, err := b.run(cArgs, withReceiver(csink, ebpfreceiver.TargetConfig{Name: "bench", Executable: cTarget,
		Functions: []ebpfreceiver.FunctionConfig{{Symbol: "work"}}}, nil))
	if err != nil {
		fail("instrumented C call", err)
	}
	cfloor := cnoop - cbase
	cratio := (cinst - cbase) / cfloor
	b.add(result{section: "Per instrumented call", name: "native (C) function: uprobe + uretprobe + events → spans",
		command: "ctarget under the ebpf receiver (function work)",
		value:   fmt.Sprintf("%.2f µs (floor here %.2f µs; %d spans of %d calls)", (cinst-cbase)/1000, cfloor/1000, csink.spans.Load(), b.n*b.reps),
		ratio:   fmt.Sprintf("%.2f", cratio), target: "≤ 2.0 × floor", verdict: verdict(cratio <= 2.0, "a uretprobe is a second trap plus the return-address rewrite")})
}

func (b *bench) syscallOverhead(goTarget string) {
	args := []string{goTarget, "-mode", "open", "-n", strconv.Itoa(b.n / 4), "-reps", strconv.Itoa(b.reps)}
	base, err := b.run(args, nil)
	if err != nil {
		fail("syscall baseline", err)
	}
	noop, err := b.run(args, func(int) (func(), error) {
		prog, err := noopProgram(ebpf.RawTracepoint)
		if err != nil {
			return nil, err
		}
		var links []link.Link
		for _, tp := range []string{"sys_enter", "sys_exit"} {
			l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: prog})
			if err != nil {
				return nil, err
			}
			links = append(links, l)
		}
		return func() {
			for _, l := range links {
				l.Close()
			}
			prog.Close()
		}, nil
	})
	if err != nil {
		fail("no-op tracepoints", err)
	}
	floor := noop - base
	b.add(result{section: "Probe floor", name: "bare syscall (openat + close of /dev/null)", command: "target -mode open, nothing attached",
		value: fmt.Sprintf("%.2f µs", base/1000), ratio: "-", target: "≈ 1 µs per syscall", verdict: "measured"})
	b.add(result{section: "Probe floor", name: "no-op raw tracepoints on sys_enter + sys_exit, per openat + close", command: "target -mode open with no-op programs",
		value: fmt.Sprintf("%.2f µs", floor/1000), ratio: "1.00 (floor)", target: "-", verdict: "measured"})
	sink := &countingSink{}
	inst, err := b.run(args, withReceiver(sink, ebpfreceiver.TargetConfig{Name: "bench", Executable: goTarget}, []string{"openat"}))
	if err != nil {
		fail("traced syscalls", err)
	}
	ratio := (inst - base) / floor
	ratioText, ok := fmt.Sprintf("%.2f", ratio), ratio <= 2.0
	if floor <= 0.05*base {
		ratioText, ok = "n/a: the floor is within the measurement noise", false
	}
	b.add(result{section: "Per syscall event", name: "traced openat with path, flags and a 48-frame user stack → span",
		command: "target -mode open under the ebpf receiver (syscalls: [openat], call_stacks: true)",
		value:   fmt.Sprintf("%.2f µs (%d spans of %d opens)", (inst-base)/1000, sink.spans.Load(), b.n/4*b.reps), ratio: ratioText,
		target: "≤ 2.0 × floor", verdict: verdict(ok, "the user stack walk (bpf_get_stack) and the 1.3 KiB record dominate; a tracepoint hit itself is cheap")})
}

func verdict(ok bool, why string) string {
	if ok {
		return "met"
	}
	return "missed: " + why
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+)\s+\d+\s+([\d.]+) ns/op(.*)$`)

// goBenchmarks runs the components' in-process benchmarks on one core.
func (b *bench) goBenchmarks() {
	type gb struct {
		pkg, bench, name, metric, target string
		meets                            func(float64) bool
	}
	list := []gb{
		{"./receiver/ebpfreceiver/", "BenchmarkPipeline$", "receiver user space: decode, redact, build, flush", "events/s", "≥ 300,000 events/s per core", func(v float64) bool { return v >= 300000 }},
		{"./receiver/ebpfreceiver/internal/spans/", "BenchmarkBuildCalls$", "span builder alone", "events/s", "-", nil},
		{"./receiver/ebpfreceiver/internal/symbolize/", "BenchmarkSymbolizeWarm$", "stack symbolization, 10 frames, warm cache", "ns/op", "-", nil},
		{"./internal/redact/", "BenchmarkStringDirty$", "redaction of 1 KiB with secrets", "MB/s", "-", nil},
		{"./exporter/splunkhecexporter/", "BenchmarkExportTraces$", "Splunk HEC exporter to a local endpoint", "spans/s", "≥ 50,000 spans/s", func(v float64) bool { return v >= 50000 }},
	}
	for _, g := range list {
		if _, err := os.Stat(g.pkg); err != nil {
			continue
		}
		cmdline := []string{"go", "test", "-run", "^$", "-bench", g.bench, "-benchtime", "2s", "-count", "3", "-cpu", "1", g.pkg}
		out, err := exec.Command(cmdline[0], cmdline[1:]...).CombinedOutput()
		if err != nil {
			b.add(result{section: "Go benchmarks (one core)", name: g.name, command: strings.Join(cmdline, " "), value: "failed: " + firstLine(string(out))})
			continue
		}
		var vals []float64
		for _, line := range strings.Split(string(out), "\n") {
			m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
			if m == nil {
				continue
			}
			if g.metric == "ns/op" {
				v, _ := strconv.ParseFloat(m[2], 64)
				vals = append(vals, v)
				continue
			}
			fields := strings.Fields(m[3])
			for i := 1; i < len(fields); i++ {
				if fields[i] == g.metric {
					v, _ := strconv.ParseFloat(fields[i-1], 64)
					vals = append(vals, v)
				}
			}
		}
		if len(vals) == 0 {
			continue
		}
		v := median(vals)
		ver := "-"
		if g.meets != nil {
			ver = verdict(g.meets(v), "see the benchmark")
		}
		b.add(result{section: "Go benchmarks (one core)", name: g.name, command: strings.Join(cmdline, " "),
			value: fmt.Sprintf("%s %s", human(v), g.metric), ratio: "-", target: g.target, verdict: ver})
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

// collectorMemory runs the built collector tracing a target at 5,000 calls/s (10,000 events/s)
// and reports its resident memory after 20 s.
func (b *bench) collectorMemory(collector, goTarget string) {
	if _, err := os.Stat(collector); err != nil {
		b.add(result{section: "Collector under load", name: "RSS at 10,000 events/s", value: "skipped: " + collector + " not built (run make build)"})
		return
	}
	cfg := filepath.Join(b.dir, "collector.yaml")
	conf := fmt.Sprintf(`receivers:
  ebpf:
    targets:
      - name: bench
        executable: %s
        functions: [{symbol: main.Work}]
    syscalls: [connect]
exporters:
  debug:
    verbosity: basic
    sampling_initial: 1
    sampling_thereafter: 1000000
service:
  telemetry:
    logs: {level: warn}
  pipelines:
    traces: {receivers: [ebpf], exporters: [debug]}
`, goTarget)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		fail("collector config", err)
	}
	col := exec.Command(collector, "--config="+cfg)
	col.Stdout, col.Stderr = io.Discard, io.Discard
	if err := col.Start(); err != nil {
		fail("start collector", err)
	}
	defer func() { _ = col.Process.Kill(); _ = col.Wait() }()
	time.Sleep(3 * time.Second)
	t := exec.Command(goTarget, "-rate", "5000", "-duration", "20s")
	stdin, _ := t.StdinPipe()
	t.Stdout = io.Discard
	if err := t.Start(); err != nil {
		fail("start paced target", err)
	}
	time.Sleep(time.Second) // the collector attaches at exec
	_, _ = io.WriteString(stdin, "go\n")
	before := cpuTime(col.Process.Pid)
	start := time.Now()
	_ = t.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime(col.Process.Pid) - before
	rss, hwm := memKB(col.Process.Pid, "VmRSS"), memKB(col.Process.Pid, "VmHWM")
	b.add(result{section: "Collector under load", name: "collector RSS while tracing 5,000 calls/s (10,000 events/s) for 20 s",
		command: "otelcol-agenttrail (ebpf → debug) + target -rate 5000",
		value:   fmt.Sprintf("RSS %.1f MiB, peak %.1f MiB; collector CPU %.1f%% of one core", float64(rss)/1024, float64(hwm)/1024, 100*cpu.Seconds()/elapsed.Seconds()),
		ratio:   "-", target: "RSS < 100 MiB", verdict: verdict(float64(hwm)/1024 < 100, "see the profile")})
}

func memKB(pid int, field string) int {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func cpuTime(pid int) time.Duration {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 13 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			k, _ := strconv.ParseInt(f[12], 10, 64)
			return time.Duration(u+k) * time.Second / 100 // USER_HZ
		}
	}
	return 0
}

func (b *bench) add(r result) {
	fmt.Printf("%-24s %-70s %s  ratio %s  %s\n", r.section, r.name, r.value, r.ratio, r.verdict)
	b.results = append(b.results, r)
}

func machine() string {
	var model string
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	return fmt.Sprintf("%d CPUs (%s), %s, Linux %s, %s", runtime.NumCPU(), model, memTotal(), strings.TrimSpace(string(kernel)), runtime.Version())
}

func memTotal() string {
	kb := memKBFile("/proc/meminfo", "MemTotal")
	return fmt.Sprintf("%.0f GiB RAM", float64(kb)/1024/1024)
}

func memKBFile(path, field string) int {
	data, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func (b *bench) write(path string) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# Benchmarks\n\nWritten by `make bench` (`go run ./tests/bench`) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&sb, "Machine: %s.\n\n", machine())
	sb.WriteString("Overheads are medians of repeated runs of a target program, each with nothing attached " +
		"(the baseline), with a no-op BPF program on the same hook (the floor: what the trap itself costs " +
		"on this machine), and under the AgentTrail receiver; a ratio is (receiver − baseline) / (floor − baseline), " +
		"all measured in this run. Traps are slow on virtual machines (≈ 20 µs per uprobe hit), so absolute " +
		"numbers only compare within one run.\n\n")
	section := ""
	for _, r := range b.results {
		if r.section != section {
			section = r.section
			fmt.Fprintf(&sb, "\n## %s\n\n| measurement | command | value | ratio to floor | target | verdict |\n|---|---|---|---|---|---|\n", section)
		}
		fmt.Fprintf(&sb, "| %s | `%s` | %s | %s | %s | %s |\n", r.name, r.command, r.value, r.ratio, r.target, r.verdict)
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}
