package attackstoryprocessor

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// nightlyExport: the export-job's nightly-export tool reads customers.csv and sends n bytes to
// dest:443.
func nightlyExport(trace int, dest string, n int) *traceBuilder {
	b := newTraceBuilder()
	p := b.hostProcess("export-job", 7070)
	root := p.prompt(traceID(trace), 0, 3000, "Run the nightly export")
	tool := p.tool(root, 10, 2000, "nightly-export", [2]string{"table", "customers"})
	p.openat(tool, 11, "/srv/bank/customers.csv", "O_RDONLY|O_CLOEXEC")
	p.connect(tool, 20, 20.3, dest, 443)
	p.sendto(tool, 21, 1900, dest, 443, n)
	return b
}

func findingRules(t *testing.T, h *harness, b *traceBuilder) [][]string {
	t.Helper()
	h.replay(b.traces(), false)
	h.settle()
	return ruleIDsOf(t, h.output())
}

// TestLearnedFlow: a flow learned in observe mode (the tool, the sensitive pattern, the
// destination, its volume) does not raise sensitive_read_then_egress once the profile is
// complete; a new destination, or ten times the volume, does.
func TestLearnedFlow(t *testing.T) {
	dir := t.TempDir()
	cfg := learningConfig(dir, 3)
	h := newHarness(t, cfg)
	for i := range 3 {
		assert.Empty(t, findingRules(t, h, nightlyExport(i+1, "10.20.0.5", 1_000_000+i*100_000)))
	}
	h.clock.Advance(time.Minute)
	h.p.emit(context.Background(), false)
	p, err := profile.Parse([]byte(readFile(t, filepath.Join(dir, profile.FileName("export-job /srv/bank/bin/export-job")))))
	require.NoError(t, err)
	require.Equal(t, profile.StatusComplete, p.Data.Status)
	assert.Equal(t, []profile.Flow{{Tool: "nightly-export", Data: "*/customers.*", Destination: "10.20.0.5:443", BytesMax: 1_200_000}}, p.Data.Flows)

	alert := *cfg
	alert.DefaultMode = profile.ModeAlert
	h2 := newHarness(t, &alert)
	assert.Empty(t, findingRules(t, h2, nightlyExport(10, "10.20.0.5", 1_150_000)), "the learned flow, a fresh connection")
	assert.Empty(t, findingRules(t, h2, nightlyExport(11, "10.20.0.5", 11_000_000)), "within 10 × 1.2 MB")

	h2.replay(nightlyExport(12, "10.20.0.5", 12_500_000).traces(), false)
	h2.settle()
	fs := findingsOf(t, h2.output())
	require.Len(t, fs, 1)
	assert.Equal(t, []any{story.RuleSensitiveReadEgress, story.RuleDataVolumeAnomaly}, fs[0]["finding_info"].(map[string]any)["types"])
	assert.Contains(t, fs[0]["message"], "then connect 10.20.0.5:443, 12.5 MB sent: a learned flow, but more than 10 × its largest volume (1.2 MB)")

	assert.Equal(t, [][]string{{story.RuleSensitiveReadEgress}}, findingRules(t, h2, nightlyExport(13, "10.20.0.6", 1_000_000)),
		"another address of a learned /24: the destination is known, the flow is not")
	assert.Equal(t, [][]string{{story.RuleSensitiveReadEgress, story.RuleEgressOutsideProfile}}, findingRules(t, h2, nightlyExport(14, "203.0.113.9", 1_000_000)),
		"a new destination")
}

// TestDeclaredFlow: workloads[].allowed_flows accepts a flow in any mode, up to its max_bytes.
func TestDeclaredFlow(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.Workloads = []WorkloadConfig{{
		Match: map[string]string{"service.name": "export-job"}, Mode: profile.ModeAlert,
		AllowedFlows: []FlowConfig{
			{Tool: "other-tool", Destination: "10.0.0.0/8"},
			{Tool: "nightly-export", Data: "*/customers.csv", Destination: "10.20.0.0/16:443", MaxBytes: 5_000_000},
		},
	}}
	h := newHarness(t, cfg)
	assert.Empty(t, findingRules(t, h, nightlyExport(1, "10.20.0.5", 1_200_000)))
	h.replay(nightlyExport(2, "10.20.0.5", 6_000_000).traces(), false)
	h.settle()
	fs := findingsOf(t, h.output())
	require.Len(t, fs, 1)
	assert.Contains(t, fs[0]["message"], "6.0 MB sent: more than workloads allowed_flows[1].max_bytes (5.0 MB)")
	assert.Equal(t, [][]string{{story.RuleSensitiveReadEgress}}, findingRules(t, h, nightlyExport(3, "10.30.0.5", 1_000)), "somewhere new")
}

func TestFlowsOfAStory(t *testing.T) {
	b := nightlyExport(1, "10.20.0.5", 2_000)
	p := b.procs[0]
	// a failed connect elsewhere is no flow; a read after the egress is none either
	tool := spanRef{trace: traceID(1), id: p.spans[1].span.SpanID(), proc: p, idx: 1}
	c := p.connect(tool, 1950, 1950.2, "10.9.9.9", 443)
	p.spans[c.idx].span.Attributes().PutStr("error.type", "ECONNREFUSED")
	f := storyFacts(t, b)
	fl := profile.StoryFlows(f, match.MustCompile(defaultSensitivePaths()))
	require.Len(t, fl, 1)
	assert.Equal(t, profile.Flow{Tool: "nightly-export", Data: "*/customers.*", Destination: "10.20.0.5:443"}, fl[0].Flow)
	assert.EqualValues(t, 2_000, fl[0].Bytes)
}
