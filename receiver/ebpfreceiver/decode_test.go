package ebpfreceiver

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"
	"unsafe"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/symbolize"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// statusHost is a component.Host that records the status events reported through it.
type statusHost struct {
	component.Host
	mu     sync.Mutex
	events []*componentstatus.Event
}

func newStatusHost() *statusHost { return &statusHost{Host: componenttest.NewNopHost()} }

func (h *statusHost) Report(e *componentstatus.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

func (h *statusHost) statuses() []componentstatus.Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]componentstatus.Status, len(h.events))
	for i, e := range h.events {
		out[i] = e.Status()
	}
	return out
}

func (h *statusHost) last() *componentstatus.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.events) == 0 {
		return nil
	}
	return h.events[len(h.events)-1]
}

// Test processes: pidTraced belongs to target 1, pidOther is traced by no target.
const (
	pidTraced = 100
	pidOther  = 101
)

// offline is a receiver's record handling built without the kernel: the decoder, registry,
// span builder, symbolizer and every tracer over an empty /proc, with three function
// probes registered (1: two arguments, 2: four, 3: none) and pidTraced traced.
type offline struct {
	r    *ebpfReceiver
	tel  *componenttest.Telemetry
	host *statusHost
	logs *observer.ObservedLogs
}

func newOffline(tb testing.TB, next consumer.Traces) *offline {
	tb.Helper()
	tel := componenttest.NewTelemetry()
	tb.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return newOfflineWith(tb, next, tb.TempDir(), tel)
}

// newOfflineWith is newOffline over procRoot (an empty directory: no process can be read, so
// nothing reaches the kernel) and tel.
func newOfflineWith(tb testing.TB, next consumer.Traces, procRoot string, tel *componenttest.Telemetry) *offline {
	tb.Helper()
	cfg := testConfig(TargetConfig{
		Name: "agent", ProcessName: "agent",
		PythonFunctions: []PythonFunctionConfig{{Pattern: "*:Agent.*", Role: "prompt"}},
	})
	cfg.ProcRoot = procRoot
	core, logs := observer.New(zapcore.InfoLevel)
	set := receivertest.NewNopSettings(componentType)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	set.Logger = zap.New(core)
	r := newReceiver(set, cfg, next)
	var err error
	if r.telemetry, err = newTelemetry(set.TelemetrySettings); err != nil {
		tb.Fatal(err)
	}
	host := newStatusHost()
	r.health = newHealth(host)
	r.symbolizer = symbolize.New(symbolize.Options{ProcRoot: cfg.ProcRoot})
	r.redactor = redact.New()
	r.builder = spans.NewBuilder(spans.Options{MaxOpenSpans: 1000})
	r.clock = newMonoClock()
	if err := r.wire(nil, newAttachProblems(r.health)); err != nil {
		tb.Fatal(err)
	}
	for _, args := range [][]string{{"prompt", "limit:full"}, {"a", "b:none", "c:full", "d"}, nil} {
		p := &spans.Probe{Target: "agent", Symbol: fmt.Sprintf("main.f%d", r.functions.ProbeCount()+1), Role: spans.RoleFunction}
		var policies []redact.Policy
		for _, s := range args {
			name, pol, _ := tracer.ParseArg(s)
			p.Args = append(p.Args, spans.ArgSpec{Name: name})
			policies = append(policies, pol)
		}
		r.functions.AddProbe(p, policies)
	}
	r.registry.traced[pidTraced] = &tracer.Process{ProcInfo: tracer.ProcInfo{PID: pidTraced}, Target: r.registry.targets[0], Capture: &spans.Capture{}}
	r.builder.AddProcess(spans.Process{PID: pidTraced, Target: "agent", Executable: "/srv/agent"})
	return &offline{r: r, tel: tel, host: host, logs: logs}
}

// feed hands one record to the decoder the way the ring buffer reader does: in a buffer of its
// own, 8-byte aligned.
func (o *offline) feed(rec []byte) {
	buf := make([]byte, len(rec), max(len(rec), 8))
	copy(buf, rec)
	o.r.handle(buf)
}

