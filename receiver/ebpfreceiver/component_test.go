package ebpfreceiver

import (
	"os"
	"testing"

	"github.com/agenttrail/agenttrail/internal/componenttestkit"
)

// TestComponent holds the factory to metadata.yaml (type, stability, config, lifecycle, the
// metrics it registers) and README.md to the metrics, as mdatagen's generated test would.
func TestComponent(t *testing.T) {
	componenttestkit.Check(t, NewFactory(), "metadata.yaml", componenttestkit.Options{
		// Start loads the kernel programs (and registers most metrics there).
		CannotStart: func() string {
			if os.Geteuid() != 0 {
				return "loading eBPF programs needs root"
			}
			return ""
		},
	})
}
