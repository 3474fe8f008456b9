package storyjoinprocessor

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
)

func loadConfig(t *testing.T, id string) *Config {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	sub, err := cm.Sub(id)
	require.NoError(t, err)
	cfg := createDefaultConfig().(*Config)
	require.NoError(t, sub.Unmarshal(cfg))
	return cfg
}

func TestConfig(t *testing.T) {
	def := loadConfig(t, "storyjoin")
	require.NoError(t, confmap.Validate(def))
	assert.Equal(t, createDefaultConfig(), def)

	all := loadConfig(t, "storyjoin/all")
	require.NoError(t, confmap.Validate(all))
	assert.Equal(t, &Config{Wait: 3 * time.Second, Window: 500 * time.Millisecond, ClientTTL: time.Minute,
		MaxPendingSpans: 5000, MaxClients: 20000, MaxInbound: 8000}, all)

	assert.EqualError(t, loadConfig(t, "storyjoin/short_ttl").Validate(), `"client_ttl" must be at least "wait"`)
}

func TestConfigValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"zero wait":  {func(c *Config) { c.Wait = 0 }, `"wait" must be positive`},
		"long wait":  {func(c *Config) { c.Wait = time.Hour; c.ClientTTL = 2 * time.Hour }, `"wait" must be at most 10m`},
		"neg window": {func(c *Config) { c.Window = -1 }, `"window" must not be negative`},
		"no pending": {func(c *Config) { c.MaxPendingSpans = 0 }, `"max_pending_spans" must be positive`},
		"no clients": {func(c *Config) { c.MaxClients = 0 }, `"max_clients" must be positive`},
		"no inbound": {func(c *Config) { c.MaxInbound = -1 }, `"max_inbound" must be positive`},
		"short ttl":  {func(c *Config) { c.ClientTTL = time.Second }, `"client_ttl" must be at least "wait"`},
	} {
		t.Run(name, func(t *testing.T) {
			c := createDefaultConfig().(*Config)
			tc.mod(c)
			assert.EqualError(t, c.Validate(), tc.want)
		})
	}
}
