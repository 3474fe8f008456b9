package k8sinventoryextension

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agenttrail/agenttrail/extension/k8sinventoryextension/internal/metadata"
	"github.com/agenttrail/agenttrail/processor/k8sattributionprocessor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func nopSettings() extension.Settings {
	return extension.Settings{ID: component.NewID(metadata.Type), TelemetrySettings: componenttest.NewNopTelemetrySettings(), BuildInfo: component.NewDefaultBuildInfo()}
}

func TestConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id      string
		want    *Config
		wantErr string
	}{
		{id: "", want: createDefaultConfig().(*Config)},
		{id: "all", want: &Config{AuthType: "kubeConfig", KubeConfig: "/etc/agenttrail/kubeconfig", NodeName: "node-a", NodeNameEnv: "MY_NODE"}},
		{id: "host", want: &Config{AuthType: "none", NodeNameEnv: "K8S_NODE_NAME", ResyncPeriod: 5 * time.Minute}},
		{id: "bad_auth", wantErr: `"auth_type" must be one of`},
		{id: "kubeconfig_without_kubeconfig_auth", wantErr: `"kubeconfig" is only used with`},
		{id: "bad_node", wantErr: `"node_name" must be a node name`},
		{id: "bad_env", wantErr: `"node_name_env" must be an environment variable name`},
		{id: "bad_resync", wantErr: `"resync_period" must not be negative`},
	}
	for _, tt := range tests {
		t.Run("k8s_inventory/"+tt.id, func(t *testing.T) {
			id := component.NewID(metadata.Type)
			if tt.id != "" {
				id = component.NewIDWithName(metadata.Type, tt.id)
			}
			sub, err := cm.Sub(id.String())
			if err != nil {
				t.Fatal(err)
			}
			cfg := NewFactory().CreateDefaultConfig()
			if err := sub.Unmarshal(cfg); err != nil {
				t.Fatal(err)
			}
			err = confmap.Validate(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *cfg.(*Config) != *tt.want {
				t.Errorf("config %+v, want %+v", cfg, tt.want)
			}
		})
	}
}

// host is a collector host with the extensions a pipeline would see.
type host struct {
	component.Host
	ext map[component.ID]component.Component
}

func (h host) GetExtensions() map[component.ID]component.Component { return h.ext }

const cidA = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"

func pod(name, uid, node, cid string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "wealth-ai", Name: name, UID: types.UID(uid), Labels: map[string]string{"ai.bank/agent": "true"}},
		Spec:       corev1.PodSpec{NodeName: node, ServiceAccountName: "advisor", Containers: []corev1.Container{{Name: "agent", Image: "advisor:1"}}},
		Status:     corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "agent", Image: "advisor:1", ContainerID: "containerd://" + cid}}},
	}
}

func startExtension(t *testing.T, client *fake.Clientset, cfg *Config) (*Inventory, component.ID) {
	t.Helper()
	id := component.NewID(metadata.Type)
	f := NewFactory()
	if client != nil {
		f = newFactory(client)
	}
	ext, err := f.Create(context.Background(), nopSettings(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ext.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ext.Shutdown(context.Background()) })
	return ext.(*Inventory), id
}

