package main

// Sections 1 and 2 (Go and native calls) and the syscall event: a target program times its own
// operations with nothing attached (the baseline), with a no-op BPF program on the same hook (the
// floor) and under the AgentTrail receiver running in this process.

import (
	"bufio"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os/exec"
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
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver"
)

// attachFunc instruments a started target (its pid given) and returns how to undo it.
type attachFunc func(pid int) (cleanup func(), err error)

// run starts a target, lets attach() instrument it, releases it (a line on its stdin) and
// returns the median nanoseconds per operation over the repetitions it prints.
func (b *bench) run(args []string, attach attachFunc) (float64, error) {
	cmd := exec.Command(args[0], args[1:]...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
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
		_ = cmd.Wait()
		return 0, fmt.Errorf("%s printed no measurements: %s", args[0], firstLine(stderr.String()))
	}
	return median(vals), nil
}

// rounds and repsPerRun: each variant of a comparison runs rounds times, interleaved with the
// other variants (so that drift of a busy machine lands on all of them), each run doing
// repsPerRun repetitions; a variant's value is the median over its runs of each run's median.
func (b *bench) rounds() int     { return 3 }
func (b *bench) repsPerRun() int { return max(1, (b.opt.reps+2)/3) }

// compare measures the target args(reps) under each variant (nil: nothing attached) and
// returns the nanoseconds per operation of each, the repetitions each variant ran in all, and
// a warning when another process had uprobes on one of the watched files before a run.
func (b *bench) compare(watch []string, args func(reps int) []string, variants ...attachFunc) ([]float64, int, string, error) {
	per := b.repsPerRun()
	// The kernel's BPF run statistics are on for every variant alike (they cost each program
	// run two clock reads), so that withReceiver can report the time its programs ran.
	if stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
		defer stats.Close()
	}
	vals := make([][]float64, len(variants))
	warn := ""
	for r := 0; r < b.rounds(); r++ {
		for i, v := range variants {
			if warn == "" {
				warn = interference(watch...)
			}
			x, err := b.run(args(per), v)
			if err != nil {
				return nil, 0, "", fmt.Errorf("variant %d: %w", i, err)
			}
			vals[i] = append(vals[i], x)
		}
	}
	if warn == "" {
		warn = interference(watch...)
	}
	if warn != "" {
		fmt.Println("   " + warn)
	}
	out := make([]float64, len(variants))
	for i := range vals {
		out[i] = median(vals[i])
	}
	return out, per * b.rounds(), warn, nil
}

// noopProgram is a BPF program that does nothing: attached, it measures the hook's own cost.
func noopProgram(typ ebpf.ProgramType) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         typ,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
}

// hook is one probe point: a symbol's entry, its return (a uretprobe) or an address (a file
// offset, with opts for a USDT semaphore).
type hook struct {
	symbol string
	ret    bool
	opts   *link.UprobeOptions
}

// noopHooks attaches a no-op program at every hook of exe.
func noopHooks(exe string, hooks ...hook) attachFunc {
	return func(int) (func(), error) {
		prog, err := noopProgram(ebpf.Kprobe)
		if err != nil {
			return nil, err
		}
		var links []link.Link
		cleanup := func() {
			for _, l := range links {
				l.Close()
			}
			prog.Close()
		}
		ex, err := link.OpenExecutable(exe)
		if err != nil {
			cleanup()
			return nil, err
		}
		for _, h := range hooks {
			attach := ex.Uprobe
			if h.ret {
				attach = ex.Uretprobe
			}
			l, err := attach(h.symbol, prog, h.opts)
			if err != nil {
				cleanup()
				return nil, err
			}
			links = append(links, l)
		}
		return cleanup, nil
	}
}

// noopUprobe attaches a no-op program at symbol (or at opts.Address) of exe.
func noopUprobe(exe, symbol string, opts *link.UprobeOptions) attachFunc {
	return noopHooks(exe, hook{symbol: symbol, opts: opts})
}

