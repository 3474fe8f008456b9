package ebpfreceiver

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// The reference MCP servers (@modelcontextprotocol/server-filesystem and server-everything,
// pinned in internal/mcp/testdata/nodeclient) driven by real clients: the official TypeScript
// SDK's (client.mjs) and the Go SDK's (testdata/gomcpref), over stdio and streamable HTTP.

// referenceServer returns the path of a reference server's entry point.
func referenceServer(t *testing.T, name string) string {
	t.Helper()
	client := requireMCPClient(t)
	return filepath.Join(filepath.Dir(client), "node_modules", "@modelcontextprotocol", name, "dist", "index.js")
}

// buildTestProgram builds the Go program in pkg (a folder of this package's) into a temporary
// file and returns its path.
func buildTestProgram(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

func buildGoMCPRef(t *testing.T) string { return buildTestProgram(t, "./testdata/gomcpref") }

// pageServer serves a page for server-everything's gzip-file-as-resource to fetch; it returns
// the URL and its port.
func pageServer(t *testing.T) (string, string) {
	t.Helper()
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("a page to compress\n", 100))
	}))
	t.Cleanup(page.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(page.URL, "http://"))
	return page.URL + "/page", port
}

// mcpByID returns the MCP spans of c (any method) by their JSON-RPC id.
func mcpByID(c collected) map[string]ptrace.Span {
	out := map[string]ptrace.Span{}
	for _, s := range c.spans {
		if attr(s, "mcp.method.name") != "<missing>" {
			out[attr(s, "jsonrpc.request.id")] = s
		}
	}
	return out
}

// everythingCase is how a client reached server-everything.
type everythingCase struct {
	transport    string // network.transport
	mcpTransport string // agenttrail.mcp.transport
	echo         int    // the JSON-RPC id of the echo call; the others follow
	fetchPort    string // the page's port, when the server's connect must be under its call
}

