package sockets

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/zap"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

const pid = 4242

func newTracer(t testing.TB) (*Tracer, *spans.Builder) {
	t.Helper()
	b := spans.NewBuilder(spans.Options{})
	b.AddProcess(spans.Process{PID: pid, Target: "agent"})
	tr, err := New(tracer.Env{Logger: zap.NewNop(), Builder: b, Telemetry: &tracer.Telemetry{Meter: noop.NewMeterProvider().Meter("test")}}, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return tr, b
}

// view returns the record's bytes the way the receiver's decoder hands them to a handler: 8-byte
// aligned, with capacity for the whole struct and the bytes not sent zeroed.
func view(raw []byte) []byte {
	full := tracer.SizeOf[probes.FDIOEvent]()
	buf := make([]uint64, (full+7)/8)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*8)
	return b[:copy(b, raw)]
}

func record(e *probes.FDIOEvent) []byte {
	raw := unsafe.Slice((*byte)(unsafe.Pointer(e)), unsafe.Sizeof(*e))
	return view(raw[:head+int(e.Captured)])
}

type consumer struct{ got []Payload }

func (c *consumer) Payload(p *Payload) {
	cp := *p
	cp.Data = append([]byte(nil), p.Data...)
	c.got = append(c.got, cp)
}

func flushSpans(b *spans.Builder) []ptrace.Span {
	b.EmitSockets()
	td := b.Flush()
	var out []ptrace.Span
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		ss := td.ResourceSpans().At(i).ScopeSpans()
		for j := 0; j < ss.Len(); j++ {
			for k := 0; k < ss.At(j).Spans().Len(); k++ {
				out = append(out, ss.At(j).Spans().At(k))
			}
		}
	}
	return out
}

func TestHandleDNSAndPlain(t *testing.T) {
	tr, b := newTracer(t)
	c := &consumer{}
	tr.AddConsumer(c)
	h := spans.Header{Time: time.Unix(1700000000, 0), PID: pid, TID: 7}

	q := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 9})
	_ = q.StartQuestions()
	_ = q.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("aGVsbG8.t.example."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	msg, _ := q.Finish()
	e := &probes.FDIOEvent{Sock: 0x1000, Ino: 5, Bytes: uint64(len(msg)), Family: unix.AF_INET, PeerPort: 53, LocalPort: 40000,
		Direction: probes.FDIOSend, Kind: probes.FDIOUDP, Flags: probes.FDIODNS, Captured: uint32(len(msg)), Peer: [16]uint8{127, 0, 0, 53}}
	copy(e.Data[:], msg)
	if reason := tr.Handle(h, record(e)); reason != "" {
		t.Fatal(reason)
	}
	body := []byte("POST /v1/upload HTTP/1.1\r\nHost: x\r\n\r\n")
	p := &probes.FDIOEvent{Sock: 0x2000, Ino: 6, Bytes: 1000, Family: unix.AF_INET6, PeerPort: 8080, Direction: probes.FDIOSend,
		Kind: probes.FDIOTCP, Flags: probes.FDIOPlain | probes.FDIOPayloadCut, Captured: uint32(len(body))}
	p.Peer[15] = 1 // ::1
	copy(p.Data[:], body)
	if reason := tr.Handle(h, record(p)); reason != "" {
		t.Fatal(reason)
	}
	if len(c.got) != 1 || string(c.got[0].Data) != string(body) || !c.got[0].Cut || c.got[0].Peer != netip.MustParseAddrPort("[::1]:8080") || c.got[0].Key != 0x2000 {
		t.Fatalf("payloads: %+v", c.got)
	}
	got := flushSpans(b)
	names := map[string]ptrace.Span{}
	for _, s := range got {
		names[s.Name()] = s
	}
	d, ok := names["send 127.0.0.53:53"]
	if !ok {
		t.Fatalf("spans: %v", names)
	}
	if v, _ := d.Attributes().Get("dns.question.name"); v.Str() != "aGVsbG8.t.example" {
		t.Errorf("dns.question.name %q", v.Str())
	}
	if _, ok := names["send [::1]:8080"]; !ok {
		t.Errorf("spans: %v", names)
	}
}

