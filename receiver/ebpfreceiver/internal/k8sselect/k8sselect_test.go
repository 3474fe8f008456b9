package k8sselect

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agenttrail/agenttrail/internal/k8sinventory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Namespace: "wealth-ai"}, ""},
		{Config{PodLabels: "ai.bank/agent=true,tier in (front,back),!canary"}, ""},
		{Config{Namespace: "wealth-ai", Workload: &WorkloadConfig{Kind: "Deployment", Name: "advisor"}, ContainerName: "agent"}, ""},
		{Config{ContainerName: "agent"}, `must set "namespace", "pod_labels" or "workload"`},
		{Config{Namespace: "Wealth_AI"}, `"kubernetes.namespace" must be a namespace name`},
		{Config{PodLabels: "a=(b"}, `"kubernetes.pod_labels"`},
		{Config{PodLabels: strings.Repeat("a", maxSelector+1)}, "longer than"},
		{Config{Workload: &WorkloadConfig{Kind: "Deployments", Name: "x"}}, `"kubernetes.workload.kind" must be one of`},
		{Config{Workload: &WorkloadConfig{Kind: "Deployment"}}, `"kubernetes.workload.name" must be a Deployment name`},
		{Config{Namespace: "a", ContainerName: "Agent"}, `"kubernetes.container_name" must be a container name`},
	} {
		err := tt.cfg.Validate()
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: Validate() = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

const node = "node-1"

func cid(c string) string { return strings.Repeat(c, 64) }

type podOpt func(*corev1.Pod)

func newPod(ns, name, uid string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}, Spec: corev1.PodSpec{NodeName: node}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func labelled(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

// container adds a container; id "" is one the kubelet has not reported yet.
func container(name, id string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name})
		st := corev1.ContainerStatus{Name: name}
		if id != "" {
			st.ContainerID = "containerd://" + id
		}
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, st)
	}
}

func ownedBy(kind, name, uid string) podOpt {
	return func(p *corev1.Pod) { p.OwnerReferences = []metav1.OwnerReference{controller(kind, name, uid)} }
}

func onNode(n string) podOpt { return func(p *corev1.Pod) { p.Spec.NodeName = n } }

func controller(kind, name, uid string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{Kind: kind, Name: name, UID: types.UID(uid), Controller: &yes}
}

type env struct {
	t      *testing.T
	client *fake.Clientset
	r      *Resolver
}