// checkEverything asserts the spans of: tools/list, echo (a secret in its message), get-sum,
// get-tiny-image (a base64 PNG), gzip-file-as-resource (the server fetches the page: a blob
// resource), get-sum with a string (isError), resources/read, prompts/get.
func checkEverything(t *testing.T, c collected, pid int, w everythingCase) {
	t.Helper()
	agent := c.ofPID(pid)
	byID := mcpByID(agent)
	id := func(n int) ptrace.Span { return byID[fmt.Sprint(w.echo+n)] }
	echo, sum, image, gzip, bad, res, prompt := id(0), id(1), id(2), id(3), id(4), id(5), id(6)
	list := byID[fmt.Sprint(w.echo-1)]
	names := []string{list.Name(), echo.Name(), sum.Name(), image.Name(), gzip.Name(), bad.Name(), res.Name(), prompt.Name()}
	want := []string{"tools/list", "execute_tool echo", "execute_tool get-sum", "execute_tool get-tiny-image", "execute_tool gzip-file-as-resource",
		"execute_tool get-sum", "resources/read", "prompts/get simple-prompt"}
	if strings.Join(names, "|") != strings.Join(want, "|") {
		var all []string
		for k, s := range byID {
			all = append(all, k+"="+s.Name())
		}
		t.Fatalf("spans by id from %d: %q, want %q (all: %v)", w.echo-1, names, want, all)
	}
	for _, s := range []ptrace.Span{list, echo, sum, image, gzip, bad, res, prompt} {
		if attr(s, "mcp.server.name") != "mcp-servers/everything" || attr(s, "mcp.server.version") != "2.0.0" ||
			attr(s, "network.transport") != w.transport || attr(s, "agenttrail.mcp.transport") != w.mcpTransport ||
			s.Kind() != ptrace.SpanKindClient {
			t.Errorf("%s: server %q %q transport %q %q kind %v", s.Name(), attr(s, "mcp.server.name"), attr(s, "mcp.server.version"),
				attr(s, "network.transport"), attr(s, "agenttrail.mcp.transport"), s.Kind())
		}
	}
	// The responses of tools/list (7.5 KiB: the tools with their schemas) and of the image (5.5 KiB)
	// are over the 4 KiB captured per write (sockets.capture_bytes): each is read as far as it
	// goes and says so, its id (written last by the TypeScript SDK) not captured, paired with
	// the only request in flight, its size the wire's.
	for _, s := range []ptrace.Span{list, image} {
		if p := attr(s, "agenttrail.mcp.problem"); p != "<missing>" && p != "response id not captured: paired with the only request in flight" &&
			p != "response cut: read as far as it goes" {
			t.Errorf("%s: problem %q", s.Name(), p)
		}
	}
	tools := attr(list, "agenttrail.mcp.tools")
	if !strings.HasPrefix(tools, `["echo",`) || attrInt(list, "agenttrail.mcp.result.size") < 7000 ||
		(attr(list, "agenttrail.mcp.problem") != "<missing>") != (attr(list, "agenttrail.mcp.tools.cut") == "true") {
		t.Errorf("tools/list: %s, size %d, problem %q, cut %s", tools, attrInt(list, "agenttrail.mcp.result.size"),
			attr(list, "agenttrail.mcp.problem"), attr(list, "agenttrail.mcp.tools.cut"))
	}
	// The secret in echo's message is redacted; the rest of the arguments is kept.
	if a := attr(echo, "gen_ai.tool.call.arguments"); strings.Contains(a, "sk-live") || !strings.Contains(a, "hello from agenttrail") ||
		attrInt(echo, "gen_ai.tool.call.arguments.redactions") < 1 {
		t.Errorf("echo arguments %q, redactions %d", a, attrInt(echo, "gen_ai.tool.call.arguments.redactions"))
	}
	if a := attr(sum, "gen_ai.tool.call.arguments"); a != `{"a":2,"b":40}` || sum.Status().Code() == ptrace.StatusCodeError {
		t.Errorf("get-sum arguments %q status %v", a, sum.Status().Code())
	}
	// The image's response is over 5 KiB on the wire (base64 in JSON), more than the 4 KiB
	// captured per write over stdio: the span is whole anyway, its size the wire's.
	if n := attrInt(image, "agenttrail.mcp.result.size"); n < 5000 || image.Status().Code() == ptrace.StatusCodeError ||
		attr(image, "agenttrail.mcp.result.is_error") != "false" {
		t.Errorf("get-tiny-image: result size %d status %v is_error %s problem %q", n, image.Status().Code(),
			attr(image, "agenttrail.mcp.result.is_error"), attr(image, "agenttrail.mcp.problem"))
	}
	if gzip.Status().Code() == ptrace.StatusCodeError || attrInt(gzip, "agenttrail.mcp.result.size") < 100 {
		t.Errorf("gzip-file-as-resource: status %v size %d", gzip.Status().Code(), attrInt(gzip, "agenttrail.mcp.result.size"))
	}
	if bad.Status().Code() != ptrace.StatusCodeError || attr(bad, "error.type") != "tool_error" || attr(bad, "agenttrail.mcp.result.is_error") != "true" ||
		attr(bad, "gen_ai.tool.call.arguments") != `{"a":"two","b":40}` {
		t.Errorf("the failing get-sum: status %v error.type %q is_error %s arguments %q", bad.Status().Code(), attr(bad, "error.type"),
			attr(bad, "agenttrail.mcp.result.is_error"), attr(bad, "gen_ai.tool.call.arguments"))
	}
	if attr(res, "mcp.resource.uri") != "demo://resource/dynamic/text/1" || attr(res, "agenttrail.role") != "data_access" {
		t.Errorf("resources/read: uri %q role %q", attr(res, "mcp.resource.uri"), attr(res, "agenttrail.role"))
	}
	if attr(prompt, "gen_ai.prompt.name") != "simple-prompt" {
		t.Errorf("prompts/get: %q", attr(prompt, "gen_ai.prompt.name"))
	}
	for _, s := range []ptrace.Span{echo, sum, gzip, bad, res, prompt} {
		if p := attr(s, "agenttrail.mcp.problem"); p != "<missing>" {
			t.Errorf("%s (id %s): %s", s.Name(), attr(s, "jsonrpc.request.id"), p)
		}
	}
	// The server's fetch of the page is its work for the gzip call: under that span.
	if w.fetchPort != "" {
		if under := childrenOf(c, gzip); !contains(under, "connect "+w.fetchPort) {
			t.Errorf("under gzip-file-as-resource: %v (want the server's connect to %s)", under, w.fetchPort)
		}
	}
}

