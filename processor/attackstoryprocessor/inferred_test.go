package attackstoryprocessor

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// inferredStory is a story as the eBPF receiver makes it for a Node agent: no prompt or
// function span; the first model call is the root, the tool span is inferred from its tool call
// (agenttrail.tool.inferred, no code.function.name), the tool's read under it, the next model
// call under the tool.
func inferredStory(p *procBuilder, trace int, tool string) {
	root, ref := p.newSpan(traceID(trace), nil, "chat depot-model", ptrace.SpanKindClient, 0, 300)
	root.Attributes().PutStr("gen_ai.operation.name", "chat")
	root.Attributes().PutStr("agenttrail.role", "inference")
	s, t := p.newSpan(traceID(trace), &ref, "execute_tool "+tool, ptrace.SpanKindInternal, 300, 400)
	m := s.Attributes()
	m.PutStr("gen_ai.operation.name", "execute_tool")
	m.PutStr("gen_ai.tool.name", tool)
	m.PutStr("agenttrail.role", "tool")
	m.PutBool("agenttrail.tool.inferred", true)
	m.PutStr("agenttrail.arg.path", "/srv/depot/plan.txt")
	p.openat(t, 310, "/srv/depot/plan.txt", "O_RDONLY|O_CLOEXEC")
	next, _ := p.newSpan(traceID(trace), &t, "chat depot-model", ptrace.SpanKindClient, 400, 700)
	next.Attributes().PutStr("gen_ai.operation.name", "chat")
	next.Attributes().PutStr("agenttrail.role", "inference")
}

// TestInferredToolAllowedTools: an inferred tool span is a tool to the boundary as a probed one
// is: allowed when allowed_tools names it, tool_outside_profile naming it when not; the
// narrative shows it with its arguments and the second model call after it.
func TestInferredToolAllowedTools(t *testing.T) {
	run := func(allowed []string) ptrace.Traces {
		cfg := createDefaultConfig()
		cfg.Workloads = []WorkloadConfig{{Match: map[string]string{"service.name": "depot-agent"}, Mode: profile.ModeAlert, AllowedTools: allowed}}
		h := newHarness(t, cfg)
		b := newTraceBuilder()
		inferredStory(b.hostProcess("depot-agent", 7171), 1, "stock-read")
		h.replay(b.traces(), false)
		h.settle()
		return h.output()
	}
	assert.Empty(t, ruleIDsOf(t, run([]string{"stock-read", "shipment-post"})), "an allowed inferred tool")
	out := run([]string{"shipment-post"})
	require.Equal(t, [][]string{{story.RuleToolOutsideProfile}}, ruleIDsOf(t, out))
	f := findingsOf(t, out)[0]
	assert.Contains(t, f["message"], "tool stock-read is not in allowed_tools")
	var narrative string
	forEachSpan(out, func(s ptrace.Span) {
		for i := 0; i < s.Events().Len(); i++ {
			if v, ok := s.Events().At(i).Attributes().Get("agenttrail.finding.narrative"); ok {
				narrative = v.Str()
			}
		}
	})
	assert.Contains(t, narrative, "chat depot-model → execute_tool stock-read(path=/srv/depot/plan.txt) → read /srv/depot/plan.txt → chat depot-model")
}
