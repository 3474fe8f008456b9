package k8sattributionprocessor

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agenttrail/agenttrail/internal/containerid"
	"github.com/agenttrail/agenttrail/internal/testutil"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver"
)

// TestThroughTheReceiver runs a traced Go program inside a kubelet-style pod cgroup and checks
// that its spans, through the real eBPF receiver (container id from the cgroup) and this
// processor (pod from a fake API server), carry the pod, deployment and service account.
func TestThroughTheReceiver(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root for BPF programs and cgroups")
	}
	root, err := containerid.FindCgroup2Mount()
	if err != nil {
		t.Skipf("no cgroup2 mount: %v", err)
	}
	exe := filepath.Join(t.TempDir(), "goagent")
	if out, err := exec.Command("go", "build", "-o", exe, "../../receiver/ebpfreceiver/testdata/goagent").CombinedOutput(); err != nil {
		t.Fatalf("build goagent: %v\n%s", err, out)
	}
	podUID, containerID := testutil.RandomUUID(t), testutil.RandomHex(t, 32)
	leaf, cleanup, err := containerid.MakeKubeletCgroup(root, podUID, containerID, containerid.QoSBurstable)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cleanup() })

	// The program starts paused on stdin and moves into the pod's cgroup before the receiver
	// sees it, as a container's process is in its cgroup from its exec.
	cmd := exec.Command(exe, "127.0.0.1:9")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := containerid.AddProcess(leaf, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}

	client := fake.NewClientset(
		newReplicaSet("customer-ai", "customer-agent-7f9c", "rs-1", "customer-agent"),
		newPod("customer-ai", "customer-agent-7f9c-x2k8q", podUID, "node-a",
			withOwner(ownerKindReplicaSet, "customer-agent-7f9c", "rs-1"),
			withServiceAccount("agent-sa"),
			withContainer("agent", "ghcr.io/bank/customer-agent:1.0", containerID)),
	)
	sink := new(consumertest.TracesSink)
	pcfg := testConfig()
	pcfg.ProcRoot = "/proc"
	pf := NewFactoryWithClient(client)
	proc, err := pf.CreateTraces(context.Background(), processortest.NewNopSettings(pf.Type()), pcfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = proc.Shutdown(context.Background()) }()

	rf := ebpfreceiver.NewFactory()
	rcfg := rf.CreateDefaultConfig().(*ebpfreceiver.Config)
	rcfg.Targets = []ebpfreceiver.TargetConfig{{
		Name: "customer-agent", PID: cmd.Process.Pid,
		Functions: []ebpfreceiver.FunctionConfig{{Symbol: "main.(*Agent).HandlePrompt", Role: "prompt"}},
	}}
	rcfg.FlushInterval = 50 * time.Millisecond
	recv, err := rf.CreateTraces(context.Background(), receivertest.NewNopSettings(rf.Type()), rcfg, proc)
	if err != nil {
		t.Fatal(err)
	}
	if err := recv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = recv.Shutdown(context.Background()) }()

	lines := bufio.NewScanner(stdout)
	if _, err := io.WriteString(stdin, "prompt hello\n"); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "ok prompt") {
	}

	want := map[string]string{
		"k8s.namespace.name": "customer-ai", "k8s.pod.name": "customer-agent-7f9c-x2k8q", "k8s.pod.uid": podUID,
		"k8s.deployment.name": "customer-agent", "k8s.pod.service_account.name": "agent-sa",
		"container.id": containerID, "k8s.container.name": "agent", "agenttrail.k8s.attribution": "ok",
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, td := range sink.AllTraces() {
			for i := 0; i < td.ResourceSpans().Len(); i++ {
				rs := td.ResourceSpans().At(i)
				ss := rs.ScopeSpans().At(0).Spans()
				for j := 0; j < ss.Len(); j++ {
					if ss.At(j).Name() != "invoke_agent customer-agent" {
						continue
					}
					attrs := rs.Resource().Attributes()
					for k, v := range want {
						got, ok := attrs.Get(k)
						if !ok || got.AsString() != v {
							t.Errorf("%s = %v, want %s", k, got.AsString(), v)
						}
					}
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no prompt span arrived through the receiver and the processor (%d batches)", len(sink.AllTraces()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
