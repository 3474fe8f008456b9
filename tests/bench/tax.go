package main

// Section 2d, the node-wide syscall tax: the syscall programs hook every syscall of every process
// on the node (the raw-tracepoint path) or only the syscalls the configuration needs (the
// per-syscall tracepoints, syscall_attach's default where tracefs is there). An untraced process
// (taxtarget, in C) times its own getppid, openat+close, write and read with the collector off
// and on, on both paths in the same runs (the receiver in this process, default configuration,
// tracing another program), beside two floors: no-op programs on the sys_enter/sys_exit raw
// tracepoints (the hook every syscall pays while any program is there), and no-op programs on
// the per-syscall tracepoints (syscalls:sys_enter_openat, ...) the receiver attaches. A traced
// process's openat (the Go target) is measured on both paths too.

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver"
)

// taxOps are the untraced operations: mode, what it is, syscalls per operation, and the runs
// of the receiver's programs per operation on the per-syscall path (entry, exit): its
// tracepoints are on openat (both), write and read (exit), not on getppid or close.
var taxOps = []struct {
	mode, what              string
	syscalls                int
	tpEnterRuns, tpExitRuns float64
}{
	{"getppid", "getppid (a syscall no program needs)", 1, 0, 0},
	{"open", "openat + close of /dev/null (openat: traced for targets)", 2, 1, 1},
	{"write", "64-byte write to /dev/null (write: socket I/O of targets)", 1, 0, 1},
	{"read", "64-byte read of /dev/zero (read: inbound socket I/O of targets)", 1, 0, 1},
}

// taxSyscalls are the per-syscall tracepoints the receiver's default configuration attaches
// (probes.syscallTracepoints; agenttrail.ebpf.syscalls.hooks says 28): the traced syscalls
// (enter and exit), the forks (enter), and the socket I/O calls (exit; receives too with
// inbound on). Names as in tracefs (sendfile is sendfile64 on x86-64).
var taxSyscalls = struct{ both, enter, exit []string }{
	both:  []string{"connect", "accept", "accept4", "execve", "execveat", "openat"},
	enter: []string{"clone", "clone3", "fork", "vfork"},
	exit: []string{"write", "writev", "sendto", "sendmsg", "sendmmsg", "sendfile64", "splice",
		"read", "readv", "recvfrom", "recvmsg", "recvmmsg"},
}

// tracefsEvents is where the syscall tracepoints are listed; the harness mounts tracefs there
// when nothing is (as a node running the DaemonSet has it).
const tracefsEvents = "/sys/kernel/tracing/events/syscalls"

func ensureTracefs() (mounted bool, err error) {
	if _, err := os.Stat(tracefsEvents); err == nil {
		return false, nil
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return false, fmt.Errorf("mount tracefs: %w", err)
	}
	if _, err := os.Stat(tracefsEvents); err != nil {
		return true, fmt.Errorf("no syscall tracepoints: %w", err)
	}
	return true, nil
}

