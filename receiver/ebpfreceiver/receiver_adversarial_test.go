package ebpfreceiver

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// buildAdversary builds testdata/adversary into dir.
func buildAdversary(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "adversary")
	if b, err := exec.Command("gcc", "-O1", "-o", out, "testdata/adversary/adversary.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc adversary: %v\n%s", err, b)
	}
	return out
}

// TestAdversarialWorkload traces a well-behaved Go agent while traced processes beside it work
// against the tracer: fork and exec in a tight loop, exec with 128 KiB of arguments, open and
// exec 4 KiB paths, and have their executable replaced at the traced path while they run. The
// receiver must stay up (no record's handling panics), keep producing the agent's spans, and
// count what it could not keep. Bounded: a few hundred processes, at most 40 s of hostility.
func TestAdversarialWorkload(t *testing.T) {
	requireKernel(t)
	agentExe := buildGoAgent(t)
	dir := t.TempDir()
	adversary := buildAdversary(t, dir)

	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(context.Background()) }()
	set := receivertest.NewNopSettings(componentType)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	set.Logger = zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))
	cfg := testConfig(goAgentTarget(agentExe), TargetConfig{Name: "adversary", Executable: adversary})
	sink := new(consumertest.TracesSink)
	rcv, err := NewFactory().CreateTraces(context.Background(), set, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	host := newStatusHost()
	if err := rcv.Start(context.Background(), host); err != nil {
		t.Fatalf("start: %v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = rcv.Shutdown(context.Background())
		}
	}()

	agent := startProgram(t, agentExe, listen(t))
	prompts := func(c collected) int { return len(c.named("invoke_agent customer-agent")) }
	agent.do(t, "prompt hello", "ok prompt")
	waitSpans(t, sink, func(c collected) bool { return prompts(c) == 1 })

	// A running adversary whose executable is replaced at the traced path while it runs.
	waiter := startProgram(t, adversary, "wait")
	waiter.waitLine(t, "ready")
	replacement := filepath.Join(dir, "adversary.new")
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(replacement, b, 0o755); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	run := func(args ...string) {
		defer wg.Done()
		if out, err := exec.CommandContext(ctx, adversary, args...).CombinedOutput(); err != nil && ctx.Err() == nil {
			t.Errorf("adversary %v: %v %s", args, err, out)
		}
	}
	wg.Add(3)
	go run("forks", "300")
	go run("bigargv", "20")
	go run("longpath", "3000")
	// Meanwhile the agent keeps working.
	sent := 1
	hostile := make(chan struct{})
	go func() { wg.Wait(); close(hostile) }()
	for done := false; !done; {
		select {
		case <-hostile:
			done = true
		case <-time.After(200 * time.Millisecond):
			agent.do(t, "prompt during the storm", "ok prompt")
			sent++
		}
	}
	// Replace the executable at the traced path (the running one keeps its file), run what is
	// there now, and end the waiter.
	if err := os.Rename(replacement, adversary); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(adversary).Run(); err != nil {
		t.Errorf("the replaced executable: %v", err)
	}
	agent.do(t, "prompt after the storm", "ok prompt")
	sent++

	c := waitSpans(t, sink, func(c collected) bool { return prompts(c) >= sent })
	if got := prompts(c); got != sent {
		t.Errorf("%d prompt spans of the agent, want %d", got, sent)
	}
	var advSpans int
	for i := range c.spans {
		if v, _ := c.res[i].Attributes().Get("service.name"); v.Str() == "adversary" {
			advSpans++
		}
	}
	if advSpans == 0 {
		t.Errorf("no span of the adversaries: were they traced?")
	}
	if got := metricSum(t, tel, "agenttrail.ebpf.events.panics"); got != 0 {
		t.Errorf("%d records' handling panicked", got)
	}
	read := metricSum(t, tel, "agenttrail.ebpf.events.read")
	lost := metricSum(t, tel, "agenttrail.ebpf.events.lost", dropRingBufferFull)
	invalid := metricSum(t, tel, "agenttrail.ebpf.events.invalid")
	t.Logf("adversaries: %d spans; records read %d, lost to a full ring buffer %d, invalid %d; status events %v",
		advSpans, read, lost, invalid, host.statuses())
	if read == 0 {
		t.Error("no record read")
	}
	if lost > 0 && !slices.Contains(host.statuses(), componentstatus.StatusRecoverableError) {
		t.Errorf("%d records lost without a recoverable error status", lost)
	}
	if err := rcv.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	stopped = true
}

// metricSum sums an int64 counter's data points, only those of the reason when one is given
// (0 when the metric was never recorded).
func metricSum(t *testing.T, tel *componenttest.Telemetry, name string, reason ...string) int64 {
	t.Helper()
	m, err := tel.GetMetric(name)
	if err != nil {
		return 0
	}
	var n int64
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		if r, _ := dp.Attributes.Value("reason"); len(reason) > 0 && r.AsString() != reason[0] {
			continue
		}
		n += dp.Value
	}
	return n
}