// waitEverything waits for the agent's 8 MCP spans from tools/list on.
func waitEverything(t *testing.T, sink *consumertest.TracesSink, pid int) collected {
	t.Helper()
	return waitSpans(t, sink, func(c collected) bool {
		n := 0
		for _, s := range c.ofPID(pid).spans {
			switch attr(s, "mcp.method.name") {
			case "tools/list", "tools/call", "resources/read", "prompts/get":
				n++
			}
		}
		return n == 8
	})
}

// TestNodeMCPEverything: the TypeScript SDK's client spawns server-everything over stdio (a
// socketpair under Node): each request is its span, with the server's fetch under its call.
func TestNodeMCPEverything(t *testing.T) {
	requireKernel(t)
	client := requireMCPClient(t)
	url, port := pageServer(t)
	sink := startReceiver(t, testConfig(TargetConfig{Name: "mcp-agent", Executable: systemNode}))
	cmd := exec.Command(systemNode, client, "everything", url)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "call get-sum error") || !strings.Contains(string(out), "call gzip-file-as-resource ok") {
		t.Fatalf("client: %v\n%s", err, out)
	}
	pid := cmd.Process.Pid
	c := waitEverything(t, sink, pid)
	checkEverything(t, c, pid, everythingCase{transport: "unix", mcpTransport: "stdio", echo: 2, fetchPort: port})
}

// TestGoMCPNodeFilesystem: the Go SDK's client spawns server-filesystem over stdio (pipes). The
// Go SDK v1.8 first asks server/discover (the 2026-07-28 protocol); the Node server answers
// "Method not found" and the client falls back to initialize (2025-11-25): both are spans, the
// first a JSON-RPC error, and the calls after them name the server from initialize.
func TestGoMCPNodeFilesystem(t *testing.T) {
	requireKernel(t)
	server := referenceServer(t, "server-filesystem")
	bin := buildGoMCPRef(t)
	dir := t.TempDir()
	notes := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notes, []byte("the notes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := startReceiver(t, testConfig(TargetConfig{Name: "go-mcp-agent", Executable: bin}))
	cmd := exec.Command(bin, "filesystem", dir, "--", systemNode, server, dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "call read_text_file error") {
		t.Fatalf("client: %v\n%s", err, out)
	}
	pid := cmd.Process.Pid
	c := waitSpans(t, sink, func(c collected) bool { return len(mcpTools(c.ofPID(pid))) == 3 })
	byID := mcpByID(c.ofPID(pid))
	discover, init, list := byID["1"], byID["2"], byID["3"]
	if discover.Name() != "server/discover" || discover.Status().Code() != ptrace.StatusCodeError || attr(discover, "error.type") != "jsonrpc_error" ||
		attr(discover, "rpc.jsonrpc.error_code") != "-32601" {
		t.Errorf("server/discover: %q status %v error.type %q code %q", discover.Name(), discover.Status().Code(), attr(discover, "error.type"),
			attr(discover, "rpc.jsonrpc.error_code"))
	}
	if init.Name() != "initialize" || attr(init, "mcp.protocol.version") != "2025-11-25" || list.Name() != "tools/list" {
		t.Errorf("initialize %q protocol %q, tools/list %q", init.Name(), attr(init, "mcp.protocol.version"), list.Name())
	}
	read, ls, missing := byID["4"], byID["5"], byID["6"]
	if read.Name() != "execute_tool read_text_file" || ls.Name() != "execute_tool list_directory" || missing.Name() != "execute_tool read_text_file" {
		t.Fatalf("tool spans: %q %q %q", read.Name(), ls.Name(), missing.Name())
	}
	if attr(read, "mcp.server.name") != "secure-filesystem-server" || attr(read, "network.transport") != "pipe" ||
		attr(read, "gen_ai.tool.call.arguments") != `{"path":"`+notes+`"}` || attrInt(read, "agenttrail.mcp.result.size") < 50 ||
		!strings.Contains(attr(read, "agenttrail.mcp.server.command_line"), "server-filesystem") || read.Status().Code() == ptrace.StatusCodeError {
		t.Errorf("read: server %q transport %q arguments %q size %d command %q status %v", attr(read, "mcp.server.name"), attr(read, "network.transport"),
			attr(read, "gen_ai.tool.call.arguments"), attrInt(read, "agenttrail.mcp.result.size"), attr(read, "agenttrail.mcp.server.command_line"), read.Status().Code())
	}
	if missing.Status().Code() != ptrace.StatusCodeError || attr(missing, "error.type") != "tool_error" {
		t.Errorf("the failed read: status %v error.type %q", missing.Status().Code(), attr(missing, "error.type"))
	}
	if under := childrenOf(c, read); !contains(under, "openat "+notes) {
		t.Errorf("under read_text_file: %v", under)
	}
}

// TestGoMCPNodeEverything: the Go SDK's client spawns server-everything over stdio (pipes).
func TestGoMCPNodeEverything(t *testing.T) {
	requireKernel(t)
	server := referenceServer(t, "server-everything")
	bin := buildGoMCPRef(t)
	url, port := pageServer(t)
	sink := startReceiver(t, testConfig(TargetConfig{Name: "go-mcp-agent", Executable: bin}))
	cmd := exec.Command(bin, "everything", url, "--", systemNode, server, "stdio")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "call get-sum error") {
		t.Fatalf("client: %v\n%s", err, out)
	}
	pid := cmd.Process.Pid
	c := waitEverything(t, sink, pid)
	checkEverything(t, c, pid, everythingCase{transport: "pipe", mcpTransport: "stdio", echo: 4, fetchPort: port})
	// server/discover 1 (Method not found), initialize 2, tools/list 3.
	byID := mcpByID(c.ofPID(pid))
	if d := byID["1"]; d.Name() != "server/discover" || attr(d, "rpc.jsonrpc.error_code") != "-32601" || attr(d, "agenttrail.mcp.problem") != "<missing>" {
		t.Errorf("server/discover: %q code %q problem %q", d.Name(), attr(d, "rpc.jsonrpc.error_code"), attr(d, "agenttrail.mcp.problem"))
	}
}

