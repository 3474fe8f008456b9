package spans

import (
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"golang.org/x/sys/unix"
)

const pid = 4242

var (
	probeA      = &Probe{ID: 1, Target: "agent", Symbol: "main.A", Role: RoleFunction, File: "/src/main.go", Line: 10}
	probeB      = &Probe{ID: 2, Target: "agent", Symbol: "main.B", Role: RoleFunction}
	probePrompt = &Probe{ID: 3, Target: "customer-agent", Symbol: "main.(*Agent).HandlePrompt", Role: RolePrompt}
	probeTool   = &Probe{ID: 4, Target: "customer-agent", Symbol: "main.(*Tools).Export", Role: RoleTool, ToolName: "customer-data-export"}
	probeChat   = &Probe{ID: 5, Target: "customer-agent", Symbol: "main.callModel", Role: RoleInference, Model: "model-x"}
)

// clock hands out headers with increasing times.
type clock struct{ t time.Time }

func (c *clock) at(routine uint64, tid uint32) Header {
	c.t = c.t.Add(time.Millisecond)
	return Header{Time: c.t, PID: pid, TID: tid, Routine: routine}
}

func newTestBuilder(t *testing.T) (*Builder, *clock) {
	t.Helper()
	b := NewBuilder(Options{})
	b.AddProcess(Process{PID: pid, Target: "agent", Executable: "/srv/agent", IsGo: true})
	return b, &clock{t: time.Unix(1700000000, 0)}
}

// spansByName flushes and indexes the spans by name; names must be unique in the test.
func spansByName(t *testing.T, b *Builder) map[string]ptrace.Span {
	t.Helper()
	td := b.Flush()
	out := map[string]ptrace.Span{}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			for k := 0; k < ss.Spans().Len(); k++ {
				s := ss.Spans().At(k)
				if _, dup := out[s.Name()]; dup {
					t.Fatalf("span name %q twice", s.Name())
				}
				out[s.Name()] = s
			}
		}
	}
	return out
}

func requireChild(t *testing.T, parent, child ptrace.Span) {
	t.Helper()
	if child.TraceID() != parent.TraceID() {
		t.Errorf("%s is in trace %s, its parent %s in %s", child.Name(), child.TraceID(), parent.Name(), parent.TraceID())
	}
	if child.ParentSpanID() != parent.SpanID() {
		t.Errorf("%s has parent %s, want %s (%s)", child.Name(), child.ParentSpanID(), parent.SpanID(), parent.Name())
	}
}

func TestNestedCallsOnOneGoroutine(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeA, nil)
	b.FuncEntry(c.at(0xa0, 2), probeB, nil) // same goroutine, another thread: still nested
	b.FuncReturn(c.at(0xa0, 2), probeB.ID)
	b.FuncReturn(c.at(0xa0, 1), probeA.ID)
	got := spansByName(t, b)
	a, bb := got["main.A"], got["main.B"]
	if !a.ParentSpanID().IsEmpty() {
		t.Errorf("outermost call has parent %s", a.ParentSpanID())
	}
	requireChild(t, a, bb)
	if d := a.EndTimestamp().AsTime().Sub(a.StartTimestamp().AsTime()); d != 3*time.Millisecond {
		t.Errorf("duration of A = %v, want 3ms", d)
	}
	if v, _ := a.Attributes().Get("code.file.path"); v.Str() != "/src/main.go" {
		t.Errorf("code.file.path = %q", v.Str())
	}
	if a.Status().Code() != ptrace.StatusCodeUnset {
		t.Errorf("status %v", a.Status().Code())
	}
	if b.OpenSpans() != 0 {
		t.Errorf("open spans left: %d", b.OpenSpans())
	}
}

func TestSeparateOutermostCallsAreSeparateTraces(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeA, nil)
	b.FuncReturn(c.at(0xa0, 1), probeA.ID)
	b.FuncEntry(c.at(0xb0, 1), probeB, nil)
	b.FuncReturn(c.at(0xb0, 1), probeB.ID)
	got := spansByName(t, b)
	if got["main.A"].TraceID() == got["main.B"].TraceID() {
		t.Fatal("two outermost calls share a trace id")
	}
}