// counts sums a counter's data points by the values of the attributes named.
func (o *offline) counts(tb testing.TB, metric string, keys ...string) map[string]int64 {
	tb.Helper()
	got := map[string]int64{}
	m, err := o.tel.GetMetric(metric)
	if err != nil {
		return got
	}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		k := ""
		for i, key := range keys {
			v, _ := dp.Attributes.Value(attribute.Key(key))
			if i > 0 {
				k += "/"
			}
			k += v.AsString()
		}
		got[k] += dp.Value
	}
	return got
}

// The kernel structs' sizes, as the test lays records out (independent of the tracers' tables).
var (
	sizeFunc      = int(unsafe.Sizeof(probes.FuncEvent{}))
	sizeGoroutine = int(unsafe.Sizeof(probes.GoroutineEvent{}))
	sizeSyscall   = int(unsafe.Sizeof(probes.SyscallEvent{}))
	sizeTLS       = int(unsafe.Sizeof(probes.TLSEvent{}))
	headTLS       = int(unsafe.Offsetof(probes.TLSEvent{}.Data))
	headPyStack   = int(unsafe.Offsetof(probes.PythonStackEvent{}.Frames))
	headPyAudit   = int(unsafe.Offsetof(probes.PythonAuditEvent{}.Values))
	headFDIO      = int(unsafe.Offsetof(probes.FDIOEvent{}.Data))
)

// recordBytes returns the bytes of a record struct as the kernel writes them.
func recordBytes[T any](e *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(e)), unsafe.Sizeof(*e))
}

func header(kind, pid, probeID uint32, ts uint64) probes.EventHeader {
	return probes.EventHeader{TsNs: ts, Kind: kind, Tgid: pid, Tid: pid, ProbeId: probeID}
}

func funcEntry(pid, probeID uint32, ts uint64, args ...string) []byte {
	e := probes.FuncArgsEvent{Hdr: header(probes.KindFuncEntry, pid, probeID, ts)}
	if len(args) == 0 {
		return recordBytes(&e)[:sizeFunc]
	}
	for i, a := range args {
		e.Args[i].Kind = probes.ArgString
		e.Args[i].Num = uint64(len(a))
		e.Args[i].Captured = uint32(copy(e.Args[i].Data[:], a))
	}
	return recordBytes(&e)
}

func funcReturn(pid, probeID uint32, ts uint64) []byte {
	e := probes.FuncEvent{Hdr: header(probes.KindFuncReturn, pid, probeID, ts)}
	return recordBytes(&e)
}

func syscallEnter(pid, nr uint32, ts uint64, path string) []byte {
	e := probes.SyscallEvent{Fd: 3, Family: 2, Port: 443, Addr: [16]uint8{127, 0, 0, 1}, StackLen: 2, Stack: [48]uint64{0x401000, 0x402000}}
	e.Hdr.TsNs, e.Hdr.Kind, e.Hdr.Tgid, e.Hdr.Tid, e.Hdr.ProbeId = ts, probes.KindSyscallEnter, pid, pid, nr
	e.PathLen = uint32(copy(e.Path[:], path))
	return recordBytes(&e)
}

func syscallExit(pid uint32, ts uint64, ret int64) []byte {
	e := probes.SyscallExitEvent{Ret: ret}
	e.Hdr.TsNs, e.Hdr.Kind, e.Hdr.Tgid, e.Hdr.Tid = ts, probes.KindSyscallExit, pid, pid
	return recordBytes(&e)
}

func processEvent(kind, pid, child, target uint32, ts uint64, filename string) []byte {
	e := probes.ProcessEvent{ChildTgid: child, TargetId: target}
	e.Hdr.TsNs, e.Hdr.Kind, e.Hdr.Tgid, e.Hdr.Tid = ts, kind, pid, pid
	e.FilenameLen = uint32(copy(e.Filename[:], filename))
	return recordBytes(&e)
}

