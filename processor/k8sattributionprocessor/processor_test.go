package k8sattributionprocessor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agenttrail/agenttrail/internal/containerid"
	"github.com/agenttrail/agenttrail/processor/k8sattributionprocessor/internal/metadata"
)

func selfInContainer(t *testing.T) bool {
	t.Helper()
	info, err := containerid.FromPID("/proc", uint32(os.Getpid()))
	if err != nil {
		t.Fatalf("reading own cgroup: %v", err)
	}
	return info.ID != "" || info.PodUID != ""
}

// TestHostProcess: a process outside any pod (this test) is a host process.
func TestHostProcess(t *testing.T) {
	if selfInContainer(t) {
		t.Skip("this test process runs in a container, so it is no host process")
	}
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		hostName string
		resource map[string]any
		want     map[string]any
	}{
		{"os hostname", "", map[string]any{attrProcessPID: int64(os.Getpid())},
			map[string]any{attrHostName: hostname, attrWorkloadKind: "host", attrAttribution: "host"}},
		{"configured host_name", "bastion-1", map[string]any{attrProcessPID: int64(os.Getpid())},
			map[string]any{attrHostName: "bastion-1", attrWorkloadKind: "host", attrAttribution: "host"}},
		{"pid as a string", "", map[string]any{attrProcessPID: strconv.Itoa(os.Getpid())},
			map[string]any{attrHostName: hostname, attrWorkloadKind: "host", attrAttribution: "host"}},
		{"host.name already set is kept", "", map[string]any{attrProcessPID: int64(os.Getpid()), attrHostName: "from-sdk"},
			map[string]any{attrHostName: "from-sdk", attrWorkloadKind: "host", attrAttribution: "host"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.AuthType = AuthTypeNone
			cfg.HostName = tc.hostName
			h := newHarness(t, nil, cfg, nil)
			got, _ := h.process(tc.resource)
			checkAttrs(t, got[0], tc.want)
		})
	}
}

