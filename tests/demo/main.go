// Command demo runs AgentTrail's demo on this machine: the bank's customer-service agent, a
// mock model and an "outside host", the collector built by `make build` with the default agent
// configuration, a benign conversation and then a prompt-injection attack; it prints the spans
// the collector recorded for the attack. It stops everything it started when done, on Ctrl-C,
// or when a step fails, and then says in one line which step failed and why.
//
// Usage (make demo does this): go run ./tests/demo -collector _build/otelcol-agenttrail
package main

import (
	"context"

	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/agenttrail/agenttrail/tests/workloads/bank"
)

func main() {
	collector := flag.String("collector", "_build/otelcol-agenttrail", "the collector binary built by make build")
	config := flag.String("config", "distributions/agenttrail/config.yaml", "the agent configuration")
	overrides := flag.String("overrides", "tests/demo/collector-overrides.yaml", "demo overrides merged over the configuration")
	dir := flag.String("dir", ".demo", "work folder for binaries, data and logs")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{collector: *collector, config: *config, overrides: *overrides, dir: *dir}
	err := d.run(ctx)
	d.cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
}

type demo struct {
	collector, config, overrides, dir string

	env     *bank.Env
	otelcol *exec.Cmd
	sink    *spanSink
	server  *http.Server
}

// step runs one named step; its error says which step failed.
func step(name string, fn func() error) error {
	fmt.Printf("==> %s\n", name)
	if err := fn(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (d *demo) run(ctx context.Context) error {
	abs, err := filepath.Abs(d.dir)
	if err != nil {
		return err
	}
	d.dir = abs
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	var bins bank.Binaries
	if err := step("build the demo workloads (customer-agent, mock-model, exfil-sink)", func() error {
		bins, err = bank.Build(ctx, filepath.Join(d.dir, "bin"))
		return err
	}); err != nil {
		return err
	}
	if err := step("start the span sink the collector exports to (OTLP/HTTP on loopback)", d.startSink); err != nil {
		return err
	}
	// The collector starts first: processes started after it are attached at their exec.
	if err := step("start the collector with the default agent configuration", func() error { return d.startCollector(ctx) }); err != nil {
		return err
	}
	if err := step("start the bank: mock model (HTTPS), outside host (127.0.0.2), customer-agent", func() error {
		d.env, err = bank.Start(ctx, bins, bank.Options{Dir: filepath.Join(d.dir, "bank")})
		return err
	}); err != nil {
		return err
	}
	fmt.Printf("    customer-agent pid %d at %s, customer database %s\n", d.env.AgentPID, d.env.AgentURL, d.env.CustomersFile)
	// Give the collector a moment to see the agent's exec and attach its probes.
	time.Sleep(time.Second)

	if err := step("benign conversation", func() error {
		for _, msg := range bank.BenignConversation {
			reply, err := d.env.Chat(ctx, "benign", msg)
			if err != nil {
				return err
			}
			fmt.Printf("    user: %s\n    agent: %s\n", msg, oneLine(reply.Reply))
		}
		return nil
	}); err != nil {
		return err
	}
	if err := step("the attack: a prompt injection asks for the staff-only export", func() error {
		msg := bank.AttackMessageTo(d.env.UploadURL)
		reply, err := d.env.Chat(ctx, "attacker", msg)
		if err != nil {
			return err
		}
		fmt.Printf("    attacker: %s\n    agent: %s\n", oneLine(msg), oneLine(reply.Reply))
		uploads, err := d.env.Uploads()
		if err != nil {
			return err
		}
		for _, u := range uploads {
			fmt.Printf("    the outside host received %d bytes at %s\n", u.Bytes, u.Path)
		}
		return nil
	}); err != nil {
		return err
	}
	var story []span
	if err := step("wait for the collector's spans of the attack", func() error {
		story, err = d.sink.waitStory(ctx, "execute_tool customer-data-export", 15*time.Second)
		return err
	}); err != nil {
		return err
	}
	printStory(story)
	fmt.Printf(`
What this demo did not show, because it is not built yet:
  - attribution of each span to a Kubernetes namespace, pod, deployment and service account
  - the attack-story processor: one story per request, learned profiles, rules and the finding
    (OCSF, MITRE ATLAS) that would flag this export
  - the Splunk HEC, Microsoft Sentinel and tamper-evident evidence exporters
Logs: collector %s, workloads in %s
`, filepath.Join(d.dir, "collector.log"), filepath.Join(d.dir, "bank"))
	return nil
}

func (d *demo) startSink() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d.sink = &spanSink{}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", d.sink.handle)
	d.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = d.server.Serve(ln) }()
	d.sink.addr = ln.Addr().String()
	return nil
}

func (d *demo) startCollector(ctx context.Context) error {
	logPath := filepath.Join(d.dir, "collector.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.collector, "--config="+d.config, "--config="+d.overrides)
	cmd.Env = append(os.Environ(),
		"AGENTTRAIL_DEMO_OTLP_ENDPOINT=http://"+d.sink.addr,
		"AGENTTRAIL_HEALTH_ENDPOINT=127.0.0.1:13133",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	d.otelcol = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case err := <-exited:
			d.otelcol = nil
			return fmt.Errorf("the collector exited (%v); last lines of %s:\n%s", err, logPath, tail(logPath, 15))
		case <-deadline:
			return fmt.Errorf("the collector did not become healthy within 30s; see %s", logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		resp, err := http.Get("http://127.0.0.1:13133/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(tail(logPath, 200), "ebpf receiver started") {
				fmt.Printf("    collector pid %d healthy; %s\n", cmd.Process.Pid, grepLine(logPath, "ebpf receiver started"))
				return nil
			}
		}
	}
}

func (d *demo) cleanup() {
	if d.env != nil {
		if err := d.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the workloads: %v\n", err)
		}
	}
	if d.otelcol != nil && d.otelcol.Process != nil {
		_ = d.otelcol.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _, _ = d.otelcol.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-d.otelcol.Process.Pid, syscall.SIGKILL)
		}
	}
	if d.server != nil {
		_ = d.server.Close()
	}
	fmt.Println("==> stopped everything the demo started")
}

