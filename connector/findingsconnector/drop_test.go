package findingsconnector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/agenttrail/agenttrail/connector/findingsconnector/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/testutil"
)

type dropRig struct {
	c    connector.Traces
	tel  *componenttest.Telemetry
	logs *observer.ObservedLogs
}

func newDropRig(t *testing.T, next consumer.Logs) *dropRig {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	r := &dropRig{tel: componenttest.NewTelemetry(), logs: logs}
	t.Cleanup(func() { require.NoError(t, r.tel.Shutdown(context.Background())) })
	ts := r.tel.NewTelemetrySettings()
	ts.Logger = zap.New(core)
	set := connector.Settings{ID: component.NewID(metadata.Type), TelemetrySettings: ts, BuildInfo: component.NewDefaultBuildInfo()}
	c, err := NewFactory().CreateTracesToLogs(context.Background(), set, NewFactory().CreateDefaultConfig(), next)
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, c.Shutdown(context.Background())) })
	r.c = c
	return r
}

// dropped is agenttrail.findings.dropped by reason.
func (r *dropRig) dropped(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	m, err := r.tel.GetMetric("agenttrail.findings.dropped")
	if err != nil {
		return out
	}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		reason, _ := dp.Attributes.Value(attribute.Key("reason"))
		out[reason.AsString()] += dp.Value
	}
	return out
}

// findingTraces is a story's root span with n findings (uids prefix-0 ...).
func findingTraces(prefix string, n int) ptrace.Traces {
	td := ptrace.NewTraces()
	span := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	for i := range n {
		tierFinding(span, fmt.Sprintf("%s-%d", prefix, i), nil)
	}
	return td
}

// TestRefusedFindingsDoNotFailTraces: an error of the findings pipeline is not the traces
// pipeline's: ConsumeTraces succeeds, the records are counted by reason and one error line
// names them (bounded). Before, the error came back and the traces pipeline refused the spans.
func TestRefusedFindingsDoNotFailTraces(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		reason string
	}{
		{"retryable", errors.New("sending queue is full"), reasonRefused},
		{"permanent", consumererror.NewPermanent(errors.New("unimplemented")), reasonPermanent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newDropRig(t, consumertest.NewErr(tc.err))
			require.NoError(t, r.c.ConsumeTraces(context.Background(), findingTraces("f", 3)))
			require.NoError(t, r.c.ConsumeTraces(context.Background(), findingTraces("g", maxLoggedUIDs+4)))
			assert.Equal(t, map[string]int64{tc.reason: int64(3 + maxLoggedUIDs + 4)}, r.dropped(t))

			lines := r.logs.FilterLevelExact(zapcore.ErrorLevel).All()
			require.Len(t, lines, 2)
			f := lines[0].ContextMap()
			assert.Equal(t, int64(3), f["dropped"])
			assert.Equal(t, tc.reason, f["reason"])
			assert.Equal(t, []any{"f-0", "f-1", "f-2"}, f["finding_uids"])
			assert.Contains(t, f["error"], tc.err.Error())
			g := lines[1].ContextMap()
			assert.Equal(t, int64(maxLoggedUIDs+4), g["dropped"])
			assert.Len(t, g["finding_uids"], maxLoggedUIDs, "the line names a bounded number of uids")
		})
	}
	t.Run("delivered is not dropped", func(t *testing.T) {
		sink := new(consumertest.LogsSink)
		r := newDropRig(t, sink)
		require.NoError(t, r.c.ConsumeTraces(context.Background(), findingTraces("f", 2)))
		assert.Equal(t, 2, sink.LogRecordCount())
		assert.Empty(t, r.dropped(t))
		assert.Zero(t, r.logs.FilterLevelExact(zapcore.ErrorLevel).Len())
	})
}

// blockingLogs is a logs backend that answers only once released: a slow or stuck SIEM.
type blockingLogs struct {
	consumertest.LogsSink
	release chan struct{}
}

func (b *blockingLogs) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.LogsSink.ConsumeLogs(ctx, ld)
}

