package findingsconnector

import (
	"testing"

	"github.com/agenttrail/agenttrail/connector/findingsconnector/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/componenttestkit"
)

// TestComponent holds the factory to metadata.yaml (type, stability, scope, config, lifecycle, the
// metrics it registers) and README.md to the metrics, as mdatagen's generated test would.
func TestComponent(t *testing.T) {
	componenttestkit.Check(t, NewFactory(), "metadata.yaml", componenttestkit.Options{ScopeName: metadata.ScopeName})
}
