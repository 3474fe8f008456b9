package ebpfreceiver

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor"
)

// attackStories runs the attack story processor (mode alert, a completion grace of 200ms) over
// copies of what the receiver emitted into sink (the sink's stay for later checks) and returns
// what the processor passes on; stop shuts the processor down.
func attackStories(t *testing.T, sink *consumertest.TracesSink) (out *consumertest.TracesSink, stop func()) {
	t.Helper()
	out = new(consumertest.TracesSink)
	f := attackstoryprocessor.NewFactory()
	pcfg := f.CreateDefaultConfig().(*attackstoryprocessor.Config)
	pcfg.DefaultMode = attackstoryprocessor.ModeAlert
	pcfg.CompletionGrace = 200 * time.Millisecond
	proc, err := f.CreateTraces(context.Background(), processortest.NewNopSettings(f.Type()), pcfg, out)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	stop = func() {
		if err := proc.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}
	for _, td := range sink.AllTraces() {
		cp := ptrace.NewTraces()
		td.CopyTo(cp)
		if err := proc.ConsumeTraces(context.Background(), cp); err != nil {
			stop()
			t.Fatal(err)
		}
	}
	return out, stop
}
