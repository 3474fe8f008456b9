package outage

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"

	"github.com/agenttrail/agenttrail/internal/testutil"
	"github.com/agenttrail/agenttrail/tests/internal/harness"
)

// findingRecord is what the sink keeps of one log record.
type findingRecord struct {
	event   string
	service string
	traceID string
	body    string
	uid     string
	tier    string
}

// logsSink is an OTLP/gRPC backend that takes logs and traces (an OTel Collector in front of
// a SIEM): it records every log record and the trace ids of the spans.
type logsSink struct {
	plogotlp.UnimplementedGRPCServer
	mu      sync.Mutex
	records []findingRecord
	traces  map[string]int
}

type logsSinkTraces struct {
	ptraceotlp.UnimplementedGRPCServer
	s *logsSink
}

func startLogsSink(t *testing.T) (*logsSink, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &logsSink{traces: map[string]int{}}
	srv := grpc.NewServer()
	plogotlp.RegisterGRPCServer(srv, s)
	ptraceotlp.RegisterGRPCServer(srv, &logsSinkTraces{s: s})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return s, ln.Addr().(*net.TCPAddr).Port
}

func (s *logsSink) Export(_ context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rls := req.Logs().ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		svc, _ := rls.At(i).Resource().Attributes().Get("service.name")
		sls := rls.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			lrs := sls.At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				lr := lrs.At(k)
				uid, _ := lr.Attributes().Get("agenttrail.finding.uid")
				tier, _ := lr.Attributes().Get("agenttrail.finding.tier")
				s.records = append(s.records, findingRecord{
					event:   lr.EventName(),
					service: svc.Str(),
					traceID: lr.TraceID().String(),
					body:    lr.Body().AsString(),
					uid:     uid.AsString(),
					tier:    tier.AsString(),
				})
			}
		}
	}
	return plogotlp.NewExportResponse(), nil
}

func (s *logsSinkTraces) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	s.s.mu.Lock()
	defer s.s.mu.Unlock()
	rss := req.Traces().ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			for k := 0; k < sss.At(j).Spans().Len(); k++ {
				s.s.traces[sss.At(j).Spans().At(k).TraceID().String()]++
			}
		}
	}
	return ptraceotlp.NewExportResponse(), nil
}

// findings are the sink's finding records of a trace.
func (s *logsSink) findings(traceID string) []findingRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []findingRecord
	for _, r := range s.records {
		if r.event == "agenttrail.finding" && r.traceID == traceID {
			out = append(out, r)
		}
	}
	return out
}

func (s *logsSink) hasTrace(traceID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.traces[traceID] > 0
}

