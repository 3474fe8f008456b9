package evidenceexporter

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"go.uber.org/zap/zapcore"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit"
	"github.com/agenttrail/agenttrail/internal/exporterkit/exporterkittest"
)

var (
	traceA = pcommon.TraceID{0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1}
	traceB = pcommon.TraceID{0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2}
)

// testConfig returns a config for a fresh archive and key in temporary directories.
func testConfig(t *testing.T) *Config {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.Directory = filepath.Join(t.TempDir(), "evidence")
	cfg.SigningKeyFile = filepath.Join(t.TempDir(), "evidence.key")
	if _, err := archive.GenerateSigningKey(cfg.SigningKeyFile); err != nil {
		t.Fatal(err)
	}
	// Deliver synchronously so that Consume returns after the write.
	cfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	// Errors are asserted, not retried.
	cfg.RetryConfig.Enabled = false
	return cfg
}

// twoTraces is one batch mixing two traces across two resources, as a gateway would send.
func twoTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	for r, svc := range []string{"agent", "tool-server"} {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", svc)
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("agenttrail/ebpf")
		for i, id := range []pcommon.TraceID{traceA, traceB, traceA} {
			span := ss.Spans().AppendEmpty()
			span.SetTraceID(id)
			span.SetSpanID(pcommon.SpanID{byte(r), byte(i), 1, 1, 1, 1, 1, 1})
			span.SetName([]string{"invoke_agent", "chat gpt", "execute_tool"}[i])
		}
	}
	return td
}

func oneFinding(id pcommon.TraceID, inAttribute bool) plog.Logs {
	ld := plog.NewLogs()
	lr := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.Body().SetStr(`{"class_uid":2004,"finding_info":{"title":"exfiltration after tool call"}}`)
	if inAttribute {
		lr.Attributes().PutStr("agenttrail.trace_id", strings.ToUpper(hex.EncodeToString(id[:])))
	} else {
		lr.SetTraceID(id)
	}
	return ld
}