func TestGoroutineChildInheritsCallerSpan(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeTool, []ArgValue{{Name: "query", Value: "all"}})
	b.GoroutineCreate(c.at(0xa0, 1), 0xc0) // net/http's dial goroutine
	b.GoroutineCreate(c.at(0xc0, 3), 0xd0) // and one it creates in turn
	peer := netip.MustParseAddrPort("203.0.113.9:443")
	b.SyscallEnter(c.at(0xd0, 3), Syscall{Name: "connect", FD: 7, Peer: peer, Stack: []Frame{{Function: "net.(*netFD).connect", File: "fd_unix.go", Line: 1}}})
	b.SyscallExit(c.at(0xd0, 3), -int64(unix.EINPROGRESS), netip.AddrPort{})
	b.FuncReturn(c.at(0xa0, 1), probeTool.ID)
	got := spansByName(t, b)
	tool, conn := got["execute_tool customer-data-export"], got["connect"]
	requireChild(t, tool, conn)
	if conn.Kind() != ptrace.SpanKindClient {
		t.Errorf("connect kind %v", conn.Kind())
	}
	if conn.Status().Code() == ptrace.StatusCodeError {
		t.Errorf("EINPROGRESS marked as error: %s", conn.Status().Message())
	}
	wantAttrs := map[string]any{
		"network.peer.address": "203.0.113.9", "network.peer.port": int64(443),
		"network.type": "ipv4", "code.stacktrace": "net.(*netFD).connect (fd_unix.go:1)",
	}
	requireAttrs(t, conn.Attributes(), wantAttrs)
	requireAttrs(t, tool.Attributes(), map[string]any{
		"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "customer-data-export",
		"agenttrail.arg.query": "all", "gen_ai.tool.call.arguments": `{"query":"all"}`,
	})
}

func requireAttrs(t *testing.T, m pcommon.Map, want map[string]any) {
	t.Helper()
	for k, w := range want {
		v, ok := m.Get(k)
		if !ok {
			t.Errorf("attribute %s missing", k)
			continue
		}
		if got := v.AsRaw(); got != w {
			t.Errorf("attribute %s = %#v, want %#v", k, got, w)
		}
	}
}

func TestRolesNameSpans(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probePrompt, []ArgValue{{Name: "prompt", Value: "hi [REDACTED:card]", Redacted: 1}})
	b.FuncEntry(c.at(0xa0, 1), probeChat, nil)
	b.FuncReturn(c.at(0xa0, 1), probeChat.ID)
	b.FuncReturn(c.at(0xa0, 1), probePrompt.ID)
	got := spansByName(t, b)
	prompt, chat := got["invoke_agent customer-agent"], got["chat model-x"]
	requireChild(t, prompt, chat)
	requireAttrs(t, prompt.Attributes(), map[string]any{
		"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "customer-agent",
		"code.function.name": "main.(*Agent).HandlePrompt", "agenttrail.arg.prompt": "hi [REDACTED:card]",
		"agenttrail.arg.prompt.redactions": int64(1),
	})
	requireAttrs(t, chat.Attributes(), map[string]any{"gen_ai.operation.name": "chat", "gen_ai.request.model": "model-x"})
}

func TestPanicUnwindClosesInnerCallsWithError(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeA, nil)
	b.FuncEntry(c.at(0xa0, 1), probeB, nil)
	b.FuncReturn(c.at(0xa0, 1), probeA.ID) // B panicked, A recovered
	got := spansByName(t, b)
	if got["main.B"].Status().Code() != ptrace.StatusCodeError {
		t.Error("unwound call not marked as error")
	}
	if got["main.A"].Status().Code() == ptrace.StatusCodeError {
		t.Error("the call that returned is marked as error")
	}
	if b.Counters().UnwoundSpans != 1 {
		t.Errorf("unwound counter %d", b.Counters().UnwoundSpans)
	}
}

