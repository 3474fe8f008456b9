package sentinelexporter

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/agenttrail/agenttrail/exporter/sentinelexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit/exporterkittest"
)

// azureEnv is a fake Entra ID and a fake Logs Ingestion endpoint with a client trusting both.
type azureEnv struct {
	entra     *fakeEntra
	ingestion *fakeIngestion
	client    *http.Client
}

func newAzureEnv(t *testing.T) *azureEnv {
	entra := newFakeEntra(t)
	ing := newFakeIngestion(t)
	env := &azureEnv{entra: entra, ingestion: ing, client: trustingClient(entra.srv, ing.srv)}
	t.Cleanup(func() {
		env.client.CloseIdleConnections()
		require.Empty(t, entra.unexpected(), "no request besides tenant discovery and token requests (no instance discovery)")
	})
	return env
}

// config returns a valid client_secret config for env without queue and retry, so that an
// export returns the outcome of its requests directly.
func (env *azureEnv) config() *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.Endpoint = env.ingestion.srv.URL
	cfg.DCRImmutableID = testDCR
	cfg.Auth = AuthConfig{
		Type:          AuthClientSecret,
		TenantID:      testTenant,
		ClientID:      testClient,
		ClientSecret:  testSecret,
		AuthorityHost: env.entra.srv.URL,
	}
	cfg.QueueSettings = configoptional.None[exporterhelper.QueueBatchConfig]()
	cfg.BackOffConfig.Enabled = false
	return cfg
}

func (env *azureEnv) factory() exporter.Factory {
	return newFactory(factoryOptions{transport: env.client, noCredentialRetries: true})
}

func fastRetry(cfg *Config) {
	cfg.BackOffConfig.Enabled = true
	cfg.BackOffConfig.InitialInterval = 5 * time.Millisecond
	cfg.BackOffConfig.MaxInterval = 10 * time.Millisecond
	cfg.BackOffConfig.MaxElapsedTime = 20 * time.Second
	cfg.BackOffConfig.RandomizationFactor = 0
}

func (env *azureEnv) startTraces(t *testing.T, cfg *Config, set exporter.Settings) exporter.Traces {
	return exporterkittest.StartTraces(t, env.factory(), cfg, set)
}

func (env *azureEnv) startLogs(t *testing.T, cfg *Config, set exporter.Settings) exporter.Logs {
	return exporterkittest.StartLogs(t, env.factory(), cfg, set)
}

// startRaw returns a started exporter without the exporterhelper wrapping.
func (env *azureEnv) startRaw(t *testing.T, cfg *Config, sig signal, set exporter.Settings) *sentinelExporter {
	t.Helper()
	require.NoError(t, cfg.Validate())
	exp, err := newExporter(set, cfg, sig, factoryOptions{transport: env.client, noCredentialRetries: true})
	require.NoError(t, err)
	exporterkittest.Start(t, exp.start, exp.shutdown)
	return exp
}

func observedSettings(level zapcore.Level) (exporter.Settings, *observer.ObservedLogs) {
	return exporterkittest.ObservedSettings(metadata.Type, level)
}

// makeTraces builds n spans with distinct span ids, spread over two resources.
func makeTraces(n int) ptrace.Traces {
	return exporterkittest.NumberedSpans(n, func(r int, rs ptrace.ResourceSpans) {
		rs.Resource().Attributes().PutInt("process.pid", int64(4000+r))
		rs.Resource().Attributes().PutStr("container.id", "4f9c2b1e8d7a6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170605f4e3")
		rs.ScopeSpans().At(0).Scope().SetName("github.com/agenttrail/agenttrail/receiver/ebpfreceiver")
	}, func(s ptrace.Span) { s.SetParentSpanID(pcommon.SpanID{0x11, 0x22}) })
}

func spanIDFor(i int) pcommon.SpanID { return exporterkittest.SpanID(i) }

// requireEachSpanOnce checks that rows hold spans 0..n-1 exactly once each.
func requireEachSpanOnce(t *testing.T, rows []map[string]any, n int) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range rows {
		seen[r["SpanId"].(string)]++
	}
	require.Len(t, seen, n, "every span delivered")
	for i := 0; i < n; i++ {
		id := spanIDFor(i)
		require.Equal(t, 1, seen[fmt.Sprintf("%x", id[:])], "span %d delivered once", i)
	}
}