func pythonStack(pid uint32, ts uint64, probeID uint32, codes ...uint64) []byte {
	e := probes.PythonStackEvent{Depth: uint32(len(codes)), Layout: 1}
	e.Hdr.TsNs, e.Hdr.Kind, e.Hdr.Tgid, e.Hdr.Tid, e.Hdr.ProbeId = ts, probes.KindPythonStack, pid, pid, probeID
	for i, c := range codes {
		e.Frames[i] = probes.PyFrame{Code: c, Frame: 0x7000 + uint64(i)*0x100, Lasti: 4}
	}
	return recordBytes(&e)[:headPyStack+len(codes)*int(unsafe.Sizeof(probes.PyFrame{}))]
}

func pythonAudit(pid uint32, ts uint64, name string, values ...probes.PyValue) []byte {
	e := probes.PythonAuditEvent{Nvalues: uint32(len(values)), Nargs: 2}
	e.Hdr.TsNs, e.Hdr.Kind, e.Hdr.Tgid, e.Hdr.Tid = ts, probes.KindPythonAudit, pid, pid
	e.NameLen = uint32(copy(e.Name[:], name))
	copy(e.Values[:], values)
	return recordBytes(&e)[:headPyAudit+len(values)*int(unsafe.Sizeof(probes.PyValue{}))]
}

func pyStr(parent uint8, s string) probes.PyValue {
	v := probes.PyValue{Type: probes.PyStr, Parent: parent, Kind: 1, Ascii: 1, Len: uint32(len(s))}
	v.Captured = uint32(copy(v.Data[:], s))
	return v
}

func tlsEvent(pid uint32, ts uint64, dir, source uint8, conn uint64, data string) []byte {
	e := new(probes.TLSEvent)
	e.Hdr.TsNs, e.Hdr.Kind, e.Hdr.Tgid, e.Hdr.Tid = ts, probes.KindTLSData, pid, pid
	e.Conn, e.Direction, e.Source = conn, dir, source
	e.Len = uint32(len(data))
	e.Captured = uint32(copy(e.Data[:], data))
	return recordBytes(e)[:headTLS+len(data)]
}

// TestDecodeDropsInvalidRecords: every record that fails a check is dropped and counted by
// kind and reason, and none of them reaches the span builder.
func TestDecodeDropsInvalidRecords(t *testing.T) {
	unknownKind := funcReturn(pidTraced, 1, 1)
	binary.LittleEndian.PutUint32(unknownKind[offsetKind:], 99)
	badDirection := tlsEvent(pidTraced, 1, 7, probes.TLSOpenSSL, 1, "x")
	overCaptured := tlsEvent(pidTraced, 1, probes.TLSWrite, probes.TLSOpenSSL, 1, "abc")
	binary.LittleEndian.PutUint32(overCaptured[unsafe.Offsetof(probes.TLSEvent{}.Captured):], 4096)
	for _, tc := range []struct {
		name string
		rec  []byte
		want string // kind/reason
	}{
		{"shorter than a header", make([]byte, sizeHeader-1), "unknown/short_header"},
		{"unknown kind", unknownKind, "unknown/unknown_kind"},
		{"kind zero", make([]byte, sizeHeader), "unknown/unknown_kind"},
		{"short syscall", syscallEnter(pidTraced, 42, 1, "")[:sizeSyscall-1], "syscall_enter/short_record"},
		{"return of an unknown probe", funcReturn(pidTraced, 4000, 1), "func_return/unknown_probe"},
		{"short goroutine", recordBytes(&probes.GoroutineEvent{Hdr: header(probes.KindGoroutineCreate, pidTraced, 0, 1)})[:sizeGoroutine-8], "goroutine_create/short_record"},
		{"unknown probe", funcEntry(pidTraced, 4000, 1), "func_entry/unknown_probe"},
		{"unknown syscall", syscallEnter(pidTraced, 1000, 1, ""), "syscall_enter/unknown_syscall"},
		{"short process record", processEvent(probes.KindProcessExit, pidTraced, 0, 0, 1, "")[:sizeProcess-8], "process_exit/short_record"},
		{"short TLS head", tlsEvent(pidTraced, 1, probes.TLSWrite, probes.TLSOpenSSL, 1, "")[:headTLS-1], "tls_data/short_record"},
		{"TLS direction", badDirection, "tls_data/tls_direction"},
		{"TLS captured beyond the record", overCaptured, "tls_data/tls_length"},
		{"short Python stack", pythonStack(pidTraced, 1, 0)[:headPyStack-4], "python_stack/short_record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOffline(t, consumertest.NewNop())
			o.feed(tc.rec)
			got := o.counts(t, "agenttrail.ebpf.events.invalid", "kind", "reason")
			if len(got) != 1 || got[tc.want] != 1 {
				t.Errorf("invalid records %v, want {%s: 1}", got, tc.want)
			}
			if n := o.r.builder.OpenSpans() + o.r.builder.PendingSpans(); n != 0 {
				t.Errorf("a dropped record made %d spans", n)
			}
		})
	}
}

