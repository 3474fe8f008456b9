// Package componenttestkit checks a component's factory against its metadata.yaml: the job of
// the generated_component_test.go that mdatagen writes in contrib (mdatagen is not served at
// the collector version this module pins, so every component calls this one helper instead).
//
// Check verifies the type, the stability of every signal (declared ones and, as undefined, all
// others), the scope name of the component's telemetry, componenttest.CheckConfigStruct, the default config with tests.config laid over it,
// the lifecycle of every signal (create → shutdown, and create → start → shutdown twice unless
// the component cannot start here), that every instrument the component registers under its
// scope is declared in telemetry.metrics with the same unit, description and instrument kind and
// that every declared one is registered, and that the component's README.md names every
// declared metric and declares every metric its telemetry section lists.
package componenttestkit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/receiver"
)

// Options adapt the checks to a component that cannot run every step on any machine.
type Options struct {
	// ScopeName is the instrumentation scope the component's telemetry uses (its
	// metadata.ScopeName), held to scope_name of metadata.yaml. The type and the stability of
	// internal/metadata are held to it through the factory, which is built from them.
	ScopeName string
	// Config, when set, changes the config after tests.config was laid over the default: a
	// temporary directory, a key file written for the test.
	Config func(t *testing.T, cfg component.Config)
	// CannotStart, when set and returning a reason, runs create → shutdown only and says why
	// (no root, no kernel support). The telemetry check then only holds what was registered
	// to the declaration, since instruments made in Start are missing.
	CannotStart func() string
}

