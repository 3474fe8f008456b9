package main

// Section 2, Python: the cost per CPython audit event (the `audit` USDT probe of Debian's
// /usr/bin/python3.11) under the receiver, as a ratio to a no-op program on the same USDT
// location with its semaphore set.

import (
	"fmt"
	"os"
	"strconv"

	"github.com/cilium/ebpf/link"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver"
)

const python311 = "/usr/bin/python3.11"

func (b *bench) pythonOverhead() {
	const script = "tests/bench/pytarget/audit.py"
	if _, err := os.Stat(python311); err != nil {
		b.skip(secCall, "Python function (CPython audit USDT event)", "python3.11 "+script, python311+" is not installed (apt-get install python3.11)")
		return
	}
	probe, err := readUSDT(python311, "python", "audit")
	if err != nil {
		b.skip(secCall, "Python function (CPython audit USDT event)", "python3.11 "+script, err.Error())
		return
	}
	floorOpts := &link.UprobeOptions{Address: probe.fileOffset, RefCtrOffset: probe.semaphoreOffset}
	var cleanFloor float64 // from the frame mode: an audit event without a syscall (0: noise)
	defer func() { b.warn = "" }()
	for _, mode := range []struct {
		mode, name, what string
		n                int
		target           bool
	}{
		{"frame", "Python: one audit event without a syscall (sys._getframe() → \"sys._getframe\"): USDT probe, Python stack walk, audit arguments, 2 records",
			"sys._getframe()", b.opt.n, false},
		{"socket", "Python: one audit event (socket.socket() → \"socket.__new__\"; its socket and close syscalls are not recorded): USDT probe, Python stack walk, audit arguments, 2 records",
			"socket.socket() + close()", b.opt.n / 2, true},
		{"open", "Python: open() → audit event \"open\" + traced openat, each with the Python stack",
			"open(\"/dev/null\") + close()", b.opt.n / 2, false},
	} {
		args := func(reps int) []string {
			return []string{python311, script, mode.mode, strconv.Itoa(mode.n), strconv.Itoa(reps)}
		}
		command := fmt.Sprintf("python3.11 %s %s %d REPS", script, mode.mode, mode.n)
		var syscalls []string
		if mode.mode == "open" {
			syscalls = []string{"openat"}
		}
		rr := &recvRun{}
		cfg := receiverConfig([]ebpfreceiver.TargetConfig{{Name: "bench-py", Executable: python311}}, syscalls)
		v, reps, warn, err := b.compare([]string{python311}, args, nil, noopUprobe(python311, "python:audit", floorOpts), withReceiver(rr, cfg))
		if err != nil {
			b.skip(secCall, mode.name, command, err.Error())
			continue
		}
		b.warn = warn
		base, floor, cost := v[0], v[1]-v[0], v[2]-v[0]
		ops := mode.n * reps
		if mode.mode == "frame" {
			if floorValid(floor, base) {
				cleanFloor = floor
			}
			b.add(result{section: secFloor, name: "no-op program on CPython's audit USDT probe (semaphore set), per audit event",
				command: command + ", a no-op BPF program at python:audit (file offset from .note.stapsdt of " + python311 + ", RefCtrOffset = its semaphore), minus the run without",
				value: fmt.Sprintf("%.2f µs (sys._getframe() without probe: %.2f µs; the probe site is a 1-byte nop, which the kernel emulates after the trap instead of single-stepping it, and the semaphore makes CPython build the event's arguments)",
					floor/1000, base/1000), ratio: "1.00 (floor)", target: "-", verdict: "measured"})
		}
		ref, refNote, valid := floor, fmt.Sprintf("floor here %.2f µs", floor/1000), floorValid(floor, base)
		if mode.mode != "frame" && cleanFloor > 0 {
			ref, refNote, valid = cleanFloor, fmt.Sprintf("floor %.2f µs, from sys._getframe(); the no-op probe measured in this mode: %.2f µs", cleanFloor/1000, floor/1000), true
		}
		ratio := cost / ref
		target, vd, rt := "-", "measured", ratioText(cost, ref, valid)
		if mode.target {
			target = "≤ 2.0 × floor (the Go call's target; none was set for Python)"
			vd = judge(valid, ratio <= 2.0, fmt.Sprintf("the floor is one cheap trap (a nop); the audit program runs %.1f µs per event (in-BPF time): it walks the Python stack in the kernel (up to 96 frames), decodes the event's arguments one level deep and writes two records (stack, audit event)", rr.uprobePerOp(ops)/1000))
		}
		if mode.mode == "open" && valid {
			rt += " (includes the traced openat, which the floor does not)"
		}
		if rr.records == 0 {
			vd = "missed: the receiver recorded nothing: Python audit events are not instrumented in this build"
		}
		b.add(result{section: secCall, name: mode.name,
			command: command + " under the ebpf receiver (executable " + python311 + ", python.audit: true" + map[bool]string{true: ", syscalls: [openat]"}[syscalls != nil] + ")",
			value: fmt.Sprintf("%.2f µs (%s; audit program time %.2f µs; %d records, %d spans of %d × %s)", cost/1000, refNote,
				rr.uprobePerOp(ops)/1000, rr.records, rr.spans.spans.Load(), ops, mode.what),
			ratio: rt, target: target, verdict: vd})
	}
}
