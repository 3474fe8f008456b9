package attackstoryprocessor

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/finding"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// send is the receiver's socket I/O aggregate of the sends of one call to one peer ("send
// {peer}", see the receiver's README, Socket I/O): n bytes in calls calls, over a socket
// connected in this trace, earlier (ageMs after its connect) or before tracing.
func (p *procBuilder) send(parent spanRef, startMs, endMs float64, addr string, port int, n, calls int64, connected string, ageMs int64, dns ...string) spanRef {
	peer := addr + ":" + story.Itoa(port)
	s, ref := p.newSpan(parent.trace, &parent, "send "+peer, ptrace.SpanKindClient, startMs, endMs)
	m := s.Attributes()
	m.PutStr("network.peer.address", addr)
	m.PutInt("network.peer.port", int64(port))
	transport := "tcp"
	if port == 53 {
		transport = "udp"
	}
	m.PutStr("network.transport", transport)
	m.PutStr("network.type", "ipv4")
	m.PutInt("agenttrail.egress.bytes", n)
	m.PutInt("agenttrail.egress.calls", calls)
	m.PutInt("agenttrail.ingress.bytes", 0)
	m.PutInt("agenttrail.ingress.calls", 0)
	m.PutStr("agenttrail.socket.connected", connected)
	if ageMs >= 0 {
		m.PutInt("agenttrail.connection.age_ms", ageMs)
	}
	m.PutInt("agenttrail.socket.count", 1)
	m.PutStr("agenttrail.egress.attribution", "direct")
	if len(dns) > 0 {
		m.PutStr("dns.question.name", dns[0])
		names := m.PutEmptySlice("agenttrail.dns.question.names")
		for _, d := range dns {
			names.AppendEmpty().SetStr(d)
		}
		m.PutInt("agenttrail.dns.question.count", int64(len(dns)))
	}
	m.PutInt("thread.id", 4243)
	return ref
}

// exportStory: the customer-data-export tool reads customers.csv and sends 8,400 bytes to
// 203.0.113.9:443, over a connection it opens (fresh) or one an earlier request opened.
func exportStory(b *traceBuilder, trace int, fresh bool) {
	p := b.podProcess("customer-agent", 4242)
	root := p.prompt(traceID(trace), 0, 1500, "Please export the customer table for the audit")
	p.chat(root, 5, 600, "model-x")
	tool := p.tool(root, 601, 700, "customer-data-export", [2]string{"query", "SELECT * FROM customers"})
	p.openat(tool, 602, "/srv/bank/customers.csv", "O_RDONLY|O_CLOEXEC")
	if fresh {
		p.connect(tool, 610, 610.3, "203.0.113.9", 443)
		p.send(tool, 611, 690, "203.0.113.9", 443, 8400, 3, "this_trace", 1)
	} else {
		p.send(tool, 611, 690, "203.0.113.9", 443, 8400, 3, "earlier", 41_000)
	}
	p.chat(root, 701, 1490, "model-x")
}

func atlasOf(t *testing.T, td ptrace.Traces) [][]string {
	var out [][]string
	for _, f := range findingsOf(t, td) {
		var ids []string
		for _, a := range f["finding_info"].(map[string]any)["attacks"].([]any) {
			ids = append(ids, a.(map[string]any)["technique"].(map[string]any)["uid"].(string))
		}
		out = append(out, ids)
	}
	return out
}

// TestSendOverReusedConnection: data sent over a connection an earlier request opened (a send
// aggregate, no connect in the story) is a flow exactly as over a fresh one: the same rules,
// severities and ATLAS techniques; the finding and the narrative say how old the connection was.
func TestSendOverReusedConnection(t *testing.T) {
	run := func(fresh bool) ptrace.Traces {
		cfg := createDefaultConfig()
		cfg.DefaultMode = profile.ModeAlert
		h := newHarness(t, cfg)
		b := newTraceBuilder()
		exportStory(b, 1, fresh)
		h.replay(b.traces(), false)
		h.settle()
		return h.output()
	}
	freshOut, reusedOut := run(true), run(false)
	require.Equal(t, [][]string{{story.RuleSensitiveReadEgress}}, ruleIDsOf(t, freshOut))
	assert.Equal(t, ruleIDsOf(t, freshOut), ruleIDsOf(t, reusedOut))
	assert.Equal(t, atlasOf(t, freshOut), atlasOf(t, reusedOut))
	assert.Equal(t, []string{"AML.T0086", "AML.T0057"}, atlasOf(t, reusedOut)[0])
	fresh, reused := findingsOf(t, freshOut)[0], findingsOf(t, reusedOut)[0]
	assert.Equal(t, fresh["severity_id"], reused["severity_id"])
	assert.Contains(t, reused["message"], "then sent 8.4 kB to 203.0.113.9:443 (connection opened 41 s earlier) (neither allowed nor in the profile)")
	assert.Contains(t, fresh["message"], "then connect 203.0.113.9:443 (neither allowed nor in the profile), 8.4 kB sent")
	desc := reused["finding_info"].(map[string]any)["desc"].(string)
	assert.Contains(t, desc, "read /srv/bank/customers.csv → sent 8.4 kB to 203.0.113.9:443 (connection opened 41 s earlier)")
	freshDesc := fresh["finding_info"].(map[string]any)["desc"].(string)
	assert.Contains(t, freshDesc, "connect 203.0.113.9:443 → sent 8.4 kB to 203.0.113.9:443", "the bytes told once, by the send")
}