func start(t *testing.T, sels []Config, objs ...any) *env {
	t.Helper()
	client := fake.NewClientset()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Pod:
			_, err = client.CoreV1().Pods(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		case *appsv1.ReplicaSet:
			_, err = client.AppsV1().ReplicaSets(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		case *batchv1.Job:
			_, err = client.BatchV1().Jobs(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	inf, err := k8sinventory.New(client, node, 0, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewResolver(inf, node, sels)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	inf.Run(ctx, &wg)
	t.Cleanup(func() {
		r.Close()
		cancel()
		wg.Wait()
	})
	e := &env{t: t, client: client, r: r}
	e.eventually("synced", r.HasSynced)
	return e
}

func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) wantMatch(what, podUID, c string, want int) {
	e.t.Helper()
	e.eventually(what, func() bool { return e.r.Match(podUID, c) == want })
}

func (e *env) update(p *corev1.Pod) {
	e.t.Helper()
	if _, err := e.client.CoreV1().Pods(p.Namespace).Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// TestPodsComeAndGo: by namespace and label selector; a pod added matches at once by its UID
// (before any container id is reported), a relabelled pod stops and starts matching, a deleted
// pod no longer matches; pods of other nodes never do; Generation moves at each change.
func TestPodsComeAndGo(t *testing.T) {
	e := start(t, []Config{{Namespace: "wealth-ai", PodLabels: "ai.bank/agent=true"}, {PodLabels: "app=kyc"}},
		newPod("wealth-ai", "advisor-0", "uid-0", labelled("ai.bank/agent", "true"), container("agent", cid("a"))),
		newPod("wealth-ai", "web", "uid-w", labelled("app", "web"), container("web", cid("w"))),
		newPod("other", "advisor-x", "uid-x", labelled("ai.bank/agent", "true"), container("agent", cid("x"))),
		newPod("wealth-ai", "far", "uid-far", onNode("node-2"), labelled("ai.bank/agent", "true")),
	)
	r := e.r
	if r.Match("uid-0", cid("a")) != 0 || r.Match("uid-0", "") != 0 {
		t.Error("the selected pod does not match")
	}
	for _, uid := range []string{"uid-w", "uid-x", "uid-far", ""} {
		if got := r.Match(uid, cid("w")); got != -1 {
			t.Errorf("pod %q matches selector %d", uid, got)
		}
	}
	g := r.Generation()
	// A new pod: matched by its UID from its first exec, before its status names a container.
	p := newPod("wealth-ai", "advisor-1", "uid-1", labelled("ai.bank/agent", "true"), container("agent", ""))
	if _, err := e.client.CoreV1().Pods("wealth-ai").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.wantMatch("new pod", "uid-1", cid("b"), 0)
	if r.Generation() == g {
		t.Error("a new matching pod did not move the generation")
	}
	// Relabelled out of the first selector and into the second.
	p.Labels = map[string]string{"app": "kyc"}
	e.update(p)
	e.wantMatch("relabelled to app=kyc", "uid-1", cid("b"), 1)
	p.Labels = map[string]string{"app": "none"}
	g = r.Generation()
	e.update(p)
	e.wantMatch("relabelled out", "uid-1", cid("b"), -1)
	if r.Generation() == g {
		t.Error("a pod leaving the selection did not move the generation")
	}
	// Moved to another node (a re-list can show that): no match.
	p0, _ := e.client.CoreV1().Pods("wealth-ai").Get(context.Background(), "advisor-0", metav1.GetOptions{})
	if err := e.client.CoreV1().Pods("wealth-ai").Delete(context.Background(), "advisor-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.wantMatch("deleted", string(p0.UID), cid("a"), -1)
	// An unchanged update (a resync) does not move the generation.
	p.Labels = map[string]string{"app": "kyc"}
	e.update(p)
	e.wantMatch("back in", "uid-1", cid("b"), 1)
	g = r.Generation()
	p.Annotations = map[string]string{"note": "x"}
	e.update(p)
	time.Sleep(100 * time.Millisecond)
	if r.Generation() != g {
		t.Error("an update that changes no match moved the generation")
	}
}

// TestWorkloads: a Deployment's pods through their ReplicaSet, even when the ReplicaSet is
// cached after the pod; a StatefulSet's directly; a CronJob's through its Job; a bare pod.
func TestWorkloads(t *testing.T) {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "wealth-ai", Name: "advisor-7f9c", UID: "rs-1",
		OwnerReferences: []metav1.OwnerReference{controller(KindDeployment, "advisor", "dep-1")}}}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "wealth-ai", Name: "report-2911", UID: "job-1",
		OwnerReferences: []metav1.OwnerReference{controller(KindCronJob, "report", "cron-1")}}}
	e := start(t, []Config{
		{Namespace: "wealth-ai", Workload: &WorkloadConfig{Kind: KindDeployment, Name: "advisor"}},
		{Workload: &WorkloadConfig{Kind: KindStatefulSet, Name: "kyc"}},
		{Workload: &WorkloadConfig{Kind: KindCronJob, Name: "report"}},
		{Workload: &WorkloadConfig{Kind: KindPod, Name: "debug"}},
		{Workload: &WorkloadConfig{Kind: KindReplicaSet, Name: "other-rs"}},
	},
		job,
		newPod("wealth-ai", "advisor-7f9c-abc", "uid-d", ownedBy(KindReplicaSet, "advisor-7f9c", "rs-1")),
		newPod("wealth-ai", "kyc-0", "uid-s", ownedBy(KindStatefulSet, "kyc", "sts-1")),
		newPod("wealth-ai", "report-2911-x", "uid-j", ownedBy(KindJob, "report-2911", "job-1")),
		newPod("wealth-ai", "debug", "uid-p"),
		newPod("wealth-ai", "other-rs-1", "uid-r", ownedBy(KindReplicaSet, "other-rs", "rs-2")),
	)
	r := e.r
	if r.Match("uid-d", "") != -1 {
		t.Error("a pod whose ReplicaSet is not known yet matches its Deployment")
	}
	for uid, want := range map[string]int{"uid-s": 1, "uid-j": 2, "uid-p": 3, "uid-r": 4} {
		if got := r.Match(uid, cid("c")); got != want {
			t.Errorf("%s: selector %d, want %d", uid, got, want)
		}
	}
	// The ReplicaSet arrives: its pod now belongs to the Deployment.
	if _, err := e.client.AppsV1().ReplicaSets("wealth-ai").Create(context.Background(), rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.wantMatch("the ReplicaSet's pod", "uid-d", cid("d"), 0)
}

// TestContainers: container_name selects one container by the id the kubelet reports; before
// it reports one, a process whose container id is unknown belongs to the selected container
// only when that is the one container without a reported id; a restarted container's new id
// matches once reported.
func TestContainers(t *testing.T) {
	p := newPod("wealth-ai", "advisor-0", "uid-0", container("agent", ""), container("proxy", cid("p")))
	e := start(t, []Config{{Namespace: "wealth-ai", ContainerName: "agent"}, {Namespace: "wealth-ai", ContainerName: "sidecar-that-is-not-there"}}, p)
	r := e.r
	if r.Match("uid-0", cid("a")) != 0 {
		t.Error("the agent container's first process (its id not reported yet) does not match")
	}
	if r.Match("uid-0", cid("p")) != -1 {
		t.Error("the proxy container matches")
	}
	if r.Match("uid-0", "") != -1 {
		t.Error("a pod-level process matches a container selector")
	}
	// The kubelet reports the agent's id.
	p.Status.ContainerStatuses[0].ContainerID = "containerd://" + cid("a")
	e.update(p)
	e.eventually("the reported id", func() bool {
		r.mu.RLock()
		defer r.mu.RUnlock()
		m := r.byUID["uid-0"].matches[0]
		return m != nil && m.ids[cid("a")]
	})
	if r.Match("uid-0", cid("a")) != 0 || r.Match("uid-0", cid("z")) != -1 {
		t.Error("with every id reported, only the agent's matches")
	}
	// The agent restarts: the kubelet reports the new id, the old one is the last termination.
	g := r.Generation()
	p.Status.ContainerStatuses[0].ContainerID = "containerd://" + cid("b")
	p.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: "containerd://" + cid("a")}
	e.update(p)
	e.wantMatch("the restarted agent", "uid-0", cid("b"), 0)
	if r.Generation() == g {
		t.Error("a restart did not move the generation (running processes are looked at again)")
	}
	// The proxy restarts: its new id is not the agent's.
	p.Status.ContainerStatuses[1].ContainerID = "containerd://" + cid("q")
	p.Status.ContainerStatuses[1].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: "containerd://" + cid("p")}
	e.update(p)
	e.wantMatch("the restarted proxy is not selected", "uid-0", cid("q"), -1)
}