// retHooks are hooks on every RET instruction of a function, as the receiver places them on Go
// functions (never a uretprobe on Go code).
func retHooks(exe, symbol string) ([]hook, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nil, err
	}
	for _, sym := range syms {
		if sym.Name != symbol {
			continue
		}
		text := f.Section(".text")
		if text == nil || sym.Value < text.Addr || sym.Value+sym.Size > text.Addr+text.Size {
			return nil, fmt.Errorf("%s is not in .text", symbol)
		}
		code := make([]byte, sym.Size)
		if _, err := text.ReadAt(code, int64(sym.Value-text.Addr)); err != nil {
			return nil, err
		}
		var hooks []hook
		for pc := 0; pc < len(code); {
			inst, err := x86asm.Decode(code[pc:], 64)
			if err != nil {
				return nil, fmt.Errorf("%s+%#x: %w", symbol, pc, err)
			}
			if inst.Op == x86asm.RET {
				off, err := fileOffset(f, sym.Value+uint64(pc))
				if err != nil {
					return nil, err
				}
				hooks = append(hooks, hook{symbol: symbol, opts: &link.UprobeOptions{Address: off}})
			}
			pc += inst.Len
		}
		if len(hooks) == 0 {
			return nil, fmt.Errorf("%s has no RET", symbol)
		}
		return hooks, nil
	}
	return nil, fmt.Errorf("%s has no symbol %s", exe, symbol)
}

// spanCounter counts spans the receiver emits, to check every operation was recorded.
type spanCounter struct{ spans atomic.Int64 }

func (c *spanCounter) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }
func (c *spanCounter) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	c.spans.Add(int64(td.SpanCount()))
	return nil
}

// inproc is the AgentTrail receiver running in this process, with its self-telemetry readable.
type inproc struct {
	r      receiver.Traces
	reader *sdkmetric.ManualReader
}

// receiverConfig is the receiver's default configuration (TLS and Python support on, as in the
// collector) tracing targets and the given syscalls.
func receiverConfig(targets []ebpfreceiver.TargetConfig, syscalls []string) *ebpfreceiver.Config {
	cfg := ebpfreceiver.NewFactory().CreateDefaultConfig().(*ebpfreceiver.Config)
	cfg.Targets = targets
	cfg.Syscalls = syscalls
	cfg.FlushInterval = 100 * time.Millisecond
	return cfg
}

func startReceiver(cfg *ebpfreceiver.Config, next consumer.Traces) (*inproc, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := ebpfreceiver.NewFactory()
	reader := sdkmetric.NewManualReader()
	set := receivertest.NewNopSettings(f.Type())
	set.TelemetrySettings.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	r, err := f.CreateTraces(context.Background(), set, cfg, next)
	if err != nil {
		return nil, err
	}
	if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		return nil, err
	}
	return &inproc{r: r, reader: reader}, nil
}

func (p *inproc) stop() { _ = p.r.Shutdown(context.Background()) }

