package k8sattributionprocessor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/agenttrail/agenttrail/internal/containerid"
)

// noProc makes the core fail every /proc read: the informer tests use made-up
// pids and must resolve through container.id alone.
func noProc(c *core) {
	c.readCgroup = func(string, uint32) (containerid.Info, error) {
		return containerid.Info{}, errors.New("no /proc in this test")
	}
}

const (
	nsAI     = "customer-ai"
	agentUID = "7f1c9a52-0b3e-4d6f-9a1e-2c4b6d8e0f11"
)

func TestInformerAttribution(t *testing.T) {
	var (
		cAgent, cInit, cDebug = cid("a1"), cid("b2"), cid("c3")
		cReport, cDB, cDaemon = cid("d4"), cid("e5"), cid("f6")
		cBare, cLoneRS, cOnce = cid("07"), cid("18"), cid("29")
	)
	client := fake.NewClientset(
		newReplicaSet(nsAI, "customer-agent-7d9f", "rs-1", "customer-agent"),
		newPod(nsAI, "customer-agent-7d9f-x2", agentUID, "node-a",
			withOwner(ownerKindReplicaSet, "customer-agent-7d9f", "rs-1"),
			withServiceAccount("agent-sa"),
			withLabels("app.kubernetes.io/name", "customer-agent", "team", "risk", "unlisted", "x"),
			withAnnotations("agenttrail.io/data-classification", "pii"),
			withContainer("agent", "ghcr.io/acme/agent:1.4.2@sha256:0123", cAgent),
			withInitContainer("migrate", "registry.local:5000/acme/migrate", cInit),
			withEphemeralContainer("debugger", "busybox:1.36", cDebug)),
		newJob("batch", "report-28991", "job-1", "report"),
		newPod("batch", "report-28991-abc", "uid-report", "node-a",
			withOwner(ownerKindJob, "report-28991", "job-1"), withContainer("report", "python:3.12", cReport)),
		newPod("data", "vector-db-0", "uid-db", "node-a",
			withOwner(ownerKindStatefulSet, "vector-db", "sts-1"), withContainer("db", "qdrant/qdrant:v1.9", cDB)),
		newPod("kube-system", "node-agent-xyz", "uid-daemon", "node-a",
			withOwner(ownerKindDaemonSet, "node-agent", "ds-1"), withContainer("agent", "agenttrail", cDaemon)),
		newPod("default", "scratch", "uid-bare", "node-a", withContainer("sh", "alpine", cBare)),
		newReplicaSet("default", "lone-rs", "rs-2", ""),
		newPod("default", "lone-rs-q", "uid-lone", "node-a",
			withOwner(ownerKindReplicaSet, "lone-rs", "rs-2"), withContainer("app", "app:v2", cLoneRS)),
		newJob("default", "one-off", "job-2", ""),
		newPod("default", "one-off-z", "uid-once", "node-a",
			withOwner(ownerKindJob, "one-off", "job-2"), withContainer("task", "task", cOnce)),
	)
	cfg := testConfig()
	cfg.Extract.Labels = []FieldExtractConfig{{Key: "app.kubernetes.io/name"}, {Key: "team", TagName: "agenttrail.team"}, {Key: "absent"}}
	cfg.Extract.Annotations = []FieldExtractConfig{{Key: "agenttrail.io/data-classification"}}
	h := newHarness(t, client, cfg, noProc)
	h.waitSynced()
	eventually(t, 5*time.Second, "owners resolved", func() bool {
		a := h.core.index.lookup(cAgent, "", time.Now())
		return a != nil && len(a.attrs) > 0 && hasKV(a, attrDeployment, "customer-agent")
	})

	agentPod := map[string]any{
		attrNamespace: nsAI, attrPodName: "customer-agent-7d9f-x2", attrPodUID: agentUID, attrNodeName: "node-a",
		attrServiceAccount: "agent-sa", attrReplicaSet: "customer-agent-7d9f", attrDeployment: "customer-agent",
		"k8s.pod.label.app.kubernetes.io/name": "customer-agent", "agenttrail.team": "risk",
		"k8s.pod.annotation.agenttrail.io/data-classification": "pii",
		attrWorkloadKind: "k8s", attrAttribution: "ok",
	}
	with := func(base map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	simple := func(ns, pod, uid string, kv ...any) map[string]any {
		return with(map[string]any{attrNamespace: ns, attrPodName: pod, attrPodUID: uid, attrNodeName: "node-a",
			attrServiceAccount: "default", attrWorkloadKind: "k8s", attrAttribution: "ok"}, kv...)
	}
	tests := []struct {
		name string
		cid  string
		want map[string]any
	}{
		{"deployment", cAgent, with(agentPod, attrContainerName, "agent", attrContainerID, cAgent,
			attrImageName, "ghcr.io/acme/agent", attrImageTag, "1.4.2")},
		{"init container, registry with port, no tag", cInit, with(agentPod, attrContainerName, "migrate", attrContainerID, cInit,
			attrImageName, "registry.local:5000/acme/migrate")},
		{"ephemeral container", cDebug, with(agentPod, attrContainerName, "debugger", attrContainerID, cDebug,
			attrImageName, "busybox", attrImageTag, "1.36")},
		{"cronjob", cReport, simple("batch", "report-28991-abc", "uid-report", attrJob, "report-28991", attrCronJob, "report",
			attrContainerName, "report", attrContainerID, cReport, attrImageName, "python", attrImageTag, "3.12")},
		{"statefulset", cDB, simple("data", "vector-db-0", "uid-db", attrStatefulSet, "vector-db",
			attrContainerName, "db", attrContainerID, cDB, attrImageName, "qdrant/qdrant", attrImageTag, "v1.9")},
		{"daemonset", cDaemon, simple("kube-system", "node-agent-xyz", "uid-daemon", attrDaemonSet, "node-agent",
			attrContainerName, "agent", attrContainerID, cDaemon, attrImageName, "agenttrail")},
		{"no owner", cBare, simple("default", "scratch", "uid-bare",
			attrContainerName, "sh", attrContainerID, cBare, attrImageName, "alpine")},
		{"replicaset without deployment", cLoneRS, simple("default", "lone-rs-q", "uid-lone", attrReplicaSet, "lone-rs",
			attrContainerName, "app", attrContainerID, cLoneRS, attrImageName, "app", attrImageTag, "v2")},
		{"job without cronjob", cOnce, simple("default", "one-off-z", "uid-once", attrJob, "one-off",
			attrContainerName, "task", attrContainerID, cOnce, attrImageName, "task")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := h.process(map[string]any{attrContainerID: tc.cid, attrProcessPID: int64(4242), "service.name": "customer-agent"})
			checkAttrs(t, got[0], tc.want)
			if got[0]["service.name"] != "customer-agent" || got[0][attrProcessPID] != int64(4242) {
				t.Errorf("the receiver's attributes changed: %v", got[0])
			}
		})
	}
	if m := h.misses(); len(m) != 0 {
		t.Errorf("misses %v; want none", m)
	}
}

