package findingsconnector

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
)

// These values stand in for mdatagen's internal/metadata package (see metadata.yaml).
var (
	// Type is the component type of this connector.
	Type = component.MustNewType("findings")
)

const (
	// ScopeName is the instrumentation scope of the log records the connector emits.
	ScopeName = "github.com/agenttrail/agenttrail/connector/findingsconnector"
	// TracesToLogsStability is the stability level of the traces → logs route.
	TracesToLogsStability = component.StabilityLevelAlpha
)

// NewFactory creates a factory for the findings connector.
func NewFactory() connector.Factory {
	return connector.NewFactory(
		Type,
		func() component.Config { return &Config{} },
		connector.WithTracesToLogs(createTracesToLogs, TracesToLogsStability),
	)
}

func createTracesToLogs(_ context.Context, set connector.Settings, _ component.Config, next consumer.Logs) (connector.Traces, error) {
	return &findingsConnector{next: next, logger: set.Logger}, nil
}