// span is one received span with its process.
type span struct {
	s       ptrace.Span
	service string
	pid     int64
}

// spanSink is the OTLP/HTTP endpoint the demo's collector exports to.
type spanSink struct {
	addr  string
	mu    sync.Mutex
	spans []span
}

func (k *spanSink) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	td := req.Traces()
	k.mu.Lock()
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		svc, _ := rs.Resource().Attributes().Get("service.name")
		pid, _ := rs.Resource().Attributes().Get("process.pid")
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j).Spans()
			for n := 0; n < ss.Len(); n++ {
				s := ptrace.NewSpan()
				ss.At(n).CopyTo(s)
				k.spans = append(k.spans, span{s: s, service: svc.Str(), pid: pid.Int()})
			}
		}
	}
	k.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := ptraceotlp.NewExportResponse().MarshalProto()
	_, _ = w.Write(out)
}

// waitStory waits for a span named name and returns every span of its trace, once the trace
// has stopped growing for a second.
func (k *spanSink) waitStory(ctx context.Context, name string, timeout time.Duration) ([]span, error) {
	deadline := time.Now().Add(timeout)
	var trace pcommon.TraceID
	last, stableSince := -1, time.Time{}
	for {
		k.mu.Lock()
		var story []span
		for _, s := range k.spans {
			if trace.IsEmpty() && s.s.Name() == name {
				trace = s.s.TraceID()
			}
		}
		for _, s := range k.spans {
			if !trace.IsEmpty() && s.s.TraceID() == trace {
				story = append(story, s)
			}
		}
		total := len(k.spans)
		k.mu.Unlock()
		if len(story) > 0 {
			if len(story) != last {
				last, stableSince = len(story), time.Now()
			} else if time.Since(stableSince) > time.Second {
				return story, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no span %q arrived within %v (%d spans received in all)", name, timeout, total)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// printStory prints the trace as an indented tree in time order, with the attributes that
// tell the story.
func printStory(story []span) {
	children := map[pcommon.SpanID][]span{}
	ids := map[pcommon.SpanID]bool{}
	for _, s := range story {
		ids[s.s.SpanID()] = true
	}
	var roots []span
	for _, s := range story {
		if p := s.s.ParentSpanID(); !p.IsEmpty() && ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(v []span) {
		sort.Slice(v, func(i, j int) bool { return v[i].s.StartTimestamp() < v[j].s.StartTimestamp() })
	}
	fmt.Printf("\nThe attack as the collector recorded it (trace %s, %d spans):\n\n", story[0].s.TraceID(), len(story))
	var walk func(s span, depth int)
	walk = func(s span, depth int) {
		start := s.s.StartTimestamp().AsTime()
		dur := s.s.EndTimestamp().AsTime().Sub(start)
		fmt.Printf("%s %s%s  [%s pid %d, %v]\n", start.Format("15:04:05.000"), strings.Repeat("  ", depth), s.s.Name(), s.service, s.pid, dur.Round(time.Microsecond))
		for _, key := range []string{"code.function.name", "agenttrail.arg.prompt", "agenttrail.arg.query", "agenttrail.arg.destination",
			"gen_ai.request.model", "network.peer.address", "network.peer.port", "process.command_line"} {
			if v, ok := s.s.Attributes().Get(key); ok {
				fmt.Printf("%s   %s = %s\n", strings.Repeat(" ", 12+2*depth), key, oneLine(v.AsString()))
			}
		}
		if v, ok := s.s.Attributes().Get("code.stacktrace"); ok {
			frames := strings.Split(v.Str(), "\n")
			fmt.Printf("%s   call stack (%d frames, innermost first, runtime frames left out):\n", strings.Repeat(" ", 12+2*depth), len(frames))
			shown := 0
			for _, f := range frames {
				if strings.HasPrefix(f, "runtime.") || strings.HasPrefix(f, "internal/") || strings.HasPrefix(f, "syscall.") || shown == 6 {
					continue
				}
				fmt.Printf("%s     %s\n", strings.Repeat(" ", 12+2*depth), f)
				shown++
			}
		}
		for i := 0; i < s.s.Events().Len(); i++ {
			ev := s.s.Events().At(i)
			if p, ok := ev.Attributes().Get("file.path"); ok {
				fmt.Printf("%s %s   event %s %s\n", ev.Timestamp().AsTime().Format("15:04:05.000"), strings.Repeat("  ", depth), ev.Name(), p.Str())
			}
		}
		if s.s.Status().Code() == ptrace.StatusCodeError {
			fmt.Printf("%s   status: error: %s\n", strings.Repeat(" ", 12+2*depth), s.s.Status().Message())
		}
		kids := children[s.s.SpanID()]
		byStart(kids)
		for _, c := range kids {
			walk(c, depth+1)
		}
	}
	byStart(roots)
	for _, r := range roots {
		walk(r, 0)
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		return s[:157] + "..."
	}
	return s
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func grepLine(path, needle string) string {
	for _, l := range strings.Split(tail(path, 500), "\n") {
		if strings.Contains(l, needle) {
			if i := strings.Index(l, needle); i >= 0 {
				return oneLine(l[i:])
			}
		}
	}
	return ""
}
