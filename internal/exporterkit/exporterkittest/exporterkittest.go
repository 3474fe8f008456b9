// Package exporterkittest holds what the tests of this project's exporters (splunk_hec,
// sentinel, evidence) share: an exporter started for one test, settings whose log is observed
// or whose telemetry is recorded, a counter read by reason, and the throughput benchmark loop
// and its numbered spans.
package exporterkittest

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// StartTraces validates cfg, creates the traces exporter of f, starts it and shuts it down
// (without error) when the test ends.
func StartTraces(t testing.TB, f exporter.Factory, cfg component.Config, set exporter.Settings) exporter.Traces {
	t.Helper()
	return started(t, cfg, func() (exporter.Traces, error) { return f.CreateTraces(context.Background(), set, cfg) })
}

// StartLogs is StartTraces for logs.
func StartLogs(t testing.TB, f exporter.Factory, cfg component.Config, set exporter.Settings) exporter.Logs {
	t.Helper()
	return started(t, cfg, func() (exporter.Logs, error) { return f.CreateLogs(context.Background(), set, cfg) })
}

func started[C component.Component](t testing.TB, cfg component.Config, create func() (C, error)) C {
	t.Helper()
	if v, ok := cfg.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			t.Fatalf("config: %v", err)
		}
	}
	c, err := create()
	if err != nil {
		t.Fatalf("create exporter: %v", err)
	}
	Start(t, c.Start, c.Shutdown)
	return c
}

// Start runs start with a no-op host and shutdown (which must not fail) when the test ends:
// for an exporter without the exporterhelper wrapping too.
func Start(t testing.TB, start component.StartFunc, shutdown component.ShutdownFunc) {
	t.Helper()
	if err := start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
}

// ObservedSettings returns no-op settings of an exporter of type typ whose logger records the
// entries at level and above.
func ObservedSettings(typ component.Type, level zapcore.Level) (exporter.Settings, *observer.ObservedLogs) {
	core, logs := observer.New(level)
	set := exportertest.NewNopSettings(typ)
	set.Logger = zap.New(core)
	return set, logs
}

// TelemetrySettings returns no-op settings of an exporter of type typ whose telemetry is
// recorded by the returned Telemetry (shut down when the test ends), for tests that read the
// exporter's metrics.
func TelemetrySettings(t testing.TB, typ component.Type) (exporter.Settings, *componenttest.Telemetry) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("telemetry shutdown: %v", err)
		}
	})
	set := exportertest.NewNopSettings(typ)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	return set, tel
}

// CountsByReason reads the monotonic int counter name (dropped, repaired, ...) from tel,
// summed by its reason attribute.
func CountsByReason(t testing.TB, tel *componenttest.Telemetry, name string) map[string]int64 {
	t.Helper()
	m, err := tel.GetMetric(name)
	if err != nil {
		t.Fatalf("metric %s: %v", name, err)
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok || !sum.IsMonotonic {
		t.Fatalf("metric %s is a %T, not a monotonic int sum", name, m.Data)
	}
	got := map[string]int64{}
	for _, dp := range sum.DataPoints {
		reason, _ := dp.Attributes.Value("reason")
		got[reason.AsString()] += dp.Value
	}
	return got
}

// NumberedSpans builds n chat spans spread over two resources (service.name agent-0 with the
// even i, agent-1 with the odd): span i has the span id SpanID(i), a trace id and start time
// derived from i, and the same GenAI attributes. resource (nil: nothing) completes each
// resource r and its one scope before its spans are added; span (nil: nothing) each span.
func NumberedSpans(n int, resource func(r int, rs ptrace.ResourceSpans), span func(ptrace.Span)) ptrace.Traces {
	td := ptrace.NewTraces()
	for r := 0; r < 2; r++ {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("agent-%d", r))
		ss := rs.ScopeSpans().AppendEmpty()
		if resource != nil {
			resource(r, rs)
		}
		for i := r; i < n; i += 2 {
			s := ss.Spans().AppendEmpty()
			s.SetName("llm.chat")
			s.SetTraceID(pcommon.TraceID{0xaa, byte(i >> 8), byte(i)})
			s.SetSpanID(SpanID(i))
			s.SetKind(ptrace.SpanKindClient)
			s.SetStartTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000 + int64(i)*1_000_000))
			s.SetEndTimestamp(pcommon.Timestamp(1_700_000_000_500_000_000 + int64(i)*1_000_000))
			s.Attributes().PutStr("gen_ai.system", "openai")
			s.Attributes().PutStr("gen_ai.request.model", "gpt-4o")
			s.Attributes().PutInt("gen_ai.usage.input_tokens", int64(100+i))
			s.Attributes().PutStr("agenttrail.tool", "shell.exec")
			s.Attributes().PutStr("agenttrail.prompt.sha256", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
			if span != nil {
				span(s)
			}
		}
	}
	return td
}

// SpanID is the span id of NumberedSpans' span i.
func SpanID(i int) pcommon.SpanID {
	return pcommon.SpanID{0x5a, 0, 0, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

// BenchmarkTraces sends td to exp in the benchmark loop and reports spans/s.
func BenchmarkTraces(b *testing.B, exp exporter.Traces, td ptrace.Traces) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := exp.ConsumeTraces(context.Background(), td); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(td.SpanCount())*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
}
