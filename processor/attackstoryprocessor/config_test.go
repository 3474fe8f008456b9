package attackstoryprocessor

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

func loadTestConfig(t *testing.T, name string) (*Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	id := component.NewID(Type)
	if name != "" {
		id = component.NewIDWithName(Type, name)
	}
	sub, err := cm.Sub(id.String())
	require.NoError(t, err)
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	if err := sub.Unmarshal(cfg); err != nil {
		return cfg, err
	}
	return cfg, confmap.Validate(cfg)
}

func TestConfigStruct(t *testing.T) {
	require.NoError(t, componenttest.CheckConfigStruct(NewFactory().CreateDefaultConfig()))
}

func TestLoadConfig(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		cfg, err := loadTestConfig(t, "")
		require.NoError(t, err)
		assert.Equal(t, 300*time.Millisecond, cfg.CompletionGrace)
		assert.Equal(t, 30*time.Second, cfg.OrphanTimeout)
		assert.Equal(t, 10000, cfg.MaxStories)
		assert.Equal(t, 2000, cfg.MaxSpansPerStory)
		assert.True(t, cfg.Stitching)
		assert.Empty(t, cfg.ProfilesDir)
		assert.Equal(t, 5*time.Second, cfg.ProfilesSaveInterval)
		assert.Equal(t, profile.LearningConfig{MinStories: 20, MinDuration: time.Hour, MaxEntries: 256}, cfg.Learning)
		assert.Equal(t, profile.ModeObserve, cfg.DefaultMode)
		assert.Equal(t, []string{"*/customers.*", "*.db", "*/secrets/*", "/etc/shadow"}, cfg.SensitivePaths)
		assert.Contains(t, cfg.InjectionMarkers, "ignore previous instructions")
		assert.Equal(t, RulesConfig{DataVolumeFactor: 10}, cfg.Rules)
		assert.Empty(t, cfg.Workloads)
		assert.Empty(t, cfg.CustomRules)
		assert.Equal(t, "agent", cfg.Tier)
	})

	t.Run("bank demo", func(t *testing.T) {
		cfg, err := loadTestConfig(t, "demo")
		require.NoError(t, err)
		assert.Equal(t, time.Second, cfg.CompletionGrace)
		assert.Equal(t, "/var/lib/agenttrail/profiles", cfg.ProfilesDir)
		assert.Equal(t, profile.LearningConfig{MinStories: 30, MinDuration: 2 * time.Hour, ContinueAfterComplete: true, MaxEntries: 128, EntryPoints: []string{"nightly-export"}}, cfg.Learning)
		require.Len(t, cfg.Workloads, 2)
		w := cfg.Workloads[0]
		assert.Equal(t, map[string]string{"service.name": "customer-agent"}, w.Match)
		assert.Equal(t, profile.ModeAlert, w.Mode)
		assert.Equal(t, []string{"accounts-summary", "recent-transactions", "transfers-low-value"}, w.AllowedTools)
		assert.Equal(t, []string{"127.0.0.1:18443", "10.0.0.0/8", "api.example.com:443"}, w.AllowedDestinations)
		assert.Equal(t, []string{"*/customers.csv", "/data/**"}, w.SensitivePaths)
		assert.EqualValues(t, 1048576, w.MaxEgressBytes)
		assert.Equal(t, 20, w.MaxConnects)
		assert.Equal(t, []FlowConfig{{Tool: "customer-data-export", Data: "*/customers.csv", Destination: "10.20.0.5:443", MaxBytes: 50_000_000}}, w.AllowedFlows)
		assert.Equal(t, map[string]string{"k8s.namespace.name": "customer-ai", "k8s.deployment.name": "support-agent"}, cfg.Workloads[1].Match)
		assert.Equal(t, profile.ModeEnforce, cfg.Workloads[1].Mode)
		assert.Equal(t, []string{"data_volume_anomaly"}, cfg.Rules.Disabled)
		assert.InDelta(t, 20, cfg.Rules.DataVolumeFactor, 0)
		require.Len(t, cfg.CustomRules, 1)
		r := cfg.CustomRules[0]
		assert.Equal(t, "export_outside_bank", r.ID)
		assert.Equal(t, "critical", r.Severity)
		assert.Equal(t, []string{"AML.T0086", "AML.T0057"}, r.Atlas)
		assert.True(t, r.AllModes)
	})

	t.Run("gateway tier", func(t *testing.T) {
		cfg, err := loadTestConfig(t, "gateway")
		require.NoError(t, err)
		assert.Equal(t, "gateway", cfg.Tier)
	})

	t.Run("a custom rule that does not compile", func(t *testing.T) {
		_, err := loadTestConfig(t, "badrule")
		require.Error(t, err)
		assert.Contains(t, err.Error(), `custom_rules[0].expression" (rule typo) does not compile`)
		assert.Contains(t, err.Error(), "undeclared reference to 'stroy'", "the CEL compiler's own message")
	})
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"zero grace", func(c *Config) { c.CompletionGrace = 0 }, `"completion_grace" must be positive`},
		{"orphan shorter than grace", func(c *Config) { c.OrphanTimeout = time.Second; c.CompletionGrace = 2 * time.Second }, `"orphan_timeout" (1s) must not be shorter than "completion_grace" (2s)`},
		{"empty tier", func(c *Config) { c.Tier = "" }, `"tier" must be 1 to 32 of a-z, 0-9, _ and -, got ""`},
		{"tier with capitals", func(c *Config) { c.Tier = "Gateway" }, `"tier" must be 1 to 32 of a-z, 0-9, _ and -, got "Gateway"`},
		{"tier too long", func(c *Config) { c.Tier = strings.Repeat("a", 33) }, `"tier" must be 1 to 32`},
		{"max stories", func(c *Config) { c.MaxStories = 0 }, `"max_stories" must be at least 1`},
		{"max spans", func(c *Config) { c.MaxSpansPerStory = -1 }, `"max_spans_per_story" must be at least 1`},
		{"save interval", func(c *Config) { c.ProfilesSaveInterval = 0 }, `"profiles_save_interval" must be positive`},
		{"min stories", func(c *Config) { c.Learning.MinStories = 0 }, `"learning.min_stories" must be at least 1`},
		{"min duration", func(c *Config) { c.Learning.MinDuration = -time.Second }, `"learning.min_duration" must not be negative`},
		{"max entries", func(c *Config) { c.Learning.MaxEntries = 0 }, `"learning.max_entries" must be at least 1`},
		{"max entries over a file's", func(c *Config) { c.Learning.MaxEntries = profile.MaxProfileEntries + 1 }, `"learning.max_entries" must be at most 10000`},
		{"entry point", func(c *Config) { c.Learning.EntryPoints = []string{"nightly-export", ""} }, `"learning.entry_points[1]" must not be empty`},
		{"default mode", func(c *Config) { c.DefaultMode = "watch" }, `"default_mode": "watch" is not one of observe, alert, enforce`},
		{"sensitive path", func(c *Config) { c.SensitivePaths = []string{"*.db", " "} }, `"sensitive_paths[1]": empty pattern`},
		{"marker", func(c *Config) { c.InjectionMarkers = []string{""} }, `"injection_markers[0]" is empty`},
		{"workload without match", func(c *Config) { c.Workloads = []WorkloadConfig{{Mode: profile.ModeAlert}} }, `"workloads[0].match" is required`},
		{"workload match key", func(c *Config) {
			c.Workloads = []WorkloadConfig{{Match: map[string]string{"service_name": "x"}}}
		}, `"workloads[0].match": "service_name" is not a supported attribute`},
		{"workload mode", func(c *Config) {
			c.Workloads = []WorkloadConfig{{Match: map[string]string{"service.name": "x"}}, {Match: map[string]string{"service.name": "y"}, Mode: "alrt"}}
		}, `"workloads[1].mode": "alrt" is not one of observe, alert, enforce`},
		{"workload destination", func(c *Config) {
			c.Workloads = []WorkloadConfig{{Match: map[string]string{"service.name": "x"}, AllowedDestinations: []string{"127.0.0.1:18443", "10.0.0.0/33"}}}
		}, `"workloads[0].allowed_destinations[1]": "10.0.0.0/33"`},
		{"workload destination port", func(c *Config) {
			c.Workloads = []WorkloadConfig{{Match: map[string]string{"service.name": "x"}, AllowedDestinations: []string{"api.example.com:99999"}}}
		}, `port "99999" is not a number from 1 to 65535`},
		{"flow destination", func(c *Config) {
			c.Workloads = []WorkloadConfig{{Match: map[string]string{"service.name": "x"}, AllowedFlows: []FlowConfig{{Tool: "export"}}}}
		}, `"workloads[0].allowed_flows[0].destination" is required`},
		{"flow destination syntax", func(c *Config) {
			c.Workloads = []WorkloadConfig{{Match: map[string]string{"service.name": "x"}, AllowedFlows: []FlowConfig{{Destination: "10.0.0.1"}, {Destination: "10.0.0.0/33"}}}}
		}, `"workloads[0].allowed_flows[1].destination": "10.0.0.0/33"`},
		{"flow data", func(c *Config) {
			c.Workloads = []WorkloadConfig{{Match: map[string]string{"service.name": "x"}, AllowedFlows: []FlowConfig{{Destination: "10.0.0.1", Data: " "}}}}
		}, `"workloads[0].allowed_flows[0].data": empty pattern`},
		{"flow bytes", func(c *Config) {
			c.Workloads = []WorkloadConfig{{Match: map[string]string{"service.name": "x"}, AllowedFlows: []FlowConfig{{Destination: "10.0.0.1", MaxBytes: -1}}}}
		}, `"workloads[0].allowed_flows[0].max_bytes" must not be negative`},
		{"disabled rule", func(c *Config) { c.Rules.Disabled = []string{"tool_outside_profiles"} }, `"rules.disabled[0]": "tool_outside_profiles" is not a built-in rule`},
		{"factor", func(c *Config) { c.Rules.DataVolumeFactor = 1 }, `"rules.data_volume_factor" must be greater than 1`},
		{"custom rule id", func(c *Config) { c.CustomRules = []CustomRuleConfig{{ID: "Bad Id", Expression: "true"}} }, `"custom_rules[0].id": "Bad Id" must be lower case`},
		{"custom rule builtin id", func(c *Config) {
			c.CustomRules = []CustomRuleConfig{{ID: "tool_outside_profile", Expression: "true"}}
		}, `is the id of a built-in rule`},
		{"custom rule duplicate", func(c *Config) {
			c.CustomRules = []CustomRuleConfig{{ID: "a", Expression: "true"}, {ID: "a", Expression: "false"}}
		}, `"custom_rules[1].id": "a" is used by another custom rule`},
		{"custom rule severity", func(c *Config) { c.CustomRules = []CustomRuleConfig{{ID: "a", Severity: "urgent", Expression: "true"}} }, `"custom_rules[0].severity": "urgent" is not a severity`},
		{"custom rule atlas", func(c *Config) {
			c.CustomRules = []CustomRuleConfig{{ID: "a", Atlas: []string{"T1059"}, Expression: "true"}}
		}, `"custom_rules[0].atlas[0]": "T1059" is not an ATLAS technique id`},
		{"custom rule empty", func(c *Config) { c.CustomRules = []CustomRuleConfig{{ID: "a"}} }, `"custom_rules[0].expression" is required`},
		{"custom rule not bool", func(c *Config) { c.CustomRules = []CustomRuleConfig{{ID: "a", Expression: "story.tools.size()"}} }, `must evaluate to a bool, not int`},
		{"custom rule syntax", func(c *Config) { c.CustomRules = []CustomRuleConfig{{ID: "a", Expression: `"x" in story.tools &&`}} }, `Syntax error`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			tc.mutate(cfg)
			err := cfg.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	require.NoError(t, createDefaultConfig().Validate())
}
