package ebpfreceiver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// discoveryFailures is agenttrail.ebpf.discovery.attach_failures by reason.
func discoveryFailures(tel *componenttest.Telemetry) map[string]int64 {
	out := map[string]int64{}
	m, err := tel.GetMetric("agenttrail.ebpf.discovery.attach_failures")
	if err != nil {
		return out
	}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		reason, _ := dp.Attributes.Value(attribute.Key("reason"))
		out[reason.AsString()] += dp.Value
	}
	return out
}

// fakeProc writes what readProc and the candidate check read of a process under procRoot: its
// executable link to exe, and a mapping of libssl (a Python or curl with OpenSSL, to discovery).
func fakeProc(t *testing.T, procRoot, pid, exe string) {
	t.Helper()
	dir := filepath.Join(procRoot, pid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"comm":    "agent\n",
		"cmdline": "agent\x00--serve\x00",
		"stat":    pid + " (agent) S 1 " + pid + " " + pid + " 0 -1\n",
		"maps":    "7f00-7f01 r-xp 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDiscoveryCandidateAttachFailure: a candidate whose program cannot be read when discovery
// sets it up (here not an ELF file; in life a process that exited between the scan and the
// attach, whose exit the kernel then never reports) leaves the component status OK: it is
// counted in agenttrail.ebpf.discovery.attach_failures{reason="attach"} and logged at info
// level, with no warning. Before, its "cannot attach to process" was a recoverable error of the
// receiver that stayed until the collector restarted.
func TestDiscoveryCandidateAttachFailure(t *testing.T) {
	requireKernel(t)
	procRoot := t.TempDir()
	script := filepath.Join(t.TempDir(), "agent.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 1000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A pid no process has (pid_max is 4194304 at most): the kernel's entry for it is inert.
	const pid = "4194300"
	fakeProc(t, procRoot, pid, script)

	cfg := testConfig()
	cfg.ProcRoot = procRoot
	cfg.Discover.Enabled = true
	cfg.Discover.ScanInterval = 100 * time.Millisecond
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	core, logs := observer.New(zapcore.DebugLevel)
	set := receivertest.NewNopSettings(componentType)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	set.Logger = zap.New(core)
	host := newStatusHost()
	r, err := NewFactory().CreateTraces(context.Background(), set, cfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background(), host); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for discoveryFailures(tel)[candidateAttach] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no attach failure counted for the candidate; failures %v, statuses %v, logs %v",
				discoveryFailures(tel), host.statuses(), logs.All())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, st := range host.statuses() {
		if st == componentstatus.StatusRecoverableError {
			t.Errorf("a discovery candidate degraded the status: %v", host.last().Err())
		}
	}
	if got := logs.FilterLevelExact(zapcore.WarnLevel).FilterFieldKey("target").All(); len(got) != 0 {
		t.Errorf("warned about the candidate: %v", got[0].Message)
	}
	info := logs.FilterLevelExact(zapcore.InfoLevel).FilterMessageSnippet("could not be fully instrumented").All()
	if len(info) == 0 || info[0].ContextMap()["reason"] != candidateAttach || !strings.Contains(info[0].ContextMap()["what"].(string), "cannot attach to process "+pid) {
		t.Errorf("info lines %v", info)
	}
}

// problemTracer is a probe family whose setup of every process finds something it cannot
// instrument, the way the TLS and Python families report a library or an interpreter: through
// Env.Problems and a warning.
type problemTracer struct {
	tracer.Tracer // the methods setup does not call
	env           tracer.Env
}

func (p problemTracer) SetupProcess(proc *tracer.Process) {
	p.env.Logger.Warn("cannot probe the TLS library", zap.Uint32("pid", proc.PID))
	p.env.Problems.Add(0, "TLS (/opt/lib/libssl.so.9): cannot probe SSL_write")
}

// TestDiscoverySetupProblems: what a probe family cannot instrument while a discovery process
// is set up (a child of a candidate here) is counted with reason setup, its warning written at
// debug level, and the status stays OK; the same problem for a target's process is a
// recoverable error and a warning, as before.
func TestDiscoverySetupProblems(t *testing.T) {
	o := newOffline(t, consumertest.NewNop())
	core, logs := observer.New(zapcore.DebugLevel)
	o.r.logger = zap.New(core)
	g := o.r.registry
	g.logger = o.r.logger
	g.cfg.Discover.Enabled = true
	if err := g.startDiscovery(o.host); err != nil {
		t.Fatal(err)
	}
	d := g.discovery
	env := tracer.Env{Logger: tracerLogger(o.r.logger, g.problems), Problems: g.problems}
	g.tracers = append(g.tracers, problemTracer{env: env})

	// A candidate on probation (pid 300) forks: the child is set up under discovery's target.
	g.traced[300] = &tracer.Process{ProcInfo: tracer.ProcInfo{PID: 300}, Target: d.target, Capture: &spans.Capture{}}
	d.procs[300] = &discoveredProc{state: stateProbation}
	g.onFork(spans.Header{PID: 300}, 301, d.target.ID)
	if g.traced[301] == nil {
		t.Fatal("the child was not registered")
	}
	if got := discoveryFailures(o.tel); got[candidateSetup] != 1 || len(got) != 1 {
		t.Errorf("discovery attach failures %v, want setup: 1", got)
	}
	if got := o.host.statuses(); len(got) != 0 {
		t.Errorf("statuses %v after a discovery process's problem, want none", got)
	}
	if got := logs.FilterLevelExact(zapcore.WarnLevel).Len(); got != 0 {
		t.Errorf("%d warnings, want the tracer's written at debug", got)
	}
	if logs.FilterLevelExact(zapcore.DebugLevel).FilterMessage("cannot probe the TLS library").Len() != 1 {
		t.Errorf("the tracer's warning is not at debug level: %v", logs.All())
	}
	if g.problems.candidate != nil || g.problems.demote.Load() {
		t.Fatal("the candidate scope stayed open")
	}

	// A target's process: the same problem is the component's.
	g.onFork(spans.Header{PID: pidTraced}, 302, 0)
	ev := o.host.last()
	if ev == nil || ev.Status() != componentstatus.StatusRecoverableError || !strings.Contains(ev.Err().Error(), "cannot probe SSL_write") {
		t.Errorf("status after a target's problem: %+v", ev)
	}
	if logs.FilterLevelExact(zapcore.WarnLevel).FilterMessage("cannot probe the TLS library").Len() != 1 {
		t.Errorf("the target's warning is not at warn level")
	}
	if got := discoveryFailures(o.tel); got[candidateSetup] != 1 {
		t.Errorf("a target's problem counted as discovery's: %v", got)
	}
}
