package tls

import (
	"os"
	"testing"
	"unsafe"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tlsident"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// systemNode is the Node.js Debian installs (scripts/prereqs.sh): it exports OpenSSL.
const systemNode = "/usr/bin/node"

// TestExportsOpenSSL: a program that exports OpenSSL (Node) is found by its dynamic symbols; one
// that does not (this Go test binary) is not.
func TestExportsOpenSSL(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if found, err := ExportsOpenSSL(self); found || err != nil {
		t.Errorf("the test binary: found %v, err %v", found, err)
	}
	if _, err := os.Stat(systemNode); err != nil {
		t.Skipf("%s is not installed", systemNode)
	}
	if found, err := ExportsOpenSSL(systemNode); !found || err != nil {
		t.Errorf("%s: found %v, err %v", systemNode, found, err)
	}
}

func TestClass(t *testing.T) {
	for in, want := range map[string]string{
		"none": "none", "openssl": "openssl", "openssl (/usr/bin/node)": "openssl",
		"go,openssl (/opt/a, b/node)": "go,openssl", "openssl (/usr/bin/node),openssl": "openssl,openssl",
	} {
		if got := Class(in); got != want {
			t.Errorf("Class(%q) = %q, want %q", in, got, want)
		}
	}
}

// registry is a tracer.Registry of the processes a test sets up.
type registry map[uint32]*tracer.Process

func (r registry) Process(pid uint32) *tracer.Process { return r[pid] }

type problems []string

func (p *problems) Add(_ uint32, what string) { *p = append(*p, what) }

// newTracer is the TLS tracer without the kernel, over an empty /proc, with its metrics in tel.
func newTracer(t testing.TB, tel *componenttest.Telemetry, procs registry) (*Tracer, *spans.Builder) {
	t.Helper()
	set := tel.NewTelemetrySettings()
	meter := set.MeterProvider.Meter("test")
	calls, err := meter.Int64Counter("agenttrail.ebpf.calls.incomplete")
	if err != nil {
		t.Fatal(err)
	}
	failures, err := meter.Int64Counter("agenttrail.ebpf.attach.failures")
	if err != nil {
		t.Fatal(err)
	}
	b := spans.NewBuilder(spans.Options{MaxOpenSpans: 100})
	tr, err := New(tracer.Env{
		Logger: zap.NewNop(), Builder: b, Redactor: redact.New(), Problems: &problems{}, Processes: procs,
		Telemetry: &tracer.Telemetry{Meter: meter, Calls: calls, AttachFailures: failures}, ProcRoot: t.TempDir(),
	}, Config{Enabled: true, Go: true, CaptureBytes: 16384, MaxConnectionBuffer: 1 << 20, MaxTotalBuffer: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return tr, b
}

func sums(t testing.TB, tel *componenttest.Telemetry, name, key string) map[string]int64 {
	t.Helper()
	m, err := tel.GetMetric(name)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		r, _ := dp.Attributes.Value(attribute.Key(key))
		got[r.AsString()] += dp.Value
	}
	return got
}

// TestRecordStats: what the TLS tracker's bounds cut reaches agenttrail.ebpf.tls.limited by
// reason, as the growth since the last report.
func TestRecordStats(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	tr, _ := newTracer(t, tel, registry{})
	tr.recordStats(llm.Stats{}, llm.Stats{BodiesCut: 2, ConnectionsEvicted: 1})
	tr.recordStats(llm.Stats{BodiesCut: 2, ConnectionsEvicted: 1}, llm.Stats{BodiesCut: 5, ConnectionsEvicted: 1, RequestsGivenUp: 4,
		ConnectionsCut: 1, BodiesOverBuffer: 3, DecodedCut: 1, HeadersCut: 2, StreamsGivenUp: 6})
	got := sums(t, tel, "agenttrail.ebpf.tls.limited", "reason")
	want := map[string]int64{"total_buffer": 6, "connection_limit": 1, "pending_requests": 4,
		"connection_buffer": 3, "decompressed_size": 1, "header_size": 2, "http2_streams": 6}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

// tlsRecord lays out a TLS record as the decoder hands it to the handler: its bytes as sent,
// in a buffer of the struct's full size.
func tlsRecord(pid uint32, dir, source uint8, conn uint64, data string) ([]byte, spans.Header) {
	e := new(probes.TLSEvent)
	e.Hdr.Kind, e.Hdr.Tgid, e.Hdr.Tid = probes.KindTLSData, pid, pid
	e.Conn, e.Direction, e.Source = conn, dir, source
	e.Len = uint32(len(data))
	e.Captured = uint32(copy(e.Data[:], data))
	buf := make([]byte, sizeTLS)
	copy(buf, unsafe.Slice((*byte)(unsafe.Pointer(e)), sizeTLS))
	return buf[:headTLS+len(data)], spans.Header{PID: pid, TID: pid}
}

// TestExchangeBecomesSpanAndCapture: an HTTPS call of a traced process becomes an inference span
// through httpspans, and a process set up with no TLS library found says how its plaintext was
// read after all; its exit ends its connections.
func TestExchangeBecomesSpanAndCapture(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	c := &spans.Capture{TLS: tracer.CaptureNone}
	tr, b := newTracer(t, tel, registry{7: {ProcInfo: tracer.ProcInfo{PID: 7}, Capture: c}})
	b.AddProcess(spans.Process{PID: 7, Target: "agent", Capture: c})
	for _, r := range []struct {
		dir  uint8
		data string
	}{
		{probes.TLSWrite, "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nContent-Length: 17\r\n\r\n{\"model\":\"gpt-x\"}"},
		{probes.TLSRead, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"},
	} {
		rec, h := tlsRecord(7, r.dir, probes.TLSOpenSSL, 0xabc, r.data)
		if reason := tr.onData(h, rec); reason != "" {
			t.Fatalf("dropped: %s", reason)
		}
	}
	if !tr.Waiting() {
		t.Error("a connection is open but the tracer does not wait for it")
	}
	tr.ProcessGone(7)
	if tr.Waiting() {
		t.Error("the process is gone but its connection is kept")
	}
	if c.TLS != "openssl" {
		t.Errorf("capture.tls = %q, want openssl", c.TLS)
	}
	sink := new(consumertest.TracesSink)
	if err := sink.ConsumeTraces(t.Context(), b.Flush()); err != nil {
		t.Fatal(err)
	}
	if sink.SpanCount() != 1 {
		t.Fatalf("%d spans", sink.SpanCount())
	}
	s := sink.AllTraces()[0].ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	if s.Name() != "chat gpt-x" {
		t.Errorf("span %q", s.Name())
	}
	if v, _ := s.Attributes().Get("agenttrail.tls.library"); v.Str() != "openssl" {
		t.Errorf("agenttrail.tls.library = %q", v.Str())
	}
}

// TestDataChecks: records whose fields are out of range are dropped with the reason.
func TestDataChecks(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	tr, _ := newTracer(t, tel, registry{})
	rec, h := tlsRecord(7, 9, probes.TLSOpenSSL, 1, "x")
	if got := tr.onData(h, rec); got != "tls_direction" {
		t.Errorf("bad direction: %q", got)
	}
	rec, h = tlsRecord(7, probes.TLSWrite, 9, 1, "x")
	if got := tr.onData(h, rec); got != "tls_source" {
		t.Errorf("bad source: %q", got)
	}
	rec, h = tlsRecord(7, probes.TLSWrite, probes.TLSOpenSSL, 1, "abc")
	tracer.As[probes.TLSEvent](rec).Captured = 4
	if got := tr.onData(h, rec); got != "tls_length" {
		t.Errorf("captured beyond the record: %q", got)
	}
}

// TestStaticTLSCapture: the capture values of static TLS libraries and their metric classes.
func TestStaticTLSCapture(t *testing.T) {
	got := unsupportedCapture([]tlsident.Library{{Name: tlsident.Rustls, Version: "0.23.46"}, {Name: tlsident.OpenSSL, Version: "3.6.4"}})
	if want := "not supported: rustls (static, 0.23.46), OpenSSL (static, 3.6.4)"; got != want {
		t.Errorf("unsupportedCapture %q, want %q", got, want)
	}
	for in, want := range map[string]string{
		got:                                 "not supported: rustls, OpenSSL",
		"not supported: BoringSSL (static)": "not supported: BoringSSL",
		"boringssl (/opt/bun, x/bun, Bun 1.4.4 linux-x64)":     "boringssl",
		"go,boringssl (/opt/bun, Bun 1.4.4 linux-x64),openssl": "go,boringssl,openssl",
	} {
		if got := Class(in); got != want {
			t.Errorf("Class(%q) = %q, want %q", in, got, want)
		}
	}
}