// TestDecodeViewZeroesWhatTheKernelDidNotSend: a record shorter than its struct is read through
// a copy whose missing part is zero, never the bytes of an earlier, longer record.
func TestDecodeViewZeroesWhatTheKernelDidNotSend(t *testing.T) {
	d := newOffline(t, consumertest.NewNop()).r.decoder
	long := tlsEvent(pidTraced, 1, probes.TLSWrite, probes.TLSOpenSSL, 1, "secret plaintext of another process")
	d.view(long[1:], sizeTLS) // misaligned: copied
	short := tlsEvent(pidTraced, 1, probes.TLSWrite, probes.TLSOpenSSL, 1, "")
	rec := d.view(short, sizeTLS)
	if len(rec) != len(short) {
		t.Fatalf("view length %d, want %d", len(rec), len(short))
	}
	e := tracer.As[probes.TLSEvent](rec)
	for i, b := range e.Data[:64] {
		if b != 0 {
			t.Fatalf("byte %d past the record is %q, want 0", i, b)
		}
	}
	full := syscallEnter(pidTraced, 42, 1, "/etc/passwd")
	if v := d.view(full, sizeSyscall); unsafe.SliceData(v) != unsafe.SliceData(full) {
		t.Errorf("a whole aligned record was copied")
	}
}

// TestDecodeRecords: well-formed records of every kind become spans, with no record counted
// as invalid or panicking.
func TestDecodeRecords(t *testing.T) {
	sink := new(consumertest.TracesSink)
	o := newOffline(t, sink)
	for _, rec := range seedRecords() {
		o.feed(rec)
	}
	o.r.flush(context.Background())
	if got := o.counts(t, "agenttrail.ebpf.events.invalid", "kind", "reason"); len(got) != 0 {
		t.Errorf("invalid records: %v", got)
	}
	if got := o.counts(t, "agenttrail.ebpf.events.panics", "kind"); len(got) != 0 {
		t.Errorf("panics: %v", got)
	}
	names := map[string]bool{}
	for _, td := range sink.AllTraces() {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			ss := td.ResourceSpans().At(i).ScopeSpans()
			for j := 0; j < ss.Len(); j++ {
				for k := 0; k < ss.At(j).Spans().Len(); k++ {
					names[ss.At(j).Spans().At(k).Name()] = true
				}
			}
		}
	}
	for _, want := range []string{"main.f1", "connect", "main.f2"} {
		if !names[want] {
			t.Errorf("no span %q; got %v", want, names)
		}
	}
}

