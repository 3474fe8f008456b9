package aibomconnector

import (
	"fmt"
	"time"

	"go.opentelemetry.io/collector/component"

	"github.com/agenttrail/agenttrail/internal/aibom"
)

// Config of the aibom connector. Every key is documented in README.md.
type Config struct {
	// MinInterval is the shortest time between two log records of one workload: changes in
	// between are coalesced into the next one.
	MinInterval time.Duration `mapstructure:"min_interval"`
	// MaxWorkloads bounds the workloads kept (memory); more are counted, not kept.
	MaxWorkloads int `mapstructure:"max_workloads"`
	// MaxEntries bounds each category (models, tools, packages, destinations...) of a workload.
	MaxEntries int `mapstructure:"max_entries"`
}

var _ component.Config = (*Config)(nil)

// Validate checks the config; it stops at the first problem.
func (cfg *Config) Validate() error {
	if cfg.MinInterval < time.Second {
		return fmt.Errorf(`"min_interval" must be at least 1s, got %v`, cfg.MinInterval)
	}
	if cfg.MaxWorkloads <= 0 || cfg.MaxWorkloads > 100000 {
		return fmt.Errorf(`"max_workloads" must be between 1 and 100000, got %d`, cfg.MaxWorkloads)
	}
	if cfg.MaxEntries <= 0 || cfg.MaxEntries > 10000 {
		return fmt.Errorf(`"max_entries" must be between 1 and 10000, got %d`, cfg.MaxEntries)
	}
	return nil
}

func createDefaultConfig() component.Config {
	return &Config{MinInterval: time.Minute, MaxWorkloads: aibom.DefaultMaxWorkloads, MaxEntries: aibom.DefaultMaxEntries}
}
