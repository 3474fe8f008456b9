package ebpfreceiver

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/sockets"
)

// byteSink counts every byte its peers send, on TCP (HTTP/1.1, h2c or raw) or UDP: what the
// receiver's egress bytes must equal.
type byteSink struct {
	addr  string
	total atomic.Int64
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

// httpSink serves HTTP/1.1 and h2c, reading each request's body whole before it answers.
func httpSink(t *testing.T) *byteSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &byteSink{addr: ln.Addr().String()}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
	srv := &http.Server{Handler: h2c.NewHandler(h, &http2.Server{})}
	go func() { _ = srv.Serve(countingListener{ln, &s.total}) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// tcpSink reads and counts every connection until it closes.
func tcpSink(t *testing.T) *byteSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &byteSink{}
	s.addr = serve(t, ln, func(c net.Conn) {
		_, _ = io.Copy(io.Discard, countingConn{c, &s.total}) // counted as read, not at close
	})
	return s
}

func udpSink(t *testing.T) *byteSink {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &byteSink{addr: c.LocalAddr().String()}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			s.total.Add(int64(n))
		}
	}()
	return s
}

// settle waits until the sink's count has not changed for 200 ms and returns it.
func (s *byteSink) settle() int64 {
	last, since := s.total.Load(), time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n := s.total.Load(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > 200*time.Millisecond {
			break
		}
	}
	return last
}

func buildSockAgent(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "sockagent")
	if b, err := exec.Command("go", "build", "-o", out, "./testdata/sockagent").CombinedOutput(); err != nil {
		t.Fatalf("build sockagent: %v\n%s", err, b)
	}
	return out
}

func attrInt(s ptrace.Span, key string) int64 {
	v, ok := s.Attributes().Get(key)
	if !ok {
		return -1
	}
	return v.Int()
}

// sendsUnder returns the `send {peer}` spans that are children of parent.
func (c collected) sendsUnder(parent ptrace.Span, peer string) []ptrace.Span {
	var out []ptrace.Span
	for _, s := range c.spans {
		if s.Name() == "send "+peer && s.ParentSpanID() == parent.SpanID() && s.TraceID() == parent.TraceID() {
			out = append(out, s)
		}
	}
	return out
}

