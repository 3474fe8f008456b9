package metadata

import (
	"testing"

	"go.opentelemetry.io/collector/component"

	"github.com/agenttrail/agenttrail/internal/componenttestkit"
)

func TestStatus(t *testing.T) {
	componenttestkit.CheckStatus(t, "../../metadata.yaml", componenttestkit.Status{
		Type:      Type,
		ScopeName: ScopeName,
		Stability: map[string]component.StabilityLevel{
			"traces": TracesStability,
		},
	})
}
