package ebpfreceiver

import (
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
)

// TestRecordTLS: what the TLS tracker's bounds cut reaches agenttrail.ebpf.tls.limited by
// reason, as the growth since the last report.
func TestRecordTLS(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	tm, err := newTelemetry(tel.NewTelemetrySettings())
	if err != nil {
		t.Fatal(err)
	}
	tm.recordTLS(t.Context(), llm.Stats{}, llm.Stats{BodiesCut: 2, ConnectionsEvicted: 1})
	tm.recordTLS(t.Context(), llm.Stats{BodiesCut: 2, ConnectionsEvicted: 1}, llm.Stats{BodiesCut: 5, ConnectionsEvicted: 1, RequestsGivenUp: 4,
		ConnectionsCut: 1, BodiesOverBuffer: 3, DecodedCut: 1, HeadersCut: 2, StreamsGivenUp: 6})
	m, err := tel.GetMetric("agenttrail.ebpf.tls.limited")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		r, _ := dp.Attributes.Value("reason")
		got[r.AsString()] += dp.Value
	}
	want := map[string]int64{"total_buffer": 6, "connection_limit": 1, "pending_requests": 4,
		"connection_buffer": 3, "decompressed_size": 1, "header_size": 2, "http2_streams": 6}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}
