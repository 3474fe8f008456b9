package ebpfreceiver

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func dialTarget(name string, sel TargetConfig) TargetConfig {
	sel.Name = name
	sel.Functions = []FunctionConfig{
		{Symbol: "main.Dial", Role: "egress", Args: []string{"addr:full"}},
		{Symbol: "main.Serve"},
	}
	return sel
}

// TestSelectors traces the same program chosen by process name (started later and already
// running) and by pid.
func TestSelectors(t *testing.T) {
	requireKernel(t)
	exe := buildGoAgent(t)
	peer := listen(t)

	t.Run("process_name_started_later", func(t *testing.T) {
		sink := startReceiver(t, testConfig(dialTarget("by-name", TargetConfig{ProcessName: "goagent"})))
		p := startProgram(t, exe, peer)
		// The process is matched at its exec and attached a few milliseconds later (by name,
		// unlike an executable target, which is traced from its first instruction), so the
		// test dials until the first traced call arrives.
		c := waitSpans(t, sink, func(c collected) bool {
			if c.has("main.Dial", "connect") {
				return true
			}
			p.do(t, "dial "+peer, "ok dial")
			return false
		})
		idx := c.named("main.Dial")
		dial := c.spans[idx[len(idx)-1]]
		if attr(dial, "agenttrail.arg.addr") != peer {
			t.Errorf("addr argument %q", attr(dial, "agenttrail.arg.addr"))
		}
		if v, _ := c.res[idx[0]].Attributes().Get("service.name"); v.Str() != "by-name" {
			t.Errorf("service.name %q", v.Str())
		}
	})
	t.Run("process_name_already_running", func(t *testing.T) {
		p := startProgram(t, exe, peer)
		p.do(t, "noop", "ok noop")
		sink := startReceiver(t, testConfig(dialTarget("by-name", TargetConfig{ProcessName: "goagent"})))
		p.do(t, "dial "+peer, "ok dial")
		c := waitSpans(t, sink, func(c collected) bool { return c.has("main.Dial", "connect") })
		requireDial(t, c, "by-name", peer)
	})
	t.Run("pid", func(t *testing.T) {
		p := startProgram(t, exe, peer)
		p.do(t, "noop", "ok noop")
		other := startProgram(t, exe, peer) // same binary, not selected
		other.do(t, "noop", "ok noop")
		sink := startReceiver(t, testConfig(dialTarget("by-pid", TargetConfig{PID: p.cmd.Process.Pid})))
		other.do(t, "dial "+peer, "ok dial")
		p.do(t, "dial "+peer, "ok dial")
		c := waitSpans(t, sink, func(c collected) bool { return c.has("main.Dial", "connect") })
		requireDial(t, c, "by-pid", peer)
		for i, r := range c.res {
			if v, _ := r.Attributes().Get("process.pid"); v.Int() != int64(p.cmd.Process.Pid) {
				t.Errorf("span %s from pid %d, only %d is selected", c.spans[i].Name(), v.Int(), p.cmd.Process.Pid)
			}
		}
	})
}

func requireDial(t *testing.T, c collected, service, peer string) {
	t.Helper()
	dial, res := c.one(t, "main.Dial")
	conn, _ := c.one(t, "connect")
	requireParent(t, dial, conn)
	if got := attr(dial, "agenttrail.arg.addr"); got != peer {
		t.Errorf("addr argument %q, want %q", got, peer)
	}
	if v, _ := res.Attributes().Get("service.name"); v.Str() != service {
		t.Errorf("service.name %q", v.Str())
	}
}