// fakeProc is a proc_root with /<pid>/cgroup files.
func fakeProc(t *testing.T, cgroups map[int]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, path := range cgroups {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::"+path+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func kubeletPath(podUID, containerID string) string {
	u := strings.ReplaceAll(podUID, "-", "_")
	return "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + u + ".slice/cri-containerd-" + containerID + ".scope"
}

// TestProcRoot: resources with only process.pid are attributed from the
// process's cgroup under proc_root, including a container that is not in its
// pod's status yet (pod UID), a container outside Kubernetes, and a process
// that has exited since (cached).
func TestProcRoot(t *testing.T) {
	known, fresh, dockerID := cid("ab"), cid("cd"), cid("ef")
	procRoot := fakeProc(t, map[int]string{
		100: kubeletPath(agentUID, known),
		101: kubeletPath(agentUID, fresh), // started a moment ago
		102: "/system.slice/docker-" + dockerID + ".scope",
		103: "/user.slice/user-1000.slice/session-2.scope",
		104: kubeletPath("0a1b2c3d-4e5f-4789-abcd-ef0123456789", cid("99")), // pod unknown to the API
	})
	client := fake.NewClientset(
		newReplicaSet(nsAI, "customer-agent-7d9f", "rs-1", "customer-agent"),
		newPod(nsAI, "customer-agent-7d9f-x2", agentUID, "node-a", withServiceAccount("agent-sa"),
			withOwner(ownerKindReplicaSet, "customer-agent-7d9f", "rs-1"), withContainer("agent", "agent:1", known)))
	cfg := testConfig()
	cfg.ProcRoot = procRoot
	cfg.HostName = "node-a"
	cfg.WaitForMetadata = 200 * time.Millisecond
	h := newHarness(t, client, cfg, nil)
	h.waitSynced()
	eventually(t, 5*time.Second, "owner", func() bool {
		a := h.core.index.lookup(known, "", time.Now())
		return a != nil && hasKV(a, attrDeployment, "customer-agent")
	})
	pod := map[string]any{attrNamespace: nsAI, attrPodName: "customer-agent-7d9f-x2", attrPodUID: agentUID,
		attrNodeName: "node-a", attrServiceAccount: "agent-sa", attrReplicaSet: "customer-agent-7d9f",
		attrDeployment: "customer-agent", attrWorkloadKind: "k8s", attrAttribution: "ok"}
	plus := func(kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range pod {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	tests := []struct {
		pid  int
		want map[string]any
	}{
		{100, plus(attrContainerName, "agent", attrContainerID, known, attrImageName, "agent", attrImageTag, "1")},
		// Not in containerStatuses yet: the pod by UID, container name unknown.
		{101, plus(attrContainerID, fresh)},
		{102, map[string]any{attrContainerID: dockerID, attrHostName: "node-a", attrWorkloadKind: "host", attrAttribution: "host"}},
		{103, map[string]any{attrHostName: "node-a", attrWorkloadKind: "host", attrAttribution: "host"}},
		{104, map[string]any{attrContainerID: cid("99"), attrPodUID: "0a1b2c3d-4e5f-4789-abcd-ef0123456789",
			attrWorkloadKind: "k8s", attrAttribution: "missing"}},
		{105, map[string]any{attrAttribution: "missing"}}, // no such process
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.pid), func(t *testing.T) {
			got, _ := h.process(map[string]any{attrProcessPID: int64(tc.pid)})
			checkAttrs(t, got[0], tc.want)
		})
	}
	if m := h.misses(); m[reasonWaitTimeout] != 1 || m[reasonProcessExited] != 1 {
		t.Errorf("misses %v; want wait_timeout 1, process_exited 1", m)
	}

	// The processes exit: their identity stays, also once the cache entry
	// is old enough to be checked again.
	if err := os.RemoveAll(filepath.Join(procRoot, "100")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(procRoot, "103")); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(procRecheck + time.Second)
	h.core.now = func() time.Time { return later }
	got, _ := h.process(map[string]any{attrProcessPID: int64(100)}, map[string]any{attrProcessPID: int64(103)})
	checkAttrs(t, got[0], tests[0].want)
	checkAttrs(t, got[1], tests[3].want)

	// A pid reused by another process is read again after procRecheck.
	if err := os.MkdirAll(filepath.Join(procRoot, "100"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(procRoot, "100", "cgroup"), []byte("0::/user.slice\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	evenLater := later.Add(procRecheck + time.Second)
	h.core.now = func() time.Time { return evenLater }
	got, _ = h.process(map[string]any{attrProcessPID: int64(100)})
	checkAttrs(t, got[0], tests[3].want)
}

// TestPassthrough: gateway mode never reads /proc and uses container.id and
// k8s.pod.uid already on the resource.
func TestPassthrough(t *testing.T) {
	known := cid("3c")
	client := fake.NewClientset(newPod(nsAI, "agent-1", agentUID, "node-a", withContainer("agent", "agent:1", known)))
	cfg := testConfig()
	cfg.Passthrough = true
	cfg.ProcRoot = "/nonexistent/proc"
	cfg.WaitForMetadata = 0
	var reads sync.Map
	h := newHarness(t, client, cfg, func(c *core) {
		c.readCgroup = func(root string, pid uint32) (containerid.Info, error) {
			reads.Store(pid, root)
			return containerid.FromPID(root, pid)
		}
	})
	h.waitSynced()
	got, _ := h.process(
		map[string]any{attrContainerID: known, attrProcessPID: int64(os.Getpid())},
		map[string]any{attrPodUID: agentUID, attrProcessPID: int64(12)},
		map[string]any{attrProcessPID: int64(os.Getpid())},
		map[string]any{attrContainerID: cid("3d"), attrProcessPID: int64(13)},
		map[string]any{"service.name": "no-identity"},
		map[string]any{attrContainerID: cid("3e"), attrAttribution: "ok", attrPodName: "attributed-upstream"},
	)
	checkAttrs(t, got[0], map[string]any{attrNamespace: nsAI, attrPodName: "agent-1", attrPodUID: agentUID,
		attrNodeName: "node-a", attrServiceAccount: "default", attrContainerName: "agent", attrContainerID: known,
		attrImageName: "agent", attrImageTag: "1", attrWorkloadKind: "k8s", attrAttribution: "ok"})
	checkAttrs(t, got[1], map[string]any{attrNamespace: nsAI, attrPodName: "agent-1", attrPodUID: agentUID,
		attrNodeName: "node-a", attrServiceAccount: "default", attrWorkloadKind: "k8s", attrAttribution: "ok"})
	// No container.id from the receiver: a host process, but not this
	// gateway's host, so no host.name.
	checkAttrs(t, got[2], map[string]any{attrWorkloadKind: "host", attrAttribution: "host"})
	checkAttrs(t, got[3], map[string]any{attrContainerID: cid("3d"), attrAttribution: "missing"})
	checkAttrs(t, got[4], map[string]any{attrAttribution: "missing"})
	checkAttrs(t, got[5], map[string]any{attrContainerID: cid("3e"), attrAttribution: "ok", attrPodName: "attributed-upstream"})
	reads.Range(func(pid, root any) bool {
		t.Errorf("passthrough read %s/%d/cgroup", root, pid)
		return true
	})
	if m := h.misses(); m[reasonNotFound] != 1 || m[reasonNoIdentity] != 1 {
		t.Errorf("misses %v", m)
	}
}

// TestAuthNone: without an API, cgroup data only.
func TestAuthNone(t *testing.T) {
	c := cid("5e")
	procRoot := fakeProc(t, map[int]string{200: kubeletPath(agentUID, c)})
	cfg := testConfig()
	cfg.AuthType = AuthTypeNone
	cfg.ProcRoot = procRoot
	h := newHarness(t, nil, cfg, nil)
	got, took := h.process(map[string]any{attrProcessPID: int64(200)}, map[string]any{attrContainerID: c})
	// The cgroup names the pod's UID; a bare container.id does not.
	checkAttrs(t, got[0], map[string]any{attrContainerID: c, attrPodUID: agentUID, attrWorkloadKind: "k8s", attrAttribution: "missing"})
	checkAttrs(t, got[1], map[string]any{attrContainerID: c, attrAttribution: "missing"})
	if took > cfg.WaitForMetadata/2 {
		t.Errorf("took %v; nothing to wait for without an API", took)
	}
	if m := h.misses(); m[reasonNoAPI] != 2 {
		t.Errorf("misses %v; want no_api 2", m)
	}
}

// TestAPIUnreachable: an API server that does not answer does not fail
// Start; spans pass at once with missing / host, and one warning is logged.
func TestAPIUnreachable(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
users:
- name: agenttrail
  user:
    token: not-a-real-token
contexts:
- name: nowhere
  context: {cluster: nowhere, user: agenttrail}
current-context: nowhere
`), 0o600); err != nil {
		t.Fatal(err)
	}
	procRoot := fakeProc(t, map[int]string{300: kubeletPath(agentUID, cid("7a")), 301: "/user.slice"})
	cfg := testConfig()
	cfg.AuthType = AuthTypeKubeConfig
	cfg.KubeConfig = kubeconfig
	cfg.ProcRoot = procRoot
	cfg.HostName = "node-a"
	cfg.WaitForMetadata = 5 * time.Second
	h := newHarness(t, nil, cfg, nil) // fails the test if Start fails
	eventually(t, 10*time.Second, "the unreachable warning", func() bool { return len(h.logsAt(zapcore.WarnLevel)) > 0 })

	got, took := h.process(map[string]any{attrProcessPID: int64(300)}, map[string]any{attrProcessPID: int64(301)})
	checkAttrs(t, got[0], map[string]any{attrContainerID: cid("7a"), attrPodUID: agentUID, attrWorkloadKind: "k8s", attrAttribution: "missing"})
	checkAttrs(t, got[1], map[string]any{attrHostName: "node-a", attrWorkloadKind: "host", attrAttribution: "host"})
	if took > 2*time.Second {
		t.Errorf("took %v; must not wait while the API server is unreachable", took)
	}
	time.Sleep(2 * time.Second) // retries of all three informers
	got, _ = h.process(map[string]any{attrProcessPID: int64(300)})
	if got[0][attrAttribution] != "missing" {
		t.Errorf("%v", got[0])
	}
	if warns := h.logsAt(zapcore.WarnLevel); len(warns) != 1 {
		t.Errorf("warnings %q; want exactly one", warns)
	}
	if m := h.misses(); m[reasonAPIUnavailable] != 2 || len(m) != 1 {
		t.Errorf("misses %v; want api_unavailable 2", m)
	}
}

// TestNoClient: auth_type serviceAccount outside a cluster: Start succeeds,
// one warning, cgroup data only.
func TestNoClient(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	cfg := testConfig()
	cfg.WaitForMetadata = 5 * time.Second
	h := newHarness(t, nil, cfg, noProc)
	got, took := h.process(map[string]any{attrContainerID: cid("8b")})
	checkAttrs(t, got[0], map[string]any{attrContainerID: cid("8b"), attrAttribution: "missing"})
	if took > 2*time.Second {
		t.Errorf("took %v", took)
	}
	if warns := h.logsAt(zapcore.WarnLevel); len(warns) != 1 || !strings.Contains(warns[0], "no Kubernetes client") {
		t.Errorf("warnings %q", warns)
	}
	if m := h.misses(); m[reasonAPIUnavailable] != 1 {
		t.Errorf("misses %v", m)
	}
}

// TestLogsShareCore: the traces and logs processors of one component share
// one core (one set of informers); logs resources are attributed the same
// way, and the core stops with the last of them.
func TestLogsShareCore(t *testing.T) {
	c := cid("9f")
	client := fake.NewClientset(newPod(nsAI, "agent-1", agentUID, "node-a", withContainer("agent", "agent:1", c)))
	f := NewFactoryWithClient(client)
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.NodeNameEnv = ""
	set := processortest.NewNopSettings(metadata.Type)
	ctx := context.Background()
	tp, err := f.CreateTraces(ctx, set, cfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	sink := new(consumertest.LogsSink)
	lp, err := f.CreateLogs(ctx, set, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := lp.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := tp.Shutdown(ctx); err != nil { // logs still running
		t.Fatal(err)
	}
	ld := plog.NewLogs()
	ld.ResourceLogs().AppendEmpty().Resource().Attributes().PutStr(attrContainerID, c)
	ld.ResourceLogs().At(0).ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("tool call")
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := plog.NewLogs()
		ld.CopyTo(l)
		if err := lp.ConsumeLogs(ctx, l); err != nil {
			t.Fatal(err)
		}
		got := sink.AllLogs()[len(sink.AllLogs())-1].ResourceLogs().At(0).Resource().Attributes().AsRaw()
		if got[attrAttribution] == "ok" || got[attrAttribution] == "late" {
			if got[attrPodName] != "agent-1" {
				t.Errorf("%v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs resource never attributed: %v", got)
		}
	}
	if err := lp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	lists := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "list" && a.GetResource().Resource == "pods" {
			lists++
		}
	}
	if lists != 1 {
		t.Errorf("pods listed %d times; want 1 (one informer shared by traces and logs)", lists)
	}
}
