package main

// Section 5, memory: the built collector tracing the Go target at 5,000 calls/s (10,000
// events/s) for 20 s; its resident memory and CPU.

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func (b *bench) collectorMemory() {
	const name = "collector RSS while tracing 5,000 calls/s (10,000 events/s) for 20 s"
	collector, goTarget := b.opt.collector, b.path("target")
	command := "otelcol-agenttrail with receivers::ebpf tracing main.Work of the target (syscalls: [connect], the receiver's defaults otherwise) → debug exporter (sampled); target -rate 5000 -duration 20s"
	if _, err := os.Stat(collector); err != nil {
		b.skip(secMemory, name, command, collector+" not built (run make build)")
		return
	}
	cfg := b.path("collector-memory.yaml")
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
    metrics: {level: none}
  pipelines:
    traces: {receivers: [ebpf], exporters: [debug]}
`, goTarget)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		fail("collector config", err)
	}
	col := exec.Command(collector, "--config="+cfg)
	col.Stdout, col.Stderr = io.Discard, io.Discard
	col.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := col.Start(); err != nil {
		fail("start collector", err)
	}
	defer func() { _ = col.Process.Kill(); _ = col.Wait() }()
	time.Sleep(3 * time.Second)
	duration := 20 * time.Second
	if b.opt.quick {
		duration = 5 * time.Second
	}
	t := exec.Command(goTarget, "-rate", "5000", "-duration", duration.String())
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
	b.add(result{section: secMemory, name: name, command: command,
		value: fmt.Sprintf("RSS %.1f MiB, peak %.1f MiB; collector CPU %.1f%% of one core", float64(rss)/1024, float64(hwm)/1024, 100*cpu.Seconds()/elapsed.Seconds()),
		ratio: "-", target: "RSS < 100 MiB", verdict: verdict(float64(hwm)/1024 < 100, "see a heap profile of the collector")})
}
