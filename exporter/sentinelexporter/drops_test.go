package sentinelexporter

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/agenttrail/agenttrail/exporter/sentinelexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit"
)

// TestRejectionsLoggedEqualMetric: 120 requests of 15 spans answered 400 through the
// exporterhelper queue, with the collector's default log sampling: every rejection is counted
// on agenttrail.sentinel.rows.dropped (reason "rejected"), every "Dropping data" line is
// written, and the shutdown summary's total equals the metric.
func TestRejectionsLoggedEqualMetric(t *testing.T) {
	const requests, spans = 120, 15
	env := newAzureEnv(t)
	env.ingestion.intercept = func(w http.ResponseWriter, _ *http.Request, _ int, _ []map[string]any) bool {
		ingestionError(w, http.StatusBadRequest, "InvalidPayload", "bad row")
		return true
	}
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	core, logs := observer.New(zapcore.InfoLevel)
	set := exportertest.NewNopSettings(metadata.Type)
	set.ID = component.NewID(metadata.Type)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	set.Logger = zap.New(zapcore.NewSamplerWithOptions(core, 10*time.Second, 10, 100))
	cfg := env.config()
	qc := exporterhelper.NewDefaultQueueConfig()
	qc.NumConsumers = 2
	cfg.QueueSettings = configoptional.Some(qc)
	exp, err := env.factory().CreateTraces(context.Background(), set, cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	for i := 0; i < requests; i++ {
		require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(spans)))
	}
	require.Eventually(t, func() bool {
		return len(logs.FilterMessageSnippet("Exporting failed. Dropping data.").All()) == requests
	}, 10*time.Second, 10*time.Millisecond, "one line per rejected request, none sampled away")
	require.NoError(t, exp.Shutdown(context.Background()))

	assertDropped(t, tel, map[string]int64{exporterkit.ReasonRejected: requests * spans})
	summaries := logs.FilterMessageSnippet("Drop summary of exporter sentinel (traces)").All()
	require.Len(t, summaries, 1, "the shutdown summary (nothing else within the minute)")
	assert.EqualValues(t, requests*spans, summaries[0].ContextMap()["dropped_since_start"])
	assert.Equal(t, "rejected=1800", summaries[0].ContextMap()["dropped_by_reason"])
}