// TestStaticPod: a static pod's processes run in the cgroup of the kubelet's UID, which its
// mirror pod names in an annotation.
func TestStaticPod(t *testing.T) {
	p := newPod("kube-system", "agent-node-1", "mirror-uid", labelled("app", "agent"))
	p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "0123456789abcdef0123456789abcdef"}
	e := start(t, []Config{{PodLabels: "app=agent"}}, p)
	if e.r.Match("0123456789abcdef0123456789abcdef", cid("a")) != 0 || e.r.Match("mirror-uid", "") != 0 {
		t.Error("a static pod's processes do not match")
	}
}

// TestChangedSignals: a pod coming into or leaving the selection signals Changed, so that a
// reader waiting idle for ring buffer records (none come on a quiet node) looks again at the
// running processes; an update that changes no match does not.
func TestChangedSignals(t *testing.T) {
	p := newPod("wealth-ai", "advisor-0", "uid-0", labelled("ai.bank/agent", "false"), container("agent", cid("a")))
	e := start(t, []Config{{PodLabels: "ai.bank/agent=true"}}, p)
	select { // the initial list matched nothing
	case <-e.r.Changed():
		t.Fatal("Changed signalled without a change")
	default:
	}
	waitChanged := func(what string) {
		t.Helper()
		select {
		case <-e.r.Changed():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not signal Changed", what)
		}
	}
	p.Labels["ai.bank/agent"] = "true"
	e.update(p)
	waitChanged("a pod relabelled into the selection")
	p.Annotations = map[string]string{"note": "x"}
	e.update(p)
	time.Sleep(100 * time.Millisecond)
	select {
	case <-e.r.Changed():
		t.Error("an update that changes no match signalled Changed")
	default:
	}
	p.Labels["ai.bank/agent"] = "false"
	e.update(p)
	waitChanged("a pod relabelled out of the selection")
}
