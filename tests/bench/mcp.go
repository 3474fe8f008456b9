package main

// Section 2d, MCP over stdio: what the receiver's pipe capture costs per MCP tools/call (the
// sys_exit program finds the fd's pipe, checks its first bytes for JSON-RPC, marks the pipe and
// copies the payload into the ring buffer; tracers/plaintext parses it) against the no-op
// tracepoint floor; and what a traced process writing non-JSON lines on a pipe pays for it.

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver"
)

// mcpCallCounter counts the receiver's spans and, of them, the MCP tools/call spans.
type mcpCallCounter struct{ spans, calls atomic.Int64 }

func (c *mcpCallCounter) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }
func (c *mcpCallCounter) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	c.spans.Add(int64(td.SpanCount()))
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j).Spans()
			for k := 0; k < ss.Len(); k++ {
				if v, ok := ss.At(k).Attributes().Get("mcp.method.name"); ok && v.AsString() == "tools/call" {
					c.calls.Add(1)
				}
			}
		}
	}
	return nil
}

func (b *bench) mcpOverhead() {
	exe := b.path("mcptarget")
	if out, err := runCmd("go", "build", "-o", exe, "./tests/bench/mcptarget"); err != nil {
		b.skip(secSyscall, "MCP tools/call over stdio", "go build ./tests/bench/mcptarget", firstLine(out))
		return
	}
	traced := []ebpfreceiver.TargetConfig{{Name: "bench-mcp", Executable: exe}}
	withCapture := func(targets []ebpfreceiver.TargetConfig, capture int) *ebpfreceiver.Config {
		cfg := receiverConfig(targets, nil)
		cfg.Sockets.CaptureBytes = capture
		return cfg
	}
	capOn := withCapture(traced, ebpfreceiver.NewFactory().CreateDefaultConfig().(*ebpfreceiver.Config).Sockets.CaptureBytes)

	// MCP calls: each is a request written by the client and read by the server, a response
	// written by the server and read by the client, and the Go runtime's own syscalls around them.
	calls := max(50, b.opt.n/40)
	mcpArgs := func(reps int) []string {
		return []string{exe, "-mode", "mcp", "-n", strconv.Itoa(calls), "-reps", strconv.Itoa(reps)}
	}
	offRun, onRun := &recvRun{}, &recvRun{}
	counter := &mcpCallCounter{}
	onRun.next = counter
	v, reps, _, err := b.compare(nil, mcpArgs, nil, noopTracepoints,
		withReceiver(offRun, withCapture(traced, 0)), withReceiver(onRun, capOn))
	if err != nil {
		b.skip(secSyscall, "MCP tools/call over stdio", "tests/bench/mcptarget -mode mcp", err.Error())
	} else {
		base, floor, off, on := v[0], v[1]-v[0], v[2]-v[0], v[3]-v[0]
		ops := calls * reps
		capture := on - off
		// A call takes milliseconds of two processes' scheduling: the capture's wall-clock cost
		// can drown in that noise (then it is no ratio); the in-BPF time difference cannot.
		valid := floorValid(floor, base) && capture > 0
		b.add(result{section: secFloor, name: "no-op raw tracepoints on sys_enter + sys_exit, per MCP tools/call over stdio pipes (client and server processes)",
			command: "mcptarget -mode mcp with no-op programs, minus the run without",
			value:   fmt.Sprintf("%.2f µs (call without: %.2f µs)", floor/1000, base/1000), ratio: "1.00 (floor)", target: "-", verdict: "measured"})
		b.add(result{section: secSyscall, name: "MCP tools/call over stdio (Go SDK client and server): pipe read/write capture on vs off (sockets.capture_bytes 4096 vs 0)",
			command: fmt.Sprintf("tests/bench/mcptarget -mode mcp (%d echo tools/call per repetition, after initialize and tools/list) under the ebpf receiver, target executable mcptarget (the client and the server it spawns), sockets.capture_bytes %d and 0; cost = on − off", calls, capOn.Sockets.CaptureBytes),
			value: fmt.Sprintf("capture %.2f µs per call (receiver with capture: +%.2f µs, without: +%.2f µs over nothing attached); in-BPF tracepoint time on %.2f µs, off %.2f µs per call (every process's syscalls during the run); %.2f tools/call spans per call (%d of %d); %d records, %d spans",
				capture/1000, on/1000, off/1000, onRun.tracepointPerOp(ops)/1000, offRun.tracepointPerOp(ops)/1000,
				float64(counter.calls.Load())/float64(ops), counter.calls.Load(), ops, onRun.records, counter.spans.Load()),
			ratio: ratioText(capture, floor, valid), target: "≤ 2.0 × floor",
			verdict: judge(valid, capture/floor <= 2.0, "each of the call's four pipe reads and writes copies up to capture_bytes into the ring buffer and user space parses the JSON-RPC")})
	}

	// A traced process whose pipe carries no JSON-RPC: with capture on, each write looks the
	// pipe up in plain_fds and reads the buffer's first byte, then returns without a record.
	lines := b.opt.n
	pipeArgs := func(reps int) []string {
		return []string{exe, "-mode", "pipe", "-n", strconv.Itoa(lines), "-reps", strconv.Itoa(reps)}
	}
	pOff, pOn := &recvRun{}, &recvRun{}
	v, reps, _, err = b.compare(nil, pipeArgs, nil, noopTracepoints,
		withReceiver(pOff, withCapture(traced, 0)), withReceiver(pOn, withCapture(traced, capOn.Sockets.CaptureBytes)))
	if err != nil {
		b.skip(secSyscall, "traced process's non-JSON pipe write", "tests/bench/mcptarget -mode pipe", err.Error())
		return
	}
	base, floor, off, on := v[0], v[1]-v[0], v[2]-v[0], v[3]-v[0]
	ops := lines * reps
	b.add(result{section: secFloor, name: "no-op raw tracepoints on sys_enter + sys_exit, per 64-byte pipe write (and the draining goroutine's reads)",
		command: "mcptarget -mode pipe with no-op programs, minus the run without",
		value:   fmt.Sprintf("%.2f µs (write without: %.2f µs)", floor/1000, base/1000), ratio: "1.00 (floor)", target: "-", verdict: "measured"})
	onBPF, offBPF := pOn.tracepointPerOp(ops), pOff.tracepointPerOp(ops)
	ratio := "-"
	if off > 0 {
		ratio = fmt.Sprintf("%.2f", on/off)
	}
	b.add(result{section: secSyscall, name: "traced process writing non-JSON lines on a pipe: pipe capture on vs off (sockets.capture_bytes 4096 vs 0)",
		command: "tests/bench/mcptarget -mode pipe, a target, under the ebpf receiver with sockets.capture_bytes 4096 and 0",
		// The records are the process's lifecycle (exec, exit, one per runtime thread that
		// exits): how many land before the receiver stops varies from run to run, on or off.
		// The pipe's own records (sockets.records) must be none either way.
		value: fmt.Sprintf("on %.2f µs, off %.2f µs per write (floor %.2f µs); in-BPF time on %.0f ns, off %.0f ns per write (every process's syscalls during the run: program runs per write on %.2f, off %.2f); %d writes; pipe/socket I/O records on %d, off %d; all records on %d, off %d (exec, exit, thread exits); spans on %d, off %d",
			on/1000, off/1000, floor/1000, onBPF, offBPF, float64(pOn.tpRuns)/float64(ops), float64(pOff.tpRuns)/float64(ops), ops, pOn.sockRecords, pOff.sockRecords, pOn.records, pOff.records, pOn.spans.spans.Load(), pOff.spans.spans.Load()),
		ratio: ratio, target: "in-BPF time on ≤ off + 150 ns, no I/O record",
		verdict: judge(true, onBPF-offBPF <= 150 && pOn.sockRecords == 0 && pOff.sockRecords == 0,
			"with capture on, the sys_exit program of a traced process's pipe write (and the drain's read) looks the pipe up in plain_fds "+
				"and reads the buffer's first byte before it finds no '{' and returns; with capture 0 it returns at the pipe check")})
}
