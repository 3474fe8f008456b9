package sentinelexporter

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/collector/exporter/exportertest"

	"github.com/agenttrail/agenttrail/exporter/sentinelexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit/exporterkittest"
)

// BenchmarkExportTraces exports 10,000 spans per call through the full component (real azlogs
// and azidentity SDKs, gzip, TLS; no queue, no retry) to a local ingestion stub that discards the
// body, and reports spans per second. Run with -cpu 1 for the single-core figure.
func BenchmarkExportTraces(b *testing.B) {
	const spansPerCall = 10_000
	entra := newFakeEntra(b)
	var rawBytes, requests atomic.Int64
	ing := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		rawBytes.Add(n)
		requests.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(ing.Close) // after the exporter's shutdown, which StartTraces registered later
	client := trustingClient(entra.srv, ing)
	b.Cleanup(client.CloseIdleConnections)

	env := &azureEnv{entra: entra, client: client}
	cfg := createDefaultConfig().(*Config)
	cfg.Endpoint = ing.URL
	cfg.DCRImmutableID = testDCR
	cfg.Auth = AuthConfig{Type: AuthClientSecret, TenantID: testTenant, ClientID: testClient, ClientSecret: testSecret, AuthorityHost: entra.srv.URL}
	cfg.QueueSettings = env.noQueue()
	cfg.BackOffConfig.Enabled = false

	exp := exporterkittest.StartTraces(b, env.factory(), cfg, exportertest.NewNopSettings(metadata.Type))
	exporterkittest.BenchmarkTraces(b, exp, makeTraces(spansPerCall))
	if n := requests.Load(); n > 0 {
		b.ReportMetric(float64(rawBytes.Load())/float64(n), "gzip-bytes/req")
	}
}

// BenchmarkEncodeSpanRows measures row encoding alone.
func BenchmarkEncodeSpanRows(b *testing.B) {
	td := makeTraces(10_000)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			rc := newResourceCtx(rs.Resource(), nil)
			ss := rs.ScopeSpans().At(0)
			for k := 0; k < ss.Spans().Len(); k++ {
				buf = appendSpanRow(buf[:0], &rc, ss.Scope(), ss.Spans().At(k))
			}
		}
	}
	b.ReportMetric(10_000*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
}
