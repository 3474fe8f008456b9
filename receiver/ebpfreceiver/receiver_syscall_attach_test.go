package ebpfreceiver

import (
	"os"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
)

// syscallAttachOverride, when set, is the syscall_attach of every receiver the tests start
// (startReceiver, startReceiverTelemetry): AGENTTRAIL_TEST_SYSCALL_ATTACH=raw runs the whole
// package on the fallback path; TestSyscallAttachRaw sets it for its representative tests.
var syscallAttachOverride = os.Getenv("AGENTTRAIL_TEST_SYSCALL_ATTACH")

// withSyscallAttach applies syscallAttachOverride to a test's config.
func withSyscallAttach(cfg *Config) *Config {
	if syscallAttachOverride != "" {
		cfg.SyscallAttach = syscallAttachOverride
	}
	return cfg
}

// syscallHooks reads agenttrail.ebpf.syscalls.hooks: its path, fallback and value.
func syscallHooks(t *testing.T, cfg *Config) (path, fallback string, hooks int64) {
	t.Helper()
	_, tel := startReceiverTelemetry(t, cfg)
	m, err := tel.GetMetric("agenttrail.ebpf.syscalls.hooks")
	if err != nil {
		t.Fatal(err)
	}
	dps := m.Data.(metricdata.Gauge[int64]).DataPoints
	if len(dps) != 1 {
		t.Fatalf("%d data points of agenttrail.ebpf.syscalls.hooks", len(dps))
	}
	p, _ := dps[0].Attributes.Value(attribute.Key("path"))
	f, _ := dps[0].Attributes.Value(attribute.Key("fallback"))
	return p.AsString(), f.AsString(), dps[0].Value
}

// TestSyscallAttachPath: syscall_attach's default takes the per-syscall tracepoints here (this
// machine has tracefs, or the receiver mounts it), one per syscall entry and exit the default
// configuration needs, and raw the two raw tracepoints; the metric says which.
func TestSyscallAttachPath(t *testing.T) {
	requireKernel(t)
	if syscallAttachOverride != "" {
		t.Skip("AGENTTRAIL_TEST_SYSCALL_ATTACH overrides syscall_attach")
	}
	cfg := createDefaultConfig().(*Config)
	cfg.Targets = []TargetConfig{{Name: "none", ProcessName: "agenttrail-syscall-attach-never-runs"}}
	if path, fallback, hooks := syscallHooks(t, cfg); path != probes.AttachTracepoint || fallback != "" || hooks != 28 {
		t.Errorf("auto, default configuration: path %q fallback %q on %d tracepoints, want tracepoint on 28", path, fallback, hooks)
	}
	cfg.Sockets.Enabled = false
	if path, _, hooks := syscallHooks(t, cfg); path != probes.AttachTracepoint || hooks != 16 {
		t.Errorf("auto, sockets off: path %q on %d tracepoints, want tracepoint on 16 (no send or receive call)", path, hooks)
	}
	cfg.SyscallAttach = probes.AttachRaw
	if path, fallback, hooks := syscallHooks(t, cfg); path != probes.AttachRaw || fallback != "" || hooks != 2 {
		t.Errorf("raw: path %q fallback %q on %d tracepoints, want raw on 2", path, fallback, hooks)
	}
}

// TestSyscallAttachRaw runs representative kernel tests on the fallback path (syscall_attach:
// raw): syscalls with their peers, socket egress and DNS, fork and exec, MCP over stdio pipes,
// plain HTTP from Python. The whole package runs there with AGENTTRAIL_TEST_SYSCALL_ATTACH=raw.
func TestSyscallAttachRaw(t *testing.T) {
	requireKernel(t)
	if syscallAttachOverride != "" {
		t.Skip("AGENTTRAIL_TEST_SYSCALL_ATTACH overrides syscall_attach")
	}
	syscallAttachOverride = probes.AttachRaw
	defer func() { syscallAttachOverride = "" }()
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"SyscallPeers", TestSyscallPeers},
		{"SocketEgress", TestSocketEgress},
		{"ForkExecAttribution", TestForkExecAttribution},
		{"GoMCPStdio", TestGoMCPStdio},
		{"PlainHTTPInference", TestPlainHTTPInference},
	} {
		t.Run(tc.name, tc.test)
	}
}
