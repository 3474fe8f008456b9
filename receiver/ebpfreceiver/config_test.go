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
		Syscalls: []string{"connect", "execve"}, CallStacks: false, RingBufferSize: 1 << 20,
		FlushInterval: 500 * time.Millisecond, MaxOpenSpans: 5000, ProcRoot: "/host/proc",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config:\n got %+v\nwant %+v", cfg, want)
	}
	if m := cfg.syscallMask(); m != 1|1<<3 {
		t.Errorf("syscall mask %#x", m)
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
		{"bad_ring", `"ring_buffer_size" must be a power of two`},
		{"duplicate_name", `targets[1] (a): "name" is used by another target`},
		{"relative_executable", `"executable" must be an absolute path`},
		{"too_many_args", `"args" may capture at most 4 arguments`},
		{"bad_container", `"container_id" must be 64 lowercase hex characters`},
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
