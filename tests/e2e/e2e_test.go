// Package e2e runs the bank scenario end to end on this machine, for real: the built collector
// with the default agent configuration traces the customer-service agent with eBPF, exports to
// Jaeger (built from tests/tools), to local Splunk HEC and Microsoft Sentinel stand-ins and to an
// evidence archive; a benign conversation and the prompt-injection attack are sent; the test
// reads the story back from Jaeger's API and checks what every exporter received.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/internal/testutil"
	"github.com/agenttrail/agenttrail/tests/internal/harness"
	"github.com/agenttrail/agenttrail/tests/jaeger"
	"github.com/agenttrail/agenttrail/tests/siem"
	"github.com/agenttrail/agenttrail/tests/workloads/bank"
)

const (
	hecToken  = "e2e-hec-token"
	tenant    = "00000000-0000-4000-8000-00000000e2e0"
	client    = "11111111-1111-4111-8111-11111111e2e0"
	secret    = "e2e-client-secret-not-for-logs"
	dcr       = "dcr-0123456789abcdef0123456789abcdef"
	piiPrompt = "My card 4111 1111 1111 1111 was charged twice and my SSN 123-45-6789 is on file; what is the balance summary for C1001?"
)

func requireSetup(t *testing.T) (collector string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end test: the collector loads eBPF programs and needs root")
	}
	collector = harness.Collector(t)
	harness.RequireJaeger(t)
	return collector
}

// scenario is one agent implementation.
type scenario struct {
	name     string
	start    func(ctx context.Context, bin bank.Binaries, opts bank.Options) (*bank.Env, error)
	override string // extra collector config (targets) for this agent, or ""
	args     bool   // function arguments are captured (Go: by DWARF; Python spans have none)
}

var goAgent = scenario{name: "go", start: bank.Start, args: true}

// pythonAgent is the same agent in Python: its functions are configured by module:qualname and
// their spans are reconstructed from Python stacks; arguments are not captured.
//
// ThreadingHTTPServer serves every message of the scenario from one keep-alive thread, with no
// pause between them: the receiver's samples where the thread waits for its next request end
// one request's spans before the next begins.
var pythonAgent = scenario{name: "python", start: bank.StartPython, override: `receivers:
  ebpf:
    targets:
      - name: customer-agent
        process_name: python3.11
        python_functions:
          - {pattern: "customer_agent:Agent.handle_prompt", role: prompt}
          - {pattern: "customer_agent:Agent.execute_tool"}
          - {pattern: "customer_agent:ModelClient.complete", role: inference, model: model-x}
          - {pattern: "customer_agent:Tools.accounts_summary", role: tool, tool_name: accounts-summary}
          - {pattern: "customer_agent:Tools.recent_transactions", role: tool, tool_name: recent-transactions}
          - {pattern: "customer_agent:Tools.transfer_low_value", role: tool, tool_name: transfers-low-value}
          - {pattern: "customer_agent:Tools.export_customer_data", role: tool, tool_name: customer-data-export}
          - {pattern: "customer_agent:Tools.system_diagnostics", role: tool, tool_name: system-diagnostics}
`}

func TestBankAttackGoAgent(t *testing.T) { run(t, goAgent) }

func TestBankAttackPythonAgent(t *testing.T) {
	if _, err := bank.EnsurePython(); err != nil {
		t.Skipf("Debian's python3.11 cannot be had here: %v", err)
	}
	run(t, pythonAgent)
}

