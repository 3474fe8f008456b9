package evidenceexporter

import (
	"testing"

	"go.opentelemetry.io/collector/component"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/componenttestkit"
)

// TestComponent holds the factory to metadata.yaml (type, stability, scope, config, lifecycle, the
// metrics it registers) and README.md to the metrics, as mdatagen's generated test would.
func TestComponent(t *testing.T) {
	componenttestkit.Check(t, NewFactory(), "metadata.yaml", componenttestkit.Options{
		ScopeName: metadata.ScopeName,
		// An archive of its own and a real signing key, so that Start opens and seals it.
		Config: func(t *testing.T, cfg component.Config) {
			c := cfg.(*Config)
			c.Directory = t.TempDir()
			c.SigningKeyFile = keyFile(t, goodKeyPEM(t), 0o600)
		},
	})
}