// counter sums the data points of one of the receiver's counters.
func (p *inproc) counter(name string) int64 {
	var rm metricdata.ResourceMetrics
	// After Shutdown the drop-counter callback fails (its maps are closed); the counters are
	// still collected.
	_ = p.reader.Collect(context.Background(), &rm)
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if s, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range s.DataPoints {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// recvRun is what one run under the receiver recorded.
type recvRun struct {
	spans   spanCounter
	next    consumer.Traces // when set, receives the spans instead of spans
	records int64
	// Of them, the sends and receives on sockets and plaintext pipes (sockets.records).
	sockRecords int64
	// The kernel's run statistics of the receiver's programs over the run, by program type.
	uprobeRuns, uprobeNs, tpRuns, tpNs uint64
	// progRuns: the same by program name: runs and ns.
	progRuns map[string][2]uint64
}

// uprobePerOp is the time the receiver's uprobe programs ran per operation of the target;
// tracepointPerOp the same for its raw tracepoint programs, which run at every syscall of every
// process on the machine (those of other processes included).
func (rr *recvRun) uprobePerOp(ops int) float64     { return float64(rr.uprobeNs) / float64(ops) }
func (rr *recvRun) tracepointPerOp(ops int) float64 { return float64(rr.tpNs) / float64(ops) }

// withReceiver runs the receiver in this process, tracing the target, for one run, and reads
// the kernel's run statistics of its programs (on during compare).
func withReceiver(rr *recvRun, cfg *ebpfreceiver.Config) attachFunc {
	return func(int) (func(), error) {
		before := maxProgramID()
		var next consumer.Traces = &rr.spans
		if rr.next != nil {
			next = rr.next
		}
		p, err := startReceiver(cfg, next)
		if err != nil {
			return nil, err
		}
		progs := programsAfter(before)
		s0 := statsOf(progs)
		return func() {
			s1 := statsOf(progs)
			p.stop() // drains the ring buffer: every record is counted
			rr.records += p.counter("agenttrail.ebpf.events.read")
			rr.sockRecords += p.counter("agenttrail.ebpf.sockets.records")
			for i, pr := range progs {
				runs, ns := s1[i].runs-s0[i].runs, s1[i].ns-s0[i].ns
				if rr.progRuns == nil {
					rr.progRuns = map[string][2]uint64{}
				}
				pr0 := rr.progRuns[pr.name]
				rr.progRuns[pr.name] = [2]uint64{pr0[0] + runs, pr0[1] + ns}
				if pr.typ == ebpf.Kprobe {
					rr.uprobeRuns, rr.uprobeNs = rr.uprobeRuns+runs, rr.uprobeNs+ns
				} else {
					rr.tpRuns, rr.tpNs = rr.tpRuns+runs, rr.tpNs+ns
				}
				pr.prog.Close()
			}
		}, nil
	}
}

func (b *bench) probeOverhead() {
	goTarget, cTarget := b.path("target"), b.path("ctarget")
	goArgs := func(reps int) []string {
		return []string{goTarget, "-mode", "func", "-n", strconv.Itoa(b.opt.n), "-reps", strconv.Itoa(reps)}
	}
	cArgs := func(reps int) []string { return []string{cTarget, strconv.Itoa(b.opt.n), strconv.Itoa(reps)} }
	rets, err := retHooks(goTarget, "main.Work")
	if err != nil {
		fail("RET instructions of main.Work", err)
	}
	rr := &recvRun{}
	defer func() { b.warn = "" }()
	v, reps, warn, err := b.compare([]string{goTarget}, goArgs, nil,
		noopUprobe(goTarget, "main.Work", nil),
		noopHooks(goTarget, append([]hook{{symbol: "main.Work"}}, rets...)...),
		withReceiver(rr, receiverConfig([]ebpfreceiver.TargetConfig{{Name: "bench", Executable: goTarget,
			Functions: []ebpfreceiver.FunctionConfig{{Symbol: "main.Work"}}}}, nil)))
	if err != nil {
		fail("Go function overhead", err)
	}
	b.warn = warn
	calls := b.opt.n * reps
	base, floor, floor2, cost := v[0], v[1]-v[0], v[2]-v[0], v[3]-v[0]
	b.uprobeFloorNs = floor
	b.add(result{section: secFloor, name: "bare no-op uprobe hit (Go function entry)",
		command: "target -mode func, a no-op BPF program on main.Work, minus the run without it",
		value:   fmt.Sprintf("%.2f µs (call without probe: %.1f ns)", floor/1000, base), ratio: "1.00 (floor)", target: "-", verdict: "measured"})
	b.add(result{section: secFloor, name: "no-op uprobes on a Go function's entry and its RET instructions, per call (the receiver's two probe points)",
		command: "target -mode func, a no-op BPF program on main.Work and on each RET of it, minus the run without",
		value:   fmt.Sprintf("%.2f µs", floor2/1000), ratio: fmt.Sprintf("%.2f", floor2/floor), target: "-", verdict: "measured"})
	ratio, valid := cost/floor, floorValid(floor, base)
	b.add(result{section: secCall, name: "Go function: entry + RET probes + 2 records → span",
		command: "target -mode func under the ebpf receiver (function main.Work)",
		value: fmt.Sprintf("%.2f µs: %.2f × the entry+RET no-op floor; in-BPF time %.2f µs (%d spans, %d records of %d calls)",
			cost/1000, cost/floor2, rr.uprobePerOp(calls)/1000, rr.spans.spans.Load(), rr.records, calls),
		ratio:  ratioText(cost, floor, valid),
		target: "≤ 2.0 × floor",
		verdict: judge(valid, ratio <= 2.0, fmt.Sprintf("entry and return are two probe hits; the same two no-op hooks alone cost %.2f × the floor (row above), "+
			"so the target leaves %.2f × floor for the two programs and their records, which take %.2f ×",
			floor2/floor, 2-floor2/floor, (cost-floor2)/floor))})

	crr := &recvRun{}
	cv, creps, cwarn, err := b.compare([]string{cTarget}, cArgs, nil,
		noopUprobe(cTarget, "work", nil),
		noopHooks(cTarget, hook{symbol: "work"}, hook{symbol: "work", ret: true}),
		withReceiver(crr, receiverConfig([]ebpfreceiver.TargetConfig{{Name: "bench", Executable: cTarget,
			Functions: []ebpfreceiver.FunctionConfig{{Symbol: "work"}}}}, nil)))
	if err != nil {
		fail("C function overhead", err)
	}
	b.warn = cwarn
	ccalls := b.opt.n * creps
	cfloor, cfloor2, ccost := cv[1]-cv[0], cv[2]-cv[0], cv[3]-cv[0]
	cratio, cvalid := ccost/cfloor, floorValid(cfloor, cv[0])
	b.add(result{section: secFloor, name: "no-op uprobe + uretprobe on a C function, per call",
		command: "ctarget, a no-op BPF program on work's entry and return, minus the run without",
		value:   fmt.Sprintf("%.2f µs (a no-op uprobe alone: %.2f µs)", cfloor2/1000, cfloor/1000), ratio: fmt.Sprintf("%.2f", cfloor2/cfloor), target: "-", verdict: "measured"})
	b.add(result{section: secCall, name: "native (C) function: uprobe + uretprobe + 2 records → span",
		command: "ctarget under the ebpf receiver (function work); floor: a no-op uprobe on work",
		value: fmt.Sprintf("%.2f µs (floor here %.2f µs; %.2f × the uprobe+uretprobe no-op floor; in-BPF time %.2f µs; %d spans, %d records of %d calls)",
			ccost/1000, cfloor/1000, ccost/cfloor2, crr.uprobePerOp(ccalls)/1000, crr.spans.spans.Load(), crr.records, ccalls),
		ratio: ratioText(ccost, cfloor, cvalid), target: "≤ 2.0 × floor",
		verdict: judge(cvalid, cratio <= 2.0, fmt.Sprintf("a uretprobe is a second trap plus the return-address rewrite: no-op uprobe + uretprobe alone cost %.2f × the floor", cfloor2/cfloor))})
}

// noopTracepoints attaches a no-op program to the sys_enter and sys_exit raw tracepoints.
func noopTracepoints(int) (func(), error) {
	prog, err := noopProgram(ebpf.RawTracepoint)
	if err != nil {
		return nil, err
	}
	var links []link.Link
	cleanup := func() {
		for _, l := range links {
			l.Close()
		}
		prog.Close()
	}
	for _, tp := range []string{"sys_enter", "sys_exit"} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: prog})
		if err != nil {
			cleanup()
			return nil, err
		}
		links = append(links, l)
	}
	return cleanup, nil
}

