// Command demo runs AgentTrail's demo on this machine: the bank's customer-service agent, a
// mock model and an "outside host", the collector built by `make build` with the default agent
// configuration, a benign conversation and then a prompt-injection attack; it prints the spans
// the collector recorded for the attack. It stops everything it started when done, on Ctrl-C,
// or when a step fails, and then says in one line which step failed and why.
//
// Usage (make demo does this): go run ./tests/demo -collector _build/otelcol-agenttrail
package main

import (
	"cmp"
	"context"
	"errors"

	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/agenttrail/agenttrail/tests/jaeger"
	"github.com/agenttrail/agenttrail/tests/workloads/bank"
)

func main() {
	collector := flag.String("collector", "_build/otelcol-agenttrail", "the collector binary built by make build")
	config := flag.String("config", "distributions/agenttrail/config.yaml", "the agent configuration")
	overrides := flag.String("overrides", "tests/demo/collector-demo.yaml", "demo additions merged over the configuration (the evidence archive)")
	cli := flag.String("cli", "bin/agenttrail", "the agenttrail CLI built by make build")
	dir := flag.String("dir", ".demo", "work folder for binaries, data and logs")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{collector: *collector, config: *config, overrides: *overrides, cli: *cli, dir: *dir}
	err := d.run(ctx)
	d.cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
}

type demo struct {
	collector, config, overrides, cli, dir string

	env         *bank.Env
	otelcol     *exec.Cmd
	otelcolDone chan struct{}
	jaeger      *jaeger.Jaeger
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
	if err := step("start Jaeger (in memory; query API "+jaeger.QueryURL+")", func() error {
		d.jaeger, err = jaeger.Start(ctx, d.dir)
		return err
	}); err != nil {
		return err
	}
	// The collector starts first: processes started after it are attached at their exec.
	if err := step("make a signing key for the evidence archive", func() error {
		for _, old := range []string{"evidence", "evidence.key", "profiles", "bundle"} {
			if err := os.RemoveAll(filepath.Join(d.dir, old)); err != nil {
				return err
			}
		}
		out, err := exec.Command(d.cli, "evidence", "keygen", "--out", filepath.Join(d.dir, "evidence.key")).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}); err != nil {
		return err
	}
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
	var story jaeger.Trace
	if err := step("find the attack's trace in Jaeger", func() error {
		story, err = waitStory(ctx, d.jaeger, "customer-agent", "execute_tool customer-data-export", 20*time.Second)
		return err
	}); err != nil {
		return err
	}
	printStory(story)
	if !printFinding(story) {
		return errors.New("the attack's story carries no finding: the attackstory processor did not flag it (see the collector log)")
	}
	fmt.Printf("\nThe trace in Jaeger: %s/api/traces/%s\n", jaeger.QueryURL, story.TraceID)
	fmt.Printf("(this Jaeger is built from Go modules and has no UI assets; its HTTP API answers the UI's queries)\n")
	if err := step("stop the collector, so the evidence archive is sealed and signed", func() error {
		d.stopCollector()
		return nil
	}); err != nil {
		return err
	}
	if err := step("verify the evidence archive and export the story for an auditor", func() error {
		evidence, bundle := filepath.Join(d.dir, "evidence"), filepath.Join(d.dir, "bundle")
		for _, args := range [][]string{
			{"evidence", "verify", evidence},
			{"evidence", "export", "--dir", evidence, "--trace", story.TraceID, "--out", bundle},
			{"evidence", "verify-bundle", bundle},
		} {
			out, err := exec.Command(d.cli, args...).CombinedOutput()
			fmt.Printf("    $ %s %s\n%s", d.cli, strings.Join(args, " "), indent(string(out), "      "))
			if err != nil {
				return fmt.Errorf("%s %s: %v", d.cli, args[1], err)
			}
		}
		fmt.Printf("    the story for a person: %s\n", filepath.Join(bundle, "report.html"))
		return nil
	}); err != nil {
		return err
	}
	fmt.Printf(`
What this demo did not show:
  - Kubernetes attribution: there is no cluster here, so spans carry the process and host
    identity only (the k8sattribution processor runs with auth_type none)
  - delivery to Splunk HEC and Microsoft Sentinel (their exporters are in the distribution and
    tested against local endpoints; add them to the config with your endpoints and tokens)
Logs: collector %s, workloads in %s, learned profiles in %s
`, filepath.Join(d.dir, "collector.log"), filepath.Join(d.dir, "bank"), filepath.Join(d.dir, "profiles"))
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
		"AGENTTRAIL_OTLP_ENDPOINT="+jaeger.OTLPGRPCEndpoint,
		"AGENTTRAIL_HEALTH_ENDPOINT=127.0.0.1:13133",
		"AGENTTRAIL_K8S_AUTH=none", // no cluster here: cgroup data only
		"AGENTTRAIL_PROFILES_DIR="+filepath.Join(d.dir, "profiles"),
		"AGENTTRAIL_DEMO_DIR="+d.dir,
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	d.otelcol = cmd
	d.otelcolDone = make(chan struct{})
	exited := make(chan error, 1)
	go func() { err := cmd.Wait(); logFile.Close(); exited <- err; close(d.otelcolDone) }()
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
		resp, err := http.Get("http://127.0.0.1:13133/status")
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
	d.stopCollector()
	d.jaeger.Stop()
	fmt.Println("==> stopped everything the demo started")
}