func TestProcessExitMidCall(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeA, nil)
	b.SyscallEnter(c.at(0xa0, 1), Syscall{Name: "execve", Path: "/bin/sh", Argv: []string{"sh", "-c", "id"}})
	b.ProcessExit(c.at(0, 1))
	got := spansByName(t, b)
	a := got["main.A"]
	if a.Status().Code() != ptrace.StatusCodeError || a.Status().Message() != "process exited before the call returned" {
		t.Errorf("status %v %q", a.Status().Code(), a.Status().Message())
	}
	exec := got["execve"]
	requireChild(t, a, exec)
	requireAttrs(t, exec.Attributes(), map[string]any{"process.command_line": "sh -c id", "process.executable.path": "/bin/sh"})
	if b.HasProcess(pid) || b.OpenSpans() != 0 {
		t.Errorf("process state left: has=%v open=%d", b.HasProcess(pid), b.OpenSpans())
	}
}

func TestOpenatBecomesEventOfTheCallingFunction(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeA, nil)
	b.SyscallEnter(c.at(0xa0, 1), Syscall{Name: "openat", Path: "/data/customers.db", Flags: unix.O_RDONLY | unix.O_CLOEXEC})
	b.SyscallExit(c.at(0xa0, 1), 5, netip.AddrPort{})
	b.FuncReturn(c.at(0xa0, 1), probeA.ID)
	b.SyscallEnter(c.at(0xb0, 2), Syscall{Name: "openat", Path: "/etc/hosts"}) // outside any call
	b.SyscallExit(c.at(0xb0, 2), -int64(unix.ENOENT), netip.AddrPort{})
	got := spansByName(t, b)
	a := got["main.A"]
	if a.Events().Len() != 1 {
		t.Fatalf("events on A: %d", a.Events().Len())
	}
	requireAttrs(t, a.Events().At(0).Attributes(), map[string]any{
		"file.path": "/data/customers.db", "agenttrail.open.flags": "O_RDONLY|O_CLOEXEC", "agenttrail.syscall.result": int64(5),
	})
	orphan := got["openat"]
	if !orphan.ParentSpanID().IsEmpty() {
		t.Error("openat outside any call has a parent")
	}
	if orphan.Status().Code() != ptrace.StatusCodeError {
		t.Error("failed openat not marked as error")
	}
	requireAttrs(t, orphan.Attributes(), map[string]any{"error.type": "ENOENT"})
}

func TestForkedProcessInheritsTheForkingCall(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeTool, nil)
	b.AddProcess(Process{PID: pid + 1, Target: "agent", Executable: "/bin/sh"})
	b.ProcessFork(c.at(0xa0, 1), pid+1)
	h := c.at(0, 77)
	h.PID = pid + 1
	b.SyscallEnter(h, Syscall{Name: "execve", Path: "/bin/sh"})
	b.SyscallExit(h, 0, netip.AddrPort{})
	b.FuncReturn(c.at(0xa0, 1), probeTool.ID)
	got := spansByName(t, b)
	requireChild(t, got["execute_tool customer-data-export"], got["execve"])
}

