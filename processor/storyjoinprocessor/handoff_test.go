package storyjoinprocessor

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

	"github.com/agenttrail/agenttrail/internal/handoff"
	"github.com/agenttrail/agenttrail/processor/storyjoinprocessor/internal/metadata"
)

// answer is a request's answer if it was given.
func answer(t *testing.T, a *handoff.Ack) (answered bool, err error) {
	t.Helper()
	return a.Answered()
}

// A request whose server-side trace waits for its client half is answered only when the
// trace was passed on (here unjoined, after wait): acknowledged earlier, a SIGKILL of the
// gateway in between lost it.
func TestHeldRequestAnsweredAfterExpiry(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	h := newHarness(t, cfg)
	ack := h.send(serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2"))
	answered, _ := answer(t, ack)
	require.False(t, answered, "answered while its spans are held")
	h.advance(cfg.Wait / 2)
	answered, _ = answer(t, ack)
	require.False(t, answered, "answered before the wait was over")
	h.advance(cfg.Wait)
	answered, err := answer(t, ack)
	require.True(t, answered)
	require.NoError(t, err)
	assert.Equal(t, 4, h.out().SpanCount())
}

// A held trace released by another request's client span goes on with that request; its own
// request is answered with that hand-off. The client's request (nothing held) is answered at once.
func TestHeldRequestAnsweredWithTheJoiningRequest(t *testing.T) {
	h := newHarness(t, createDefaultConfig().(*Config))
	server := h.send(serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2"))
	answered, _ := answer(t, server)
	require.False(t, answered)
	client := h.send(agentBatch(1, "10.0.0.1", 40001))
	answered, err := answer(t, client)
	require.True(t, answered)
	require.NoError(t, err)
	answered, err = answer(t, server)
	require.True(t, answered, "the joined trace went on with the client's request")
	require.NoError(t, err)
	assert.Equal(t, 6, h.out().SpanCount())
}

// A request that brought spans to two waiting traces is answered when both went on.
func TestRequestWaitsForEveryHeldTrace(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	h := newHarness(t, cfg)
	b := newNode("node-b", "tool-service")
	b.accept(tid(0x10), sid(0x10), "10.0.0.1", 40001, 1*ms)
	b.accept(tid(0x40), sid(0x40), "10.0.0.1", 40002, 1*ms)
	ack := h.send(b.td)
	h.send(agentBatch(1, "10.0.0.1", 40001))
	answered, _ := answer(t, ack)
	require.False(t, answered, "answered with one of its traces still waiting")
	h.advance(cfg.Wait)
	answered, _ = answer(t, ack)
	require.True(t, answered)
}

// refuser refuses every batch.
type refuser struct {
	mu    sync.Mutex
	spans int
}

var errRefused = errors.New("sending queue is full")

func (r *refuser) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }
func (r *refuser) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans += td.SpanCount()
	return errRefused
}

// The next component's refusal of an expired trace is the answer of the request that brought
// it (its sender sends again), not a log line about lost spans.
func TestHeldRequestGetsNextError(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Wait = 30 * ms
	p, err := NewFactory().CreateTraces(t.Context(), processortest.NewNopSettings(metadata.Type), cfg, &refuser{})
	require.NoError(t, err)
	require.NoError(t, p.Start(t.Context(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, p.Shutdown(t.Context())) }()
	err = p.ConsumeTraces(t.Context(), serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2"))
	require.ErrorIs(t, err, errRefused)
}

// A sender that gives up (its timeout) gets an error, so that it keeps its spans and sends
// again; the held trace still goes on later. Shutdown passes on what waits and answers.
func TestCancelledRequestThenShutdown(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	sink := &refuser{}
	next := consumerFunc(func(_ context.Context, td ptrace.Traces) error {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		sink.spans += td.SpanCount()
		return nil
	})
	p, err := NewFactory().CreateTraces(t.Context(), processortest.NewNopSettings(metadata.Type), cfg, next)
	require.NoError(t, err)
	require.NoError(t, p.Start(t.Context(), componenttest.NewNopHost()))
	ctx, cancel := context.WithTimeout(t.Context(), 30*ms)
	defer cancel()
	err = p.ConsumeTraces(ctx, serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2"))
	require.ErrorIs(t, err, context.DeadlineExceeded)

	done := make(chan error, 1)
	go func() { done <- p.ConsumeTraces(t.Context(), serviceBatch(0x11, 0x21, "10.0.0.3", 40003, "10.0.0.2")) }()
	time.Sleep(30 * ms)
	require.NoError(t, p.Shutdown(t.Context()))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("a request waiting at shutdown was not answered by its flush")
	}
	assert.Equal(t, 8, sink.spans)
}

type consumerFunc func(context.Context, ptrace.Traces) error

func (f consumerFunc) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }
func (f consumerFunc) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	return f(ctx, td)
}
