package ebpfreceiver

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// requireHTTPX: Debian's python3.11 with python3-httpx (0.23.3) and python3-h2 (4.1.0, httpx's
// HTTP/2), which scripts/prereqs.sh test-packages installs.
func requireHTTPX(t *testing.T) {
	t.Helper()
	requirePython(t)
	if out, err := exec.Command(python311, "-c", "import httpx, h2; assert httpx.__version__ == '0.23.3', httpx.__version__").CombinedOutput(); err != nil {
		t.Skipf("Debian's python3-httpx 0.23.3 and python3-h2 are not installed (scripts/prereqs.sh test-packages): %v\n%s", err, out)
	}
}

// httpxModel answers OpenAI chat completions as a model that calls the first tool the request
// offers, with the customer id of the prompt: as JSON, or as server-sent events (the tool call in
// deltas, usage in a last chunk) when the request says "stream": true. Usage counts are fixed per
// kind so that a span's tokens show which response it read.
func httpxModel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string `json:"model"`
		Stream   bool   `json:"stream"`
		Messages []struct {
			Content string `json:"content"`
		} `json:"messages"`
		Tools []struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		} `json:"tools"`
	}
	if r.URL.Path != "/v1/chat/completions" || json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req) != nil ||
		len(req.Tools) == 0 || len(req.Messages) == 0 {
		http.Error(w, `{"error":{"message":"want a chat completion offering a tool"}}`, http.StatusBadRequest)
		return
	}
	customer := "C1001"
	if strings.Contains(req.Messages[0].Content, "C1002") {
		customer = "C1002"
	}
	tool, args := req.Tools[0].Function.Name, strconv.Quote(`{"customer_id":"`+customer+`"}`)
	id := "call_" + customer
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":%q,"type":"function","function":{"name":%q,"arguments":%s}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":21,"completion_tokens":7,"total_tokens":28}}`,
			req.Model, id, tool, args)
		return
	}
	chunk := `data: {"id":"chatcmpl-s1","object":"chat.completion.chunk","created":1,"model":` + strconv.Quote(req.Model) + `,"choices":%s%s}`
	events := []string{
		fmt.Sprintf(chunk, `[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":`+strconv.Quote(id)+`,"type":"function","function":{"name":`+strconv.Quote(tool)+`,"arguments":""}}]},"finish_reason":null}]`, ""),
		fmt.Sprintf(chunk, `[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":`+args+`}}]},"finish_reason":null}]`, ""),
		fmt.Sprintf(chunk, `[{"index":0,"delta":{},"finish_reason":"tool_calls"}]`, ""),
		fmt.Sprintf(chunk, `[]`, `,"usage":{"prompt_tokens":23,"completion_tokens":9,"total_tokens":32}`),
		"data: [DONE]",
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for _, e := range events {
		fmt.Fprintf(w, "%s\n\n", e)
		w.(http.Flusher).Flush()
	}
}

