package ebpfreceiver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

var (
	mcpModulesOnce sync.Once
	mcpModulesErr  error
)

// requireMCPClient: Debian's Node and the MCP TypeScript SDK with the reference servers
// (internal/mcp/testdata/nodeclient, pinned by its package-lock.json; scripts/prereqs.sh
// test-packages installs them, or this does).
func requireMCPClient(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(systemNode); err != nil {
		t.Skipf("%s is not installed", systemNode)
	}
	dir, err := filepath.Abs(filepath.Join("internal", "mcp", "testdata", "nodeclient"))
	if err != nil {
		t.Fatal(err)
	}
	mcpModulesOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-filesystem", "package.json")); err == nil {
			return
		}
		out, err := exec.Command("npm", "ci", "--prefix", dir, "--no-audit", "--no-fund").CombinedOutput()
		if err != nil {
			mcpModulesErr = fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
		}
	})
	if mcpModulesErr != nil {
		t.Fatal(mcpModulesErr)
	}
	return filepath.Join(dir, "client.mjs")
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