// TestGoMCPNodeEverythingHTTP: the Go SDK's client against server-everything's streamable HTTP
// transport (Express, responses as server-sent events). The server's side of an HTTP session is
// not followed, so nothing is nested under the calls.
func TestGoMCPNodeEverythingHTTP(t *testing.T) {
	requireKernel(t)
	server := referenceServer(t, "server-everything")
	bin := buildGoMCPRef(t)
	url, _ := pageServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	srv := exec.Command(systemNode, server, "streamableHttp")
	srv.Env = append(os.Environ(), "PORT="+port)
	stderr, err := srv.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on port") {
				close(ready)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("server-everything did not start")
	}
	sink := startReceiver(t, testConfig(TargetConfig{Name: "go-mcp-agent", Executable: bin}))
	cmd := exec.Command(bin, "everything-http", "http://127.0.0.1:"+port+"/mcp", url)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "call get-sum error") {
		t.Fatalf("client: %v\n%s", err, out)
	}
	pid := cmd.Process.Pid
	c := waitEverything(t, sink, pid)
	checkEverything(t, c, pid, everythingCase{transport: "tcp", mcpTransport: "streamable_http", echo: 4})
	// Before any session the server answers server/discover with HTTP 400 and a JSON-RPC error
	// whose id is null; the client then initializes.
	byID := mcpByID(c.ofPID(pid))
	if d := byID["1"]; d.Name() != "server/discover" || d.Status().Code() != ptrace.StatusCodeError || attr(d, "rpc.jsonrpc.error_code") != "-32000" ||
		attr(d, "agenttrail.mcp.problem") != "response id null (the server could not read the request): paired with the only request in flight" {
		t.Errorf("server/discover: %q status %v code %q problem %q", d.Name(), d.Status().Code(), attr(d, "rpc.jsonrpc.error_code"), attr(d, "agenttrail.mcp.problem"))
	}
	if i := byID["2"]; i.Name() != "initialize" || attr(i, "mcp.protocol.version") != "2025-11-25" || i.Status().Code() == ptrace.StatusCodeError {
		t.Errorf("initialize: %q protocol %q status %v", i.Name(), attr(i, "mcp.protocol.version"), i.Status().Code())
	}
	for _, s := range c.ofPID(pid).spans {
		if s.Name() == "POST" {
			t.Errorf("a POST span beside the MCP spans: %s", attr(s, "url.path"))
		}
		if attr(s, "mcp.method.name") == "tools/call" && (attr(s, "server.address") != "127.0.0.1" || attr(s, "server.port") != port) {
			t.Errorf("%s: server %s:%s", s.Name(), attr(s, "server.address"), attr(s, "server.port"))
		}
	}
}
