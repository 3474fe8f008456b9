// Package metadata holds what metadata.yaml declares of the sentinel exporter: its type, the
// instrumentation scope of its own telemetry and the stability of each signal. It has the shape
// of mdatagen's generated_status.go, written by hand because mdatagen is not served at the
// collector version this module pins; the component's TestComponent holds it to
// metadata.yaml (componenttestkit.Check: the factory built from it, and ScopeName).
package metadata // import "github.com/agenttrail/agenttrail/exporter/sentinelexporter/internal/metadata"

import (
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

var (
	Type      = component.MustNewType("sentinel")
	ScopeName = "github.com/agenttrail/agenttrail/exporter/sentinelexporter"
)

const (
	TracesStability = component.StabilityLevelAlpha
	LogsStability   = component.StabilityLevelAlpha
)

// NewDefaultSendingQueueConfig returns the sending queue default metadata.yaml declares
// (sending_queue.support: default).
func NewDefaultSendingQueueConfig() configoptional.Optional[exporterhelper.QueueBatchConfig] {
	return configoptional.Some(exporterhelper.NewDefaultQueueConfig())
}