// TestSocketEgress: a Go agent's tool sends data every way the issue lists — over a keep-alive
// HTTP connection an earlier request opened, over HTTP/2 (h2c), over a connected UDP socket
// with write(2), with sendmsg and writev, over a socket opened before the collector started,
// and as DNS queries with long labels — and each comes out as one `send {peer}` span under the
// tool, with the peer and a byte count equal to what the sink read. A benign keep-alive loop
// of 50 requests is one span, not 50.
func TestSocketEgress(t *testing.T) {
	requireKernel(t)
	exe := buildSockAgent(t)
	web, raw, udp, dns, early := httpSink(t), tcpSink(t), udpSink(t), udpSink(t), tcpSink(t)
	url := "http://" + web.addr + "/upload"

	// The program opens one connection before the receiver starts.
	p := startProgram(t, exe)
	p.do(t, "open "+early.addr, "ok open")

	_, dnsPort, _ := net.SplitHostPort(dns.addr)
	port, _ := strconv.Atoi(dnsPort)
	cfg := testConfig(TargetConfig{Name: "sockagent", Executable: exe, Functions: []FunctionConfig{
		{Symbol: "main.Warmup"},
		{Symbol: "main.Export", Role: "tool", ToolName: "export", Args: []string{"how:full"}},
		{Symbol: "main.DNS", Role: "tool", ToolName: "dns"},
		{Symbol: "main.Benign"},
	}})
	cfg.Sockets = sockets.DefaultConfig()
	cfg.Sockets.DNSPort = port
	sink := startReceiver(t, cfg)

	type step struct {
		how, command string
		sink         *byteSink
		peer         string
		connected    string
	}
	longA, longB := strings.Repeat("a", 63), strings.Repeat("b", 63)
	steps := []step{
		{"warmup http", "warmup http " + url, web, web.addr, ""},
		{"http", "export http " + url + " 5000", web, web.addr, "earlier"},
		{"warmup h2", "warmup h2 " + url, web, web.addr, ""},
		{"h2", "export h2 " + url + " 7000", web, web.addr, "earlier"},
		{"udp", "export udp " + udp.addr + " 1200", udp, udp.addr, "this_trace"},
		{"sendmsg", "export sendmsg " + raw.addr + " 3000", raw, raw.addr, "this_trace"},
		{"writev", "export writev " + raw.addr + " 2500", raw, raw.addr, "this_trace"},
		{"early", "export early " + early.addr + " 2000", early, early.addr, "before_tracing"},
		{"dns", "dns " + dns.addr + " " + longA + ".x.exfil.example. " + longB + ".y.exfil.example.", dns, dns.addr, "this_trace"},
		{"benign", "benign " + url + " 50", web, web.addr, "earlier"},
	}
	for _, st := range steps {
		before := st.sink.settle()
		p.do(t, st.command, "ok "+strings.Fields(st.command)[0])
		sent := st.sink.settle() - before
		if strings.HasPrefix(st.how, "warmup") {
			continue
		}
		var parentName string
		switch st.how {
		case "dns":
			parentName = "execute_tool dns"
		case "benign":
			parentName = "main.Benign"
		default:
			parentName = "execute_tool export"
		}
		c := waitSpans(t, sink, func(c collected) bool {
			for _, i := range c.named(parentName) {
				if st.how == "dns" || st.how == "benign" || attr(c.spans[i], "agenttrail.arg.how") == st.how {
					return len(c.sendsUnder(c.spans[i], st.peer)) > 0
				}
			}
			return false
		})
		var parent ptrace.Span
		for _, i := range c.named(parentName) {
			if st.how == "dns" || st.how == "benign" || attr(c.spans[i], "agenttrail.arg.how") == st.how {
				parent = c.spans[i]
			}
		}
		sends := c.sendsUnder(parent, st.peer)
		if len(sends) != 1 {
			t.Errorf("%s: %d send spans under the call, want 1", st.how, len(sends))
			continue
		}
		s := sends[0]
		host, port, _ := net.SplitHostPort(st.peer)
		if got := attrInt(s, "agenttrail.egress.bytes"); got != sent || sent == 0 {
			t.Errorf("%s: agenttrail.egress.bytes = %d, the sink read %d", st.how, got, sent)
		}
		if attr(s, "network.peer.address") != host || attr(s, "network.peer.port") != port {
			t.Errorf("%s: peer %s:%s, want %s", st.how, attr(s, "network.peer.address"), attr(s, "network.peer.port"), st.peer)
		}
		if got := attr(s, "agenttrail.socket.connected"); got != st.connected {
			t.Errorf("%s: agenttrail.socket.connected = %s, want %s", st.how, got, st.connected)
		}
		wantTransport := "tcp"
		if st.how == "udp" || st.how == "dns" {
			wantTransport = "udp"
		}
		if got := attr(s, "network.transport"); got != wantTransport {
			t.Errorf("%s: network.transport = %s", st.how, got)
		}
		t.Logf("%s: %d bytes in %d calls, attribution %s, connected %s, age %d ms", st.how, sent,
			attrInt(s, "agenttrail.egress.calls"), attr(s, "agenttrail.egress.attribution"), attr(s, "agenttrail.socket.connected"), attrInt(s, "agenttrail.connection.age_ms"))
		switch st.how {
		case "http", "h2":
			if got := attr(s, "agenttrail.egress.attribution"); got != "handoff" {
				t.Errorf("%s: attribution %s: net/http writes on its connection's goroutine", st.how, got)
			}
			if attrInt(s, "agenttrail.connection.age_ms") < 0 {
				t.Errorf("%s: no connection age", st.how)
			}
		case "dns":
			if got := attr(s, "dns.question.name"); got != longA+".x.exfil.example" {
				t.Errorf("dns.question.name = %s", got)
			}
			if got := attrInt(s, "agenttrail.dns.question.count"); got != 2 {
				t.Errorf("agenttrail.dns.question.count = %d", got)
			}
		case "benign":
			if got := attrInt(s, "agenttrail.egress.calls"); got < 50 {
				t.Errorf("benign: %d calls in the span, want at least the 50 requests", got)
			}
		}
	}
}