// Check runs every check of factory against the metadata.yaml at metadataPath (README.md is
// looked for next to it).
func Check(t *testing.T, factory component.Factory, metadataPath string, opts Options) {
	t.Helper()
	md, err := ReadMetadata(metadataPath)
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := signalsOf(factory)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("type", func(t *testing.T) {
		if got := factory.Type().String(); got != md.Type {
			t.Errorf("factory type %q, metadata.yaml says %q", got, md.Type)
		}
		if want := classOf(factory); md.Status.Class != want {
			t.Errorf("metadata.yaml status.class %q, the factory is a %s", md.Status.Class, want)
		}
	})

	t.Run("scope", func(t *testing.T) {
		if opts.ScopeName == "" {
			t.Skip("Options.ScopeName not given")
		}
		checkScope(t, md, opts.ScopeName)
	})

	t.Run("stability", func(t *testing.T) {
		declared := map[string]string{}
		for level, names := range md.Status.Stability {
			for _, n := range names {
				declared[n] = level
			}
		}
		for _, s := range sigs {
			want, ok := declared[s.name]
			got := s.stability()
			delete(declared, s.name)
			switch {
			case !ok && got != component.StabilityLevelUndefined:
				t.Errorf("%s: the factory says %s, metadata.yaml declares nothing", s.name, got)
			case ok && !strings.EqualFold(got.String(), want):
				t.Errorf("%s: the factory says %s, metadata.yaml %s", s.name, got, want)
			}
		}
		for name := range declared {
			t.Errorf("metadata.yaml declares %s, a signal no %s has", name, md.Status.Class)
		}
	})

	newConfig := func(t *testing.T) component.Config {
		t.Helper()
		cfg := factory.CreateDefaultConfig()
		if len(md.Tests.Config) > 0 {
			if err := confmap.NewFromStringMap(md.Tests.Config).Unmarshal(cfg); err != nil {
				t.Fatalf("tests.config of metadata.yaml: %v", err)
			}
		}
		if opts.Config != nil {
			opts.Config(t, cfg)
		}
		return cfg
	}

	t.Run("config", func(t *testing.T) {
		if err := componenttest.CheckConfigStruct(factory.CreateDefaultConfig()); err != nil {
			t.Error(err)
		}
		// confmap.Validate walks the nested configs too, as the collector does at start.
		if err := confmap.Validate(newConfig(t)); err != nil {
			t.Errorf("the default config with tests.config is not valid: %v", err)
		}
	})

	reg := &registry{}
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	set := tel.NewTelemetrySettings()
	set.MeterProvider = recordingProvider{MeterProvider: set.MeterProvider, reg: reg}

	startable := !md.Tests.SkipLifecycle
	noStart := "tests.skip_lifecycle in metadata.yaml"
	if startable && opts.CannotStart != nil {
		if why := opts.CannotStart(); why != "" {
			startable, noStart = false, why
		}
	}
	ranAll := startable
	for _, s := range sigs {
		if s.stability() == component.StabilityLevelUndefined {
			continue
		}
		ranAll = t.Run("lifecycle/"+s.name, func(t *testing.T) {
			ctx := context.Background()
			c, err := s.create(ctx, set, newConfig(t))
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if err := c.Shutdown(ctx); err != nil {
				t.Fatalf("shutdown without start: %v", err)
			}
			if !startable {
				t.Logf("not started: %s", noStart)
				return
			}
			// Twice, as contrib's generated test does: a second instance must not trip over
			// what the first left behind (a global registration, a file, a port).
			for range 2 {
				c, err := s.create(ctx, set, newConfig(t))
				if err != nil {
					t.Fatalf("create: %v", err)
				}
				if err := c.Start(ctx, componenttest.NewNopHost()); err != nil {
					t.Fatalf("start: %v", err)
				}
				if err := c.Shutdown(ctx); err != nil {
					t.Fatalf("shutdown: %v", err)
				}
			}
		}) && ranAll
	}

	t.Run("telemetry", func(t *testing.T) {
		checkTelemetry(t, md, reg.all(), ranAll)
	})

	t.Run("readme", func(t *testing.T) {
		readme, err := os.ReadFile(filepath.Join(filepath.Dir(metadataPath), "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		checkReadme(t, md, string(readme))
	})
}

func checkScope(t reporter, md Metadata, scope string) {
	if scope != md.ScopeName {
		t.Errorf("scope name %q, metadata.yaml says %q", scope, md.ScopeName)
	}
}

// checkTelemetry compares what was registered with what is declared; complete says every
// lifecycle ran through Start, so that a declared metric never registered is an error.
func checkTelemetry(t reporter, md Metadata, regs []registration, complete bool) {
	seen := map[string]bool{}
	for _, r := range regs {
		if r.scope != md.ScopeName {
			// The collector's helpers (exporterhelper, confighttp) have scopes of their own;
			// an AgentTrail scope other than the component's is a misnamed meter.
			if strings.HasPrefix(r.scope, "github.com/agenttrail/") {
				t.Errorf("%s registered under scope %s, metadata.yaml's scope_name is %s", r.name, r.scope, md.ScopeName)
			}
			continue
		}
		seen[r.name] = true
		m, ok := md.Telemetry.Metrics[r.name]
		if !ok {
			t.Errorf("%s (%s) is registered but not declared in metadata.yaml", r.name, r.kind)
			continue
		}
		kind, err := m.instrument()
		if err != nil {
			t.Errorf("%s in metadata.yaml: %v", r.name, err)
			continue
		}
		if kind != r.kind {
			t.Errorf("%s is registered as %s, metadata.yaml declares %s", r.name, r.kind, kind)
		}
		if r.unit != m.Unit {
			t.Errorf("%s has unit %q, metadata.yaml %q", r.name, r.unit, m.Unit)
		}
		if r.description != m.Description {
			t.Errorf("%s has description\n\t%q\nmetadata.yaml\n\t%q", r.name, r.description, m.Description)
		}
		if !m.Enabled {
			t.Errorf("%s is registered, metadata.yaml says enabled: false", r.name)
		}
	}
	for name := range md.Telemetry.Metrics {
		if seen[name] {
			continue
		}
		if complete {
			t.Errorf("%s is declared in metadata.yaml but never registered", name)
		} else {
			t.Logf("%s is declared; not checked, as not every lifecycle started", name)
		}
	}
}

var (
	// A metric a README describes: the first code span of a table row or a list item.
	readmeMetric = regexp.MustCompile("(?m)^(?:\\|\\s*|[-*]\\s+)`([a-z0-9_]+(?:\\.[a-z0-9_]+)+)[`{]")
	heading      = regexp.MustCompile(`(?m)^#+\s+(.*)$`)
)

func checkReadme(t reporter, md Metadata, readme string) {
	for name := range md.Telemetry.Metrics {
		if !strings.Contains(readme, "`"+name) {
			t.Errorf("README.md does not name the metric %s", name)
		}
	}
	// The telemetry section: from a heading that says telemetry to the next heading.
	var section string
	hs := heading.FindAllStringSubmatchIndex(readme, -1)
	for i, h := range hs {
		if strings.Contains(strings.ToLower(readme[h[2]:h[3]]), "telemetry") {
			end := len(readme)
			if i+1 < len(hs) {
				end = hs[i+1][0]
			}
			section = readme[h[1]:end]
			break
		}
	}
	if section == "" {
		if len(md.Telemetry.Metrics) > 0 {
			t.Error("README.md has no telemetry section for the metrics metadata.yaml declares")
		}
		return
	}
	for _, m := range readmeMetric.FindAllStringSubmatch(section, -1) {
		if _, ok := md.Telemetry.Metrics[m[1]]; !ok {
			t.Errorf("README.md's telemetry section lists %s, which metadata.yaml does not declare", m[1])
		}
	}
}

// reporter is the part of testing.T the comparisons use (their own tests record it).
type reporter interface {
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Error(args ...any)
}

// signal is one signal (or connector route) a factory may support.
type signal struct {
	name      string
	stability func() component.StabilityLevel
	create    func(context.Context, component.TelemetrySettings, component.Config) (component.Component, error)
}

func classOf(f component.Factory) string {
	switch f.(type) {
	case receiver.Factory:
		return "receiver"
	case processor.Factory:
		return "processor"
	case exporter.Factory:
		return "exporter"
	case connector.Factory:
		return "connector"
	case extension.Factory:
		return "extension"
	}
	return fmt.Sprintf("%T", f)
}

func signalsOf(f component.Factory) ([]signal, error) {
	id := component.NewID(f.Type())
	build := component.NewDefaultBuildInfo()
	sink := consumertest.NewNop()
	traces, metrics, logs := consumer.Traces(sink), consumer.Metrics(sink), consumer.Logs(sink)
	switch f := f.(type) {
	case receiver.Factory:
		set := func(ts component.TelemetrySettings) receiver.Settings {
			return receiver.Settings{ID: id, TelemetrySettings: ts, BuildInfo: build}
		}
		return pipelineSignals(set, f.TracesStability, f.MetricsStability, f.LogsStability,
			withSink(f.CreateTraces, traces), withSink(f.CreateMetrics, metrics), withSink(f.CreateLogs, logs)), nil
	case processor.Factory:
		set := func(ts component.TelemetrySettings) processor.Settings {
			return processor.Settings{ID: id, TelemetrySettings: ts, BuildInfo: build}
		}
		return pipelineSignals(set, f.TracesStability, f.MetricsStability, f.LogsStability,
			withSink(f.CreateTraces, traces), withSink(f.CreateMetrics, metrics), withSink(f.CreateLogs, logs)), nil
	case exporter.Factory:
		set := func(ts component.TelemetrySettings) exporter.Settings {
			return exporter.Settings{ID: id, TelemetrySettings: ts, BuildInfo: build}
		}
		return pipelineSignals(set, f.TracesStability, f.MetricsStability, f.LogsStability,
			asComponent(f.CreateTraces), asComponent(f.CreateMetrics), asComponent(f.CreateLogs)), nil
	case connector.Factory:
		set := func(ts component.TelemetrySettings) connector.Settings {
			return connector.Settings{ID: id, TelemetrySettings: ts, BuildInfo: build}
		}
		routes := []signal{
			route("traces_to_traces", f.TracesToTracesStability, set, withSink(f.CreateTracesToTraces, traces)),
			route("traces_to_metrics", f.TracesToMetricsStability, set, withSink(f.CreateTracesToMetrics, metrics)),
			route("traces_to_logs", f.TracesToLogsStability, set, withSink(f.CreateTracesToLogs, logs)),
			route("metrics_to_traces", f.MetricsToTracesStability, set, withSink(f.CreateMetricsToTraces, traces)),
			route("metrics_to_metrics", f.MetricsToMetricsStability, set, withSink(f.CreateMetricsToMetrics, metrics)),
			route("metrics_to_logs", f.MetricsToLogsStability, set, withSink(f.CreateMetricsToLogs, logs)),
			route("logs_to_traces", f.LogsToTracesStability, set, withSink(f.CreateLogsToTraces, traces)),
			route("logs_to_metrics", f.LogsToMetricsStability, set, withSink(f.CreateLogsToMetrics, metrics)),
			route("logs_to_logs", f.LogsToLogsStability, set, withSink(f.CreateLogsToLogs, logs)),
		}
		return routes, nil
	case extension.Factory:
		// One "signal", named as metadata.yaml names an extension's stability.
		return []signal{
			route("extension", f.Stability, func(ts component.TelemetrySettings) extension.Settings {
				return extension.Settings{ID: id, TelemetrySettings: ts, BuildInfo: build}
			}, asComponent(f.Create)),
		}, nil
	}
	return nil, fmt.Errorf("%T is no receiver, processor, exporter, connector or extension factory", f)
}

// createFunc creates a component from settings of type S.
type createFunc[S any] func(context.Context, S, component.Config) (component.Component, error)

// withSink is a factory's create function of a receiver, processor or connector (whose last
// argument is the next consumer) bound to sink.
func withSink[S, C any, R component.Component](create func(context.Context, S, component.Config, C) (R, error), sink C) createFunc[S] {
	return func(ctx context.Context, s S, cfg component.Config) (component.Component, error) {
		return create(ctx, s, cfg, sink)
	}
}

// asComponent is a factory's create function of an exporter or extension.
func asComponent[S any, R component.Component](create func(context.Context, S, component.Config) (R, error)) createFunc[S] {
	return func(ctx context.Context, s S, cfg component.Config) (component.Component, error) {
		return create(ctx, s, cfg)
	}
}

// route is one signal (or connector route) whose settings are of type S.
func route[S any](name string, stability func() component.StabilityLevel, set func(component.TelemetrySettings) S, create createFunc[S]) signal {
	return signal{name, stability, func(ctx context.Context, ts component.TelemetrySettings, cfg component.Config) (component.Component, error) {
		return create(ctx, set(ts), cfg)
	}}
}

// pipelineSignals are the traces, metrics and logs of a receiver, processor or exporter,
// whose settings are of type S.
func pipelineSignals[S any](set func(component.TelemetrySettings) S,
	tracesStability, metricsStability, logsStability func() component.StabilityLevel,
	traces, metrics, logs createFunc[S],
) []signal {
	return []signal{
		route("traces", tracesStability, set, traces),
		route("metrics", metricsStability, set, metrics),
		route("logs", logsStability, set, logs),
	}
}

// Status is what a component's internal/metadata package declares, in mdatagen's
// generated_status.go shape.
type Status struct {
	Type      component.Type
	ScopeName string
	// Stability by signal name as metadata.yaml spells it (traces, logs, traces_to_logs).
	Stability map[string]component.StabilityLevel
}

// CheckStatus holds a component's internal/metadata package to its metadata.yaml: the package
// is written by hand (mdatagen is not served here), so this is what keeps the two in step where
// the factory is not built from it (Check holds a factory built from it, with
// Options.ScopeName).
func CheckStatus(t *testing.T, metadataPath string, s Status) {
	t.Helper()
	md, err := ReadMetadata(metadataPath)
	if err != nil {
		t.Fatal(err)
	}
	if s.Type.String() != md.Type {
		t.Errorf("metadata.Type %q, metadata.yaml says %q", s.Type, md.Type)
	}
	if s.ScopeName != md.ScopeName {
		t.Errorf("metadata.ScopeName %q, metadata.yaml says %q", s.ScopeName, md.ScopeName)
	}
	declared := map[string]string{}
	for level, names := range md.Status.Stability {
		for _, n := range names {
			declared[n] = level
		}
	}
	for name, level := range s.Stability {
		if want, ok := declared[name]; !ok || !strings.EqualFold(level.String(), want) {
			t.Errorf("metadata package: %s %s, metadata.yaml says %q", name, level, want)
		}
		delete(declared, name)
	}
	for name, level := range declared {
		t.Errorf("metadata.yaml declares %s %s, the metadata package has no stability for it", name, level)
	}
}
