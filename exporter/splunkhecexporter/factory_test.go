package splunkhecexporter

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter/exportertest"

	"github.com/agenttrail/agenttrail/exporter/splunkhecexporter/internal/metadata"
)

// The type, stability, config struct and plain lifecycle are component_test.go's.
func TestDefaultsNeedAnEndpoint(t *testing.T) {
	// Defaults alone are not a valid config: endpoint and token are required.
	require.ErrorContains(t, NewFactory().CreateDefaultConfig().(*Config).Validate(), `"endpoint" must not be empty`)
}

func TestLifecycle(t *testing.T) {
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.ClientConfig.Endpoint = "https://testing.invalid:8088/services/collector"
	cfg.Token = "00000000-0000-0000-0000-000000000000"
	ctx := context.Background()
	set := exportertest.NewNopSettings(metadata.Type)

	tests := []struct {
		name   string
		create func() (component.Component, error)
	}{
		{"traces", func() (component.Component, error) { return f.CreateTraces(ctx, set, cfg) }},
		{"logs", func() (component.Component, error) { return f.CreateLogs(ctx, set, cfg) }},
	}
	for _, tt := range tests {
		t.Run(tt.name+" start and shutdown twice", func(t *testing.T) {
			c, err := tt.create()
			require.NoError(t, err)
			require.NoError(t, c.Start(ctx, componenttest.NewNopHost()))
			require.NoError(t, c.Shutdown(ctx))
			require.NoError(t, c.Shutdown(ctx))
		})
		t.Run(tt.name+" shutdown without start", func(t *testing.T) {
			c, err := tt.create()
			require.NoError(t, err)
			require.NoError(t, c.Shutdown(ctx))
			require.NoError(t, c.Shutdown(ctx))
		})
	}

	t.Run("raw exporter shutdown is idempotent without start", func(t *testing.T) {
		exp, err := newExporter(set, cfg, signalTraces)
		require.NoError(t, err)
		require.NoError(t, exp.shutdown(ctx))
		require.NoError(t, exp.shutdown(ctx))
	})

	t.Run("factory does not create the HTTP client", func(t *testing.T) {
		exp, err := newExporter(set, cfg, signalLogs)
		require.NoError(t, err)
		assert.Nil(t, exp.client)
		require.NoError(t, exp.start(ctx, componenttest.NewNopHost()))
		assert.NotNil(t, exp.client)
		require.NoError(t, exp.shutdown(ctx))
	})
}
