package k8sattributionprocessor

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/agenttrail/agenttrail/internal/containerid"
	"github.com/agenttrail/agenttrail/internal/testutil"
)

// TestRealCgroup runs a process in a kubelet-style cgroup (systemd driver,
// containerd) on the real cgroup v2 hierarchy and attributes a resource that
// carries only its process.pid, through /proc and a (fake) API server that
// knows the pod.
func TestRealCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups and move a process into one")
	}
	root, err := containerid.FindCgroup2Mount()
	if err != nil {
		t.Skipf("no cgroup2 mount (cgroup v1 only host): %v", err)
	}
	podUID, containerID := testutil.RandomUUID(t), testutil.RandomHex(t, 32)
	leaf, cleanup, err := containerid.MakeKubeletCgroup(root, podUID, containerID, containerid.QoSBurstable)
	if err != nil {
		t.Fatalf("MakeKubeletCgroup: %v", err)
	}
	t.Cleanup(func() { // registered first: runs after the process is reaped
		if err := cleanup(); err != nil {
			t.Errorf("cgroup cleanup: %v", err)
		}
	})
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sleep: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if err := containerid.AddProcess(leaf, cmd.Process.Pid); err != nil {
		t.Fatalf("AddProcess: %v", err)
	}

	client := fake.NewClientset(
		newReplicaSet("customer-ai", "customer-agent-5f7c9", "rs-real", "customer-agent"),
		newPod("customer-ai", "customer-agent-5f7c9-k2x8p", podUID, "node-a",
			withOwner(ownerKindReplicaSet, "customer-agent-5f7c9", "rs-real"),
			withServiceAccount("agent-sa"),
			withContainer("agent", "ghcr.io/acme/customer-agent:2.3.1", containerID)),
	)
	cfg := testConfig()
	cfg.ProcRoot = "/proc"
	h := newHarness(t, client, cfg, nil)
	h.waitSynced()
	eventually(t, 5*time.Second, "owner chain", func() bool {
		a := h.core.index.lookup(containerID, "", time.Now())
		return a != nil && hasKV(a, attrDeployment, "customer-agent")
	})
	got, _ := h.process(map[string]any{attrProcessPID: int64(cmd.Process.Pid)})
	checkAttrs(t, got[0], map[string]any{
		attrNamespace: "customer-ai", attrPodName: "customer-agent-5f7c9-k2x8p", attrPodUID: podUID,
		attrNodeName: "node-a", attrServiceAccount: "agent-sa",
		attrReplicaSet: "customer-agent-5f7c9", attrDeployment: "customer-agent",
		attrContainerName: "agent", attrContainerID: containerID,
		attrImageName: "ghcr.io/acme/customer-agent", attrImageTag: "2.3.1",
		attrWorkloadKind: "k8s", attrAttribution: "ok",
	})

	// The process exits; spans still in flight keep its identity.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	got, _ = h.process(map[string]any{attrProcessPID: int64(cmd.Process.Pid)})
	if got[0][attrDeployment] != "customer-agent" || got[0][attrAttribution] != "ok" {
		t.Errorf("after the process exited: %v", got[0])
	}
}
