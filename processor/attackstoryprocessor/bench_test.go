package attackstoryprocessor

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// benchConfig is the bank demo's configuration: alert mode with declared boundaries, so every
// rule runs and attack stories produce findings (narrative and OCSF included).
func benchConfig() *Config {
	cfg := createDefaultConfig()
	cfg.Workloads = []WorkloadConfig{bankWorkload(profile.ModeAlert)}
	return cfg
}

// storyTemplates: one benign story (6 spans) and one attack story (8 spans, a finding).
func storyTemplates() (benign, attack ptrace.Traces) {
	b := newTraceBuilder()
	bankStory(b.hostProcess("customer-agent", 4242), traceID(1), 0, "What is the balance summary for C1001?", "accounts-summary", [2]string{"customerID", "C1001"})
	a := newTraceBuilder()
	attackStory(a.hostProcess("customer-agent", 4242), traceID(2), 0)
	return b.traces(), a.traces()
}

// withTraceID appends a copy of tmpl to dst with every span in trace n.
func withTraceID(dst ptrace.Traces, tmpl ptrace.Traces, n uint64) {
	var id pcommon.TraceID
	binary.BigEndian.PutUint64(id[:8], 0xbe0c4)
	binary.BigEndian.PutUint64(id[8:], n)
	start := dst.ResourceSpans().Len()
	for i := 0; i < tmpl.ResourceSpans().Len(); i++ {
		tmpl.ResourceSpans().At(i).CopyTo(dst.ResourceSpans().AppendEmpty())
	}
	for i := start; i < dst.ResourceSpans().Len(); i++ {
		ss := dst.ResourceSpans().At(i).ScopeSpans()
		for j := 0; j < ss.Len(); j++ {
			spans := ss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				spans.At(k).SetTraceID(id)
			}
		}
	}
}

// BenchmarkThroughput pushes batches of 100 stories (9 benign for 1 attack, ~620 spans)
// through the processor on one goroutine: buffering, completion, rules, findings, output.
// Reports spans/s (copying the input is not timed).
func BenchmarkThroughput(b *testing.B) {
	benign, attack := storyTemplates()
	clock := newFakeClock(baseTime)
	out := &countingSink{}
	p, err := newProcessor(processortest.NewNopSettings(Type), benchConfig(), out, clock)
	require.NoError(b, err)
	p.manual = true
	require.NoError(b, p.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(b, p.Shutdown(context.Background())) }()
	ctx := context.Background()
	var n uint64
	spans := 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		batch := ptrace.NewTraces()
		for i := range 100 {
			n++
			if i%10 == 9 {
				withTraceID(batch, attack, n)
			} else {
				withTraceID(batch, benign, n)
			}
		}
		spans += batch.SpanCount()
		b.StartTimer()
		require.NoError(b, p.ConsumeTraces(ctx, batch))
		clock.Advance(p.cfg.CompletionGrace + time.Millisecond)
		p.emit(ctx, false)
	}
	b.StopTimer()
	require.Equal(b, spans, out.spans, "every span came out")
	require.Equal(b, (b.N*100+9)/10, out.findings, "one finding per attack story")
	b.ReportMetric(float64(spans)/b.Elapsed().Seconds(), "spans/s")
}

// countingSink counts the spans and findings it receives.
type countingSink struct{ spans, findings int }

func (s *countingSink) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (s *countingSink) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	s.spans += td.SpanCount()
	forEachSpan(td, func(sp ptrace.Span) {
		for i := 0; i < sp.Events().Len(); i++ {
			if sp.Events().At(i).Name() == story.FindingEventName {
				s.findings++
			}
		}
	})
	return nil
}

// latencySink records when each trace with a finding arrives.
type latencySink struct {
	mu   sync.Mutex
	seen map[pcommon.TraceID]time.Time
}

func (s *latencySink) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (s *latencySink) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	forEachSpan(td, func(sp ptrace.Span) {
		for i := 0; i < sp.Events().Len(); i++ {
			if sp.Events().At(i).Name() == story.FindingEventName {
				s.seen[sp.TraceID()] = now
			}
		}
	})
	return nil
}

