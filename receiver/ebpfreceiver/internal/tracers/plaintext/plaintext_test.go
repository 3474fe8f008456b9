package plaintext

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/sockets"
)

// chunk is one write of a session recorded by internal/mcp/testdata/nodeclient/tee.mjs.
type chunk struct {
	client bool
	data   []byte
}

func readChunks(t *testing.T, name string) []chunk {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "mcp", "testdata", "stdio", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var out []chunk
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		side, n, _ := strings.Cut(strings.TrimSpace(line), " ")
		size, _ := strconv.Atoi(n)
		data := make([]byte, size+1)
		if _, err := io.ReadFull(r, data); err != nil {
			t.Fatal(err)
		}
		out = append(out, chunk{side == "c", data[:size]})
	}
	return out
}

func inode(t *testing.T, f *os.File) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// A real child with its stdin and stdout on pipes stands for the MCP server, so that the
// consumer pairs the pipes through /proc as it would for a traced agent; the bytes are the ones
// @modelcontextprotocol/sdk and server-filesystem exchanged.
func TestStdioToolCallSpans(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	toServer := inode(t, stdin.(*os.File))
	fromServer := inode(t, stdout.(*os.File))

	agent, server := uint32(os.Getpid()), uint32(cmd.Process.Pid)
	b := spans.NewBuilder(spans.Options{})
	b.AddProcess(spans.Process{PID: agent, Target: "agent", Executable: "/usr/bin/node"})
	b.AddProcess(spans.Process{PID: server, Target: "agent", Executable: "/usr/bin/node"})
	c, err := New(tracer.Env{Logger: zap.NewNop(), Builder: b, Telemetry: &tracer.Telemetry{Meter: noop.NewMeterProvider().Meter("test")}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	probe := &spans.Probe{ID: 1, Target: "agent", Symbol: "main.runAgent", Role: spans.RolePrompt}
	at := time.Unix(1_700_000_000, 0)
	hdr := func(pid uint32) spans.Header {
		at = at.Add(time.Millisecond)
		return spans.Header{Time: at, PID: pid, TID: pid}
	}
	b.FuncEntry(hdr(agent), probe, nil)
	b.ProcessFork(hdr(agent), server)
	payload := func(pid uint32, fd int32, ino uint64, dir spans.Direction, data []byte) {
		h := hdr(pid)
		c.Payload(&sockets.Payload{Header: h, Socket: spans.SocketID{Ino: ino}, Key: ino, FD: fd, Direction: dir,
			Transport: spans.TransportPipe, Bytes: uint64(len(data)), Data: data, Parent: b.ParentOf(h)})
	}
	openat := func(path string) {
		h := hdr(server)
		b.SyscallEnter(h, spans.Syscall{Name: "connect", Path: path, Peer: netip.MustParseAddrPort("10.1.1.1:443")})
		b.SyscallExit(h, 0, netip.AddrPort{})
	}
	// Each write is seen by the writer, then read by the other side; the server "works" after
	// reading a tools/call (a connect stands for its work: a span of its own to find).
	for _, ch := range readChunks(t, "node-filesystem.chunks") {
		if ch.client {
			payload(agent, 21, toServer, spans.Egress, ch.data)
			payload(server, 0, toServer, spans.Ingress, ch.data)
			if bytes.Contains(ch.data, []byte(`"id":2}`)) {
				openat("/tmp/mcpfs/notes.txt")
			}
		} else {
			payload(server, 1, fromServer, spans.Egress, ch.data)
			payload(agent, 23, fromServer, spans.Ingress, ch.data)
		}
	}
	openat("after") // the server's work after it answered
	b.FuncReturn(hdr(agent), probe.ID)

	td := b.Flush()
	var tools []ptrace.Span
	var connects []ptrace.Span
	names := map[string]int{}
	var root ptrace.Span
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		ss := td.ResourceSpans().At(i).ScopeSpans()
		for j := 0; j < ss.Len(); j++ {
			for k := 0; k < ss.At(j).Spans().Len(); k++ {
				s := ss.At(j).Spans().At(k)
				names[s.Name()]++
				switch {
				case strings.HasPrefix(s.Name(), "execute_tool"):
					tools = append(tools, s)
				case s.Name() == "connect":
					connects = append(connects, s)
				case strings.HasPrefix(s.Name(), "invoke_agent"):
					root = s
				}
			}
		}
	}
	if len(tools) != 3 || names["initialize"] != 1 || names["tools/list"] != 1 {
		t.Fatalf("spans %v", names)
	}
	read := tools[0]
	attr := func(s ptrace.Span, k string) string {
		v, _ := s.Attributes().Get(k)
		return v.AsString()
	}
	for k, want := range map[string]string{
		"gen_ai.tool.name": "read_text_file", "gen_ai.tool.call.id": "2", "mcp.method.name": "tools/call",
		"mcp.server.name": "secure-filesystem-server", "mcp.server.version": "0.2.0", "gen_ai.operation.name": "execute_tool",
		"gen_ai.tool.call.arguments": `{"path":"/tmp/mcpfs/notes.txt"}`, "agenttrail.mcp.server.command_line": "sleep 30",
		"agenttrail.mcp.result.is_error": "false", "network.transport": "pipe",
	} {
		if got := attr(read, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if read.ParentSpanID() != root.SpanID() || read.Kind() != ptrace.SpanKindClient {
		t.Errorf("execute_tool not a client child of the agent's call")
	}
	if tools[2].Status().Code() != ptrace.StatusCodeError || attr(tools[2], "error.type") != "tool_error" {
		t.Errorf("isError call: status %v", tools[2].Status().Code())
	}
	if len(connects) != 2 {
		t.Fatalf("%d connects", len(connects))
	}
	for _, s := range connects {
		want := read.SpanID()
		if attr(s, "network.peer.address") == "" {
			t.Fatal("connect without its peer")
		}
		if s.StartTimestamp().AsTime().After(read.EndTimestamp().AsTime()) {
			want = root.SpanID() // after the call: back under what the server inherited
		}
		if s.ParentSpanID() != want {
			t.Errorf("server's connect at %v under %v, want %v", s.StartTimestamp(), s.ParentSpanID(), want)
		}
	}
}

// When /proc no longer shows the processes (they exited before the receiver read their
// records), the server's stdio (fd 0 and 1) and the responses' ids pair the pipes: every call is
// answered, and the server's work still lands under the call.
func TestStdioPairedWithoutProc(t *testing.T) {
	const agent, server = 100, 200
	b := spans.NewBuilder(spans.Options{})
	b.AddProcess(spans.Process{PID: agent, Executable: "/usr/bin/node"})
	b.AddProcess(spans.Process{PID: server, Executable: "/usr/bin/node"})
	c, err := New(tracer.Env{Logger: zap.NewNop(), Builder: b, ProcRoot: t.TempDir(), Telemetry: &tracer.Telemetry{Meter: noop.NewMeterProvider().Meter("test")}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_700_000_000, 0)
	hdr := func(pid uint32) spans.Header {
		at = at.Add(time.Millisecond)
		return spans.Header{Time: at, PID: pid, TID: pid}
	}
	payload := func(pid uint32, fd int32, ino uint64, dir spans.Direction, data []byte) {
		h := hdr(pid)
		c.Payload(&sockets.Payload{Header: h, Socket: spans.SocketID{Ino: ino}, FD: fd, Direction: dir,
			Transport: spans.TransportPipe, Bytes: uint64(len(data)), Data: data, Parent: b.ParentOf(h)})
	}
	const toServer, fromServer = 9002, 9001 // the response pipe's inode is the smaller
	for _, ch := range readChunks(t, "node-filesystem.chunks") {
		if ch.client {
			payload(agent, 21, toServer, spans.Egress, ch.data)
			payload(server, 0, toServer, spans.Ingress, ch.data)
			if bytes.Contains(ch.data, []byte(`"id":2}`)) {
				h := hdr(server)
				b.SyscallEnter(h, spans.Syscall{Name: "execve", Path: "/bin/cat"})
				b.SyscallExit(h, 0, netip.AddrPort{})
			}
		} else {
			payload(server, 1, fromServer, spans.Egress, ch.data)
			payload(agent, 23, fromServer, spans.Ingress, ch.data)
		}
	}
	var read ptrace.Span
	var execve ptrace.Span
	n := 0
	for _, s := range flushed(b) {
		if v, ok := s.Attributes().Get("agenttrail.mcp.problem"); ok {
			t.Errorf("%s: %s", s.Name(), v.Str())
		}
		if id, _ := s.Attributes().Get("jsonrpc.request.id"); id.Str() == "2" {
			read = s
		}
		if s.Name() == "execve" {
			execve = s
		}
		if strings.HasPrefix(s.Name(), "execute_tool") {
			n++
		}
	}
	if n != 3 || read.Name() != "execute_tool read_text_file" {
		t.Fatalf("%d tool spans, read %q", n, read.Name())
	}
	if execve.ParentSpanID() != read.SpanID() {
		t.Errorf("the server's execve is not under the call it served")
	}
}

// The server's command line when /proc shows neither process any more (the receiver's reader
// lagged the kernel by seconds while it instrumented the new node process: the whole session
// was over by then): the server is the process seen reading the requests, its command line the
// span builder's, which the exec of the real server (through a wrapper) replaced. A server that
// cannot be named says so on the span and in agenttrail.ebpf.mcp.dropped. Under Node the stdio
// are socketpairs: the kernel's record names the peer socket, which sock_diag no longer knows.
func TestStdioServerCommandWithoutProc(t *testing.T) {
	const agent, server = 100, 200
	const serverCmd = "/usr/bin/node /opt/mcp/server-filesystem/dist/index.js /tmp/mcpfs"
	for _, tc := range []struct {
		name       string
		traced     bool // the server's reads and writes are recorded
		registered bool // the span builder has the server process
		unix       bool // socketpairs, whose records name their peers
		cmd, pid   string
		unresolved string
	}{
		{name: "traced", traced: true, registered: true, cmd: serverCmd, pid: "200", unresolved: "<missing>"},
		{name: "socketpairs", traced: true, registered: true, unix: true, cmd: serverCmd, pid: "200", unresolved: "<missing>"},
		{name: "server not traced", unresolved: "server_not_found", cmd: "<missing>", pid: "<missing>"},
		{name: "server unknown to the builder", traced: true, unresolved: "server_command_unknown", cmd: "<missing>", pid: "200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
			b := spans.NewBuilder(spans.Options{})
			b.AddProcess(spans.Process{PID: agent, Executable: "/usr/local/bin/agent", CommandLine: "/usr/local/bin/agent --mcp"})
			c, err := New(tracer.Env{Logger: zap.NewNop(), Builder: b, ProcRoot: t.TempDir(), Telemetry: &tracer.Telemetry{Meter: mp.Meter("test")}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			at := time.Unix(1_700_000_000, 0)
			hdr := func(pid uint32) spans.Header {
				at = at.Add(time.Millisecond)
				return spans.Header{Time: at, PID: pid, TID: pid}
			}
			if tc.registered {
				// Forked (the agent's command line), then exec'd through sh into the real server.
				b.ProcessFork(hdr(agent), server)
				b.AddProcess(spans.Process{PID: server, ParentPID: agent, Executable: "/usr/local/bin/agent", CommandLine: "/usr/local/bin/agent --mcp"})
				for _, argv := range [][]string{{"sh", "-c", serverCmd}, strings.Fields(serverCmd)} {
					h := hdr(server)
					b.SyscallEnter(h, spans.Syscall{Name: "execve", Path: argv[0], Argv: argv})
					b.ProcessExec(h, argv[0])
					b.SyscallExit(h, 0, netip.AddrPort{})
				}
			}
			payload := func(pid uint32, fd int32, ino uint64, dir spans.Direction, data []byte) {
				h := hdr(pid)
				p := &sockets.Payload{Header: h, Socket: spans.SocketID{Ino: ino}, FD: fd, Direction: dir,
					Transport: spans.TransportPipe, Bytes: uint64(len(data)), Data: data, Parent: b.ParentOf(h)}
				if tc.unix {
					// Each end of a socketpair is its own inode; its peer the other's.
					p.Transport, p.PeerIno = spans.TransportUnix, ino^1
				}
				c.Payload(p)
			}
			// A pipe has one inode for both ends; a socketpair two (agent's, server's).
			toServer, fromServer := [2]uint64{9002, 9002}, [2]uint64{9001, 9001}
			if tc.unix {
				toServer, fromServer = [2]uint64{9002, 9003}, [2]uint64{9005, 9004}
			}
			for _, ch := range readChunks(t, "node-filesystem.chunks") {
				if ch.client {
					payload(agent, 21, toServer[0], spans.Egress, ch.data)
					if tc.traced {
						payload(server, 0, toServer[1], spans.Ingress, ch.data)
					}
				} else {
					if tc.traced {
						payload(server, 1, fromServer[1], spans.Egress, ch.data)
					}
					payload(agent, 23, fromServer[0], spans.Ingress, ch.data)
				}
			}
			n := 0
			for _, s := range flushed(b) {
				if get(s, "mcp.method.name") == "<missing>" {
					continue
				}
				n++
				if got := get(s, "agenttrail.mcp.server.command_line"); got != tc.cmd {
					t.Errorf("%s: command line %q, want %q", s.Name(), got, tc.cmd)
				}
				if got := get(s, "agenttrail.mcp.server.pid"); got != tc.pid {
					t.Errorf("%s: server pid %s, want %s", s.Name(), got, tc.pid)
				}
				if got := get(s, "agenttrail.mcp.server.unresolved"); got != tc.unresolved {
					t.Errorf("%s: unresolved %q, want %q", s.Name(), got, tc.unresolved)
				}
			}
			if n < 5 {
				t.Fatalf("%d MCP spans", n)
			}
			var rm metricdata.ResourceMetrics
			if err := reader.Collect(context.Background(), &rm); err != nil {
				t.Fatal(err)
			}
			dropped := int64(0)
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					if m.Name != "agenttrail.ebpf.mcp.dropped" {
						continue
					}
					for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
						if r, _ := dp.Attributes.Value("reason"); r.AsString() == tc.unresolved {
							dropped += dp.Value
						}
					}
				}
			}
			if want := int64(n); tc.unresolved == "<missing>" {
				if dropped != 0 {
					t.Errorf("%d spans counted unresolved", dropped)
				}
			} else if dropped != want {
				t.Errorf("%d spans counted %s, want %d", dropped, tc.unresolved, want)
			}
		})
	}
}
