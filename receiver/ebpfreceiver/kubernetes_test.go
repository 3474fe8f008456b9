package ebpfreceiver

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agenttrail/agenttrail/internal/containerid"
	"github.com/agenttrail/agenttrail/internal/k8sinventory"
	"github.com/agenttrail/agenttrail/internal/testutil"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/k8sselect"
)

func loadKubernetesConfig(t *testing.T, name string) (*Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "kubernetes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := cm.Sub(component.NewIDWithName(componentType, name).String())
	if err != nil {
		t.Fatal(err)
	}
	cfg := createDefaultConfig().(*Config)
	if err := sub.Unmarshal(cfg); err != nil {
		return nil, err
	}
	return cfg, confmap.Validate(cfg)
}

func TestKubernetesConfig(t *testing.T) {
	cfg, err := loadKubernetesConfig(t, "kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	want := &k8sselect.Config{Namespace: "wealth-ai", PodLabels: "ai.bank/agent=true,tier in (front,back)",
		Workload: &k8sselect.WorkloadConfig{Kind: "Deployment", Name: "advisor"}, ContainerName: "agent"}
	if !reflect.DeepEqual(cfg.Targets[0].Kubernetes, want) || cfg.KubernetesInventory.String() != "k8s_inventory" {
		t.Errorf("kubernetes %+v, inventory %v", cfg.Targets[0].Kubernetes, cfg.KubernetesInventory)
	}
	for name, want := range map[string]string{
		"kubernetes_without_inventory": `targets[0] (a): a "kubernetes" target needs "kubernetes_inventory"`,
		"kubernetes_and_pid":           `set exactly one of "executable", "process_name", "pid", "container_id", "kubernetes"`,
		"kubernetes_bad_selector":      `targets[0] (a): "kubernetes.pod_labels"`,
		"kubernetes_container_only":    `must set "namespace", "pod_labels" or "workload"`,
	} {
		if _, err := loadKubernetesConfig(t, name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
}

// inventoryStub is a k8s_inventory extension on a fake clientset.
type inventoryStub struct {
	component.StartFunc
	component.ShutdownFunc
	inf *k8sinventory.Informers
}

func (s *inventoryStub) Informers() *k8sinventory.Informers { return s.inf }
func (s *inventoryStub) HasAPI() bool                       { return true }
func (s *inventoryStub) NodeName() string                   { return "node-1" }

type hostWith struct {
	component.Host
	ext map[component.ID]component.Component
}

func (h hostWith) GetExtensions() map[component.ID]component.Component { return h.ext }

// kubePod is a pod on node-1 with an agent container (id not reported yet, as when it starts)
// and a proxy container.
func kubePod(uid, proxyID string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "wealth-ai", Name: "advisor-" + uid[:8], UID: types.UID(uid), Labels: labels},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "agent"}, {Name: "proxy"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: "agent"}, {Name: "proxy", ContainerID: "containerd://" + proxyID}}},
	}
}

type kubeCgroups struct {
	podUID, agentID, proxyID string
	agent, proxy             string // cgroup leaves
}

func makeKubeCgroups(t *testing.T) kubeCgroups {
	t.Helper()
	root, err := containerid.FindCgroup2Mount()
	if err != nil {
		t.Skipf("no cgroup2 mount (cgroup v1 only host): %v", err)
	}
	c := kubeCgroups{podUID: testutil.RandomUUID(t), agentID: testutil.RandomHex(t, 32), proxyID: testutil.RandomHex(t, 32)}
	for _, x := range []struct {
		id   string
		leaf *string
	}{{c.agentID, &c.agent}, {c.proxyID, &c.proxy}} {
		leaf, cleanup, err := containerid.MakeKubeletCgroup(root, c.podUID, x.id, containerid.QoSBurstable)
		if err != nil {
			t.Fatalf("MakeKubeletCgroup: %v", err)
		}
		t.Cleanup(func() { _ = cleanup() }) // registered before the processes: runs after they are reaped
		*x.leaf = leaf
	}
	return c
}

