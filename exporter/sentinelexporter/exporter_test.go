package sentinelexporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/agenttrail/agenttrail/exporter/sentinelexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit/exporterkittest"
)

func TestFindingsToRows(t *testing.T) {
	env := newAzureEnv(t)
	exp := env.startLogs(t, env.config(), exportertest.NewNopSettings(metadata.Type))

	require.NoError(t, exp.ConsumeLogs(context.Background(), makeFindings(2)))
	require.NoError(t, exp.ConsumeLogs(context.Background(), makeFindings(1)))

	rows := env.ingestion.streamRows(defaultStreamFindings)
	require.Len(t, rows, 3)
	assert.Empty(t, env.ingestion.streamRows(defaultStreamSpans))
	assert.Equal(t, 1, env.entra.tokenRequestCount(), "the token is cached across exports")

	row := rows[1]
	ocsf, ok := row["Ocsf"].(map[string]any)
	require.True(t, ok, "Ocsf is the whole OCSF object")
	assert.Equal(t, json.Number("2004"), ocsf["class_uid"])
	assert.Equal(t, "f-1", ocsf["finding_info"].(map[string]any)["uid"])
	delete(row, "Ocsf")
	assert.Equal(t, map[string]any{
		"TimeGenerated":   "2023-11-14T22:13:20.12345679Z",
		"FindingUid":      "f-1",
		"ClassUid":        json.Number("2004"),
		"Title":           "Prompt injection reached a staff-only tool",
		"Message":         "Prompt injection made the agent call a staff-only export tool",
		"Severity":        "High",
		"SeverityId":      json.Number("4"),
		"RuleIds":         []any{"AT-EXFIL-001", "AT-PI-003"},
		"AtlasTechniques": []any{"AML.T0051", "AML.T0051.001", "AML.T0025"},
		"TraceId":         "0a0b0100000000000000000000000000",
		"SpanId":          "0c01000000000000",
		"K8sNamespace":    "bank",
		"K8sPod":          "customer-agent-7d9f",
		"K8sDeployment":   "customer-agent",
		"ServiceAccount":  "customer-agent-sa",
		"ContainerId":     "4f9c2b1e8d7a6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170605f4e3",
		"ServiceName":     "customer-agent",
		"HostName":        "aks-nodepool1-0001",
		"ProcessPid":      json.Number("4242"),
		"Attributes":      map[string]any{"agenttrail.story.id": "story-1"},
		"ResourceAttributes": map[string]any{
			"service.name":            "customer-agent",
			"k8s.namespace.name":      "bank",
			"k8s.pod.name":            "customer-agent-7d9f",
			"k8s.deployment.name":     "customer-agent",
			"k8s.serviceaccount.name": "customer-agent-sa",
			"container.id":            "4f9c2b1e8d7a6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170605f4e3",
			"host.name":               "aks-nodepool1-0001",
			"process.pid":             json.Number("4242"),
		},
	}, row)

	env.entra.mu.Lock()
	form := env.entra.forms[0]
	env.entra.mu.Unlock()
	assert.Equal(t, "client_credentials", form["grant_type"])
	assert.Equal(t, testClient, form["client_id"])
	assert.Contains(t, strings.Fields(form["scope"]), "https://monitor.azure.com//.default")
}

