package attackstoryprocessor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
)

// consumeAsync runs ConsumeTraces on its own goroutine: with wait_for_handoff it returns only
// when the spans were passed on.
func consumeAsync(p *storyProcessor, ctx context.Context, td ptrace.Traces) <-chan error {
	res := make(chan error, 1)
	go func() { res <- p.ConsumeTraces(ctx, td) }()
	return res
}

func requireNoAnswer(t *testing.T, res <-chan error, why string) {
	t.Helper()
	select {
	case err := <-res:
		t.Fatalf("ConsumeTraces answered (%v) %s", err, why)
	case <-time.After(50 * time.Millisecond):
	}
}

func requireAnswer(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("ConsumeTraces did not answer after its spans were passed on")
	}
	return nil
}

// waitBuffered waits until the goroutine's batch is in the buffer (spans in flight).
func waitBuffered(t *testing.T, p *storyProcessor, stories int) {
	t.Helper()
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.buf.Stories) == stories
	}, 5*time.Second, time.Millisecond)
}

// TestWaitForHandoffAnswersAfterEmission: with wait_for_handoff the caller (the OTLP
// receiver, and through it the sender) is answered only once the story holding its spans was
// passed on, not when they were buffered: a crash before that loses nothing acknowledged.
func TestWaitForHandoffAnswersAfterEmission(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.WaitForHandoff = true
	h := newHarness(t, cfg)
	b := newTraceBuilder()
	pb := b.hostProcess("customer-agent", 4242)
	pb.started(traceID(9), 0)
	bankStory(pb, traceID(1), 0, "hi", "accounts-summary")
	h.clock.Set(baseTime.Add(time.Second))
	res := consumeAsync(h.p, context.Background(), b.traces())
	waitBuffered(t, h.p, 1)
	requireNoAnswer(t, res, "while its story is in flight")
	h.p.emit(context.Background(), false) // within the grace: nothing leaves
	requireNoAnswer(t, res, "before its story is complete")
	assert.Equal(t, 1, h.sink.SpanCount(), "the process.start span leaves at once; the request waits for its story too")
	h.clock.Advance(cfg.CompletionGrace)
	h.p.emit(context.Background(), false)
	require.NoError(t, requireAnswer(t, res))
	assert.Equal(t, 7, h.sink.SpanCount(), "the story and the process.start span")
}

// TestWaitForHandoffOffAnswersAtOnce: the agent's configuration (behind the eBPF receiver)
// keeps the old answer: at once.
func TestWaitForHandoffOffAnswersAtOnce(t *testing.T) {
	h := newHarness(t, createDefaultConfig())
	b := newTraceBuilder()
	bankStory(b.hostProcess("customer-agent", 4242), traceID(1), 0, "hi", "accounts-summary")
	require.NoError(t, requireAnswer(t, consumeAsync(h.p, context.Background(), b.traces())))
	assert.Equal(t, 0, h.sink.SpanCount())
}

// failOnce refuses its first batch.
type failOnce struct {
	mu     sync.Mutex
	failed bool
	spans  int
}

func (f *failOnce) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (f *failOnce) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.failed {
		f.failed = true
		return errQueueFull
	}
	f.spans += td.SpanCount()
	return nil
}

var errQueueFull = errors.New("sending queue is full")

// TestWaitForHandoffReturnsNextError: the next component's refusal (an exporter's full
// queue) is the sender's answer, so that it sends again, instead of a log line about lost
// stories.
func TestWaitForHandoffReturnsNextError(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.WaitForHandoff = true
	clock := newFakeClock(baseTime)
	next := &failOnce{}
	p, err := newProcessor(processortest.NewNopSettings(Type), cfg, next, clock)
	require.NoError(t, err)
	p.manual = true
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	b := newTraceBuilder()
	bankStory(b.hostProcess("customer-agent", 4242), traceID(1), 0, "hi", "accounts-summary")
	td := b.traces()
	retry := ptrace.NewTraces()
	td.CopyTo(retry)
	clock.Set(baseTime.Add(time.Second))
	res := consumeAsync(p, context.Background(), td)
	waitBuffered(t, p, 1)
	clock.Advance(time.Minute)
	p.emit(context.Background(), false)
	require.ErrorIs(t, requireAnswer(t, res), errQueueFull)
	// The sender sends again: a new story (late spans), passed on this time.
	res = consumeAsync(p, context.Background(), retry)
	waitBuffered(t, p, 1)
	clock.Advance(time.Minute)
	p.emit(context.Background(), false)
	require.NoError(t, requireAnswer(t, res))
	require.NoError(t, p.Shutdown(context.Background()))
	assert.Equal(t, 6, next.spans)
}

// TestWaitForHandoffCancelledThenRetried: a sender whose request timed out gets an error and
// sends the same spans again while the first copies are still held: the retry waits for them
// and the spans are passed on once; both requests are answered by that hand-off.
func TestWaitForHandoffCancelledThenRetried(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.WaitForHandoff = true
	h := newHarness(t, cfg)
	b := newTraceBuilder()
	bankStory(b.hostProcess("customer-agent", 4242), traceID(1), 0, "hi", "accounts-summary")
	td := b.traces()
	retry := ptrace.NewTraces()
	td.CopyTo(retry)
	h.clock.Set(baseTime.Add(time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	res := consumeAsync(h.p, ctx, td)
	waitBuffered(t, h.p, 1)
	cancel()
	require.ErrorIs(t, requireAnswer(t, res), context.Canceled)

	res = consumeAsync(h.p, context.Background(), retry)
	require.Eventually(t, func() bool { return h.counter("agenttrail.attackstory.duplicates", "", "") == 6 }, 5*time.Second, time.Millisecond)
	requireNoAnswer(t, res, "while the first copies are held")
	h.clock.Advance(cfg.CompletionGrace)
	h.p.emit(context.Background(), false)
	require.NoError(t, requireAnswer(t, res))
	assert.Equal(t, 6, h.sink.SpanCount(), "each span once")
}

// TestWaitForHandoffShutdownFlushes: a request waiting at shutdown is answered by the flush.
func TestWaitForHandoffShutdownFlushes(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.WaitForHandoff = true
	h := newHarness(t, cfg)
	b := newTraceBuilder()
	bankStory(b.hostProcess("customer-agent", 4242), traceID(1), 0, "hi", "accounts-summary")
	h.clock.Set(baseTime.Add(time.Second))
	res := consumeAsync(h.p, context.Background(), b.traces())
	waitBuffered(t, h.p, 1)
	require.NoError(t, h.p.Shutdown(context.Background()))
	require.NoError(t, requireAnswer(t, res))
	assert.Equal(t, 6, h.sink.SpanCount())
}
