package splunkhecexporter

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/agenttrail/agenttrail/exporter/splunkhecexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/componenttestkit"
	"github.com/agenttrail/agenttrail/internal/exporterkit"
)

// droppedTotal sums agenttrail.splunk_hec.events.dropped by reason.
func droppedTotal(t *testing.T, tel *componenttest.Telemetry) map[string]int64 {
	t.Helper()
	return componenttestkit.Int64Sums(t, tel, droppedMetricName, "reason")
}

// sampledSettings is a logger like the collector's default: sampled (10 entries per message and
// tick, then 1 in 100), over an observer.
func sampledSettings(t *testing.T) (*componenttest.Telemetry, *observer.ObservedLogs, func() exportertestSettings) {
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	core, logs := observer.New(zapcore.InfoLevel)
	sampled := zapcore.NewSamplerWithOptions(core, 10*time.Second, 10, 100)
	return tel, logs, func() exportertestSettings {
		set := exportertest.NewNopSettings(metadata.Type)
		set.ID = component.NewID(metadata.Type) // the same queue after a "restart"
		set.TelemetrySettings = tel.NewTelemetrySettings()
		set.Logger = zap.New(sampled).With(zap.String("otelcol.component.id", "splunk_hec"))
		return set
	}
}

type exportertestSettings = exporter.Settings

// TestRejectionsLoggedEqualMetric: 250 requests of 22 spans rejected with HTTP 400 through the
// exporterhelper queue, with the collector's default log sampling. Every rejection is counted
// (reason "rejected"); each "Dropping data" line is written (none sampled away); the summary
// line's totals equal the metric.
func TestRejectionsLoggedEqualMetric(t *testing.T) {
	const requests, spans = 250, 22
	hec := newFakeHEC(t, testToken)
	hec.answerAll(http.StatusBadRequest, "Invalid data format", 6)
	tel, logs, settings := sampledSettings(t)
	cfg := testConfig(hec.endpoint())
	qc := exporterhelper.NewDefaultQueueConfig()
	qc.NumConsumers = 4
	cfg.QueueSettings = configoptional.Some(qc)
	exp := startOnHost(t, settings(), cfg, componenttest.NewNopHost())
	for i := 0; i < requests; i++ {
		require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(spans)))
	}
	require.Eventually(t, func() bool { return droppedTotal(t, tel)[exporterkit.ReasonRejected] == requests*spans },
		10*time.Second, 10*time.Millisecond)
	require.NoError(t, exp.Shutdown(context.Background()))

	assert.Equal(t, map[string]int64{exporterkit.ReasonRejected: requests * spans}, droppedTotal(t, tel))
	dropping := logs.FilterMessageSnippet("Exporting failed. Dropping data.").All()
	assert.Len(t, dropping, requests, "one line per rejected request, none sampled away")
	var logged int64
	for _, e := range dropping {
		logged += e.ContextMap()["dropped_items"].(int64)
		assert.Equal(t, exporterkit.ReasonRejected, e.ContextMap()["reason"])
	}
	assert.EqualValues(t, requests*spans, logged)
	summaries := logs.FilterMessageSnippet("Drop summary of exporter splunk_hec").All()
	require.NotEmpty(t, summaries)
	last := summaries[len(summaries)-1].ContextMap()
	assert.EqualValues(t, requests*spans, last["dropped_since_start"], "the summary agrees with the metric")
	assert.Equal(t, "traces", last["signal"])
}

// TestPartialRejectionCountsOnlyUndelivered: the first request of a batch is accepted, the
// second rejected: the line and the metric count only the events not delivered.
func TestPartialRejectionCountsOnlyUndelivered(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	hec.intercept = func(w http.ResponseWriter, _ *http.Request, n int) bool {
		if n == 1 {
			return false
		}
		hecReply(w, http.StatusBadRequest, "Invalid data format", 6)
		return true
	}
	tel, logs, settings := sampledSettings(t)
	cfg := testConfig(hec.endpoint())
	cfg.MaxContentLengthTraces = 4096
	exp := startOnHost(t, settings(), cfg, componenttest.NewNopHost())
	const spans = 100
	require.Error(t, exp.ConsumeTraces(context.Background(), makeTraces(spans)))
	require.NoError(t, exp.Shutdown(context.Background()))
	delivered := len(hec.recordedEvents())
	require.Positive(t, delivered)
	assert.Equal(t, map[string]int64{exporterkit.ReasonRejected: int64(spans - delivered)}, droppedTotal(t, tel))
	lines := logs.FilterMessageSnippet("Exporting failed. Rejecting data.").All()
	require.Len(t, lines, 1)
	assert.EqualValues(t, spans-delivered, lines[0].ContextMap()["rejected_items"])
	assert.EqualValues(t, spans, lines[0].ContextMap()["request_items"])
}

