package python

import (
	"encoding/binary"
	"testing"
	"time"
	"unsafe"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/pyinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
)

// TestCoroutineEnds: two calls of a configured coroutine open and suspended; one's frame is
// read cleared at housekeeping (its span ends completed, and its gen_dealloc record later ends
// nothing more), the other is freed suspended (abandoned, error status); a record of a call no
// span was opened for counts as no_span.
func TestCoroutineEnds(t *testing.T) {
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(t.Context()) })
	p := newTracer(t, tel, registry{}, &problems{})
	l := pyinfo.Layouts["3.11"]
	const pid, code = 77, 0xc0de
	// Two coroutine objects at pyMemBase and pyMemBase+256: the first cleared, the second
	// suspended at an await.
	mem := make(pyMemImage, 512)
	objA, objB := uint64(pyMemBase), uint64(pyMemBase+256)
	for i, obj := range []uint64{objA, objB} {
		off := obj - pyMemBase
		mem[off+l.Gen.FrameState] = byte([]int8{l.Gen.Cleared, l.Gen.Suspended[0]}[i])
		binary.LittleEndian.PutUint64(mem[off+l.Gen.Frame+uint64(l.Kernel.FrameCode):], code)
	}
	p.reader.Close()
	p.reader = pyinfo.NewMemReader(func(uint32) (pyinfo.Mem, error) { return mem, nil })
	p.reader.Timeout = 0
	p.procs[pid] = &pyProc{interp: &pyInterp{in: &pyinfo.Interpreter{Layout: l}}, codes: map[uint64]uint64{code: 0}}
	b := p.env.Builder
	b.AddProcess(spans.Process{PID: pid, Target: "py"})
	probe := &spans.Probe{Target: "py", Symbol: "agent:handle", Role: spans.RolePrompt, Coroutine: true}
	now := time.Unix(1700000000, 0)
	h := func(tid uint32) spans.Header {
		now = now.Add(time.Millisecond)
		return spans.Header{PID: pid, TID: tid, Time: now}
	}
	frameA, frameB := objA+l.Gen.Frame, objB+l.Gen.Frame
	for _, f := range []uint64{frameA, frameB} {
		b.ObserveStack(h(1), []spans.StackFunc{{Key: [2]uint64{f, code}, Probe: probe, Tracked: true}}, false)
	}
	b.ObserveStack(h(1), nil, false)
	p.Housekeeping(now)
	if n := b.OpenCoroutineSpans(pid); n != 1 {
		t.Fatalf("%d coroutine spans open after housekeeping, want 1 (the suspended one)", n)
	}
	record := func(frame uint64, state int8) []byte {
		var e probes.PythonCoroEndEvent
		e.Frame, e.Code, e.State = frame, code, state
		return unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))
	}
	for _, r := range []struct {
		frame uint64
		state int8
	}{{frameA, l.Gen.Cleared}, {frameB, l.Gen.Suspended[0]}, {frameB + 4096, l.Gen.Cleared}} {
		if drop := p.onCoroEnd(h(1), record(r.frame, r.state)); drop != "" {
			t.Fatalf("record dropped: %s", drop)
		}
	}
	ends := map[string]string{}
	td := b.Flush()
	ss := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	for i := 0; i < ss.Len(); i++ {
		s := ss.At(i)
		end, _ := s.Attributes().Get("agenttrail.python.coroutine.end")
		ends[end.AsString()] = s.Status().Code().String()
	}
	if len(ends) != 2 || ends[pyinfo.CoroutineCompleted] != ptrace.StatusCodeUnset.String() || ends[pyinfo.CoroutineAbandoned] != ptrace.StatusCodeError.String() {
		t.Errorf("spans by end: %v", ends)
	}
	m, err := tel.GetMetric("agenttrail.ebpf.python.coroutine.ends")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		v, _ := dp.Attributes.Value("end")
		got[v.AsString()] += dp.Value
	}
	if want := map[string]int64{"completed": 1, "abandoned": 1, "no_span": 1}; len(got) != len(want) || got["completed"] != 1 || got["abandoned"] != 1 || got["no_span"] != 1 {
		t.Errorf("ends %v, want %v", got, want)
	}
}