func TestFindingFallbacks(t *testing.T) {
	env := newAzureEnv(t)
	exp := env.startRaw(t, env.config(), signalLogs, exportertest.NewNopSettings(metadata.Type))
	fixed := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now = func() time.Time { return fixed }
	t.Cleanup(func() { now = time.Now })

	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "resource-svc")
	rl.Resource().Attributes().PutStr("k8s.node.name", "node-9")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	// 0: observed time only, plain text body, severity text, rule id attribute.
	lr := lrs.AppendEmpty()
	lr.SetObservedTimestamp(pcommon.Timestamp(1_700_000_002_000_000_000))
	lr.SetSeverityText("WARN")
	lr.Body().SetStr("not JSON at all")
	lr.Attributes().PutStr("agenttrail.rule.id", "AT-R-9")
	lr.Attributes().PutStr("service.name", "record-svc")
	// 1: no timestamps, OCSF map body with its own time, container and pid.
	lr = lrs.AppendEmpty()
	m := lr.Body().SetEmptyMap()
	m.PutInt("class_uid", 2004)
	m.PutInt("time", 1_700_000_003_000)
	m.PutEmptyMap("finding_info").PutStr("desc", "described only")
	m.PutEmptyMap("container").PutStr("uid", "c0ffee")
	m.PutEmptyMap("actor").PutEmptyMap("process").PutInt("pid", 77)
	m.PutEmptyMap("device").PutStr("hostname", "ignored-because-resource-has-node")
	// 2: nothing at all: TimeGenerated is the export time; JSON body of unexpected types.
	lr = lrs.AppendEmpty()
	lr.Body().SetStr(`{"severity_id":"high","finding_info":{"title":"typed badly","uid":7}}`)
	// 3: empty body: dropped.
	lrs.AppendEmpty()

	require.NoError(t, exp.pushLogs(context.Background(), ld))
	rows := env.ingestion.streamRows(defaultStreamFindings)
	require.Len(t, rows, 3)

	assert.Equal(t, "2023-11-14T22:13:22Z", rows[0]["TimeGenerated"])
	assert.Equal(t, "not JSON at all", rows[0]["Message"])
	assert.Equal(t, "not JSON at all", rows[0]["Ocsf"], "a non-OCSF body is kept as a string")
	assert.Equal(t, "WARN", rows[0]["Severity"])
	assert.Equal(t, []any{"AT-R-9"}, rows[0]["RuleIds"])
	assert.Equal(t, "record-svc", rows[0]["ServiceName"], "record attributes win over resource attributes")
	assert.Equal(t, "node-9", rows[0]["HostName"])

	assert.Equal(t, "2023-11-14T22:13:23Z", rows[1]["TimeGenerated"], "OCSF time (ms) when the record has none")
	assert.Equal(t, "described only", rows[1]["Message"])
	assert.Equal(t, "c0ffee", rows[1]["ContainerId"])
	assert.Equal(t, json.Number("77"), rows[1]["ProcessPid"])
	assert.Equal(t, "resource-svc", rows[1]["ServiceName"])

	assert.Equal(t, "2026-03-01T12:00:00Z", rows[2]["TimeGenerated"])
	assert.Equal(t, "typed badly", rows[2]["Title"], "fields of the right type are kept")
	assert.NotContains(t, rows[2], "SeverityId")
	assert.NotContains(t, rows[2], "FindingUid")
}

func TestSpansToRows(t *testing.T) {
	env := newAzureEnv(t)
	exp := env.startTraces(t, env.config(), exportertest.NewNopSettings(metadata.Type))

	td := richTraces()

	require.NoError(t, exp.ConsumeTraces(context.Background(), td))
	rows := env.ingestion.streamRows(defaultStreamSpans)
	require.Len(t, rows, 1)
	assert.Equal(t, map[string]any{
		"TimeGenerated": "2023-11-14T22:13:20Z",
		"TraceId":       "0102030405060708090a0b0c0d0e0f10",
		"SpanId":        "0102030405060708",
		"ParentSpanId":  "0807060504030201",
		"Name":          "customer-data-export",
		"Kind":          "Internal",
		"StartTime":     "2023-11-14T22:13:20Z",
		"EndTime":       "2023-11-14T22:13:20.0125Z",
		"DurationMs":    json.Number("12.5"),
		"StatusCode":    "Error",
		"StatusMessage": "blocked by policy",
		"ServiceName":   "customer-agent",
		"ProcessPid":    json.Number("4343"),
		"ScopeName":     "ebpf",
		"Attributes": map[string]any{
			"agenttrail.arg.query": "SELECT * FROM customers",
			"process.pid":          json.Number("4343"),
			"ratio":                json.Number("0.25"),
			"nan":                  "NaN",
			"ok":                   true,
			"raw":                  "3q0=",
			"list":                 []any{"a\"b\n"},
		},
		"ResourceAttributes": map[string]any{"service.name": "customer-agent", "process.pid": json.Number("4242")},
		"Events": []any{map[string]any{
			"Name": "policy.violation", "Time": "2023-11-14T22:13:20.005Z",
			"Attributes": map[string]any{"rule": "EXFIL-001"},
		}},
		"Links": []any{map[string]any{
			"TraceId": "ff000000000000000000000000000000", "SpanId": "ee00000000000000", "TraceState": "vendor=1",
		}},
	}, rows[0])
}

