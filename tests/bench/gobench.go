package main

// Sections 5 and 7 and the component benchmarks: the components' Go benchmarks, run with
// go test -bench on one core (-cpu 1), the median of -count runs reported; and the pipeline's
// combined time per event, composed from its stages' benchmarks.

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

type benchRow struct {
	bench, metric, name, key, target, why string
	meets                                 func(float64) bool
}

type goBench struct {
	section, pkg, pattern, benchtime string
	count                            int
	rows                             []benchRow
}

func atLeast(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
func atMost(n float64) func(float64) bool  { return func(v float64) bool { return v <= n } }

func goBenchList() []goBench {
	return []goBench{
		{section: secPipeline, pkg: "./receiver/ebpfreceiver/", pattern: "BenchmarkPipeline$", rows: []benchRow{
			{bench: "BenchmarkPipeline", metric: "events/s", key: "receiver", name: "receiver user space: ring-buffer records → decode, redact, span build, flush (2 records per span)"}}},
		{section: secPipeline, pkg: "./processor/k8sattributionprocessor/", pattern: "BenchmarkProcessWarm$", rows: []benchRow{
			{bench: "BenchmarkProcessWarm", metric: "spans/s", key: "k8s", name: "k8sattribution processor, warm cache (100 processes × 10 spans per batch)"}}},
		{section: secPipeline, pkg: "./processor/attackstoryprocessor/", pattern: "BenchmarkThroughput$", rows: []benchRow{
			{bench: "BenchmarkThroughput", metric: "spans/s", key: "story", name: "attackstory processor: buffering, completion, rules, findings (9 benign : 1 attack stories) → no-op consumer"}}},
		{section: secLatency, pkg: "./processor/attackstoryprocessor/", pattern: "BenchmarkFindingLatency$", benchtime: "1000x", count: 1, rows: []benchRow{
			{bench: "BenchmarkFindingLatency", metric: "p50-ms", name: "attackstory processor alone, 5,000 spans/s, completion_grace 200ms: story's last span → finding leaving the processor, p50 (ms)"},
			{bench: "BenchmarkFindingLatency", metric: "p99-ms", name: "the same, p99 (ms)", target: "p99 ≤ 1 s", meets: atMost(1000), why: "see the processor's completion logic"}}},
		{section: secExporters, pkg: "./exporter/splunkhecexporter/", pattern: "BenchmarkExportTraces$", rows: []benchRow{
			{bench: "BenchmarkExportTraces/gzip", metric: "spans/s", name: "Splunk HEC exporter → local HEC endpoint, gzip (the default; 10,000 spans per call)", target: "≥ 50,000 spans/s", meets: atLeast(50000), why: "see the benchmark"},
			{bench: "BenchmarkExportTraces/uncompressed", metric: "spans/s", name: "Splunk HEC exporter → local HEC endpoint, disable_compression: true"}}},
		{section: secExporters, pkg: "./exporter/sentinelexporter/", pattern: "BenchmarkExportTraces$", rows: []benchRow{
			{bench: "BenchmarkExportTraces", metric: "spans/s", name: "Microsoft Sentinel exporter → local Logs Ingestion endpoint (TLS, gzip; 10,000 spans per call)"}}},
		{section: secExporters, pkg: "./tests/bench/", pattern: "BenchmarkEvidenceExport$", rows: []benchRow{
			{bench: "BenchmarkEvidenceExport/fsync=true", metric: "spans/s", name: "evidence exporter → archive, fsync per batch (default; 100 stories × 8 spans per call)"},
			{bench: "BenchmarkEvidenceExport/fsync=false", metric: "spans/s", name: "evidence exporter → archive, no fsync"}}},
		{section: secExporters, pkg: "./exporter/evidenceexporter/archive/", pattern: "BenchmarkAppend$", rows: []benchRow{
			{bench: "BenchmarkAppend/fsync=on/batch=64", metric: "records/s", name: "evidence archive append, 2 KiB records, fsync on, batches of 64"},
			{bench: "BenchmarkAppend/fsync=on/batch=1", metric: "records/s", name: "evidence archive append, fsync on, one record per batch"},
			{bench: "BenchmarkAppend/fsync=off/batch=64", metric: "records/s", name: "evidence archive append, fsync off, batches of 64"},
			{bench: "BenchmarkAppend/fsync=off/batch=1", metric: "records/s", name: "evidence archive append, fsync off, one record per batch"}}},
		{section: secExporters, pkg: "./exporter/evidenceexporter/archive/", pattern: "BenchmarkVerify$", rows: []benchRow{
			{bench: "BenchmarkVerify", metric: "records/s", name: "evidence archive verify (20,000 × 2 KiB records: hash chain and signatures)"},
			{bench: "BenchmarkVerify", metric: "MB/s", name: "evidence archive verify, bytes"}}},
		{section: secOther, pkg: "./processor/attackstoryprocessor/", pattern: "BenchmarkManyInFlight$", benchtime: "3000x", rows: []benchRow{
			{bench: "BenchmarkManyInFlight", metric: "ns/op", name: "attackstory processor, one busy process with 1,000 stories in flight, each with a span stitching must place: one request in and an emit (ns per request)"}}},
		{section: secOther, pkg: "./receiver/ebpfreceiver/internal/llm/", pattern: "BenchmarkParse$", rows: []benchRow{
			{bench: "BenchmarkParse", metric: "ns/op", name: "LLM exchange parse (OpenAI chat completion with tool calls, request and response; ns per exchange)"}}},
		{section: secOther, pkg: "./receiver/ebpfreceiver/internal/spans/", pattern: "BenchmarkBuildCalls$", rows: []benchRow{
			{bench: "BenchmarkBuildCalls", metric: "events/s", name: "span builder alone"}}},
		{section: secOther, pkg: "./receiver/ebpfreceiver/internal/symbolize/", pattern: "BenchmarkSymbolizeWarm$", rows: []benchRow{
			{bench: "BenchmarkSymbolizeWarm/go", metric: "ns/op", name: "stack symbolization of a Go program, 10 frames, warm cache (ns per stack)"},
			{bench: "BenchmarkSymbolizeWarm/native_dwarf", metric: "ns/op", name: "stack symbolization of a native program (DWARF), 10 frames, warm cache (ns per stack)"}}},
		{section: secOther, pkg: "./internal/redact/", pattern: "BenchmarkStringDirty$", rows: []benchRow{
			{bench: "BenchmarkStringDirty", metric: "MB/s", name: "redaction of 1 KiB with secrets"}}},
	}
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)

// parseBench returns, per benchmark name, every value of every metric over the runs.
func parseBench(out string) map[string]map[string][]float64 {
	res := map[string]map[string][]float64{}
	for _, line := range strings.Split(out, "\n") {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		if res[m[1]] == nil {
			res[m[1]] = map[string][]float64{}
		}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				res[m[1]][f[i+1]] = append(res[m[1]][f[i+1]], v)
			}
		}
	}
	return res
}