func run(t *testing.T, sc scenario) {
	collectorBin := requireSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	collectorLog := filepath.Join(dir, "collector.log")

	j, err := jaeger.Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Stop()
	hec := siem.StartHEC(hecToken)
	defer hec.Close()
	azure := siem.StartAzure(tenant, client, secret, dcr)
	defer azure.Close()
	caFile := filepath.Join(dir, "azure-ca.pem")
	if err := azure.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "evidence.key")
	if _, err := archive.GenerateSigningKey(keyFile); err != nil {
		t.Fatal(err)
	}

	overrides := filepath.Join(dir, "e2e.yaml")
	conf := fmt.Sprintf(`exporters:
  splunk_hec:
    endpoint: %s
    token: %s
    retry_on_failure: {initial_interval: 200ms, max_interval: 1s}
  sentinel:
    endpoint: %s
    dcr_immutable_id: %s
    auth:
      type: client_secret
      tenant_id: %s
      client_id: %s
      client_secret: %s
      authority_host: %s/
    retry_on_failure: {initial_interval: 200ms, max_interval: 1s}
  evidence:
    directory: %s/evidence
    signing_key_file: %s
    fsync: false
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      exporters: [otlp_grpc, findings, evidence, splunk_hec, sentinel]
    logs/findings:
      exporters: [evidence, splunk_hec, sentinel]
%s`, hec.URL(), hecToken, azure.URL(), dcr, tenant, client, secret, azure.URL(), dir, keyFile, sc.override)
	if err := os.WriteFile(overrides, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	healthPort := testutil.FreePort(t)
	cmd := exec.Command(collectorBin, "--config="+testutil.RepoPath(t, "distributions/agenttrail/config.yaml"), "--config="+overrides)
	cmd.Env = append(os.Environ(),
		"AGENTTRAIL_OTLP_ENDPOINT="+jaeger.OTLPGRPCEndpoint,
		fmt.Sprintf("AGENTTRAIL_HEALTH_ENDPOINT=127.0.0.1:%d", healthPort),
		"AGENTTRAIL_K8S_AUTH=none",
		"AGENTTRAIL_PROFILES_DIR="+filepath.Join(dir, "profiles"),
		"SSL_CERT_FILE="+caFile, // trust the Azure stand-in
	)
	col := harness.MustStart(t, cmd, collectorLog)
	defer col.Stop(20 * time.Second)
	harness.WaitHealthy(t, col, harness.HealthURL(healthPort, "/status"), 30*time.Second, func() bool {
		return strings.Contains(harness.Tail(collectorLog, 400), "ebpf receiver started")
	})
	checkComponentStatus(t, healthPort)

	bins, err := bank.Build(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := sc.start(ctx, bins, bank.Options{Dir: filepath.Join(dir, "bank"),
		AgentAddr: "127.0.0.1:0", ModelAddr: "127.0.0.1:0", SinkAddr: "127.0.0.2:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	// The collector attaches to the agent when it sees its exec, a moment after it started:
	// greet the agent until a story of it shows up, so the scenario runs fully traced.
	time.Sleep(time.Second)
	deadline := time.Now().Add(45 * time.Second)
	for {
		if _, err := env.Chat(ctx, "warm-up", "hello"); err != nil {
			t.Fatalf("warm-up chat: %v", err)
		}
		time.Sleep(3 * time.Second) // the story completes and is exported well within this
		if tr, err := j.TracesWith(ctx, "customer-agent", "invoke_agent customer-agent", 10); err == nil && len(tr) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent's prompts do not show up in Jaeger; collector log:\n%s", harness.Tail(collectorLog, 40))
		}
		time.Sleep(time.Second)
	}

	for _, msg := range append(append([]string(nil), bank.BenignConversation...), piiPrompt) {
		if _, err := env.Chat(ctx, "benign", msg); err != nil {
			t.Fatalf("benign %q: %v", msg, err)
		}
	}
	if _, err := env.Chat(ctx, "attacker", bank.AttackMessageTo(env.UploadURL)); err != nil {
		t.Fatalf("attack: %v", err)
	}
	uploads, err := env.Uploads()
	if err != nil || len(uploads) != 1 {
		t.Fatalf("the outside host got %d uploads (%v); the scenario did not run", len(uploads), err)
	}

	story := waitAttack(t, ctx, j)
	checkStory(t, story, env, sc)
	checkBenign(t, ctx, j, sc)
	checkSIEMs(t, hec, azure)

	col.Stop(20 * time.Second) // seals the evidence archive
	checkNoSecrets(t, ctx, j, hec, azure, env, filepath.Join(dir, "evidence"))
	checkEvidence(t, filepath.Join(dir, "evidence"), story.TraceID)
}

// checkComponentStatus asserts that the shipped health check shows each component's status
// (healthcheckv2 in v2 mode, GET /status?verbose), the receiver's among them.
func checkComponentStatus(t *testing.T, port int) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status?verbose", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	for _, want := range []string{`"receiver:ebpf"`, `"processor:attackstory"`, `"status"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /status?verbose does not name %s: %s", want, body)
		}
	}
}