// stopCollector stops the collector gracefully (it flushes and seals the archive). Safe to call
// twice.
func (d *demo) stopCollector() {
	if d.otelcol == nil || d.otelcol.Process == nil {
		return
	}
	_ = d.otelcol.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.otelcolDone:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-d.otelcol.Process.Pid, syscall.SIGKILL)
		<-d.otelcolDone
	}
	d.otelcol = nil
}

// printFinding prints the finding the attackstory processor put on the story's root span, and
// reports whether there was one.
func printFinding(t jaeger.Trace) bool {
	for _, s := range t.Spans {
		rules := jaeger.Tag(s.Tags, "agenttrail.finding.rule_ids")
		if rules == "" {
			continue
		}
		title, narrative := jaeger.Tag(s.Tags, "agenttrail.finding.title"), ""
		for _, l := range s.Logs {
			if n := jaeger.Tag(l.Fields, "agenttrail.finding.narrative"); n != "" {
				narrative = n
				title = cmp.Or(title, jaeger.Tag(l.Fields, "agenttrail.finding.title"))
				break
			}
		}
		fmt.Printf("\nFinding: %s\n", title)
		fmt.Printf("  severity:    %s\n  rules:       %s\n  MITRE ATLAS: %s\n  narrative:   %s\n", jaeger.Tag(s.Tags, "agenttrail.finding.severity"),
			rules, jaeger.Tag(s.Tags, "agenttrail.finding.atlas_ids"), narrative)
		return true
	}
	return false
}

func indent(s, prefix string) string {
	if s == "" {
		return ""
	}
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix) + "\n"
}

// waitStory waits for a trace of service with a span named op, and returns it once it has
// stopped growing for a second.
func waitStory(ctx context.Context, j *jaeger.Jaeger, service, op string, timeout time.Duration) (jaeger.Trace, error) {
	deadline := time.Now().Add(timeout)
	last, stableSince := -1, time.Time{}
	for {
		traces, err := j.Traces(ctx, service, 50)
		if err == nil {
			for _, t := range traces {
				for _, s := range t.Spans {
					if s.OperationName != op {
						continue
					}
					if len(t.Spans) != last {
						last, stableSince = len(t.Spans), time.Now()
					} else if time.Since(stableSince) > time.Second {
						return t, nil
					}
				}
			}
		}
		if time.Now().After(deadline) {
			return jaeger.Trace{}, fmt.Errorf("no trace of %s with a span %q in Jaeger within %v (last error: %v)", service, op, timeout, err)
		}
		select {
		case <-ctx.Done():
			return jaeger.Trace{}, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// printStory prints the trace as an indented tree in time order, with the attributes that
// tell the story.
func printStory(t jaeger.Trace) {
	t.SortByStart()
	children := map[string][]jaeger.Span{}
	ids := map[string]bool{}
	for _, s := range t.Spans {
		ids[s.SpanID] = true
	}
	var roots []jaeger.Span
	for _, s := range t.Spans {
		if p := s.Parent(); p != "" && ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	fmt.Printf("\nThe attack as the collector recorded it (trace %s, %d spans):\n\n", t.TraceID, len(t.Spans))
	var walk func(s jaeger.Span, depth int)
	walk = func(s jaeger.Span, depth int) {
		start := time.UnixMicro(s.StartTime)
		proc := t.Processes[s.ProcessID]
		indent := strings.Repeat(" ", 12+2*depth)
		fmt.Printf("%s %s%s  [%s pid %s, %v]\n", start.Format("15:04:05.000"), strings.Repeat("  ", depth), s.OperationName,
			proc.ServiceName, jaeger.Tag(proc.Tags, "process.pid"), time.Duration(s.Duration)*time.Microsecond)
		for _, key := range []string{"code.function.name", "agenttrail.arg.prompt", "agenttrail.arg.query", "agenttrail.arg.destination",
			"gen_ai.request.model", "gen_ai.provider.name", "agenttrail.tool_calls.names", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "network.peer.address", "network.peer.port", "process.command_line"} {
			if v := jaeger.Tag(s.Tags, key); v != "" {
				fmt.Printf("%s   %s = %s\n", indent, key, oneLine(v))
			}
		}
		if v := jaeger.Tag(s.Tags, "code.stacktrace"); v != "" {
			frames := strings.Split(v, "\n")
			fmt.Printf("%s   call stack (%d frames, innermost first, runtime frames left out):\n", indent, len(frames))
			shown := 0
			for _, f := range frames {
				if strings.HasPrefix(f, "runtime.") || strings.HasPrefix(f, "internal/") || strings.HasPrefix(f, "syscall.") || shown == 6 {
					continue
				}
				fmt.Printf("%s     %s\n", indent, f)
				shown++
			}
		}
		for _, l := range s.Logs {
			if p := jaeger.Tag(l.Fields, "file.path"); p != "" {
				fmt.Printf("%s %s   event %s %s\n", time.UnixMicro(l.Timestamp).Format("15:04:05.000"), strings.Repeat("  ", depth), jaeger.Tag(l.Fields, "event"), p)
			}
		}
		if jaeger.Tag(s.Tags, "otel.status_code") == "ERROR" {
			fmt.Printf("%s   status: error: %s\n", indent, jaeger.Tag(s.Tags, "otel.status_description"))
		}
		for _, c := range children[s.SpanID] {
			walk(c, depth+1)
		}
	}
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