// TestPythonSocketEgress: a Python program's sends — a POST over a keep-alive http.client
// connection opened by an earlier GET, os.write on a connected UDP socket, socket.sendmsg, and
// a send on a connection opened before the receiver started — each come out with the right peer
// and a byte count equal to what the sink read.
func TestPythonSocketEgress(t *testing.T) {
	requireKernel(t)
	requirePython(t)
	web, raw, udp, early := httpSink(t), tcpSink(t), udpSink(t), tcpSink(t)
	url := "http://" + web.addr + "/upload"
	p := startProgram(t, python311, "-B", "-u", "-E", "-s", filepath.Join("testdata", "pysock", "pysock.py"))
	p.do(t, "open "+early.addr, "ok open")
	pid := p.cmd.Process.Pid
	cfg := testConfig(TargetConfig{Name: "pysock", PID: pid, PythonFunctions: []PythonFunctionConfig{
		{Pattern: "pysock:export", Role: "tool", ToolName: "export"},
	}})
	cfg.Python.SpanIdleTimeout = time.Second
	cfg.Sockets = sockets.DefaultConfig()
	sink := startReceiver(t, cfg)

	steps := []struct {
		command   string
		sink      *byteSink
		connected string // of the export's send; "" for the warmup
	}{
		{"warmup " + url, web, ""},
		{"export http " + url + " 6000", web, "earlier"},
		{"export udp " + udp.addr + " 900", udp, "this_trace"},
		{"export sendmsg " + raw.addr + " 3000", raw, "this_trace"},
		{"export early " + early.addr + " 1500", early, "before_tracing"},
	}
	for _, st := range steps {
		before := st.sink.settle()
		p.do(t, st.command, "ok "+strings.Fields(st.command)[0])
		sent := st.sink.settle() - before
		if st.connected == "" {
			continue
		}
		// The send spans to the sink's address that this command made: those whose first I/O
		// is after the previous command (spans of one peer are told apart by connected).
		var got []ptrace.Span
		c := waitSpans(t, sink, func(c collected) bool {
			got = nil
			for _, s := range c.ofPID(pid).spans {
				if s.Name() == "send "+st.sink.addr && attr(s, "agenttrail.socket.connected") == st.connected {
					got = append(got, s)
				}
			}
			var n int64
			for _, s := range got {
				n += attrInt(s, "agenttrail.egress.bytes")
			}
			return n >= sent
		})
		var n int64
		for _, s := range got {
			n += attrInt(s, "agenttrail.egress.bytes")
			under := "no call"
			if parent, ok := c.byID(s.ParentSpanID()); ok {
				under = parent.Name()
			}
			t.Logf("%s: %d bytes in %d calls under %s (%s)", st.command, attrInt(s, "agenttrail.egress.bytes"),
				attrInt(s, "agenttrail.egress.calls"), under, attr(s, "agenttrail.egress.attribution"))
		}
		if n != sent || sent == 0 {
			t.Errorf("%s: agenttrail.egress.bytes = %d, the sink read %d", st.command, n, sent)
		}
	}
}

// TestGoEntryAfterStackGrowth: a Go function whose call grows the goroutine's stack in its own
// prologue (main.Deep, recursive with a 1 KiB frame, on a new goroutine) restarts from its first
// instruction after runtime.morestack. Each call must still be one span: exactly n+1 main.Deep
// spans, one root and every other under an emitted main.Deep. With the entry probe on the first
// instruction, a restarted call was two entries with one return: a main.Deep left open, the
// spans under it parented to a span never emitted (TestSocketEgress's flake: a preemption
// request restarted main.Warmup, and every later call of the main goroutine went under it).
func TestGoEntryAfterStackGrowth(t *testing.T) {
	requireKernel(t)
	exe := buildSockAgent(t)
	p := startProgram(t, exe)
	cfg := testConfig(TargetConfig{Name: "sockagent", Executable: exe, Functions: []FunctionConfig{{Symbol: "main.Deep"}}})
	sink := startReceiver(t, cfg)
	const n = 200 // 200 KiB of stack: it grows from its start size several times
	p.do(t, "deep "+strconv.Itoa(n), "ok deep")
	waitSpans(t, sink, func(c collected) bool { return len(c.named("main.Deep")) >= n+1 })
	time.Sleep(300 * time.Millisecond) // any extra span would come with the same flush
	c := waitSpans(t, sink, func(collected) bool { return true })
	deep := c.named("main.Deep")
	ids := map[pcommon.SpanID]bool{}
	for _, i := range deep {
		ids[c.spans[i].SpanID()] = true
	}
	roots, orphans := 0, 0
	for _, i := range deep {
		s := c.spans[i]
		switch {
		case s.ParentSpanID().IsEmpty():
			roots++
		case !ids[s.ParentSpanID()]:
			orphans++
		}
		if s.Status().Code() == ptrace.StatusCodeError {
			t.Errorf("main.Deep span with error status: %s", s.Status().Message())
		}
	}
	if len(deep) != n+1 || roots != 1 || orphans != 0 {
		t.Errorf("%d main.Deep spans (want %d), %d roots (want 1), %d under a span not emitted (want 0)", len(deep), n+1, roots, orphans)
	}
}