func hasKV(a *attribution, k, v string) bool {
	for _, x := range a.attrs {
		if x.k == k && x.v == v {
			return true
		}
	}
	return false
}

// TestOwnerArrivesAfterPod: the ReplicaSet informer may learn the owner after
// the pod informer learned the pod; the pod's attribution follows.
func TestOwnerArrivesAfterPod(t *testing.T) {
	c := cid("5a")
	client := fake.NewClientset(newPod(nsAI, "agent-1", agentUID, "node-a",
		withOwner(ownerKindReplicaSet, "agent-6b5", "rs-9"), withContainer("agent", "agent:1", c)))
	cfg := testConfig()
	h := newHarness(t, client, cfg, noProc)
	h.waitSynced()
	got, _ := h.process(map[string]any{attrContainerID: c})
	if got[0][attrReplicaSet] != "agent-6b5" || got[0][attrDeployment] != nil {
		t.Fatalf("before the ReplicaSet exists: %v", got[0])
	}
	if _, err := client.AppsV1().ReplicaSets(nsAI).Create(context.Background(), newReplicaSet(nsAI, "agent-6b5", "rs-9", "customer-agent"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "deployment name", func() bool {
		got, _ := h.process(map[string]any{attrContainerID: c})
		return got[0][attrDeployment] == "customer-agent"
	})
}

// TestPodRestartAndDelete: a restarted container gets a new id; the old one
// still resolves (lastState, then remembered), and a deleted pod's ids
// resolve for the grace period only.
func TestPodRestartAndDelete(t *testing.T) {
	first, second, third := cid("01"), cid("02"), cid("03")
	pod := newPod(nsAI, "agent-1", agentUID, "node-a", withContainer("agent", "agent:1", first))
	client := fake.NewClientset(pod)
	cfg := testConfig()
	cfg.WaitForMetadata = 0
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	h := newHarness(t, client, cfg, func(c *core) {
		noProc(c)
		c.now, c.index.now = now, now
	})
	h.waitSynced()
	res := func(c string) map[string]any {
		got, _ := h.process(map[string]any{attrContainerID: c})
		return got[0]
	}
	if got := res(first); got[attrAttribution] != "ok" || got[attrContainerName] != "agent" {
		t.Fatalf("first container: %v", got)
	}

	restart := func(prev, next string) {
		t.Helper()
		p, err := client.CoreV1().Pods(nsAI).Get(context.Background(), "agent-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.ContainerStatuses[0].ContainerID = "containerd://" + next
		p.Status.ContainerStatuses[0].LastTerminationState = corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://" + prev, ExitCode: 137}}
		p.Status.ContainerStatuses[0].RestartCount++
		if _, err := client.CoreV1().Pods(nsAI).UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "restarted container "+next[:6], func() bool {
			return h.core.index.lookup(next, "", now()) != nil
		})
	}
	restart(first, second)
	for _, c := range []string{first, second} {
		if got := res(c); got[attrAttribution] != "ok" || got[attrContainerName] != "agent" || got[attrContainerID] != c {
			t.Errorf("after one restart, %s...: %v", c[:6], got)
		}
	}
	restart(second, third) // first leaves the status: remembered for the grace period
	if got := res(first); got[attrAttribution] != "ok" || got[attrPodName] != "agent-1" {
		t.Errorf("first container right after it left the status: %v", got)
	}

	if err := client.CoreV1().Pods(nsAI).Delete(context.Background(), "agent-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "pod deleted", func() bool {
		pods, _ := h.core.index.size()
		return pods == 0
	})
	if got := res(third); got[attrAttribution] != "ok" || got[attrPodName] != "agent-1" {
		t.Errorf("right after the pod was deleted: %v", got)
	}
	mu.Lock()
	clock = clock.Add(deletedGrace + time.Second)
	mu.Unlock()
	for _, c := range []string{first, third} {
		got := res(c)
		checkAttrs(t, got, map[string]any{attrContainerID: c, attrAttribution: "missing"})
	}
	if m := h.misses(); m[reasonNotFound] != 2 {
		t.Errorf("misses %v; want not_found 2 (wait_for_metadata 0)", m)
	}
}

