package ebpfreceiver

import (
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const systemNode = "/usr/bin/node"

// npmInstalls: one `npm ci` per package directory per test binary (*npmInstall by directory).
var npmInstalls sync.Map

type npmInstall struct {
	once sync.Once
	err  error
}

// requireNodePackages: Debian's Node and the npm packages of the test directory dir (pinned by its
// package-lock.json; scripts/prereqs.sh test-packages installs them, or this does, once per
// directory). marker, a path under dir/node_modules, says they are installed. The absolute dir.
func requireNodePackages(t *testing.T, dir string, marker ...string) string {
	t.Helper()
	if _, err := os.Stat(systemNode); err != nil {
		t.Skipf("%s is not installed", systemNode)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := npmInstalls.LoadOrStore(dir, &npmInstall{})
	in := v.(*npmInstall)
	in.once.Do(func() {
		if _, err := os.Stat(filepath.Join(append([]string{dir, "node_modules"}, marker...)...)); err == nil {
			return
		}
		out, err := exec.Command("npm", "ci", "--prefix", dir, "--no-audit", "--no-fund").CombinedOutput()
		if err != nil {
			in.err = fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
		}
	})
	if in.err != nil {
		t.Fatal(in.err)
	}
	return dir
}

// requireNodeAgent: Debian's Node and the agent's npm packages (testdata/nodeagent, pinned by its
// package-lock.json; scripts/prereqs.sh test-packages installs them, or this does).
func requireNodeAgent(t *testing.T) string {
	t.Helper()
	return filepath.Join(requireNodePackages(t, filepath.Join("testdata", "nodeagent"), "openai", "package.json"), "agent.mjs")
}

// startSDKModel serves what the mock model does not: OpenAI chat completions as server-sent
// events, and Anthropic messages (JSON with a tool call, and server-sent events), over HTTPS; it
// returns the base URL and its CA in PEM.
func startSDKModel(t *testing.T) (string, []byte) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		stream := strings.Contains(string(body), `"stream":true`)
		var events []string
		switch {
		case r.URL.Path == "/v1/chat/completions" && stream:
			chunk := `data: {"id":"chatcmpl-s1","object":"chat.completion.chunk","created":1,"model":"model-x","choices":%s%s}`
			events = []string{
				fmt.Sprintf(chunk, `[{"index":0,"delta":{"role":"assistant","content":"The balance"},"finish_reason":null}]`, ""),
				fmt.Sprintf(chunk, `[{"index":0,"delta":{"content":" is 42."},"finish_reason":null}]`, ""),
				fmt.Sprintf(chunk, `[{"index":0,"delta":{},"finish_reason":"stop"}]`, ""),
				fmt.Sprintf(chunk, `[]`, `,"usage":{"prompt_tokens":17,"completion_tokens":5,"total_tokens":22}`),
				"data: [DONE]",
			}
		case r.URL.Path == "/v1/messages" && stream:
			events = []string{
				`event: message_start` + "\n" + `data: {"type":"message_start","message":{"id":"msg_s1","type":"message","role":"assistant","model":"model-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":23,"output_tokens":1}}}`,
				`event: content_block_start` + "\n" + `data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
				`event: content_block_delta` + "\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"The balance is 42."}}`,
				`event: content_block_stop` + "\n" + `data: {"type":"content_block_stop","index":0}`,
				`event: message_delta` + "\n" + `data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}`,
				`event: message_stop` + "\n" + `data: {"type":"message_stop"}`,
			}
		case r.URL.Path == "/v1/messages":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"model-x","content":[{"type":"tool_use","id":"toolu_1","name":"get_balance","input":{"customer":"C1001"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":29,"output_tokens":11}}`)
			return
		default:
			http.Error(w, "not served here", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, e := range events {
			fmt.Fprintf(w, "%s\n\n", e)
			w.(http.Flusher).Flush()
		}
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv.URL, ca
}

// TestNodeOpenAI: a Node agent with the official openai and @anthropic-ai/sdk packages, traced
// by its executable's path with the default TLS configuration: the receiver finds the OpenSSL
// Node exports from its own executable and reads chat completions and Anthropic messages, each
// plain and streamed, as one inference span per call.
func TestNodeOpenAI(t *testing.T) {
	requireKernel(t)
	script := requireNodeAgent(t)
	model := startMockModel(t)
	sdkURL, sdkCA := startSDKModel(t)
	mockCA, err := os.ReadFile(model.ca)
	if err != nil {
		t.Fatal(err)
	}
	cas := filepath.Join(t.TempDir(), "cas.pem")
	if err := os.WriteFile(cas, append(append(mockCA, '\n'), sdkCA...), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NODE_EXTRA_CA_CERTS", cas)
	cfg := testConfig(TargetConfig{Name: "node-agent", Executable: systemNode})
	if len(cfg.TLS.Libraries) != 1 || cfg.TLS.Libraries[0] != "libssl.so.3" {
		t.Fatalf("the default tls.libraries changed: %v", cfg.TLS.Libraries)
	}
	sink := startReceiver(t, cfg)
	p := startProgram(t, systemNode, script, "model-x")
	p.waitLine(t, "ready")
	p.do(t, "chat "+strings.TrimSuffix(model.url, "/chat/completions"), "ok chat")
	p.do(t, "stream "+sdkURL+"/v1", "ok stream")
	p.do(t, "messages "+sdkURL, "ok messages tool_use")
	p.do(t, "messages-stream "+sdkURL, "ok messages-stream")
	pid := p.cmd.Process.Pid
	c := waitSpans(t, sink, func(c collected) bool { return len(c.ofPID(pid).where("chat model-x", fromTLS)) == 4 })
	c = c.ofPID(pid)
	// Each call once, by provider and stream flag: the tokens its response said.
	want := map[string]string{
		"openai false":    "", // the mock model's usage, whatever it counts
		"openai true":     "17/5 <missing>",
		"anthropic false": "29/11 get_balance",
		"anthropic true":  "23/9 <missing>",
	}
	seen := map[string]int{}
	for i, s := range c.spans {
		if s.Name() != "chat model-x" || !fromTLS(s) {
			continue
		}
		key := attr(s, "gen_ai.provider.name") + " " + strconv.FormatBool(attr(s, "agenttrail.llm.stream") == "true")
		seen[key]++
		recordSpan(t, matrixRow{"Node 20 (Debian), npm openai 7.55.0 and @anthropic-ai/sdk 1.10.0", sdkAPI(key), "HTTPS, HTTP/1.1", "OpenSSL exported by node"}, s)
		if got, _ := c.res[i].Attributes().Get("agenttrail.capture.tls"); got.AsString() != "openssl ("+systemNode+")" {
			t.Errorf("%s: agenttrail.capture.tls %q", key, got.AsString())
		}
		if attr(s, "agenttrail.tls.library") != "openssl" || attr(s, "gen_ai.request.model") != "model-x" ||
			attr(s, "gen_ai.response.model") != "model-x" || attr(s, "network.protocol.version") != "1.1" {
			t.Errorf("%s: library %s request model %s response model %s protocol %s", key, attr(s, "agenttrail.tls.library"),
				attr(s, "gen_ai.request.model"), attr(s, "gen_ai.response.model"), attr(s, "network.protocol.version"))
		}
		got := attr(s, "gen_ai.usage.input_tokens") + "/" + attr(s, "gen_ai.usage.output_tokens") + " " + strings.Join(strSlice(s, "agenttrail.tool_calls.names"), ",")
		if strings.HasSuffix(got, " ") {
			got += "<missing>"
		}
		if w, ok := want[key]; !ok || got != w && (w != "" || strings.Contains(got, "<missing>/") || strings.Contains(got, "/<missing>")) {
			t.Errorf("%s: tokens and tool calls %q, want %q", key, got, w)
		}
	}
	for key := range want {
		if seen[key] != 1 {
			t.Errorf("%s: %d inference spans, want 1 (all: %v)", key, seen[key], seen)
		}
	}
}

// TestNodeElsewhereAlreadyRunning: a Node installed at another path (as nvm does), started
// before the receiver and traced by its PID: its OpenSSL is found from the running process's
// executable, not from a configured path.
func TestNodeElsewhereAlreadyRunning(t *testing.T) {
	requireKernel(t)
	script := requireNodeAgent(t)
	sdkURL, sdkCA := startSDKModel(t)
	node := filepath.Join(t.TempDir(), ".nvm", "versions", "node", "v20", "bin", "node")
	if err := os.MkdirAll(filepath.Dir(node), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(systemNode, node); err != nil {
		t.Skipf("cannot link %s elsewhere: %v", systemNode, err)
	}
	cas := filepath.Join(t.TempDir(), "cas.pem")
	if err := os.WriteFile(cas, sdkCA, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NODE_EXTRA_CA_CERTS", cas)
	p := startProgram(t, node, script, "model-x")
	p.waitLine(t, "ready")
	pid := p.cmd.Process.Pid
	sink := startReceiver(t, testConfig(TargetConfig{Name: "node-agent", PID: pid}))
	p.do(t, "stream "+sdkURL+"/v1", "ok stream")
	c := waitSpans(t, sink, func(c collected) bool { return len(c.ofPID(pid).where("chat model-x", fromTLS)) == 1 })
	c = c.ofPID(pid)
	for i, s := range c.spans {
		if s.Name() != "chat model-x" || !fromTLS(s) {
			continue
		}
		if got, _ := c.res[i].Attributes().Get("agenttrail.capture.tls"); got.AsString() != "openssl ("+node+")" {
			t.Errorf("agenttrail.capture.tls %q", got.AsString())
		}
		if attr(s, "gen_ai.usage.output_tokens") != "5" || attr(s, "agenttrail.llm.stream") != "true" {
			t.Errorf("output tokens %s stream %s", attr(s, "gen_ai.usage.output_tokens"), attr(s, "agenttrail.llm.stream"))
		}
	}
}
