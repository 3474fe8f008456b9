package main

// Section 2d, the node-wide syscall tax: the syscall programs hook sys_enter and sys_exit for
// every process on the node, traced or not. An untraced process (taxtarget, in C) times its own
// getppid, openat+close, write and read with the collector off and on (the receiver in this
// process, default configuration, tracing another program), beside two floors: no-op programs
// on the sys_enter/sys_exit raw tracepoints (the hook every syscall pays while any program is
// there), and no-op programs on the per-syscall tracepoints (syscalls:sys_enter_openat, ...) of
// only the syscalls the default configuration needs, the alternative that tracefs offers.

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

// taxOps are the untraced operations: mode, what it is, syscalls per operation.
var taxOps = []struct {
	mode, what string
	syscalls   int
}{
	{"getppid", "getppid (a syscall no program needs)", 1},
	{"open", "openat + close of /dev/null (openat: traced for targets)", 2},
	{"write", "64-byte write to /dev/null (write: socket I/O of targets)", 1},
	{"read", "64-byte read of /dev/zero (read: inbound socket I/O of targets)", 1},
}

// taxSyscalls are the per-syscall tracepoints the receiver's default configuration would need:
// the traced syscalls and fork (enter and exit), and the socket I/O calls (exit; receives too
// with inbound on). Names as in tracefs (sendfile is sendfile64 on x86-64).
var taxSyscalls = struct{ both, exit []string }{
	both: []string{"connect", "accept", "accept4", "execve", "execveat", "openat", "clone", "clone3", "fork", "vfork"},
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
// of its sys_enter and sys_exit programs, whatever their type (raw tracepoint or tracepoint).
// With calibrate, a no-op program sits on the same raw tracepoints beside them (its statistics
// under "noop"): it runs in the same conditions (the receiver's threads on the same 2 CPUs, the
// same cache pressure), which a no-op measured in another run does not.
func withTaxReceiver(tr *taxRun, cfg *ebpfreceiver.Config, calibrate bool) attachFunc {
	return func(pid int) (func(), error) {
		before := maxProgramID()
		p, err := startReceiver(cfg, &spanCounter{})
		if err != nil {
			return nil, err
		}
		progs := syscallProgramsAfter(before)
		noop := func() {}
		if calibrate {
			if noop, err = noopSyscallHooks(tr, false)(pid); err != nil {
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
	cfg := receiverConfig([]ebpfreceiver.TargetConfig{{Name: "other", Executable: "/bin/true"}},
		ebpfreceiver.NewFactory().CreateDefaultConfig().(*ebpfreceiver.Config).Syscalls)
	mounted, tpErr := ensureTracefs()
	if tpErr == nil && mounted {
		fmt.Println("   mounted tracefs at /sys/kernel/tracing (left mounted)")
	}
	defer func() { b.warn = "" }()
	for _, op := range taxOps {
		args := func(reps int) []string { return []string{taxTarget, op.mode, strconv.Itoa(n), strconv.Itoa(reps)} }
		tr := &taxRun{runs: map[string]uint64{}, ns: map[string]uint64{}}
		raw := &taxRun{runs: map[string]uint64{}, ns: map[string]uint64{}}
		perSys := &taxRun{runs: map[string]uint64{}, ns: map[string]uint64{}}
		cal := &taxRun{runs: map[string]uint64{}, ns: map[string]uint64{}}
		variants := []attachFunc{nil, noopSyscallHooks(raw, false), withTaxReceiver(tr, cfg, false), withTaxReceiver(cal, cfg, true)}
		if tpErr == nil {
			variants = append(variants, noopSyscallHooks(perSys, true))
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
		off, floor, on := v[0], v[1]-v[0], v[2]-v[0]
		ops := float64(n * b.repsPerRun() * b.rounds())
		tpFloor := "not measured: " + fmt.Sprint(tpErr)
		if tpErr == nil {
			tpFloor = fmt.Sprintf("%+.0f ns (its program ran %.2f times per operation)", v[4]-v[0], float64(perSys.runs["noop"])/ops)
		}
		enterNs, enterRuns := cal.perRun("sys_enter")
		exitNs, exitRuns := cal.perRun("sys_exit")
		noopNs, _ := cal.perRun("noop")
		aloneNs, _ := raw.perRun("noop")
		valid := floorValid(floor, off)
		b.add(result{section: secTax, name: "untraced " + op.what + ": collector off vs on",
			command: cmdOf(op.mode) + ", nothing attached (off) / the ebpf receiver in the harness, default configuration, tracing /bin/true (on) / " +
				"no-op programs on the sys_enter and sys_exit raw tracepoints (floor) / no-op programs on the syscalls:sys_{enter,exit}_* tracepoints the default configuration needs",
			value: fmt.Sprintf("off %.0f ns, on %.0f ns per operation (%+.0f ns); no-op raw tracepoint floor %+.0f ns; no-op per-syscall tracepoints %s",
				off, v[2], on, floor, tpFloor),
			ratio:   fmt.Sprintf("%.3f", v[2]/off),
			target:  "on − off ≤ 1.25 × the no-op raw tracepoint floor",
			verdict: judge(valid, on <= 1.25*floor, fmt.Sprintf("the programs add %.0f ns over the hook's own %.0f ns per operation", on-floor, floor))})
		net := enterNs + exitNs - 2*noopNs
		b.add(result{section: secTax, name: "untraced " + op.what + ": in-BPF time per syscall",
			command: cmdOf(op.mode) + " under the ebpf receiver (default configuration, tracing /bin/true): the kernel's run statistics (kernel.bpf_stats_enabled) " +
				"of sys_enter and sys_exit, run_time_ns ÷ run_cnt (every process's syscalls in that time included), minus that of a no-op program on the same raw tracepoints in the same runs (the statistics' own clock reads and the machine's state)",
			value: fmt.Sprintf("%.1f ns: sys_enter %.1f ns + sys_exit %.1f ns per run − 2 × %.1f ns of the no-op program beside them (%.2f runs each per operation; the no-op alone, in other runs: %.1f ns)",
				net, enterNs, exitNs, noopNs, float64(enterRuns+exitRuns)/2/ops, aloneNs),
			ratio:   "-",
			target:  "≤ 20 ns per untraced syscall (sys_enter + sys_exit, beyond a no-op program)",
			verdict: verdict(net <= 20, fmt.Sprintf("%.1f ns per syscall", net))})
	}
}