// memStorage is a storage extension in memory that outlives the exporters using it: a
// "restart" is a new exporter on the same storage.
type memStorage struct {
	mu   sync.Mutex
	data map[string][]byte
}

func (m *memStorage) Start(context.Context, component.Host) error { return nil }
func (m *memStorage) Shutdown(context.Context) error              { return nil }
func (m *memStorage) GetClient(_ context.Context, _ component.Kind, id component.ID, name string) (storage.Client, error) {
	return &memClient{m: m, prefix: id.String() + "/" + name + "/"}, nil
}

type memClient struct {
	m      *memStorage
	prefix string
}

func (c *memClient) Get(ctx context.Context, key string) ([]byte, error) {
	op := storage.GetOperation(key)
	err := c.Batch(ctx, op)
	return op.Value, err
}
func (c *memClient) Set(ctx context.Context, key string, v []byte) error {
	return c.Batch(ctx, storage.SetOperation(key, v))
}
func (c *memClient) Delete(ctx context.Context, key string) error {
	return c.Batch(ctx, storage.DeleteOperation(key))
}
func (c *memClient) Close(context.Context) error { return nil }
func (c *memClient) Batch(_ context.Context, ops ...*storage.Operation) error {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for _, op := range ops {
		switch op.Type {
		case storage.Get:
			if v, ok := c.m.data[c.prefix+op.Key]; ok {
				op.Value = append([]byte(nil), v...)
			} else {
				op.Value = nil
			}
		case storage.Set:
			c.m.data[c.prefix+op.Key] = append([]byte(nil), op.Value...)
		case storage.Delete:
			delete(c.m.data, c.prefix+op.Key)
		}
	}
	return nil
}

type storageHost struct {
	ext map[component.ID]component.Component
}

func (h storageHost) GetExtensions() map[component.ID]component.Component { return h.ext }

// answerAll makes the fake HEC answer every request with status and HEC's text and code.
func (h *fakeHEC) answerAll(status int, text string, code int) {
	h.intercept = func(w http.ResponseWriter, _ *http.Request, _ int) bool {
		hecReply(w, status, text, code)
		return true
	}
}

// persistentQueue puts cfg's queue on a new memStorage and returns the host that holds it: the
// exporters started on that host share the storage, as one collector's restarts do.
func persistentQueue(cfg *Config) component.Host {
	storageID := component.MustNewID("file_storage")
	qc := exporterhelper.NewDefaultQueueConfig()
	qc.StorageID = &storageID
	cfg.QueueSettings = configoptional.Some(qc)
	return storageHost{ext: map[component.ID]component.Component{storageID: &memStorage{data: map[string][]byte{}}}}
}

// startOnHost creates the traces exporter of cfg and starts it on host; the test shuts it down
// where it needs to (a restart is a shutdown, then a new exporter on the same host).
func startOnHost(t *testing.T, set exporter.Settings, cfg *Config, host component.Host) exporter.Traces {
	t.Helper()
	exp, err := NewFactory().CreateTraces(context.Background(), set, cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), host))
	return exp
}

// TestShutdownKeepsPersistentQueue: HEC is down; a shutdown interrupts the retries of a request
// the persistent queue keeps. The line says it is kept (not "Dropping data"), nothing is
// counted as dropped, and the next exporter on the same storage delivers every span.
func TestShutdownKeepsPersistentQueue(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	var down atomic.Bool
	down.Store(true)
	hec.intercept = func(w http.ResponseWriter, _ *http.Request, _ int) bool {
		if down.Load() {
			hecReply(w, http.StatusServiceUnavailable, "Server is busy", 9)
			return true
		}
		return false
	}
	tel, logs, settings := sampledSettings(t)
	cfg := testConfig(hec.endpoint())
	fastRetry(cfg)
	cfg.BackOffConfig.MaxElapsedTime = 0
	host := persistentQueue(cfg)

	exp := startOnHost(t, settings(), cfg, host)
	require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(30)))
	require.Eventually(t, func() bool { return hec.eventRequestCount() >= 3 }, 5*time.Second, 5*time.Millisecond, "retrying")
	require.NoError(t, exp.Shutdown(context.Background()))

	assert.Empty(t, logs.FilterMessageSnippet("Dropping data").All(), "nothing is dropped")
	kept := logs.FilterMessageSnippet("kept in the persistent queue").All()
	require.Len(t, kept, 1)
	assert.EqualValues(t, 30, kept[0].ContextMap()["kept_items"])
	assert.Empty(t, droppedTotal(t, tel))
	summaries := logs.FilterMessageSnippet("Drop summary of exporter").All()
	require.NotEmpty(t, summaries)
	last := summaries[len(summaries)-1].ContextMap()
	assert.EqualValues(t, 0, last["dropped_since_start"])
	assert.EqualValues(t, 30, last["kept_in_persistent_queue_at_shutdown"])

	down.Store(false)
	exp2 := startOnHost(t, settings(), cfg, host)
	require.Eventually(t, func() bool { return len(hec.recordedEvents()) >= 30 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, exp2.Shutdown(context.Background()))
	requireEachSpanOnce(t, hec.recordedEvents(), 30)
}