func TestHandleRejects(t *testing.T) {
	tr, _ := newTracer(t)
	h := spans.Header{PID: pid}
	for name, e := range map[string]*probes.FDIOEvent{
		"fd_io_kind":      {Kind: 9, Direction: probes.FDIOSend},
		"fd_io_direction": {Kind: probes.FDIOTCP, Direction: 3},
	} {
		if got := tr.Handle(h, record(e)); got != name {
			t.Errorf("%s: reason %q", name, got)
		}
	}
	// More captured than the record holds.
	e := &probes.FDIOEvent{Kind: probes.FDIOTCP, Direction: probes.FDIOSend, Captured: 100}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(e)), unsafe.Sizeof(*e))
	if got := tr.Handle(h, view(raw[:head+10])); got != "fd_io_length" {
		t.Errorf("reason %q", got)
	}
}

// FuzzHandle: any record the ring buffer could hold is handled without a panic, and any drop
// has a reason.
func FuzzHandle(f *testing.F) {
	e := &probes.FDIOEvent{Sock: 1, Ino: 2, Bytes: 10, Family: unix.AF_INET, PeerPort: 53, Direction: probes.FDIOSend, Kind: probes.FDIOUDP, Flags: probes.FDIODNS, Captured: 4}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(e)), unsafe.Sizeof(*e))
	f.Add(append([]byte(nil), raw[:head+4]...))
	f.Add(append([]byte(nil), raw[:head]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, _ := newTracer(t)
		tr.AddConsumer(&consumer{})
		if len(b) < head || len(b) > tracer.SizeOf[probes.FDIOEvent]() {
			return // the decoder drops these before the handler (short_record) or never sees them
		}
		binary.LittleEndian.PutUint32(b[24:], probes.KindFDIO)
		_ = tr.Handle(spans.Header{PID: pid, Time: time.Unix(1, 0)}, view(b))
	})
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mod := range []func(*Config){
		func(c *Config) { c.CaptureBytes = -1 },
		func(c *Config) { c.CaptureBytes = probes.FDIOMaxCaptureBytes + 1 },
		func(c *Config) { c.AggregateInterval = time.Millisecond },
		func(c *Config) { c.DNSPort = 0 },
		func(c *Config) { c.DNSPort = 70000 },
	} {
		c := DefaultConfig()
		mod(&c)
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestPipeJSONRPCOnly: a pipe the kernel marked on '{' is reported only when the JSON is a
// JSON-RPC message; a structured log line is dropped (and unmarked), and a unix socket carrying
// one keeps its counts but hands no payload on. HTTP on a unix socket is not touched.
func TestPipeJSONRPCOnly(t *testing.T) {
	tr, b := newTracer(t)
	c := &consumer{}
	tr.AddConsumer(c)
	h := spans.Header{Time: time.Unix(1700000000, 0), PID: pid, TID: 7}
	msg := func(kind uint8, ino uint64, data string) *probes.FDIOEvent {
		e := &probes.FDIOEvent{Ino: ino, Bytes: uint64(len(data)), Direction: probes.FDIOSend, Kind: kind, Flags: probes.FDIOPlain, Captured: uint32(len(data))}
		if kind == probes.FDIOUnix {
			e.Sock, e.Family = 0x3000+ino, unix.AF_UNIX
		}
		copy(e.Data[:], data)
		return e
	}
	for _, e := range []*probes.FDIOEvent{
		msg(probes.FDIOPipe, 1, `{"level":"info","msg":"started"}`),
		msg(probes.FDIOPipe, 2, " {\n \"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"}"),
		msg(probes.FDIOUnix, 3, `{"ts":1,"event":"log"}`),
		msg(probes.FDIOUnix, 4, "GET /containers/json HTTP/1.1\r\n\r\n"),
	} {
		if reason := tr.Handle(h, record(e)); reason != "" {
			t.Fatal(reason)
		}
	}
	if len(c.got) != 2 || c.got[0].Socket.Ino != 2 || c.got[1].Socket.Ino != 4 {
		t.Fatalf("payloads: %+v", c.got)
	}
	names := map[string]int{}
	for _, s := range flushSpans(b) {
		names[s.Name()]++
	}
	if names["send pipe"] != 1 || names["send unix"] != 1 {
		t.Fatalf("spans %v: want the JSON-RPC pipe's and the unix sockets' (aggregated)", names)
	}
}
