package findingsconnector

import (
	"context"
	"flag"
	"path/filepath"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/plogtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/connector/findingsconnector/internal/metadata"
)

var update = flag.Bool("update", false, "rewrite testdata/expected_logs.yaml")

func newConnector(t *testing.T, sink *consumertest.LogsSink) connector.Traces {
	t.Helper()
	set := connector.Settings{ID: component.NewID(metadata.Type), TelemetrySettings: componenttest.NewNopTelemetrySettings(), BuildInfo: component.NewDefaultBuildInfo()}
	c, err := NewFactory().CreateTracesToLogs(context.Background(), set, NewFactory().CreateDefaultConfig(), sink)
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, c.Shutdown(context.Background())) })
	return c
}

// The type, stability, config and lifecycle are component_test.go's.
func TestDoesNotMutate(t *testing.T) {
	c := newConnector(t, new(consumertest.LogsSink))
	assert.False(t, c.Capabilities().MutatesData)
}

// TestFindingsToLogs runs the attackstory processor's output for the bank demo's attack
// (testdata/findings_traces.yaml, a copy of its golden file) through the connector.
func TestFindingsToLogs(t *testing.T) {
	td, err := golden.ReadTraces(filepath.Join("testdata", "findings_traces.yaml"))
	require.NoError(t, err)
	sink := new(consumertest.LogsSink)
	c := newConnector(t, sink)
	require.NoError(t, c.ConsumeTraces(context.Background(), td))
	require.Len(t, sink.AllLogs(), 1)
	ld := sink.AllLogs()[0]
	require.Equal(t, 1, ld.LogRecordCount())

	expectedPath := filepath.Join("testdata", "expected_logs.yaml")
	if *update {
		require.NoError(t, golden.WriteLogsToFile(expectedPath, ld))
	}
	expected, err := golden.ReadLogs(expectedPath)
	require.NoError(t, err)
	require.NoError(t, plogtest.CompareLogs(expected, ld, plogtest.IgnoreObservedTimestamp()))

	var root ptrace.Span
	rs := td.ResourceSpans().At(0)
	spans := rs.ScopeSpans().At(0).Spans()
	for i := 0; i < spans.Len(); i++ {
		if spans.At(i).ParentSpanID().IsEmpty() {
			root = spans.At(i)
		}
	}
	ocsf, _ := root.Events().At(0).Attributes().Get(attrFindingOCSF)
	rl := ld.ResourceLogs().At(0)
	assert.Equal(t, rs.Resource().Attributes().AsRaw(), rl.Resource().Attributes().AsRaw())
	assert.Equal(t, metadata.ScopeName, rl.ScopeLogs().At(0).Scope().Name())
	lr := rl.ScopeLogs().At(0).LogRecords().At(0)
	assert.Equal(t, ocsf.Str(), lr.Body().Str())
	assert.Equal(t, root.TraceID(), lr.TraceID())
	assert.Equal(t, root.SpanID(), lr.SpanID())
	assert.Equal(t, root.Events().At(0).Timestamp(), lr.Timestamp())
	assert.NotZero(t, lr.ObservedTimestamp())
	assert.Equal(t, plog.SeverityNumberFatal, lr.SeverityNumber())
	assert.Equal(t, "Critical", lr.SeverityText())
	assert.Equal(t, EventName, lr.EventName())
	tid, _ := lr.Attributes().Get("trace_id")
	assert.Equal(t, root.TraceID().String(), tid.Str())
	sid, _ := lr.Attributes().Get("span_id")
	assert.Equal(t, root.SpanID().String(), sid.Str())
	ids, _ := lr.Attributes().Get("agenttrail.finding.rule_ids")
	assert.Equal(t, "sensitive_read_then_egress", ids.Slice().At(0).Str())
	_, hasOCSF := lr.Attributes().Get(attrFindingOCSF)
	assert.False(t, hasOCSF, "the OCSF JSON is the body, not an attribute too")
}

func TestNoFindingsNoLogs(t *testing.T) {
	td := ptrace.NewTraces()
	span := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	span.SetName("invoke_agent customer-agent")
	span.Events().AppendEmpty().SetName("openat")
	sink := new(consumertest.LogsSink)
	require.NoError(t, newConnector(t, sink).ConsumeTraces(context.Background(), td))
	assert.Empty(t, sink.AllLogs())
}

func TestSeverityFromOCSFAndSkips(t *testing.T) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "a")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	s := spans.AppendEmpty()
	s.SetTraceID(pcommon.TraceID{1})
	s.SetSpanID(pcommon.SpanID{2})
	ev := s.Events().AppendEmpty()
	ev.SetName("finding")
	ev.Attributes().PutStr(attrFindingOCSF, `{"class_uid":2004,"severity_id":3}`)
	s.Events().AppendEmpty().SetName("finding") // no OCSF: skipped
	rs2 := td.ResourceSpans().AppendEmpty()
	rs2.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("no findings here")
	sink := new(consumertest.LogsSink)
	require.NoError(t, newConnector(t, sink).ConsumeTraces(context.Background(), td))
	require.Len(t, sink.AllLogs(), 1)
	ld := sink.AllLogs()[0]
	require.Equal(t, 1, ld.ResourceLogs().Len(), "resources without findings are left out")
	lr := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
	assert.Equal(t, plog.SeverityNumberError, lr.SeverityNumber())
	assert.Equal(t, "Medium", lr.SeverityText())
	assert.Equal(t, 1, ld.LogRecordCount())
}

func TestSeverityTable(t *testing.T) {
	for id, want := range map[int64]plog.SeverityNumber{
		0: plog.SeverityNumberUnspecified, 1: plog.SeverityNumberInfo, 2: plog.SeverityNumberWarn, 3: plog.SeverityNumberError,
		4: plog.SeverityNumberError3, 5: plog.SeverityNumberFatal, 6: plog.SeverityNumberFatal4, 99: plog.SeverityNumberUnspecified,
	} {
		got, _ := severity(id)
		assert.Equal(t, want, got, id)
	}
}
