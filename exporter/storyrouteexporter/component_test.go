package storyrouteexporter

import (
	"testing"

	"github.com/agenttrail/agenttrail/exporter/storyrouteexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/componenttestkit"
)

// TestComponent holds the factory to metadata.yaml (type, stability, scope, config, lifecycle,
// the metrics it registers) and README.md to the metrics, as mdatagen's generated test would.
// The lifecycle starts two replicas' OTLP exporters (tests.config's static list); gRPC
// connects lazily, so nothing needs to listen.
func TestComponent(t *testing.T) {
	componenttestkit.Check(t, NewFactory(), "metadata.yaml", componenttestkit.Options{
		ScopeName: metadata.ScopeName,
	})
}