func TestPodListOptions(t *testing.T) {
	tests := []struct{ node, want string }{
		{"node-a", "spec.nodeName=node-a"},
		{"ip-10-0-1-7.ec2.internal", "spec.nodeName=ip-10-0-1-7.ec2.internal"},
		{"", ""},
	}
	for _, tc := range tests {
		o := metav1.ListOptions{LabelSelector: "keep=me"}
		podListOptions(tc.node)(&o)
		if o.FieldSelector != tc.want || o.LabelSelector != "keep=me" {
			t.Errorf("node %q: options %+v; want field selector %q", tc.node, o, tc.want)
		}
	}
}

// TestNodeFilter: with node_name the pod list and watch carry the field
// selector, and (as the fake clientset ignores it) the event handler drops
// pods of other nodes too.
func TestNodeFilter(t *testing.T) {
	here, there := cid("aa"), cid("bb")
	client := fake.NewClientset(
		newPod(nsAI, "here", "uid-here", "node-a", withContainer("c", "img", here)),
		newPod(nsAI, "there", "uid-there", "node-b", withContainer("c", "img", there)),
	)
	cfg := testConfig()
	cfg.NodeName = "node-a"
	cfg.WaitForMetadata = 0
	h := newHarness(t, client, cfg, noProc)
	h.waitSynced()
	got, _ := h.process(map[string]any{attrContainerID: here}, map[string]any{attrContainerID: there})
	if got[0][attrAttribution] != "ok" || got[0][attrPodName] != "here" {
		t.Errorf("pod on this node: %v", got[0])
	}
	checkAttrs(t, got[1], map[string]any{attrContainerID: there, attrAttribution: "missing"})

	var sawList, sawWatch bool
	for _, a := range client.Actions() {
		if a.GetResource().Resource != "pods" {
			continue
		}
		switch act := a.(type) {
		case k8stesting.ListAction:
			sawList = true
			if f := act.GetListRestrictions().Fields.String(); f != "spec.nodeName=node-a" {
				t.Errorf("pod list field selector %q", f)
			}
		case k8stesting.WatchAction:
			sawWatch = true
			if f := act.GetWatchRestrictions().Fields.String(); f != "spec.nodeName=node-a" {
				t.Errorf("pod watch field selector %q", f)
			}
		}
	}
	if !sawList || !sawWatch {
		t.Errorf("pod list seen %v, watch seen %v", sawList, sawWatch)
	}
	// A pod scheduled here later is picked up.
	later := cid("cc")
	if _, err := client.CoreV1().Pods(nsAI).Create(context.Background(),
		newPod(nsAI, "later", "uid-later", "node-a", withContainer("c", "img", later)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "later pod", func() bool { return h.core.index.lookup(later, "", time.Now()) != nil })
}

// TestLateAndMissing: a container id that arrives before its pod waits for
// it (late); one whose pod never comes waits wait_for_metadata once
// (missing), and is not waited for again.
func TestLateAndMissing(t *testing.T) {
	client := fake.NewClientset()
	cfg := testConfig()
	cfg.WaitForMetadata = 2 * time.Second
	h := newHarness(t, client, cfg, noProc)
	h.waitSynced()
	const slack = time.Second // a loaded CI machine

	late, never := cid("1e"), cid("ee")
	var (
		wg   sync.WaitGroup
		got  []map[string]any
		took time.Duration
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		got, took = h.process(
			map[string]any{attrContainerID: late, attrProcessPID: int64(77)},
			map[string]any{attrContainerID: late, attrProcessPID: int64(78)},
		)
	}()
	time.Sleep(300 * time.Millisecond)
	if _, err := client.CoreV1().Pods(nsAI).Create(context.Background(),
		newPod(nsAI, "fresh", "uid-fresh", "node-a", withContainer("agent", "agent:2", late)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, r := range got {
		if r[attrAttribution] != "late" || r[attrPodName] != "fresh" || r[attrContainerName] != "agent" {
			t.Errorf("resource %d: %v; want late attribution to pod fresh", i, r)
		}
	}
	if took < 250*time.Millisecond || took > cfg.WaitForMetadata {
		t.Errorf("late batch took %v; want between the pod's creation and wait_for_metadata %v", took, cfg.WaitForMetadata)
	}

	// Same container again: known now, ok at once.
	got2, _ := h.process(map[string]any{attrContainerID: late})
	if got2[0][attrAttribution] != "ok" {
		t.Errorf("known container: %v", got2[0])
	}

	// A pod that never comes, mixed with a known one: the batch waits its
	// budget once, then emits.
	got3, took3 := h.process(map[string]any{attrContainerID: never}, map[string]any{attrContainerID: late})
	checkAttrs(t, got3[0], map[string]any{attrContainerID: never, attrAttribution: "missing"})
	if got3[1][attrAttribution] != "ok" {
		t.Errorf("known container in a waiting batch: %v", got3[1])
	}
	if took3 < cfg.WaitForMetadata || took3 > cfg.WaitForMetadata+slack {
		t.Errorf("missing batch took %v; want wait_for_metadata %v (+ at most %v)", took3, cfg.WaitForMetadata, slack)
	}
	// It already timed out once: no second wait.
	got4, took4 := h.process(map[string]any{attrContainerID: never})
	if got4[0][attrAttribution] != "missing" || took4 > cfg.WaitForMetadata/2 {
		t.Errorf("second batch for a timed-out id: %v after %v; want missing at once", got4[0], took4)
	}
	if m := h.misses(); m[reasonWaitTimeout] != 1 || m[reasonNotFound] != 1 || len(m) != 2 {
		t.Errorf("misses %v; want wait_timeout 1, not_found 1", m)
	}
}

// TestWaitBoundedByContext: a batch never waits past its context's deadline.
func TestWaitBoundedByContext(t *testing.T) {
	client := fake.NewClientset()
	cfg := testConfig()
	cfg.WaitForMetadata = 10 * time.Second
	h := newHarness(t, client, cfg, noProc)
	h.waitSynced()
	td := tracesWith(map[string]any{attrContainerID: cid("dd")})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := h.p.ConsumeTraces(ctx, td); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v; the context allowed 300ms", took)
	}
	got := h.sink.AllTraces()[0].ResourceSpans().At(0).Resource().Attributes().AsRaw()
	if got[attrAttribution] != "missing" {
		t.Errorf("%v", got)
	}
}

// TestAPIRecovers: while list calls fail without an answer the processor
// does not wait and logs one warning; when they succeed again it logs one
// info and resolves.
func TestAPIRecovers(t *testing.T) {
	c := cid("4f")
	client := fake.NewClientset(newPod(nsAI, "agent-1", agentUID, "node-a", withContainer("agent", "agent:1", c)))
	var mu sync.Mutex
	failing := true
	client.PrependReactor("list", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return true, nil, errors.New("dial tcp 10.96.0.1:443: connect: connection refused")
		}
		return false, nil, nil
	})
	cfg := testConfig()
	cfg.WaitForMetadata = 5 * time.Second
	h := newHarness(t, client, cfg, noProc)
	eventually(t, 5*time.Second, "unreachable warning", func() bool { return len(h.logsAt(zapcore.WarnLevel)) > 0 })

	got, took := h.process(map[string]any{attrContainerID: c})
	if got[0][attrAttribution] != "missing" || took > 2*time.Second {
		t.Errorf("while unreachable: %v after %v; want missing without waiting", got[0], took)
	}
	if m := h.misses(); m[reasonAPIUnavailable] != 1 {
		t.Errorf("misses %v; want api_unavailable 1", m)
	}
	time.Sleep(1500 * time.Millisecond) // several failed retries of three informers
	mu.Lock()
	failing = false
	mu.Unlock()
	eventually(t, 30*time.Second, "pod known after recovery", func() bool {
		return h.core.index.lookup(c, "", time.Now()) != nil
	})
	got, _ = h.process(map[string]any{attrContainerID: c})
	if got[0][attrAttribution] != "ok" {
		t.Errorf("after recovery: %v", got[0])
	}
	eventually(t, 30*time.Second, "recovery info", func() bool {
		for _, m := range h.logsAt(zapcore.InfoLevel) {
			if m == "Kubernetes API server is reachable again; pod metadata resumes" {
				return true
			}
		}
		return false
	})
	if w := h.logsAt(zapcore.WarnLevel); len(w) != 1 {
		t.Errorf("warnings %q; want exactly one", w)
	}
	n := 0
	for _, m := range h.logsAt(zapcore.InfoLevel) {
		if m == "Kubernetes API server is reachable again; pod metadata resumes" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d recovery infos; want 1", n)
	}
}

// TestForbidden: a 403 on ReplicaSets is logged once, pods still resolve.
func TestForbidden(t *testing.T) {
	c := cid("6d")
	client := fake.NewClientset(newPod(nsAI, "agent-1", agentUID, "node-a",
		withOwner(ownerKindReplicaSet, "agent-6b5", "rs-9"), withContainer("agent", "agent:1", c)))
	client.PrependReactor("list", "replicasets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "replicasets"}, "", errors.New("RBAC: access denied"))
	})
	cfg := testConfig()
	h := newHarness(t, client, cfg, noProc)
	w := h.core.watcher.Load()
	eventually(t, 5*time.Second, "pods synced", w.pods.HasSynced)
	got, _ := h.process(map[string]any{attrContainerID: c})
	if got[0][attrAttribution] != "ok" || got[0][attrReplicaSet] != "agent-6b5" || got[0][attrDeployment] != nil {
		t.Errorf("%v", got[0])
	}
	time.Sleep(1200 * time.Millisecond) // a retry
	if warns := h.logsAt(zapcore.WarnLevel); len(warns) != 1 {
		t.Errorf("warnings %q; want one", warns)
	}
}