// findThrottle reports whether err carries exporterhelper's throttle delay d.
func hasThrottle(err error, d time.Duration) bool {
	return strings.Contains(err.Error(), "Throttle ("+d.String()+")")
}

// throttle answers every request with HTTP 429, header set to value, and msg.
func (f *fakeIngestion) throttle(header, value, msg string) {
	f.intercept = func(w http.ResponseWriter, _ *http.Request, _ int, _ []map[string]any) bool {
		w.Header().Set(header, value)
		ingestionError(w, http.StatusTooManyRequests, "TooManyRequests", msg)
		return true
	}
}

// pushRaw exports n spans through a started raw traces exporter of env's config (no queue, no
// retry) and returns the export's error.
func (env *azureEnv) pushRaw(t *testing.T, n int) error {
	exp := env.startRaw(t, env.config(), signalTraces, exportertest.NewNopSettings(metadata.Type))
	return exp.pushTraces(context.Background(), makeTraces(n))
}

func Test429RetryAfterThrottles(t *testing.T) {
	t.Run("throttle error carries the delay", func(t *testing.T) {
		env := newAzureEnv(t)
		env.ingestion.throttle("Retry-After", "7", "Rate limit exceeded")
		err := env.pushRaw(t, 4)
		require.Error(t, err)
		assert.False(t, consumererror.IsPermanent(err))
		assert.True(t, hasThrottle(err, 7*time.Second), err.Error())
		assert.Contains(t, err.Error(), "HTTP 429")
		assert.Contains(t, err.Error(), "TooManyRequests: Rate limit exceeded")
		var te consumererror.Traces
		require.True(t, errors.As(err, &te), "the spans to retry travel with the error")
		assert.Equal(t, 4, te.Data().SpanCount())
		assert.Equal(t, 1, env.ingestion.requestCount(), "the SDK does not retry on its own")
	})
	t.Run("retry-after-ms header", func(t *testing.T) {
		env := newAzureEnv(t)
		env.ingestion.throttle("retry-after-ms", "1500", "slow down")
		err := env.pushRaw(t, 1)
		require.Error(t, err)
		assert.True(t, hasThrottle(err, 1500*time.Millisecond), err.Error())
	})
	t.Run("exporterhelper waits Retry-After then delivers once", func(t *testing.T) {
		env := newAzureEnv(t)
		var firstAt, secondAt atomic.Int64
		env.ingestion.intercept = func(w http.ResponseWriter, _ *http.Request, n int, _ []map[string]any) bool {
			if n == 1 {
				firstAt.Store(time.Now().UnixNano())
				w.Header().Set("Retry-After", "1")
				ingestionError(w, http.StatusTooManyRequests, "TooManyRequests", "Rate limit exceeded")
				return true
			}
			secondAt.CompareAndSwap(0, time.Now().UnixNano())
			return false
		}
		cfg := env.config()
		fastRetry(cfg)
		exp := env.startTraces(t, cfg, exportertest.NewNopSettings(metadata.Type))
		require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(20)))
		requireEachSpanOnce(t, env.ingestion.streamRows(defaultStreamSpans), 20)
		assert.Equal(t, 2, env.ingestion.requestCount())
		waited := time.Duration(secondAt.Load() - firstAt.Load())
		assert.GreaterOrEqual(t, waited, 900*time.Millisecond, "Retry-After: 1 honoured, not the 5ms backoff")
	})
}

