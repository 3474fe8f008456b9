package story

import (
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Attributes of the receiver's MCP spans (see the receiver's README, MCP over stdio).
const (
	AttrMCPMethod        = "mcp.method.name"
	AttrMCPServerName    = "mcp.server.name"
	AttrMCPServerVersion = "mcp.server.version"
	attrGenAIToolDesc    = "gen_ai.tool.description"
	// MCPToolEventName: one event per tool of a tools/list response.
	MCPToolEventName = "mcp.tool"
)

// Bounds of MCP names taken from spans: the server's name comes from its own initialize
// response, so it is the server's (possibly an attacker's) choice.
const (
	maxMCPName    = 128
	maxMCPServers = 64
)

// MCPServer is an MCP server the story's agent spoke to: its name (from initialize) and version,
// and the first span of it in the story.
type MCPServer struct {
	Name, Version string
	Span          int
}

// MCPToolName is how a tool an MCP server serves is named in profiles, allowed_tools and
// findings: "server:tool", so that two servers' tools of the same name (every filesystem server
// has read_file) are told apart and a new server's tools are new tools. A span without a
// server name (the session's initialize was not seen) keeps the bare tool name.
func MCPToolName(attrs pcommon.Map, tool string) string {
	if AttrStr(attrs, AttrMCPMethod) == "" {
		return tool
	}
	server := mcpName(AttrStr(attrs, AttrMCPServerName))
	if server == "" {
		return tool
	}
	return server + ":" + tool
}

// mcpName bounds a name from the wire and keeps it on one line.
func mcpName(s string) string {
	if len(s) > maxMCPName {
		s = s[:maxMCPName]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// addMCP records the MCP server of an MCP span, and for a tools/list response each tool's
// description as text the model is given (a poisoned server hides its instructions there).
func (f *Facts) addMCP(s ptrace.Span, span int) {
	attrs := s.Attributes()
	method := AttrStr(attrs, AttrMCPMethod)
	if method == "" {
		return
	}
	server := mcpName(AttrStr(attrs, AttrMCPServerName))
	if server != "" && len(f.MCPServers) < maxMCPServers && !f.hasMCPServer(server) {
		f.MCPServers = append(f.MCPServers, MCPServer{Name: server, Version: mcpName(AttrStr(attrs, AttrMCPServerVersion)), Span: span})
	}
	if method != "tools/list" {
		return
	}
	evs := s.Events()
	for i := range evs.Len() {
		ev := evs.At(i)
		if ev.Name() != MCPToolEventName {
			continue
		}
		desc := AttrStr(ev.Attributes(), attrGenAIToolDesc)
		if desc == "" {
			continue
		}
		tool := mcpName(AttrStr(ev.Attributes(), AttrGenAIToolName))
		if server != "" {
			tool = server + ":" + tool
		}
		f.addInputFrom(InputToolDescription, span, desc, tool)
	}
}

func (f *Facts) hasMCPServer(name string) bool {
	for _, s := range f.MCPServers {
		if s.Name == name {
			return true
		}
	}
	return false
}

// addInputFrom is addInput for a text that names where it came from (a tool's description).
func (f *Facts) addInputFrom(kind InputKind, span int, text, tool string) {
	n := len(f.Inputs)
	f.addInput(kind, span, text)
	if len(f.Inputs) > n {
		f.Inputs[n].Tool = tool
	}
}
