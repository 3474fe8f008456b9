package evidenceexporter

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const dir, key = "/var/lib/agenttrail/evidence", "/etc/agenttrail/evidence.key"
	withDefaults := func(f func(*Config)) *Config {
		cfg := createDefaultConfig().(*Config)
		cfg.Directory, cfg.SigningKeyFile = dir, key
		if f != nil {
			f(cfg)
		}
		return cfg
	}
	tests := []struct {
		name    string
		want    *Config
		wantErr string
	}{
		{name: "", want: withDefaults(nil)},
		{name: "all", want: withDefaults(func(c *Config) {
			c.SegmentMaxBytes = 1 << 20
			c.SegmentMaxAge = 10 * time.Minute
			c.Retention = "sox"
			c.RetentionCheckInterval = 30 * time.Minute
			c.Fsync = false
			storage := component.MustNewID("file_storage")
			q := c.QueueConfig.Get()
			q.StorageID = &storage
			q.QueueSize = 5000
			c.RetryConfig.MaxElapsedTime = 0
		})},
		{name: "pci_dss", want: withDefaults(func(c *Config) { c.Retention = "pci_dss" })},
		{name: "nydfs_500", want: withDefaults(func(c *Config) { c.Retention = "nydfs_500" })},
		{name: "duration", want: withDefaults(func(c *Config) { c.Retention = "720h" })},
		{name: "bad_retention", wantErr: `"retention": want pci_dss, nydfs_500, sox or a positive duration such as 720h, got "forever"`},
		{name: "negative_retention", wantErr: `"retention": want pci_dss, nydfs_500, sox or a positive duration such as 720h, got "-24h"`},
		{name: "missing_directory", wantErr: `"directory" must not be empty`},
		{name: "missing_key", wantErr: `"signing_key_file" must not be empty`},
		{name: "zero_segment_bytes", wantErr: `"segment_max_bytes" must be positive`},
		{name: "zero_segment_age", wantErr: `"segment_max_age" must be positive`},
		{name: "zero_check_interval", wantErr: `"retention_check_interval" must be positive`},
	}
	for _, tt := range tests {
		t.Run("evidence/"+tt.name, func(t *testing.T) {
			id := component.NewIDWithName(metadata.Type, tt.name)
			sub, err := cm.Sub(id.String())
			if err != nil {
				t.Fatal(err)
			}
			cfg := createDefaultConfig().(*Config)
			if err := sub.Unmarshal(cfg); err != nil {
				t.Fatal(err)
			}
			err = confmap.Validate(cfg)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			if !reflect.DeepEqual(cfg, tt.want) {
				t.Errorf("config\n got %+v\nwant %+v", cfg, tt.want)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	if cfg.SegmentMaxBytes != 64<<20 || cfg.SegmentMaxAge != time.Hour || cfg.Retention != "" ||
		cfg.RetentionCheckInterval != time.Hour || !cfg.Fsync || !cfg.QueueConfig.HasValue() || !cfg.RetryConfig.Enabled {
		t.Errorf("defaults %+v", cfg)
	}
	if err := confmap.Validate(cfg); err == nil || err.Error() != `"directory" must not be empty` {
		t.Errorf("the default config must ask for a directory, got %v", err)
	}
}
