package componenttestkit

import (
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// Metadata is the part of a component's metadata.yaml (mdatagen's schema) the checks use.
type Metadata struct {
	Type      string `yaml:"type"`
	ScopeName string `yaml:"scope_name"`
	Status    struct {
		Class string `yaml:"class"`
		// Stability maps a level (alpha, beta, ...) to the signals at that level (traces,
		// logs, traces_to_logs, ...).
		Stability map[string][]string `yaml:"stability"`
	} `yaml:"status"`
	// Attributes are the metric attributes, by name.
	Attributes map[string]struct {
		Description string `yaml:"description"`
		Type        string `yaml:"type"`
	} `yaml:"attributes"`
	Telemetry struct {
		Metrics map[string]Metric `yaml:"metrics"`
	} `yaml:"telemetry"`
	Tests struct {
		// Config is laid over the factory's default config before the lifecycle runs.
		Config map[string]any `yaml:"config"`
		// SkipLifecycle: create and shut down only, never Start (mdatagen's key).
		SkipLifecycle bool `yaml:"skip_lifecycle"`
	} `yaml:"tests"`
}

// Metric is one entry of telemetry.metrics.
type Metric struct {
	Enabled     bool     `yaml:"enabled"`
	Description string   `yaml:"description"`
	Unit        string   `yaml:"unit"`
	Attributes  []string `yaml:"attributes"`
	Sum         *struct {
		ValueType string `yaml:"value_type"`
		Monotonic bool   `yaml:"monotonic"`
		Async     bool   `yaml:"async"`
	} `yaml:"sum"`
	Gauge *struct {
		ValueType string `yaml:"value_type"`
		Async     bool   `yaml:"async"`
	} `yaml:"gauge"`
	Histogram *struct {
		ValueType string `yaml:"value_type"`
	} `yaml:"histogram"`
}

// instrument is the OpenTelemetry instrument mdatagen would create for the metric, in the
// names instrumentKind uses.
func (m Metric) instrument() (string, error) {
	n := 0
	var kind string
	if s := m.Sum; s != nil {
		n++
		switch {
		case s.Monotonic && s.Async:
			kind = s.ValueType + " observable counter"
		case s.Monotonic:
			kind = s.ValueType + " counter"
		case s.Async:
			kind = s.ValueType + " observable updowncounter"
		default:
			kind = s.ValueType + " updowncounter"
		}
	}
	if g := m.Gauge; g != nil {
		n++
		kind = g.ValueType + " gauge"
		if g.Async {
			kind = g.ValueType + " observable gauge"
		}
	}
	if h := m.Histogram; h != nil {
		n++
		kind = h.ValueType + " histogram"
	}
	if n != 1 {
		return "", fmt.Errorf("declares %d of sum, gauge and histogram, want one", n)
	}
	return kind, nil
}

// ReadMetadata reads and parses a metadata.yaml.
func ReadMetadata(path string) (Metadata, error) {
	var md Metadata
	b, err := os.ReadFile(path)
	if err != nil {
		return md, err
	}
	if err := yaml.Unmarshal(b, &md); err != nil {
		return md, fmt.Errorf("parse %s: %w", path, err)
	}
	if md.Type == "" || md.ScopeName == "" || md.Status.Class == "" || len(md.Status.Stability) == 0 {
		return md, fmt.Errorf("%s: type, scope_name, status.class and status.stability are required", path)
	}
	for name, m := range md.Telemetry.Metrics {
		for _, a := range m.Attributes {
			if _, ok := md.Attributes[a]; !ok {
				return md, fmt.Errorf("%s: metric %s has attribute %s, which attributes does not declare", path, name, a)
			}
		}
	}
	return md, nil
}