func (b *bench) goBenchmarks() {
	values := map[string]float64{}
	for _, g := range goBenchList() {
		if _, err := os.Stat(g.pkg); err != nil {
			for _, r := range g.rows {
				b.skip(g.section, r.name, g.pkg, "package not found")
			}
			continue
		}
		bt, count := g.benchtime, g.count
		if bt == "" || b.opt.quick {
			bt = b.opt.benchtime
		}
		if count == 0 {
			count = b.opt.benchCount
		}
		cmdline := []string{"go", "test", "-run", "^$", "-bench", g.pattern, "-benchtime", bt, "-count", strconv.Itoa(count), "-cpu", "1", g.pkg}
		fmt.Printf("   %s\n", strings.Join(cmdline, " "))
		out, err := exec.Command(cmdline[0], cmdline[1:]...).CombinedOutput()
		parsed := parseBench(string(out))
		for _, r := range g.rows {
			vals := parsed[r.bench][r.metric]
			if len(vals) == 0 {
				why := "no " + r.metric + " in the output"
				if err != nil {
					why = "failed: " + lastLines(string(out), 2)
				}
				b.skip(g.section, r.name, strings.Join(cmdline, " "), why)
				continue
			}
			v := median(vals)
			if r.key != "" {
				values[r.key] = v
			}
			res := result{section: g.section, name: r.name, command: strings.Join(cmdline, " "),
				value: fmt.Sprintf("%s %s", human(v), r.metric), ratio: "-", target: "-", verdict: "measured"}
			if r.meets != nil {
				res.target, res.verdict = r.target, verdict(r.meets(v), r.why)
			}
			b.add(res)
		}
	}
	b.pipelineTotal(values)
}

// pipelineTotal composes the per-event time of the whole user-space pipeline from its stages:
// the receiver's time per record, plus the processors' time per span times the spans per record.
func (b *bench) pipelineTotal(v map[string]float64) {
	recv, k8s, story := v["receiver"], v["k8s"], v["story"]
	if recv == 0 || k8s == 0 || story == 0 {
		b.skip(secPipeline, "whole pipeline per core", "sum of the stages", "a stage's benchmark did not run")
		return
	}
	spe, src := 0.5, "0.5 spans per record (a function call: entry and return records → one span; BenchmarkPipeline's mix)"
	if b.spansPerEvent > spe {
		spe, src = b.spansPerEvent, fmt.Sprintf("%.2f spans per record (the demo agent, section 3)", b.spansPerEvent)
	}
	perEvent := 1e9/recv + spe*(1e9/k8s+1e9/story)
	eps := 1e9 / perEvent
	b.add(result{section: secPipeline, name: "whole pipeline: record → decode → span → k8sattribution → attackstory → no-op exporter, per core",
		command: fmt.Sprintf("sum of per-event times of the rows above (not one chained run): 1/receiver + %s × (1/k8sattribution + 1/attackstory); the no-op exporter adds nothing", src),
		value:   fmt.Sprintf("%s events/s (%.2f µs per event: receiver %.2f + processors %.2f)", human(eps), perEvent/1000, 1e6/recv, spe*(1e6/k8s+1e6/story)),
		ratio:   "-", target: "≥ 300,000 events/s per core", verdict: verdict(eps >= 300000, "the processors' per-span work (attribution lookups, story buffering and rules) adds to the receiver's decode and span build")})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " / ")
}