// TestPythonHTTPX: Python agents' model client, Debian's httpx 0.23.3, as httpx.Client and as
// httpx.AsyncClient under asyncio (two calls in flight at once under asyncio.gather), over HTTPS
// (Python's ssl module: OpenSSL, HTTP/1.1 and HTTP/2 with Debian's h2) and plain HTTP/1.1, each
// with a JSON answer and a streamed one (server-sent events): every call is one inference span
// with the model, the tokens and the tool call the model made from the request's tools, the
// stream flag, the HTTP version and the server, read from TLS or from the socket as it went.
func TestPythonHTTPX(t *testing.T) {
	requireKernel(t)
	requireHTTPX(t)
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(httpxModel))
	tlsSrv.EnableHTTP2 = true
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	plainSrv := httptest.NewServer(http.HandlerFunc(httpxModel))
	t.Cleanup(plainSrv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "pyhttpx", "httpx_agent.py"))
	if err != nil {
		t.Fatal(err)
	}
	// The model-calling functions are configured, as a user who wants the code that called:
	// the sync one is a span of its own, the coroutine spans of its runs between awaits.
	cfg := testConfig(TargetConfig{Name: "py-httpx", Executable: python311, PythonFunctions: []PythonFunctionConfig{
		{Pattern: "httpx_agent:call_model", Role: "inference", Model: "model-x"},
		{Pattern: "httpx_agent:call_model_async", Role: "inference", Model: "model-x"},
	}})
	cfg.Python.SpanIdleTimeout = time.Second
	cfg.TLS.CaptureMessageContent = true // the prompt shows which request a response was paired with
	if cfg.Sockets.CaptureBytes == 0 {
		t.Fatalf("sockets.capture_bytes is 0 by default: plain HTTP is not read")
	}
	sink := startReceiver(t, cfg)
	type transport struct{ version, base, name, tls string }
	transports := []transport{
		{"h1", tlsSrv.URL + "/v1", "HTTPS, HTTP/1.1", "OpenSSL (libssl.so.3)"},
		{"h2", tlsSrv.URL + "/v1", "HTTPS, HTTP/2 (h2 4.1.0)", "OpenSSL (libssl.so.3)"},
		{"h1", plainSrv.URL + "/v1", "HTTP/1.1 (plain, on the socket)", "none"},
	}
	clients := map[string]string{
		"sync":  "Python 3.11 (Debian), httpx 0.23.3 Client",
		"async": "Python 3.11 (Debian), httpx 0.23.3 AsyncClient (asyncio, two calls in flight)",
	}
	agents := map[int]string{}
	for _, mode := range []string{"sync", "async"} {
		p := startProgram(t, python311, "-B", "-u", "-E", "-s", script, ca, "model-x")
		p.waitLine(t, "ready")
		agents[p.cmd.Process.Pid] = mode
		for _, tr := range transports {
			for _, kind := range []string{"json", "stream"} {
				version := "HTTP/1.1"
				if tr.version == "h2" {
					version = "HTTP/2"
				}
				p.do(t, strings.Join([]string{mode, tr.version, kind, tr.base}, " "), "ok "+mode+" "+version+" accounts-summary")
			}
		}
	}
	perMode := map[string]int{"sync": 1, "async": 2} // calls per command
	key := func(s ptrace.Span) string {
		src := attr(s, "agenttrail.capture.source")
		if src == "<missing>" {
			src = "tls"
		}
		return src + " " + attr(s, "network.protocol.version") + " " + strconv.FormatBool(attr(s, "agenttrail.llm.stream") == "true")
	}
	want := map[string]bool{"tls 1.1 false": true, "tls 1.1 true": true, "tls 2 false": true, "tls 2 true": true, "plaintext 1.1 false": true, "plaintext 1.1 true": true}
	infs := func(c collected, pid int) []ptrace.Span {
		return c.ofPID(pid).where("chat model-x", fromTLS)
	}
	// All calls, and the spans they are under (a function's span ends after the idle timeout).
	c := waitSpans(t, sink, func(c collected) bool {
		for pid, mode := range agents {
			if len(infs(c, pid)) < len(want)*perMode[mode] {
				return false
			}
			for _, s := range infs(c, pid) {
				if _, ok := c.byID(s.ParentSpanID()); !ok && !s.ParentSpanID().IsEmpty() {
					return false
				}
			}
		}
		return true
	})
	for pid, mode := range agents {
		dump(t, c.ofPID(pid))
		seen := map[string]int{}
		for _, s := range infs(c, pid) {
			k := key(s)
			seen[k]++
			// Under the code that made the call: the configured function's span (a coroutine's
			// call, for the AsyncClient; found from the Python stack a TLS write carries). A
			// plain-HTTP write carries no stack: its span goes under the thread's open call,
			// which the Client's call_model is; the AsyncClient's has none then (no parent, and
			// agenttrail.parent.missing says why; see the README's runtime matrix).
			fn := "httpx_agent:call_model"
			if mode == "async" {
				fn += "_async"
			}
			par, ok := c.byID(s.ParentSpanID())
			parName := "<none>"
			if ok {
				parName = par.Name()
			}
			if mode == "async" && attr(s, "agenttrail.capture.source") == "plaintext" {
				// No parent, and the span says why: the call's coroutine was open, but which
				// coroutine runs when a socket is written cannot be known.
				if ok || attr(s, "agenttrail.parent.missing") != "coroutine_not_known" {
					t.Errorf("%s %s: parent %q, agenttrail.parent.missing %q", mode, k, parName, attr(s, "agenttrail.parent.missing"))
				}
			} else if !ok || !observed(par) || attr(par, "code.function.name") != fn {
				t.Errorf("%s %s: parent %q, want the span of %s", mode, k, parName, fn)
			}
			// Each response is paired with its request, also with two calls in flight on one
			// connection (HTTP/2) or two connections: the tool call names the prompt's customer.
			if ids := strSlice(s, "agenttrail.tool_calls.ids"); len(ids) == 1 && !strings.Contains(attr(s, "gen_ai.input.messages"), strings.TrimPrefix(ids[0], "call_")) {
				t.Errorf("%s %s: tool call %s answers %s", mode, k, ids[0], attr(s, "gen_ai.input.messages"))
			}
			stream := attr(s, "agenttrail.llm.stream") == "true"
			tr := transports[0]
			switch {
			case attr(s, "agenttrail.capture.source") == "plaintext":
				tr = transports[2]
			case attr(s, "network.protocol.version") == "2":
				tr = transports[1]
			}
			api := "OpenAI chat completions, tools offered"
			if stream {
				api = "OpenAI chat completions, tools offered, streamed"
			}
			recordSpan(t, matrixRow{clients[mode], api, tr.name, tr.tls}, s)
			tokens := "21/7"
			if stream {
				tokens = "23/9"
			}
			got := attr(s, "gen_ai.usage.input_tokens") + "/" + attr(s, "gen_ai.usage.output_tokens")
			names, ids := strSlice(s, "agenttrail.tool_calls.names"), strSlice(s, "agenttrail.tool_calls.ids")
			if got != tokens || len(names) != 1 || names[0] != "accounts-summary" || len(ids) != 1 || !strings.HasPrefix(ids[0], "call_C100") {
				t.Errorf("%s %s: tokens %s (want %s), tool calls %v %v", mode, k, got, tokens, names, ids)
			}
			if fr := strSlice(s, "gen_ai.response.finish_reasons"); len(fr) != 1 || fr[0] != "tool_calls" {
				t.Errorf("%s %s: finish reasons %v", mode, k, fr)
			}
			if attr(s, "gen_ai.request.model") != "model-x" || attr(s, "gen_ai.response.model") != "model-x" ||
				attr(s, "gen_ai.provider.name") != "openai" || attr(s, "http.response.status_code") != "200" || attr(s, "url.path") != "/v1/chat/completions" {
				t.Errorf("%s %s: request model %s response model %s provider %s status %s path %s", mode, k, attr(s, "gen_ai.request.model"),
					attr(s, "gen_ai.response.model"), attr(s, "gen_ai.provider.name"), attr(s, "http.response.status_code"), attr(s, "url.path"))
			}
			srvURL := tlsSrv.URL
			if tr == transports[2] {
				srvURL = plainSrv.URL
			}
			host, port, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(srvURL, "https://"), "http://"))
			if attr(s, "server.address") != host || attr(s, "server.port") != port {
				t.Errorf("%s %s: server %s:%s, want %s:%s", mode, k, attr(s, "server.address"), attr(s, "server.port"), host, port)
			}
			lib := attr(s, "agenttrail.tls.library")
			if tr == transports[2] && lib != "<missing>" || tr != transports[2] && lib != "openssl" {
				t.Errorf("%s %s: agenttrail.tls.library %s", mode, k, lib)
			}
		}
		for k := range want {
			if seen[k] != perMode[mode] {
				t.Errorf("%s: %d inference spans %s, want %d (all: %v)", mode, seen[k], k, perMode[mode], seen)
			}
		}
		if len(seen) != len(want) {
			t.Errorf("%s: inference spans %v, want one kind each of %v", mode, seen, want)
		}
	}
}
