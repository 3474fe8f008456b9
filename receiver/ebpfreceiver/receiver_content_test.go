package ebpfreceiver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/sockets"
)

// TestSensitiveContentExfiltration: a traced Python agent's tool reads a CSV of card numbers and
// SSNs saved under an innocuous name (no sensitive_paths pattern names it) and POSTs it out. The
// receiver samples the file after the real kernel's openat, through /proc (the agent's descriptor,
// or the path in its root once the agent closed it), marks the openat with the detectors, never
// the content,
// and the attack story processor, fed what the receiver emitted, raises the sensitive-read
// finding, Critical, as for customers.csv.
func TestSensitiveContentExfiltration(t *testing.T) {
	requireKernel(t)
	requirePython(t)
	web := httpSink(t)
	dir := t.TempDir()
	const csv = "id,name,card,ssn\nC1001,Jane Roe,4111 1111 1111 1111,123-45-6789\nC1002,John Doe,5500-0000-0000-0004,219-09-9999\n"
	report := filepath.Join(dir, "q3-notes.txt")
	if err := os.WriteFile(report, []byte(strings.Repeat(csv, 20)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProgram(t, python311, "-B", "-u", "-E", "-s", filepath.Join("testdata", "pycontent", "pycontent.py"))
	pid := p.cmd.Process.Pid
	cfg := testConfig(TargetConfig{Name: "pycontent", PID: pid, PythonFunctions: []PythonFunctionConfig{
		{Pattern: "pycontent:handle_prompt", Role: "prompt"},
		{Pattern: "pycontent:export_report", Role: "tool", ToolName: "export-report"},
	}})
	cfg.Python.SpanIdleTimeout = time.Second
	cfg.Sockets = sockets.DefaultConfig()
	sink := startReceiver(t, cfg)

	p.do(t, "ask "+report+" http://"+web.addr+"/upload", "ok ask")
	var open ptrace.SpanEvent
	c := waitSpans(t, sink, func(c collected) bool {
		found, tool, sent := false, false, false
		for _, s := range c.ofPID(pid).spans {
			tool = tool || strings.Contains(s.Name(), "export-report")
			sent = sent || s.Name() == "send "+web.addr
			for i := range s.Events().Len() {
				if ev := s.Events().At(i); ev.Name() == "openat" && attrOf(ev, "file.path") == report {
					open, found = ev, true
				}
			}
		}
		return found && tool && sent
	})
	v, ok := open.Attributes().Get(spans.AttrSensitiveContent)
	if !ok || v.AsString() != `["card_number","us_ssn"]` {
		t.Fatalf("openat of %s: %s = %v (%v)", report, spans.AttrSensitiveContent, v.AsString(), ok)
	}
	// Pieces of the file no attribute can hold by chance ("4111" alone matched an ephemeral
	// port, 41119, and failed CI): a card number, an SSN, a name.
	for _, s := range c.spans {
		for _, piece := range []string{"4111 1111", "123-45-6789", "Jane Roe"} {
			if strings.Contains(attrsString(s), piece) {
				t.Errorf("span %s carries the file's content (%q)", s.Name(), piece)
			}
		}
	}

	// The attack story processor, fed what the receiver emitted.
	out, stop := attackStories(t, sink)
	defer stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rules, severity := findingOf(out)
		if strings.Contains(rules, "sensitive_read_then_egress") {
			if severity != "Critical" {
				t.Errorf("finding %s severity %s, want Critical", rules, severity)
			}
			t.Logf("finding %s (%s)", rules, severity)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sensitive_read_then_egress finding; findings: %q", rules)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func attrOf(ev ptrace.SpanEvent, k string) string {
	v, _ := ev.Attributes().Get(k)
	return v.AsString()
}

func attrsString(s ptrace.Span) string {
	var b strings.Builder
	for _, v := range s.Attributes().All() {
		b.WriteString(v.AsString())
	}
	for i := range s.Events().Len() {
		for _, v := range s.Events().At(i).Attributes().All() {
			b.WriteString(v.AsString())
		}
	}
	return b.String()
}

// findingOf: the rule ids and severity of the findings the processor emitted, joined.
func findingOf(out *consumertest.TracesSink) (rules, severity string) {
	for _, td := range out.AllTraces() {
		for i := range td.ResourceSpans().Len() {
			ss := td.ResourceSpans().At(i).ScopeSpans()
			for j := range ss.Len() {
				sp := ss.At(j).Spans()
				for k := range sp.Len() {
					evs := sp.At(k).Events()
					for e := range evs.Len() {
						if evs.At(e).Name() != "finding" {
							continue
						}
						rules += attrOf(evs.At(e), "agenttrail.finding.rule_ids") + " "
						severity = attrOf(evs.At(e), "agenttrail.finding.severity")
					}
				}
			}
		}
	}
	return rules, severity
}
