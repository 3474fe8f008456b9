package spans

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

var pyAsyncPrompt = &Probe{Target: "py-agent", Symbol: "agent:handle_prompt", Role: RolePrompt, Coroutine: true}

func coro(frame uint64) StackFunc {
	return StackFunc{Key: [2]uint64{frame, 0x2000}, Probe: pyAsyncPrompt, Tracked: true}
}

func spansNamed(td ptrace.Traces, name string) []ptrace.Span {
	var out []ptrace.Span
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		ss := td.ResourceSpans().At(i).ScopeSpans().At(0).Spans()
		for j := 0; j < ss.Len(); j++ {
			if ss.At(j).Name() == name {
				out = append(out, ss.At(j))
			}
		}
	}
	return out
}

func strAttr(s ptrace.Span, k string) string {
	v, ok := s.Attributes().Get(k)
	if !ok {
		return ""
	}
	return v.AsString()
}

// TestCoroutineSpans: two calls of one coroutine interleaved on one thread (asyncio.gather)
// are one span each, open while suspended, with each run's syscalls under its own call, ended
// by CoroutineEnd at their last observation.
func TestCoroutineSpans(t *testing.T) {
	b, c := pyBuilder(t)
	const tid = 9
	sample := func(funcs ...StackFunc) Header {
		h := c.at(0, tid)
		b.ObserveStack(h, funcs, false)
		return h
	}
	connect := func() {
		b.SyscallEnter(c.at(0, tid), Syscall{Name: "connect"})
		b.SyscallExit(c.at(0, tid), 0, netipNone)
	}
	h1 := sample(coro(0x100)) // call 1 runs
	connect()
	sample(coro(0x200)) // call 2 runs: call 1 awaits
	connect()
	sample()            // the loop waits
	sample(coro(0x100)) // call 1 resumes
	connect()
	last1 := sample(coro(0x100))
	sample(coro(0x200))
	connect()
	last2 := sample(coro(0x200))
	sample()
	if n := b.OpenCoroutineSpans(pid); n != 2 {
		t.Fatalf("%d coroutine spans open, want 2", n)
	}
	early := b.Flush()
	if len(spansNamed(early, "invoke_agent py-agent")) != 0 {
		t.Fatal("a coroutine span ended before its end was reported")
	}
	if !b.CoroutineEnd(c.at(0, tid), 0x100, 0x2000, "completed", "") || !b.CoroutineEnd(c.at(0, tid), 0x200, 0x2000, "abandoned", "dropped") {
		t.Fatal("CoroutineEnd found no span")
	}
	if b.CoroutineEnd(c.at(0, tid), 0x100, 0x2000, "completed", "") {
		t.Error("a coroutine ended twice")
	}
	td := b.Flush()
	prompts := spansNamed(td, "invoke_agent py-agent")
	conns := spansNamed(early, "connect")
	if len(prompts) != 2 || len(conns) != 4 {
		t.Fatalf("%d prompt spans, %d connects; want 2 and 4", len(prompts), len(conns))
	}
	p1, p2 := prompts[0], prompts[1]
	if strAttr(p1, "agenttrail.python.coroutine.end") != "completed" {
		p1, p2 = p2, p1
	}
	requireChild(t, p1, conns[0])
	requireChild(t, p2, conns[1])
	requireChild(t, p1, conns[2])
	requireChild(t, p2, conns[3])
	if !p1.StartTimestamp().AsTime().Equal(h1.Time) || !p1.EndTimestamp().AsTime().Equal(last1.Time) || !p2.EndTimestamp().AsTime().Equal(last2.Time) {
		t.Errorf("bounds: %v-%v, %v", p1.StartTimestamp(), p1.EndTimestamp(), p2.EndTimestamp())
	}
	if strAttr(p2, "agenttrail.python.coroutine.end") != "abandoned" || p2.Status().Code() != ptrace.StatusCodeError || p1.Status().Code() == ptrace.StatusCodeError {
		t.Errorf("ends: %s %v, %s %v", strAttr(p1, "agenttrail.python.coroutine.end"), p1.Status().Code(), strAttr(p2, "agenttrail.python.coroutine.end"), p2.Status().Code())
	}
	if p1.TraceID() == p2.TraceID() {
		t.Error("two calls share a trace")
	}
	if b.OpenSpans() != 0 || b.OpenCoroutineSpans(pid) != 0 {
		t.Errorf("%d spans open", b.OpenSpans())
	}
}

