package attackstoryprocessor

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/finding"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// storyFacts runs the spans of b through a buffer and returns the facts of the one story.
func storyFacts(t *testing.T, b *traceBuilder) *story.Facts {
	t.Helper()
	cfg := createDefaultConfig()
	tel, err := newTelemetry(componenttest.NewNopTelemetrySettings())
	require.NoError(t, err)
	buf := story.NewBuffer(limitsOf(cfg), tel)
	buf.AddBatch(b.traces(), baseTime)
	ready := buf.TakeReady(baseTime.Add(time.Minute), false)
	require.Len(t, ready, 1)
	return story.Extract(ready[0])
}

func TestNarrative(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(b *traceBuilder)
		want  string
	}{
		{
			name:  "the attack in a pod",
			build: func(b *traceBuilder) { attackStory(b.podProcess("customer-agent", 4242), traceID(1), 0) },
			want: "10:02:03.120 customer-agent (customer-ai/agent-7f9c, sa agent-sa) accepted a prompt in main.(*Agent).HandlePrompt" +
				" → chat model-x → connect 127.0.0.1:18443" +
				" → execute_tool customer-data-export(destination=http://127.0.0.2:19999/upload, query=SELECT * FROM customers)" +
				" → read /srv/bank/customers.csv → connect 127.0.0.2:19999 → chat model-x → connect 127.0.0.1:18443",
		},
		{
			name: "bytes sent, long arguments, repeats, a failed open, on a host",
			build: func(b *traceBuilder) {
				p := b.hostProcess("customer-agent", 4242)
				root := p.prompt(traceID(1), 0, 1000, "export")
				tool := p.tool(root, 10, 900, "customer-data-export", [2]string{"query", "SELECT id, name, email, card_number, ssn FROM customers WHERE 1=1"})
				p.openat(tool, 11, "/data/customers.db", "O_RDONLY")
				p.openat(tool, 12, "/data/missing.db", "O_RDONLY")
				ev := p.spans[tool.idx].span.Events().At(1)
				ev.Attributes().PutStr("error.type", "ENOENT")
				p.connect(tool, 20, 21, "203.0.113.9", 443)
				p.sendto(tool, 22, 23, "203.0.113.9", 443, 1_400_000)
				p.sendto(tool, 24, 25, "203.0.113.9", 443, 700_000)
			},
			want: "10:02:03.120 customer-agent (pid 4242) accepted a prompt in main.(*Agent).HandlePrompt" +
				" → execute_tool customer-data-export(query=SELECT id, name, email, card_num…)" +
				" → read /data/customers.db → read /data/missing.db failed (ENOENT)" +
				" → connect 203.0.113.9:443, 2.1 MB sent → sendto 203.0.113.9:443 ×2",
		},
		{
			name: "a model call and its decrypted TLS call below it are one step",
			build: func(b *traceBuilder) {
				p := b.hostProcess("customer-agent", 4242)
				root := p.prompt(traceID(1), 0, 1000, "hi")
				for _, at := range []float64{10, 100} {
					fn := p.chat(root, at, at+50, "model-x")
					wire, _ := p.newSpan(fn.trace, &fn, "chat model-x", ptrace.SpanKindClient, at+2, at+40)
					wire.Attributes().PutStr("gen_ai.operation.name", "chat")
					wire.Attributes().PutStr("gen_ai.provider.name", "openai")
				}
			},
			want: "10:02:03.120 customer-agent (pid 4242) accepted a prompt in main.(*Agent).HandlePrompt" +
				" → chat model-x → connect 127.0.0.1:18443 → chat model-x → connect 127.0.0.1:18443",
		},
		{
			name: "clock skew: a child that seems to start before its parent comes after it",
			build: func(b *traceBuilder) {
				p := b.hostProcess("customer-agent", 4242)
				root := p.prompt(traceID(1), 100, 1000, "hi")
				p.tool(root, 50, 60, "accounts-summary") // another CPU's clock
			},
			want: "10:02:03.220 customer-agent (pid 4242) accepted a prompt in main.(*Agent).HandlePrompt → execute_tool accounts-summary()",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTraceBuilder()
			tc.build(b)
			assert.Equal(t, tc.want, finding.Narrative(storyFacts(t, b), finding.Hints{}))
		})
	}
}