// podAgent starts the Go agent exe (dialing peer) in the agent container of a new pod whose
// ai.bank/agent label is label, and returns the pod, the fake API server that lists it and the
// agent, which has answered once (it runs in its cgroup).
func podAgent(t *testing.T, exe, peer, label string) (*corev1.Pod, *fake.Clientset, *program) {
	t.Helper()
	c := makeKubeCgroups(t)
	pod := kubePod(c.podUID, c.proxyID, map[string]string{"ai.bank/agent": label})
	client := fake.NewClientset(pod)
	agent := startProgram(t, exe, peer)
	if err := containerid.AddProcess(c.agent, agent.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	agent.do(t, "noop", "ok noop")
	return pod, client, agent
}

// relabelPod sets pod's ai.bank/agent label to value on the API server, as kubectl label does.
func relabelPod(t *testing.T, client *fake.Clientset, pod *corev1.Pod, value string) {
	t.Helper()
	pod.Labels["ai.bank/agent"] = value
	if _, err := client.CoreV1().Pods("wealth-ai").Update(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func startKubeReceiver(t *testing.T, client *fake.Clientset, target TargetConfig) *consumertest.TracesSink {
	t.Helper()
	inf, err := k8sinventory.New(client, "node-1", 0, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	inf.Run(ctx, &wg)
	t.Cleanup(func() { cancel(); wg.Wait() }) // after the receiver's shutdown (registered later, runs first)
	id := component.MustNewID("k8s_inventory")
	cfg := testConfig(target)
	cfg.KubernetesInventory = &id
	sink := new(consumertest.TracesSink)
	set := receivertest.NewNopSettings(componentType)
	set.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	r, err := NewFactory().CreateTraces(context.Background(), set, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	host := hostWith{Host: componenttest.NewNopHost(), ext: map[component.ID]component.Component{id: &inventoryStub{inf: inf}}}
	if err := r.Start(context.Background(), host); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return sink
}

// TestKubernetesTargets traces real processes placed in kubelet-style cgroups of a pod the
// (fake) API server knows: a process exec'd into the selected container is traced from that
// exec, before the kubelet reports the container's id; one in the pod's other container is not;
// a process already running in a pod that comes into the selection later (created, relabelled)
// is traced from then on.
func TestKubernetesTargets(t *testing.T) {
	requireKernel(t)
	exe := buildGoAgent(t)
	peer := listen(t)

	t.Run("first_exec_in_selected_container", func(t *testing.T) {
		c := makeKubeCgroups(t)
		client := fake.NewClientset(kubePod(c.podUID, c.proxyID, map[string]string{"ai.bank/agent": "true"}))
		sink := startKubeReceiver(t, client, dialTarget("advisor", TargetConfig{Kubernetes: &k8sselect.Config{
			Namespace: "wealth-ai", PodLabels: "ai.bank/agent=true", ContainerName: "agent"}}))
		// The proxy container's process: in the pod, not the selected container.
		proxy := startProgram(t, "/bin/sh", "-c", fmt.Sprintf("echo $$ > %s/cgroup.procs && exec %s %s", c.proxy, exe, peer))
		// A shell outside the pod joins the agent container, then execs the agent.
		agent := startProgram(t, "/bin/sh", "-c", fmt.Sprintf("echo $$ > %s/cgroup.procs && exec %s %s", c.agent, exe, peer))
		proxy.do(t, "dial "+peer, "ok dial")
		got := waitSpans(t, sink, func(col collected) bool {
			if col.has("main.Dial", "connect") {
				return true
			}
			agent.do(t, "dial "+peer, "ok dial")
			return false
		})
		requireOnlyPID(t, got, agent.cmd.Process.Pid, "advisor")
	})

	t.Run("pod_selected_later", func(t *testing.T) {
		pod, client, agent := podAgent(t, exe, peer, "false")
		sink := startKubeReceiver(t, client, dialTarget("advisor", TargetConfig{Kubernetes: &k8sselect.Config{PodLabels: "ai.bank/agent=true"}}))
		agent.do(t, "dial "+peer, "ok dial")
		time.Sleep(300 * time.Millisecond)
		if n := sink.SpanCount(); n != 0 {
			t.Fatalf("%d spans from a pod outside the selection", n)
		}
		relabelPod(t, client, pod, "true")
		got := waitSpans(t, sink, func(col collected) bool {
			if col.has("main.Dial", "connect") {
				return true
			}
			agent.do(t, "dial "+peer, "ok dial")
			return false
		})
		requireOnlyPID(t, got, agent.cmd.Process.Pid, "advisor")
	})
}

// TestRingWaiterWake: an idle read loop parked without a deadline (nothing for a tracer to
// time out) returns when a Kubernetes selection changes, not at the next ring buffer record: on
// a quiet node that may never come (pod_selected_later waited for an unrelated exec on the
// host and failed when the host was quiet). A wake before the wait parks is not lost.
func TestRingWaiterWake(t *testing.T) {
	requireKernel(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	w, err := newRingWaiter(m) // no program writes to this ring buffer
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	done := make(chan struct{})
	go func() { w.wait(time.Time{}); close(done) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("wait returned without a record, a deadline or a wake")
	default:
	}
	w.wake()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("wake did not end the wait")
	}
	w.wake() // before the wait: it returns at once
	returned := make(chan struct{})
	go func() { w.wait(time.Time{}); close(returned) }()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("a wake before the wait was lost")
	}
}

// TestKubernetesPodLeavesSelection: a traced process whose pod is relabelled out of the
// selection is no longer traced (it was until it exited).
func TestKubernetesPodLeavesSelection(t *testing.T) {
	requireKernel(t)
	exe := buildGoAgent(t)
	peer := listen(t)
	pod, client, agent := podAgent(t, exe, peer, "true")
	sink := startKubeReceiver(t, client, dialTarget("advisor", TargetConfig{Kubernetes: &k8sselect.Config{PodLabels: "ai.bank/agent=true"}}))
	connects := func() int {
		n := 0
		for _, s := range collectAll(sink).ofPID(agent.cmd.Process.Pid).spans {
			if s.Name() == "connect" {
				n++
			}
		}
		return n
	}
	waitSpans(t, sink, func(col collected) bool {
		if connects() > 0 {
			return true
		}
		agent.do(t, "dial "+peer, "ok dial")
		return false
	})
	relabelPod(t, client, pod, "false")
	time.Sleep(2 * time.Second) // the informer, the wake, the rescan (at most one a second), a flush
	before := connects()
	for range 3 {
		agent.do(t, "dial "+peer, "ok dial")
	}
	time.Sleep(time.Second)
	if after := connects(); after != before {
		t.Errorf("%d connect spans after the pod left the selection", after-before)
	}
}

func requireOnlyPID(t *testing.T, c collected, pid int, service string) {
	t.Helper()
	for i, r := range c.res {
		if v, _ := r.Attributes().Get("process.pid"); v.Int() != int64(pid) {
			t.Errorf("span %s from pid %d, only %d is selected", c.spans[i].Name(), v.Int(), pid)
		}
		if v, _ := r.Attributes().Get("service.name"); v.Str() != service {
			t.Errorf("service.name %q", v.Str())
		}
	}
}
