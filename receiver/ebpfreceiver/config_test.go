package ebpfreceiver

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/sockets"
)

func loadConfig(t *testing.T, id component.ID) (*Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := cm.Sub(id.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg := createDefaultConfig().(*Config)
	if err := sub.Unmarshal(cfg); err != nil {
		return nil, err
	}
	return cfg, confmap.Validate(cfg)
}

func TestLoadConfig(t *testing.T) {
	cfg, err := loadConfig(t, component.NewID(componentType))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Targets: []TargetConfig{
			{
				Name: "customer-agent", Executable: "/srv/agent/agent",
				Functions: []FunctionConfig{
					{Symbol: "main.(*Agent).HandlePrompt", Role: "prompt", Args: []string{"prompt"}},
					{Symbol: "main.(*Tools).ExportCustomerData", Role: "tool", ToolName: "customer-data-export", Args: []string{"query:full", "limit:none"}},
				},
			},
			{
				Name: "billing", ProcessName: "billing-svc",
				Functions: []FunctionConfig{{Symbol: "SSL_write", Library: "libssl.so.3", Args: []string{"buf"}}},
			},
		},
		Syscalls: []string{"connect", "execve"}, SyscallAttach: "raw", CallStacks: false, RingBufferSize: 1 << 20,
		FlushInterval: 500 * time.Millisecond, MaxOpenSpans: 5000, ProcRoot: "/host/proc",
		Python: PythonConfig{Enabled: true, Audit: true, AuditEvents: []string{"socket.connect", "os.*"}, SpanIdleTimeout: 5 * time.Second},
		TLS: TLSConfig{Enabled: true, Libraries: []string{"libssl.so.3", "/opt/openssl/lib/libssl.so.3"}, Go: false, CaptureBytes: 8192,
			CaptureMessageContent: true, MaxConnectionBuffer: 1 << 20, MaxTotalBuffer: 64 << 20},
		Sockets:         sockets.Config{Enabled: true, Inbound: false, CaptureBytes: 0, AggregateInterval: 2 * time.Second, DNSPort: 5353},
		ContentSampling: ContentSamplingConfig{Enabled: true, MaxBytes: 4096, MaxFilesPerMinute: 120},
		Discover:        defaultDiscoverConfig(),
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config:\n got %+v\nwant %+v", cfg, want)
	}
	if m := cfg.syscallMask(); m != 1|1<<3 {
		t.Errorf("syscall mask %#x", m)
	}
	if o := cfg.socketOptions(); !o.Enabled || o.Inbound || o.CaptureBytes != 0 || o.DNSPort != 5353 {
		t.Errorf("socket options %+v", o)
	}
	cfg.Sockets.Enabled = false
	if o := cfg.socketOptions(); o.Enabled {
		t.Errorf("sockets.enabled: false still loads socket I/O: %+v", o)
	}
}

func TestLoadPythonConfig(t *testing.T) {
	cfg, err := loadConfig(t, component.NewIDWithName(componentType, "python_agent"))
	if err != nil {
		t.Fatal(err)
	}
	want := []PythonFunctionConfig{
		{Pattern: "customer_agent:Agent.handle_prompt", Role: "prompt"},
		{Pattern: "*:Tools.export_*", Role: "tool", ToolName: "customer-data-export"},
	}
	if !reflect.DeepEqual(cfg.Targets[0].PythonFunctions, want) {
		t.Errorf("python_functions %+v", cfg.Targets[0].PythonFunctions)
	}
	if !cfg.Python.Enabled || !cfg.TLS.Enabled || cfg.TLS.CaptureMessageContent || cfg.TLS.CaptureBytes != 16384 {
		t.Errorf("defaults: python %+v tls %+v", cfg.Python, cfg.TLS)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		want string
	}{
		{"missing_targets", `"targets" must name at least one program`},
		{"two_selectors", `targets[0] (a): set exactly one of "executable", "process_name", "pid", "container_id"`},
		{"bad_role", `"role" must be one of prompt, inference, tool, egress, function; got "planner"`},
		{"bad_policy", `argument "x"`},
		{"bad_syscall", `unknown syscall "ptrace"`},
		{"bad_syscall_attach", `"syscall_attach" must be one of auto, tracepoint, raw, got "kprobe"`},
		{"bad_ring", `"ring_buffer_size" must be a power of two`},
		{"duplicate_name", `targets[1] (a): "name" is used by another target`},
		{"relative_executable", `"executable" must be an absolute path`},
		{"too_many_args", `"args" may capture at most 4 arguments`},
		{"bad_container", `"container_id" must be 64 lowercase hex characters`},
		{"bad_pattern", `targets[0] (a) python_functions[0]: "pattern": "handle_prompt" must be "module:qualname"`},
		{"bad_pattern_glob", `"pattern": "m:[x": bad glob`},
		{"bad_python_role", `python_functions[0] (m:f): "role" must be one of`},
		{"bad_capture", `"tls.capture_bytes" must be between 1 and 65536, got 1000000`},
		{"bad_library", `"tls.libraries[0]" must be a file name or an absolute path`},
		{"small_total_buffer", `"tls.max_total_buffer" (65536) must be at least "tls.max_connection_buffer" (1048576)`},
		{"bad_audit_glob", `"python.audit_events[0]": "os.[" is not a valid`},
		{"bad_idle", `"python.span_idle_timeout" must be positive`},
		{"python_disabled", `targets[0] (a): "python_functions" need "python.enabled: true"`},
		{"bad_socket_capture", `"sockets.capture_bytes" must be between 0 and 65536`},
		{"bad_socket_interval", `"sockets.aggregate_interval" must be at least 100ms`},
		{"bad_dns_port", `"sockets.dns_port" must be a port`},
		{"bad_content_bytes", `"content_sampling.max_bytes" must be between 1 and 65536, got 100000`},
		{"bad_content_rate", `"content_sampling.max_files_per_minute" must be positive, got 0`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(t, component.NewIDWithName(componentType, tc.name))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
