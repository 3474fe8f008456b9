package spans

import (
	"net/netip"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// An MCP server's work while it serves a tool call lands under the call's span (reserved when
// the agent wrote the request, emitted when the response came back); before and after, under
// what the server inherited from its fork.
func TestDelegatedWorkNestsUnderReservedSpan(t *testing.T) {
	b, c := newTestBuilder(t)
	const server = pid + 1
	b.FuncEntry(c.at(0xa0, 1), probePrompt, nil) // the agent's call that spawns the server and calls the tool
	b.AddProcess(Process{PID: server, Executable: "/usr/bin/node"})
	b.ProcessFork(c.at(0xa0, 1), server)
	srv := func(tid uint32) Header { h := c.at(0, tid); h.PID = server; return h }
	syscall := func(tid uint32, name, path string) {
		h := srv(tid)
		b.SyscallEnter(h, Syscall{Name: name, Path: path, Peer: netip.MustParseAddrPort("10.0.0.1:443")})
		b.SyscallExit(h, 3, netip.AddrPort{})
	}
	syscall(7, "execve", "/before") // a thread that exists before the call

	res := b.Reserve(b.ParentOf(c.at(0xa0, 1)))
	d, ok := b.Delegate(server, res.Parent(), c.t)
	if !ok {
		t.Fatal("not delegated")
	}
	syscall(7, "connect", "") // the existing thread
	syscall(8, "sendto", "")  // a thread that appears during the call
	b.AddProcess(Process{PID: server + 1, Executable: "/bin/cat"})
	b.ProcessFork(srv(8), server+1) // a child the tool runs
	b.EndDelegation(d)
	syscall(7, "accept", "")
	syscall(9, "execve", "/after")

	start := c.at(0xa0, 1)
	end := c.at(0xa0, 1)
	if !b.EndReserved(res, SpanData{Name: "execute_tool read_file", Kind: ptrace.SpanKindClient, Start: start.Time, End: end.Time}) {
		t.Fatal("reserved span not emitted")
	}
	h := c.at(0, 1)
	h.PID = server + 1
	b.SyscallEnter(h, Syscall{Name: "execve", Path: "/bin/cat"})
	b.SyscallExit(h, 0, netip.AddrPort{})
	b.FuncReturn(c.at(0xa0, 1), probePrompt.ID)

	td := b.Flush()
	got := map[string]ptrace.Span{}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		ss := td.ResourceSpans().At(i).ScopeSpans()
		for j := 0; j < ss.Len(); j++ {
			for k := 0; k < ss.At(j).Spans().Len(); k++ {
				s := ss.At(j).Spans().At(k)
				name := s.Name()
				if v, ok := s.Attributes().Get("process.executable.path"); ok && name == "execve" {
					name += " " + v.Str()
				}
				got[name] = s
			}
		}
	}
	prompt, tool := got["invoke_agent customer-agent"], got["execute_tool read_file"]
	if prompt.Name() == "" || tool.Name() == "" {
		t.Fatalf("spans: %v", keys(got))
	}
	requireChild(t, prompt, tool)
	requireChild(t, tool, got["connect"])
	requireChild(t, tool, got["sendto"])
	requireChild(t, tool, got["execve /bin/cat"]) // forked during the call
	requireChild(t, prompt, got["accept"])        // after: back under the forking call
	requireChild(t, prompt, got["execve /after"])
	requireChild(t, prompt, got["execve /before"])
}
