package k8sattributionprocessor

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor/processortest"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agenttrail/agenttrail/internal/componenttestkit"
	"github.com/agenttrail/agenttrail/processor/k8sattributionprocessor/internal/metadata"
)

func loadConfig(t *testing.T, id component.ID) (*Config, error) {
	t.Helper()
	cfg, err := componenttestkit.LoadConfig(t, NewFactory(), id)
	return cfg.(*Config), err
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name string
		want *Config
	}{
		{"", createDefaultConfig().(*Config)},
		{"all", &Config{
			AuthType: AuthTypeKubeConfig, KubeConfig: "/etc/agenttrail/kubeconfig",
			NodeName: "node-a", NodeNameEnv: "MY_NODE", ProcRoot: "/host/proc",
			WaitForMetadata: 500 * time.Millisecond, ResyncPeriod: 0, PIDCacheSize: 1024,
			Extract: ExtractConfig{
				Labels:      []FieldExtractConfig{{Key: "app.kubernetes.io/name"}, {Key: "team", TagName: "agenttrail.team"}},
				Annotations: []FieldExtractConfig{{Key: "agenttrail.io/data-classification"}},
			},
			HostName: "bastion-1",
		}},
		{"gateway", func() *Config {
			c := createDefaultConfig().(*Config)
			c.Passthrough, c.NodeNameEnv = true, ""
			return c
		}()},
		{"host", func() *Config {
			c := createDefaultConfig().(*Config)
			c.AuthType = AuthTypeNone
			return c
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(t, component.NewIDWithName(metadata.Type, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg, tc.want) {
				t.Errorf("config:\n got %+v\nwant %+v", cfg, tc.want)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	if err := componenttest.CheckConfigStruct(cfg); err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatalf("default config is invalid: %v", err)
	}
	want := &Config{AuthType: "serviceAccount", NodeNameEnv: "K8S_NODE_NAME", ProcRoot: "/proc",
		WaitForMetadata: 2 * time.Second, ResyncPeriod: 5 * time.Minute, PIDCacheSize: 16384}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("default config %+v; want %+v", cfg, want)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ name, want string }{
		{"bad_auth", `"auth_type" must be one of "serviceAccount", "kubeConfig", "none"; got "token"`},
		{"kubeconfig_without_kubeconfig_auth", `"kubeconfig" is only used with "auth_type: kubeConfig"`},
		{"bad_node", `"node_name" must be a node name`},
		{"bad_env", `"node_name_env" must be an environment variable name, got "MY NODE"`},
		{"relative_proc", `"proc_root" must be an absolute path, got "host/proc"`},
		{"negative_wait", `"wait_for_metadata" must be between 0s and 1m0s, got -1s`},
		{"long_wait", `"wait_for_metadata" must be between 0s and 1m0s, got 5m0s`},
		{"negative_resync", `"resync_period" must not be negative`},
		{"zero_cache", `"pid_cache_size" must be positive, got 0`},
		{"empty_label_key", `"extract.labels[0]": "key" must not be empty`},
		{"bad_label_key", `"extract.labels[0]": "key" "-bad-" is not a valid Kubernetes key`},
		{"duplicate_tag", `"extract.annotations[0]": resource attribute "owner" is also written by "extract.labels[0]"`},
		{"reserved_tag", `"extract.annotations[0]": "tag_name" "k8s.namespace.name" is an attribute this processor sets itself`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(t, component.NewIDWithName(metadata.Type, tc.name))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v; want containing %q", err, tc.want)
			}
		})
	}
}

func TestIsQualifiedName(t *testing.T) {
	for key, want := range map[string]bool{
		"app": true, "app.kubernetes.io/name": true, "team_name": true, "a/b": true,
		"": false, "/name": false, "Pre.fix/name": false, "-x": false, "x-": false, "a/b/c": false,
		strings.Repeat("a", 63): true, strings.Repeat("a", 64): false,
	} {
		if got := isQualifiedName(key); got != want {
			t.Errorf("isQualifiedName(%q) = %v; want %v", key, got, want)
		}
	}
}

func TestFactory(t *testing.T) {
	f := NewFactory()
	if f.Type().String() != "k8sattribution" {
		t.Fatalf("type %q", f.Type())
	}
	if f.TracesStability() != component.StabilityLevelAlpha || f.LogsStability() != component.StabilityLevelAlpha {
		t.Errorf("stability traces %v logs %v", f.TracesStability(), f.LogsStability())
	}
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.AuthType = AuthTypeNone
	set := processortest.NewNopSettings(metadata.Type)
	tp, err := f.CreateTraces(context.Background(), set, cfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	lp, err := f.CreateLogs(context.Background(), set, cfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if !tp.Capabilities().MutatesData {
		t.Error("the processor changes resources: MutatesData must be true")
	}
	// With an injected client too.
	cp, err := NewFactoryWithClient(fake.NewClientset()).CreateTraces(context.Background(), set, f.CreateDefaultConfig(), consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	// Shutdown without Start, twice, is fine.
	for i := 0; i < 2; i++ {
		if err := cp.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := lp.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
