package splunkhecexporter

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter/exportertest"

	"github.com/agenttrail/agenttrail/exporter/splunkhecexporter/internal/metadata"
)

// BenchmarkExportTraces exports 10,000 spans per call through the full component (no queue,
// no retry) to a local HEC stub that discards the body, and reports spans per second.
func BenchmarkExportTraces(b *testing.B) {
	const spansPerCall = 10_000
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"text":"Success","code":0}`)
	}))
	defer srv.Close()

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
			exp, err := NewFactory().CreateTraces(context.Background(), exportertest.NewNopSettings(metadata.Type), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err = exp.Start(context.Background(), componenttest.NewNopHost()); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = exp.Shutdown(context.Background()) }()
			td := makeTraces(spansPerCall)

			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := exp.ConsumeTraces(context.Background(), td); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(spansPerCall)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
		})
	}
}