func TestLifecycle(t *testing.T) {
	// Shutdown without Start, twice.
	ext, err := NewFactory().Create(context.Background(), nopSettings(), createDefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := ext.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ext.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Outside a pod, auth_type serviceAccount has no client: Start says why.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	err = ext.Start(context.Background(), componenttest.NewNopHost())
	if err == nil || !strings.Contains(err.Error(), "auth_type serviceAccount") {
		t.Errorf("Start outside a pod: %v", err)
	}
	var _ extension.Extension = ext
}

// TestSharedByTwoProcessors: two k8sattribution processors naming the extension use its one
// pod informer (one list and one watch of pods on the API server), attribute from it, and keep
// working for the other when one shuts down; the extension's informers outlive both.
func TestSharedByTwoProcessors(t *testing.T) {
	client := fake.NewClientset(pod("advisor-0", "uid-0", "node-1", cidA), pod("elsewhere", "uid-x", "node-2", strings.Repeat("b", 64)))
	cfg := createDefaultConfig().(*Config)
	cfg.NodeName = "node-1"
	inv, id := startExtension(t, client, cfg)
	h := host{Host: componenttest.NewNopHost(), ext: map[component.ID]component.Component{id: inv}}

	pf := k8sattributionprocessor.NewFactory()
	var procs []processor.Traces
	var sinks []*consumertest.TracesSink
	for _, name := range []string{"", "second"} {
		pcfg := pf.CreateDefaultConfig().(*k8sattributionprocessor.Config)
		pcfg.Inventory = &id
		pcfg.NodeName = "node-1"
		pcfg.WaitForMetadata = 5 * time.Second
		sink := new(consumertest.TracesSink)
		set := processortest.NewNopSettings(pf.Type())
		set.ID = component.NewIDWithName(pf.Type(), name)
		p, err := pf.CreateTraces(context.Background(), set, pcfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(context.Background(), h); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
		sinks = append(sinks, sink)
	}
	attribute := func(i int, cid string) string {
		t.Helper()
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("container.id", cid)
		rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("chat")
		if err := procs[i].ConsumeTraces(context.Background(), td); err != nil {
			t.Fatal(err)
		}
		all := sinks[i].AllTraces()
		res := all[len(all)-1].ResourceSpans().At(0).Resource().Attributes()
		v, _ := res.Get("k8s.pod.name")
		sa, _ := res.Get("k8s.pod.service_account.name")
		return v.AsString() + "/" + sa.AsString()
	}
	for i := range procs {
		if got := attribute(i, cidA); got != "advisor-0/advisor" {
			t.Errorf("processor %d: pod/service account %q", i, got)
		}
	}
	lists := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "list" && a.GetResource().Resource == "pods" {
			lists++
		}
	}
	if lists != 1 {
		t.Errorf("%d lists of pods for two processors, want 1 (one shared informer)", lists)
	}
	// One processor stops; the other follows a new pod through the same informer.
	if err := procs[0].Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	cidB := strings.Repeat("c", 64)
	if _, err := client.CoreV1().Pods("wealth-ai").Create(context.Background(), pod("advisor-1", "uid-1", "node-1", cidB), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := attribute(1, cidB); got != "advisor-1/advisor" {
		t.Errorf("after the first processor stopped: %q", got)
	}
	if err := procs[1].Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The extension's informers run on. (The fake clientset ignores the spec.nodeName field
	// selector; consumers filter by node too, as the processor's index does.)
	_, ok, err := inv.Informers().Pods.GetStore().GetByKey("wealth-ai/advisor-1")
	if !ok || err != nil {
		t.Errorf("the extension lost its pods after the processors stopped: %v", err)
	}
	if inv.NodeName() != "node-1" {
		t.Errorf("node %q", inv.NodeName())
	}
}

// TestProcessorWithoutTheExtension: a processor naming an extension the host lacks fails to
// start with a message naming it.
func TestProcessorWithoutTheExtension(t *testing.T) {
	pf := k8sattributionprocessor.NewFactory()
	pcfg := pf.CreateDefaultConfig().(*k8sattributionprocessor.Config)
	id := component.NewID(metadata.Type)
	pcfg.Inventory = &id
	p, err := pf.CreateTraces(context.Background(), processortest.NewNopSettings(pf.Type()), pcfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	err = p.Start(context.Background(), componenttest.NewNopHost())
	if err == nil || !strings.Contains(err.Error(), "inventory k8s_inventory: no such extension") {
		t.Errorf("Start: %v", err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestHostWithoutKubernetes: with auth_type none the extension starts without a client and the
// processor naming it works as with auth_type none (cgroup data only, misses say no_api).
func TestHostWithoutKubernetes(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.AuthType = "none"
	inv, id := startExtension(t, nil, cfg)
	if inv.HasAPI() || inv.Informers() != nil {
		t.Fatal("auth_type none has informers")
	}
	pf := k8sattributionprocessor.NewFactory()
	pcfg := pf.CreateDefaultConfig().(*k8sattributionprocessor.Config)
	pcfg.Inventory = &id
	sink := new(consumertest.TracesSink)
	p, err := pf.CreateTraces(context.Background(), processortest.NewNopSettings(pf.Type()), pcfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), host{Host: componenttest.NewNopHost(), ext: map[component.ID]component.Component{id: inv}}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Shutdown(context.Background()) }()
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().Resource().Attributes().PutStr("container.id", cidA)
	if err := p.ConsumeTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	v, _ := sink.AllTraces()[0].ResourceSpans().At(0).Resource().Attributes().Get("agenttrail.k8s.attribution")
	if v.AsString() != "missing" {
		t.Errorf("agenttrail.k8s.attribution = %q, want missing", v.AsString())
	}
}
