package exporterkit

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func newTestDrops(t *testing.T) (*Drops, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	counter, err := noop.NewMeterProvider().Meter("test").Int64Counter("dropped")
	if err != nil {
		t.Fatal(err)
	}
	return NewDrops(counter, zap.New(core), "splunk_hec/a", "traces", "events"), logs
}

// TestSummaryPerInterval: one line per interval in which something was dropped, with that
// interval's counts by reason; none for an interval without drops; the shutdown line has the
// totals since start.
func TestSummaryPerInterval(t *testing.T) {
	d, logs := newTestDrops(t)
	d.SetInterval(30 * time.Millisecond)
	d.Start()
	d.Add(context.Background(), ReasonRejected, 40)
	d.Add(context.Background(), "event_too_large", 2)
	d.Add(context.Background(), ReasonRejected, 0) // nothing: no count, no line
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessage("Drop summary of exporter splunk_hec/a (traces)").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no summary line within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // more intervals, without drops
	d.Add(context.Background(), ReasonRetriesExhausted, 7)
	d.Shutdown()
	d.Shutdown() // idempotent

	lines := logs.FilterMessage("Drop summary of exporter splunk_hec/a (traces)").All()
	if len(lines) != 2 {
		t.Fatalf("%d summary lines, want 2 (one interval with drops, then shutdown)", len(lines))
	}
	first, last := lines[0].ContextMap(), lines[1].ContextMap()
	if first["dropped"] != int64(42) || first["dropped_by_reason"] != "event_too_large=2,rejected=40" || lines[0].Level != zapcore.WarnLevel {
		t.Errorf("interval line = %v at %v", first, lines[0].Level)
	}
	if last["dropped"] != int64(7) || last["dropped_since_start"] != int64(49) || last["dropped_by_reason"] != "retries_exhausted=7" {
		t.Errorf("shutdown line = %v", last)
	}
	if got := d.Totals(); got[ReasonRejected] != 40 || got[ReasonRetriesExhausted] != 7 || got["event_too_large"] != 2 {
		t.Errorf("Totals() = %v", got)
	}
}

// TestHelperLoggerClassifies: exporterhelper's lines, as v0.165.0 writes them, are counted by
// reason; a partial failure counts what it hands back; a shutdown with a persistent queue
// counts nothing and says "kept".
func TestHelperLoggerClassifies(t *testing.T) {
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for i := 0; i < 3; i++ {
		spans.AppendEmpty()
	}
	tests := []struct {
		name       string
		msg        string
		err        error
		persistent bool
		want       map[string]int64
		wantMsg    string
	}{
		{"permanent", helperDropping, consumererror.NewPermanent(errors.New("HTTP 400")), false, map[string]int64{ReasonRejected: 10}, helperDropping},
		{"retries exhausted", helperDropping, errors.New("no more retries left: HTTP 503"), false, map[string]int64{ReasonRetriesExhausted: 10}, helperDropping},
		{"partial", helperDropping, consumererror.NewTraces(errors.New("no more retries left: x"), td), false, map[string]int64{ReasonRetriesExhausted: 3}, helperDropping},
		{"shutdown, disk queue", helperDropping, errors.New("interrupted due to shutdown: HTTP 503"), true, map[string]int64{}, "Export interrupted by shutdown; the data is kept in the persistent queue and sent after the restart."},
		{"shutdown, memory queue", helperDropping, errors.New("interrupted due to shutdown: HTTP 503"), false, map[string]int64{ReasonShutdown: 10}, "Export interrupted by shutdown; the data is lost (in-memory queue, no file_storage)."},
		{"queue full", helperRejecting, errors.New("sending queue is full"), true, map[string]int64{ReasonQueueFull: 10}, helperRejecting},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := newTestDrops(t)
			core, logs := observer.New(zapcore.InfoLevel)
			l := d.HelperLogger(zap.New(zapcore.NewSamplerWithOptions(core, time.Hour, 1, 1000)), tt.persistent)
			key := "dropped_items"
			if tt.msg == helperRejecting {
				key = "rejected_items"
			}
			for i := 0; i < 3; i++ { // the sampler would keep 1 of 3: these lines are not sampled
				l.Error(tt.msg, zap.Error(tt.err), zap.Int(key, 10))
			}
			got := d.Totals()
			for k := range tt.want {
				tt.want[k] *= 3
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Totals() = %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("Totals() = %v, want %v", got, tt.want)
				}
			}
			if n := logs.FilterMessage(tt.wantMsg).Len(); n != 3 {
				t.Fatalf("%d lines %q, want 3; got %v", n, tt.wantMsg, logs.All())
			}
		})
	}
}

// TestHelperLoggerCountsWhateverTheLevel: a logger that writes nothing below fatal (or a no-op
// one) still hands exporterhelper's error lines to the accounting, and writes none of them.
func TestHelperLoggerCountsWhateverTheLevel(t *testing.T) {
	for name, base := range map[string]*zap.Logger{
		"fatal only": zap.New(func() zapcore.Core { c, _ := observer.New(zapcore.FatalLevel); return c }()),
		"no-op":      zap.NewNop(),
	} {
		t.Run(name, func(t *testing.T) {
			d, _ := newTestDrops(t)
			l := d.HelperLogger(base, false)
			l.Error(helperDropping, zap.Error(errors.New("no more retries left: HTTP 503")), zap.Int("dropped_items", 7))
			l.Info("an unrelated line")
			if got := d.Totals(); got[ReasonRetriesExhausted] != 7 {
				t.Errorf("Totals() = %v, want 7 retries_exhausted", got)
			}
		})
	}
}
