// Package metadata holds what metadata.yaml declares of the aibom connector: its type, the
// instrumentation scope of its own telemetry and the stability of each signal. It has the shape
// of mdatagen's generated_status.go, written by hand because mdatagen is not served at the
// collector version this module pins; the component's TestComponent holds it to
// metadata.yaml (componenttestkit.Check: the factory built from it, and ScopeName).
package metadata // import "github.com/agenttrail/agenttrail/connector/aibomconnector/internal/metadata"

import (
	"go.opentelemetry.io/collector/component"
)

var (
	Type      = component.MustNewType("aibom")
	ScopeName = "github.com/agenttrail/agenttrail/connector/aibomconnector"
)

const (
	TracesToLogsStability = component.StabilityLevelAlpha
)
