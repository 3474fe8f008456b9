package storyrouteexporter

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configcompression"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/agenttrail/agenttrail/exporter/storyrouteexporter/internal/metadata"
)

func loadConfig(t *testing.T, name string) *Config {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	id := component.NewID(metadata.Type)
	if name != "" {
		id = component.NewIDWithName(metadata.Type, name)
	}
	sub, err := cm.Sub(id.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	if err := sub.Unmarshal(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestConfigDefaultsAndDNS(t *testing.T) {
	cfg := loadConfig(t, "")
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	d := cfg.Resolver.DNS.Get()
	if d.Hostname != "agenttrail-gateway-headless.agenttrail.svc" || d.Port != 4317 || d.Interval != 5*time.Second || d.Timeout != time.Second {
		t.Errorf("dns resolver %+v: the defaults did not apply", *d)
	}
	if cfg.Resolver.Static.HasValue() {
		t.Error("static resolver set though not configured")
	}
	if cfg.Protocol.OTLP.QueueConfig.HasValue() || cfg.Protocol.OTLP.RetryConfig.Enabled {
		t.Error("the replicas' exporter has a queue or retry of its own by default")
	}
	if !cfg.QueueConfig.HasValue() || !cfg.RetryConfig.Enabled {
		t.Error("the exporter's own queue and retry are off by default")
	}
}

func TestConfigStatic(t *testing.T) {
	cfg := loadConfig(t, "static")
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Resolver.Static.Get().Hostnames; len(got) != 2 || cfg.Resolver.DNS.HasValue() {
		t.Errorf("resolver %+v", cfg.Resolver)
	}
	if cfg.Protocol.OTLP.ClientConfig.Compression != configcompression.TypeZstd || cfg.Protocol.OTLP.TimeoutConfig.Timeout != 30*time.Second {
		t.Errorf("protocol::otlp not read: %+v", cfg.Protocol.OTLP.ClientConfig.Compression)
	}
	if cfg.TimeoutConfig.Timeout != 30*time.Second || cfg.TraceTTL != 5*time.Minute {
		t.Errorf("timeout %v, trace_ttl %v", cfg.TimeoutConfig.Timeout, cfg.TraceTTL)
	}
}

func TestConfigInvalid(t *testing.T) {
	for name, want := range map[string]string{
		"both":          `only one of "static" and "dns"`,
		"none":          `one of "static" and "dns"`,
		"badhost":       `"resolver::static::hostnames": "no-port"`,
		"badport":       `"resolver::dns::port"`,
		"backendqueue":  `"protocol::otlp::sending_queue" must not be enabled`,
		"backendretry":  `"protocol::otlp::retry_on_failure" must not be enabled`,
		"shortinterval": `"resolver::dns::interval" must be at least 100ms`,
		"toomany":       `has 65 entries, at most 64`,
	} {
		t.Run(name, func(t *testing.T) {
			err := loadConfig(t, name).Validate()
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Validate() = %v, want it to say %s", err, want)
			}
		})
	}
}
