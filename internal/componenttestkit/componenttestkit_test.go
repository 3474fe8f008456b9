package componenttestkit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/metric"
)

// kitConfig is the test component's config; Validate refuses the default, so the check passes
// only if tests.config of metadata.yaml was laid over it.
type kitConfig struct {
	Limit int `mapstructure:"limit"`
}

func (c *kitConfig) Validate() error {
	if c.Limit <= 0 {
		return errors.New("limit must be positive")
	}
	return nil
}

type kitProcessor struct {
	started, stopped *int
}

func (p kitProcessor) Start(context.Context, component.Host) error { *p.started++; return nil }
func (p kitProcessor) Shutdown(context.Context) error              { *p.stopped++; return nil }

// kitFactory builds a processor for traces (alpha) and logs (beta) that registers the
// instruments testdata/good/metadata.yaml declares, plus extra ones.
func kitFactory(scope string, extra func(metric.Meter), started, stopped *int) processor.Factory {
	create := func(set processor.Settings) (kitProcessor, error) {
		m := set.MeterProvider.Meter(scope)
		if _, err := m.Int64Counter("agenttrail.kittest.items", metric.WithDescription("Items seen."), metric.WithUnit("{item}")); err != nil {
			return kitProcessor{}, err
		}
		if _, err := m.Int64ObservableGauge("agenttrail.kittest.open", metric.WithDescription("Items open."), metric.WithUnit("{item}")); err != nil {
			return kitProcessor{}, err
		}
		if extra != nil {
			extra(m)
		}
		return kitProcessor{started, stopped}, nil
	}
	return processor.NewFactory(component.MustNewType("kittest"),
		func() component.Config { return &kitConfig{} },
		processor.WithTraces(func(_ context.Context, set processor.Settings, _ component.Config, _ consumer.Traces) (processor.Traces, error) {
			p, err := create(set)
			return struct {
				kitProcessor
				consumer.Traces
			}{p, nil}, err
		}, component.StabilityLevelAlpha),
		processor.WithLogs(func(_ context.Context, set processor.Settings, _ component.Config, _ consumer.Logs) (processor.Logs, error) {
			p, err := create(set)
			return struct {
				kitProcessor
				consumer.Logs
			}{p, nil}, err
		}, component.StabilityLevelBeta),
	)
}

const kitScope = "github.com/agenttrail/agenttrail/internal/componenttestkit/kittest"

func TestCheckPassesAMatchingComponent(t *testing.T) {
	var started, stopped int
	Check(t, kitFactory(kitScope, nil, &started, &stopped), "testdata/good/metadata.yaml", Options{ScopeName: kitScope})
	// Two signals: one shutdown without start, and two start/shutdown rounds each.
	if started != 4 || stopped != 6 {
		t.Errorf("started %d and stopped %d times, want 4 and 6", started, stopped)
	}
}

func TestCheckCannotStart(t *testing.T) {
	var started, stopped int
	Check(t, kitFactory(kitScope, nil, &started, &stopped), "testdata/good/metadata.yaml", Options{
		CannotStart: func() string { return "no kernel here" },
	})
	if started != 0 || stopped != 2 {
		t.Errorf("started %d and stopped %d times, want 0 and 2", started, stopped)
	}
}

func TestCheckScope(t *testing.T) {
	md, err := ReadMetadata("testdata/good/metadata.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeT{}
	checkScope(f, md, kitScope)
	if len(f.errs) != 0 {
		t.Errorf("the declared scope: %v", f.errs)
	}
	checkScope(f, md, kitScope+"x")
	if len(f.errs) != 1 || !strings.Contains(f.errs[0], "metadata.yaml says") {
		t.Errorf("another scope: %v", f.errs)
	}
}

// fakeT records what the comparisons report.
type fakeT struct{ errs, logs []string }

func (f *fakeT) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}
func (f *fakeT) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}
func (f *fakeT) Error(args ...any) { f.errs = append(f.errs, fmt.Sprint(args...)) }

func registered(t *testing.T, scope string, extra func(metric.Meter)) []registration {
	t.Helper()
	reg := &registry{}
	var n int
	f := kitFactory(scope, extra, &n, &n)
	set := processor.Settings{ID: component.NewID(f.Type()), BuildInfo: component.NewDefaultBuildInfo()}
	set.TelemetrySettings.MeterProvider = recordingProvider{MeterProvider: noopProvider(), reg: reg}
	if _, err := f.CreateTraces(context.Background(), set, f.CreateDefaultConfig(), nil); err != nil {
		t.Fatal(err)
	}
	return reg.all()
}