// TestCoroutineSpanBounds: an untracked coroutine still splits at awaits; a tracked one left open
// ends at the process's exit saying its end was not observed; past MaxCoroutineSpans the oldest
// ends (evicted); a coroutine of another function at a frame address ends the old call there.
func TestCoroutineSpanBounds(t *testing.T) {
	b := NewBuilder(Options{MaxCoroutineSpans: 2})
	b.AddProcess(Process{PID: pid, Target: "py-agent"})
	c := &clock{t: time.Unix(1700000000, 0)}
	untracked := coro(0x900)
	untracked.Tracked = false
	b.ObserveStack(c.at(0, 1), []StackFunc{untracked}, false)
	b.ObserveStack(c.at(0, 1), nil, false)
	b.ObserveStack(c.at(0, 1), []StackFunc{untracked}, false)
	b.ObserveStack(c.at(0, 1), nil, false)
	if n := len(spansNamed(b.Flush(), "invoke_agent py-agent")); n != 2 {
		t.Errorf("untracked coroutine: %d spans, want 2 (one per run)", n)
	}

	for _, frame := range []uint64{0x100, 0x200, 0x300} { // 0x100 is evicted
		b.ObserveStack(c.at(0, 1), []StackFunc{coro(frame)}, false)
		b.ObserveStack(c.at(0, 1), nil, false)
	}
	other := coro(0x200)
	other.Key[1] = 0x3000 // another function's coroutine at 0x200: the old one is gone
	b.ObserveStack(c.at(0, 2), []StackFunc{other}, false)
	b.ProcessExit(c.at(0, 1))
	ends := map[string]int{}
	for _, s := range spansNamed(b.Flush(), "invoke_agent py-agent") {
		ends[strAttr(s, "agenttrail.python.coroutine.end")]++
	}
	want := map[string]int{CoroutineEndEvicted: 1, CoroutineEndReused: 1, CoroutineEndNotObserved: 2}
	for k, n := range want {
		if ends[k] != n {
			t.Errorf("ends %v, want %v", ends, want)
			break
		}
	}
	cs := b.Counters()
	if cs.CoroutineSpansEvicted != 1 || cs.CoroutineAddressReused != 1 || cs.CoroutineSpansUnended != 2 {
		t.Errorf("counters %+v", cs)
	}
	if b.OpenSpans() != 0 {
		t.Errorf("%d spans open", b.OpenSpans())
	}
}

// TestCoroutineUnknownParent: a plain-HTTP call made from socket I/O while a coroutine call is
// suspended (the thread shows none running) has no parent, and says why; with no coroutine open
// it says nothing, and with the coroutine on the thread's stack it is its child.
func TestCoroutineUnknownParent(t *testing.T) {
	b, c := pyBuilder(t)
	const tid = 3
	model := func() ptrace.Span {
		parent, _ := b.SocketIO(c.at(0, tid), send(sockOne, sink, 100))
		r := b.Reserve(parent)
		b.EndReserved(r, SpanData{Name: "chat model-x", Start: c.t, End: c.t})
		for _, s := range spansNamed(b.Flush(), "chat model-x") {
			return s
		}
		t.Fatal("no model span")
		return ptrace.Span{}
	}
	if s := model(); strAttr(s, "agenttrail.parent.missing") != "" {
		t.Errorf("no coroutine open: parent.missing %q", strAttr(s, "agenttrail.parent.missing"))
	}
	b.ObserveStack(c.at(0, tid), []StackFunc{coro(0x100)}, false)
	running := model()
	b.ObserveStack(c.at(0, tid), nil, false) // it awaits
	suspended := model()
	if running.ParentSpanID().IsEmpty() || strAttr(running, "agenttrail.parent.missing") != "" {
		t.Errorf("running coroutine: parent %s, missing %q", running.ParentSpanID(), strAttr(running, "agenttrail.parent.missing"))
	}
	if !suspended.ParentSpanID().IsEmpty() || strAttr(suspended, "agenttrail.parent.missing") != ParentMissingCoroutine {
		t.Errorf("suspended coroutine: parent %s, missing %q", suspended.ParentSpanID(), strAttr(suspended, "agenttrail.parent.missing"))
	}
	if n := b.Counters().CoroutineUnknownParents; n != 1 {
		t.Errorf("CoroutineUnknownParents %d, want 1", n)
	}
}
