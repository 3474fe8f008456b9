package ebpfreceiver

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// buildOpenAIGo builds testdata/openaigo, a module of its own that pins the official OpenAI Go
// SDK (openai-go v3.102.0) by its go.mod and go.sum.
func buildOpenAIGo(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "openaigo")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = filepath.Join("testdata", "openaigo")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build openaigo: %v\n%s", err, b)
	}
	return out
}

// longPython sends, with Python's standard library over OpenSSL, a chat completion whose body
// puts "model" after 64 KiB of "messages" (the OpenAI Python SDK's order): one SSL_write_ex of
// the whole body, longer than tls.capture_bytes.
const longPython = `
import http.client, json, ssl, sys
url, ca, model = sys.argv[1], sys.argv[2], sys.argv[3]
host = url.split("/")[2]
print("ready", flush=True)
for line in sys.stdin:
    ctx = ssl.create_default_context(cafile=ca)
    c = http.client.HTTPSConnection(host, context=ctx)
    history = "The customer asked about the balance of account C1001 again. " * 1100
    body = json.dumps({"messages": [{"role": "system", "content": "Earlier conversation: " + history},
                                    {"role": "user", "content": "What is the balance of C1001?"}],
                       "model": model, "stream": False})
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    print("ok", r.status, flush=True)
    c.close()
`

// TestLongConversationKeepsModel: requests whose conversation is longer than tls.capture_bytes
// and whose "model" comes after it, as openai-go (over HTTP/1.1 and HTTP/2) and OpenAI's Python
// SDK (over OpenSSL) write them, keep gen_ai.request.model: the kernel sends a long write's
// first three quarters and its last quarter, and the tracker keeps the tail as the body's end.
func TestLongConversationKeepsModel(t *testing.T) {
	requireKernel(t)
	model := startMockModel(t)
	exe := buildOpenAIGo(t)
	requirePython(t)
	base := strings.TrimSuffix(model.url, "/chat/completions")
	cfg := testConfig(TargetConfig{Name: "openai-go", Executable: exe}, TargetConfig{Name: "py-long", Executable: python311})
	if cfg.TLS.CaptureBytes != 16384 {
		t.Fatalf("the default tls.capture_bytes changed: %d", cfg.TLS.CaptureBytes)
	}
	sink := startReceiver(t, cfg)
	t.Setenv("SSL_CERT_FILE", model.ca)
	goAgent := startProgram(t, exe, "model-long")
	goAgent.waitLine(t, "ready")
	goAgent.do(t, "h1 "+base+" 64", "ok h1")
	goAgent.do(t, "h2 "+base+" 64", "ok h2")
	py := startProgram(t, python311, "-c", longPython, model.url, model.ca, "model-long")
	py.waitLine(t, "ready")
	py.do(t, "go", "ok 200")

	infs := func(c collected, pid int) []ptrace.Span {
		return c.ofPID(pid).where("chat model-long", func(s ptrace.Span) bool {
			return fromTLS(s) && attr(s, "gen_ai.request.model") == "model-long"
		})
	}
	goPID, pyPID := goAgent.cmd.Process.Pid, py.cmd.Process.Pid
	c := waitSpans(t, sink, func(c collected) bool { return len(infs(c, goPID)) == 2 && len(infs(c, pyPID)) == 1 })
	versions := map[string]bool{}
	for _, s := range append(infs(c, goPID), infs(c, pyPID)...) {
		versions[attr(s, "network.protocol.version")] = true
		row := matrixRow{"Python 3.11 (Debian), standard library", "OpenAI chat completions, 64 KiB conversation before the model", "HTTPS, HTTP/1.1", "OpenSSL (libssl.so.3)"}
		if attr(s, "agenttrail.tls.library") == "go" {
			row = matrixRow{"Go, openai-go v3.102.0", row.api, "HTTPS, HTTP/" + attr(s, "network.protocol.version"), "Go crypto/tls"}
		}
		recordSpan(t, row, s)
		if size := attr(s, "http.request.body.size"); len(size) < 5 {
			t.Errorf("request body size %s: not a long conversation", size)
		}
		if p := attr(s, "agenttrail.llm.request.unparsed"); !strings.Contains(p, "its beginning and its end were seen") {
			t.Errorf("agenttrail.llm.request.unparsed %q", p)
		}
		if attr(s, "gen_ai.response.model") != "model-long" || attr(s, "agenttrail.llm.stream") == "true" {
			t.Errorf("response model %s stream %s", attr(s, "gen_ai.response.model"), attr(s, "agenttrail.llm.stream"))
		}
	}
	if !versions["1.1"] || !versions["2"] {
		t.Errorf("protocol versions %v, want HTTP/1.1 and HTTP/2", versions)
	}
}