func (b *bench) syscallOverhead() {
	goTarget := b.path("target")
	n := b.opt.n / 4
	args := func(reps int) []string {
		return []string{goTarget, "-mode", "open", "-n", strconv.Itoa(n), "-reps", strconv.Itoa(reps)}
	}
	rr := &recvRun{}
	v, reps, _, err := b.compare(nil, args, nil, noopTracepoints,
		withReceiver(rr, receiverConfig([]ebpfreceiver.TargetConfig{{Name: "bench", Executable: goTarget}}, []string{"openat"})))
	if err != nil {
		fail("syscall overhead", err)
	}
	base, floor, cost := v[0], v[1]-v[0], v[2]-v[0]
	b.add(result{section: secFloor, name: "bare syscalls (openat + close of /dev/null)", command: "target -mode open, nothing attached",
		value: fmt.Sprintf("%.2f µs", base/1000), ratio: "-", target: "-", verdict: "measured"})
	b.add(result{section: secFloor, name: "no-op raw tracepoints on sys_enter + sys_exit, per openat + close (4 hits)", command: "target -mode open with no-op programs, minus the run without",
		value: fmt.Sprintf("%.2f µs", floor/1000), ratio: "1.00 (floor)", target: "-", verdict: "measured"})
	ops := n * reps
	valid := floorValid(floor, base)
	b.add(result{section: secSyscall, name: "traced openat with path, flags and a 48-frame user stack → span event",
		command: "target -mode open under the ebpf receiver (syscalls: [openat], call_stacks: true)",
		value: fmt.Sprintf("%.2f µs; in-BPF time %.2f µs per openat + close (the tracepoint programs' runs at every process's syscalls included) (%d spans, %d records of %d opens)",
			cost/1000, rr.tracepointPerOp(ops)/1000, rr.spans.spans.Load(), rr.records, ops),
		ratio: ratioText(cost, floor, valid), target: "≤ 2.0 × floor",
		verdict: judge(valid, cost/floor <= 2.0, "a tracepoint hit that only looks its process up costs a fraction of a µs; the recorded openat also walks the user stack (bpf_get_stack, 48 frames), reads the path and writes a 1.3 KiB ring-buffer record")})
}
