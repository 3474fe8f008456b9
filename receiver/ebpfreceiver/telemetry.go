package ebpfreceiver

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/symbolize"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// ctxBackground is used for counter updates outside a request context.
var ctxBackground = context.Background()

// telemetry is the receiver's self-telemetry through the collector's meter (mdatagen is not
// available at this collector version, so the instruments are declared here).
type telemetry struct {
	eventsRead    metric.Int64Counter
	eventsInvalid metric.Int64Counter // by kind and reason
	panics        metric.Int64Counter // records whose handling panicked, by kind
	// captureProcesses: traced processes set up, by what could be instrumented in them.
	captureProcesses metric.Int64Counter
	spansEmitted     metric.Int64Counter
	spansRefused     metric.Int64Counter
	attachFailures   metric.Int64Counter
	calls            metric.Int64Counter // incomplete or unmatched calls, by reason
	syscallsSkipped  metric.Int64Counter // syscalls not made spans, by syscall and reason
	readerLag        metric.Float64Histogram
	meter            metric.Meter
}

func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	m := set.MeterProvider.Meter("github.com/agenttrail/agenttrail/receiver/ebpfreceiver")
	t := &telemetry{meter: m}
	var err error
	counter := func(name, desc, unit string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		return c
	}
	t.eventsRead = counter("agenttrail.ebpf.events.read", "Records read from the kernel ring buffer.", "{event}")
	t.eventsInvalid = counter("agenttrail.ebpf.events.invalid", "Records dropped because they failed a check (short, unknown kind, probe or syscall, fields out of range), by kind and reason.", "{event}")
	t.panics = counter("agenttrail.ebpf.events.panics", "Records whose handling panicked (recovered, the record dropped and its process's state reset), by kind.", "{event}")
	t.captureProcesses = counter("agenttrail.ebpf.capture.processes", "Traced processes set up, by what could be instrumented in them: tls (openssl, go, boringssl, not supported: <library>, none, disabled), python (known, unknown, n/a, disabled), complete.", "{process}")
	t.spansEmitted = counter("agenttrail.ebpf.spans.emitted", "Spans handed to the next component.", "{span}")
	t.spansRefused = counter("agenttrail.ebpf.spans.refused", "Spans the next component refused; they are dropped.", "{span}")
	t.attachFailures = counter("agenttrail.ebpf.attach.failures", "Targets, functions or processes that could not be instrumented.", "{failure}")
	t.calls = counter("agenttrail.ebpf.calls.incomplete", "Calls closed or skipped without a clean entry and return, by reason.", "{call}")
	t.syscallsSkipped = counter("agenttrail.ebpf.syscalls.skipped", "Syscalls seen but not made spans because they are neither activity nor a failure, by syscall and reason.", "{syscall}")
	if err == nil {
		t.readerLag, err = m.Float64Histogram("agenttrail.ebpf.reader.lag",
			metric.WithDescription("How far the record reader is behind the kernel: per read of the ring buffer, the longest a record waited between the kernel writing it and the reader taking it."),
			metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	}
	return t, err
}

// observeDrops reports the kernel's drop counters (events lost before user space saw them).
func (t *telemetry) observeDrops(k *probes.Set) {
	_, _ = t.meter.Int64ObservableCounter("agenttrail.ebpf.events.lost",
		metric.WithDescription("Events the kernel programs could not deliver, by reason."),
		metric.WithUnit("{event}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			drops, err := k.Drops()
			if err != nil {
				return err
			}
			for reason, n := range drops {
				o.Observe(int64(n), metric.WithAttributes(attribute.String("reason", reason)))
			}
			return nil
		}))
}

// observeSyscallHooks reports how the syscall programs were attached: the number of hooks they
// are on, by path (tracepoint, raw) and, when syscall_attach: auto fell back to the raw
// tracepoints, why (fallback).
func (t *telemetry) observeSyscallHooks(h probes.SyscallHooks) {
	attrs := []attribute.KeyValue{attribute.String("path", h.Path)}
	if h.Fallback != "" {
		attrs = append(attrs, attribute.String("fallback", h.Fallback))
	}
	set := metric.WithAttributes(attrs...)
	_, _ = t.meter.Int64ObservableGauge("agenttrail.ebpf.syscalls.hooks",
		metric.WithDescription("Tracepoints the syscall programs are attached to, by path (tracepoint: per-syscall; raw: sys_enter and sys_exit, run at every syscall on the node) and fallback reason."),
		metric.WithUnit("{tracepoint}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(h.Hooks), set)
			return nil
		}))
}

// observeSymbolizer reports what the symbolizer could not read of the traced processes' files:
// tables of a mapped binary over elfinfo's limits or that the debug/* parsers failed on
// (binary_malformed: its frames go without names), and /proc/<pid>/maps reads cut at their bound
// (maps_truncated: addresses beyond are not symbolized).
func (t *telemetry) observeSymbolizer(s *symbolize.Symbolizer) {
	_, _ = t.meter.Int64ObservableCounter("agenttrail.ebpf.symbolize.unreadable",
		metric.WithDescription("Binaries and maps files of traced processes the symbolizer could not read whole, by reason."),
		metric.WithUnit("{file}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			st := s.Stats()
			o.Observe(int64(st.BinariesMalformed), metric.WithAttributes(attribute.String("reason", "binary_malformed")))
			o.Observe(int64(st.MapsTruncated), metric.WithAttributes(attribute.String("reason", "maps_truncated")))
			return nil
		}))
}

// forTracers is the part of the receiver's self-telemetry the tracers share; each makes its own
// instruments from the meter.
func (t *telemetry) forTracers() *tracer.Telemetry {
	return &tracer.Telemetry{Meter: t.meter, AttachFailures: t.attachFailures, Calls: t.calls}
}

// recordBuilder adds what the span builder counted since the last call.
func (t *telemetry) recordBuilder(ctx context.Context, before, after spans.Counters) {
	add := func(reason string, b, a uint64) { addDelta(ctx, t.calls, reason, b, a) }
	add("return_without_entry", before.UnmatchedReturns, after.UnmatchedReturns)
	add("unwound", before.UnwoundSpans, after.UnwoundSpans)
	add("process_exited", before.ProcessExitSpans, after.ProcessExitSpans)
	add("open_span_limit", before.OpenSpanLimitDrops, after.OpenSpanLimitDrops)
	add("unknown_process", before.UnknownProcess, after.UnknownProcess)
	add("inferred_tool_dropped", before.InferredToolsDropped, after.InferredToolsDropped)
	add("inferred_tool_expired", before.InferredToolsExpired, after.InferredToolsExpired)
	if n := after.WouldBlockAccepts; n > before.WouldBlockAccepts {
		t.syscallsSkipped.Add(ctx, int64(n-before.WouldBlockAccepts), metric.WithAttributes(
			attribute.String("syscall", "accept"), attribute.String("reason", "would_block")))
	}
}

// addDelta adds to c, under the reason, what a cumulative count grew by from b to a.
func addDelta(ctx context.Context, c metric.Int64Counter, reason string, b, a uint64) {
	if a > b {
		c.Add(ctx, int64(a-b), metric.WithAttributes(attribute.String("reason", reason)))
	}
}