// TestDecodeTailChecked: a record whose tail is longer than what it captured, or that marks a
// read as head and tail, is dropped and counted as tls_length; a valid one is fed as head and
// tail (its request keeps the model that follows the gap).
func TestDecodeTailChecked(t *testing.T) {
	withTail := func(dir uint8, data string, tail, total uint32) []byte {
		rec := tlsEvent(pidTraced, 1, dir, probes.TLSOpenSSL, 1, data)
		e := tracer.As[probes.TLSEvent](rec)
		e.Flags |= probes.TLSTail
		e.Tail, e.Len = tail, total
		return rec
	}
	for _, tc := range []struct {
		name string
		rec  []byte
	}{
		{"tail longer than captured", withTail(probes.TLSWrite, "abc", 4, 100)},
		{"tail on a read", withTail(probes.TLSRead, "HTTP/1.1 200 OK\r\n", 2, 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOffline(t, consumertest.NewNop())
			o.feed(tc.rec)
			if got := o.counts(t, "agenttrail.ebpf.events.invalid", "kind", "reason"); len(got) != 1 || got["tls_data/tls_length"] != 1 {
				t.Errorf("invalid records %v", got)
			}
		})
	}
	body := `{"messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}],"model":"model-tail"}`
	req := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	head, tail := req[:1000], req[len(req)-300:]
	sink := new(consumertest.TracesSink)
	o := newOffline(t, sink)
	o.feed(withTail(probes.TLSWrite, head+tail, 300, uint32(len(req))))
	if got := o.counts(t, "agenttrail.ebpf.events.invalid", "kind", "reason"); len(got) != 0 {
		t.Fatalf("invalid records %v", got)
	}
	// The connection's end hands the request (without a response) to the span builder.
	o.feed(tlsEvent(pidTraced, 2, probes.TLSClose, probes.TLSOpenSSL, 1, ""))
	o.r.flush(t.Context())
	var models []string
	for _, td := range sink.AllTraces() {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			ss := td.ResourceSpans().At(i).ScopeSpans()
			for j := 0; j < ss.Len(); j++ {
				for k := 0; k < ss.At(j).Spans().Len(); k++ {
					models = append(models, attr(ss.At(j).Spans().At(k), "gen_ai.request.model"))
				}
			}
		}
	}
	if len(models) != 1 || models[0] != "model-tail" {
		t.Errorf("gen_ai.request.model of the spans: %q, want [model-tail]", models)
	}
}

