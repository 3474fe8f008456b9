package attackstoryprocessor

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/finding"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// acceptWouldBlock is a non-blocking accept that found no connection pending, as the receiver
// records it: a root span with error.type EAGAIN and the result -11.
func (p *procBuilder) acceptWouldBlock(trace pcommon.TraceID, startMs, endMs float64) {
	s, _ := p.newSpan(trace, nil, "accept", ptrace.SpanKindServer, startMs, endMs)
	m := s.Attributes()
	p.syscallAttrs(m, "accept")
	m.PutInt("agenttrail.fd", 3)
	m.PutInt("agenttrail.syscall.result", -11)
	m.PutStr("error.type", "EAGAIN")
	s.Status().SetCode(ptrace.StatusCodeError)
	s.Status().SetMessage("accept failed: resource temporarily unavailable")
}

// startupOpen is an openat at start-up, before any configured function runs: a span of its own.
func (p *procBuilder) startupOpen(trace pcommon.TraceID, atMs float64, path string) {
	s, _ := p.newSpan(trace, nil, "openat", ptrace.SpanKindInternal, atMs, atMs+0.1)
	m := s.Attributes()
	p.syscallAttrs(m, "openat")
	m.PutStr("file.path", path)
	m.PutStr("agenttrail.open.flags", "O_RDONLY|O_CLOEXEC")
	m.PutInt("agenttrail.syscall.result", 5)
}

// noisyConversations: start-up opens, then per conversation the successful accept of the
// request, a would-block accept and the request itself.
func noisyConversations(n int) *traceBuilder {
	b := newTraceBuilder()
	p := b.hostProcess("customer-agent", 4242)
	trace := 1000
	for i := range 10 {
		trace++
		p.startupOpen(traceID(trace), float64(i), "/usr/share/zoneinfo/Etc/UTC"+story.Itoa(i))
	}
	for i := range n {
		at := 100 + float64(i)*3000
		trace++
		p.accept(traceID(trace), at-3, at-2.9, "127.0.0.1", 51000+i)
		trace++
		p.acceptWouldBlock(traceID(trace), at-2.5, at-2.4)
		bankStory(p, traceID(i+1), at, "What is the balance summary for C1001?", "accounts-summary", [2]string{"customerID", "C1001"})
	}
	return b
}

// TestLearningCountsConfiguredRootsOnly: 10 start-up opens and two accepts per conversation are
// emitted as they came, but only the conversations count toward min_stories and shape the
// profile (no start-up files in it).
func TestLearningCountsConfiguredRootsOnly(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.Learning.MinStories = 3
	cfg.Learning.MinDuration = 0
	h := newHarness(t, cfg)

	h.replay(noisyConversations(2).traces(), false)
	h.settle()
	out := h.output()
	assert.Equal(t, 10+2*2+2*6, out.SpanCount(), "orphan stories are kept and exported")
	prof := h.p.profiles.Find(profile.WorkloadOf(resourceOf(noisyConversations(1))))
	require.NotNil(t, prof)
	assert.Equal(t, 2, prof.Data.Stories, "only the conversations are learned")
	assert.Equal(t, profile.StatusLearning, prof.Data.Status, "2 of min_stories 3: the noise does not complete learning")
	assert.Empty(t, prof.Data.Files, "start-up opens do not shape the profile")
	assert.EqualValues(t, 10+2, h.counter("agenttrail.attackstory.not_learned", "reason", story.NotLearnedNoEntryPoint))
	assert.EqualValues(t, 2, h.counter("agenttrail.attackstory.not_learned", "reason", story.NotLearnedWouldBlock))
	assert.EqualValues(t, 10+2*3, h.counter("agenttrail.attackstory.stories", "", ""))
}

// TestOrphanStoriesMakeNoProfile: a workload seen only through syscall stories has no profile.
func TestOrphanStoriesMakeNoProfile(t *testing.T) {
	h := newHarness(t, createDefaultConfig())
	b := newTraceBuilder()
	p := b.hostProcess("customer-agent", 4242)
	p.startupOpen(traceID(1), 0, "/etc/ld.so.cache")
	p.accept(traceID(2), 10, 10.1, "127.0.0.1", 51000)
	h.replay(b.traces(), false)
	h.settle()
	assert.Nil(t, h.p.profiles.Find(profile.WorkloadOf(resourceOf(b))))
	assert.Equal(t, 2, h.output().SpanCount())
}

