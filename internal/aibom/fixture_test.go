package aibom

import (
	"maps"
	"slices"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// The fixture: the stories of a small bank as the receiver and k8sattribution write them.
// `go test -run TestGolden -update` writes them to testdata/stories/*.json (the archive fixture,
// also read by cmd/agenttrail's test) and the golden BOM.

var fixtureStart = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

type spanSpec struct {
	name   string
	kind   ptrace.SpanKind
	attrs  map[string]any
	events []eventSpec
}

type eventSpec struct {
	name  string
	attrs map[string]any
}

// putAll puts attrs in key order, so that -update writes the same stories every time.
func putAll(m pcommon.Map, attrs map[string]any) {
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		v := attrs[k]
		switch v := v.(type) {
		case string:
			m.PutStr(k, v)
		case int:
			m.PutInt(k, int64(v))
		case []string:
			s := m.PutEmptySlice(k)
			for _, x := range v {
				s.AppendEmpty().SetStr(x)
			}
		}
	}
}

// story is one trace of one process.
func story(n byte, res map[string]any, spans ...spanSpec) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	putAll(rs.Resource().Attributes(), res)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("github.com/agenttrail/agenttrail/receiver/ebpfreceiver")
	tid := pcommon.TraceID{0x5a, 0x5a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n}
	at := fixtureStart.Add(time.Duration(n) * time.Minute)
	for i, s := range spans {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(tid)
		sp.SetSpanID(pcommon.SpanID{0xa0, 0, 0, 0, 0, 0, n, byte(i + 1)})
		if i > 0 {
			sp.SetParentSpanID(pcommon.SpanID{0xa0, 0, 0, 0, 0, 0, n, 1})
		}
		sp.SetName(s.name)
		sp.SetKind(s.kind)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(i) * 100 * time.Millisecond)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(i)*100*time.Millisecond + 50*time.Millisecond)))
		putAll(sp.Attributes(), s.attrs)
		for _, e := range s.events {
			ev := sp.Events().AppendEmpty()
			ev.SetName(e.name)
			ev.SetTimestamp(sp.StartTimestamp())
			putAll(ev.Attributes(), e.attrs)
		}
	}
	return td
}

var (
	customerAgent = map[string]any{
		"service.name": "customer-agent", "process.pid": 4242, "process.executable.path": "/srv/bank/bin/customer-agent",
		"process.runtime.name": "go", "container.id": "3f9c2a3f9c2a3f9c2a3f9c2a3f9c2a3f9c2a3f9c2a3f9c2a3f9c2a3f9c2ab7e1",
		"k8s.namespace.name": "customer-ai", "k8s.pod.name": "agent-7f9c", "k8s.deployment.name": "customer-agent",
		"k8s.pod.service_account.name": "agent-sa", "k8s.container.name": "agent", "k8s.node.name": "node-1",
		"agenttrail.capture.tls": "go",
	}
	advisor = map[string]any{
		"service.name": "advisor", "process.pid": 5150, "process.executable.path": "/usr/bin/python3.11",
		"process.runtime.name": "cpython", "agenttrail.capture.tls": "openssl",
	}
	kycAgent = map[string]any{
		"service.name": "kyc-agent", "process.pid": 6001, "process.executable.path": "/usr/local/bin/node",
		"process.runtime.name": "node", "k8s.namespace.name": "wealth-ai", "k8s.pod.name": "kyc-0",
		"k8s.statefulset.name": "kyc", "k8s.container.name": "agent", "k8s.pod.service_account.name": "kyc",
		"agenttrail.capture.tls": "openssl (/usr/local/bin/node)",
	}
)

