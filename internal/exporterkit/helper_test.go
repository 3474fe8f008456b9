package exporterkit

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// TestNewTracesAndLogs: the exporters run the helper's start and shutdown, count what
// exporterhelper drops on d, and may be shut down twice (the retry sender alone panics).
func TestNewTracesAndLogs(t *testing.T) {
	ctx := context.Background()
	set := exportertest.NewNopSettings(component.MustNewType("kit"))
	var starts, stops int
	retry := configretry.NewDefaultBackOffConfig()
	retry.Enabled = true
	h := Helper{
		Start:    func(context.Context, component.Host) error { starts++; return nil },
		Shutdown: func(context.Context) error { stops++; return nil },
		Retry:    retry,
		// With a queue, exporterhelper drops a rejected request itself, with its log line.
		Queue: configoptional.Some(exporterhelper.NewDefaultQueueConfig()),
	}
	rejected := consumererror.NewPermanent(errors.New("no"))

	d, _ := newTestDrops(t)
	te, err := NewTraces(ctx, set, struct{}{}, d, func(context.Context, ptrace.Traces) error { return rejected }, h)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := newTestDrops(t)
	le, err := NewLogs(ctx, set, struct{}{}, d2, func(context.Context, plog.Logs) error { return rejected }, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []component.Component{te, le} {
		if err := c.Start(ctx, componenttest.NewNopHost()); err != nil {
			t.Fatal(err)
		}
	}
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	if err := te.ConsumeTraces(ctx, td); err != nil {
		t.Fatal(err)
	}
	for _, c := range []component.Component{te, le, te, le} {
		if err := c.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if starts != 2 || stops != 2 {
		t.Errorf("started %d, stopped %d times, want 2 and 2", starts, stops)
	}
	if got := d.Totals()[ReasonRejected]; got != 1 {
		t.Errorf("rejected spans counted: %d, want 1", got)
	}
	if _, err := NewTraces(ctx, set, struct{}{}, d, nil, h); err == nil {
		t.Error("no push function: no error")
	}
}