// startBackend is an OTLP/gRPC receiver on loopback: logs to next when it is set, else a
// receiver of traces only (a trace backend such as Jaeger, which answers logs Unimplemented).
func startBackend(t *testing.T, next consumer.Logs) string {
	t.Helper()
	endpoint := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	rf := otlpreceiver.NewFactory()
	rcfg := rf.CreateDefaultConfig()
	require.NoError(t, confmap.NewFromStringMap(map[string]any{"protocols": map[string]any{"grpc": map[string]any{"endpoint": endpoint}}}).Unmarshal(rcfg))
	var recv receiver.Logs
	var err error
	if next != nil {
		recv, err = rf.CreateLogs(context.Background(), receivertest.NewNopSettings(rf.Type()), rcfg, next)
	} else {
		recv, err = rf.CreateTraces(context.Background(), receivertest.NewNopSettings(rf.Type()), rcfg, consumertest.NewNop())
	}
	require.NoError(t, err)
	require.NoError(t, recv.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, recv.Shutdown(context.Background())) })
	return endpoint
}

// startExporter is the otlp_grpc exporter of a logs/findings pipeline, configured by conf.
func startExporter(t *testing.T, endpoint string, conf map[string]any) exporter.Logs {
	t.Helper()
	ef := otlpexporter.NewFactory()
	ecfg := ef.CreateDefaultConfig()
	conf["endpoint"] = endpoint
	conf["tls"] = map[string]any{"insecure": true}
	require.NoError(t, confmap.NewFromStringMap(conf).Unmarshal(ecfg))
	exp, err := ef.CreateLogs(context.Background(), exportertest.NewNopSettings(ef.Type()), ecfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	return exp
}

// TestFullFindingsQueueKeepsTraces: the real otlp_grpc exporter with a sending queue of one
// request in front of a stuck logs backend. Of three batches at most two are taken (one in
// flight, one queued); the rest are refused by the queue. The traces pipeline sees success for
// all three, the refused are counted, and once the backend answers it has every one taken.
func TestFullFindingsQueueKeepsTraces(t *testing.T) {
	backend := &blockingLogs{release: make(chan struct{})}
	endpoint := startBackend(t, backend)
	exp := startExporter(t, endpoint, map[string]any{
		"timeout":          "30s",
		"sending_queue":    map[string]any{"queue_size": 1, "num_consumers": 1},
		"retry_on_failure": map[string]any{"enabled": false},
	})
	r := newDropRig(t, exp)
	const batches = 3
	for i := range batches {
		require.NoError(t, r.c.ConsumeTraces(context.Background(), findingTraces(fmt.Sprint("b", i), 1)),
			"a full findings queue must not refuse the traces")
	}
	dropped := r.dropped(t)
	assert.Len(t, dropped, 1)
	assert.GreaterOrEqual(t, dropped[reasonRefused], int64(1), "the queue holds one request and one is in flight")
	close(backend.release)
	require.NoError(t, exp.Shutdown(context.Background()), "shutdown drains what the queue took")
	assert.Equal(t, batches, backend.LogRecordCount()+int(dropped[reasonRefused]), "every finding either delivered or counted")
}

// TestFindingsToTraceOnlyBackend: the exporter without a queue in front of a backend that
// takes no logs (Unimplemented, permanent): counted as permanent, traces go on.
func TestFindingsToTraceOnlyBackend(t *testing.T) {
	endpoint := startBackend(t, nil)
	exp := startExporter(t, endpoint, map[string]any{
		"sending_queue":    map[string]any{"enabled": false},
		"retry_on_failure": map[string]any{"enabled": false},
	})
	t.Cleanup(func() { require.NoError(t, exp.Shutdown(context.Background())) })
	r := newDropRig(t, exp)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, r.c.ConsumeTraces(ctx, findingTraces("f", 2)))
	assert.Equal(t, map[string]int64{reasonPermanent: 2}, r.dropped(t))
}
