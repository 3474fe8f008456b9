package splunkhecexporter

import (
	"net/url"
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
		assert.Equal(t, "https://splunk:8088/services/collector", cfg.ClientConfig.Endpoint)
		assert.Equal(t, configopaque.String("00000000-0000-0000-0000-000000000000"), cfg.Token)
		assert.Equal(t, "otel:span", cfg.SourceType)
		assert.Equal(t, "agenttrail:finding:ocsf", cfg.LogsSourceType)
		assert.Equal(t, 2*1024*1024, cfg.MaxContentLengthLogs)
		assert.Equal(t, 2*1024*1024, cfg.MaxContentLengthTraces)
		assert.Equal(t, 5*1024*1024, cfg.MaxEventSize)
		assert.False(t, cfg.DisableCompression)
		assert.Equal(t, 15*time.Second, cfg.ClientConfig.Timeout)
		assert.Equal(t, defaultHecAttrs(), cfg.HecToOtelAttrs)
		assert.Equal(t, HecToOtelAttrs{Source: "com.splunk.source", SourceType: "com.splunk.sourcetype", Index: "com.splunk.index", Host: "host.name"}, cfg.HecToOtelAttrs)
		assert.Equal(t, AckConfig{Enabled: false, PollInterval: time.Second, Timeout: 60 * time.Second}, cfg.Ack)
		assert.True(t, cfg.QueueSettings.HasValue())
		assert.True(t, cfg.BackOffConfig.Enabled)
	})

	t.Run("all settings", func(t *testing.T) {
		cfg, err := loadTestConfig(t, "allsettings")
		require.NoError(t, err)
		assert.Equal(t, "https://splunk.soc.bank.example:8088/services/collector/event", cfg.ClientConfig.Endpoint)
		assert.Equal(t, "agenttrail", cfg.Source)
		assert.Equal(t, "otel:span", cfg.SourceType)
		assert.Equal(t, "agenttrail:finding:ocsf:v1", cfg.LogsSourceType)
		assert.Equal(t, "soc_ai", cfg.Index)
		assert.True(t, cfg.DisableCompression)
		assert.Equal(t, 1048576, cfg.MaxContentLengthLogs)
		assert.Equal(t, 4194304, cfg.MaxContentLengthTraces)
		assert.Equal(t, 524288, cfg.MaxEventSize)
		assert.Equal(t, "AgentTrail", cfg.SplunkAppName)
		assert.Equal(t, "1.2.3", cfg.SplunkAppVersion)
		assert.Equal(t, 20*time.Second, cfg.ClientConfig.Timeout)
		assert.Equal(t, "/etc/agenttrail/splunk-ca.pem", cfg.ClientConfig.TLS.CAFile)
		assert.Equal(t, HecToOtelAttrs{Source: "agenttrail.source", SourceType: "agenttrail.sourcetype", Index: "agenttrail.index", Host: "host.id"}, cfg.HecToOtelAttrs)
		assert.Equal(t, OtelToHecFields{SeverityText: "severity", SeverityNumber: "severity_id"}, cfg.HecFields)
		assert.Equal(t, AckConfig{Enabled: true, PollInterval: 2 * time.Second, Timeout: 30 * time.Second}, cfg.Ack)
		assert.Equal(t, 2*time.Second, cfg.BackOffConfig.InitialInterval)
		assert.Equal(t, 10*time.Minute, cfg.BackOffConfig.MaxElapsedTime)
		require.True(t, cfg.QueueSettings.HasValue())
		assert.Equal(t, 4, cfg.QueueSettings.Get().NumConsumers)
		assert.EqualValues(t, 5000, cfg.QueueSettings.Get().QueueSize)
	})

	t.Run("persistent queue with file_storage", func(t *testing.T) {
		cfg, err := loadTestConfig(t, "persistent")
		require.NoError(t, err)
		require.True(t, cfg.QueueSettings.HasValue())
		require.NotNil(t, cfg.QueueSettings.Get().StorageID)
		assert.Equal(t, component.MustNewID("file_storage"), *cfg.QueueSettings.Get().StorageID)
	})

	t.Run("negative max_content_length_logs is rejected", func(t *testing.T) {
		_, err := loadTestConfig(t, "negative_content_length")
		require.ErrorContains(t, err, `"max_content_length_logs" must be between 0 and 838860800, got -1`)
	})

	t.Run("missing token is rejected", func(t *testing.T) {
		_, err := loadTestConfig(t, "missing_token")
		require.ErrorContains(t, err, `"token" must not be empty`)
	})
}

