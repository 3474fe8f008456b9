package rules

import (
	"fmt"
	"strings"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// mcpServerOutsideDef is the definition of mcp_server_outside_profile.
var mcpServerOutsideDef = &Def{ID: story.RuleMCPServerOutside, Title: "A new MCP server in the workload", severity: story.SevMedium,
	Atlas:       []string{"AML.T0010"},
	Explanation: "The agent spoke to an MCP server that no allowed_tools entry names and that it never used while its profile was learned: new code the model can reach, whose tool descriptions and results it will trust."}

// mcpServerOutsideProfile is the built-in rule mcp_server_outside_profile (the README's Rules
// table says when it fires). It looks at every MCP span (initialize and tools/list too), so a
// server is reported when it appears, before any of its tools is called.
type mcpServerOutsideProfile struct{}

func (mcpServerOutsideProfile) Def() *Def { return mcpServerOutsideDef }

func (mcpServerOutsideProfile) Evaluate(c *Context) *Hit {
	h := &Hit{Rule: mcpServerOutsideDef}
	for _, s := range c.Facts.MCPServers {
		name := s.Name
		if s.Version != "" {
			name += " " + s.Version
		}
		switch {
		case c.Policy.AllowedTools != nil && !allowsServer(c.Policy.AllowedTools, s.Name):
			h.add(Evidence{Text: fmt.Sprintf("MCP server %s: no allowed_tools entry is one of its tools (%s:...)", name, s.Name),
				boundary: true, severity: story.SevHigh, Span: s.Span, Event: -1})
		case c.profileComplete() && !c.Profile.HasMCPServer(s.Name):
			h.add(Evidence{Text: fmt.Sprintf("MCP server %s was not used while the profile was learned (profile version %d)", name, c.Profile.Data.Version),
				severity: story.SevMedium, Span: s.Span, Event: -1})
		}
	}
	return nonEmpty(h)
}

func allowsServer(allowed map[string]struct{}, server string) bool {
	for t := range allowed {
		if strings.HasPrefix(t, server+":") {
			return true
		}
	}
	return false
}
