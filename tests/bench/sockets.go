package main

// Section 2b, socket I/O: what a traced send costs (the sys_exit program finds the fd's socket,
// reads its addresses and writes a record) against the no-op tracepoint floor, and what an
// untraced process's send costs with socket I/O on and off: every I/O syscall of every process
// on the machine now looks its process up, as the syscalls in `syscalls` always did.

import (
	"fmt"
	"strconv"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver"
)

func (b *bench) socketOverhead() {
	goTarget := b.path("target")
	n := b.opt.n / 4
	args := func(reps int) []string {
		return []string{goTarget, "-mode", "send", "-n", strconv.Itoa(n), "-reps", strconv.Itoa(reps)}
	}
	traced := receiverConfig([]ebpfreceiver.TargetConfig{{Name: "bench", Executable: goTarget}}, nil)
	// Untraced: the receiver traces another program; the target's sends only pass the filter.
	other := []ebpfreceiver.TargetConfig{{Name: "other", Executable: "/bin/true"}}
	untracedOff := receiverConfig(other, []string{"connect", "accept", "execve", "openat"})
	untracedOff.Sockets.Enabled = false
	untracedOn := receiverConfig(other, []string{"connect", "accept", "execve", "openat"})
	rr, offRun, onRun := &recvRun{}, &recvRun{}, &recvRun{}
	v, reps, _, err := b.compare(nil, args, nil, noopTracepoints, withReceiver(rr, traced),
		withReceiver(offRun, untracedOff), withReceiver(onRun, untracedOn))
	if err != nil {
		fail("socket overhead", err)
	}
	base, floor, cost, off, on := v[0], v[1]-v[0], v[2]-v[0], v[3]-v[0], v[4]-v[0]
	ops := n * reps
	valid := floorValid(floor, base)
	b.add(result{section: secFloor, name: "no-op raw tracepoints on sys_enter + sys_exit, per 64-byte UDP send (2 hits)",
		command: "target -mode send with no-op programs, minus the run without",
		value:   fmt.Sprintf("%.2f µs (send without: %.2f µs)", floor/1000, base/1000), ratio: "1.00 (floor)", target: "-", verdict: "measured"})
	b.add(result{section: secSyscall, name: "traced send on a socket: fd → socket, peer/local address, netns, a 120-byte record → `send` aggregate",
		command: "target -mode send under the ebpf receiver (sockets: defaults; syscalls: none)",
		value: fmt.Sprintf("%.2f µs; in-BPF time %.2f µs per send (%d records of %d sends; %d spans)",
			cost/1000, rr.tracepointPerOp(ops)/1000, rr.records, ops, rr.spans.spans.Load()),
		ratio: ratioText(cost, floor, valid), target: "≤ 2.0 × floor",
		verdict: judge(valid, cost/floor <= 2.0, "the sys_exit program walks task → files → fdtable → file → socket → sock (CO-RE reads) and copies one record per send into the ring buffer")})
	ratio := "-"
	if off > 0 {
		ratio = fmt.Sprintf("%.2f", on/off)
	}
	// Wall-clock differences of a few tens of ns drown in a shared machine's noise; the kernel's
	// run statistics of the receiver's programs do not (they include every process's syscalls
	// during the run, which is the cost that matters: each untraced read and write now looks its
	// process up).
	onBPF, offBPF := onRun.tracepointPerOp(ops), offRun.tracepointPerOp(ops)
	b.add(result{section: secSyscall, name: "untraced process's send: socket I/O on vs off (today's syscall filter)",
		command: "target -mode send, not a target, under the ebpf receiver with sockets.enabled true and false (syscalls: the default four)",
		value: fmt.Sprintf("on %.2f µs, off %.2f µs per send (floor %.2f µs); in-BPF time on %.0f ns, off %.0f ns per send",
			on/1000, off/1000, floor/1000, onBPF, offBPF),
		ratio: ratio, target: "in-BPF time on ≤ off + 100 ns (one process lookup)",
		verdict: judge(true, onBPF-offBPF <= 100, "an untraced write now pays the process lookup that the syscalls in `syscalls` always paid; nothing else")})
}