func Test413SplitsAndRetries(t *testing.T) {
	env := newAzureEnv(t)
	var refused atomic.Int32
	env.ingestion.intercept = func(w http.ResponseWriter, _ *http.Request, _ int, rows []map[string]any) bool {
		if len(rows) > 100 {
			refused.Add(1)
			ingestionError(w, http.StatusRequestEntityTooLarge, "ContentLengthLimitExceeded", "Maximum allowed content length: 1048576 bytes (1 MB).")
			return true
		}
		return false
	}
	set, tel := exporterkittest.TelemetrySettings(t, metadata.Type)
	exp := env.startTraces(t, env.config(), set)

	require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(1000)))
	requireEachSpanOnce(t, env.ingestion.streamRows(defaultStreamSpans), 1000)
	// 1000 -> 2x500 -> 4x250 -> 8x125 -> 16 accepted halves of 62 or 63.
	assert.EqualValues(t, 1+2+4+8, refused.Load())
	assert.Len(t, env.ingestion.accepted(), 16)
	_, err := tel.GetMetric(droppedMetricName)
	assert.Error(t, err, "nothing dropped")
}

func Test413SingleRowIsDropped(t *testing.T) {
	env := newAzureEnv(t)
	env.ingestion.intercept = func(w http.ResponseWriter, _ *http.Request, _ int, rows []map[string]any) bool {
		for _, r := range rows {
			if r["SpanId"] == "5a00000000000002" {
				ingestionError(w, http.StatusRequestEntityTooLarge, "ContentLengthLimitExceeded", "too large")
				return true
			}
		}
		return false
	}
	set, tel := exporterkittest.TelemetrySettings(t, metadata.Type)
	core, logs := observer.New(zapcore.InfoLevel)
	set.Logger = zapNew(core)
	exp := env.startTraces(t, env.config(), set)

	require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(8)))
	rows := env.ingestion.streamRows(defaultStreamSpans)
	assert.Len(t, rows, 7)
	assertDropped(t, tel, map[string]int64{dropRejectedTooLarge: 1})
	entries := logs.FilterMessage("Dropped rows that the Logs Ingestion API cannot accept").All()
	require.Len(t, entries, 1)
	assert.Equal(t, dropRejectedTooLarge, entries[0].ContextMap()["reason"])
}

func assertDropped(t *testing.T, tel *componenttest.Telemetry, want map[string]int64) {
	t.Helper()
	assert.Equal(t, want, exporterkittest.CountsByReason(t, tel, droppedMetricName))
}

// errorLines returns the log entries at error level or above, each as one string, and fails if
// any entry (any level) contains the client secret.
func errorLines(t *testing.T, logs *observer.ObservedLogs) []string {
	t.Helper()
	var lines []string
	for _, e := range logs.All() {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		require.NotContains(t, line, testSecret, "the client secret is never logged")
		if e.Level >= zapcore.ErrorLevel {
			lines = append(lines, line)
		}
	}
	return lines
}

func Test401IsPermanentAndLoggedOnce(t *testing.T) {
	env := newAzureEnv(t)
	env.ingestion.intercept = func(w http.ResponseWriter, _ *http.Request, _ int, _ []map[string]any) bool {
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"`)
		ingestionError(w, http.StatusUnauthorized, "InvalidToken", "The access token is invalid for audience.")
		return true
	}
	cfg := env.config()
	fastRetry(cfg) // retry enabled: a permanent error must still not be retried
	set, logs := observedSettings(zapcore.DebugLevel)
	exp := env.startTraces(t, cfg, set)

	err := exp.ConsumeTraces(context.Background(), makeTraces(20))
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err))
	assert.Contains(t, err.Error(), "HTTP 401")
	assert.Contains(t, err.Error(), "InvalidToken")
	assert.Contains(t, err.Error(), testTenant)
	assert.Contains(t, err.Error(), testClient)
	assert.NotContains(t, err.Error(), testSecret)
	assert.NotContains(t, err.Error(), "\n", "one line")
	assert.Equal(t, 1, env.ingestion.requestCount(), "not retried")

	lines := errorLines(t, logs)
	require.Len(t, lines, 1, "exactly one error log line: %v", lines)
	assert.Contains(t, lines[0], "401")
	assert.Contains(t, lines[0], testClient)
}

