package ebpfreceiver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor"
)

// storyModel is an OpenAI-shaped chat completions endpoint that plays the model of an agent
// talked into exfiltration: its first answer asks for the MCP tools read_file(secret) and
// fetch(url) (ids call_read_1, call_fetch_2), its answer to a conversation with tool results
// ends the turn.
func storyModel(t *testing.T, secret, url string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(string(body), `"role":"tool"`) {
			_, _ = io.WriteString(w, `{"id":"chatcmpl-2","object":"chat.completion","model":"model-x","choices":[{"index":0,"message":{"role":"assistant","content":"done"},"finish_reason":"stop"}],"usage":{"prompt_tokens":40,"completion_tokens":1,"total_tokens":41}}`)
			return
		}
		args := func(k, v string) string {
			b, _ := json.Marshal(map[string]string{k: v})
			s, _ := json.Marshal(string(b))
			return string(s)
		}
		_, _ = fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","model":"model-x","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[`+
			`{"id":"call_read_1","type":"function","function":{"name":"read_file","arguments":%s}},`+
			`{"id":"call_fetch_2","type":"function","function":{"name":"fetch","arguments":%s}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29}}`,
			args("path", secret), args("url", url))
	}))
	t.Cleanup(srv.Close)
	return srv, &requests
}

// TestMCPStory is the end-to-end story of an MCP tool call: a Go agent on the official MCP Go
// SDK asks its model (a mock OpenAI endpoint over plain HTTP), the model asks for read_file of a
// file under secrets/ and fetch of a URL, the agent calls both on the MCP server it spawned over
// stdio, and the server reads the file and connects to the URL's host. One trace holds
// invoke_agent → chat, and invoke_agent → execute_tool read_file → the server's openat,
// execute_tool fetch → the server's connect; the attack story processor fed the receiver's
// spans raises sensitive_read_then_egress naming the MCP tool.
func TestMCPStory(t *testing.T) {
	requireKernel(t)
	out := filepath.Join(t.TempDir(), "mcpstory")
	if b, err := exec.Command("go", "build", "-o", out, "./testdata/mcpstory").CombinedOutput(); err != nil {
		t.Fatalf("build mcpstory: %v\n%s", err, b)
	}
	dir := filepath.Join(t.TempDir(), "secrets")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "api-keys.txt")
	if err := os.WriteFile(secret, []byte("OPENAI_API_KEY=sk-story-0000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var fetched atomic.Int32
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetched.Add(1)
		_, _ = io.WriteString(w, "thanks")
	}))
	defer page.Close()
	_, pagePort, _ := strings.Cut(strings.TrimPrefix(page.URL, "http://"), ":")
	model, requests := storyModel(t, secret, page.URL+"/collect")

	sink := startReceiver(t, testConfig(TargetConfig{Name: "mcp-story", Executable: out, Functions: []FunctionConfig{
		{Symbol: "main.(*Agent).HandlePrompt", Role: "prompt", Args: []string{"prompt"}},
		{Symbol: "main.(*Agent).callModel", Role: "inference", Model: "model-x"},
	}}))
	p := startProgram(t, out, "agent", model.URL+"/v1/chat/completions")
	p.waitLine(t, "ready")
	p.do(t, "prompt summarise my keys and post them to the collector", "ok prompt 2")
	if requests.Load() != 2 || fetched.Load() != 1 {
		t.Fatalf("model requests %d, fetches %d; want 2 and 1", requests.Load(), fetched.Load())
	}
	pid := p.cmd.Process.Pid

	tool := func(c collected, name string) (ptrace.Span, bool) {
		for _, s := range c.ofPID(pid).spans {
			if s.Name() == "execute_tool "+name && attr(s, "mcp.method.name") == "tools/call" {
				return s, true
			}
		}
		return ptrace.Span{}, false
	}
	c := waitSpans(t, sink, func(c collected) bool {
		read, ok1 := tool(c, "read_file")
		fetch, ok2 := tool(c, "fetch")
		return ok1 && ok2 && contains(childrenOf(c, read), "openat "+secret) && contains(childrenOf(c, fetch), "connect "+pagePort) &&
			len(c.ofPID(pid).named("invoke_agent mcp-story")) == 1 && len(c.ofPID(pid).named("chat model-x")) >= 2
	})
	read, _ := tool(c, "read_file")
	fetch, _ := tool(c, "fetch")
	prompt, _ := c.ofPID(pid).one(t, "invoke_agent mcp-story")

	// One trace: the prompt is its root, the model's calls and the MCP tool calls are under it.
	if !prompt.ParentSpanID().IsEmpty() {
		t.Errorf("the prompt span has a parent")
	}
	for _, i := range c.ofPID(pid).named("chat model-x") {
		chat := c.ofPID(pid).spans[i]
		if chat.TraceID() != prompt.TraceID() {
			t.Errorf("chat span %s is in trace %s, the prompt in %s", chat.SpanID(), chat.TraceID(), prompt.TraceID())
		}
		// The inference function's span is under the prompt, the HTTP exchange's under it.
		if name := parentName(c, chat); chat.ParentSpanID() != prompt.SpanID() && name != "chat model-x" {
			t.Errorf("chat span %s is under %q, not the prompt", chat.SpanID(), name)
		}
	}
	requireParent(t, prompt, read)
	requireParent(t, prompt, fetch)
	if attr(read, "mcp.server.name") != "story-files" || attr(read, "agenttrail.mcp.transport") != "stdio" ||
		attr(read, "gen_ai.tool.call.arguments") != `{"path":"`+secret+`"}` {
		t.Errorf("read_file: server %q transport %q arguments %q", attr(read, "mcp.server.name"), attr(read, "agenttrail.mcp.transport"),
			attr(read, "gen_ai.tool.call.arguments"))
	}
	// The model's tool-call ids on the MCP spans (the inference span named them), the
	// JSON-RPC ids beside them.
	for span, want := range map[*ptrace.Span]string{&read: "call_read_1", &fetch: "call_fetch_2"} {
		if attr(*span, "gen_ai.tool.call.id") != want || attr(*span, "agenttrail.tool_call.id.source") != "model" ||
			attr(*span, "jsonrpc.request.id") == "<missing>" || attr(*span, "jsonrpc.request.id") == want {
			t.Errorf("%s: gen_ai.tool.call.id %q (source %q), jsonrpc.request.id %q; want the model's %s", span.Name(),
				attr(*span, "gen_ai.tool.call.id"), attr(*span, "agenttrail.tool_call.id.source"), attr(*span, "jsonrpc.request.id"), want)
		}
	}
	// The server's work, another process, under the tool call it served.
	serverPID := attr(read, "agenttrail.mcp.server.pid")
	if serverPID == "<missing>" || serverPID == fmt.Sprint(pid) {
		t.Errorf("agenttrail.mcp.server.pid %q (agent %d)", serverPID, pid)
	}
	var traced []ptrace.Span
	for _, s := range c.spans {
		if s.TraceID() == prompt.TraceID() {
			traced = append(traced, s)
		}
	}
	for _, s := range traced {
		t.Logf("%s %q under %q", s.SpanID(), s.Name(), parentName(c, s))
	}
	t.Logf("trace %s: %d spans; under read_file %v, under fetch %v", prompt.TraceID(), len(traced), childrenOf(c, read), childrenOf(c, fetch))
	// The processor takes the receiver's traces over (it may move their spans): keep what is compared.
	traceID := prompt.TraceID().String()

	// The attack story processor, fed what the receiver emitted.
	sout := new(consumertest.TracesSink)
	f := attackstoryprocessor.NewFactory()
	pcfg := f.CreateDefaultConfig().(*attackstoryprocessor.Config)
	pcfg.DefaultMode = attackstoryprocessor.ModeAlert
	pcfg.CompletionGrace = 200 * time.Millisecond
	proc, err := f.CreateTraces(context.Background(), processortest.NewNopSettings(f.Type()), pcfg, sout)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := proc.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	for _, td := range sink.AllTraces() {
		if err := proc.ConsumeTraces(context.Background(), td); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ev, trace, ok := storyFinding(sout, "sensitive_read_then_egress")
		if ok {
			if trace != traceID {
				t.Errorf("the finding is in trace %s, the story in %s", trace, traceID)
			}
			if s := attrOf(ev, "agenttrail.finding.severity"); s != "Critical" {
				t.Errorf("severity %s, want Critical", s)
			}
			// The narrative names the MCP tool calls and, under each, what the server did.
			want := []string{"accepted a prompt in main.(*Agent).HandlePrompt", "chat model-x", "execute_tool read_file", "read " + secret,
				"execute_tool fetch", "connect 127.0.0.1:" + pagePort}
			narrative, at := attrOf(ev, "agenttrail.finding.narrative"), 0
			for _, w := range want {
				i := strings.Index(narrative[at:], w)
				if i < 0 {
					t.Errorf("the narrative lacks %q (in order %q): %s", w, want, narrative)
					break
				}
				at += i + len(w)
			}
			if ocsf := attrOf(ev, "agenttrail.finding.ocsf"); !strings.Contains(ocsf, "read "+secret+" (sensitive: */secrets/*)") ||
				!strings.Contains(ocsf, "then connect 127.0.0.1:"+pagePort) {
				t.Errorf("the evidence is not the server's read and connect: %s", ocsf)
			}
			return
		}
		if time.Now().After(deadline) {
			rules, _ := findingOf(sout)
			t.Fatalf("no sensitive_read_then_egress finding; findings: %q", rules)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// storyFinding: the first finding event whose rule ids include rule, with its span's trace id.
func storyFinding(out *consumertest.TracesSink, rule string) (ptrace.SpanEvent, string, bool) {
	for _, td := range out.AllTraces() {
		for i := range td.ResourceSpans().Len() {
			ss := td.ResourceSpans().At(i).ScopeSpans()
			for j := range ss.Len() {
				sp := ss.At(j).Spans()
				for k := range sp.Len() {
					evs := sp.At(k).Events()
					for e := range evs.Len() {
						if ev := evs.At(e); ev.Name() == "finding" && strings.Contains(attrOf(ev, "agenttrail.finding.rule_ids"), rule) {
							return ev, sp.At(k).TraceID().String(), true
						}
					}
				}
			}
		}
	}
	return ptrace.SpanEvent{}, "", false
}

// parentName: the name of s's parent among c's spans, "" when it has none there.
func parentName(c collected, s ptrace.Span) string {
	if p, ok := c.byID(s.ParentSpanID()); ok && !s.ParentSpanID().IsEmpty() {
		return p.Name()
	}
	return ""
}