// seedRecords is a plausible stream of every record kind for pidTraced.
func seedRecords() [][]byte {
	ts := uint64(time.Second)
	return [][]byte{
		funcEntry(pidTraced, 1, ts, "export 4111 1111 1111 1111", "42"),
		syscallEnter(pidTraced, 42, ts+1, ""),
		syscallExit(pidTraced, ts+2, 0),
		syscallEnter(pidTraced, 257, ts+3, "/etc/hostname"),
		syscallExit(pidTraced, ts+4, 3),
		tlsEvent(pidTraced, ts+5, probes.TLSWrite, probes.TLSOpenSSL, 0xabc,
			"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nContent-Length: 17\r\n\r\n{\"model\":\"gpt-x\"}"),
		tlsEvent(pidTraced, ts+6, probes.TLSRead, probes.TLSOpenSSL, 0xabc,
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
		tlsEvent(pidTraced, ts+7, probes.TLSClose, probes.TLSOpenSSL, 0xabc, ""),
		funcReturn(pidTraced, 1, ts+8),
		func() []byte {
			e := probes.GoroutineEvent{Hdr: header(probes.KindGoroutineCreate, pidTraced, 0, ts+9), Child: 0xc000100000}
			return recordBytes(&e)
		}(),
		funcEntry(pidTraced, 2, ts+10, "a", "b", "c", "d"),
		pythonStack(pidTraced, ts+11, probes.PythonSampleForNext, 0x1000, 0x2000),
		pythonAudit(pidTraced, ts+12, "socket.connect", pyStr(probes.PyTopLevel, "sock"), pyStr(probes.PyTopLevel, "10.0.0.1")),
		pythonStack(pidTraced, ts+13, probes.PythonSampleWait, 0x1000),
		processEvent(probes.KindProcessFork, pidTraced, pidTraced+2, 1, ts+14, ""),
		processEvent(probes.KindProcessExec, pidTraced+2, 0, 1, ts+15, "/bin/sh"),
		processEvent(probes.KindThreadExit, pidTraced, 0, 0, ts+16, ""),
		funcReturn(pidTraced, 2, ts+17),
		processEvent(probes.KindProcessExit, pidOther, 0, 0, ts+18, ""),
		fdIO(pidTraced, ts+19, probes.FDIOTCP, probes.FDIOPlain, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n"),
		fdIO(pidTraced, ts+20, probes.FDIOUDP, probes.FDIODNS, "\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x07example\x00\x00\x01\x00\x01"),
	}
}

// fdIO is a socket I/O record of a send to 203.0.113.9:80, or :53 (DNS), with its payload.
func fdIO(pid uint32, ts uint64, kind, flags uint8, data string) []byte {
	e := new(probes.FDIOEvent)
	e.Hdr.TsNs, e.Hdr.Kind, e.Hdr.Tgid, e.Hdr.Tid = ts, probes.KindFDIO, pid, pid
	e.Sock, e.Ino, e.Bytes, e.Fd, e.Family = 0xffff888000001000, 4242, uint64(len(data)), 5, unix.AF_INET
	e.PeerPort, e.Direction, e.Kind, e.Flags = 80, probes.FDIOSend, kind, flags
	if flags&probes.FDIODNS != 0 {
		e.PeerPort = 53
	}
	copy(e.Peer[:], []byte{203, 0, 113, 9})
	e.Captured = uint32(copy(e.Data[:], data))
	return recordBytes(e)[:headFDIO+len(data)]
}

// TestCaptureTLSSeen: a process set up with no TLS library found says tls=openssl once its TLS
// plaintext is read (a library loaded later), on the spans flushed from then on.
func TestCaptureTLSSeen(t *testing.T) {
	sink := new(consumertest.TracesSink)
	o := newOffline(t, sink)
	c := &spans.Capture{TLS: tracer.CaptureNone, Python: tracer.CaptureNA}
	o.r.registry.traced[pidTraced].Capture = c
	o.r.builder.AddProcess(spans.Process{PID: pidTraced, Target: "agent", Capture: c})
	for _, rec := range seedRecords()[:9] { // a call with an HTTPS exchange inside
		o.feed(rec)
	}
	o.r.flush(t.Context())
	if len(sink.AllTraces()) == 0 {
		t.Fatal("no spans")
	}
	res := sink.AllTraces()[0].ResourceSpans().At(0).Resource().Attributes()
	if v, _ := res.Get("agenttrail.capture.tls"); v.Str() != "openssl" {
		t.Errorf("agenttrail.capture.tls = %q, want openssl", v.Str())
	}
	if v, ok := res.Get("agenttrail.capture.incomplete"); !ok || v.Bool() {
		t.Errorf("agenttrail.capture.incomplete = %v", v.AsString())
	}
}
