package ebpfreceiver

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// requireMCPClient: Debian's Node and the MCP TypeScript SDK with the reference servers
// (internal/mcp/testdata/nodeclient, pinned by its package-lock.json; scripts/prereqs.sh
// test-packages installs them, or this does).
func requireMCPClient(t *testing.T) string {
	t.Helper()
	return filepath.Join(requireNodePackages(t, filepath.Join("internal", "mcp", "testdata", "nodeclient"), "@modelcontextprotocol", "server-filesystem", "package.json"), "client.mjs")
}

// TestNodeMCPStdio: a Node agent on the official MCP SDK spawns the reference filesystem server
// over stdio (a socketpair, as Node gives a child's stdio) and calls its tools. Each tools/call
// is one execute_tool span with the JSON-RPC id, the redacted arguments and the result's size,
// and the server process's openat of the file is nested under the call that asked for it.
func TestNodeMCPStdio(t *testing.T) {
	requireKernel(t)
	client := requireMCPClient(t)
	dir := t.TempDir()
	notes := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notes, []byte("api_key=sk-live-0123456789abcdefghij the notes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(TargetConfig{Name: "mcp-agent", Executable: systemNode})
	sink := startReceiver(t, cfg)
	cmd := exec.Command(systemNode, client, "filesystem", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "call read_text_file error") {
		t.Fatalf("client output:\n%s", out)
	}
	pid := cmd.Process.Pid
	c := waitSpans(t, sink, func(c collected) bool {
		n := 0
		for _, s := range c.ofPID(pid).spans {
			if strings.HasPrefix(s.Name(), "execute_tool ") {
				n++
			}
		}
		return n == 3
	})
	agent := c.ofPID(pid)
	var tools []ptrace.Span
	var list ptrace.Span
	for _, s := range agent.spans {
		switch {
		case strings.HasPrefix(s.Name(), "execute_tool "):
			tools = append(tools, s)
		case s.Name() == "tools/list":
			list = s
		}
	}
	if list.Name() == "" || attr(list, "mcp.server.name") != "secure-filesystem-server" {
		t.Errorf("tools/list span: %q server %q", list.Name(), attr(list, "mcp.server.name"))
	}
	byID := map[string]ptrace.Span{}
	for _, s := range tools {
		byID[attr(s, "gen_ai.tool.call.id")] = s
	}
	read, missing := byID["2"], byID["4"]
	if read.Name() != "execute_tool read_text_file" || byID["3"].Name() != "execute_tool list_directory" || missing.Name() != "execute_tool read_text_file" {
		t.Fatalf("tool spans by id: %v", byID)
	}
	if got := attr(read, "gen_ai.tool.call.arguments"); got != `{"path":"`+notes+`"}` {
		t.Errorf("arguments %q", got)
	}
	if attr(read, "mcp.server.name") != "secure-filesystem-server" || attr(read, "mcp.method.name") != "tools/call" ||
		read.Kind() != ptrace.SpanKindClient || attrInt(read, "agenttrail.mcp.result.size") < 50 ||
		!strings.Contains(attr(read, "agenttrail.mcp.server.command_line"), "server-filesystem") ||
		read.Status().Code() == ptrace.StatusCodeError {
		t.Errorf("read span: server %q method %q kind %v size %d command %q status %v", attr(read, "mcp.server.name"), attr(read, "mcp.method.name"),
			read.Kind(), attrInt(read, "agenttrail.mcp.result.size"), attr(read, "agenttrail.mcp.server.command_line"), read.Status().Code())
	}
	if missing.Status().Code() != ptrace.StatusCodeError || attr(missing, "error.type") != "tool_error" {
		t.Errorf("the failed read: status %v error.type %q", missing.Status().Code(), attr(missing, "error.type"))
	}
	// The server's openat of the file is under the read's span (another process's span).
	var found bool
	for _, s := range c.spans {
		if s.Name() == "openat" && attr(s, "file.path") == notes && s.ParentSpanID() == read.SpanID() && s.TraceID() == read.TraceID() {
			found = true
		}
	}
	if !found {
		var opens []string
		for _, s := range c.spans {
			if s.Name() == "openat" && strings.Contains(attr(s, "file.path"), "notes") {
				p, _ := c.byID(s.ParentSpanID())
				opens = append(opens, attr(s, "file.path")+" under "+p.Name())
			}
		}
		t.Errorf("the server's openat of %s is not under %s (%s): %v", notes, read.Name(), read.SpanID(), opens)
	}
}

// goMCPWithSecret builds the Go SDK program and writes the file its read_file calls read.
func goMCPWithSecret(t *testing.T) (bin, secret string) {
	t.Helper()
	bin = buildGoMCP(t)
	secret = filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(secret, []byte("the secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return bin, secret
}

// buildGoMCP builds the Go SDK program that is also the MCP story's agent (one program for both).
func buildGoMCP(t *testing.T) string { return buildTestProgram(t, "./testdata/mcpstory") }

// mcpSpans returns the agent's execute_tool spans in the order of their JSON-RPC ids.
func mcpTools(c collected) map[string]ptrace.Span {
	out := map[string]ptrace.Span{}
	for _, s := range c.spans {
		if strings.HasPrefix(s.Name(), "execute_tool ") {
			out[attr(s, "gen_ai.tool.call.id")] = s
		}
	}
	return out
}

// childrenOf returns the names (with their path or peer) of c's spans under parent.
func childrenOf(c collected, parent ptrace.Span) []string {
	var out []string
	for _, s := range c.spans {
		if s.ParentSpanID() == parent.SpanID() && s.TraceID() == parent.TraceID() {
			detail := attr(s, "file.path")
			if detail == "<missing>" {
				detail = attr(s, "network.peer.port")
			}
			out = append(out, s.Name()+" "+detail)
		}
	}
	return out
}

// TestGoMCPStdio: the Go SDK's client spawns its server over stdio (pipes): read_file's span has
// the server's openat of the file under it, fetch's the server's connect to the URL's host.
func TestGoMCPStdio(t *testing.T) {
	requireKernel(t)
	bin, secret := goMCPWithSecret(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "a page") }))
	defer page.Close()
	ln := strings.TrimPrefix(page.URL, "http://")
	_, port, _ := strings.Cut(ln, ":")
	sink := startReceiver(t, testConfig(TargetConfig{Name: "go-mcp-agent", Executable: bin}))
	cmd := exec.Command(bin, "client-stdio", secret, "http://"+ln+"/page")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	pid := cmd.Process.Pid
	c := waitSpans(t, sink, func(c collected) bool { return len(mcpTools(c.ofPID(pid))) == 3 })
	tools := mcpTools(c.ofPID(pid))
	for _, s := range c.ofPID(pid).spans {
		if p := attr(s, "agenttrail.mcp.problem"); p != "<missing>" {
			t.Errorf("%s (id %s): %s", s.Name(), attr(s, "jsonrpc.request.id"), p)
		}
	}
	// server/discover is 1, tools/list 2.
	read, fetch, missing := tools["3"], tools["4"], tools["5"]
	if read.Name() != "execute_tool read_file" || fetch.Name() != "execute_tool fetch" || missing.Name() != "execute_tool read_file" {
		t.Fatalf("tool spans: %v", tools)
	}
	if attr(read, "mcp.server.name") != "agenttrail-go-server" || attr(read, "network.transport") != "pipe" ||
		attr(read, "gen_ai.tool.call.arguments") != `{"path":"`+secret+`"}` || missing.Status().Code() != ptrace.StatusCodeError {
		t.Errorf("read: server %q transport %q arguments %q; missing: %v", attr(read, "mcp.server.name"), attr(read, "network.transport"),
			attr(read, "gen_ai.tool.call.arguments"), missing.Status().Code())
	}
	under := childrenOf(c, read)
	if !contains(under, "openat "+secret) {
		t.Errorf("under read_file: %v", under)
	}
	if under := childrenOf(c, fetch); !contains(under, "connect "+port) {
		t.Errorf("under fetch: %v (want the server's connect to %s)", under, port)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestGoMCPStreamableHTTP: the Go SDK's client against its streamable HTTP server, in plaintext:
// the same execute_tool spans, with the server's address.
func TestGoMCPStreamableHTTP(t *testing.T) {
	requireKernel(t)
	bin, secret := goMCPWithSecret(t)
	srv := startProgram(t, bin, "serve-http", "127.0.0.1:0")
	var addr string
	select {
	case line := <-srv.lines:
		addr = strings.TrimPrefix(line, "listening ")
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not start")
	}
	sink := startReceiver(t, testConfig(TargetConfig{Name: "go-mcp-agent", Executable: bin}))
	cmd := exec.Command(bin, "client-http", "http://"+addr, secret)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	pid := cmd.Process.Pid
	c := waitSpans(t, sink, func(c collected) bool { return len(mcpTools(c.ofPID(pid))) == 2 })
	tools := mcpTools(c.ofPID(pid))
	var read ptrace.Span
	for _, s := range tools {
		if attr(s, "gen_ai.tool.call.arguments") == `{"path":"`+secret+`"}` {
			read = s
		}
	}
	if read.Name() != "execute_tool read_file" || attr(read, "agenttrail.mcp.transport") != "streamable_http" ||
		attr(read, "mcp.server.name") != "agenttrail-go-server" || attr(read, "network.transport") != "tcp" ||
		attr(read, "server.address") != "127.0.0.1" || attrInt(read, "agenttrail.mcp.result.size") <= 0 {
		t.Errorf("read over HTTP: %q transport %q server %q network %q address %q size %d", read.Name(), attr(read, "agenttrail.mcp.transport"),
			attr(read, "mcp.server.name"), attr(read, "network.transport"), attr(read, "server.address"), attrInt(read, "agenttrail.mcp.result.size"))
	}
	// No bare POST span for what was MCP.
	for _, s := range c.ofPID(pid).spans {
		if s.Name() == "POST" {
			t.Errorf("a POST span beside the MCP spans: %s", attr(s, "url.path"))
		}
	}
}

// TestPlainHTTPInference: Python's http.client calls a model over plain HTTP (a model served in
// the cluster): the same inference span as over TLS, saying it was read in plaintext.
func TestPlainHTTPInference(t *testing.T) {
	requireKernel(t)
	requirePython(t)
	model := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","model":"model-x","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}`)
	}))
	defer model.Close()
	host := strings.TrimPrefix(model.URL, "http://")
	sink := startReceiver(t, testConfig(TargetConfig{Name: "py-agent", Executable: python311}))
	script := `import http.client, json, sys
c = http.client.HTTPConnection(sys.argv[1])
for i in range(2):
    c.request("POST", "/v1/chat/completions", json.dumps({"model": "model-x", "messages": [{"role": "user", "content": "hello"}]}), {"Content-Type": "application/json"})
    print(c.getresponse().read()[:20])
`
	cmd := exec.Command(python311, "-c", script, host)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	pid := cmd.Process.Pid
	c := waitSpans(t, sink, func(c collected) bool { return len(c.ofPID(pid).named("chat model-x")) == 2 })
	for _, i := range c.ofPID(pid).named("chat model-x") {
		s := c.ofPID(pid).spans[i]
		if attr(s, "gen_ai.usage.input_tokens") != "12" || attr(s, "gen_ai.usage.output_tokens") != "3" ||
			attr(s, "agenttrail.capture.source") != "plaintext" || attr(s, "agenttrail.tls.library") != "<missing>" ||
			attr(s, "gen_ai.provider.name") != "openai" || attr(s, "network.protocol.version") != "1.1" {
			t.Errorf("inference span: tokens %s/%s source %q library %q provider %q protocol %q", attr(s, "gen_ai.usage.input_tokens"),
				attr(s, "gen_ai.usage.output_tokens"), attr(s, "agenttrail.capture.source"), attr(s, "agenttrail.tls.library"),
				attr(s, "gen_ai.provider.name"), attr(s, "network.protocol.version"))
		}
	}
}
