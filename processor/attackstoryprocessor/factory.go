package attackstoryprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
)

// These values stand in for mdatagen's internal/metadata package (see metadata.yaml).
var (
	// Type is the component type of this processor.
	Type = component.MustNewType("attackstory")
)

const (
	// ScopeName is the instrumentation scope of the processor's own telemetry.
	ScopeName = "github.com/agenttrail/agenttrail/processor/attackstoryprocessor"
	// TracesStability is the stability level of the traces signal.
	TracesStability = component.StabilityLevelAlpha
)

// NewFactory creates a factory for the attack-story processor.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		Type,
		func() component.Config { return createDefaultConfig() },
		processor.WithTraces(createTraces, TracesStability),
	)
}

func createTraces(_ context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	return newProcessor(set, cfg.(*Config), next, realClock{})
}