func TestConfigValidate(t *testing.T) {
	valid := func() *Config {
		cfg := createDefaultConfig().(*Config)
		cfg.ClientConfig.Endpoint = "https://splunk:8088/services/collector"
		cfg.Token = "00000000-0000-0000-0000-000000000000"
		return cfg
	}
	componenttestkit.CheckValidate(t, valid, []componenttestkit.ValidateCase[Config]{
		{Name: "valid defaults", Mutate: func(*Config) {}},
		{Name: "endpoint without path is valid", Mutate: func(c *Config) { c.ClientConfig.Endpoint = "http://splunk:8088" }},
		{Name: "zero limits mean unlimited", Mutate: func(c *Config) {
			c.MaxContentLengthLogs, c.MaxContentLengthTraces, c.MaxEventSize = 0, 0, 0
		}},
		{Name: "ack disabled ignores its durations", Mutate: func(c *Config) { c.Ack = AckConfig{} }},
		{Name: "empty endpoint", Mutate: func(c *Config) { c.ClientConfig.Endpoint = "" }, WantErr: `"endpoint" must not be empty`},
		{Name: "unparsable endpoint", Mutate: func(c *Config) { c.ClientConfig.Endpoint = "https://splunk:bad port/x" }, WantErr: `"endpoint" must be a valid URL`},
		{Name: "endpoint without scheme", Mutate: func(c *Config) { c.ClientConfig.Endpoint = "splunk:8088/services/collector" }, WantErr: `"endpoint" must be an http:// or https:// URL`},
		{Name: "endpoint with ftp scheme", Mutate: func(c *Config) { c.ClientConfig.Endpoint = "ftp://splunk/services/collector" }, WantErr: `"endpoint" must be an http:// or https:// URL, got scheme "ftp"`},
		{Name: "endpoint without host", Mutate: func(c *Config) { c.ClientConfig.Endpoint = "https:///services/collector" }, WantErr: `"endpoint" must include a host`},
		{Name: "token missing", Mutate: func(c *Config) { c.Token = "" }, WantErr: `"token" must not be empty`},
		{Name: "negative max_content_length_logs", Mutate: func(c *Config) { c.MaxContentLengthLogs = -1 }, WantErr: `"max_content_length_logs" must be between 0 and 838860800, got -1`},
		{Name: "negative max_content_length_traces", Mutate: func(c *Config) { c.MaxContentLengthTraces = -5 }, WantErr: `"max_content_length_traces" must be between 0 and 838860800, got -5`},
		{Name: "max_content_length_traces over 800 MiB", Mutate: func(c *Config) { c.MaxContentLengthTraces = 800*1024*1024 + 1 }, WantErr: `"max_content_length_traces" must be between 0 and 838860800`},
		{Name: "negative max_event_size", Mutate: func(c *Config) { c.MaxEventSize = -1 }, WantErr: `"max_event_size" must be between 0 and 838860800, got -1`},
		{Name: "ack poll_interval zero", Mutate: func(c *Config) { c.Ack.Enabled, c.Ack.PollInterval = true, 0 }, WantErr: `"ack.poll_interval" must be positive`},
		{Name: "ack timeout negative", Mutate: func(c *Config) { c.Ack.Enabled, c.Ack.Timeout = true, -time.Second }, WantErr: `"ack.timeout" must be positive`},
		{Name: "first problem wins", Mutate: func(c *Config) { c.ClientConfig.Endpoint, c.Token, c.MaxEventSize = "", "", -1 }, WantErr: `"endpoint" must not be empty`},
	})
}

func TestEndpointURLs(t *testing.T) {
	tests := []struct {
		name      string
		endpoint  string
		wantEvent string
		wantAck   string
	}{
		{"full collector path", "https://splunk:8088/services/collector", "https://splunk:8088/services/collector", "https://splunk:8088/services/collector/ack?channel=ch-1"},
		{"event path", "https://splunk:8088/services/collector/event", "https://splunk:8088/services/collector/event", "https://splunk:8088/services/collector/ack?channel=ch-1"},
		{"no path gets services/collector (contrib)", "https://splunk:8088", "https://splunk:8088/services/collector", "https://splunk:8088/services/collector/ack?channel=ch-1"},
		{"root path", "http://splunk:8088/", "http://splunk:8088/services/collector", "http://splunk:8088/services/collector/ack?channel=ch-1"},
		{"proxy prefix is kept", "https://gw.example/splunk/services/collector/event?x=1", "https://gw.example/splunk/services/collector/event?x=1", "https://gw.example/splunk/services/collector/ack?channel=ch-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{}
			cfg.ClientConfig.Endpoint = tt.endpoint
			u, err := cfg.eventURL()
			require.NoError(t, err)
			assert.Equal(t, tt.wantEvent, u.String())
			got := ackURL(u, "ch-1")
			assert.Equal(t, tt.wantAck, got.String())
			_, err = url.Parse(got.String())
			require.NoError(t, err)
		})
	}
}

func TestEffectiveAttrs(t *testing.T) {
	tests := []struct {
		name   string
		hec    HecToOtelAttrs
		otel   HecToOtelAttrs
		expect HecToOtelAttrs
	}{
		{"defaults", defaultHecAttrs(), defaultHecAttrs(), defaultHecAttrs()},
		{"old key only", HecToOtelAttrs{Source: "s", SourceType: "st", Index: "i", Host: "h"}, defaultHecAttrs(), HecToOtelAttrs{Source: "s", SourceType: "st", Index: "i", Host: "h"}},
		{"new key wins where changed", HecToOtelAttrs{Source: "s", SourceType: "st", Index: "i", Host: "h"},
			HecToOtelAttrs{Source: "s2", SourceType: defaultSourceTypeLabel, Index: defaultIndexLabel, Host: defaultHostLabel},
			HecToOtelAttrs{Source: "s2", SourceType: "st", Index: "i", Host: "h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{HecToOtelAttrs: tt.hec, OtelAttrsToHec: tt.otel}
			assert.Equal(t, tt.expect, cfg.effectiveAttrs())
		})
	}
}

func TestUnsupportedContribKeysAreRejected(t *testing.T) {
	for _, key := range []string{"log_data_enabled", "export_raw", "max_content_length_metrics", "use_multi_metric_format"} {
		t.Run(key, func(t *testing.T) {
			cm := confmap.NewFromStringMap(map[string]any{
				"endpoint": "https://splunk:8088/services/collector",
				"token":    "t",
				key:        true,
			})
			cfg := createDefaultConfig()
			err := cm.Unmarshal(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), key)
		})
	}
}
