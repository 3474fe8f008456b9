package attackstoryprocessor

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// TestFindingTier: the finding event this processor makes, and its head span, name the
// configured tier (agenttrail.finding.tier), so the gateway's findings connector can emit only
// the gateway's own; finding events of another tier already on the story keep theirs.
func TestFindingTier(t *testing.T) {
	for _, tier := range []string{"", "gateway"} {
		name := tier
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			cfg := createDefaultConfig()
			cfg.Workloads = []WorkloadConfig{bankWorkload(profile.ModeAlert)}
			want := "agent"
			if tier != "" {
				cfg.Tier, want = tier, tier
			}
			h := newHarness(t, cfg)
			b := newTraceBuilder()
			joinedStory(b, traceID(31))
			td := b.traces()
			// A node's agent finding on the story, from before tier existed (no attribute).
			agentFinding(td, 1, 1, "agent-b-finding")
			h.replay(td, true)
			h.settle()
			tiers := map[string]string{} // uid → tier ("-" without the attribute)
			var heads []string
			forEachSpan(h.output(), func(s ptrace.Span) {
				for i := 0; i < s.Events().Len(); i++ {
					ev := s.Events().At(i)
					if ev.Name() != story.FindingEventName {
						continue
					}
					uid, _ := ev.Attributes().Get(story.AttrFindingUID)
					tiers[uid.AsString()] = "-"
					if v, ok := ev.Attributes().Get(story.AttrFindingTier); ok {
						tiers[uid.AsString()] = v.AsString()
					}
				}
				if _, ok := s.Attributes().Get(story.AttrFindingRuleIDs); ok {
					v, _ := s.Attributes().Get(story.AttrFindingTier)
					heads = append(heads, v.AsString())
				}
			})
			require.Len(t, tiers, 2, "the agent's finding and this processor's: %v", tiers)
			assert.Equal(t, "-", tiers["agent-b-finding"], "another tier's event is left as it came")
			delete(tiers, "agent-b-finding")
			for uid, got := range tiers {
				assert.Equal(t, want, got, "tier of the finding event %s", uid)
			}
			assert.Equal(t, []string{want}, heads, "tier on the head span")
		})
	}
}
