package sentinelexporter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/confmap"

	"github.com/agenttrail/agenttrail/exporter/sentinelexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/componenttestkit"
)

func loadTestConfig(t *testing.T, name string) (*Config, error) {
	t.Helper()
	cfg, err := componenttestkit.LoadConfig(t, NewFactory(), component.NewIDWithName(metadata.Type, name))
	return cfg.(*Config), err
}

func TestLoadConfig(t *testing.T) {
	t.Run("minimal config takes the defaults", func(t *testing.T) {
		cfg, err := loadTestConfig(t, "")
		require.NoError(t, err)
		assert.Equal(t, "https://agenttrail-dce-a1b2.westeurope-1.ingest.monitor.azure.com", cfg.Endpoint)
		assert.Equal(t, "dcr-0123456789abcdef0123456789abcdef", cfg.DCRImmutableID)
		assert.Equal(t, "Custom-AgentTrailFindings_CL", cfg.StreamNameFindings)
		assert.Equal(t, "Custom-AgentTrailSpans_CL", cfg.StreamNameSpans)
		assert.Equal(t, "AzureCloud", cfg.Cloud)
		assert.Equal(t, 1_000_000, cfg.MaxBatchBytes)
		assert.Equal(t, 30*time.Second, cfg.TimeoutConfig.Timeout)
		assert.Equal(t, AuthConfig{Type: AuthWorkloadIdentity}, cfg.Auth)
		assert.True(t, cfg.QueueSettings.HasValue())
		assert.True(t, cfg.BackOffConfig.Enabled)
		assert.Equal(t, 5*time.Minute, cfg.BackOffConfig.MaxElapsedTime)
	})

	t.Run("all settings", func(t *testing.T) {
		cfg, err := loadTestConfig(t, "allsettings")
		require.NoError(t, err)
		assert.Equal(t, "https://agenttrail-dce-a1b2.usgovvirginia-1.ingest.monitor.azure.us", cfg.Endpoint)
		assert.Equal(t, "dcr-fedcba9876543210fedcba9876543210", cfg.DCRImmutableID)
		assert.Equal(t, "Custom-SocFindings_CL", cfg.StreamNameFindings)
		assert.Equal(t, "Custom-SocSpans_CL", cfg.StreamNameSpans)
		assert.Equal(t, "AzureUSGovernment", cfg.Cloud)
		assert.Equal(t, 524288, cfg.MaxBatchBytes)
		assert.Equal(t, 45*time.Second, cfg.TimeoutConfig.Timeout)
		assert.Equal(t, AuthConfig{
			Type:          AuthClientSecret,
			TenantID:      "11111111-2222-3333-4444-555555555555",
			ClientID:      "66666666-7777-8888-9999-000000000000",
			ClientSecret:  configopaque.String("not-a-real-secret"),
			AuthorityHost: "https://login.microsoftonline.us/",
		}, cfg.Auth)
		assert.Equal(t, 2*time.Second, cfg.BackOffConfig.InitialInterval)
		assert.Equal(t, 10*time.Minute, cfg.BackOffConfig.MaxElapsedTime)
		require.True(t, cfg.QueueSettings.HasValue())
		assert.Equal(t, 4, cfg.QueueSettings.Get().NumConsumers)
		assert.EqualValues(t, 5000, cfg.QueueSettings.Get().QueueSize)
	})

	t.Run("managed identity with a persistent queue", func(t *testing.T) {
		cfg, err := loadTestConfig(t, "managed")
		require.NoError(t, err)
		assert.Equal(t, AuthConfig{Type: AuthManagedIdentity, ClientID: "66666666-7777-8888-9999-000000000000"}, cfg.Auth)
		require.NotNil(t, cfg.QueueSettings.Get().StorageID)
		assert.Equal(t, component.MustNewID("file_storage"), *cfg.QueueSettings.Get().StorageID)
	})

	t.Run("max_batch_bytes over the service limit", func(t *testing.T) {
		_, err := loadTestConfig(t, "too_large")
		require.ErrorContains(t, err, `"max_batch_bytes" must be between 1024 and 1048576 (the Logs Ingestion API limit of 1 MiB), got 2000000`)
	})

	t.Run("client_secret without its secret", func(t *testing.T) {
		_, err := loadTestConfig(t, "missing_secret")
		require.ErrorContains(t, err, `"auth.client_secret" must not be empty with "auth.type: client_secret"`)
	})

	t.Run("the secret is opaque when the config is printed", func(t *testing.T) {
		cfg, err := loadTestConfig(t, "allsettings")
		require.NoError(t, err)
		out := confmap.New()
		require.NoError(t, out.Marshal(cfg))
		assert.NotContains(t, out.ToStringMap()["auth"], "not-a-real-secret")
		assert.Equal(t, "[REDACTED]", out.ToStringMap()["auth"].(map[string]any)["client_secret"])
	})
}