// TestSyscallPeers checks an IPv6 connect and the peer of an accepted connection. (Go connects
// are non-blocking, so a refusal shows in SO_ERROR, not in connect's result; TestNativeProgram
// checks a refused blocking connect.)
func TestSyscallPeers(t *testing.T) {
	requireKernel(t)
	exe := buildGoAgent(t)
	ln6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	defer ln6.Close()
	go func() {
		for {
			c, err := ln6.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	sink := startReceiver(t, testConfig(dialTarget("peers", TargetConfig{Executable: exe})))
	p := startProgram(t, exe, listen(t))
	p.do(t, "dial "+ln6.Addr().String(), "ok dial")
	if _, err := p.stdin.Write([]byte("serve\n")); err != nil {
		t.Fatal(err)
	}
	var serveAddr string
	for line := range p.lines {
		if a, ok := strings.CutPrefix(line, "listening "); ok {
			serveAddr = a
			break
		}
	}
	client, err := net.Dial("tcp", serveAddr)
	if err != nil {
		t.Fatal(err)
	}
	clientAddr := client.LocalAddr().(*net.TCPAddr)
	client.Close()

	c := waitSpans(t, sink, func(c collected) bool { return c.has("connect", "accept", "main.Serve") })
	v6, _ := c.one(t, "connect")
	if attr(v6, "network.peer.address") != "::1" || attr(v6, "network.type") != "ipv6" || attr(v6, "network.peer.port") != strconv.Itoa(ln6.Addr().(*net.TCPAddr).Port) {
		t.Errorf("IPv6 connect to %s recorded as %s port %s (%s)", ln6.Addr(), attr(v6, "network.peer.address"), attr(v6, "network.peer.port"), attr(v6, "network.type"))
	}
	serve, _ := c.one(t, "main.Serve")
	var acc ptrace.Span
	for _, i := range c.named("accept") {
		if attr(c.spans[i], "error.type") == "EAGAIN" {
			t.Errorf("a would-block accept became a span")
		}
		if attr(c.spans[i], "network.peer.port") == strconv.Itoa(clientAddr.Port) {
			acc = c.spans[i]
		}
	}
	if acc == (ptrace.Span{}) {
		t.Fatalf("no accept with the client's peer port %d", clientAddr.Port)
	}
	requireParent(t, serve, acc)
	if acc.Kind() != ptrace.SpanKindServer || attr(acc, "network.peer.address") != "127.0.0.1" {
		t.Errorf("accept: kind %v peer %s", acc.Kind(), attr(acc, "network.peer.address"))
	}
}

// TestBadInput: a missing executable, a misspelled symbol, a stripped binary's arguments and a
// pid that does not exist are each reported by name while the rest of the receiver works; the
// target never crashes; hostile argument bytes (invalid UTF-8, NUL, far over the bound) arrive
// bounded, valid and marked truncated.
func TestBadInput(t *testing.T) {
	requireKernel(t)
	exe := buildGoAgent(t)
	stripped := filepath.Join(t.TempDir(), "goagent-stripped")
	if b, err := exec.Command("go", "build", "-ldflags=-s -w", "-o", stripped, "./testdata/goagent").CombinedOutput(); err != nil {
		t.Fatalf("build stripped: %v\n%s", err, b)
	}
	peer := listen(t)
	good := goAgentTarget(exe)
	good.Functions = append(good.Functions, FunctionConfig{Symbol: "main.Agent.HandlePrompt"}) // misspelled
	cfg := testConfig(
		good,
		TargetConfig{Name: "missing", Executable: "/nonexistent/agent", Functions: []FunctionConfig{{Symbol: "main.main"}}},
		TargetConfig{Name: "stripped", Executable: stripped, Functions: []FunctionConfig{
			{Symbol: "main.Dial", Args: []string{"addr"}}, // no DWARF: skipped with a warning
			{Symbol: "main.Serve"},                        // no arguments: still traced
		}},
		TargetConfig{Name: "gone", PID: 999999999 % (1 << 22)},
	)

	core, logs := observer.New(zapcore.WarnLevel)
	sink := new(consumertest.TracesSink)
	set := receivertest.NewNopSettings(componentType)
	set.Logger = zap.New(core)
	r, err := NewFactory().CreateTraces(context.Background(), set, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("start with bad targets must still succeed: %v", err)
	}
	defer func() {
		if err := r.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	for _, want := range []struct{ target, text string }{
		{"missing", "/nonexistent/agent does not exist"},
		{"customer-agent", "main.(*Agent).HandlePrompt"}, // the suggestion for the misspelled name
		{"stripped", "no DWARF"},
		{"gone", "does not exist"},
	} {
		found := false
		for _, e := range logs.All() {
			if e.ContextMap()["target"] == want.target && strings.Contains(e.Message+" "+errText(e), want.text) {
				found = true
			}
		}
		if !found {
			t.Errorf("no warning for target %s mentioning %q; logs: %v", want.target, want.text, logMessages(logs))
		}
	}

	p := startProgram(t, exe, peer)
	hostile := "\xff\xfe\x00bad utf8 " + strings.Repeat("A", 5000)
	p.do(t, "prompt "+hostile, "ok prompt")
	s := startProgram(t, stripped, peer)
	s.do(t, "serve", "listening")

	c := waitSpans(t, sink, func(c collected) bool {
		return c.has("invoke_agent customer-agent", "main.Serve") || c.has("invoke_agent customer-agent")
	})
	prompt, _ := c.one(t, "invoke_agent customer-agent")
	val := attr(prompt, "agenttrail.arg.prompt")
	if !utf8.ValidString(val) || len(val) > 2*256+64 {
		t.Errorf("hostile argument not bounded and valid: %d bytes, valid UTF-8 %v", len(val), utf8.ValidString(val))
	}
	if attr(prompt, "agenttrail.arg.prompt.truncated") != "true" || attr(prompt, "agenttrail.arg.prompt.length") != strconv.Itoa(len(hostile)) {
		t.Errorf("truncation not recorded: truncated=%s length=%s", attr(prompt, "agenttrail.arg.prompt.truncated"), attr(prompt, "agenttrail.arg.prompt.length"))
	}
	p.do(t, "noop", "ok noop") // the target survived
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Errorf("the stripped program died: %v", err)
	}
}

func errText(e observer.LoggedEntry) string {
	if v, ok := e.ContextMap()["error"]; ok {
		return v.(string)
	}
	return ""
}

func logMessages(logs *observer.ObservedLogs) []string {
	var out []string
	for _, e := range logs.All() {
		out = append(out, e.Message+" "+errText(e))
	}
	return out
}
