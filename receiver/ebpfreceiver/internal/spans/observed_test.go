package spans

import (
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

var netipNone = netip.AddrPort{}

var (
	pyPrompt = &Probe{Target: "py-agent", Symbol: "customer_agent:Agent.handle_prompt", Role: RolePrompt, File: "/srv/customer_agent.py", Line: 10}
	pyTool   = &Probe{Target: "py-agent", Symbol: "customer_agent:Tools.export", Role: RoleTool, ToolName: "export"}
)

func pyBuilder(t *testing.T) (*Builder, *clock) {
	t.Helper()
	b := NewBuilder(Options{})
	b.AddProcess(Process{PID: pid, Target: "py-agent", Executable: "/usr/bin/python3.11"})
	return b, &clock{t: time.Unix(1700000000, 0)}
}

func fn(p *Probe, frame uint64) StackFunc { return StackFunc{Key: [2]uint64{frame, 0x1000}, Probe: p} }

func TestObserveStackNesting(t *testing.T) {
	b, c := pyBuilder(t)
	const tid = 77
	h1 := c.at(0, tid)
	b.ObserveStack(h1, []StackFunc{fn(pyPrompt, 1)}, false)
	h2 := c.at(0, tid)
	b.ObserveStack(h2, []StackFunc{fn(pyPrompt, 1), fn(pyTool, 2)}, false)
	b.SyscallEnter(c.at(0, tid), Syscall{Name: "connect"})
	b.SyscallExit(c.at(0, tid), 0, netipNone)
	h3 := c.at(0, tid)
	b.ObserveStack(h3, []StackFunc{fn(pyPrompt, 1), fn(pyTool, 2)}, false)
	h4 := c.at(0, tid)
	b.ObserveStack(h4, []StackFunc{fn(pyPrompt, 1)}, false)
	// A second call of the tool (another activation) is another span.
	h5 := c.at(0, tid)
	b.ObserveStack(h5, []StackFunc{fn(pyPrompt, 1), fn(pyTool, 3)}, false)
	h6 := c.at(0, tid)
	b.ObserveStack(h6, nil, false)

	td := b.Flush()
	var prompt ptrace.Span
	var tools []ptrace.Span
	var conn ptrace.Span
	ss := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	for i := 0; i < ss.Len(); i++ {
		switch s := ss.At(i); s.Name() {
		case "invoke_agent py-agent":
			prompt = s
		case "execute_tool export":
			tools = append(tools, s)
		case "connect":
			conn = s
		}
	}
	if len(tools) != 2 || prompt == (ptrace.Span{}) || conn == (ptrace.Span{}) {
		t.Fatalf("spans: %d tools, prompt %v", len(tools), prompt != (ptrace.Span{}))
	}
	requireChild(t, prompt, tools[0])
	requireChild(t, prompt, tools[1])
	requireChild(t, tools[0], conn)
	if !prompt.ParentSpanID().IsEmpty() {
		t.Error("the prompt span has a parent")
	}
	ts := func(h Header) pcommon.Timestamp { return pcommon.NewTimestampFromTime(h.Time) }
	if prompt.StartTimestamp() != ts(h1) || prompt.EndTimestamp() != ts(h5) {
		t.Errorf("prompt bounds %v-%v", prompt.StartTimestamp(), prompt.EndTimestamp())
	}
	if tools[0].StartTimestamp() != ts(h2) || tools[0].EndTimestamp() != ts(h3) {
		t.Errorf("tool bounds %v-%v", tools[0].StartTimestamp(), tools[0].EndTimestamp())
	}
	for _, s := range []ptrace.Span{prompt, tools[0]} {
		if v, _ := s.Attributes().Get("agenttrail.span.bounds"); v.Str() != BoundsObserved {
			t.Errorf("%s: bounds %q", s.Name(), v.Str())
		}
	}
	if b.OpenSpans() != 0 {
		t.Errorf("%d spans open", b.OpenSpans())
	}
}

func TestObserveStackTruncatedAndExpiry(t *testing.T) {
	b, c := pyBuilder(t)
	const tid = 5
	b.ObserveStack(c.at(0, tid), []StackFunc{fn(pyPrompt, 1), fn(pyTool, 2)}, false)
	// A truncated sample without the prompt (outermost) frame does not end it.
	h := c.at(0, tid)
	b.ObserveStack(h, []StackFunc{fn(pyTool, 2)}, true)
	if b.OpenSpans() != 2 {
		t.Fatalf("%d open after a truncated sample", b.OpenSpans())
	}
	// A syscall in progress keeps the thread's spans open.
	b.SyscallEnter(c.at(0, tid), Syscall{Name: "connect"})
	b.ExpireObserved(h.Time.Add(time.Hour), time.Second)
	if b.OpenSpans() != 3 {
		t.Fatalf("%d open during a syscall", b.OpenSpans())
	}
	b.SyscallExit(c.at(0, tid), 0, netipNone)
	b.ExpireObserved(h.Time.Add(500*time.Millisecond), time.Second)
	if b.OpenSpans() != 2 {
		t.Fatalf("%d open before the idle time", b.OpenSpans())
	}
	b.ExpireObserved(h.Time.Add(2*time.Second), time.Second)
	if b.OpenSpans() != 0 {
		t.Fatalf("%d open after the idle time", b.OpenSpans())
	}
	got := spansByName(t, b)
	if got["execute_tool export"].EndTimestamp() != pcommon.NewTimestampFromTime(h.Time) {
		t.Error("expired span does not end when it was last seen")
	}
}

func TestAddSpanAndEvent(t *testing.T) {
	b, c := pyBuilder(t)
	const tid = 9
	b.ObserveStack(c.at(0, tid), []StackFunc{fn(pyTool, 2)}, false)
	h := c.at(0, tid)
	parent := b.ParentOf(h)
	if !parent.HasSpan() {
		t.Fatal("no parent while the tool is open")
	}
	b.Event(h, "socket.connect", ptrace.SpanKindInternal, func(m pcommon.Map) { m.PutStr("k", "v") })
	b.ObserveStack(c.at(0, tid), nil, false)
	if !b.AddSpan(parent, SpanData{Name: "chat m", Kind: ptrace.SpanKindClient, Start: h.Time, End: h.Time.Add(time.Second),
		Attributes: func(m pcommon.Map) { m.PutStr("gen_ai.request.model", "m") }}) {
		t.Fatal("AddSpan failed")
	}
	// With nothing open, an event is a span of its own.
	b.Event(c.at(0, tid), "open", ptrace.SpanKindInternal, nil)
	got := spansByName(t, b)
	tool, chat, open := got["execute_tool export"], got["chat m"], got["open"]
	requireChild(t, tool, chat)
	if tool.Events().Len() != 1 || tool.Events().At(0).Name() != "socket.connect" {
		t.Errorf("tool events %d", tool.Events().Len())
	}
	if open.ParentSpanID() != (pcommon.SpanID{}) || open.TraceID() == tool.TraceID() {
		t.Error("an event with nothing open joined another trace")
	}
	if b.AddSpan(Parent{PID: 1}, SpanData{Name: "x"}) {
		t.Error("AddSpan for an unknown process succeeded")
	}
}

func TestObservedAtProcessExit(t *testing.T) {
	b, c := pyBuilder(t)
	h := c.at(0, 3)
	b.ObserveStack(h, []StackFunc{fn(pyPrompt, 1)}, false)
	b.ProcessExit(c.at(0, 3))
	got := spansByName(t, b)
	s := got["invoke_agent py-agent"]
	if s.Status().Code() == ptrace.StatusCodeError || s.EndTimestamp() != pcommon.NewTimestampFromTime(h.Time) {
		t.Errorf("status %v end %v", s.Status().Code(), s.EndTimestamp())
	}
}

func TestParentForHandoff(t *testing.T) {
	b, c := newTestBuilder(t)
	// The connection's writer goroutine was created under the first request's model call.
	b.FuncEntry(c.at(0xa0, 1), probeChat, nil)
	b.GoroutineCreate(c.at(0xa0, 1), 0xf0)
	b.FuncReturn(c.at(0xa0, 1), probeChat.ID)
	// A later request's model call hands its request to that writer goroutine.
	b.FuncEntry(c.at(0xb0, 2), probePrompt, nil)
	b.FuncEntry(c.at(0xb0, 2), probeChat, nil)
	writer := c.at(0xf0, 3)
	if got, want := b.ParentForHandoff(writer, RoleInference), b.ParentOf(c.at(0xb0, 2)); got != want {
		t.Errorf("hand-off parent %+v, want the open model call %+v", got, want)
	}
	// Two model calls open at once: no guess, the writer's own inherited parent stands.
	b.FuncEntry(c.at(0xc0, 4), probeChat, nil)
	if got, want := b.ParentForHandoff(writer, RoleInference), b.ParentOf(writer); got != want {
		t.Errorf("with two open model calls, parent %+v, want the inherited %+v", got, want)
	}
}

func TestThreadExitEndsItsCalls(t *testing.T) {
	b, c := newTestBuilder(t)
	native := c.at(0, 7) // a thread of a native program, keyed by its tid
	b.FuncEntry(native, probeA, nil)
	b.SyscallEnter(c.at(0, 7), Syscall{Name: "connect"})
	b.FuncEntry(c.at(0xa0, 8), probeB, nil) // a Go call on another thread: not affected
	b.ThreadExit(c.at(0, 7))
	got := spansByName(t, b)
	if a := got["main.A"]; a.Status().Code() != ptrace.StatusCodeError || a.Status().Message() != "thread exited before the call returned" {
		t.Errorf("native call: status %v %q", a.Status().Code(), a.Status().Message())
	}
	if conn := got["connect"]; conn.Status().Message() != "thread exited during the syscall" {
		t.Errorf("syscall: %q", conn.Status().Message())
	}
	if _, ok := got["main.B"]; ok || b.OpenSpans() != 1 {
		t.Errorf("the other thread's call was ended (open spans %d)", b.OpenSpans())
	}
}