// noopSyscallHooks attaches one no-op program to the sys_enter and sys_exit raw tracepoints
// (perSyscall false) or to the per-syscall tracepoints of taxSyscalls (true), and adds its run
// statistics to tr under the name "noop": a program that does nothing still shows the clock
// reads of the statistics themselves, which the receiver's programs' times include too.
func noopSyscallHooks(tr *taxRun, perSyscall bool) attachFunc {
	return func(int) (func(), error) {
		typ := ebpf.RawTracepoint
		if perSyscall {
			typ = ebpf.TracePoint
		}
		prog, err := noopProgram(typ)
		if err != nil {
			return nil, err
		}
		var links []link.Link
		s0, _ := prog.Stats()
		cleanup := func() {
			if s1, err := prog.Stats(); err == nil && s0 != nil {
				tr.runs["noop"] += s1.RunCount - s0.RunCount
				tr.ns["noop"] += uint64(s1.Runtime - s0.Runtime)
			}
			for _, l := range links {
				l.Close()
			}
			prog.Close()
		}
		if !perSyscall {
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
		var names []string
		for _, s := range taxSyscalls.both {
			names = append(names, "sys_enter_"+s, "sys_exit_"+s)
		}
		for _, s := range taxSyscalls.enter {
			names = append(names, "sys_enter_"+s)
		}
		for _, s := range taxSyscalls.exit {
			names = append(names, "sys_exit_"+s)
		}
		for _, name := range names {
			l, err := link.Tracepoint("syscalls", name, prog, nil)
			if err != nil {
				cleanup()
				return nil, fmt.Errorf("tracepoint syscalls:%s: %w", name, err)
			}
			links = append(links, l)
		}
		return cleanup, nil
	}
}

// taxRun is what the syscall programs ran during the runs under the receiver, by program.
type taxRun struct {
	runs, ns map[string]uint64
}

// perRun is the mean run time of the programs whose name starts with prefix, and their runs.
func (tr *taxRun) perRun(prefix string) (float64, uint64) {
	var runs, ns uint64
	for name, r := range tr.runs {
		if strings.HasPrefix(name, prefix) {
			runs += r
			ns += tr.ns[name]
		}
	}
	if runs == 0 {
		return 0, 0
	}
	return float64(ns) / float64(runs), runs
}

// withTaxReceiver runs the receiver (cfg) for one run and adds up the kernel's run statistics
// of its sys_enter* and sys_exit* programs, whatever their type (raw tracepoint or tracepoint).
// With calibrate, a no-op program sits on the same hooks beside them (the raw tracepoints, or
// with perSyscall the per-syscall tracepoints the receiver attaches; its statistics under
// "noop"): it runs in the same conditions (the receiver's threads on the same 2 CPUs, the same
// cache pressure), which a no-op measured in another run does not.
func withTaxReceiver(tr *taxRun, cfg *ebpfreceiver.Config, calibrate, perSyscall bool) attachFunc {
	return func(pid int) (func(), error) {
		before := maxProgramID()
		p, err := startReceiver(cfg, &spanCounter{})
		if err != nil {
			return nil, err
		}
		progs := syscallProgramsAfter(before)
		noop := func() {}
		if calibrate {
			if noop, err = noopSyscallHooks(tr, perSyscall)(pid); err != nil {
				p.stop()
				return nil, err
			}
		}
		s0 := statsOf(progs)
		return func() {
			s1 := statsOf(progs)
			noop()
			p.stop()
			for i, pr := range progs {
				tr.runs[pr.name] += s1[i].runs - s0[i].runs
				tr.ns[pr.name] += s1[i].ns - s0[i].ns
				pr.prog.Close()
			}
		}, nil
	}
}

// syscallProgramsAfter returns the receiver's sys_enter* and sys_exit* programs loaded with an
// id above after.
func syscallProgramsAfter(after ebpf.ProgramID) []bpfProg {
	var out []bpfProg
	for id := after; ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return out
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		info, err := p.Info()
		if err != nil || !(strings.HasPrefix(info.Name, "sys_enter") || strings.HasPrefix(info.Name, "sys_exit")) {
			p.Close()
			continue
		}
		out = append(out, bpfProg{name: info.Name, typ: info.Type, prog: p})
	}
}

// foreignSyscallHooks counts programs of other processes on sys_enter/sys_exit (another
// collector, a kernel test): they tax the baseline too, and the run says so.
func foreignSyscallHooks() int {
	n := 0
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil || info.Type != link.RawTracepointType {
			continue
		}
		if rt := info.RawTracepoint(); rt != nil && (rt.Name == "sys_enter" || rt.Name == "sys_exit") {
			n++
		}
	}
	return n
}

