package main

// Section 6: story latency. The collector runs the distribution's configuration (attackstory in
// alert mode for the demo agent, the findings connector) with an OTLP/HTTP exporter to the
// harness; the bank demo is attacked N times (the prompt injection that exports the customer
// database to the exfil sink), one attack every 300 ms. For each attack the harness takes the
// start of the connect span to the exfil sink and the end of the story's last span from the
// exported spans, and the arrival of its finding at the OTLP endpoint (the findings connector's
// log record), all on this machine's clock.

import (
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/agenttrail/agenttrail/tests/workloads/bank"
)

type latencyVariant struct {
	name, extra string
	target      bool
}

func (b *bench) storyLatency() {
	variants := []latencyVariant{
		{"default configuration (completion_grace 300ms, batch timeout 200ms, no batch for findings)", "", true},
		{"completion_grace: 200ms", "processors:\n  attackstory:\n    completion_grace: 200ms\n", true},
		{"completion_grace: 2s, batch timeout: 1s (slower, fewer exports)", "processors:\n  attackstory:\n    completion_grace: 2s\n  batch:\n    timeout: 1s\n", false},
	}
	rig, err := b.rig()
	if err != nil {
		b.skip(secLatency, "story latency", "bank demo", err.Error())
		return
	}
	sink, err := startSink()
	if err != nil {
		b.skip(secLatency, "story latency", "OTLP sink", err.Error())
		return
	}
	defer sink.close()
	u, err := url.Parse(rig.env.SinkURL)
	if err != nil {
		b.skip(secLatency, "story latency", "exfil sink URL", err.Error())
		return
	}
	for i, v := range variants {
		b.latencyVariant(rig, sink, u, i, v)
	}
}

func (b *bench) latencyVariant(rig *bankRig, sink *otlpSink, exfil *url.URL, idx int, v latencyVariant) {
	command := fmt.Sprintf("%s; %d attacks (bank.AttackMessageTo), one every 300 ms; finding = the findings connector's log record at the harness's OTLP/HTTP endpoint",
		collectorCommand(v.name), b.opt.attacks)
	sink.track(exfil.Hostname(), exfil.Port())
	col, err := b.startCollector(fmt.Sprintf("latency-%d", idx), sink, rig.env.AgentPID, v.extra)
	if err != nil {
		b.skip(secLatency, "story latency, "+v.name, command, err.Error())
		return
	}
	defer col.stop()
	ctx, cancel := timeout(5 * time.Minute)
	defer cancel()
	for i := 0; i < 4; i++ {
		_ = rig.benign(ctx, i)
	}
	time.Sleep(time.Second)
	sent, failed := 0, 0
	var firstErr error
	tick := time.NewTicker(300 * time.Millisecond)
	for i := 0; i < b.opt.attacks; i++ {
		rep, err := rig.chat(ctx, bank.AttackMessageTo(rig.env.UploadURL))
		if err == nil && !slices.ContainsFunc(rep.ToolCalls, func(c bank.ToolCall) bool { return c.Name == "customer-data-export" }) {
			err = fmt.Errorf("the agent did not run the export")
		}
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		} else {
			sent++
		}
		<-tick.C
	}
	tick.Stop()
	// Wait for every finding (grace + two batch timeouts + export), at most 20 s.
	var toConnect, toLast, toSpanFinding []time.Duration
	missing := 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		toConnect, toLast, toSpanFinding, missing = sink.latencies()
		if len(toConnect) >= sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if failed > 0 {
		fmt.Printf("   %d attacks failed, first: %v\n", failed, firstErr)
	}
	if len(toConnect) == 0 {
		b.skip(secLatency, "story latency, "+v.name, command, fmt.Sprintf("no finding arrived for %d attacks (%d failed; %d stories with a connect to the exfil sink but no finding); collector log: %s",
			sent, failed, missing, tail(col.log, 3)))
		return
	}
	count := fmt.Sprintf("%d findings of %d attacks", len(toConnect), sent)
	if missing > 0 || failed > 0 {
		count += fmt.Sprintf("; %d stories without a finding, %d attacks failed", missing, failed)
	}
	b.add(result{section: secLatency, name: v.name + ": outbound connect → finding at the exporter, p50 / p99", command: command,
		value: fmt.Sprintf("%s / %s (%s)", ms(percentile(toConnect, 0.5)), ms(percentile(toConnect, 0.99)), count), ratio: "-", target: "-", verdict: "measured"})
	p99 := percentile(toLast, 0.99)
	r := result{section: secLatency, name: v.name + ": story's last span end → finding at the exporter, p50 / p99", command: "the same run",
		value: fmt.Sprintf("%s / %s (finding on the root span in the traces pipeline: p50 %s)", ms(percentile(toLast, 0.5)), ms(p99), ms(percentile(toSpanFinding, 0.5))),
		ratio: "-", target: "-", verdict: "measured"}
	if v.target {
		r.target = "p99 ≤ 1 s"
		r.verdict = verdict(p99 <= time.Second, whyLate(v))
	}
	b.add(r)
}

func whyLate(v latencyVariant) string {
	return "the story waits completion_grace after its last span (and up to a quarter of it for the processor's tick), then up to the receiver's flush interval (200 ms) before it, and one batch timeout in the traces pipeline after it, before export"
}

// latencies returns, over the stories that have both a connect to the exfil sink and a
// finding, the time from the connect's start and from the story's last span end to the
// finding's log record, and to the finding event's arrival in the traces; and how many stories
// with such a connect have no finding yet.
func (s *otlpSink) latencies() (toConnect, toLast, toSpanFinding []time.Duration, missing int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.stories {
		if st.connect.IsZero() {
			continue
		}
		if st.findingLog.IsZero() {
			missing++
			continue
		}
		toConnect = append(toConnect, st.findingLog.Sub(st.connect))
		toLast = append(toLast, st.findingLog.Sub(st.lastEnd))
		if !st.findingSpan.IsZero() {
			toSpanFinding = append(toSpanFinding, st.findingSpan.Sub(st.lastEnd))
		}
	}
	slices.Sort(toConnect)
	slices.Sort(toLast)
	slices.Sort(toSpanFinding)
	return
}
