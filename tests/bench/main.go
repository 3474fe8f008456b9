// Command bench runs AgentTrail's benchmarks on this machine and writes BENCHMARKS.md: the cost of
// a bare uprobe trap and tracepoint hit; the cost per instrumented Go, native and Python call,
// SSL_write, SSL_read, syscall event and MCP call over stdio as a ratio to that floor; the
// requests per second of Go, Python (http.client and asyncio) and Node LLM clients with the
// receiver off and on; the probe hits one request of the demo
// agent takes; the demo agent under load with the collector off and on; the user-space
// pipeline's throughput; the time from an attack's outbound connect to its finding at the
// exporter; the exporters' throughput; the collector's memory under load. Every ratio compares
// numbers measured in the same run.
//
// Usage (make bench does this): go run ./tests/bench -out BENCHMARKS.md
// While developing: go run ./tests/bench -quick -only hits,load -out /tmp/BENCHMARKS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// result is one row of BENCHMARKS.md.
type result struct {
	section, name, command, value, ratio, target, verdict string
}

// options are the command line.
type options struct {
	out         string
	n, reps     int
	collector   string
	loadReps    int
	fixedRate   int
	fixedFor    time.Duration
	satClients  int
	satFor      time.Duration
	hitRequests int
	attacks     int
	llmRequests int
	benchtime   string
	benchCount  int
	only        map[string]bool
	quick       bool
	keepTemp    bool
}

type bench struct {
	opt     options
	dir     string
	started time.Time
	results []result

	// Shared between sections.
	uprobeFloorNs   float64  // section 1: a bare no-op uprobe hit
	bank            *bankRig // sections 3, 4, 6: the bank demo, started once
	spansPerEvent   float64  // section 3: spans per ring-buffer record of the demo agent
	hitsPerRequest  float64  // section 3: uprobe hits per benign request
	bpfNsPerRequest float64  // section 3: the uprobe programs' in-BPF ns per benign request
	fixedAddedCore  float64  // section 4: added CPU (collector + probes) at the fixed rate, in cores
	fixedIdleCore   float64  // section 4: the collector's CPU when idle, in cores
	fixedRate       float64  // section 4: the fixed rate, requests per second
	warn            string   // set while the rows being added were measured under interference
	loadNote        string   // section 4: repetitions left out
}

// sections in the order they run; -only takes a comma-separated subset.
var sections = []string{"overhead", "python", "tls", "llm", "llmsdk", "syscalls", "sockets", "tax", "discovery", "mcp", "hits", "load", "peers", "latency", "gobench", "memory"}

