package storyjoinprocessor

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

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
	return processorhelper.NewTraces(ctx, set, cfg, next, j.consume,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}),
		processorhelper.WithStart(j.start),
		processorhelper.WithShutdown(j.shutdown))
}