func Test403NamesTheRole(t *testing.T) {
	env := newAzureEnv(t)
	env.ingestion.intercept = func(w http.ResponseWriter, _ *http.Request, _ int, _ []map[string]any) bool {
		ingestionError(w, http.StatusForbidden, "OperationFailed", "The authentication token provided does not have access to ingest data for the data collection rule with immutable Id '"+testDCR+"'.")
		return true
	}
	exp := env.startRaw(t, env.config(), signalLogs, exportertest.NewNopSettings(metadata.Type))
	err := exp.pushLogs(context.Background(), makeFindings(1))
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err))
	assert.Contains(t, err.Error(), "HTTP 403 Forbidden: OperationFailed")
	assert.Contains(t, err.Error(), `"Monitoring Metrics Publisher"`)
	assert.Contains(t, err.Error(), testClient)
}

func TestTokenEndpointInvalidClient(t *testing.T) {
	env := newAzureEnv(t)
	env.entra.accept = func(map[string]string) (int, string) {
		return http.StatusBadRequest, entraError("invalid_client",
			"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.")
	}
	cfg := env.config()
	fastRetry(cfg)
	set, logs := observedSettings(zapcore.DebugLevel)
	exp := env.startLogs(t, cfg, set)

	err := exp.ConsumeLogs(context.Background(), makeFindings(3))
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err))
	msg := err.Error()
	assert.Contains(t, msg, "HTTP 400 Bad Request: invalid_client: AADSTS7000215: Invalid client secret provided.")
	assert.Contains(t, msg, testTenant)
	assert.Contains(t, msg, testClient)
	assert.Contains(t, msg, env.entra.srv.URL, "names the authority asked")
	assert.NotContains(t, msg, testSecret)
	assert.NotContains(t, msg, "Trace ID", "only the first line of error_description")
	assert.NotContains(t, msg, "\n")
	assert.Equal(t, 0, env.ingestion.requestCount(), "nothing sent without a token")
	assert.Equal(t, 1, env.entra.tokenRequestCount(), "not retried")
	lines := errorLines(t, logs)
	require.Len(t, lines, 1, "exactly one error log line: %v", lines)
	assert.Contains(t, lines[0], "invalid_client")

	// A second export in the hold window fails at once, without asking Entra ID again.
	err = exp.ConsumeLogs(context.Background(), makeFindings(1))
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err))
	assert.Contains(t, err.Error(), "token request not repeated before")
	assert.Equal(t, 1, env.entra.tokenRequestCount())
}

func TestTokenEndpointServerErrorIsRetryable(t *testing.T) {
	env := newAzureEnv(t)
	var calls atomic.Int32
	env.entra.accept = func(map[string]string) (int, string) {
		if calls.Add(1) == 1 {
			return http.StatusServiceUnavailable, entraError("temporarily_unavailable", "AADSTS90033: A transient error has occurred.")
		}
		return http.StatusOK, ""
	}
	cfg := env.config()
	fastRetry(cfg)
	exp := env.startTraces(t, cfg, exportertest.NewNopSettings(metadata.Type))
	require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(5)))
	requireEachSpanOnce(t, env.ingestion.streamRows(defaultStreamSpans), 5)
	assert.Equal(t, 2, env.entra.tokenRequestCount())
}

const nginx502 = `<html>
<head><title>502 Bad Gateway</title><style>body { color: red }</style></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx/1.25.3</center>
<script>var token = "x";</script>
</body>
</html>`