func fixtureStories() []ptrace.Traces {
	return []ptrace.Traces{
		// The demo bank's customer agent, benign then attacked: a model call that asks for a
		// tool, the tool reading the customer file, a connection to the outside host.
		story(1, customerAgent,
			spanSpec{name: "invoke_agent customer-agent", kind: ptrace.SpanKindServer, attrs: map[string]any{
				"gen_ai.operation.name": "invoke_agent", "agenttrail.role": "prompt", "code.function.name": "main.(*Agent).HandlePrompt"}},
			spanSpec{name: "chat model-x", kind: ptrace.SpanKindClient, attrs: map[string]any{
				"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "model-x",
				"gen_ai.response.model": "model-x-2026-01", "server.address": "127.0.0.1", "server.port": 18443,
				"url.full": "https://127.0.0.1:18443/v1/chat/completions", "agenttrail.tool_calls.names": []string{"accounts-summary"}}},
			spanSpec{name: "execute_tool accounts-summary", attrs: map[string]any{
				"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "accounts-summary"}},
			spanSpec{name: "connect", kind: ptrace.SpanKindClient, attrs: map[string]any{
				"agenttrail.syscall": "connect", "network.peer.address": "127.0.0.1", "network.peer.port": 18443, "agenttrail.syscall.result": "0"}},
		),
		story(2, customerAgent,
			spanSpec{name: "invoke_agent customer-agent", kind: ptrace.SpanKindServer, attrs: map[string]any{
				"gen_ai.operation.name": "invoke_agent", "agenttrail.role": "prompt"}},
			spanSpec{name: "chat model-x", kind: ptrace.SpanKindClient, attrs: map[string]any{
				"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "model-x",
				"server.address": "127.0.0.1", "server.port": 18443, "agenttrail.tool_calls.names": "customer-data-export"}},
			spanSpec{name: "execute_tool customer-data-export", attrs: map[string]any{
				"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "customer-data-export"},
				events: []eventSpec{{name: "openat", attrs: map[string]any{"file.path": "/srv/bank/customers.csv"}}}},
			spanSpec{name: "connect", kind: ptrace.SpanKindClient, attrs: map[string]any{
				"agenttrail.syscall": "connect", "network.peer.address": "127.0.0.2", "network.peer.port": 19999, "agenttrail.syscall.result": "0"}},
			// A connect that failed went nowhere: not a destination.
			spanSpec{name: "connect", kind: ptrace.SpanKindClient, attrs: map[string]any{
				"agenttrail.syscall": "connect", "network.peer.address": "127.0.0.3", "network.peer.port": 19999, "agenttrail.syscall.result": "ECONNREFUSED"}},
		),
		// A Python advisor on a host: Anthropic over TLS through langchain and langgraph, an MCP
		// tool, openai's .dist-info read by importlib.metadata (its version).
		story(3, advisor,
			spanSpec{name: "chat claude-sonnet-4", kind: ptrace.SpanKindClient, attrs: map[string]any{
				"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4",
				"server.address": "api.anthropic.com", "server.port": 443,
				"code.stacktrace": "Agent.call_model (/opt/advisor/agent.py:88)\ninvoke (/opt/venv/lib/python3.11/site-packages/langgraph/pregel/main.py:2011)\n" +
					"_generate (/opt/venv/lib/python3.11/site-packages/langchain_anthropic/chat_models.py:1210)\n" +
					"create (/opt/venv/lib/python3.11/site-packages/anthropic/resources/messages/messages.py:930)\n" +
					"request (/opt/venv/lib/python3.11/site-packages/httpx/_client.py:825)"},
				events: []eventSpec{
					{name: "openat", attrs: map[string]any{"file.path": "/opt/venv/lib/python3.11/site-packages/openai-1.55.0.dist-info/METADATA"}},
					{name: "openat", attrs: map[string]any{"file.path": "/opt/venv/lib/python3.11/site-packages/openai/__init__.py"}},
					{name: "openat", attrs: map[string]any{"file.path": "/opt/venv/lib/python3.11/site-packages/numpy/__init__.py"}},
				}},
			spanSpec{name: "execute_tool ledger.lookup", kind: ptrace.SpanKindClient, attrs: map[string]any{
				"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "ledger.lookup", "mcp.method.name": "tools/call",
				"mcp.server.name": "bank-ledger", "mcp.server.version": "2.4.1", "server.address": "10.0.3.7", "server.port": 8931}},
			spanSpec{name: "connect", kind: ptrace.SpanKindClient, attrs: map[string]any{
				"agenttrail.syscall": "connect", "network.peer.address": "160.79.104.10", "network.peer.port": 443,
				"server.address": "api.anthropic.com"}},
		),
		// A Node KYC agent in a StatefulSet: openai and the MCP SDK from node_modules.
		story(4, kycAgent,
			spanSpec{name: "chat gpt-4.1-mini", kind: ptrace.SpanKindClient, attrs: map[string]any{
				"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4.1-mini",
				"server.address": "api.openai.com", "server.port": 443, "url.full": "https://api.openai.com/v1/chat/completions",
				"code.stacktrace": "makeRequest (file:///app/node_modules/openai/core.mjs:312)\ncallTool (file:///app/node_modules/@modelcontextprotocol/sdk/dist/esm/client/index.js:400)"},
				events: []eventSpec{{name: "openat", attrs: map[string]any{"file.path": "/app/node_modules/@langchain/core/package.json"}}}},
			spanSpec{name: "connect", kind: ptrace.SpanKindClient, attrs: map[string]any{
				"agenttrail.syscall": "connect", "network.peer.address": "2606:4700::6810:1", "network.peer.port": 443}},
		),
	}
}
