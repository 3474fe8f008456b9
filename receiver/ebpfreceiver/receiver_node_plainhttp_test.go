package ebpfreceiver

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// plainChatModel answers OpenAI chat completions over plain HTTP: JSON, or server-sent events
// when the request says "stream": true; the usage differs per kind so that a span's tokens show
// which response it read.
func plainChatModel(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if r.URL.Path != "/v1/chat/completions" {
		http.Error(w, "not served here", http.StatusBadRequest)
		return
	}
	if !strings.Contains(string(body), `"stream":true`) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-p1","object":"chat.completion","created":1,"model":"model-x","choices":[{"index":0,"message":{"role":"assistant","content":"The balance is 42."},"finish_reason":"stop"}],"usage":{"prompt_tokens":13,"completion_tokens":6,"total_tokens":19}}`)
		return
	}
	chunk := `data: {"id":"chatcmpl-p2","object":"chat.completion.chunk","created":1,"model":"model-x","choices":%s%s}`
	w.Header().Set("Content-Type", "text/event-stream")
	for _, e := range []string{
		fmt.Sprintf(chunk, `[{"index":0,"delta":{"role":"assistant","content":"The balance"},"finish_reason":null}]`, ""),
		fmt.Sprintf(chunk, `[{"index":0,"delta":{"content":" is 42."},"finish_reason":"stop"}]`, ""),
		fmt.Sprintf(chunk, `[]`, `,"usage":{"prompt_tokens":17,"completion_tokens":5,"total_tokens":22}`),
		"data: [DONE]",
	} {
		fmt.Fprintf(w, "%s\n\n", e)
		w.(http.Flusher).Flush()
	}
}

// TestNodePlainHTTP: the official openai npm SDK on Node 20 calling a model over plain HTTP
// (a model served inside the cluster). Node's HTTP client writes a request's headers and its
// body in one writev: the kernel captures every buffer of the call (bounded), so the span has
// the request's model and the response's tokens, JSON and streamed.
func TestNodePlainHTTP(t *testing.T) {
	requireKernel(t)
	script := requireNodeAgent(t)
	srv := httptest.NewServer(http.HandlerFunc(plainChatModel))
	t.Cleanup(srv.Close)
	cfg := testConfig(TargetConfig{Name: "node-agent", Executable: systemNode})
	if cfg.Sockets.CaptureBytes == 0 {
		t.Fatalf("sockets.capture_bytes is 0 by default: plain HTTP is not read")
	}
	sink := startReceiver(t, cfg)
	p := startProgram(t, systemNode, script, "model-x")
	p.waitLine(t, "ready")
	p.do(t, "chat "+srv.URL+"/v1", "ok chat")
	p.do(t, "stream "+srv.URL+"/v1", "ok stream")
	pid := p.cmd.Process.Pid
	c := waitSpans(t, sink, func(c collected) bool {
		n := 0
		for _, s := range c.ofPID(pid).spans {
			if attr(s, "agenttrail.capture.source") == "plaintext" && attr(s, "gen_ai.operation.name") == "chat" {
				n++
			}
		}
		return n == 2
	})
	want := map[string]string{"false": "13/6", "true": "17/5"}
	seen := map[string]int{}
	for _, s := range c.ofPID(pid).spans {
		if attr(s, "agenttrail.capture.source") != "plaintext" || attr(s, "gen_ai.operation.name") != "chat" {
			continue
		}
		stream := fmt.Sprint(attr(s, "agenttrail.llm.stream") == "true")
		seen[stream]++
		if s.Name() != "chat model-x" || attr(s, "gen_ai.request.model") != "model-x" || attr(s, "gen_ai.response.model") != "model-x" ||
			attr(s, "network.protocol.version") != "1.1" {
			t.Errorf("stream %s: %q request model %s response model %s protocol %s", stream, s.Name(), attr(s, "gen_ai.request.model"),
				attr(s, "gen_ai.response.model"), attr(s, "network.protocol.version"))
		}
		if got := attr(s, "gen_ai.usage.input_tokens") + "/" + attr(s, "gen_ai.usage.output_tokens"); got != want[stream] {
			t.Errorf("stream %s: tokens %s, want %s", stream, got, want[stream])
		}
		api := "OpenAI chat completions"
		if stream == "true" {
			api += ", streamed"
		}
		recordSpan(t, matrixRow{"Node 20 (Debian), npm openai 7.55.0", api, "HTTP/1.1 (plain, on the socket)", "none"}, s)
	}
	if seen["false"] != 1 || seen["true"] != 1 {
		t.Errorf("plain-HTTP chat spans by stream flag: %v", seen)
	}
}
