package attackstoryprocessor

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// contentStory: a tool reads a file under a name no sensitive_paths pattern knows, then sends
// 8,400 bytes to 203.0.113.9:443 over a connection it opens. detectors is the receiver's
// agenttrail.file.sensitive_content on the openat event (see the receiver README, Sensitive data
// by content); nil leaves it out.
func contentStory(b *traceBuilder, path string, detectors ...any) {
	p := b.podProcess("customer-agent", 4242)
	root := p.prompt(traceID(1), 0, 1500, "Please summarise the quarterly report")
	p.chat(root, 5, 600, "model-x")
	tool := p.tool(root, 601, 700, "report-tool", [2]string{"name", "q3"})
	p.openat(tool, 602, path, "O_RDONLY|O_CLOEXEC")
	if detectors != nil {
		evs := tool.proc.spans[tool.idx].span.Events()
		_ = evs.At(evs.Len() - 1).Attributes().PutEmptySlice(story.AttrSensitiveContent).FromRaw(detectors)
	}
	p.connect(tool, 610, 610.3, "203.0.113.9", 443)
	p.send(tool, 611, 690, "203.0.113.9", 443, 8400, 3, "this_trace", 1)
	p.chat(root, 701, 1490, "model-x")
}

func runContentStory(t *testing.T, build func(*traceBuilder)) ptrace.Traces {
	t.Helper()
	cfg := createDefaultConfig()
	cfg.DefaultMode = profile.ModeAlert
	h := newHarness(t, cfg)
	b := newTraceBuilder()
	build(b)
	h.replay(b.traces(), false)
	h.settle()
	return h.output()
}

// TestSensitiveReadByContent: a file the receiver found cards and SSNs in is a sensitive read
// whatever it is called, with the severity of a path-matched one (Critical: the destination is
// neither allowed nor learned); the evidence names the detectors, never content. Without the
// attribute, or with values that are not detector names, the same story has no finding.
func TestSensitiveReadByContent(t *testing.T) {
	byContent := runContentStory(t, func(b *traceBuilder) { contentStory(b, "/tmp/clients.dat", "card_number", "us_ssn") })
	byPath := runContentStory(t, func(b *traceBuilder) { exportStory(b, 1, true) })
	require.Equal(t, [][]string{{story.RuleSensitiveReadEgress}}, ruleIDsOf(t, byContent))
	got, want := findingsOf(t, byContent)[0], findingsOf(t, byPath)[0]
	assert.Equal(t, want["severity_id"], got["severity_id"])
	assert.Equal(t, "Critical", got["severity"])
	assert.Contains(t, got["message"], "read /tmp/clients.dat (sensitive: content:card_number,us_ssn)")
	assert.Contains(t, got["message"], "(neither allowed nor in the profile)")

	assert.Empty(t, ruleIDsOf(t, runContentStory(t, func(b *traceBuilder) { contentStory(b, "/tmp/clients.dat") })))
	hostile := runContentStory(t, func(b *traceBuilder) { contentStory(b, "/tmp/clients.dat", "Card Number", "", "x/../y", int64(7)) })
	assert.Empty(t, ruleIDsOf(t, hostile), "values that are not detector names are not taken")
}

func TestSensitiveContentBounded(t *testing.T) {
	b := newTraceBuilder()
	raw := []any{"us_ssn", "card_number", "us_ssn"}
	for i := range 100 {
		raw = append(raw, "d"+story.Itoa(i))
	}
	contentStory(b, "/tmp/x", raw...)
	f := storyFacts(t, b)
	require.Len(t, f.Files, 1)
	assert.Len(t, f.Files[0].Content, 8)
	assert.Contains(t, f.Files[0].Content, "card_number")
	assert.Equal(t, 1, countOf(f.Files[0].Content, "us_ssn"))
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}