// waitAttack waits until Jaeger holds exactly one story with the export tool call and a finding.
func waitAttack(t *testing.T, ctx context.Context, j *jaeger.Jaeger) jaeger.Trace {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		traces, err := j.TracesWith(ctx, "customer-agent", "execute_tool customer-data-export", 100)
		var attacks []jaeger.Trace
		for _, tr := range traces {
			if hasOp(tr, "execute_tool customer-data-export") {
				attacks = append(attacks, tr)
			}
		}
		if len(attacks) > 1 {
			t.Fatalf("the attack produced %d stories in Jaeger, want exactly one", len(attacks))
		}
		if len(attacks) == 1 && rootOf(attacks[0]).SpanID != "" && jaeger.Tag(rootOf(attacks[0]).Tags, "agenttrail.finding.rule_ids") != "" {
			return attacks[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no attack story with a finding in Jaeger (%d traces, %d with the export; last error %v)", len(traces), len(attacks), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func hasOp(tr jaeger.Trace, op string) bool {
	return slices.ContainsFunc(tr.Spans, func(s jaeger.Span) bool { return s.OperationName == op })
}

func rootOf(tr jaeger.Trace) jaeger.Span {
	for _, s := range tr.Spans {
		if s.Parent() == "" {
			return s
		}
	}
	return jaeger.Span{}
}

// first returns the earliest span named op (a story has two model calls: before and after the
// tool).
func first(t *testing.T, tr jaeger.Trace, op string) jaeger.Span {
	t.Helper()
	var found []jaeger.Span
	for _, s := range tr.Spans {
		if s.OperationName == op {
			found = append(found, s)
		}
	}
	if len(found) == 0 {
		t.Fatalf("the story has no span %q", op)
	}
	slices.SortFunc(found, func(a, b jaeger.Span) int { return int(a.StartTime - b.StartTime) })
	return found[0]
}

// descends reports whether span d is below ancestor a in the trace.
func descends(tr jaeger.Trace, d, a jaeger.Span) bool {
	byID := map[string]jaeger.Span{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
	}
	for p := d.Parent(); p != ""; p = byID[p].Parent() {
		if p == a.SpanID {
			return true
		}
		if _, ok := byID[p]; !ok {
			return false
		}
	}
	return false
}

func checkStory(t *testing.T, tr jaeger.Trace, env *bank.Env, sc scenario) {
	t.Helper()
	prompt := first(t, tr, "invoke_agent customer-agent")
	chat := first(t, tr, "chat model-x")
	tool := first(t, tr, "execute_tool customer-data-export")
	if prompt.Parent() != "" {
		t.Errorf("the prompt handler is not the story's root")
	}
	if !descends(tr, chat, prompt) || !descends(tr, tool, prompt) {
		t.Errorf("the model call and the tool are not below the prompt handler")
	}
	if sc.args {
		if got := jaeger.Tag(tool.Tags, "agenttrail.arg.query"); got != "SELECT * FROM customers" {
			t.Errorf("tool query %q", got)
		}
	}
	// The model's decision, read from the decrypted TLS response of the model call.
	decided := false
	for _, s := range tr.Spans {
		if strings.HasPrefix(s.OperationName, "chat ") && strings.Contains(jaeger.Tag(s.Tags, "agenttrail.tool_calls.names"), "customer-data-export") {
			decided = decided || (descends(tr, s, prompt) && s.StartTime <= tool.StartTime)
		}
	}
	if !decided {
		var seen []string
		for _, s := range tr.Spans {
			if strings.HasPrefix(s.OperationName, "chat ") {
				seen = append(seen, fmt.Sprintf("%s start %d tool_calls %q parent %s", s.SpanID, s.StartTime, jaeger.Tag(s.Tags, "agenttrail.tool_calls.names"), s.Parent()))
			}
		}
		t.Errorf("no model call in the story carries the model's decision to call customer-data-export (tool starts %d; model calls: %v)", tool.StartTime, seen)
	}
	var opened int64
	for _, l := range tool.Logs {
		if strings.HasSuffix(jaeger.Tag(l.Fields, "file.path"), "customers.csv") {
			opened = l.Timestamp
		}
	}
	if opened == 0 {
		t.Errorf("the read of the customer data is not on the tool span")
	}
	sinkHostPort := strings.TrimPrefix(env.SinkURL, "http://")
	sinkHost, sinkPort, _ := net.SplitHostPort(sinkHostPort)
	var connect jaeger.Span
	for _, s := range tr.Spans {
		if s.OperationName == "connect" && jaeger.Tag(s.Tags, "network.peer.address") == sinkHost && jaeger.Tag(s.Tags, "network.peer.port") == sinkPort {
			connect = s
		}
	}
	if connect.SpanID == "" {
		t.Fatalf("no connect to the outside host %s in the story", sinkHostPort)
	}
	if connect.Parent() != tool.SpanID {
		t.Errorf("the connect to the outside host is not a child of the tool span")
	}
	if sc.name == "python" && !strings.Contains(jaeger.Tag(connect.Tags, "code.stacktrace"), "Tools.export_customer_data") {
		t.Errorf("the connect's call stack does not name the Python tool function:\n%s", jaeger.Tag(connect.Tags, "code.stacktrace"))
	}
	if jaeger.Tag(connect.Tags, "code.stacktrace") == "" {
		t.Errorf("the connect has no call stack")
	}
	if !(prompt.StartTime <= chat.StartTime && chat.StartTime <= tool.StartTime && tool.StartTime <= opened && opened <= connect.StartTime) {
		t.Errorf("steps out of time order: prompt %d chat %d tool %d read %d connect %d", prompt.StartTime, chat.StartTime, tool.StartTime, opened, connect.StartTime)
	}
	for _, s := range []jaeger.Span{prompt, chat, tool, connect} {
		p := tr.Processes[s.ProcessID]
		if jaeger.Tag(p.Tags, "process.pid") != fmt.Sprint(env.AgentPID) || jaeger.Tag(p.Tags, "process.executable.path") == "" {
			t.Errorf("%s: process tags %v, want pid %d and an executable", s.OperationName, p.Tags, env.AgentPID)
		}
	}
	rules := jaeger.Tag(prompt.Tags, "agenttrail.finding.rule_ids")
	atlas := jaeger.Tag(prompt.Tags, "agenttrail.finding.atlas_ids")
	if !strings.Contains(rules, "sensitive_read_then_egress") || !strings.Contains(atlas, "AML.T0086") {
		t.Errorf("finding rules %s, ATLAS %s", rules, atlas)
	}
}

// checkBenign: the benign conversation left traces, none with a finding, and the prompt with a
// card number and an SSN arrived redacted.
func checkBenign(t *testing.T, ctx context.Context, j *jaeger.Jaeger, sc scenario) {
	t.Helper()
	traces, err := j.TracesWith(ctx, "customer-agent", "invoke_agent customer-agent", 100)
	if err != nil {
		t.Fatal(err)
	}
	benign, redacted := 0, false
	for _, tr := range traces {
		if hasOp(tr, "execute_tool customer-data-export") {
			continue
		}
		for _, s := range tr.Spans {
			if s.OperationName != "invoke_agent customer-agent" {
				continue
			}
			benign++
			if jaeger.Tag(s.Tags, "agenttrail.finding.rule_ids") != "" {
				t.Errorf("a benign conversation has a finding: %s", jaeger.Tag(s.Tags, "agenttrail.arg.prompt"))
			}
			if p := jaeger.Tag(s.Tags, "agenttrail.arg.prompt"); strings.Contains(p, "[REDACTED:card]") && strings.Contains(p, "[REDACTED:ssn]") {
				redacted = true
			}
			if !sc.args {
				redacted = true // the prompt is not captured at all (Python spans carry no arguments)
			}
		}
	}
	if benign < len(bank.BenignConversation)+1 { // the warm-up greetings come on top
		t.Errorf("%d benign stories in Jaeger, want %d", benign, len(bank.BenignConversation)+1)
	}
	if !redacted {
		t.Errorf("the prompt with a card number and an SSN is not redacted in Jaeger")
	}
}

func checkSIEMs(t *testing.T, hec *siem.HEC, azure *siem.Azure) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var hecFinding, sentinelFinding bool
		for _, ev := range hec.Events() {
			if ev["sourcetype"] != "agenttrail:finding:ocsf" {
				continue
			}
			if e, ok := ev["event"].(map[string]any); ok && fmt.Sprint(e["class_uid"]) == "2004" {
				hecFinding = true
			}
		}
		for _, row := range azure.Rows("Custom-AgentTrailFindings_CL") {
			if b, _ := json.Marshal(row["RuleIds"]); bytes.Contains(b, []byte("sensitive_read_then_egress")) {
				sentinelFinding = true
			}
		}
		if hecFinding && sentinelFinding {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("finding received: HEC %v, Sentinel %v", hecFinding, sentinelFinding)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// checkNoSecrets: no card number or SSN of the customer database, nor those of the prompt,
// appears unredacted in anything an exporter received.
func checkNoSecrets(t *testing.T, ctx context.Context, j *jaeger.Jaeger, hec *siem.HEC, azure *siem.Azure, env *bank.Env, evidence string) {
	t.Helper()
	secrets, err := env.CustomerSecrets()
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, "4111111111111111", "4111 1111 1111 1111", "123-45-6789")
	var hay [][]byte
	hay = append(hay, hec.Bodies()...)
	hay = append(hay, azure.Bodies()...)
	traces, _ := j.Traces(ctx, "customer-agent", 2000)
	if b, err := json.Marshal(traces); err == nil {
		hay = append(hay, b)
	}
	_ = filepath.Walk(evidence, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, err := os.ReadFile(p); err == nil {
				hay = append(hay, b)
			}
		}
		return nil
	})
	if len(hay) < 3 {
		t.Fatalf("too little exported data to check (%d documents)", len(hay))
	}
	for _, s := range secrets {
		for _, h := range hay {
			if bytes.Contains(h, []byte(s)) {
				t.Errorf("secret %q left the node unredacted", s)
				break
			}
		}
	}
}

func checkEvidence(t *testing.T, dir, traceID string) {
	t.Helper()
	rep, err := archive.VerifyDir(dir, archive.VerifyOptions{})
	if err != nil {
		t.Fatalf("the evidence archive does not verify: %v", err)
	}
	if rep.Records < 2 {
		t.Fatalf("the evidence archive holds %d records", rep.Records)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "segments", "*.jsonl"))
	if len(segs) == 0 {
		t.Fatal("no segment files")
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(traceID))
	if i < 0 {
		i = len(b) / 2
	}
	b[i] ^= 0x01 // one byte of the story changed
	if err := os.WriteFile(segs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.VerifyDir(dir, archive.VerifyOptions{}); err == nil {
		t.Fatal("the evidence archive still verifies after one byte was changed")
	}
}
