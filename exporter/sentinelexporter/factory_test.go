package sentinelexporter

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.uber.org/zap/zapcore"

	"github.com/agenttrail/agenttrail/exporter/sentinelexporter/internal/metadata"
)

// The type, stability, config struct and plain lifecycle are component_test.go's.
func TestDefaultsNeedAnEndpoint(t *testing.T) {
	require.ErrorContains(t, NewFactory().CreateDefaultConfig().(*Config).Validate(), `"endpoint" must not be empty`)
}

func managedConfig() *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.Endpoint = "https://agenttrail-dce-a1b2.westeurope-1.ingest.monitor.azure.com"
	cfg.DCRImmutableID = testDCR
	cfg.Auth = AuthConfig{Type: AuthManagedIdentity}
	return cfg
}

// Start builds the credential and the client without sending anything, so these run offline.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	set := exportertest.NewNopSettings(metadata.Type)
	for _, f := range []struct {
		name    string
		factory func() (component.Component, component.Component, error)
	}{
		{"default transport", func() (component.Component, component.Component, error) {
			tr, err := NewFactory().CreateTraces(ctx, set, managedConfig())
			if err != nil {
				return nil, nil, err
			}
			lg, err := NewFactory().CreateLogs(ctx, set, managedConfig())
			return tr, lg, err
		}},
		{"injected transport", func() (component.Component, component.Component, error) {
			f := NewFactoryWithTransport(&http.Client{})
			tr, err := f.CreateTraces(ctx, set, managedConfig())
			if err != nil {
				return nil, nil, err
			}
			lg, err := f.CreateLogs(ctx, set, managedConfig())
			return tr, lg, err
		}},
	} {
		t.Run(f.name+": start and shutdown twice", func(t *testing.T) {
			tr, lg, err := f.factory()
			require.NoError(t, err)
			for _, c := range []component.Component{tr, lg} {
				require.NoError(t, c.Start(ctx, componenttest.NewNopHost()))
				require.NoError(t, c.Shutdown(ctx))
				require.NoError(t, c.Shutdown(ctx))
			}
		})
		t.Run(f.name+": shutdown without start", func(t *testing.T) {
			tr, lg, err := f.factory()
			require.NoError(t, err)
			for _, c := range []component.Component{tr, lg} {
				require.NoError(t, c.Shutdown(ctx))
				require.NoError(t, c.Shutdown(ctx))
			}
		})
	}

	t.Run("the factory does not build the client; Start does", func(t *testing.T) {
		exp, err := newExporter(set, managedConfig(), signalLogs, factoryOptions{})
		require.NoError(t, err)
		assert.Nil(t, exp.getClient())
		require.NoError(t, exp.shutdown(ctx))
		require.NoError(t, exp.start(ctx, componenttest.NewNopHost()))
		assert.NotNil(t, exp.getClient())
		require.NoError(t, exp.shutdown(ctx))
		assert.Nil(t, exp.getClient())
		require.NoError(t, exp.shutdown(ctx))
	})

	t.Run("start logs the identity, never the secret", func(t *testing.T) {
		cfg := managedConfig()
		cfg.Auth = AuthConfig{Type: AuthClientSecret, TenantID: testTenant, ClientID: testClient, ClientSecret: testSecret}
		lset, logs := observedSettings(zapcore.InfoLevel)
		exp, err := newExporter(lset, cfg, signalTraces, factoryOptions{})
		require.NoError(t, err)
		require.NoError(t, exp.start(ctx, componenttest.NewNopHost()))
		require.NoError(t, exp.shutdown(ctx))
		entries := logs.FilterMessage("Sentinel exporter started").All()
		require.Len(t, entries, 1)
		assert.Contains(t, entries[0].ContextMap()["identity"], testClient)
		assert.Empty(t, errorLines(t, logs))
	})

	t.Run("sovereign clouds and user-assigned identities build", func(t *testing.T) {
		for _, c := range []func(*Config){
			func(c *Config) { c.Cloud = cloudGovernment },
			func(c *Config) { c.Cloud = cloudChina },
			func(c *Config) { c.Auth.ClientID = testClient },
			func(c *Config) {
				c.Auth.ResourceID = "/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z"
			},
			func(c *Config) {
				c.Cloud = cloudGovernment
				c.Auth = AuthConfig{Type: AuthClientSecret, TenantID: testTenant, ClientID: testClient, ClientSecret: testSecret}
			},
		} {
			cfg := managedConfig()
			c(cfg)
			require.NoError(t, cfg.Validate())
			exp, err := newExporter(set, cfg, signalTraces, factoryOptions{})
			require.NoError(t, err)
			require.NoError(t, exp.start(ctx, componenttest.NewNopHost()))
			require.NoError(t, exp.shutdown(ctx))
		}
	})
}
