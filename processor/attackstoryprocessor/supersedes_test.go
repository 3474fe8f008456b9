package attackstoryprocessor

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// findingEvents are the finding events in td: uid and the uids each supersedes.
func findingEvents(td ptrace.Traces) map[string][]string {
	out := map[string][]string{}
	forEachSpan(td, func(s ptrace.Span) {
		for i := 0; i < s.Events().Len(); i++ {
			ev := s.Events().At(i)
			if ev.Name() != story.FindingEventName {
				continue
			}
			uid, _ := ev.Attributes().Get(story.AttrFindingUID)
			var sup []string
			if v, ok := ev.Attributes().Get(story.AttrFindingSupersedes); ok {
				for _, x := range v.Slice().All() {
					sup = append(sup, x.Str())
				}
			}
			out[uid.AsString()] = sup
		}
	})
	return out
}

// agentFinding puts a finding event on the span at index i of the first resource's spans, as
// a node's agent did before the gateway got the story.
func agentFinding(td ptrace.Traces, rs, i int, uid string) {
	ev := td.ResourceSpans().At(rs).ScopeSpans().At(0).Spans().At(i).Events().AppendEmpty()
	ev.SetName(story.FindingEventName)
	ev.Attributes().PutStr(story.AttrFindingUID, uid)
}

// TestGatewayFindingSupersedesAgentFindings (issue #21 (3)): each node's agent judged its half
// of a story, the gateway judges the joined story: its finding names the agents' findings it
// covers (agenttrail.finding.supersedes, on its event and the head span), so a consumer shows one.
func TestGatewayFindingSupersedesAgentFindings(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.Workloads = []WorkloadConfig{bankWorkload(profile.ModeAlert)}
	h := newHarness(t, cfg)
	b := newTraceBuilder()
	joinedStory(b, traceID(23))
	td := b.traces()
	agentFinding(td, 0, 0, "agent-a-finding")
	agentFinding(td, 1, 1, "agent-b-finding")
	agentFinding(td, 1, 2, "agent-b-finding") // the same uid twice: named once
	// Node A's agent judged the same head span of the same trace: its uid is the gateway's.
	var own string
	forEachSpan(td, func(sp ptrace.Span) {
		if sp.ParentSpanID().IsEmpty() && sp.Name() != "accept" {
			own = sp.TraceID().String() + "-" + sp.SpanID().String()
			ev := sp.Events().AppendEmpty()
			ev.SetName(story.FindingEventName)
			ev.Attributes().PutStr(story.AttrFindingUID, own)
		}
	})
	require.NotEmpty(t, own)
	h.replay(td, true)
	h.settle()
	out := h.output()
	evs := findingEvents(out)
	require.Len(t, evs, 3, "the agents' findings and the gateway's (with node A's uid)")
	assert.ElementsMatch(t, []string{"agent-a-finding", "agent-b-finding"}, evs[own], "its own uid is not superseded")
	var onHead int
	forEachSpan(out, func(s ptrace.Span) {
		if _, ok := s.Attributes().Get(story.AttrFindingSupersedes); ok {
			onHead++
		}
	})
	assert.Equal(t, 1, onHead)
}

// An agent's own finding (no finding on the story before) supersedes nothing; the uids a
// sender put on a story are bounded and counted.
func TestSupersededBounded(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.Workloads = []WorkloadConfig{bankWorkload(profile.ModeAlert)}
	h := newHarness(t, cfg)
	b := newTraceBuilder()
	joinedStory(b, traceID(24))
	td := b.traces()
	for i := range maxSuperseded + 3 {
		agentFinding(td, 1, i%3, "uid-"+strconv.Itoa(i))
	}
	agentFinding(td, 1, 0, string(make([]byte, maxUIDLen+1)))
	h.replay(td, true)
	h.settle()
	var sup, omitted int64
	forEachSpan(h.output(), func(s ptrace.Span) {
		if v, ok := s.Attributes().Get(story.AttrFindingSupersedes); ok {
			sup = int64(v.Slice().Len())
			o, _ := s.Attributes().Get(story.AttrFindingSupersedesOmitted)
			omitted = o.Int()
		}
	})
	assert.EqualValues(t, maxSuperseded, sup)
	assert.EqualValues(t, 4, omitted)

	h2 := newHarness(t, cfg)
	b = newTraceBuilder()
	joinedStory(b, traceID(25))
	h2.replay(b.traces(), true)
	h2.settle()
	evs := findingEvents(h2.output())
	require.Len(t, evs, 1)
	for _, sup := range evs {
		assert.Empty(t, sup)
	}
}