const testOCSF = `{
  "class_uid": 2004,
  "class_name": "Detection Finding",
  "category_uid": 2,
  "activity_id": 1,
  "type_uid": 200401,
  "time": 1700000000123,
  "severity": "High",
  "severity_id": 4,
  "message": "Prompt injection made the agent call a staff-only export tool",
  "status_id": 1,
  "finding_info": {
    "uid": "f-0001",
    "title": "Prompt injection reached a staff-only tool",
    "desc": "The agent exported customer records after an injected instruction.",
    "types": ["AI Agent Abuse"],
    "analytic": {"uid": "AT-EXFIL-001", "name": "Tool call outside profile", "type_id": 1,
                 "related_analytics": [{"uid": "AT-PI-003", "name": "Injection marker in prompt"}]},
    "attacks": [
      {"tactic": {"uid": "AML.TA0005", "name": "Execution"}, "technique": {"uid": "AML.T0051", "name": "LLM Prompt Injection"},
       "sub_technique": {"uid": "AML.T0051.001", "name": "Indirect"}},
      {"tactic": {"uid": "AML.TA0010", "name": "Exfiltration"}, "technique": {"uid": "AML.T0025", "name": "Exfiltration via Cyber Means"}}
    ]
  },
  "resources": [{"type": "Pod", "name": "customer-agent-7d9f", "namespace": "bank"}],
  "metadata": {"product": {"name": "AgentTrail", "vendor_name": "AgentTrail"}, "version": "1.3.0"}
}`

// makeFindings builds n finding records whose OCSF body carries uid f-<i>.
func makeFindings(n int) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	ra := rl.Resource().Attributes()
	ra.PutStr("service.name", "customer-agent")
	ra.PutStr("k8s.namespace.name", "bank")
	ra.PutStr("k8s.pod.name", "customer-agent-7d9f")
	ra.PutStr("k8s.deployment.name", "customer-agent")
	ra.PutStr("k8s.serviceaccount.name", "customer-agent-sa")
	ra.PutStr("container.id", "4f9c2b1e8d7a6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170605f4e3")
	ra.PutStr("host.name", "aks-nodepool1-0001")
	ra.PutInt("process.pid", 4242)
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for i := 0; i < n; i++ {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(pcommon.Timestamp(1_700_000_000_123_456_789 + int64(i)))
		lr.SetObservedTimestamp(pcommon.Timestamp(1_700_000_001_000_000_000))
		lr.SetTraceID(pcommon.TraceID{0x0a, 0x0b, byte(i)})
		lr.SetSpanID(pcommon.SpanID{0x0c, byte(i)})
		lr.SetSeverityText("HIGH")
		lr.Body().SetStr(strings.Replace(testOCSF, `"uid": "f-0001"`, fmt.Sprintf(`"uid": "f-%d"`, i), 1))
		lr.Attributes().PutStr("agenttrail.story.id", fmt.Sprintf("story-%d", i))
	}
	return ld
}

func zapNew(core zapcore.Core) *zap.Logger { return zap.New(core) }

func nanValue() float64 { return math.NaN() }

// richTraces is one span with every span column set.
func richTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "customer-agent")
	rs.Resource().Attributes().PutInt("process.pid", 4242)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("ebpf")
	s := ss.Spans().AppendEmpty()
	s.SetName("customer-data-export")
	s.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	s.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})
	s.SetParentSpanID(pcommon.SpanID{8, 7, 6, 5, 4, 3, 2, 1})
	s.SetKind(ptrace.SpanKindInternal)
	s.SetStartTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000))
	s.SetEndTimestamp(pcommon.Timestamp(1_700_000_000_012_500_000))
	s.Status().SetCode(ptrace.StatusCodeError)
	s.Status().SetMessage("blocked by policy")
	s.Attributes().PutStr("agenttrail.arg.query", "SELECT * FROM customers")
	s.Attributes().PutInt("process.pid", 4343)
	s.Attributes().PutDouble("ratio", 0.25)
	s.Attributes().PutDouble("nan", 0)
	v, _ := s.Attributes().Get("nan")
	v.SetDouble(nanValue())
	s.Attributes().PutBool("ok", true)
	s.Attributes().PutEmptyBytes("raw").FromRaw([]byte{0xde, 0xad})
	s.Attributes().PutEmptySlice("list").AppendEmpty().SetStr("a\"b\n")
	ev := s.Events().AppendEmpty()
	ev.SetName("policy.violation")
	ev.SetTimestamp(pcommon.Timestamp(1_700_000_000_005_000_000))
	ev.Attributes().PutStr("rule", "EXFIL-001")
	l := s.Links().AppendEmpty()
	l.SetTraceID(pcommon.TraceID{0xff})
	l.SetSpanID(pcommon.SpanID{0xee})
	l.TraceState().FromRaw("vendor=1")
	return td
}

func (env *azureEnv) noQueue() configoptional.Optional[exporterhelper.QueueBatchConfig] {
	return configoptional.None[exporterhelper.QueueBatchConfig]()
}