func TestHTMLBadGatewayIsRetryableWithExcerpt(t *testing.T) {
	t.Run("error", func(t *testing.T) {
		env := newAzureEnv(t)
		env.ingestion.intercept = func(w http.ResponseWriter, _ *http.Request, _ int, _ []map[string]any) bool {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte(nginx502))
			return true
		}
		err := env.pushRaw(t, 3)
		require.Error(t, err)
		assert.False(t, consumererror.IsPermanent(err))
		msg := err.Error()
		assert.Contains(t, msg, "HTTP 502 Bad Gateway")
		assert.Contains(t, msg, `HTML response, not the Logs Ingestion API`)
		assert.Contains(t, msg, `"502 Bad Gateway 502 Bad Gateway nginx/1.25.3"`)
		assert.NotContains(t, msg, "<html>")
		assert.NotContains(t, msg, "color: red")
		assert.NotContains(t, msg, "var token")
		assert.NotContains(t, msg, "\n")
	})
	t.Run("retried through exporterhelper", func(t *testing.T) {
		env := newAzureEnv(t)
		env.ingestion.intercept = func(w http.ResponseWriter, _ *http.Request, n int, _ []map[string]any) bool {
			if n > 1 {
				return false
			}
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte(nginx502))
			return true
		}
		cfg := env.config()
		fastRetry(cfg)
		exp := env.startTraces(t, cfg, exportertest.NewNopSettings(metadata.Type))
		require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(30)))
		requireEachSpanOnce(t, env.ingestion.streamRows(defaultStreamSpans), 30)
	})
}

