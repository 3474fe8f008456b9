// Package metadata holds what metadata.yaml declares of the story route exporter: its type, the
// instrumentation scope of its own telemetry and the stability of each signal. It has the shape
// of mdatagen's generated_status.go, written by hand because mdatagen is not served at the
// collector version this module pins; status_test.go holds it to metadata.yaml.
package metadata // import "github.com/agenttrail/agenttrail/exporter/storyrouteexporter/internal/metadata"

import (
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

var (
	Type      = component.MustNewType("storyroute")
	ScopeName = "github.com/agenttrail/agenttrail/exporter/storyrouteexporter"
)

const (
	TracesStability = component.StabilityLevelAlpha
)

// NewDefaultSendingQueueConfig returns the sending queue default metadata.yaml declares
// (sending_queue.support: default).
func NewDefaultSendingQueueConfig() configoptional.Optional[exporterhelper.QueueBatchConfig] {
	return configoptional.Some(exporterhelper.NewDefaultQueueConfig())
}