func TestConfigValidate(t *testing.T) {
	valid := func() *Config {
		cfg := createDefaultConfig().(*Config)
		cfg.Endpoint = "https://agenttrail-dce-a1b2.westeurope-1.ingest.monitor.azure.com"
		cfg.DCRImmutableID = "dcr-0123456789abcdef0123456789abcdef"
		cfg.Auth = AuthConfig{Type: AuthClientSecret, TenantID: testTenant, ClientID: testClient, ClientSecret: testSecret}
		return cfg
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "valid client_secret", mutate: func(*Config) {}},
		{name: "valid workload identity from the environment", mutate: func(c *Config) { c.Auth = AuthConfig{Type: AuthWorkloadIdentity} }},
		{name: "valid system-assigned managed identity", mutate: func(c *Config) { c.Auth = AuthConfig{Type: AuthManagedIdentity} }},
		{name: "valid user-assigned managed identity by resource id", mutate: func(c *Config) {
			c.Auth = AuthConfig{Type: AuthManagedIdentity, ResourceID: "/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/agenttrail"}
		}},
		{name: "valid DCR endpoint with trailing slash", mutate: func(c *Config) { c.Endpoint += "/" }},
		{name: "valid tenant domain", mutate: func(c *Config) { c.Auth.TenantID = "contoso.onmicrosoft.com" }},
		{name: "valid max_batch_bytes at the limit", mutate: func(c *Config) { c.MaxBatchBytes = 1 << 20 }},
		{name: "missing endpoint", mutate: func(c *Config) { c.Endpoint = "" }, wantErr: `"endpoint" must not be empty`},
		{name: "http endpoint", mutate: func(c *Config) { c.Endpoint = "http://agenttrail-dce.westeurope-1.ingest.monitor.azure.com" }, wantErr: `"endpoint" must be an https:// URL (the Logs Ingestion API only accepts TLS), got scheme "http"`},
		{name: "endpoint without scheme", mutate: func(c *Config) { c.Endpoint = "agenttrail-dce.westeurope-1.ingest.monitor.azure.com" }, wantErr: `"endpoint" must be an https:// URL`},
		{name: "unparsable endpoint", mutate: func(c *Config) { c.Endpoint = "https://dce:bad port" }, wantErr: `"endpoint" must be a valid URL`},
		{name: "endpoint with query", mutate: func(c *Config) { c.Endpoint += "?api-version=2023-01-01" }, wantErr: `"endpoint" must not carry user info, a query or a fragment`},
		{name: "missing dcr id", mutate: func(c *Config) { c.DCRImmutableID = "" }, wantErr: `"dcr_immutable_id" must not be empty`},
		{name: "dcr resource name instead of immutable id", mutate: func(c *Config) { c.DCRImmutableID = "agenttrail-dcr" }, wantErr: `"dcr_immutable_id" must be the rule's immutableId, "dcr-" followed by 32 hex digits, got "agenttrail-dcr"`},
		{name: "dcr id too short", mutate: func(c *Config) { c.DCRImmutableID = "dcr-0123" }, wantErr: `"dcr_immutable_id" must be the rule's immutableId`},
		{name: "stream without Custom- prefix", mutate: func(c *Config) { c.StreamNameSpans = "AgentTrailSpans_CL" }, wantErr: `"stream_name_spans" must be a DCR stream name starting with "Custom-", got "AgentTrailSpans_CL"`},
		{name: "empty findings stream", mutate: func(c *Config) { c.StreamNameFindings = "" }, wantErr: `"stream_name_findings" must be a DCR stream name`},
		{name: "unknown cloud", mutate: func(c *Config) { c.Cloud = "AzureGermanCloud" }, wantErr: `"cloud" must be one of AzureCloud, AzureUSGovernment, AzureChinaCloud, got "AzureGermanCloud"`},
		{name: "max_batch_bytes over 1 MiB", mutate: func(c *Config) { c.MaxBatchBytes = 1<<20 + 1 }, wantErr: `"max_batch_bytes" must be between 1024 and 1048576`},
		{name: "max_batch_bytes zero", mutate: func(c *Config) { c.MaxBatchBytes = 0 }, wantErr: `"max_batch_bytes" must be between`},
		{name: "negative timeout", mutate: func(c *Config) { c.TimeoutConfig.Timeout = -time.Second }, wantErr: `"timeout" must not be negative`},
		{name: "missing auth type", mutate: func(c *Config) { c.Auth.Type = "" }, wantErr: `"auth.type" must be set: client_secret, workload_identity or managed_identity`},
		{name: "unknown auth type", mutate: func(c *Config) { c.Auth.Type = "certificate" }, wantErr: `"auth.type" must be one of client_secret, workload_identity, managed_identity, got "certificate"`},
		{name: "client_secret without secret", mutate: func(c *Config) { c.Auth.ClientSecret = "" }, wantErr: `"auth.client_secret" must not be empty with "auth.type: client_secret"`},
		{name: "client_secret without tenant", mutate: func(c *Config) { c.Auth.TenantID = "" }, wantErr: `"auth.tenant_id" must not be empty`},
		{name: "client_secret without client", mutate: func(c *Config) { c.Auth.ClientID = "" }, wantErr: `"auth.client_id" must not be empty`},
		{name: "client_secret with token_file", mutate: func(c *Config) { c.Auth.TokenFile = "/var/run/token" }, wantErr: `"auth.token_file" does not apply to "auth.type: client_secret"`},
		{name: "bad tenant", mutate: func(c *Config) { c.Auth.TenantID = "not a tenant/../x" }, wantErr: `"auth.tenant_id" must be a tenant GUID or domain name`},
		{name: "http authority", mutate: func(c *Config) { c.Auth.AuthorityHost = "http://login.example" }, wantErr: `"auth.authority_host" must be an https:// URL`},
		{name: "workload identity with a secret", mutate: func(c *Config) { c.Auth.Type = AuthWorkloadIdentity }, wantErr: `"auth.client_secret" does not apply to "auth.type: workload_identity"`},
		{name: "managed identity with a secret", mutate: func(c *Config) {
			c.Auth = AuthConfig{Type: AuthManagedIdentity, ClientSecret: "x"}
		}, wantErr: `"auth.client_secret" does not apply to "auth.type: managed_identity"`},
		{name: "managed identity with both ids", mutate: func(c *Config) {
			c.Auth = AuthConfig{Type: AuthManagedIdentity, ClientID: "a", ResourceID: "b"}
		}, wantErr: `set at most one of "auth.client_id" and "auth.resource_id"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.mutate(cfg)
			before := *cfg
			err := cfg.Validate()
			assert.Equal(t, before, *cfg, "Validate does not modify the config")
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			assert.NotContains(t, err.Error(), testSecret)
		})
	}
}