// TestH2JoinedAfterPreface: a Go agent (openai-go) whose HTTP/2 connection to the model was
// opened, and used, before the receiver started: its later calls on that connection become
// inference spans with the model, the response and the tokens; the span says the connection
// was joined after its preface and how many header fields the HPACK table hid (the path, the
// authority: the calls are recognised from their bodies). The response to the first call after
// the start is read by the read Go's HTTP/2 client had blocked on the connection before the
// probes were attached: that call's span comes out when the connection or process ends.
func TestH2JoinedAfterPreface(t *testing.T) {
	requireKernel(t)
	model := startMockModel(t)
	exe := buildOpenAIGo(t)
	base := strings.TrimSuffix(model.url, "/chat/completions")
	t.Setenv("SSL_CERT_FILE", model.ca)
	p := startProgram(t, exe, "model-x")
	p.waitLine(t, "ready")
	p.do(t, "h2keep "+base+" 1", "ok h2keep")
	sink := startReceiver(t, testConfig(TargetConfig{Name: "openai-go", PID: p.cmd.Process.Pid}))
	for range 3 {
		p.do(t, "h2keep "+base+" 1", "ok h2keep")
	}
	pid := p.cmd.Process.Pid
	infs := func(c collected) []ptrace.Span {
		return c.ofPID(pid).where("chat model-x", func(s ptrace.Span) bool { return fromTLS(s) && attr(s, "gen_ai.response.model") != "<missing>" })
	}
	// All three calls after the attach: the first one's response is read by a call in flight
	// at attach time, which Read's RET probe sees with its spill slots' c and b.
	c := waitSpans(t, sink, func(c collected) bool { return len(infs(c)) == 3 })
	for _, s := range infs(c) {
		recordSpan(t, matrixRow{"Go, openai-go v3.102.0", "OpenAI chat completions", "HTTPS, HTTP/2, connection opened before the receiver started", "Go crypto/tls"}, s)
		if attr(s, "agenttrail.http2.joined") != "true" || attr(s, "agenttrail.http2.hidden_fields") == "0" ||
			attr(s, "agenttrail.llm.recognized_from_bodies") != "true" || attr(s, "network.protocol.version") != "2" {
			t.Errorf("joined %s hidden fields %s from bodies %s protocol %s", attr(s, "agenttrail.http2.joined"),
				attr(s, "agenttrail.http2.hidden_fields"), attr(s, "agenttrail.llm.recognized_from_bodies"), attr(s, "network.protocol.version"))
		}
		if attr(s, "gen_ai.request.model") != "model-x" || attr(s, "gen_ai.response.model") != "model-x" ||
			attr(s, "gen_ai.usage.output_tokens") == "<missing>" || attr(s, "gen_ai.provider.name") != "openai" {
			t.Errorf("request model %s response model %s output tokens %s provider %s", attr(s, "gen_ai.request.model"),
				attr(s, "gen_ai.response.model"), attr(s, "gen_ai.usage.output_tokens"), attr(s, "gen_ai.provider.name"))
		}
	}
	if n := len(c.ofPID(pid).named("tls")); n != 0 {
		t.Errorf("%d spans 'tls' (a connection given up)", n)
	}
}

// TestH2ProcessNameTarget: a Go agent selected by process_name, calling the model over one
// HTTP/2 connection from its first instant: the probes may come after the connection's preface
// (they are attached when the exec is seen), and then its frames are joined at the next call, so
// the connection's later calls are not lost for its whole life.
func TestH2ProcessNameTarget(t *testing.T) {
	requireKernel(t)
	model := startMockModel(t)
	exe := buildOpenAIGo(t)
	base := strings.TrimSuffix(model.url, "/chat/completions")
	t.Setenv("SSL_CERT_FILE", model.ca)
	sink := startReceiver(t, testConfig(TargetConfig{Name: "openai-go", ProcessName: filepath.Base(exe)}))
	p := startProgram(t, exe, "model-x")
	p.waitLine(t, "ready")
	p.do(t, "h2keep "+base+" 1", "ok h2keep") // the connection opens, maybe before the probes
	time.Sleep(time.Second)                   // the probes are attached by now
	for range 3 {
		p.do(t, "h2keep "+base+" 1", "ok h2keep")
	}
	pid := p.cmd.Process.Pid
	// The first call after the attach may lose its response to a read already in flight.
	c := waitSpans(t, sink, func(c collected) bool {
		return len(c.ofPID(pid).where("chat model-x", func(s ptrace.Span) bool {
			return fromTLS(s) && attr(s, "gen_ai.response.model") == "model-x"
		})) >= 2
	})
	joined := 0
	for _, s := range c.ofPID(pid).where("chat model-x", fromTLS) {
		if attr(s, "agenttrail.http2.joined") == "true" {
			joined++
		}
	}
	t.Logf("%d of the inference spans came from the connection joined after its preface", joined)
	if n := len(c.ofPID(pid).named("tls")); n != 0 {
		t.Errorf("%d spans 'tls' (a connection given up)", n)
	}
}