func TestOtherStatuses(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		ctype     string
		permanent bool
		want      string
	}{
		{"400 invalid stream", http.StatusBadRequest, `{"error":{"code":"InvalidStream","message":"Stream Custom-X is not defined in the DCR."}}`, "application/json", true, "HTTP 400 Bad Request: InvalidStream: Stream Custom-X is not defined in the DCR."},
		{"404 unknown rule", http.StatusNotFound, `{"error":{"code":"NotFound","message":"Data collection rule not found."}}`, "application/json", true, "NotFound: Data collection rule not found."},
		{"200 HTML page: wrong endpoint", http.StatusOK, "<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>", "text/html", true, `check that "endpoint" is the logs ingestion endpoint`},
		{"500 plain text", http.StatusInternalServerError, "upstream connect error\nor disconnect", "text/plain", false, `non-JSON response: "upstream connect error or disconnect"`},
		{"503 without Retry-After", http.StatusServiceUnavailable, `{"error":{"code":"ServiceUnavailable","message":"try later"}}`, "application/json", false, "ServiceUnavailable: try later"},
		{"empty body", http.StatusBadRequest, "", "", true, "empty response body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newAzureEnv(t)
			env.ingestion.intercept = func(w http.ResponseWriter, _ *http.Request, _ int, _ []map[string]any) bool {
				if tt.ctype != "" {
					w.Header().Set("Content-Type", tt.ctype)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
				return true
			}
			err := env.pushRaw(t, 2)
			require.Error(t, err)
			assert.Equal(t, tt.permanent, consumererror.IsPermanent(err), err.Error())
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestUnreachableEndpointIsRetryable(t *testing.T) {
	env := newAzureEnv(t)
	cfg := env.config()
	dead := newFakeIngestion(t)
	cfg.Endpoint = dead.srv.URL
	dead.srv.Close()
	exp := env.startRaw(t, cfg, signalTraces, exportertest.NewNopSettings(metadata.Type))
	err := exp.pushTraces(context.Background(), makeTraces(2))
	require.Error(t, err)
	assert.False(t, consumererror.IsPermanent(err))
	assert.Contains(t, err.Error(), "[retryable]")
	assert.NotContains(t, err.Error(), "\n")
}

func TestOversizeRowDroppedAndCounted(t *testing.T) {
	env := newAzureEnv(t)
	cfg := env.config()
	cfg.MaxBatchBytes = 4096
	set, tel := exporterkittest.TelemetrySettings(t, metadata.Type)
	core, logs := observer.New(zapcore.InfoLevel)
	set.Logger = zapNew(core)
	exp := env.startTraces(t, cfg, set)

	td := makeTraces(10)
	big := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(2)
	const marker = "SECRET-PROMPT-CONTENT"
	big.Attributes().PutStr("gen_ai.prompt", marker+strings.Repeat("A", 10_000))

	require.NoError(t, exp.ConsumeTraces(context.Background(), td), "the other spans are delivered")
	rows := env.ingestion.streamRows(defaultStreamSpans)
	assert.Len(t, rows, 9)
	for _, r := range rows {
		assert.NotEqual(t, "5a00000000000004", r["SpanId"])
	}
	assertDropped(t, tel, map[string]int64{dropRowTooLarge: 1})
	entries := logs.FilterMessage("Dropped rows that the Logs Ingestion API cannot accept").All()
	require.Len(t, entries, 1)
	assert.Equal(t, zapcore.ErrorLevel, entries[0].Level)
	fields := entries[0].ContextMap()
	assert.Equal(t, dropRowTooLarge, fields["reason"])
	assert.EqualValues(t, 1, fields["dropped_rows"])
	assert.EqualValues(t, 4096, fields["max_batch_bytes"])
	assert.Greater(t, fields["largest_row_bytes"], int64(10_000))
	for _, e := range logs.All() {
		assert.NotContains(t, e.Message+fmt.Sprint(e.ContextMap()), marker, "content is never logged")
	}
}

func TestEmptyFindingDropped(t *testing.T) {
	env := newAzureEnv(t)
	set, tel := exporterkittest.TelemetrySettings(t, metadata.Type)
	exp := env.startLogs(t, env.config(), set)
	ld := makeFindings(2)
	ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().AppendEmpty().Body().SetStr("   ")
	require.NoError(t, exp.ConsumeLogs(context.Background(), ld))
	assert.Len(t, env.ingestion.streamRows(defaultStreamFindings), 2)
	assertDropped(t, tel, map[string]int64{dropEmptyBody: 1})
}

func TestBatching5000Spans(t *testing.T) {
	env := newAzureEnv(t)
	cfg := env.config()
	exp := env.startTraces(t, cfg, exportertest.NewNopSettings(metadata.Type))

	td := makeTraces(5000)
	// ~1 KiB per row: 5000 rows need several requests.
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		spans := td.ResourceSpans().At(i).ScopeSpans().At(0).Spans()
		for k := 0; k < spans.Len(); k++ {
			spans.At(k).Attributes().PutStr("agenttrail.arg.text", strings.Repeat("x", 400+k%300))
		}
	}
	require.NoError(t, exp.ConsumeTraces(context.Background(), td))
	requireEachSpanOnce(t, env.ingestion.streamRows(defaultStreamSpans), 5000)
	reqs := env.ingestion.accepted()
	require.Greater(t, len(reqs), 3, "several requests")
	total := 0
	for _, r := range reqs {
		assert.LessOrEqual(t, r.rawLen, cfg.MaxBatchBytes)
		assert.Less(t, r.wireLen, r.rawLen/3, "gzip")
		total += r.rows
	}
	assert.Equal(t, 5000, total)
	// Batches are filled: all but the last are close to the limit.
	for _, r := range reqs[:len(reqs)-1] {
		assert.Greater(t, r.rawLen, cfg.MaxBatchBytes-2_000)
	}
}

func TestFailedBatchResendsOnlyTheRest(t *testing.T) {
	env := newAzureEnv(t)
	env.ingestion.intercept = func(w http.ResponseWriter, _ *http.Request, n int, _ []map[string]any) bool {
		if n == 2 { // the second batch fails once
			ingestionError(w, http.StatusInternalServerError, "InternalServerError", "oops")
			return true
		}
		return false
	}
	cfg := env.config()
	cfg.MaxBatchBytes = 8192
	fastRetry(cfg)
	exp := env.startTraces(t, cfg, exportertest.NewNopSettings(metadata.Type))
	require.NoError(t, exp.ConsumeTraces(context.Background(), makeTraces(200)))
	requireEachSpanOnce(t, env.ingestion.streamRows(defaultStreamSpans), 200)
}

func TestQueuedExport(t *testing.T) {
	env := newAzureEnv(t)
	cfg := createDefaultConfig().(*Config)
	base := env.config()
	cfg.Endpoint, cfg.DCRImmutableID, cfg.Auth = base.Endpoint, base.DCRImmutableID, base.Auth
	fastRetry(cfg)
	exp, err := env.factory().CreateLogs(context.Background(), exportertest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	for i := 0; i < 5; i++ {
		require.NoError(t, exp.ConsumeLogs(context.Background(), makeFindings(4)))
	}
	require.NoError(t, exp.Shutdown(context.Background()), "shutdown drains the queue")
	require.NoError(t, exp.Shutdown(context.Background()), "and is idempotent")
	assert.Len(t, env.ingestion.streamRows(defaultStreamFindings), 20)
}

func TestWorkloadIdentity(t *testing.T) {
	const saToken = "eyJhbGciOiJSUzI1NiJ9.kubernetes-projected-token.sig"
	dir := t.TempDir()
	file := filepath.Join(dir, "azure-identity-token")
	require.NoError(t, os.WriteFile(file, []byte(saToken), 0o600))

	env := newAzureEnv(t)
	env.entra.accept = func(form map[string]string) (int, string) {
		if form["client_assertion"] != saToken ||
			form["client_assertion_type"] != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" ||
			form["client_id"] != testClient {
			return http.StatusUnauthorized, entraError("invalid_client", "AADSTS700211: No matching federated identity record found.")
		}
		return http.StatusOK, ""
	}
	t.Run("explicit settings", func(t *testing.T) {
		cfg := env.config()
		cfg.Auth = AuthConfig{Type: AuthWorkloadIdentity, TenantID: testTenant, ClientID: testClient, TokenFile: file, AuthorityHost: env.entra.srv.URL}
		exp := env.startRaw(t, cfg, signalLogs, exportertest.NewNopSettings(metadata.Type))
		require.NoError(t, exp.pushLogs(context.Background(), makeFindings(2)))
		assert.Len(t, env.ingestion.streamRows(defaultStreamFindings), 2)
	})
	t.Run("settings from the webhook's environment", func(t *testing.T) {
		t.Setenv(envFederatedTokenFile, file)
		t.Setenv(envTenantID, testTenant)
		t.Setenv(envClientID, testClient)
		cfg := env.config()
		cfg.Auth = AuthConfig{Type: AuthWorkloadIdentity, AuthorityHost: env.entra.srv.URL}
		exp := env.startRaw(t, cfg, signalTraces, exportertest.NewNopSettings(metadata.Type))
		require.NoError(t, exp.pushTraces(context.Background(), makeTraces(3)))
		assert.Contains(t, exp.identity, file)
	})
	t.Run("missing settings fail Start clearly", func(t *testing.T) {
		t.Setenv(envFederatedTokenFile, "")
		t.Setenv(envTenantID, testTenant)
		t.Setenv(envClientID, testClient)
		cfg := env.config()
		cfg.Auth = AuthConfig{Type: AuthWorkloadIdentity}
		exp, err := newExporter(exportertest.NewNopSettings(metadata.Type), cfg, signalTraces, factoryOptions{transport: env.client})
		require.NoError(t, err)
		err = exp.start(context.Background(), componenttest.NewNopHost())
		require.ErrorContains(t, err, `"auth.token_file" is empty and AZURE_FEDERATED_TOKEN_FILE is not set`)

		cfg.Auth.TokenFile = filepath.Join(dir, "missing")
		err = exp.start(context.Background(), componenttest.NewNopHost())
		require.ErrorContains(t, err, "service account token file")
	})
}

func TestNotStarted(t *testing.T) {
	env := newAzureEnv(t)
	exp, err := newExporter(exportertest.NewNopSettings(metadata.Type), env.config(), signalTraces, factoryOptions{})
	require.NoError(t, err)
	err = exp.pushTraces(context.Background(), makeTraces(1))
	assert.True(t, consumererror.IsPermanent(err))
	assert.ErrorContains(t, exp.pushLogs(context.Background(), makeFindings(1)), "not started")
}