func main() {
	var o options
	var only string
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "file to write")
	flag.IntVar(&o.n, "n", 20000, "operations per repetition of the overhead measurements")
	flag.IntVar(&o.reps, "reps", 9, "repetitions of each overhead variant in all, split over 3 interleaved runs (the median is reported)")
	flag.StringVar(&o.collector, "collector", "_build/otelcol-agenttrail", "built collector (make build)")
	flag.IntVar(&o.loadReps, "load-reps", 2, "repetitions of each load phase, collector off and on alternating")
	flag.IntVar(&o.fixedRate, "rate", 20, "requests per second of the fixed-rate load phase")
	flag.DurationVar(&o.fixedFor, "rate-for", 20*time.Second, "duration of the fixed-rate load phase")
	flag.IntVar(&o.satClients, "clients", 4, "concurrent clients of the saturation phase")
	flag.DurationVar(&o.satFor, "sat-for", 15*time.Second, "duration of the saturation phase")
	flag.IntVar(&o.hitRequests, "hit-requests", 30, "benign requests counted for the probe hits per request")
	flag.IntVar(&o.attacks, "attacks", 30, "attacks per story-latency variant")
	flag.IntVar(&o.llmRequests, "llm-requests", 1000, "requests per timed bench command of the LLM clients")
	flag.StringVar(&o.benchtime, "benchtime", "2s", "go test -benchtime of the Go benchmarks")
	flag.IntVar(&o.benchCount, "count", 3, "go test -count of the Go benchmarks (the median is reported)")
	flag.StringVar(&only, "only", "", "comma-separated sections to run: "+strings.Join(sections, ","))
	flag.BoolVar(&o.quick, "quick", false, "small sizes for a quick check of the harness (numbers are not meaningful)")
	flag.BoolVar(&o.keepTemp, "keep", false, "keep the temporary folder (logs, configs) and print where it is")
	flag.Parse()
	if o.quick {
		o.n, o.reps, o.loadReps = 2000, 3, 1
		o.fixedFor, o.satFor = 5*time.Second, 4*time.Second
		o.hitRequests, o.attacks = 9, 6
		o.llmRequests = 100
		o.benchtime, o.benchCount = "200ms", 1
	}
	if only != "" {
		o.only = map[string]bool{}
		for _, s := range strings.Split(only, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(sections, s) {
				fail("-only", fmt.Errorf("unknown section %q (known: %s)", s, strings.Join(sections, ", ")))
			}
			o.only[s] = true
		}
	}
	if os.Geteuid() != 0 {
		fail("start", fmt.Errorf("the benchmarks load eBPF programs: run as root"))
	}
	dir, err := os.MkdirTemp("", "agenttrail-bench-")
	if err != nil {
		fail("temp dir", err)
	}
	b := &bench{opt: o, dir: dir, started: time.Now(), spansPerEvent: 0.5}
	defer func() {
		b.close()
		if o.keepTemp {
			fmt.Println("kept", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()

	b.build("Go target", "go", "build", "-o", b.path("target"), "./tests/bench/target")
	b.build("C target", "gcc", "-O1", "-g", "-fno-omit-frame-pointer", "-o", b.path("ctarget"), "tests/bench/ctarget/target.c")

	run := func(name string, f func()) {
		if o.only != nil && !o.only[name] {
			return
		}
		t0 := time.Now()
		fmt.Printf("== %s\n", name)
		f()
		fmt.Printf("== %s took %s\n", name, time.Since(t0).Round(time.Second))
	}
	run("overhead", b.probeOverhead)
	run("python", b.pythonOverhead)
	run("tls", func() {
		for _, c := range sslCalls {
			b.sslOverhead(c)
		}
	})
	run("llm", b.llmThroughput)
	run("llmsdk", b.llmSDKThroughput)
	run("syscalls", b.syscallOverhead)
	run("sockets", b.socketOverhead)
	run("tax", b.nodeTax)
	run("discovery", b.discoveryCost)
	run("mcp", b.mcpOverhead)
	run("hits", b.probeHits)
	run("load", b.agentLoad)
	run("peers", b.peers)
	run("latency", b.storyLatency)
	run("gobench", b.goBenchmarks)
	run("memory", b.collectorMemory)
	if err := b.write(o.out); err != nil {
		fail("write "+o.out, err)
	}
	fmt.Printf("wrote %s in %s\n", o.out, time.Since(b.started).Round(time.Second))
}

func (b *bench) path(name string) string { return filepath.Join(b.dir, name) }

func (b *bench) close() {
	if b.bank != nil {
		b.bank.stop()
	}
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

func (b *bench) add(r result) {
	if b.warn != "" {
		r.verdict = b.warn + "; " + r.verdict
	}
	fmt.Printf("%-26s %-72s %s  ratio %s  %s\n", r.section, r.name, r.value, r.ratio, r.verdict)
	b.results = append(b.results, r)
}

// skip records a measurement that could not be made, and why.
func (b *bench) skip(section, name, command, why string) {
	b.add(result{section: section, name: name, command: command, value: "not measured: " + why, ratio: "-", target: "-", verdict: "-"})
}

// floorValid says whether a floor stands out of the noise of the operation it was measured
// on: a floor at or below zero, or under 5% of the operation's own time, is noise.
func floorValid(floor, base float64) bool { return floor > 0 && floor >= 0.05*base }

// judge is the verdict on a ratio to a floor: "not measured" when the floor is noise.
func judge(valid, ok bool, why string) string {
	if !valid {
		return "not measured: the floor is within the noise of the operation in this run (a busy machine); run again on a quiet one"
	}
	return verdict(ok, why)
}

// ratioText is cost ÷ floor, or n/a when the floor is noise.
func ratioText(cost, floor float64, valid bool) string {
	if !valid {
		return fmt.Sprintf("n/a (floor %.2f µs is noise)", floor/1000)
	}
	return fmt.Sprintf("%.2f", cost/floor)
}

func verdict(ok bool, why string) string {
	if ok {
		return "met"
	}
	return "missed: " + why
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(sorted))*p)) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

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

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// timeout is a context bounded by d, for one section's requests.
func timeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
