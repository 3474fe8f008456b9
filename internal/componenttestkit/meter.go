package componenttestkit

import (
	"sort"
	"sync"

	"go.opentelemetry.io/otel/metric"
)

// registration is one instrument a component created.
type registration struct {
	scope, name, kind, unit, description string
}

// registry records every instrument created through a recordingProvider: the sdk's own
// reader only shows instruments that recorded a value, and a check that every declared metric
// exists must not depend on what happened to be counted.
type registry struct {
	mu   sync.Mutex
	regs map[[2]string]registration // by scope and name
}

func (r *registry) add(scope, name, kind string, unit, description string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.regs == nil {
		r.regs = map[[2]string]registration{}
	}
	r.regs[[2]string{scope, name}] = registration{scope, name, kind, unit, description}
}

func (r *registry) all() []registration {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]registration, 0, len(r.regs))
	for _, reg := range r.regs {
		out = append(out, reg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].scope+" "+out[i].name < out[j].scope+" "+out[j].name })
	return out
}

// recordingProvider hands out meters of the wrapped provider that note each instrument created.
type recordingProvider struct {
	metric.MeterProvider
	reg *registry
}

func (p recordingProvider) Meter(name string, opts ...metric.MeterOption) metric.Meter {
	return recordingMeter{Meter: p.MeterProvider.Meter(name, opts...), scope: name, reg: p.reg}
}

type recordingMeter struct {
	metric.Meter
	scope string
	reg   *registry
}

func (m recordingMeter) Int64Counter(name string, opts ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	c := metric.NewInt64CounterConfig(opts...)
	m.reg.add(m.scope, name, "int counter", c.Unit(), c.Description())
	return m.Meter.Int64Counter(name, opts...)
}

func (m recordingMeter) Int64UpDownCounter(name string, opts ...metric.Int64UpDownCounterOption) (metric.Int64UpDownCounter, error) {
	c := metric.NewInt64UpDownCounterConfig(opts...)
	m.reg.add(m.scope, name, "int updowncounter", c.Unit(), c.Description())
	return m.Meter.Int64UpDownCounter(name, opts...)
}

func (m recordingMeter) Int64Histogram(name string, opts ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	c := metric.NewInt64HistogramConfig(opts...)
	m.reg.add(m.scope, name, "int histogram", c.Unit(), c.Description())
	return m.Meter.Int64Histogram(name, opts...)
}

func (m recordingMeter) Int64Gauge(name string, opts ...metric.Int64GaugeOption) (metric.Int64Gauge, error) {
	c := metric.NewInt64GaugeConfig(opts...)
	m.reg.add(m.scope, name, "int gauge", c.Unit(), c.Description())
	return m.Meter.Int64Gauge(name, opts...)
}

func (m recordingMeter) Int64ObservableCounter(name string, opts ...metric.Int64ObservableCounterOption) (metric.Int64ObservableCounter, error) {
	c := metric.NewInt64ObservableCounterConfig(opts...)
	m.reg.add(m.scope, name, "int observable counter", c.Unit(), c.Description())
	return m.Meter.Int64ObservableCounter(name, opts...)
}

func (m recordingMeter) Int64ObservableUpDownCounter(name string, opts ...metric.Int64ObservableUpDownCounterOption) (metric.Int64ObservableUpDownCounter, error) {
	c := metric.NewInt64ObservableUpDownCounterConfig(opts...)
	m.reg.add(m.scope, name, "int observable updowncounter", c.Unit(), c.Description())
	return m.Meter.Int64ObservableUpDownCounter(name, opts...)
}

func (m recordingMeter) Int64ObservableGauge(name string, opts ...metric.Int64ObservableGaugeOption) (metric.Int64ObservableGauge, error) {
	c := metric.NewInt64ObservableGaugeConfig(opts...)
	m.reg.add(m.scope, name, "int observable gauge", c.Unit(), c.Description())
	return m.Meter.Int64ObservableGauge(name, opts...)
}

func (m recordingMeter) Float64Counter(name string, opts ...metric.Float64CounterOption) (metric.Float64Counter, error) {
	c := metric.NewFloat64CounterConfig(opts...)
	m.reg.add(m.scope, name, "double counter", c.Unit(), c.Description())
	return m.Meter.Float64Counter(name, opts...)
}

func (m recordingMeter) Float64UpDownCounter(name string, opts ...metric.Float64UpDownCounterOption) (metric.Float64UpDownCounter, error) {
	c := metric.NewFloat64UpDownCounterConfig(opts...)
	m.reg.add(m.scope, name, "double updowncounter", c.Unit(), c.Description())
	return m.Meter.Float64UpDownCounter(name, opts...)
}

func (m recordingMeter) Float64Histogram(name string, opts ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	c := metric.NewFloat64HistogramConfig(opts...)
	m.reg.add(m.scope, name, "double histogram", c.Unit(), c.Description())
	return m.Meter.Float64Histogram(name, opts...)
}

func (m recordingMeter) Float64Gauge(name string, opts ...metric.Float64GaugeOption) (metric.Float64Gauge, error) {
	c := metric.NewFloat64GaugeConfig(opts...)
	m.reg.add(m.scope, name, "double gauge", c.Unit(), c.Description())
	return m.Meter.Float64Gauge(name, opts...)
}

func (m recordingMeter) Float64ObservableCounter(name string, opts ...metric.Float64ObservableCounterOption) (metric.Float64ObservableCounter, error) {
	c := metric.NewFloat64ObservableCounterConfig(opts...)
	m.reg.add(m.scope, name, "double observable counter", c.Unit(), c.Description())
	return m.Meter.Float64ObservableCounter(name, opts...)
}

func (m recordingMeter) Float64ObservableUpDownCounter(name string, opts ...metric.Float64ObservableUpDownCounterOption) (metric.Float64ObservableUpDownCounter, error) {
	c := metric.NewFloat64ObservableUpDownCounterConfig(opts...)
	m.reg.add(m.scope, name, "double observable updowncounter", c.Unit(), c.Description())
	return m.Meter.Float64ObservableUpDownCounter(name, opts...)
}

func (m recordingMeter) Float64ObservableGauge(name string, opts ...metric.Float64ObservableGaugeOption) (metric.Float64ObservableGauge, error) {
	c := metric.NewFloat64ObservableGaugeConfig(opts...)
	m.reg.add(m.scope, name, "double observable gauge", c.Unit(), c.Description())
	return m.Meter.Float64ObservableGauge(name, opts...)
}
