package k8sinventory

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSlimPod(t *testing.T) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", Labels: map[string]string{"app": "x"}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.PodSpec{NodeName: "n", ServiceAccountName: "sa", Containers: []corev1.Container{{Name: "c", Image: "i",
			Env: []corev1.EnvVar{{Name: "SECRET", Value: "s"}}, Command: []string{"/agent"}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "c", ContainerID: "containerd://1", RestartCount: 3}}},
	}
	got, _ := SlimPod(p)
	s := got.(*corev1.Pod)
	if s.ManagedFields != nil || s.Spec.Containers[0].Env != nil || s.Spec.Containers[0].Command != nil || s.Status.Phase != "" || s.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("not slimmed: %+v", s)
	}
	if s.Labels["app"] != "x" || s.Spec.ServiceAccountName != "sa" || s.Status.ContainerStatuses[0].ContainerID != "containerd://1" {
		t.Errorf("lost what selection and attribution need: %+v", s)
	}
}

// TestObserve: every list/watch outcome reaches each observer until it is removed.
func TestObserve(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("unreachable")
	})
	in, err := New(client, "node-1", 0, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	failed := 0
	remove := in.Observe(func(resource string, err error) {
		mu.Lock()
		defer mu.Unlock()
		seen[resource]++
		if err != nil {
			failed++
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	in.Run(ctx, &wg)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		ok := seen["pods"] > 0 && seen["replicasets"] > 0 && failed > 0
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("observed %v, %d failed", seen, failed)
		}
		time.Sleep(10 * time.Millisecond)
	}
	remove()
	mu.Lock()
	before := seen["jobs"]
	mu.Unlock()
	time.Sleep(1500 * time.Millisecond) // the jobs reflector retries with backoff (first after ~1 s)
	mu.Lock()
	after := seen["jobs"]
	mu.Unlock()
	if after != before {
		t.Errorf("a removed observer was called %d more times", after-before)
	}
	if in.HasSynced() {
		t.Error("synced although jobs cannot be listed")
	}
	cancel()
	wg.Wait()
	var list *k8stesting.ListActionImpl
	for _, a := range client.Actions() {
		if l, ok := a.(k8stesting.ListActionImpl); ok && l.GetResource().Resource == "pods" {
			list = &l
		}
	}
	if list == nil || list.GetListRestrictions().Fields.String() != "spec.nodeName=node-1" {
		t.Errorf("pods listed with %+v, want the node's field selector", list)
	}
}

// TestWatch: a component's handlers get the pods and owners cached before it registered (as
// adds) and later changes, HasSynced says when they caught up, and after Remove (twice is
// fine) they get nothing while the informers run on for the others.
func TestWatch(t *testing.T) {
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}, Spec: corev1.PodSpec{NodeName: "node-1"}}
	}
	client := fake.NewClientset(pod("early"), &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "rs", UID: "rs-1"}})
	in, err := New(client, "node-1", 0, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	in.Run(ctx, &wg)
	waitFor(t, "informers synced", in.HasSynced)

	var mu sync.Mutex
	var got []string
	record := func(kind string) func(any) {
		return func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			o, _ := meta.Accessor(obj)
			mu.Lock()
			defer mu.Unlock()
			got = append(got, kind+" "+o.GetName())
		}
	}
	seen := func(want string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return slices.Contains(got, want)
		}
	}
	h, err := in.Watch(record("pod"), record("delete"), record("owner"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "handlers synced", h.HasSynced)
	for _, want := range []string{"pod early", "owner rs"} {
		if !seen(want)() {
			t.Errorf("%q not delivered before HasSynced", want)
		}
	}
	if !h.ReplicaSetsSynced() || !h.JobsSynced() {
		t.Error("the owner handlers are not synced when all handlers are")
	}
	if _, err := client.CoreV1().Pods("ns").Create(ctx, pod("late"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new pod", seen("pod late"))
	if _, err := client.BatchV1().Jobs("ns").Create(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "job", UID: "job-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new job", seen("owner job"))
	if err := client.CoreV1().Pods("ns").Delete(ctx, "early", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a deleted pod", seen("delete early"))

	h.Remove()
	h.Remove()
	mu.Lock()
	n := len(got)
	mu.Unlock()
	if _, err := client.CoreV1().Pods("ns").Create(ctx, pod("after"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the informer's cache", func() bool {
		_, ok, _ := in.Pods.GetStore().GetByKey("ns/after")
		return ok
	})
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Errorf("removed handlers got %v", got[n:])
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
