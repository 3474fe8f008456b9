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
	"strings"
	"sync"
	"testing"
)

const systemNode = "/usr/bin/node"

var (
	nodeModulesOnce sync.Once
	nodeModulesErr  error
)

// requireNodeAgent: Debian's Node and the agent's npm packages (testdata/nodeagent, pinned by its
// package-lock.json; scripts/prereqs.sh test-packages installs them, or this does).
func requireNodeAgent(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(systemNode); err != nil {
		t.Skipf("%s is not installed", systemNode)
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "nodeagent"))
	if err != nil {
		t.Fatal(err)
	}
	nodeModulesOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err == nil {
			return
		}
		out, err := exec.Command("npm", "ci", "--prefix", dir, "--no-audit", "--no-fund").CombinedOutput()
		if err != nil {
			nodeModulesErr = fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
		}
	})
	if nodeModulesErr != nil {
		t.Fatal(nodeModulesErr)
	}
	return filepath.Join(dir, "agent.mjs")
}

// startStreamModel serves OpenAI chat completions as server-sent events over HTTPS (the mock
// model answers in one JSON body only); it returns the base URL and its CA in PEM.
func startStreamModel(t *testing.T) (string, []byte) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if r.URL.Path != "/v1/chat/completions" || !strings.Contains(string(body), `"stream":true`) {
			http.Error(w, "not a streamed chat completion", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := `{"id":"chatcmpl-s1","object":"chat.completion.chunk","created":1,"model":"model-x","choices":%s%s}`
		for _, c := range []string{
			fmt.Sprintf(chunk, `[{"index":0,"delta":{"role":"assistant","content":"The balance"},"finish_reason":null}]`, ""),
			fmt.Sprintf(chunk, `[{"index":0,"delta":{"content":" is 42."},"finish_reason":null}]`, ""),
			fmt.Sprintf(chunk, `[{"index":0,"delta":{},"finish_reason":"stop"}]`, ""),
			fmt.Sprintf(chunk, `[]`, `,"usage":{"prompt_tokens":17,"completion_tokens":5,"total_tokens":22}`),
			"[DONE]",
		} {
			fmt.Fprintf(w, "data: %s\n\n", c)
			w.(http.Flusher).Flush()
		}
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv.URL + "/v1", ca
}

// TestNodeOpenAI: a Node agent with the official openai package, traced by its executable's
// path with the default TLS configuration: the receiver finds the OpenSSL Node exports from its
// own executable and reads both a chat completion and a streamed one.
func TestNodeOpenAI(t *testing.T) {
	requireKernel(t)
	script := requireNodeAgent(t)
	model := startMockModel(t)
	streamURL, streamCA := startStreamModel(t)
	mockCA, err := os.ReadFile(model.ca)
	if err != nil {
		t.Fatal(err)
	}
	cas := filepath.Join(t.TempDir(), "cas.pem")
	if err := os.WriteFile(cas, append(append(mockCA, '\n'), streamCA...), 0o600); err != nil {
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
	p.do(t, "stream "+streamURL, "ok stream")
	pid := p.cmd.Process.Pid
	c := waitSpans(t, sink, func(c collected) bool { return len(c.ofPID(pid).where("chat model-x", fromTLS)) == 2 })
	c = c.ofPID(pid)
	var plain, streamed int
	for i, s := range c.spans {
		if s.Name() != "chat model-x" || !fromTLS(s) {
			continue
		}
		if got, _ := c.res[i].Attributes().Get("agenttrail.capture.tls"); got.AsString() != "openssl ("+systemNode+")" {
			t.Errorf("agenttrail.capture.tls %q", got.AsString())
		}
		if attr(s, "agenttrail.tls.library") != "openssl" || attr(s, "gen_ai.request.model") != "model-x" ||
			attr(s, "gen_ai.response.model") != "model-x" || attr(s, "gen_ai.provider.name") != "openai" {
			t.Errorf("inference span: library %s request model %s response model %s", attr(s, "agenttrail.tls.library"),
				attr(s, "gen_ai.request.model"), attr(s, "gen_ai.response.model"))
		}
		if v := attr(s, "network.protocol.version"); v != "1.1" {
			t.Errorf("network.protocol.version %s", v)
		}
		if attr(s, "gen_ai.usage.input_tokens") == "<missing>" || attr(s, "gen_ai.usage.output_tokens") == "<missing>" {
			t.Errorf("no tokens: input %s output %s", attr(s, "gen_ai.usage.input_tokens"), attr(s, "gen_ai.usage.output_tokens"))
		}
		if attr(s, "agenttrail.llm.stream") == "true" {
			streamed++
			if attr(s, "gen_ai.usage.input_tokens") != "17" || attr(s, "gen_ai.usage.output_tokens") != "5" {
				t.Errorf("streamed tokens: input %s output %s", attr(s, "gen_ai.usage.input_tokens"), attr(s, "gen_ai.usage.output_tokens"))
			}
		} else {
			plain++
		}
	}
	if plain != 1 || streamed != 1 {
		t.Errorf("%d chat and %d streamed inference spans, want 1 each", plain, streamed)
	}
}

// TestExportsOpenSSL: a program that exports OpenSSL (Node) is found by its dynamic symbols; one
// that does not (this Go test binary) is not.
func TestExportsOpenSSL(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if found, err := exportsOpenSSL(self); found || err != nil {
		t.Errorf("the test binary: found %v, err %v", found, err)
	}
	if _, err := os.Stat(systemNode); err != nil {
		t.Skipf("%s is not installed", systemNode)
	}
	if found, err := exportsOpenSSL(systemNode); !found || err != nil {
		t.Errorf("%s: found %v, err %v", systemNode, found, err)
	}
}

func TestTLSClass(t *testing.T) {
	for in, want := range map[string]string{
		"none": "none", "openssl": "openssl", "openssl (/usr/bin/node)": "openssl",
		"go,openssl (/opt/a, b/node)": "go,openssl", "openssl (/usr/bin/node),openssl": "openssl,openssl",
	} {
		if got := tlsClass(in); got != want {
			t.Errorf("tlsClass(%q) = %q, want %q", in, got, want)
		}
	}
}