func TestOCSF(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.Workloads = []WorkloadConfig{bankWorkload(profile.ModeAlert)}
	h := newHarness(t, cfg)
	b := newTraceBuilder()
	attackStory(b.podProcess("customer-agent", 4242), traceID(9), 0)
	h.replay(b.traces(), false)
	h.settle()
	out := h.output()

	var root ptrace.Span
	forEachSpan(out, func(s ptrace.Span) {
		if s.ParentSpanID().IsEmpty() {
			root = s
		}
	})
	attrs := root.Attributes()
	ids, _ := attrs.Get(story.AttrFindingRuleIDs)
	assert.Equal(t, []any{story.RuleSensitiveReadEgress, story.RuleToolOutsideProfile, story.RuleEgressOutsideProfile, story.RulePromptInjection}, ids.Slice().AsRaw())
	sev, _ := attrs.Get(story.AttrFindingSeverity)
	assert.Equal(t, "Critical", sev.Str())
	atlas, _ := attrs.Get(story.AttrFindingAtlasIDs)
	assert.Equal(t, []any{"AML.T0086", "AML.T0057", "AML.T0053", "AML.T0025", "AML.T0051"}, atlas.Slice().AsRaw())
	require.Equal(t, 1, root.Events().Len())
	ev := root.Events().At(0)
	assert.Equal(t, "finding", ev.Name())
	for _, k := range []string{story.AttrFindingRuleIDs, story.AttrFindingSeverity, story.AttrFindingAtlasIDs, story.AttrFindingNarrative, story.AttrFindingOCSF, story.AttrFindingUID} {
		_, ok := ev.Attributes().Get(k)
		assert.True(t, ok, k)
	}
	raw, _ := ev.Attributes().Get(story.AttrFindingOCSF)

	var f struct {
		ClassUID    int    `json:"class_uid"`
		CategoryUID int    `json:"category_uid"`
		ActivityID  int    `json:"activity_id"`
		TypeUID     int    `json:"type_uid"`
		SeverityID  int    `json:"severity_id"`
		Severity    string `json:"severity"`
		Time        int64  `json:"time"`
		Message     string `json:"message"`
		FindingInfo struct {
			UID      string   `json:"uid"`
			Title    string   `json:"title"`
			Desc     string   `json:"desc"`
			Types    []string `json:"types"`
			Analytic struct {
				Name   string `json:"name"`
				TypeID int    `json:"type_id"`
			} `json:"analytic"`
			Attacks []struct {
				Technique struct{ UID, Name string } `json:"technique"`
				Tactic    struct{ UID, Name string } `json:"tactic"`
			} `json:"attacks"`
		} `json:"finding_info"`
		Resources []struct {
			UID  string         `json:"uid"`
			Data map[string]any `json:"data"`
		} `json:"resources"`
		Evidences []struct {
			Data        map[string]any `json:"data"`
			DstEndpoint *struct {
				IP   string `json:"ip"`
				Port int    `json:"port"`
			} `json:"dst_endpoint"`
			File *struct{ Path string } `json:"file"`
		} `json:"evidences"`
		Observables []struct {
			TypeID int    `json:"type_id"`
			Value  string `json:"value"`
		} `json:"observables"`
		Metadata struct {
			Product struct {
				Name       string `json:"name"`
				VendorName string `json:"vendor_name"`
			} `json:"product"`
			Version string `json:"version"`
		} `json:"metadata"`
		Unmapped map[string]any `json:"unmapped"`
	}
	require.NoError(t, json.Unmarshal([]byte(raw.Str()), &f))
	assert.Equal(t, 2004, f.ClassUID)
	assert.Equal(t, 2, f.CategoryUID)
	assert.Equal(t, 1, f.ActivityID)
	assert.Equal(t, 200401, f.TypeUID)
	assert.Equal(t, 5, f.SeverityID)
	assert.Equal(t, "Critical", f.Severity)
	assert.Equal(t, h.clock.Now().UnixMilli(), f.Time)
	assert.Contains(t, f.Message, "read /srv/bank/customers.csv")
	assert.Equal(t, traceID(9).String()+"-"+root.SpanID().String(), f.FindingInfo.UID)
	assert.Equal(t, "Sensitive data read, then sent out", f.FindingInfo.Title)
	assert.Contains(t, f.FindingInfo.Desc, "accepted a prompt in main.(*Agent).HandlePrompt")
	assert.Equal(t, []string{story.RuleSensitiveReadEgress, story.RuleToolOutsideProfile, story.RuleEgressOutsideProfile, story.RulePromptInjection}, f.FindingInfo.Types)
	assert.Equal(t, story.RuleSensitiveReadEgress, f.FindingInfo.Analytic.Name)
	assert.Equal(t, 1, f.FindingInfo.Analytic.TypeID)
	require.NotEmpty(t, f.FindingInfo.Attacks)
	assert.Equal(t, "AML.T0086", f.FindingInfo.Attacks[0].Technique.UID)
	assert.Equal(t, "Exfiltration via AI Agent Tool Invocation", f.FindingInfo.Attacks[0].Technique.Name)
	assert.Equal(t, "AML.TA0010", f.FindingInfo.Attacks[0].Tactic.UID)
	assert.Equal(t, "AML.T0057", f.FindingInfo.Attacks[1].Technique.UID)
	require.Len(t, f.Resources, 1)
	assert.Equal(t, "customer-ai/customer-agent/agent", f.Resources[0].UID)
	assert.Equal(t, traceID(9).String(), f.Resources[0].Data["trace_id"])
	assert.Equal(t, root.SpanID().String(), f.Resources[0].Data["span_id"])
	require.NotEmpty(t, f.Evidences)
	for _, e := range f.Evidences {
		assert.Equal(t, traceID(9).String(), e.Data["trace_id"])
		assert.NotEmpty(t, e.Data["span_id"])
	}
	assert.Equal(t, "/srv/bank/customers.csv", f.Evidences[0].File.Path)
	assert.Equal(t, "127.0.0.2", f.Evidences[1].DstEndpoint.IP)
	assert.Equal(t, 19999, f.Evidences[1].DstEndpoint.Port)
	obs := map[int]string{}
	for _, o := range f.Observables {
		obs[o.TypeID] = o.Value
	}
	assert.Equal(t, map[int]string{2: "127.0.0.2", 11: "19999", 7: "/srv/bank/customers.csv"}, obs)
	assert.Equal(t, "AgentTrail", f.Metadata.Product.Name)
	assert.Equal(t, "AgentTrail", f.Metadata.Product.VendorName)
	assert.Equal(t, "1.1.0", f.Metadata.Version)
	assert.Equal(t, traceID(9).String(), f.Unmapped["trace_id"])
	assert.Equal(t, root.SpanID().String(), f.Unmapped["span_id"])
}
