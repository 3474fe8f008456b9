package ebpfreceiver

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// requireKernel skips where BPF programs cannot be loaded at all; in CI (root, BTF) it runs.
func requireKernel(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: loading BPF programs needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("kernel test: the kernel has no BTF (/sys/kernel/btf/vmlinux)")
	}
}

// buildGoAgent builds testdata/goagent the way users build programs (optimised, with DWARF).
func buildGoAgent(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "goagent")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/goagent")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build goagent: %v\n%s", err, b)
	}
	return out
}

// buildCProg builds testdata/cprog and its shared library; it returns both paths.
func buildCProg(t *testing.T) (prog, lib string) {
	t.Helper()
	dir := t.TempDir()
	prog, lib = filepath.Join(dir, "cprog"), filepath.Join(dir, "libagent.so")
	for _, args := range [][]string{
		{"-g", "-O1", "-fPIC", "-shared", "-o", lib, "testdata/cprog/lib.c"},
		{"-g", "-O1", "-fno-omit-frame-pointer", "-o", prog, "testdata/cprog/prog.c", "-L" + dir, "-lagent", "-Wl,-rpath," + dir},
	} {
		if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %v: %v\n%s", args, err, b)
		}
	}
	return prog, lib
}

// program is a running test program driven through stdin.
type program struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startProgram(t *testing.T, path string, args ...string) *program {
	t.Helper()
	cmd := exec.Command(path, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &program{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return p
}

// do sends a command and waits for the program's answer line that starts with want.
func (p *program) do(t *testing.T, command, want string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, command+"\n"); err != nil {
		t.Fatalf("send %q: %v", command, err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("program exited before answering %q", command)
			}
			if strings.HasPrefix(line, want) {
				return
			}
		case <-timeout:
			t.Fatalf("no answer %q to %q", want, command)
		}
	}
}

// listen accepts and drains connections, as the outside host of the tests.
func listen(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, ln, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
}

