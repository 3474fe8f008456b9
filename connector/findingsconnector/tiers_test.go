package findingsconnector

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agenttrail/agenttrail/connector/findingsconnector/internal/metadata"
)

// tierFinding appends a finding event with the uid (and tier when set: a string, or any
// other value) to span.
func tierFinding(span ptrace.Span, uid string, tier any) {
	ev := span.Events().AppendEmpty()
	ev.SetName(findingEventName)
	ev.Attributes().PutStr(attrFindingOCSF, `{"class_uid":2004,"severity_id":4}`)
	ev.Attributes().PutStr("agenttrail.finding.uid", uid)
	switch v := tier.(type) {
	case nil:
	case string:
		ev.Attributes().PutStr(attrFindingTier, v)
	case int:
		ev.Attributes().PutInt(attrFindingTier, int64(v))
	}
}

// tierTraces: a gateway's view of a story, with findings of both tiers on its spans.
func tierTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	span := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	span.SetTraceID(pcommon.TraceID{7})
	span.SetSpanID(pcommon.SpanID{1})
	tierFinding(span, "agent-a", "agent")
	tierFinding(span, "agent-old", nil) // from before tier existed
	tierFinding(span, "gateway-1", "gateway")
	tierFinding(span, "region-1", "region")
	tierFinding(span, "bad-type", 7)
	tierFinding(span, "bad-name", "Gateway")
	return td
}

type tierRig struct {
	c    connector.Traces
	sink *consumertest.LogsSink
	tel  *componenttest.Telemetry
}

func newTierRig(t *testing.T, tiers []string) *tierRig {
	t.Helper()
	cfg := &Config{Tiers: tiers}
	require.NoError(t, cfg.Validate())
	r := &tierRig{sink: new(consumertest.LogsSink), tel: componenttest.NewTelemetry()}
	t.Cleanup(func() { require.NoError(t, r.tel.Shutdown(context.Background())) })
	set := connector.Settings{ID: component.NewID(metadata.Type), TelemetrySettings: r.tel.NewTelemetrySettings(), BuildInfo: component.NewDefaultBuildInfo()}
	c, err := NewFactory().CreateTracesToLogs(context.Background(), set, cfg, r.sink)
	require.NoError(t, err)
	r.c = c
	return r
}

// records are the uids of the records emitted, with the tier attribute each carries.
func (r *tierRig) records() map[string]string {
	out := map[string]string{}
	for _, ld := range r.sink.AllLogs() {
		for _, rl := range ld.ResourceLogs().All() {
			for _, sl := range rl.ScopeLogs().All() {
				for _, lr := range sl.LogRecords().All() {
					uid, _ := lr.Attributes().Get("agenttrail.finding.uid")
					tier, _ := lr.Attributes().Get(attrFindingTier)
					out[uid.AsString()] = tier.AsString()
				}
			}
		}
	}
	return out
}

// skipped is agenttrail.findings.skipped by "reason/tier".
func (r *tierRig) skipped(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	m, err := r.tel.GetMetric("agenttrail.findings.skipped")
	if err != nil {
		return out
	}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		reason, _ := dp.Attributes.Value(attribute.Key("reason"))
		tier, _ := dp.Attributes.Value(attribute.Key("tier"))
		out[reason.AsString()+"/"+tier.AsString()] += dp.Value
	}
	return out
}

// TestTiers: a gateway with tiers [gateway] emits only its own findings; the agents' ones
// (with the attribute or without: "agent") are skipped and counted by tier. Without tiers
// every finding is emitted, as before the key existed.
func TestTiers(t *testing.T) {
	t.Run("gateway only", func(t *testing.T) {
		r := newTierRig(t, []string{"gateway"})
		require.NoError(t, r.c.ConsumeTraces(context.Background(), tierTraces()))
		assert.Equal(t, map[string]string{"gateway-1": "gateway"}, r.records())
		assert.Equal(t, map[string]int64{
			"tier_not_listed/agent":   2,
			"tier_not_listed/region":  1,
			"tier_not_listed/invalid": 2,
		}, r.skipped(t))
	})
	t.Run("missing tier is agent", func(t *testing.T) {
		r := newTierRig(t, []string{"agent"})
		require.NoError(t, r.c.ConsumeTraces(context.Background(), tierTraces()))
		assert.Equal(t, map[string]string{"agent-a": "agent", "agent-old": "agent"}, r.records(),
			"the record of a finding without the attribute says agent")
		assert.Equal(t, map[string]int64{
			"tier_not_listed/gateway": 1,
			"tier_not_listed/region":  1,
			"tier_not_listed/invalid": 2,
		}, r.skipped(t))
	})
	t.Run("two tiers", func(t *testing.T) {
		r := newTierRig(t, []string{"gateway", "region"})
		require.NoError(t, r.c.ConsumeTraces(context.Background(), tierTraces()))
		assert.Equal(t, map[string]string{"gateway-1": "gateway", "region-1": "region"}, r.records())
	})
	t.Run("empty list is every finding", func(t *testing.T) {
		r := newTierRig(t, nil)
		require.NoError(t, r.c.ConsumeTraces(context.Background(), tierTraces()))
		got := r.records()
		uids := make([]string, 0, len(got))
		for uid := range got {
			uids = append(uids, uid)
		}
		sort.Strings(uids)
		assert.Equal(t, []string{"agent-a", "agent-old", "bad-name", "bad-type", "gateway-1", "region-1"}, uids)
		assert.Equal(t, "agent", got["agent-old"])
		assert.Empty(t, r.skipped(t))
	})
	t.Run("no ocsf counted", func(t *testing.T) {
		r := newTierRig(t, []string{"gateway"})
		td := ptrace.NewTraces()
		span := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		ev := span.Events().AppendEmpty()
		ev.SetName(findingEventName)
		ev.Attributes().PutStr(attrFindingTier, "gateway")
		require.NoError(t, r.c.ConsumeTraces(context.Background(), td))
		assert.Empty(t, r.sink.AllLogs())
		assert.Equal(t, map[string]int64{"no_ocsf/gateway": 1}, r.skipped(t))
	})
}

// TestTierLabelsBounded: tiers come over the network; past the first 16 seen, the metric's
// tier label is "other", so a sender cannot grow its series without bound.
func TestTierLabelsBounded(t *testing.T) {
	r := newTierRig(t, []string{"gateway"})
	td := ptrace.NewTraces()
	span := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	for i := range maxTierLabels + 5 {
		tierFinding(span, fmt.Sprint(i), fmt.Sprintf("t%d", i))
	}
	tierFinding(span, "again", "t0") // seen already: its own label
	require.NoError(t, r.c.ConsumeTraces(context.Background(), td))
	got := r.skipped(t)
	assert.Len(t, got, maxTierLabels+1)
	assert.Equal(t, int64(5), got["tier_not_listed/other"])
	assert.Equal(t, int64(2), got["tier_not_listed/t0"])
	assert.Empty(t, r.sink.AllLogs())
}

func TestConfigValidate(t *testing.T) {
	assert.NoError(t, (&Config{}).Validate())
	assert.NoError(t, (&Config{Tiers: []string{"gateway", "agent", "region_2-b"}}).Validate())
	for _, bad := range []string{"", "Gateway", "gate way", "a123456789012345678901234567890123"} {
		err := (&Config{Tiers: []string{"gateway", bad}}).Validate()
		if assert.Error(t, err, bad) {
			assert.Contains(t, err.Error(), `"tiers[1]" must be 1 to 32 of a-z, 0-9, _ and -`)
		}
	}
}
