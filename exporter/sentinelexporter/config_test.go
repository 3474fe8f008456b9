package sentinelexporter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/confmap"

	"github.com/agenttrail/agenttrail/internal/componenttestkit"
)

func loadTestConfig(t *testing.T, name string) (*Config, error) {
	return componenttestkit.LoadConfigNamed[*Config](t, NewFactory(), name)
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
	componenttestkit.CheckValidate(t, valid, []componenttestkit.ValidateCase[Config]{
		{Name: "valid client_secret", Mutate: func(*Config) {}},
		{Name: "valid workload identity from the environment", Mutate: func(c *Config) { c.Auth = AuthConfig{Type: AuthWorkloadIdentity} }},
		{Name: "valid system-assigned managed identity", Mutate: func(c *Config) { c.Auth = AuthConfig{Type: AuthManagedIdentity} }},
		{Name: "valid user-assigned managed identity by resource id", Mutate: func(c *Config) {
			c.Auth = AuthConfig{Type: AuthManagedIdentity, ResourceID: "/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/agenttrail"}
		}},
		{Name: "valid DCR endpoint with trailing slash", Mutate: func(c *Config) { c.Endpoint += "/" }},
		{Name: "valid tenant domain", Mutate: func(c *Config) { c.Auth.TenantID = "contoso.onmicrosoft.com" }},
		{Name: "valid max_batch_bytes at the limit", Mutate: func(c *Config) { c.MaxBatchBytes = 1 << 20 }},
		{Name: "missing endpoint", Mutate: func(c *Config) { c.Endpoint = "" }, WantErr: `"endpoint" must not be empty`},
		{Name: "http endpoint", Mutate: func(c *Config) { c.Endpoint = "http://agenttrail-dce.westeurope-1.ingest.monitor.azure.com" }, WantErr: `"endpoint" must be an https:// URL (the Logs Ingestion API only accepts TLS), got scheme "http"`},
		{Name: "endpoint without scheme", Mutate: func(c *Config) { c.Endpoint = "agenttrail-dce.westeurope-1.ingest.monitor.azure.com" }, WantErr: `"endpoint" must be an https:// URL`},
		{Name: "unparsable endpoint", Mutate: func(c *Config) { c.Endpoint = "https://dce:bad port" }, WantErr: `"endpoint" must be a valid URL`},
		{Name: "endpoint with query", Mutate: func(c *Config) { c.Endpoint += "?api-version=2023-01-01" }, WantErr: `"endpoint" must not carry user info, a query or a fragment`},
		{Name: "missing dcr id", Mutate: func(c *Config) { c.DCRImmutableID = "" }, WantErr: `"dcr_immutable_id" must not be empty`},
		{Name: "dcr resource name instead of immutable id", Mutate: func(c *Config) { c.DCRImmutableID = "agenttrail-dcr" }, WantErr: `"dcr_immutable_id" must be the rule's immutableId, "dcr-" followed by 32 hex digits, got "agenttrail-dcr"`},
		{Name: "dcr id too short", Mutate: func(c *Config) { c.DCRImmutableID = "dcr-0123" }, WantErr: `"dcr_immutable_id" must be the rule's immutableId`},
		{Name: "stream without Custom- prefix", Mutate: func(c *Config) { c.StreamNameSpans = "AgentTrailSpans_CL" }, WantErr: `"stream_name_spans" must be a DCR stream name starting with "Custom-", got "AgentTrailSpans_CL"`},
		{Name: "empty findings stream", Mutate: func(c *Config) { c.StreamNameFindings = "" }, WantErr: `"stream_name_findings" must be a DCR stream name`},
		{Name: "unknown cloud", Mutate: func(c *Config) { c.Cloud = "AzureGermanCloud" }, WantErr: `"cloud" must be one of AzureCloud, AzureUSGovernment, AzureChinaCloud, got "AzureGermanCloud"`},
		{Name: "max_batch_bytes over 1 MiB", Mutate: func(c *Config) { c.MaxBatchBytes = 1<<20 + 1 }, WantErr: `"max_batch_bytes" must be between 1024 and 1048576`},
		{Name: "max_batch_bytes zero", Mutate: func(c *Config) { c.MaxBatchBytes = 0 }, WantErr: `"max_batch_bytes" must be between`},
		{Name: "negative timeout", Mutate: func(c *Config) { c.TimeoutConfig.Timeout = -time.Second }, WantErr: `"timeout" must not be negative`},
		{Name: "missing auth type", Mutate: func(c *Config) { c.Auth.Type = "" }, WantErr: `"auth.type" must be set: client_secret, workload_identity or managed_identity`},
		{Name: "unknown auth type", Mutate: func(c *Config) { c.Auth.Type = "certificate" }, WantErr: `"auth.type" must be one of client_secret, workload_identity, managed_identity, got "certificate"`},
		{Name: "client_secret without secret", Mutate: func(c *Config) { c.Auth.ClientSecret = "" }, WantErr: `"auth.client_secret" must not be empty with "auth.type: client_secret"`},
		{Name: "client_secret without tenant", Mutate: func(c *Config) { c.Auth.TenantID = "" }, WantErr: `"auth.tenant_id" must not be empty`},
		{Name: "client_secret without client", Mutate: func(c *Config) { c.Auth.ClientID = "" }, WantErr: `"auth.client_id" must not be empty`},
		{Name: "client_secret with token_file", Mutate: func(c *Config) { c.Auth.TokenFile = "/var/run/token" }, WantErr: `"auth.token_file" does not apply to "auth.type: client_secret"`},
		{Name: "bad tenant", Mutate: func(c *Config) { c.Auth.TenantID = "not a tenant/../x" }, WantErr: `"auth.tenant_id" must be a tenant GUID or domain name`},
		{Name: "http authority", Mutate: func(c *Config) { c.Auth.AuthorityHost = "http://login.example" }, WantErr: `"auth.authority_host" must be an https:// URL`},
		{Name: "workload identity with a secret", Mutate: func(c *Config) { c.Auth.Type = AuthWorkloadIdentity }, WantErr: `"auth.client_secret" does not apply to "auth.type: workload_identity"`},
		{Name: "managed identity with a secret", Mutate: func(c *Config) {
			c.Auth = AuthConfig{Type: AuthManagedIdentity, ClientSecret: "x"}
		}, WantErr: `"auth.client_secret" does not apply to "auth.type: managed_identity"`},
		{Name: "managed identity with both ids", Mutate: func(c *Config) {
			c.Auth = AuthConfig{Type: AuthManagedIdentity, ClientID: "a", ResourceID: "b"}
		}, WantErr: `set at most one of "auth.client_id" and "auth.resource_id"`},
	}, testSecret)
}
