package splunkhecexporter

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/collector/exporter/exportertest"

	"github.com/agenttrail/agenttrail/exporter/splunkhecexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit/exporterkittest"
)

// BenchmarkExportTraces exports 10,000 spans per call through the full component (no queue,
// no retry) to a local HEC stub that discards the body, and reports spans per second.
func BenchmarkExportTraces(b *testing.B) {
	const spansPerCall = 10_000
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"text":"Success","code":0}`)
	}))
	b.Cleanup(srv.Close) // after the exporters' shutdowns, which StartTraces registered later

	for _, bc := range []struct {
		name               string
		disableCompression bool
	}{
		{"gzip", false},
		{"uncompressed", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testConfig(srv.URL + "/services/collector")
			cfg.DisableCompression = bc.disableCompression
			exp := exporterkittest.StartTraces(b, NewFactory(), cfg, exportertest.NewNopSettings(metadata.Type))
			exporterkittest.BenchmarkTraces(b, exp, makeTraces(spansPerCall))
		})
	}
}