func createBoth(t *testing.T, f exporter.Factory, cfg *Config) (exporter.Traces, exporter.Logs) {
	t.Helper()
	set := exportertest.NewNopSettings(metadata.Type)
	te, err := f.CreateTraces(context.Background(), set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	le, err := f.CreateLogs(context.Background(), set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return te, le
}

// startBoth creates the traces and the logs exporter of cfg and starts them; the test shuts
// them down.
func startBoth(t *testing.T, cfg *Config) (exporter.Traces, exporter.Logs) {
	t.Helper()
	te, le := createBoth(t, NewFactory(), cfg)
	for _, c := range []component.Component{te, le} {
		if err := c.Start(context.Background(), componenttest.NewNopHost()); err != nil {
			t.Fatal(err)
		}
	}
	return te, le
}

func TestEndToEnd(t *testing.T) {
	cfg := testConfig(t)
	te, le := startBoth(t, cfg)
	ctx := context.Background()
	if err := te.ConsumeTraces(ctx, twoTraces()); err != nil {
		t.Fatal(err)
	}
	if err := le.ConsumeLogs(ctx, oneFinding(traceA, false)); err != nil {
		t.Fatal(err)
	}
	if err := le.ConsumeLogs(ctx, oneFinding(traceB, true)); err != nil {
		t.Fatal(err)
	}
	// The traces exporter shuts down first; the logs one still writes to the shared archive.
	if err := te.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := le.ConsumeLogs(ctx, oneFinding(traceA, true)); err != nil {
		t.Fatalf("logs after the traces exporter shut down: %v", err)
	}
	if err := le.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	key, _ := archive.LoadSigningKey(cfg.SigningKeyFile)
	rep, err := archive.VerifyDir(cfg.Directory, archive.VerifyOptions{PublicKey: key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	// segment_open, story A, story B, finding A, finding B, finding A
	if rep.Records != 6 || rep.OpenSegment != "" || rep.ClosedSegments != 1 {
		t.Errorf("report %+v", rep)
	}

	out := filepath.Join(t.TempDir(), "bundle")
	idA := hex.EncodeToString(traceA[:])
	exp, err := archive.ExportTrace(cfg.Directory, idA, out, archive.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if exp.Stories != 1 || exp.Findings != 2 {
		t.Errorf("export %+v", exp)
	}
	brep, err := archive.VerifyBundle(out, archive.BundleOptions{PublicKey: key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if brep.TraceID != idA {
		t.Errorf("bundle trace %s", brep.TraceID)
	}

	// The story of trace A keeps both resources and all four of its spans, and nothing of B.
	data, _ := os.ReadFile(filepath.Join(out, archive.BundleStoryFile))
	var um ptrace.JSONUnmarshaler
	td, err := um.UnmarshalTraces(data)
	if err != nil {
		t.Fatal(err)
	}
	if td.SpanCount() != 4 || td.ResourceSpans().Len() != 2 {
		t.Errorf("story of A: %d spans in %d resources, want 4 in 2", td.SpanCount(), td.ResourceSpans().Len())
	}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		spans := td.ResourceSpans().At(i).ScopeSpans().At(0).Spans()
		for j := 0; j < spans.Len(); j++ {
			if spans.At(j).TraceID() != traceA {
				t.Errorf("span of another trace in the story of A")
			}
		}
	}

	t.Run("tampered bundle fails", func(t *testing.T) {
		p := filepath.Join(out, archive.BundleStoryFile)
		os.WriteFile(p, []byte(strings.Replace(string(data), "execute_tool", "harmless", 1)), 0o640)
		if _, err := archive.VerifyBundle(out, archive.BundleOptions{}); err == nil {
			t.Error("a renamed span went unnoticed")
		}
	})
}

func TestStartFailsWithoutKey(t *testing.T) {
	cfg := testConfig(t)
	cfg.SigningKeyFile = filepath.Join(t.TempDir(), "missing.key")
	te, le := createBoth(t, NewFactory(), cfg)
	if err := te.Start(context.Background(), componenttest.NewNopHost()); err == nil {
		t.Fatal("Start without a key must fail")
	}
	err := te.ConsumeTraces(context.Background(), twoTraces())
	if !errors.Is(err, errNotStarted) {
		t.Errorf("consume before a successful start: %v", err)
	}
	if err := te.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := le.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownWithoutStart(t *testing.T) {
	te, le := createBoth(t, NewFactory(), testConfig(t))
	for _, c := range []component.Component{te, le} {
		if err := c.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// exporterhelper's own Shutdown may only be called once, so idempotency is checked on the
// handles the helpers call.
func TestShutdownIsIdempotent(t *testing.T) {
	r := &registry{byDir: map[string]*evidenceExporter{}}
	cfg := testConfig(t)
	set := exportertest.NewNopSettings(metadata.Type)
	h1, err := r.acquire(cfg, set, "traces")
	if err != nil {
		t.Fatal(err)
	}
	h2, err := r.acquire(cfg, set, "logs")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, h := range []*handle{h1, h2} {
		if err := h.start(ctx, componenttest.NewNopHost()); err != nil {
			t.Fatal(err)
		}
	}
	if err := h1.exp.pushTraces(ctx, twoTraces()); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*handle{h1, h1, h2, h2, h1} {
		if err := h.shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.byDir) != 0 {
		t.Errorf("registry still holds %d exporters", len(r.byDir))
	}
	if rep, err := archive.VerifyDir(cfg.Directory, archive.VerifyOptions{}); err != nil || rep.OpenSegment != "" {
		t.Errorf("archive after shutdown: %+v %v", rep, err)
	}
	// A new exporter for the same directory continues the chain.
	h3, err := r.acquire(cfg, set, "traces")
	if err != nil {
		t.Fatal(err)
	}
	if err := h3.start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := h3.exp.pushLogs(ctx, oneFinding(traceA, false)); err != nil {
		t.Fatal(err)
	}
	if err := h3.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := archive.VerifyDir(cfg.Directory, archive.VerifyOptions{}); err != nil || rep.ClosedSegments != 2 {
		t.Errorf("archive after restart: %+v %v", rep, err)
	}
}

func TestSameDirectoryDifferentConfig(t *testing.T) {
	f := NewFactory()
	cfg := testConfig(t)
	te, le := createBoth(t, f, cfg)
	other := *cfg
	other.Retention = "sox"
	if _, err := f.CreateTraces(context.Background(), exportertest.NewNopSettings(metadata.Type), &other); err == nil {
		t.Error("a second archive writer for the same directory was created")
	}
	same := *cfg
	tl, err := f.CreateLogs(context.Background(), exportertest.NewNopSettings(metadata.Type), &same)
	if err != nil {
		t.Errorf("an equal config for the same directory must share the archive: %v", err)
	}
	for _, c := range []component.Component{te, le, tl} {
		if c != nil {
			c.Shutdown(context.Background())
		}
	}
}

func TestConcurrentConsumers(t *testing.T) {
	cfg := testConfig(t)
	cfg.QueueConfig = createDefaultConfig().(*Config).QueueConfig // exporterhelper's queue with 10 consumers
	cfg.SegmentMaxBytes = 16 << 10
	te, le := startBoth(t, cfg)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := te.ConsumeTraces(ctx, twoTraces()); err != nil {
					t.Error(err)
				}
				if err := le.ConsumeLogs(ctx, oneFinding(traceA, false)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := te.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := le.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := archive.VerifyDir(cfg.Directory, archive.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 100 trace batches of 2 stories, 100 findings, one segment_open per segment.
	if want := uint64(300 + rep.Segments); rep.Records != want {
		t.Errorf("records %d, want %d", rep.Records, want)
	}
}

func TestStoryEntriesSplitByTrace(t *testing.T) {
	entries, err := storyEntries(twoTraces())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].TraceID != hex.EncodeToString(traceA[:]) || entries[1].TraceID != hex.EncodeToString(traceB[:]) {
		t.Fatalf("entries %+v", entries)
	}
	var um ptrace.JSONUnmarshaler
	for i, want := range []int{4, 2} {
		td, err := um.UnmarshalTraces(entries[i].Payload)
		if err != nil {
			t.Fatal(err)
		}
		if td.SpanCount() != want {
			t.Errorf("entry %d: %d spans, want %d", i, td.SpanCount(), want)
		}
		if v, _ := td.ResourceSpans().At(1).Resource().Attributes().Get("service.name"); v.Str() != "tool-server" {
			t.Errorf("entry %d lost its resource", i)
		}
	}
}

func TestFindingTraceID(t *testing.T) {
	idA := hex.EncodeToString(traceA[:])
	tests := []struct {
		name string
		set  func(plog.LogRecord)
		want string
	}{
		{"record trace id", func(lr plog.LogRecord) { lr.SetTraceID(traceA) }, idA},
		{"agenttrail.trace_id attribute", func(lr plog.LogRecord) { lr.Attributes().PutStr("agenttrail.trace_id", idA) }, idA},
		{"trace_id attribute in upper case", func(lr plog.LogRecord) { lr.Attributes().PutStr("trace_id", strings.ToUpper(idA)) }, idA},
		{"bytes attribute", func(lr plog.LogRecord) { lr.Attributes().PutEmptyBytes("trace.id").FromRaw(traceA[:]) }, idA},
		{"malformed attribute", func(lr plog.LogRecord) { lr.Attributes().PutStr("trace_id", "nope") }, ""},
		{"none", func(plog.LogRecord) {}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := plog.NewLogRecord()
			tt.set(lr)
			if got := findingTraceID(lr); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAppendErrorsArePermanentOnlyForBadEntries(t *testing.T) {
	key, _ := archive.LoadSigningKey(testConfig(t).SigningKeyFile)
	arc, err := archive.Open(t.TempDir(), key, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bad := []archive.Entry{{Kind: archive.KindStory, Payload: []byte("not json")}}
	if err := appendEntries(ctx, arc, bad); !consumererror.IsPermanent(err) {
		t.Errorf("a payload that can never be written must be a permanent error, got %v", err)
	}
	if err := arc.Close(); err != nil {
		t.Fatal(err)
	}
	good := []archive.Entry{{Kind: archive.KindStory, Payload: []byte("{}")}}
	if err := appendEntries(ctx, arc, good); err == nil || consumererror.IsPermanent(err) {
		t.Errorf("a closed archive must be a retryable error, got %v", err)
	}
}

// TestBackgroundSealAndRetention runs the maintenance goroutine on the real clock: an idle
// segment is sealed once it reaches segment_max_age, and retention then removes it, leaving a
// retention record in a new segment.
func TestBackgroundSealAndRetention(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for real time to pass")
	}
	cfg := testConfig(t)
	cfg.SegmentMaxAge = time.Second
	cfg.Retention = "1s"
	cfg.RetentionCheckInterval = 100 * time.Millisecond
	te, le := createBoth(t, NewFactory(), cfg)
	ctx := context.Background()
	if err := te.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	defer le.Shutdown(ctx)
	defer te.Shutdown(ctx)
	if err := te.ConsumeTraces(ctx, twoTraces()); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(cfg.Directory, archive.SegmentsDir, archive.SegmentName(1))
	deadline := time.Now().Add(15 * time.Second)
	sealed := false
	for time.Now().Before(deadline) {
		_, errManifest := os.Stat(filepath.Join(cfg.Directory, archive.SegmentsDir, archive.ManifestName(1)))
		_, errSegment := os.Stat(first)
		sealed = sealed || errManifest == nil
		if sealed && os.IsNotExist(errSegment) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(first); !sealed || !os.IsNotExist(err) {
		t.Fatalf("first segment sealed=%v, still present: %v", sealed, err == nil)
	}
	rep, err := archive.VerifyDir(cfg.Directory, archive.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RetentionRecords < 1 || len(rep.RemovedSegments) < 1 {
		t.Errorf("report %+v", rep)
	}
}

// TestStartRepairsTornTailAndCountsIt starts on an archive whose open segment ends in half a
// record, as a kill -9 mid-write leaves it: the tail is cut, counted by reason, and the chain
// continues.
func TestStartRepairsTornTailAndCountsIt(t *testing.T) {
	cfg := testConfig(t)
	key, err := archive.LoadSigningKey(cfg.SigningKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	arc, err := archive.Open(cfg.Directory, key, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := arc.Append(context.Background(), []archive.Entry{{Kind: archive.KindStory, Payload: []byte(`{"n":1}`)}}); err != nil {
		t.Fatal(err)
	}
	seq, _ := arc.Head()
	// Leave the segment open, as a crash would, and tear a record after it.
	seg := filepath.Join(cfg.Directory, archive.SegmentsDir, archive.SegmentName(1))
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":3,"time":"2026-01-02T03:04:05Z","kind":"story","trace_id":"","payl`)
	f.Close()
	if rep, err := archive.VerifyDir(cfg.Directory, archive.VerifyOptions{}); err != nil || rep.PartialTail == nil {
		t.Fatalf("the torn tail must verify as a partial tail: %+v %v", rep, err)
	}

	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	set := exportertest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	te, err := NewFactory().CreateTraces(context.Background(), set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := te.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := te.ConsumeTraces(context.Background(), twoTraces()); err != nil {
		t.Fatal(err)
	}
	if err := te.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := exporterkittest.CountsByReason(t, tel, repairsMetricName), map[string]int64{archive.RepairPartialLine: 1}; !maps.Equal(got, want) {
		t.Fatalf("repairs %v, want %v", got, want)
	}
	rep, err := archive.VerifyDir(cfg.Directory, archive.VerifyOptions{PublicKey: key.Public().(ed25519.PublicKey)})
	if err != nil || rep.PartialTail != nil || rep.LastSeq != seq+2 {
		t.Errorf("after the repair and two stories: %+v %v, want last seq %d", rep, err, seq+2)
	}
	q, _ := filepath.Glob(filepath.Join(cfg.Directory, "quarantine", "*.tail"))
	if len(q) != 1 {
		t.Errorf("quarantined tails %v, want one", q)
	}
}

// A story too large for one record is refused (a permanent error): exporterhelper drops it, and
// the drop is counted on agenttrail.evidence.records.dropped and in the shutdown summary line,
// with the same number.
func TestDroppedStoryIsCountedAndLogged(t *testing.T) {
	cfg := testConfig(t)
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	set, logs := exporterkittest.ObservedSettings(metadata.Type, zapcore.InfoLevel)
	set.TelemetrySettings.MeterProvider = tel.NewTelemetrySettings().MeterProvider
	te, err := NewFactory().CreateTraces(context.Background(), set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := te.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	td := ptrace.NewTraces()
	span := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	span.SetTraceID(traceA)
	span.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})
	span.Attributes().PutStr("huge", strings.Repeat("x", archive.MaxRecordBytes))
	if err := te.ConsumeTraces(context.Background(), td); !consumererror.IsPermanent(err) {
		t.Fatalf("an oversized story: %v, want a permanent error", err)
	}
	if err := te.ConsumeTraces(context.Background(), twoTraces()); err != nil {
		t.Fatal(err)
	}
	if err := te.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := exporterkittest.CountsByReason(t, tel, droppedMetricName), map[string]int64{exporterkit.ReasonRejected: 1}; !maps.Equal(got, want) {
		t.Fatalf("dropped %v, want the one span %v", got, want)
	}
	summaries := logs.FilterMessageSnippet("Drop summary of exporter").All()
	if len(summaries) != 1 {
		t.Fatalf("%d summary lines, want the shutdown one", len(summaries))
	}
	if got := summaries[0].ContextMap()["dropped_since_start"]; got != int64(1) {
		t.Errorf("summary dropped_since_start %v, want 1 (the metric's count)", got)
	}
}
