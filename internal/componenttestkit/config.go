package componenttestkit

import (
	"path/filepath"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
)

// LoadConfig reads the config of id from the package's testdata/config.yaml the way the
// collector does: over the factory's default config, then validated (nested configs too). The
// config is returned with the error, for tests that look at what was read.
func LoadConfig(t testing.TB, factory component.Factory, id component.ID) (component.Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := cm.Sub(id.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg := factory.CreateDefaultConfig()
	if err := sub.Unmarshal(cfg); err != nil {
		return cfg, err
	}
	return cfg, confmap.Validate(cfg)
}

// LoadConfigNamed is LoadConfig of the config named name of the factory's type ("" for the
// bare type), as the component's config type C.
func LoadConfigNamed[C component.Config](t testing.TB, factory component.Factory, name string) (C, error) {
	t.Helper()
	cfg, err := LoadConfig(t, factory, component.NewIDWithName(factory.Type(), name))
	return cfg.(C), err
}
