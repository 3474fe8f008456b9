// Package metadata holds the component type and stability declared in metadata.yaml. It has
// the shape of mdatagen's generated_status.go, written by hand because mdatagen is not part of
// this module's tool set at the pinned collector version; keep it in step with metadata.yaml.
package metadata // import "github.com/agenttrail/agenttrail/exporter/evidenceexporter/internal/metadata"

import (
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

var (
	Type      = component.MustNewType("evidence")
	ScopeName = "github.com/agenttrail/agenttrail/exporter/evidenceexporter"
)

const (
	TracesStability = component.StabilityLevelAlpha
	LogsStability   = component.StabilityLevelAlpha
)

// NewDefaultSendingQueueConfig returns the sending queue default declared in metadata.yaml.
func NewDefaultSendingQueueConfig() configoptional.Optional[exporterhelper.QueueBatchConfig] {
	return configoptional.Some(exporterhelper.NewDefaultQueueConfig())
}