// serve hands every connection ln accepts to handle (in a goroutine of its own), closes it
// after, and returns ln's address; ln is closed when the test ends.
func serve(t *testing.T, ln net.Listener, handle func(net.Conn)) string {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { handle(c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func startReceiver(t *testing.T, cfg *Config) *consumertest.TracesSink {
	t.Helper()
	sink := new(consumertest.TracesSink)
	set := receivertest.NewNopSettings(componentType)
	set.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	r, err := NewFactory().CreateTraces(context.Background(), set, withSyscallAttach(cfg), sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return sink
}

func testConfig(targets ...TargetConfig) *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.Targets = targets
	cfg.FlushInterval = 50 * time.Millisecond
	cfg.Syscalls = []string{"connect", "accept", "execve", "openat"}
	return cfg
}

func goAgentTarget(exe string) TargetConfig {
	return TargetConfig{
		Name:       "customer-agent",
		Executable: exe,
		Functions: []FunctionConfig{
			{Symbol: "main.(*Agent).HandlePrompt", Role: "prompt", Args: []string{"prompt", "verbose"}},
			{Symbol: "main.(*Agent).callModel", Role: "inference", Model: "model-x"},
			{Symbol: "main.(*Tools).ExportCustomerData", Role: "tool", ToolName: "customer-data-export", Args: []string{"query:full", "limit"}},
			{Symbol: "main.Recover"},
			{Symbol: "main.mayPanic"},
			{Symbol: "main.Hang"},
			{Symbol: "main.RunTool", Role: "tool", Args: []string{"name"}},
		},
	}
}

// collected indexes the spans a sink received.
type collected struct {
	spans []ptrace.Span
	res   []pcommon.Resource
}

// waitSpans polls the sink until done reports true for what arrived, or fails after 10 s.
func waitSpans(t *testing.T, sink *consumertest.TracesSink, done func(collected) bool) collected {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var c collected
		for _, td := range sink.AllTraces() {
			for i := 0; i < td.ResourceSpans().Len(); i++ {
				rs := td.ResourceSpans().At(i)
				for j := 0; j < rs.ScopeSpans().Len(); j++ {
					ss := rs.ScopeSpans().At(j)
					for k := 0; k < ss.Spans().Len(); k++ {
						c.spans = append(c.spans, ss.Spans().At(k))
						c.res = append(c.res, rs.Resource())
					}
				}
			}
		}
		if done(c) {
			return c
		}
		if time.Now().After(deadline) {
			var names []string
			for _, s := range c.spans {
				names = append(names, s.Name())
			}
			t.Fatalf("spans did not arrive in time; got %d: %v", len(c.spans), names)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c collected) named(name string) []int {
	var idx []int
	for i, s := range c.spans {
		if s.Name() == name {
			idx = append(idx, i)
		}
	}
	return idx
}

func (c collected) has(names ...string) bool {
	for _, n := range names {
		if len(c.named(n)) == 0 {
			return false
		}
	}
	return true
}

func (c collected) one(t *testing.T, name string) (ptrace.Span, pcommon.Resource) {
	t.Helper()
	idx := c.named(name)
	if len(idx) != 1 {
		t.Fatalf("want exactly one span %q, got %d", name, len(idx))
	}
	return c.spans[idx[0]], c.res[idx[0]]
}

func (c collected) byID(id pcommon.SpanID) (ptrace.Span, bool) {
	for _, s := range c.spans {
		if s.SpanID() == id {
			return s, true
		}
	}
	return ptrace.Span{}, false
}

func attr(s ptrace.Span, key string) string {
	v, ok := s.Attributes().Get(key)
	if !ok {
		return "<missing>"
	}
	return v.AsString()
}

func requireParent(t *testing.T, parent, child ptrace.Span) {
	t.Helper()
	if child.TraceID() != parent.TraceID() || child.ParentSpanID() != parent.SpanID() {
		t.Errorf("%s (trace %s, parent %s) is not a child of %s (trace %s, span %s)",
			child.Name(), child.TraceID(), child.ParentSpanID(), parent.Name(), parent.TraceID(), parent.SpanID())
	}
}

// TestGoProgramSpans traces a Go program started after the receiver: the prompt → inference →
// tool chain with captured, redacted arguments, the connect made on another goroutine landing
// under the tool, its call stack, and the open of a file as an event of the tool.
func TestGoProgramSpans(t *testing.T) {
	requireKernel(t)
	exe := buildGoAgent(t)
	peer := listen(t)
	sink := startReceiver(t, testConfig(goAgentTarget(exe)))
	p := startProgram(t, exe, peer)
	p.do(t, "prompt please export everything for 4111 1111 1111 1111 now", "ok prompt")

	c := waitSpans(t, sink, func(c collected) bool {
		return c.has("invoke_agent customer-agent", "chat model-x", "execute_tool customer-data-export", "connect")
	})
	prompt, res := c.one(t, "invoke_agent customer-agent")
	chat, _ := c.one(t, "chat model-x")
	tool, _ := c.one(t, "execute_tool customer-data-export")
	conn, _ := c.one(t, "connect")

	if !prompt.ParentSpanID().IsEmpty() {
		t.Errorf("the outermost call has a parent")
	}
	requireParent(t, prompt, chat)
	requireParent(t, prompt, tool)
	requireParent(t, tool, conn)

	if d := chat.EndTimestamp().AsTime().Sub(chat.StartTimestamp().AsTime()); d < 2*time.Millisecond || d > 2*time.Second {
		t.Errorf("callModel sleeps 2ms; its span lasted %v", d)
	}
	if !prompt.StartTimestamp().AsTime().Before(chat.StartTimestamp().AsTime()) || prompt.EndTimestamp().AsTime().Before(tool.EndTimestamp().AsTime()) {
		t.Errorf("the prompt span does not enclose its children")
	}
	if got := attr(prompt, "agenttrail.arg.prompt"); got != "please export everything for [REDACTED:card] now" {
		t.Errorf("prompt argument = %q", got)
	}
	if got := attr(prompt, "agenttrail.arg.verbose"); got != "true" {
		t.Errorf("verbose argument = %q", got)
	}
	if got := attr(tool, "agenttrail.arg.query"); got != "SELECT * FROM customers" {
		t.Errorf("query argument (policy full) = %q", got)
	}
	if got := attr(tool, "agenttrail.arg.limit"); got != "42" {
		t.Errorf("limit argument = %q", got)
	}
	if got := attr(tool, "gen_ai.tool.name"); got != "customer-data-export" {
		t.Errorf("gen_ai.tool.name = %q", got)
	}
	host, port, _ := net.SplitHostPort(peer)
	if attr(conn, "network.peer.address") != host || attr(conn, "network.peer.port") != port {
		t.Errorf("connect peer %s:%s, want %s", attr(conn, "network.peer.address"), attr(conn, "network.peer.port"), peer)
	}
	if conn.Kind() != ptrace.SpanKindClient || conn.Status().Code() == ptrace.StatusCodeError {
		t.Errorf("connect kind %v status %v %q", conn.Kind(), conn.Status().Code(), conn.Status().Message())
	}
	stack := attr(conn, "code.stacktrace")
	for _, frame := range []string{"syscall.connect", "net.(*netFD).connect", "main.(*Tools).ExportCustomerData.func1"} {
		if !strings.Contains(stack, frame) {
			t.Errorf("connect stack lacks %s:\n%s", frame, stack)
		}
	}
	var opened bool
	for i := 0; i < tool.Events().Len(); i++ {
		ev := tool.Events().At(i)
		if v, _ := ev.Attributes().Get("file.path"); ev.Name() == "openat" && v.Str() == "/etc/hostname" {
			opened = true
		}
	}
	if !opened {
		t.Errorf("the tool's open of /etc/hostname is not an event of its span")
	}
	if v, _ := res.Attributes().Get("service.name"); v.Str() != "customer-agent" {
		t.Errorf("service.name = %q", v.Str())
	}
	if v, _ := res.Attributes().Get("process.pid"); v.Int() != int64(p.cmd.Process.Pid) {
		t.Errorf("process.pid = %d, want %d", v.Int(), p.cmd.Process.Pid)
	}
	if v, _ := res.Attributes().Get("process.executable.path"); v.Str() != exe {
		t.Errorf("process.executable.path = %q", v.Str())
	}
}

// TestGoProgramAlreadyRunning attaches to a process that started before the receiver, and
// checks that a recovered panic closes the unwound call with an error while its caller is fine,
// and that an execve from a tool is a child span with the command line.
func TestGoProgramAlreadyRunning(t *testing.T) {
	requireKernel(t)
	exe := buildGoAgent(t)
	p := startProgram(t, exe, listen(t))
	p.do(t, "noop", "ok noop") // the runtime is up
	sink := startReceiver(t, testConfig(goAgentTarget(exe)))
	p.do(t, "panic", "ok panic")
	p.do(t, "shell", "ok shell")

	c := waitSpans(t, sink, func(c collected) bool {
		return c.has("main.Recover", "main.mayPanic", "execute_tool RunTool", "execve")
	})
	rec, _ := c.one(t, "main.Recover")
	pan, _ := c.one(t, "main.mayPanic")
	requireParent(t, rec, pan)
	if pan.Status().Code() != ptrace.StatusCodeError || !strings.Contains(pan.Status().Message(), "unwound") {
		t.Errorf("panicking call: status %v %q", pan.Status().Code(), pan.Status().Message())
	}
	if rec.Status().Code() == ptrace.StatusCodeError {
		t.Errorf("the recovering call is marked as error: %q", rec.Status().Message())
	}
	tool, _ := c.one(t, "execute_tool RunTool")
	execve, _ := c.one(t, "execve")
	requireParent(t, tool, execve)
	if got := attr(execve, "process.command_line"); got != "/bin/sh -c exit 0" {
		t.Errorf("execve command line %q", got)
	}
	requireStarted(t, c, p.cmd.Process.Pid) // at attach; the shell, a child, has none
}

// requireStarted checks that the one process.start span is pid's: a target's process (not a
// child of one) is announced once, when it is traced from then on.
func requireStarted(t *testing.T, c collected, pid int) {
	t.Helper()
	starts := c.named("process.start")
	if len(starts) != 1 {
		t.Fatalf("%d process.start spans, want 1", len(starts))
	}
	i := starts[0]
	if v, _ := c.res[i].Attributes().Get("process.pid"); v.Int() != int64(pid) || attr(c.spans[i], "agenttrail.process.event") != "start" || !c.spans[i].ParentSpanID().IsEmpty() {
		t.Errorf("process.start of pid %d, event %q", v.Int(), attr(c.spans[i], "agenttrail.process.event"))
	}
}

// TestProcessExitMidCall kills a process inside a traced call: the call's span ends with an
// error status that says the process exited.
func TestProcessExitMidCall(t *testing.T) {
	requireKernel(t)
	exe := buildGoAgent(t)
	sink := startReceiver(t, testConfig(goAgentTarget(exe)))
	p := startProgram(t, exe, listen(t))
	p.do(t, "hang", "hanging")
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c := waitSpans(t, sink, func(c collected) bool { return c.has("main.Hang") })
	hang, _ := c.one(t, "main.Hang")
	if hang.Status().Code() != ptrace.StatusCodeError || hang.Status().Message() != "process exited before the call returned" {
		t.Errorf("status %v %q", hang.Status().Code(), hang.Status().Message())
	}
}

// TestNativeProgram traces a C program with a uprobe and a uretprobe, a C string argument,
// and a connect with a call stack through the C functions.
func TestNativeProgram(t *testing.T) {
	requireKernel(t)
	exe, lib := buildCProg(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	sink := startReceiver(t, testConfig(TargetConfig{
		Name: "cprog", Executable: exe,
		Functions: []FunctionConfig{
			{Symbol: "process_record", Args: []string{"name", "count"}},
			{Symbol: "send_record", Role: "egress"},
			{Symbol: "lib_process", Library: lib, Args: []string{"text:full"}},
		},
	}))
	p := startProgram(t, exe)
	p.do(t, "record alice@example.com 3", "ok")
	p.do(t, "connect "+strconv.Itoa(port), "ok")
	p.do(t, "lib hello-library", "ok")
	ln.Close()
	p.do(t, "thread", "ok")                      // libc is multi-threaded from now on
	p.do(t, "connect "+strconv.Itoa(port), "ok") // refused now: a blocking connect returns the error
	c := waitSpans(t, sink, func(c collected) bool {
		return len(c.named("connect")) == 2 && len(c.named("send_record")) == 2 && c.has("process_record", "lib_process")
	})
	libSpan, _ := c.one(t, "lib_process")
	if got := attr(libSpan, "agenttrail.arg.text"); got != "hello-library" {
		t.Errorf("shared library function argument %q", got)
	}
	rec, _ := c.one(t, "process_record")
	if got := attr(rec, "agenttrail.arg.name"); got != "[REDACTED:email]" {
		t.Errorf("name argument %q", got)
	}
	if got := attr(rec, "agenttrail.arg.count"); got != "3" {
		t.Errorf("count argument %q", got)
	}
	var conn, refused ptrace.Span
	for _, i := range c.named("connect") {
		if c.spans[i].Status().Code() == ptrace.StatusCodeError {
			refused = c.spans[i]
		} else {
			conn = c.spans[i]
		}
	}
	if conn == (ptrace.Span{}) || refused == (ptrace.Span{}) {
		t.Fatal("want one successful and one refused connect")
	}
	requireStarted(t, c, p.cmd.Process.Pid) // at its exec
	if attr(refused, "error.type") != "ECONNREFUSED" || attr(refused, "agenttrail.syscall.result") != "-111" {
		t.Errorf("refused connect: error.type %s result %s", attr(refused, "error.type"), attr(refused, "agenttrail.syscall.result"))
	}
	send, _ := c.byID(conn.ParentSpanID())
	if send.Name() != "send_record" || conn.TraceID() != send.TraceID() {
		t.Errorf("connect's parent is %q, want send_record", send.Name())
	}
	// The leaf is libc's connect wrapper, which has no frame pointer: the kernel's
	// frame-pointer walk skips its caller, send_record, and libc's call frame information
	// finds it on the stack. Both connects: the second runs after the program started a
	// thread, through the wrapper's other path, which has a stack frame of its own.
	for _, sp := range []ptrace.Span{conn, refused} {
		stack := attr(sp, "code.stacktrace")
		lines := strings.Split(stack, "\n")
		if len(lines) < 3 || !strings.Contains(lines[0], "libc.so") ||
			!strings.HasPrefix(lines[1], "send_record (testdata/cprog/prog.c:"+strconv.Itoa(lineOf(t, "testdata/cprog/prog.c", "int rc = connect("))+")") ||
			!strings.HasPrefix(lines[2], "main (testdata/cprog/prog.c:") {
			t.Errorf("connect stack:\n%s", stack)
		}
	}
}
