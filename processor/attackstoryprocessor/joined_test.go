package attackstoryprocessor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/finding"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// onNode is a traced process on a named host, as an agent collector on that node reports it.
func onNode(b *traceBuilder, service string, pid int, node string) *procBuilder {
	p := b.hostProcess(service, pid)
	p.attrs = append(p.attrs, [2]any{"host.name", node})
	return p
}

// servedRemotely is what the gateway's storyjoin makes of a tool call served on another node:
// the service's accept under the agent's tool span (same trace), marked with both nodes, its
// handler, which reads the customers file and sends it out.
func servedRemotely(srv *procBuilder, tool spanRef, atMs float64, clientNode, serverNode string) {
	acc, aref := srv.newSpan(tool.trace, &tool, "accept", ptrace.SpanKindServer, atMs, atMs+0.2)
	m := acc.Attributes()
	srv.syscallAttrs(m, "accept")
	m.PutStr("network.peer.address", "10.77.0.1")
	m.PutInt("network.peer.port", 40000)
	m.PutInt("agenttrail.fd", 3)
	m.PutInt("agenttrail.syscall.result", 11)
	m.PutStr("agenttrail.join.match", "four_tuple")
	m.PutStr("agenttrail.join.client.node", clientNode)
	m.PutStr("agenttrail.join.server.node", serverNode)
	h, href := srv.newSpan(tool.trace, &aref, "main.handleExport", ptrace.SpanKindServer, atMs+0.3, atMs+20)
	srv.function(h.Attributes(), "main.handleExport", "/src/toolsvc/main.go", 30, "function")
	srv.openat(href, atMs+1, "/srv/bank/customers.csv", "O_RDONLY|O_CLOEXEC")
	srv.connect(href, atMs+5, atMs+5.3, "203.0.113.9", 443)
	srv.sendto(href, atMs+6, atMs+9, "203.0.113.9", 443, 2_100_000)
}

// joinedStory: customer-agent on node-a calls its export tool, served by tool-service on
// node-b, which reads the customers file and sends it to an unknown host.
func joinedStory(b *traceBuilder, trace pcommon.TraceID) {
	agent := onNode(b, "customer-agent", 4242, "node-a")
	srv := onNode(b, "tool-service", 77, "node-b")
	root := agent.prompt(trace, 0, 1500, attackPrompt)
	agent.chat(root, 5, 600, "model-x")
	tool := agent.tool(root, 601, 640, "customer-data-export", [2]string{"query", "SELECT * FROM customers"})
	agent.connect(tool, 602, 602.3, "10.77.0.2", 8080)
	servedRemotely(srv, tool, 603, "node-a", "node-b")
	agent.chat(root, 641, 1490, "model-x")
}

// TestGoldenJoinedAcrossNodes: the finding of a story the gateway joined across two nodes names
// both nodes and both workloads: resources[] holds the agent's workload and the service's,
// each with its host.name, unmapped.nodes lists node-a and node-b, and the narrative names
// each workload with its node.
func TestGoldenJoinedAcrossNodes(t *testing.T) {
	runGolden(t, goldenCase{
		name: "joined_across_nodes",
		cfg:  func(c *Config) { c.Workloads = []WorkloadConfig{bankWorkload(profile.ModeAlert)} },
		build: func(b *traceBuilder) {
			joinedStory(b, traceID(21))
		},
		check: func(t *testing.T, _ *harness, out ptrace.Traces) {
			fs := findingsOf(t, out)
			require.Len(t, fs, 1)
			f := fs[0]
			assert.Contains(t, f["finding_info"].(map[string]any)["types"], story.RuleSensitiveReadEgress)
			res := f["resources"].([]any)
			require.Len(t, res, 2)
			assert.Contains(t, res[0].(map[string]any)["labels"], "host.name=node-a")
			assert.Contains(t, res[1].(map[string]any)["labels"], "host.name=node-b")
			assert.Equal(t, "Workload", res[1].(map[string]any)["type"])
			assert.Equal(t, []any{"node-a", "node-b"}, f["unmapped"].(map[string]any)["nodes"])
			assert.Contains(t, f["unmapped"].(map[string]any)["narrative"],
				"customer-agent (pid 4242) on node-a, with tool-service (pid 77) on node-b: accepted a prompt")
		},
	})
}

// TestFindingWorkloadsBounded: a story whose spans come from more workloads and nodes than a
// finding names keeps resources[] within finding.MaxStoryWorkloads and unmapped.nodes within
// finding.MaxStoryNodes, and counts the rest.
func TestFindingWorkloadsBounded(t *testing.T) {
	const services = 20
	b := newTraceBuilder()
	trace := traceID(22)
	agent := onNode(b, "customer-agent", 4242, "node-a")
	root := agent.prompt(trace, 0, 1500, attackPrompt)
	tool := agent.tool(root, 601, 1400, "customer-data-export", [2]string{"query", "SELECT * FROM customers"})
	for i := range services {
		srv := onNode(b, "svc-"+story.Itoa(i), 100+i, "node-"+story.Itoa(i))
		servedRemotely(srv, tool, 610+float64(i)*30, "node-a", "node-"+story.Itoa(i))
	}
	cfg := createDefaultConfig()
	cfg.CompletionGrace = 2 * time.Second
	cfg.Workloads = []WorkloadConfig{bankWorkload(profile.ModeAlert)}
	h := newHarness(t, cfg)
	h.replay(b.traces(), false)
	h.settle()
	fs := findingsOf(t, h.output())
	require.Len(t, fs, 1)
	f := fs[0]
	un := f["unmapped"].(map[string]any)
	assert.Len(t, f["resources"], finding.MaxStoryWorkloads)
	assert.EqualValues(t, services+1-finding.MaxStoryWorkloads, un["workloads_omitted"])
	assert.Len(t, un["nodes"], finding.MaxStoryNodes)
	assert.EqualValues(t, services+1-finding.MaxStoryNodes, un["nodes_omitted"])
	assert.Contains(t, un["narrative"], "and "+story.Itoa(services+1-finding.MaxStoryWorkloads)+" more workloads:")
}