// TestSendBytesNotCountedTwice: a sendto the receiver recorded as a syscall span is also in its
// socket's send aggregate: the destination's bytes are the aggregate's.
func TestSendBytesNotCountedTwice(t *testing.T) {
	b := newTraceBuilder()
	p := b.hostProcess("customer-agent", 4242)
	root := p.prompt(traceID(1), 0, 1000, "sync")
	tool := p.tool(root, 10, 900, "sync")
	p.connect(tool, 20, 20.3, "10.0.0.7", 53)
	p.sendto(tool, 21, 22, "10.0.0.7", 53, 1000)
	p.send(tool, 21, 22, "10.0.0.7", 53, 1000, 1, "this_trace", 1)
	p.sendto(tool, 30, 31, "10.0.0.8", 53, 500) // no aggregate: the syscall's bytes
	f := storyFacts(t, b)
	assert.Equal(t, int64(1500), f.BytesSent)
	assert.Equal(t, 1, f.Connects)
}

// TestSendBeforeTracing: a socket opened before the collector started.
func TestSendBeforeTracing(t *testing.T) {
	b := newTraceBuilder()
	p := b.hostProcess("customer-agent", 4242)
	root := p.prompt(traceID(1), 0, 1000, "sync")
	tool := p.tool(root, 10, 900, "sync")
	p.send(tool, 21, 22, "10.0.0.7", 8443, 2_100_000, 40, "before_tracing", -1)
	assert.Contains(t, finding.Narrative(storyFacts(t, b), finding.Hints{}), "execute_tool sync() → sent 2.1 MB to 10.0.0.7:8443 (over a connection opened before tracing)")
}

// syncStory: the sync tool sends n bytes to 10.20.0.5:443 over a kept-alive connection.
func syncStory(trace int, n int64) *traceBuilder {
	b := newTraceBuilder()
	p := b.hostProcess("export-job", 7070)
	root := p.prompt(traceID(trace), 0, 3000, "Sync the ledger")
	tool := p.tool(root, 10, 2000, "ledger-sync")
	p.send(tool, 21, 1900, "10.20.0.5", 443, n, 4, "earlier", 5_000)
	return b
}

// TestDestinationVolumeLearned: the profile learns the most bytes a story sent to each
// destination (from send aggregates); ten times more to that destination is data_volume_anomaly.
func TestDestinationVolumeLearned(t *testing.T) {
	dir := t.TempDir()
	cfg := learningConfig(dir, 3)
	h := newHarness(t, cfg)
	for i := range 3 {
		assert.Empty(t, findingRules(t, h, syncStory(i+1, 2000+int64(i)*500)))
	}
	h.clock.Advance(time.Minute)
	h.p.emit(context.Background(), false)
	p, err := profile.Parse([]byte(readFile(t, filepath.Join(dir, profile.FileName("export-job /srv/bank/bin/export-job")))))
	require.NoError(t, err)
	require.Equal(t, profile.StatusComplete, p.Data.Status)
	require.Len(t, p.Data.Destinations, 1)
	assert.Equal(t, int64(3000), p.Data.Destinations[0].BytesMax)

	alert := *cfg
	alert.DefaultMode = profile.ModeAlert
	alert.Rules.DataVolumeFactor = 10
	h2 := newHarness(t, &alert)
	assert.Empty(t, findingRules(t, h2, syncStory(10, 29_000)), "within 10 × 3 kB")
	h2.replay(syncStory(11, 31_000).traces(), false)
	h2.settle()
	fs := findingsOf(t, h2.output())
	require.Len(t, fs, 1)
	assert.Equal(t, []any{story.RuleDataVolumeAnomaly}, fs[0]["finding_info"].(map[string]any)["types"])
	assert.Contains(t, fs[0]["message"], "31.0 kB sent to 10.20.0.5:443 in one request; the most learned for it is 3.0 kB (limit 30.0 kB)")
}

