package storyjoinprocessor

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"github.com/agenttrail/agenttrail/internal/handoff"
	"github.com/agenttrail/agenttrail/processor/storyjoinprocessor/internal/metadata"
)

// NewFactory returns the factory of the storyjoin processor.
func NewFactory() processor.Factory {
	return processor.NewFactory(metadata.Type, createDefaultConfig,
		processor.WithTraces(createTraces, metadata.TracesStability))
}

func createDefaultConfig() component.Config {
	return &Config{
		Wait:            5 * time.Second,
		Window:          2 * time.Second,
		ClientTTL:       2 * time.Minute,
		MaxPendingSpans: 100000,
		MaxClients:      200000,
		MaxInbound:      100000,
	}
}

func createTraces(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	j, err := newJoiner(cfg.(*Config), set.TelemetrySettings, next)
	if err != nil {
		return nil, err
	}
	return newTracesProcessor(ctx, set, cfg, next, j)
}

func newTracesProcessor(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces, j *joiner) (processor.Traces, error) {
	// A batch goes on through processorhelper (without what is held); a held trace goes on
	// later from the processor's own goroutine, straight to next.
	p, err := processorhelper.NewTraces(ctx, set, cfg, next, j.consume,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}),
		processorhelper.WithStart(j.start),
		processorhelper.WithShutdown(j.shutdown))
	if err != nil {
		return nil, err
	}
	return handoffProcessor{p}, nil
}

// handoffProcessor answers a request only once all of it was passed on: what went on at once
// (processorhelper calls next before it returns) and what waited for its client half. Behind
// the OTLP receiver the sender keeps the spans until then: a SIGKILL of the gateway while it
// holds them loses nothing acknowledged.
type handoffProcessor struct{ processor.Traces }

func (h handoffProcessor) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	ack, err := h.consume(ctx, td)
	if err != nil {
		return err
	}
	return ack.Wait(ctx)
}

// consume passes on what goes on at once and returns the request's Ack, still waiting for
// the traces it left behind.
func (h handoffProcessor) consume(ctx context.Context, td ptrace.Traces) (*handoff.Ack, error) {
	req := &request{ack: handoff.New()}
	err := h.Traces.ConsumeTraces(context.WithValue(ctx, requestKey{}, req), td)
	for _, a := range req.released {
		a.Done(err)
	}
	return req.ack, err
}
