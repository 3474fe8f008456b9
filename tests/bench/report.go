package main

// BENCHMARKS.md: the machine, a summary of the targets, then one table per section with the
// command behind every number.

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

const (
	secFloor     = "1. Probe floor"
	secCall      = "2. Per instrumented call"
	secSyscall   = "2b. Per syscall event"
	secLLM       = "2c. LLM client throughput"
	secTax       = "2d. Node-wide syscall tax"
	secHits      = "3. Probe hits per agent request"
	secLoad      = "4. The agent under load, collector off and on"
	secPipeline  = "5. User-space pipeline"
	secMemory    = "5b. Collector memory"
	secLatency   = "6. Story latency"
	secExporters = "7. Exporters"
	secPeers     = "8. Peers"
	secOther     = "Other component benchmarks"
)

var sectionOrder = []string{secFloor, secCall, secSyscall, secLLM, secTax, secHits, secLoad, secPipeline, secMemory, secLatency, secExporters, secPeers, secOther}

var sectionIntro = map[string]string{
	secFloor: "What the hooks cost with a BPF program that does nothing: the floor every ratio below is taken against. " +
		"Each is (run with the no-op program − run with nothing attached) per operation.",
	secCall: "Each target times its own operations with nothing attached (baseline), with a no-op program on the same hook (floor) " +
		"and under the AgentTrail receiver running in the harness's process with its default configuration (TLS and Python support on). " +
		"Value: (receiver − baseline) per operation; ratio: that ÷ (floor − baseline). The receiver's user-space work runs on " +
		"another thread and is not in these numbers (it is in sections 4 and 5).",
	secSyscall: "Ratio to the floor of sys_enter + sys_exit raw tracepoints with a no-op program, per openat + close (4 tracepoint hits).",
	secLLM: "An LLM client making chat-completion requests one after the other on one keep-alive connection (the asyncio client: " +
		"several at a time on a pool of them) to the mock model " +
		"(tests/workloads/mock-model: Go, HTTPS, no artificial delay) on loopback, with nothing attached (off) and under the AgentTrail " +
		"receiver running in the harness's process with its default configuration (on: TLS plaintext probes, Python support, " +
		"syscalls connect, accept, execve, openat). Each run starts the client, attaches (or not), sends warm-up requests, then times " +
		"the command \"bench N\" (N requests) repeatedly; off and on runs alternate, and each value is the median over runs of each run's median. " +
		"Ratio: on ÷ off. The receiver's user-space work (parsing every exchange into an inference span) shares the machine's cores " +
		"with the client and the model, so it is in these numbers. Inference spans per request (spans with gen_ai.provider.name, " +
		"warm-up included) check that every request was seen.",
	secTax: "The syscall programs hook either the per-syscall tracepoints (syscalls:sys_enter_openat, ...) of only the syscalls the configuration needs " +
		"(syscall_attach: tracepoint, the default's choice where tracefs is there) or, as the fallback, the sys_enter and sys_exit raw tracepoints, " +
		"which every syscall of every process on the node runs, traced or not. " +
		"An untraced C program (tests/bench/taxtarget) times its own syscalls (its thread's CPU time, so that the other work of a busy machine is not counted) with nothing attached (off), with no-op programs on the two raw " +
		"tracepoints (the raw hook's own cost: the syscall's slow path and the program call), with no-op programs on the per-syscall tracepoints the receiver attaches, " +
		"and under the receiver with its default configuration tracing another program (on), once with syscall_attach: raw and once with tracepoint, interleaved in the same runs. " +
		"Ratio: on ÷ off. The in-BPF rows are the kernel's run " +
		"statistics of the receiver's sys_enter* and sys_exit* programs, in runs of their own with a no-op program beside them on the same " +
		"hooks, whose time per run (the statistics' clock reads) is subtracted, times the runs the operation makes on that path: what the programs themselves cost per untraced syscall. " +
		"The last row is a traced process's openat on both paths.",
	secHits: "A count that is the same on every machine: what one benign request of the demo agent makes the kernel do. " +
		"Uprobe hits are the runs of the receiver's uprobe programs (kernel BPF run statistics) during the requests, ÷ requests; " +
		"the trap floor is hits × this run's bare uprobe hit.",
	secLoad: "The bank demo (Go customer-agent, mock model over HTTPS, exfil sink; tests/workloads/bank) on loopback, with the built " +
		"collector off and on (distribution config.yaml, OTLP/HTTP export to an OTLP endpoint in the harness). The load client is the " +
		"harness (Env.Chat's request on a keep-alive client, a new session per request). The agent runs as bench-agent and the " +
		"collector's targets select it by pid, so that no other collector on the machine (which selects process_name customer-agent) traces it; " +
		"a repetition during which another process had uprobes on the agent is left out. Ratio: on ÷ off. " +
		"CPU is the agent's (probe traps are charged to it) and the collector's, from /proc/<pid>/stat.",
	secPipeline: "Events per second on one core through the collector's user-space stages, from the components' Go benchmarks " +
		"(go test -bench -cpu 1, median of -count runs). The whole-pipeline row sums the stages' per-event times; it is not one chained run.",
	secMemory: "The built collector (ebpf → debug) tracing a Go program's function at 5,000 calls/s.",
	secLatency: "From the attack's outbound connect (and from the story's last span) to its finding at the exporter: the built collector with " +
		"the distribution's config.yaml and OTLP/HTTP export to the harness, which timestamps arrival; times from the exported spans and " +
		"arrival are on the same clock. Percentiles are nearest-rank over the attacks of the run (with 30 attacks, p99 is the slowest).",
	secPeers: "What a user would compare with: OpenTelemetry eBPF Instrumentation (OBI, formerly Grafana Beyla), which publishes about 0.5% of a core " +
		"at about 75 req/s and about 500 ns of probe time per request on bare metal. It is measured on the same workload when it can be fetched here " +
		"(the run tries the Go module proxy; npm and Debian carry no OBI package); otherwise this run's numbers stand against its published ones, " +
		"the uprobe traps converted from this run's floor to about 1 µs, what a hit costs on bare metal. Ratio: ours ÷ OBI's.",
	secExporters: "Go benchmarks on one core (go test -bench -cpu 1, median of -count runs), each to a local endpoint or directory.",
	secOther:     "Stages of the receiver measured alone.",
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
	virt, _ := exec.Command("systemd-detect-virt").Output()
	v := strings.TrimSpace(string(virt))
	if v == "" || v == "none" {
		v = "no virtualization detected"
	} else {
		v = "virtualized (" + v + ")"
	}
	py, _ := exec.Command(python311, "--version").CombinedOutput()
	return fmt.Sprintf("%d CPUs (%s), %.0f GiB RAM, %s, Linux %s, %s, %s", runtime.NumCPU(), model,
		float64(memKBFile("/proc/meminfo", "MemTotal"))/1024/1024, v, strings.TrimSpace(string(kernel)), runtime.Version(),
		strings.TrimSpace(string(py)))
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func (b *bench) write(path string) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# Benchmarks\n\nWritten by `make bench` (`go run ./tests/bench %s`) on %s; the run took %s.\n\n",
		strings.Join(os.Args[1:], " "), b.started.UTC().Format("2006-01-02 15:04 UTC"), time.Since(b.started).Round(time.Second))
	fmt.Fprintf(&sb, "Machine: %s. Load average at the end of the run: %s.\n\n", machine(), loadavg())
	sb.WriteString("Every ratio compares numbers measured in this run. Traps are slow on virtual machines (a uprobe hit costs " +
		"10–20 µs here, against about 1 µs on bare metal), so absolute numbers only compare within one run; the counts of " +
		"section 3 are the same on every machine. Rows marked *missed* say why; nothing is rounded away.\n\n")

	sb.WriteString("## Targets\n\n| target | measurement | value | ratio | verdict |\n|---|---|---|---|---|\n")
	for _, r := range b.sorted() {
		if r.target == "-" || r.target == "" {
			continue
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s |\n", cell(r.target), cell(r.name), cell(r.value), cell(r.ratio), cell(r.verdict))
	}
	section := ""
	for _, r := range b.sorted() {
		if r.section != section {
			section = r.section
			fmt.Fprintf(&sb, "\n## %s\n\n%s\n\n| measurement | command | value | ratio | target | verdict |\n|---|---|---|---|---|---|\n", section, sectionIntro[section])
		}
		fmt.Fprintf(&sb, "| %s | `%s` | %s | %s | %s | %s |\n", cell(r.name), cell(strings.ReplaceAll(r.command, "`", "'")), cell(r.value), cell(r.ratio), cell(r.target), cell(r.verdict))
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

// sorted is the results in section order, each section's rows in the order they were measured.
func (b *bench) sorted() []result {
	var out []result
	for _, s := range sectionOrder {
		for _, r := range b.results {
			if r.section == s {
				out = append(out, r)
			}
		}
	}
	return out
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