// measureFindingLatency sends stories at spansPerSecond (one story per batch, as when the
// receiver flushes a whole request; every other story is an attack) for the given number of
// stories, with completion_grace 200ms and the real clock and emitter, and returns the
// latencies from a story's last span to its finding leaving the processor.
func measureFindingLatency(tb testing.TB, stories int, spansPerSecond float64) []time.Duration {
	benign, attack := storyTemplates()
	cfg := benchConfig()
	cfg.CompletionGrace = 200 * time.Millisecond
	sink := &latencySink{seen: map[pcommon.TraceID]time.Time{}}
	p, err := NewFactory().CreateTraces(context.Background(), processortest.NewNopSettings(Type), cfg, sink)
	require.NoError(tb, err)
	require.NoError(tb, p.Start(context.Background(), componenttest.NewNopHost()))
	ctx := context.Background()
	sent := map[pcommon.TraceID]time.Time{}
	start := time.Now()
	spans := 0
	for i := range stories {
		batch := ptrace.NewTraces()
		if i%2 == 1 {
			withTraceID(batch, attack, uint64(i+1))
			sent[batch.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).TraceID()] = time.Time{}
		} else {
			withTraceID(batch, benign, uint64(i+1))
		}
		spans += batch.SpanCount()
		if wait := time.Until(start.Add(time.Duration(float64(spans) / spansPerSecond * float64(time.Second)))); wait > 0 {
			time.Sleep(wait)
		}
		id := batch.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).TraceID()
		now := time.Now()
		require.NoError(tb, p.ConsumeTraces(ctx, batch))
		if _, ok := sent[id]; ok {
			sent[id] = now
		}
	}
	require.Eventually(tb, func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.seen) == len(sent)
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(tb, p.Shutdown(context.Background()))
	lat := make([]time.Duration, 0, len(sent))
	for id, at := range sent {
		lat = append(lat, sink.seen[id].Sub(at))
	}
	slices.Sort(lat)
	return lat
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// BenchmarkFindingLatency: 5,000 spans/s, grace 200ms; reports p50 and p99 of the time from a
// story's last span to its finding (target: p99 under 1s).
func BenchmarkFindingLatency(b *testing.B) {
	lat := measureFindingLatency(b, max(b.N, 200), 5000)
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(percentile(lat, 1).Microseconds())/1000, "max-ms")
}

// TestFindingLatency checks the latency target in the ordinary test run (about 1.5 s).
func TestFindingLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	lat := measureFindingLatency(t, 1000, 5000)
	p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
	t.Logf("finding latency over %d findings at 5000 spans/s, grace 200ms: p50 %s, p99 %s, max %s", len(lat), p50, p99, percentile(lat, 1))
	require.Less(t, p99, time.Second)
}

// BenchmarkManyInFlight: one busy agent process with 1,000 stories in flight (a request every
// millisecond, each open for 500 ms) and, in each, a span in a trace of its own that stitching
// must place (a connect made on a goroutine of its own). Each operation adds one request and
// emits what is complete, as the emitter's tick does. Stitching must not cost in proportion to
// the stories in flight squared.
func BenchmarkManyInFlight(b *testing.B) { benchmarkInFlight(b, 1) }

// BenchmarkManyInFlightTicked is BenchmarkManyInFlight with the emitter's pace of a busy
// process: a pass every 50 requests (700 req/s against the 75 ms tick of completion_grace
// 300ms), so that a pass takes dozens of ready stories, as at saturation (BENCHMARKS.md
// section 4).
func BenchmarkManyInFlightTicked(b *testing.B) { benchmarkInFlight(b, 50) }

// benchmarkInFlight: a request in and, every perPass requests, an emit (ns per request).
func benchmarkInFlight(b *testing.B, perPass int) {
	const inFlight = 1000
	clock := newFakeClock(baseTime)
	out := &countingSink{}
	cfg := benchConfig()
	cfg.CompletionGrace = inFlight * time.Millisecond // each story waits this long: 1,000 in flight
	p, err := newProcessor(processortest.NewNopSettings(Type), cfg, out, clock)
	require.NoError(b, err)
	p.manual = true
	require.NoError(b, p.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(b, p.Shutdown(context.Background())) }()
	ctx := context.Background()
	request := func(n int) ptrace.Traces {
		tb := newTraceBuilder()
		pr := tb.hostProcess("customer-agent", 4242)
		at := float64(n) // ms
		root := pr.prompt(traceID(2*n+1), at, at+10, "hello")
		pr.tool(root, at+1, at+2, "accounts-summary")
		pr.connect(spanRef{trace: traceID(2*n + 2)}, at+3, at+3.1, "127.0.0.1", 5432)
		return tb.traces()
	}
	n := 0
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		td := request(n)
		clock.Set(baseTime.Add(time.Duration(n) * time.Millisecond))
		n++
		b.StartTimer()
		c0 := processCPU()
		require.NoError(b, p.ConsumeTraces(ctx, td))
		if n%perPass == 0 {
			p.emit(ctx, false)
		}
		cpu += processCPU() - c0
	}
	// CPU time as well as wall time: on a shared machine the wall time of an operation grows
	// with the other processes' load, its CPU time much less.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// processCPU is the process's user + system CPU time (every thread: GC workers included).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