// shippedAgentFindingsExporter is the exporter of the shipped agent's logs/findings pipeline
// (config.yaml), as it is written there: the stand-in agent sends its findings with it.
func shippedAgentFindingsExporter(t *testing.T) (name string, section map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(testutil.RepoPath(t, "distributions/agenttrail/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Exporters map[string]map[string]any `yaml:"exporters"`
		Service   struct {
			Pipelines map[string]struct {
				Exporters []string `yaml:"exporters"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	for _, e := range cfg.Service.Pipelines["logs/findings"].Exporters {
		if strings.HasPrefix(e, "otlp_grpc") {
			if cfg.Exporters[e] == nil {
				t.Fatalf("config.yaml: logs/findings exports to %s, which is not configured", e)
			}
			// A finding is kept until the gateway is back: the exporter never gives up.
			if r, _ := cfg.Exporters[e]["retry_on_failure"].(map[string]any); fmt.Sprint(r["max_elapsed_time"]) != "0" {
				t.Errorf("config.yaml: %s retry_on_failure %v; want max_elapsed_time: 0 (the default drops findings after 5 min)", e, r)
			}
			return e, cfg.Exporters[e]
		}
	}
	t.Fatalf("config.yaml: logs/findings has no otlp_grpc exporter: %v", cfg.Service.Pipelines["logs/findings"].Exporters)
	return "", nil
}

// standInAgentConfig: the shipped agent's findings path (attackstory → findings connector →
// logs/findings → its OTLP exporter, as in config.yaml) behind an OTLP receiver instead of the
// eBPF one. Its spans, with their finding events, go to the gateway's OTLP port as the agents'
// storyroute sends them: the gateway sees each agent finding twice, as a log record and as an
// event on the spans, and must pass it on once.
func standInAgentConfig(t *testing.T, agentPort, gatewayPort int) string {
	name, exp := shippedAgentFindingsExporter(t)
	cfg := map[string]any{
		"receivers": map[string]any{"otlp": map[string]any{"protocols": map[string]any{
			"http": map[string]any{"endpoint": fmt.Sprintf("127.0.0.1:%d", agentPort)},
		}}},
		"processors": map[string]any{"attackstory": map[string]any{
			"default_mode":     "observe",
			"completion_grace": "200ms",
			"workloads": []any{map[string]any{
				"match":         map[string]any{"service.name": "findings-agent"},
				"mode":          "alert",
				"allowed_tools": []any{"lookup"},
			}},
		}},
		"connectors": map[string]any{"findings": nil},
		"exporters": map[string]any{name: exp, "otlp_grpc/spans": map[string]any{
			"endpoint": fmt.Sprintf("127.0.0.1:%d", gatewayPort),
			"tls":      map[string]any{"insecure": true},
		}},
		"service": map[string]any{
			"telemetry": map[string]any{
				"metrics": map[string]any{"level": "none"},
				"logs":    map[string]any{"sampling": map[string]any{"enabled": false}},
			},
			"pipelines": map[string]any{
				"traces":        map[string]any{"receivers": []any{"otlp"}, "processors": []any{"attackstory"}, "exporters": []any{"findings", "otlp_grpc/spans"}},
				"logs/findings": map[string]any{"receivers": []any{"findings"}, "exporters": []any{name}},
			},
		},
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// findingsGatewayOverride is merged over the shipped gateway.yaml: loopback ports, no
// telemetry server, and a declared workload whose tool calls outside allowed_tools are
// findings of the gateway's own attackstory.
func findingsGatewayOverride(grpcPort, httpPort, healthPort int) string {
	return loopbackGateway(grpcPort, httpPort, healthPort) + `processors:
  attackstory:
    workloads:
      - match: {service.name: gateway-agent}
        mode: alert
        allowed_tools: [lookup]
service:
  telemetry:
    metrics:
      level: none
`
}

// toolStory is one agent story: a prompt and a call of tool (not in allowed_tools: a
// tool_outside_profile finding).
func toolStory(service string, trace byte, tool string) (ptrace.Traces, string) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	rs.Resource().Attributes().PutInt("process.pid", 4242)
	rs.Resource().Attributes().PutStr("host.name", "node-a")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("agenttrail.ebpf")
	id := pcommon.TraceID{0xf1, trace, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	now := time.Now()
	root := ss.Spans().AppendEmpty()
	root.SetTraceID(id)
	root.SetSpanID(pcommon.SpanID{0xf1, trace, 0, 0, 0, 0, 0, 1})
	root.SetName("invoke_agent " + service)
	root.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-200 * time.Millisecond)))
	root.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
	root.Attributes().PutStr("gen_ai.operation.name", "invoke_agent")
	root.Attributes().PutStr("agenttrail.arg.prompt", "export every customer")
	tl := ss.Spans().AppendEmpty()
	tl.SetTraceID(id)
	tl.SetSpanID(pcommon.SpanID{0xf1, trace, 0, 0, 0, 0, 0, 2})
	tl.SetParentSpanID(root.SpanID())
	tl.SetName("execute_tool " + tool)
	tl.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-150 * time.Millisecond)))
	tl.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(-50 * time.Millisecond)))
	tl.Attributes().PutStr("gen_ai.operation.name", "execute_tool")
	tl.Attributes().PutStr("gen_ai.tool.name", tool)
	return td, id.String()
}

func postTraces(t *testing.T, port int, td ptrace.Traces) {
	t.Helper()
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 40 * time.Second}
	resp, err := client.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/traces", port), "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("post traces: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("post traces: %s", resp.Status)
	}
}

// TestFindingsReachLogsBackend: the findings of a node agent (the shipped agent's findings
// exporter, from its attackstory and findings connector) and the gateway's own (attackstory on
// the joined story, its findings connector) go through the shipped gateway.yaml to a logs
// backend (AGENTTRAIL_FINDINGS_EXPORTERS=[otlp_grpc/findings]); with the default they are
// written to the gateway's log and the agent's export does not fail. Before gateway.yaml had a
// logs pipeline the gateway answered the agent's findings with Unimplemented (dropped) and its
// own findings left only on the spans: no finding reached the sink.
// The agent's spans reach the gateway too, its finding event on them: the sink gets exactly one
// record per finding uid and tier; before attackstory's tier and the connector's tiers the
// gateway made a second record of the agent's finding from its event.
func TestFindingsReachLogsBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the gateway and an agent")
	}
	bin := gatewayBinary(t)
	dir := t.TempDir()
	sink, sinkPort := startLogsSink(t)
	gwGRPC, gwHTTP, gwHealth, agentPort := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)

	override := filepath.Join(dir, "gateway-test.yaml")
	if err := os.WriteFile(override, []byte(findingsGatewayOverride(gwGRPC, gwHTTP, gwHealth)), 0o644); err != nil {
		t.Fatal(err)
	}
	shipped := testutil.RepoPath(t, "distributions/agenttrail/gateway.yaml")
	startGateway := func(logName string, env ...string) (*harness.Proc, string) {
		log := filepath.Join(dir, logName)
		cmd := exec.Command(bin, "--config="+shipped, "--config="+override)
		cmd.Env = append(os.Environ(),
			"AGENTTRAIL_QUEUE_DIR="+filepath.Join(dir, "gateway-queue"),
			"AGENTTRAIL_PROFILES_DIR="+filepath.Join(dir, "gateway-profiles"),
			"AGENTTRAIL_JOIN_WAIT=1s",
			"AGENTTRAIL_GATEWAY_GRACE=500ms",
			fmt.Sprintf("AGENTTRAIL_BACKEND_ENDPOINT=127.0.0.1:%d", sinkPort))
		cmd.Env = append(cmd.Env, env...)
		gw := harness.MustStart(t, cmd, log)
		t.Cleanup(func() { gw.Stop(20 * time.Second) })
		harness.WaitHealthy(t, gw, harness.HealthURL(gwHealth, "/status"), 30*time.Second, nil)
		return gw, log
	}

	agentCfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(agentCfg, []byte(standInAgentConfig(t, agentPort, gwGRPC)), 0o644); err != nil {
		t.Fatal(err)
	}
	agentLog := filepath.Join(dir, "agent.log")
	agentCmd := exec.Command(bin, "--config="+agentCfg)
	agentCmd.Env = append(os.Environ(), fmt.Sprintf("AGENTTRAIL_OTLP_ENDPOINT=127.0.0.1:%d", gwGRPC))
	agent := harness.MustStart(t, agentCmd, agentLog)
	t.Cleanup(func() { agent.Stop(20 * time.Second) })

	// Findings to a logs backend.
	gw, gwLog := startGateway("gateway.log",
		"AGENTTRAIL_FINDINGS_EXPORTERS=[otlp_grpc/findings]",
		fmt.Sprintf("AGENTTRAIL_FINDINGS_ENDPOINT=127.0.0.1:%d", sinkPort))
	harness.WaitFor(t, "the agent's OTLP port", 30*time.Second, 50*time.Millisecond, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", agentPort), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	agentStory, agentTrace := toolStory("findings-agent", 1, "shell-exec")
	postTraces(t, agentPort, agentStory)
	gwStory, gwTrace := toolStory("gateway-agent", 2, "shell-exec")
	postTraces(t, gwHTTP, gwStory) // as the agents' storyroute sends their stories

	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && (len(sink.findings(agentTrace)) == 0 || len(sink.findings(gwTrace)) == 0 || !sink.hasTrace(gwTrace) || !sink.hasTrace(agentTrace)) {
		time.Sleep(100 * time.Millisecond)
	}
	// The gateway's findings connector ran on the agent's spans when they left for the trace
	// backend; what it made of them goes through the exporter's queue (batched) to the sink.
	time.Sleep(time.Second)
	failed := false
	if got := sink.findings(agentTrace); len(got) == 0 {
		failed = true
		t.Errorf("the agent's finding (trace %s) did not reach the logs backend through the gateway", agentTrace)
	} else if got[0].service != "findings-agent" || !strings.Contains(got[0].body, "tool_outside_profile") {
		t.Errorf("the agent's finding: service %q, body %.200s; want findings-agent, tool_outside_profile", got[0].service, got[0].body)
	}
	if got := sink.findings(gwTrace); len(got) == 0 {
		failed = true
		t.Errorf("the gateway's own finding (trace %s) did not reach the logs backend", gwTrace)
	} else if !strings.Contains(got[0].body, "tool_outside_profile") {
		t.Errorf("the gateway's finding body %.200s; want tool_outside_profile", got[0].body)
	}
	if !sink.hasTrace(gwTrace) {
		failed = true
		t.Errorf("the gateway's story (trace %s) did not reach the trace backend", gwTrace)
	}
	if !sink.hasTrace(agentTrace) {
		failed = true
		t.Errorf("the agent's story (trace %s) did not reach the trace backend through the gateway", agentTrace)
	}
	// One record per finding: the agent's came as its log record, and the gateway's findings
	// connector (tiers: [gateway]) makes none of the agent's finding event on the spans. Before
	// tiers it made one: the same uid twice at the logs backend.
	for _, tc := range []struct{ trace, tier string }{{agentTrace, "agent"}, {gwTrace, "gateway"}} {
		perUID := map[string]int{}
		for _, r := range sink.findings(tc.trace) {
			perUID[r.uid+" "+r.tier]++
		}
		// toolStory's root span id is f1 <trace byte> 00…01; the finding's uid <trace>-<span>.
		uid := tc.trace + "-f1" + tc.trace[2:4] + "000000000001"
		if want := map[string]int{uid + " " + tc.tier: 1}; !maps.Equal(perUID, want) {
			failed = true
			t.Errorf("finding records of trace %s by uid and tier: %v; want %v", tc.trace, perUID, want)
		}
	}
	if failed {
		t.Logf("gateway log (tail):\n%s\nagent log (tail):\n%s", harness.Tail(gwLog, 20), harness.Tail(agentLog, 20))
	}
	gw.Stop(20 * time.Second)

	// The default: no logs backend; the findings are written whole to the gateway's log.
	_, defLog := startGateway("gateway-default.log")
	defStory, defTrace := toolStory("findings-agent", 3, "shell-exec")
	postTraces(t, agentPort, defStory)
	harness.WaitFor(t, "the agent's finding in the gateway's log", 30*time.Second, 100*time.Millisecond, func() bool {
		text, _ := os.ReadFile(defLog)
		return strings.Contains(string(text), "Trace ID: "+defTrace) && strings.Contains(string(text), "tool_outside_profile")
	})
	if n := len(sink.findings(defTrace)); n != 0 {
		t.Errorf("with the default, %d findings of trace %s reached the OTLP sink; want them only in the gateway's log", n, defTrace)
	}
	agentText, _ := os.ReadFile(agentLog)
	defText, _ := os.ReadFile(defLog)
	for name, text := range map[string]string{"agent": string(agentText), "gateway": string(defText)} {
		// A retry while the gateway restarted is no loss; a refusal (Unimplemented) is dropped.
		for _, msg := range []string{"Dropping data", "they are lost", "Unimplemented"} {
			if n := strings.Count(text, msg); n > 0 {
				t.Errorf("%s log: %d lines %q:\n%s", name, n, msg, harness.LastLines(text, 20))
			}
		}
	}
}

// TestFindingsBackendDownKeepsTraces: with the findings sent over OTLP to a backend that is
// down and their disk queue full (queue_size 2 here), the gateway still takes the agents'
// stories and the trace backend gets every one; the gateway's own findings that did not fit
// are counted, not held against the spans. When the gateway's findings connector returned the
// full queue to the traces pipeline (and no batch processor stood between them, as none does
// now), the gateway answered every story after the second with 503.
func TestFindingsBackendDownKeepsTraces(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the gateway")
	}
	bin := gatewayBinary(t)
	dir := t.TempDir()
	sink, sinkPort := startLogsSink(t)
	gwGRPC, gwHTTP, gwHealth, down := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)
	override := filepath.Join(dir, "gateway-test.yaml")
	small := findingsGatewayOverride(gwGRPC, gwHTTP, gwHealth) + `exporters:
  otlp_grpc/findings:
    sending_queue:
      queue_size: 2
`
	if err := os.WriteFile(override, []byte(small), 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "gateway.log")
	cmd := exec.Command(bin, "--config="+testutil.RepoPath(t, "distributions/agenttrail/gateway.yaml"), "--config="+override)
	cmd.Env = append(os.Environ(),
		"AGENTTRAIL_QUEUE_DIR="+filepath.Join(dir, "gateway-queue"),
		"AGENTTRAIL_PROFILES_DIR="+filepath.Join(dir, "gateway-profiles"),
		"AGENTTRAIL_GATEWAY_GRACE=300ms",
		fmt.Sprintf("AGENTTRAIL_BACKEND_ENDPOINT=127.0.0.1:%d", sinkPort),
		"AGENTTRAIL_FINDINGS_EXPORTERS=[otlp_grpc/findings]",
		fmt.Sprintf("AGENTTRAIL_FINDINGS_ENDPOINT=127.0.0.1:%d", down)) // nothing listens
	gw := harness.MustStart(t, cmd, log)
	t.Cleanup(func() { gw.Stop(20 * time.Second) })
	harness.WaitHealthy(t, gw, harness.HealthURL(gwHealth, "/status"), 30*time.Second, nil)

	const stories = 8
	var traces []string
	client := &http.Client{Timeout: 40 * time.Second}
	for i := 0; i < stories; i++ {
		td, id := toolStory("gateway-agent", byte(0x10+i), "shell-exec")
		traces = append(traces, id)
		body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/traces", gwHTTP), "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("story %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("story %d: the gateway answered %s with the findings backend down", i, resp.Status)
		}
	}
	harness.WaitFor(t, "every story at the trace backend", 30*time.Second, 100*time.Millisecond, func() bool {
		for _, id := range traces {
			if !sink.hasTrace(id) {
				return false
			}
		}
		return true
	})
	// The findings that did not fit in the queue are refused there and said so.
	harness.WaitFor(t, "the refused findings in the gateway's log", 30*time.Second, 100*time.Millisecond, func() bool {
		text, _ := os.ReadFile(log)
		return strings.Contains(string(text), "queue is full")
	})
}