func (b *bench) nodeTax() {
	taxTarget := b.path("taxtarget")
	b.build("tax target", "gcc", "-O2", "-o", taxTarget, "tests/bench/taxtarget/tax.c")
	n := b.opt.n * 5
	cmdOf := func(mode string) string {
		return fmt.Sprintf("taxtarget %s %d REPS (tests/bench/taxtarget/tax.c)", mode, n)
	}
	// The collector traces another program; the target only passes the programs' filters.
	def := receiverConfig([]ebpfreceiver.TargetConfig{{Name: "other", Executable: "/bin/true"}},
		ebpfreceiver.NewFactory().CreateDefaultConfig().(*ebpfreceiver.Config).Syscalls)
	mounted, tpErr := ensureTracefs()
	if tpErr == nil && mounted {
		fmt.Println("   mounted tracefs at /sys/kernel/tracing (left mounted)")
	}
	rawCfg, tpCfg := *def, *def
	rawCfg.SyscallAttach, tpCfg.SyscallAttach = "raw", "tracepoint"
	defer func() { b.warn = "" }()
	newRun := func() *taxRun { return &taxRun{runs: map[string]uint64{}, ns: map[string]uint64{}} }
	for _, op := range taxOps {
		args := func(reps int) []string { return []string{taxTarget, op.mode, strconv.Itoa(n), strconv.Itoa(reps)} }
		rawOn, tpOn, rawCal, tpCal, rawNoop, tpNoop := newRun(), newRun(), newRun(), newRun(), newRun(), newRun()
		// off, raw floor, raw on, raw calibrated; then (with tracefs) the per-syscall floor,
		// tracepoint on, tracepoint calibrated: interleaved in each round.
		variants := []attachFunc{nil, noopSyscallHooks(rawNoop, false), withTaxReceiver(rawOn, &rawCfg, false, false), withTaxReceiver(rawCal, &rawCfg, true, false)}
		if tpErr == nil {
			variants = append(variants, noopSyscallHooks(tpNoop, true), withTaxReceiver(tpOn, &tpCfg, false, true), withTaxReceiver(tpCal, &tpCfg, true, true))
		}
		foreign := foreignSyscallHooks()
		v, _, _, err := b.compare(nil, args, variants...)
		if err != nil {
			fail("node-wide tax "+op.mode, err)
		}
		if f := max(foreign, foreignSyscallHooks()); f > 0 {
			b.warn = fmt.Sprintf("INVALID: %d programs of other processes were on sys_enter/sys_exit around the run", f)
		} else {
			b.warn = ""
		}
		off, floor, rawAdd := v[0], v[1]-v[0], v[2]-v[0]
		ops := float64(n * b.repsPerRun() * b.rounds())
		valid := floorValid(floor, off)
		tpText, tpFloorText, ratio := "not measured: "+fmt.Sprint(tpErr), "not measured", "-"
		tpAdd := 0.0
		if tpErr == nil {
			tpAdd = v[5] - v[0]
			tpText = fmt.Sprintf("%.0f ns (%+.0f ns)", v[5], tpAdd)
			tpFloorText = fmt.Sprintf("%+.0f ns (its program ran %.2f times per operation)", v[4]-v[0], float64(tpNoop.runs["noop"])/ops)
			ratio = fmt.Sprintf("raw %.3f, tracepoint %.3f", v[2]/off, v[5]/off)
		}
		b.add(result{section: secTax, name: "untraced " + op.what + ": collector off vs on, raw tracepoints vs per-syscall tracepoints",
			command: cmdOf(op.mode) + ", nothing attached (off) / the ebpf receiver in the harness, default configuration, tracing /bin/true, with syscall_attach: raw (on, raw) and tracepoint (on, tracepoint) / " +
				"no-op programs on the sys_enter and sys_exit raw tracepoints (raw floor) / no-op programs on the 28 syscalls:sys_{enter,exit}_* tracepoints the default configuration attaches (per-syscall floor)",
			value: fmt.Sprintf("off %.0f ns per operation; on, raw %.0f ns (%+.0f ns); on, tracepoint %s; raw floor %+.0f ns; per-syscall floor %s",
				off, v[2], rawAdd, tpText, floor, tpFloorText),
			ratio:  ratio,
			target: "tracepoint: on − off ≤ 1.25 × the no-op raw tracepoint floor (raw: measured)",
			verdict: judge(valid && tpErr == nil, tpAdd <= 1.25*floor,
				fmt.Sprintf("on the per-syscall tracepoints the programs add %.0f ns against the raw hook's own %.0f ns per operation", tpAdd, floor))})

		// In-BPF time per untraced syscall: each program's time per run beyond the no-op beside
		// it, times its runs per operation (raw: every syscall runs sys_enter and sys_exit;
		// per-syscall: only the tracepoints of the needed syscalls), ÷ the operation's syscalls.
		inBPF := func(cal *taxRun, enterRuns, exitRuns float64) (net float64, detail string) {
			enterNs, enterAll := cal.perRun("sys_enter")
			exitNs, exitAll := cal.perRun("sys_exit")
			noopNs, _ := cal.perRun("noop")
			if enterRuns > 0 {
				net += (enterNs - noopNs) * enterRuns
			}
			if exitRuns > 0 {
				net += (exitNs - noopNs) * exitRuns
			}
			net /= float64(op.syscalls)
			return net, fmt.Sprintf("entry %.1f ns × %.0f + exit %.1f ns × %.0f per operation, each − %.1f ns of the no-op program beside them; runs of every process during the runs: %.2f entries, %.2f exits per operation",
				enterNs, enterRuns, exitNs, exitRuns, noopNs, float64(enterAll)/ops, float64(exitAll)/ops)
		}
		rawNet, rawDetail := inBPF(rawCal, float64(op.syscalls), float64(op.syscalls))
		tpNet, tpDetail := rawNet, "not measured: "+fmt.Sprint(tpErr)
		if tpErr == nil {
			tpNet, tpDetail = inBPF(tpCal, op.tpEnterRuns, op.tpExitRuns)
		}
		aloneNs, _ := rawNoop.perRun("noop")
		b.add(result{section: secTax, name: "untraced " + op.what + ": in-BPF time per syscall, raw tracepoints vs per-syscall tracepoints",
			command: cmdOf(op.mode) + " under the ebpf receiver (default configuration, tracing /bin/true; syscall_attach raw, then tracepoint): the kernel's run statistics (kernel.bpf_stats_enabled) " +
				"of the sys_enter* and sys_exit* programs, run_time_ns ÷ run_cnt (every process's syscalls in that time included), minus that of a no-op program on the same hooks in the same runs (the statistics' own clock reads and the machine's state), " +
				"times the runs the operation makes (raw: sys_enter and sys_exit at each syscall; per-syscall: the needed syscalls' tracepoints only)",
			value: fmt.Sprintf("raw %.1f ns (%s; the no-op alone, in other runs: %.1f ns); tracepoint %.1f ns (%s)",
				rawNet, rawDetail, aloneNs, tpNet, tpDetail),
			ratio:   "-",
			target:  "≤ 20 ns per untraced syscall (beyond a no-op program)",
			verdict: verdict(tpNet <= 20, fmt.Sprintf("%.1f ns per syscall on the per-syscall tracepoints (raw: %.1f ns)", tpNet, rawNet))})
	}
	b.warn = ""
	b.taxTraced(&rawCfg, &tpCfg, tpErr)
}