// TestExecRenamesOnlyTheNewImage: spans of a forked shell before its exec keep the shell's
// identity, spans of the program it exec'd carry that program's, even when both are flushed
// after the exec and nothing but the kernel's exec record names the new program.
func TestExecRenamesOnlyTheNewImage(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeTool, nil)
	child := uint32(pid + 1)
	b.AddProcess(Process{PID: child, ParentPID: pid, Target: "agent", Executable: "/bin/sh", CommandLine: "sh -c cat /etc/hostname"})
	b.ProcessFork(c.at(0xa0, 1), child)
	at := func(tid uint32) Header { h := c.at(0, tid); h.PID = child; return h }
	b.SyscallEnter(at(uint32(child)), Syscall{Name: "openat", Path: "/etc/ld.so.cache"})
	b.SyscallExit(at(uint32(child)), 3, netip.AddrPort{})
	b.FuncEntry(at(uint32(child)), probeB, nil) // a native call the exec never lets return
	// A second thread execs: after the exec it is the leader, and the execve returns there.
	b.SyscallEnter(at(child+1), Syscall{Name: "execve", Path: "/usr/bin/cat", Argv: []string{"cat", "/etc/hostname"}})
	b.ProcessExec(at(uint32(child)), "/usr/bin/cat")
	b.SyscallExit(at(uint32(child)), 0, netip.AddrPort{})
	b.SyscallEnter(at(uint32(child)), Syscall{Name: "openat", Path: "/etc/hostname"})
	b.SyscallExit(at(uint32(child)), 3, netip.AddrPort{})
	b.ProcessExit(at(uint32(child)))
	b.FuncReturn(c.at(0xa0, 1), probeTool.ID)

	td := b.Flush()
	exe := map[string]string{}
	cmd := map[string]string{}
	spans := map[string]ptrace.Span{}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		res := rs.Resource().Attributes()
		ss := rs.ScopeSpans().At(0).Spans()
		for j := 0; j < ss.Len(); j++ {
			s := ss.At(j)
			name := s.Name()
			if p, ok := s.Attributes().Get("file.path"); ok {
				name += " " + p.Str()
			}
			if v, ok := res.Get("process.executable.path"); ok {
				exe[name] = v.Str()
			}
			if v, ok := res.Get("process.command_line"); ok {
				cmd[name] = v.Str()
			}
			spans[name] = s
		}
	}
	for name, want := range map[string]string{
		"openat /etc/ld.so.cache": "/bin/sh", "main.B": "/bin/sh", "execve": "/bin/sh",
		"openat /etc/hostname": "/usr/bin/cat", "execute_tool customer-data-export": "/srv/agent",
	} {
		if exe[name] != want {
			t.Errorf("%s: process.executable.path %q, want %q", name, exe[name], want)
		}
	}
	if got := cmd["openat /etc/hostname"]; got != "cat /etc/hostname" {
		t.Errorf("cat's command line %q", got)
	}
	if s := spans["main.B"]; s.Status().Code() != ptrace.StatusCodeError {
		t.Errorf("call open at the exec not closed with an error")
	}
	if s := spans["execve"]; s.Status().Code() == ptrace.StatusCodeError {
		t.Errorf("execve: %s", s.Status().Message())
	}
	requireChild(t, spans["execute_tool customer-data-export"], spans["openat /etc/hostname"])
	if b.OpenSpans() != 0 {
		t.Errorf("%d spans left open", b.OpenSpans())
	}
}

func TestConnectRefused(t *testing.T) {
	b, c := newTestBuilder(t)
	b.SyscallEnter(c.at(0, 9), Syscall{Name: "connect", Peer: netip.MustParseAddrPort("[2001:db8::1]:80")})
	b.SyscallExit(c.at(0, 9), -int64(unix.ECONNREFUSED), netip.AddrPort{})
	got := spansByName(t, b)
	conn := got["connect"]
	if conn.Status().Code() != ptrace.StatusCodeError {
		t.Fatal("refused connect not an error")
	}
	requireAttrs(t, conn.Attributes(), map[string]any{"error.type": "ECONNREFUSED", "network.type": "ipv6", "network.peer.address": "2001:db8::1"})
}

func TestAcceptPeerFromExit(t *testing.T) {
	b, c := newTestBuilder(t)
	b.SyscallEnter(c.at(0xa0, 1), Syscall{Name: "accept", FD: 3})
	b.SyscallExit(c.at(0xa0, 1), 8, netip.MustParseAddrPort("127.0.0.1:5555"))
	got := spansByName(t, b)
	acc := got["accept"]
	if acc.Kind() != ptrace.SpanKindServer {
		t.Errorf("kind %v", acc.Kind())
	}
	requireAttrs(t, acc.Attributes(), map[string]any{"network.peer.address": "127.0.0.1", "network.peer.port": int64(5555)})
}

