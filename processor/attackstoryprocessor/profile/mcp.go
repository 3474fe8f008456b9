package profile

import "strings"

// HasMCPServer reports whether the profile learned a tool of the MCP server (a tool named
// "server:tool"): a server is known through the tools the agent called on it while the profile
// was learned.
func (p *Profile) HasMCPServer(server string) bool {
	prefix := server + ":"
	for _, t := range p.Data.Tools {
		if strings.HasPrefix(t, prefix) {
			return true
		}
	}
	return false
}