// taxTraced: a traced process's openat (+ close) on both paths, the Go target of section 2b
// under the receiver with syscalls [openat] and call stacks, raw vs per-syscall tracepoints.
func (b *bench) taxTraced(rawBase, tpBase *ebpfreceiver.Config, tpErr error) {
	goTarget := b.path("target")
	n := b.opt.n / 4
	args := func(reps int) []string {
		return []string{goTarget, "-mode", "open", "-n", strconv.Itoa(n), "-reps", strconv.Itoa(reps)}
	}
	cfgOf := func(base *ebpfreceiver.Config) *ebpfreceiver.Config {
		c := receiverConfig([]ebpfreceiver.TargetConfig{{Name: "bench", Executable: goTarget}}, []string{"openat"})
		c.SyscallAttach = base.SyscallAttach
		return c
	}
	raw, tp := &recvRun{}, &recvRun{}
	variants := []attachFunc{nil, withReceiver(raw, cfgOf(rawBase))}
	if tpErr == nil {
		variants = append(variants, withReceiver(tp, cfgOf(tpBase)))
	}
	v, reps, warn, err := b.compare([]string{goTarget}, args, variants...)
	if err != nil {
		fail("node-wide tax: traced openat", err)
	}
	b.warn = warn
	defer func() { b.warn = "" }()
	ops := n * reps
	rawAdd := v[1] - v[0]
	tpText, ratio := "not measured: "+fmt.Sprint(tpErr), "-"
	if tpErr == nil {
		tpText = fmt.Sprintf("%+.2f µs, in-BPF %.2f µs (%d spans)", (v[2]-v[0])/1000, tp.tracepointPerOp(ops)/1000, tp.spans.spans.Load())
		ratio = fmt.Sprintf("%.3f (tracepoint ÷ raw, added time)", (v[2]-v[0])/rawAdd)
	}
	b.add(result{section: secTax, name: "traced openat with path, flags and a 48-frame user stack (+ close): raw tracepoints vs per-syscall tracepoints",
		command: "target -mode open (the Go target of section 2b), nothing attached (off) / under the ebpf receiver (syscalls: [openat], call_stacks: true) with syscall_attach: raw and tracepoint",
		value: fmt.Sprintf("off %.2f µs per openat + close; raw %+.2f µs, in-BPF %.2f µs (%d spans); tracepoint %s; of %d opens (in-BPF: every program run in the runs, every process's syscalls included)",
			v[0]/1000, rawAdd/1000, raw.tracepointPerOp(ops)/1000, raw.spans.spans.Load(), tpText, ops),
		ratio: ratio, target: "-", verdict: "measured"})
}