func TestWouldBlockAcceptIsNotASpan(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeA, nil)
	// A non-blocking accept with nothing pending, under a call and as a root of its own.
	b.SyscallEnter(c.at(0xa0, 1), Syscall{Name: "accept", FD: 3})
	b.SyscallExit(c.at(0xa0, 1), -int64(unix.EAGAIN), netip.AddrPort{})
	b.FuncReturn(c.at(0xa0, 1), probeA.ID)
	b.SyscallEnter(c.at(0, 2), Syscall{Name: "accept", FD: 3})
	b.SyscallExit(c.at(0, 2), -int64(unix.EWOULDBLOCK), netip.AddrPort{})
	// Other failures of accept stay spans with an error status.
	b.SyscallEnter(c.at(0, 3), Syscall{Name: "accept", FD: 3})
	b.SyscallExit(c.at(0, 3), -int64(unix.EMFILE), netip.AddrPort{})
	// A connect's EAGAIN (no local ports left) is a failure, not a would-block.
	b.SyscallEnter(c.at(0, 4), Syscall{Name: "connect", FD: 5})
	b.SyscallExit(c.at(0, 4), -int64(unix.EAGAIN), netip.AddrPort{})
	got := spansByName(t, b)
	if len(got) != 3 {
		t.Fatalf("spans %v, want main.A, one failed accept and a failed connect", keys(got))
	}
	if acc := got["accept"]; acc.Status().Code() != ptrace.StatusCodeError {
		t.Errorf("EMFILE accept not an error")
	} else {
		requireAttrs(t, acc.Attributes(), map[string]any{"error.type": "EMFILE"})
	}
	if got["connect"].Status().Code() != ptrace.StatusCodeError {
		t.Errorf("connect EAGAIN not an error")
	}
	if n := b.Counters().WouldBlockAccepts; n != 2 {
		t.Errorf("would-block accepts counted %d, want 2", n)
	}
	if b.OpenSpans() != 0 {
		t.Errorf("%d spans left open", b.OpenSpans())
	}
}

func keys(m map[string]ptrace.Span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestUnmatchedReturnAndUnknownProcess(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncReturn(c.at(0xa0, 1), probeA.ID)
	h := c.at(0xa0, 1)
	h.PID = 1
	b.FuncEntry(h, probeA, nil)
	if got := b.Counters(); got.UnmatchedReturns != 1 || got.UnknownProcess != 1 {
		t.Fatalf("counters %+v", got)
	}
	if b.Flush().SpanCount() != 0 {
		t.Fatal("spans emitted from nothing")
	}
}

func TestReusedGoroutineClosesStaleCalls(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeA, nil) // goroutine 0xa0 dies inside A (runtime.Goexit)
	b.GoroutineCreate(c.at(0xb0, 1), 0xa0)  // its g is reused for a new goroutine
	got := spansByName(t, b)
	if got["main.A"].Status().Code() != ptrace.StatusCodeError {
		t.Fatal("stale call on a reused goroutine not closed with an error")
	}
}

func TestOpenSpanLimit(t *testing.T) {
	b := NewBuilder(Options{MaxOpenSpans: 2})
	b.AddProcess(Process{PID: pid, Target: "agent"})
	c := &clock{t: time.Unix(1, 0)}
	for i := 0; i < 3; i++ {
		b.FuncEntry(c.at(0xa0, 1), probeA, nil)
	}
	if b.OpenSpans() != 2 || b.Counters().OpenSpanLimitDrops != 1 {
		t.Fatalf("open=%d drops=%d", b.OpenSpans(), b.Counters().OpenSpanLimitDrops)
	}
}

func TestResourceOfExitedProcessKeptUntilFlush(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeA, nil)
	b.ProcessExit(c.at(0, 1))
	b.AddProcess(Process{PID: pid, Target: "other", Executable: "/bin/other"}) // pid reused
	td := b.Flush()
	if td.ResourceSpans().Len() != 1 {
		t.Fatalf("resources %d", td.ResourceSpans().Len())
	}
	requireAttrs(t, td.ResourceSpans().At(0).Resource().Attributes(), map[string]any{"service.name": "agent", "process.executable.path": "/srv/agent", "process.pid": int64(pid)})
}

func BenchmarkBuildCalls(b *testing.B) {
	bld := NewBuilder(Options{})
	bld.AddProcess(Process{PID: pid, Target: "agent"})
	h := Header{PID: pid, TID: 1, Routine: 0xa0, Time: time.Unix(1, 0)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		bld.FuncEntry(h, probeA, nil)
		bld.FuncReturn(h, probeA.ID)
		if bld.PendingSpans() >= 1024 {
			bld.Flush()
		}
	}
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "events/s")
}