// TestShutdownLosesMemoryQueueCounted: the same with the in-memory queue: a shutdown drains the
// queue with one attempt per request; every request the dead backend refuses is lost, and each
// says so and is counted as "shutdown", none sampled away.
func TestShutdownLosesMemoryQueueCounted(t *testing.T) {
	const requests, spans = 50, 30
	hec := newFakeHEC(t, testToken)
	hec.answerAll(http.StatusServiceUnavailable, "Server is busy", 9)
	tel, logs, settings := sampledSettings(t)
	cfg := testConfig(hec.endpoint())
	fastRetry(cfg)
	cfg.BackOffConfig.MaxElapsedTime = 0
	qc := exporterhelper.NewDefaultQueueConfig()
	qc.NumConsumers = 1
	cfg.QueueSettings = configoptional.Some(qc)
	exp := startOnHost(t, settings(), cfg, componenttest.NewNopHost())
	for i := 0; i < requests; i++ {
		require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(spans)))
	}
	require.Eventually(t, func() bool { return hec.eventRequestCount() >= 3 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, exp.Shutdown(context.Background()))
	lost := logs.FilterMessageSnippet("the data is lost").All()
	require.Len(t, lost, requests, "one line per request lost, none sampled away")
	assert.True(t, strings.Contains(lost[0].Message, "in-memory queue"))
	assert.Equal(t, map[string]int64{exporterkit.ReasonShutdown: requests * spans}, droppedTotal(t, tel))
	summaries := logs.FilterMessageSnippet("Drop summary of exporter").All()
	require.NotEmpty(t, summaries)
	assert.EqualValues(t, requests*spans, summaries[len(summaries)-1].ContextMap()["dropped_since_start"])
}

// TestAckLostThroughRestart: HEC accepts the first request but loses it before indexing (its
// ackId never reads true). The collector is restarted while the exporter waits for that ack:
// the request stays in the persistent queue, the next exporter sends it again, and every span
// is indexed once.
func TestAckLostThroughRestart(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	hec.useAck = true
	hec.neverAck = map[int64]bool{0: true}
	tel, logs, settings := sampledSettings(t)
	cfg := testConfig(hec.endpoint())
	fastRetry(cfg)
	cfg.BackOffConfig.MaxElapsedTime = 0
	cfg.Ack = AckConfig{Enabled: true, PollInterval: 10 * time.Millisecond, Timeout: 300 * time.Millisecond}
	host := persistentQueue(cfg)

	exp := startOnHost(t, settings(), cfg, host)
	require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(30)))
	require.Eventually(t, func() bool { return hec.ackPollCount() >= 2 }, 5*time.Second, 5*time.Millisecond, "waiting for the lost ack")
	require.NoError(t, exp.Shutdown(context.Background()))
	require.Len(t, logs.FilterMessageSnippet("kept in the persistent queue").All(), 1)
	require.Equal(t, 1, hec.eventRequestCount(), "nothing acknowledged yet, nothing re-sent before the restart")

	exp2 := startOnHost(t, settings(), cfg, host)
	require.Eventually(t, func() bool { return hec.eventRequestCount() >= 2 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		return len(logs.FilterMessageSnippet("Drop summary").All()) == 1 && hec.ackPollCount() >= 3
	}, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, exp2.Shutdown(context.Background()))

	reqs := hec.recordedRequests()
	require.Len(t, reqs, 2, "the lost request is sent again once, after the restart")
	events := hec.recordedEvents()
	requireEachSpanOnce(t, events[reqs[0].events:], 30) // indexed: the second request's events
	assert.Empty(t, droppedTotal(t, tel))
	assert.NotEqual(t, reqs[0].channel, reqs[1].channel, "a new channel after the restart")
}