// TestLearningEntryPoints: a root that is neither a prompt nor a configured function (here a
// span of the agent's own OpenTelemetry SDK) is learned when learning.entry_points names it.
func TestLearningEntryPoints(t *testing.T) {
	build := func() *traceBuilder {
		b := newTraceBuilder()
		p := b.hostProcess("export-job", 777)
		s, root := p.newSpan(traceID(1), nil, "nightly-export", ptrace.SpanKindInternal, 0, 100)
		s.Attributes().PutStr("otel.scope.name", "export-job")
		p.connect(root, 10, 10.2, "10.0.0.5", 443)
		return b
	}
	for _, tc := range []struct {
		name    string
		entries []string
		learned int
	}{
		{"not configured", nil, 0},
		{"configured", []string{"nightly-export"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			cfg.Learning.EntryPoints = tc.entries
			h := newHarness(t, cfg)
			h.replay(build().traces(), false)
			h.settle()
			prof := h.p.profiles.Find(profile.WorkloadOf(resourceOf(build())))
			if tc.learned == 0 {
				assert.Nil(t, prof)
				return
			}
			require.NotNil(t, prof)
			assert.Equal(t, tc.learned, prof.Data.Stories)
			assert.Len(t, prof.Data.Destinations, 1)
		})
	}
}

func TestWouldBlockIsNotAFailure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		attrs map[string]any
		want  string
	}{
		{"EAGAIN by name", map[string]any{"error.type": "EAGAIN", "agenttrail.syscall.result": int64(-11)}, ""},
		{"EWOULDBLOCK by name", map[string]any{"error.type": "EWOULDBLOCK"}, ""},
		{"EINPROGRESS by name", map[string]any{"error.type": "EINPROGRESS"}, ""},
		{"EAGAIN by result", map[string]any{"agenttrail.syscall.result": int64(-11)}, ""},
		{"EINPROGRESS by result", map[string]any{"agenttrail.syscall.result": int64(-115)}, ""},
		{"ECONNREFUSED", map[string]any{"error.type": "ECONNREFUSED", "agenttrail.syscall.result": int64(-111)}, "ECONNREFUSED"},
		{"ENOENT by result", map[string]any{"agenttrail.syscall.result": int64(-2)}, "error 2"},
		{"a name wins over a would-block result", map[string]any{"error.type": "EPERM", "agenttrail.syscall.result": int64(-11)}, "EPERM"},
		{"success", map[string]any{"agenttrail.syscall.result": int64(3)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := pcommon.NewMap()
			require.NoError(t, m.FromRaw(tc.attrs))
			assert.Equal(t, tc.want, story.Failure(m))
		})
	}

	// A would-block read is told as a read, and does not break sensitive_read_then_egress.
	b := newTraceBuilder()
	p := b.hostProcess("customer-agent", 4242)
	root := p.prompt(traceID(1), 0, 1000, "export")
	tool := p.tool(root, 10, 900, "customer-data-export")
	p.openat(tool, 11, "/srv/bank/customers.csv", "O_RDONLY|O_NONBLOCK")
	ev := p.spans[tool.idx].span.Events().At(0)
	ev.Attributes().PutStr("error.type", "EAGAIN")
	p.connect(tool, 20, 21, "203.0.113.9", 443)
	f := storyFacts(t, b)
	assert.Contains(t, finding.Narrative(f, finding.Hints{}), "read /srv/bank/customers.csv → connect 203.0.113.9:443")
	assert.NotContains(t, finding.Narrative(f, finding.Hints{}), "failed")
}

// TestLearningFromModelCallRoots: an agent traced without configured functions (its model calls
// decoded from TLS) learns from stories rooted at those calls.
func TestLearningFromModelCallRoots(t *testing.T) {
	b := newTraceBuilder()
	p := b.hostProcess("node-agent", 3131)
	s, root := p.newSpan(traceID(1), nil, "chat gpt-x", ptrace.SpanKindClient, 0, 500)
	s.Attributes().PutStr("gen_ai.operation.name", "chat")
	s.Attributes().PutStr("agenttrail.role", "inference")
	p.connect(root, 1, 1.2, "10.0.0.9", 443)
	h := newHarness(t, createDefaultConfig())
	h.replay(b.traces(), false)
	h.settle()
	prof := h.p.profiles.Find(profile.WorkloadOf(resourceOf(b)))
	require.NotNil(t, prof)
	assert.Equal(t, 1, prof.Data.Stories)
}