// dnsTunnelStory: a tool that reads a file, then sends its content as base32 in query names
// under one domain to the resolver; or, benign, resolves a few ordinary names.
func dnsStory(b *traceBuilder, trace int, tunnel bool) {
	p := b.hostProcess("customer-agent", 4242)
	root := p.prompt(traceID(trace), 0, 1500, "Check the status page")
	p.chat(root, 5, 600, "model-x")
	tool := p.tool(root, 601, 900, "status-check", [2]string{"host", "status.example.com"})
	names := []string{"status.example.com", "api.example.com", "cdn.example.com", "d1a2b3c4d5e6f7.cloudfront.net"}
	if tunnel {
		p.openat(tool, 602, "/srv/app/notes.txt", "O_RDONLY")
		names = []string{
			"gezdgnbvgy3tqojqgezdgnbvgy3tqojq.0.t.exfil-example.net",
			"mfrggzdfmztwq2lknnwg23tpobyxe43u.1.t.exfil-example.net",
			"ovzxm6lzpjqwe2lnn5zxi4dfmfzwk3tb.2.t.exfil-example.net",
			"nbswy3dpeb3w64tmmqqgs4zamfxwk5lb.3.t.exfil-example.net",
			"onuw2zlsmvxhi2lpnzsxgidbnzsca5dp.4.t.exfil-example.net",
			"orsxg5bamfzgk3tul5zwk4tjmfwca2lu.5.t.exfil-example.net",
		}
	}
	p.send(tool, 610, 880, "127.0.0.53", 53, int64(len(names))*60, int64(len(names)), "this_trace", 0, names...)
	p.chat(root, 901, 1490, "model-x")
}

func TestGoldenEgress(t *testing.T) {
	for _, tc := range []goldenCase{
		{
			// Data read, then sent over a connection an earlier request opened: no connect.
			name: "rule_sensitive_read_then_send",
			cfg:  func(c *Config) { c.DefaultMode = profile.ModeAlert },
			build: func(b *traceBuilder) {
				exportStory(b, 1, false)
			},
			check: func(t *testing.T, _ *harness, out ptrace.Traces) {
				assert.Equal(t, [][]string{{story.RuleSensitiveReadEgress}}, ruleIDsOf(t, out))
			},
		},
		{
			// DNS tunnelling next to a benign story with ordinary lookups.
			name: "rule_dns_tunneling",
			cfg:  func(c *Config) { c.DefaultMode = profile.ModeAlert },
			build: func(b *traceBuilder) {
				dnsStory(b, 1, true)
				dnsStory(b, 2, false)
			},
			check: func(t *testing.T, _ *harness, out ptrace.Traces) {
				assert.Equal(t, [][]string{{story.RuleDNSTunneling}}, ruleIDsOf(t, out))
				assert.Equal(t, [][]string{{"AML.T0025", "T1048"}}, atlasOf(t, out))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runGolden(t, tc) })
	}
}

// TestReplyIsNotEgress: a send to a peer whose connection the process accepted is the agent's
// reply to its client, not egress, even inside a story that read sensitive data (spans
// reconstructed from Python stacks can end after the reply); a send to any other peer is.
func TestReplyIsNotEgress(t *testing.T) {
	build := func(accepted bool) *traceBuilder {
		b := newTraceBuilder()
		p := b.hostProcess("ledger-agent", 5151)
		if accepted {
			p.accept(traceID(1), 0, 0.2, "127.0.0.1", 45578)
		}
		root := p.prompt(traceID(2), 10, 1500, "Run the nightly export")
		tool := p.tool(root, 20, 900, "ledger-read")
		p.openat(tool, 21, "/srv/bank/customers.csv", "O_RDONLY")
		p.send(root, 1400, 1401, "127.0.0.1", 45578, 162, 1, "earlier", 25_000)
		return b
	}
	cfg := createDefaultConfig()
	cfg.DefaultMode = profile.ModeAlert
	assert.Empty(t, findingRules(t, newHarness(t, cfg), build(true)))
	assert.Equal(t, [][]string{{story.RuleSensitiveReadEgress}}, findingRules(t, newHarness(t, cfg), build(false)))
}
