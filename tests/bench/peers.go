package main

// Section 8 (-only peers, after hits and load): the peer a user would compare with, OpenTelemetry
// eBPF Instrumentation (OBI, formerly Grafana Beyla). It is measured on the same workload when it
// can be fetched here; otherwise this run's numbers are set against its published figures, the
// traps converted through the probe floor (a uprobe hit costs about 1 µs on bare metal, this
// run's floor on this machine).

import (
	"fmt"
	"os/exec"
	"strings"
	"time"
)

const (
	// OBI's published figures (its documentation's performance page): about 0.5% of a core at
	// about 75 HTTP requests per second, about 500 ns of probe time per request, on bare metal.
	peerName         = "OpenTelemetry eBPF Instrumentation (OBI, formerly Grafana Beyla)"
	peerRate         = 75.0
	peerCore         = 0.005
	peerProbeNs      = 500.0
	bareMetalTrapNs  = 1000.0 // a uprobe hit on bare metal (Section 1 measures this machine's)
	peerFetchTimeout = 90 * time.Second
)

// peerModules are where OBI's collector could come from on a machine that reaches only the Go
// module proxy, Debian and npm.
var peerModules = []string{"go.opentelemetry.io/obi@latest", "github.com/grafana/beyla/v2@latest", "github.com/grafana/beyla@latest"}

func (b *bench) peers() {
	var tried []string
	for _, m := range peerModules {
		ctx, cancel := timeout(peerFetchTimeout)
		cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", m)
		cmd.Dir = b.dir
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			tried = append(tried, m+": served (measuring it on this workload is not built yet: its BPF objects are generated at build time, not in the module)")
			continue
		}
		tried = append(tried, m+": "+peerFetchError(string(out)))
	}
	b.add(result{section: secPeers, name: peerName + " on this machine",
		command: "go mod download -json " + strings.Join(peerModules, ", ") + " (npm and Debian carry no OBI package)",
		value:   "not measured: " + strings.Join(tried, "; "), ratio: "-", target: "-", verdict: "-"})

	// Probe time per request: OBI's ~500 ns against the receiver's in-BPF time per benign request
	// of the demo agent (section 3). The traps come on top for both; converted to bare metal.
	if b.bpfNsPerRequest > 0 {
		b.add(result{section: secPeers, name: "probe time per request against OBI's published ~500 ns (bare metal)",
			command: "section 3: the receiver's uprobe programs' in-BPF time per benign request of the demo agent (a model call with tools, the tool's work, the reply), this machine",
			value: fmt.Sprintf("%.1f µs in BPF per request here (%.1f uprobe hits); traps on bare metal about %.0f µs more (%.1f hits × ~1 µs)",
				b.bpfNsPerRequest/1000, b.hitsPerRequest, b.hitsPerRequest*bareMetalTrapNs/1000, b.hitsPerRequest),
			ratio:   fmt.Sprintf("%.1f", b.bpfNsPerRequest/peerProbeNs),
			target:  "-",
			verdict: "compared: a demo request is a whole agent step (an inference over TLS with its body parsed, a tool call, syscalls with stacks), OBI's an HTTP request's timing; in-BPF time on this VM is inflated by page-table isolation (section 2d)"})
	}
	// CPU: the added CPU at the fixed rate (section 4) scaled to OBI's rate: the idle part stays,
	// the per-request part scales, and its traps are converted from this run's floor to ~1 µs.
	if b.fixedAddedCore > 0 && b.uprobeFloorNs > 0 && b.hitsPerRequest > 0 && b.fixedRate > 0 {
		perReq := (b.fixedAddedCore - b.fixedIdleCore) / b.fixedRate // core-seconds per request
		traps := b.hitsPerRequest * b.uprobeFloorNs / 1e9
		bare := b.fixedIdleCore + (max(perReq-traps, 0)+b.hitsPerRequest*bareMetalTrapNs/1e9)*peerRate
		b.add(result{section: secPeers, name: "added CPU at OBI's ~75 req/s against its published ~0.5% of a core (bare metal)",
			command: fmt.Sprintf("section 4's added CPU at %.0f req/s (collector + probes, idle %.2f%%) per request, the traps converted from this run's floor %.2f µs to ~1 µs, × 75 req/s + idle", b.fixedRate, 100*b.fixedIdleCore, b.uprobeFloorNs/1000),
			value:   fmt.Sprintf("%.2f%% of a core estimated (here, unconverted: %.2f%%)", 100*bare, 100*(b.fixedIdleCore+perReq*peerRate)),
			ratio:   fmt.Sprintf("%.1f", bare/peerCore),
			target:  "-",
			verdict: "estimated: the collector's user-space work is not converted (it would be faster on bare metal too); OBI builds no stories and parses no LLM bodies"})
	}
}

// peerFetchError is the go command's reason in one short line.
func peerFetchError(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), `"Error": `); ok {
			v = strings.Trim(strings.TrimSuffix(v, ","), `"`)
			switch {
			case strings.Contains(v, "403 Forbidden"):
				return "refused by the module proxy (403)"
			case strings.Contains(v, "no such host"):
				return "its import path does not resolve here (no such host)"
			}
			return firstLine(v)
		}
	}
	return firstLine(out)
}
