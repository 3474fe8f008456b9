// Package metadata holds what metadata.yaml declares of the splunk_hec exporter: its type, the
// instrumentation scope of its own telemetry and the stability of each signal. It has the shape
// of mdatagen's generated_status.go, written by hand because mdatagen is not served at the
// collector version this module pins; the component's TestComponent holds it to
// metadata.yaml (componenttestkit.Check: the factory built from it, and ScopeName).
package metadata // import "github.com/agenttrail/agenttrail/exporter/splunkhecexporter/internal/metadata"

import (
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

var (
	Type      = component.MustNewType("splunk_hec")
	ScopeName = "github.com/agenttrail/agenttrail/exporter/splunkhecexporter"
)

const (
	TracesStability = component.StabilityLevelBeta
	LogsStability   = component.StabilityLevelBeta
)

// NewDefaultSendingQueueConfig returns the sending queue default metadata.yaml declares
// (sending_queue.support: default).
func NewDefaultSendingQueueConfig() configoptional.Optional[exporterhelper.QueueBatchConfig] {
	return configoptional.Some(exporterhelper.NewDefaultQueueConfig())
}