func TestCheckTelemetryFindsEachMismatch(t *testing.T) {
	md, err := ReadMetadata("testdata/good/metadata.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		scope    string
		extra    func(metric.Meter)
		edit     func(*Metadata)
		complete bool
		want     string // "" for no error
	}{
		{name: "matching", scope: kitScope, complete: true},
		{name: "undeclared", scope: kitScope, extra: func(m metric.Meter) { _, _ = m.Int64Counter("agenttrail.kittest.new") },
			want: "agenttrail.kittest.new (int counter) is registered but not declared"},
		{name: "never registered", scope: kitScope, complete: true, edit: func(md *Metadata) {
			md.Telemetry.Metrics["agenttrail.kittest.gone"] = md.Telemetry.Metrics["agenttrail.kittest.items"]
		}, want: "agenttrail.kittest.gone is declared in metadata.yaml but never registered"},
		{name: "never registered, not started", scope: kitScope, edit: func(md *Metadata) {
			md.Telemetry.Metrics["agenttrail.kittest.gone"] = md.Telemetry.Metrics["agenttrail.kittest.items"]
		}},
		{name: "unit", scope: kitScope, edit: func(md *Metadata) {
			m := md.Telemetry.Metrics["agenttrail.kittest.items"]
			m.Unit = "{thing}"
			md.Telemetry.Metrics["agenttrail.kittest.items"] = m
		}, want: `agenttrail.kittest.items has unit "{item}", metadata.yaml "{thing}"`},
		{name: "description", scope: kitScope, edit: func(md *Metadata) {
			m := md.Telemetry.Metrics["agenttrail.kittest.items"]
			m.Description = "Something else."
			md.Telemetry.Metrics["agenttrail.kittest.items"] = m
		}, want: "agenttrail.kittest.items has description"},
		{name: "kind", scope: kitScope, edit: func(md *Metadata) {
			m := md.Telemetry.Metrics["agenttrail.kittest.open"]
			m.Gauge = nil
			m.Sum = md.Telemetry.Metrics["agenttrail.kittest.items"].Sum
			md.Telemetry.Metrics["agenttrail.kittest.open"] = m
		}, want: "agenttrail.kittest.open is registered as int observable gauge, metadata.yaml declares int counter"},
		{name: "scope", scope: "github.com/agenttrail/agenttrail/elsewhere",
			want: "registered under scope github.com/agenttrail/agenttrail/elsewhere"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := md
			md.Telemetry.Metrics = map[string]Metric{}
			for k, v := range mdMetrics(t) {
				md.Telemetry.Metrics[k] = v
			}
			if tt.edit != nil {
				tt.edit(&md)
			}
			f := &fakeT{}
			checkTelemetry(f, md, registered(t, tt.scope, tt.extra), tt.complete)
			got := strings.Join(f.errs, "\n")
			switch {
			case tt.want == "" && got != "":
				t.Errorf("unexpected errors:\n%s", got)
			case tt.want != "" && !strings.Contains(got, tt.want):
				t.Errorf("errors\n%s\ndo not say %q", got, tt.want)
			}
		})
	}
}

func mdMetrics(t *testing.T) map[string]Metric {
	md, err := ReadMetadata("testdata/good/metadata.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return md.Telemetry.Metrics
}

func TestCheckReadme(t *testing.T) {
	md := Metadata{}
	md.Telemetry.Metrics = mdMetrics(t)
	tests := []struct {
		name, readme, want string
	}{
		{"both listed", "## Telemetry\n\n- `agenttrail.kittest.items` (counter)\n- `agenttrail.kittest.open{kind}`: open\n", ""},
		{"one missing", "## Telemetry\n\n| `agenttrail.kittest.items` | items |\n", "README.md does not name the metric agenttrail.kittest.open"},
		{"undeclared row", "## Self-telemetry\n\n| `agenttrail.kittest.items` | x |\n| `agenttrail.kittest.open` | y |\n| `agenttrail.kittest.extra{reason}` | z |\n",
			"lists agenttrail.kittest.extra, which metadata.yaml does not declare"},
		{"attributes mentioned are no metrics", "## Telemetry\n\n| `agenttrail.kittest.items` | by `agenttrail.capture.tls` |\n| `agenttrail.kittest.open` | y |\n\n## Next\n\n| `agenttrail.other.thing` | not telemetry |\n", ""},
		{"no section", "# kittest\n\n`agenttrail.kittest.items` `agenttrail.kittest.open`\n", "README.md has no telemetry section"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeT{}
			checkReadme(f, md, tt.readme)
			got := strings.Join(f.errs, "\n")
			switch {
			case tt.want == "" && got != "":
				t.Errorf("unexpected errors:\n%s", got)
			case tt.want != "" && !strings.Contains(got, tt.want):
				t.Errorf("errors\n%s\ndo not say %q", got, tt.want)
			}
		})
	}
}

func TestReadMetadataRequiresTheBasics(t *testing.T) {
	if _, err := ReadMetadata("testdata/nonexistent.yaml"); err == nil {
		t.Error("a missing file is no error")
	}
	dir := t.TempDir()
	p := dir + "/metadata.yaml"
	if err := writeFile(p, "type: x\nstatus:\n  class: processor\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMetadata(p); err == nil || !strings.Contains(err.Error(), "required") {
		t.Errorf("metadata without scope_name and stability: %v", err)
	}
	if err := writeFile(p, `type: x
scope_name: s
status:
  class: processor
  stability:
    alpha: [traces]
attributes:
  reason:
    description: why
    type: string
telemetry:
  metrics:
    m:
      enabled: true
      attributes: [reason, kind]
      sum:
        value_type: int
`); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMetadata(p); err == nil || !strings.Contains(err.Error(), "metric m has attribute kind, which attributes does not declare") {
		t.Errorf("metric with an undeclared attribute: %v", err)
	}
}
