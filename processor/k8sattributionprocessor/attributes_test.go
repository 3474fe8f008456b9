package k8sattributionprocessor

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

func TestParseImage(t *testing.T) {
	tests := []struct{ ref, name, tag string }{
		{"nginx", "nginx", ""},
		{"nginx:1.25", "nginx", "1.25"},
		{"ghcr.io/acme/agent:1.4.2@sha256:0123abcd", "ghcr.io/acme/agent", "1.4.2"},
		{"ghcr.io/acme/agent@sha256:0123abcd", "ghcr.io/acme/agent", ""},
		{"registry.local:5000/acme/migrate", "registry.local:5000/acme/migrate", ""},
		{"registry.local:5000/acme/migrate:v3", "registry.local:5000/acme/migrate", "v3"},
		{"", "", ""},
		{"  busybox:1.36 ", "busybox", "1.36"},
	}
	for _, tc := range tests {
		if n, tag := parseImage(tc.ref); n != tc.name || tag != tc.tag {
			t.Errorf("parseImage(%q) = %q, %q; want %q, %q", tc.ref, n, tag, tc.name, tc.tag)
		}
	}
}

func TestTrimContainerID(t *testing.T) {
	id := cid("ab")
	for in, want := range map[string]string{
		"containerd://" + id: id, "cri-o://" + id: id, "docker://" + id: id, id: id,
		"CONTAINERD://" + cid("AB"): id, "": "",
	} {
		if got := trimContainerID(in); got != want {
			t.Errorf("trimContainerID(%q) = %q; want %q", in, got, want)
		}
	}
}

type fakeOwners map[string]string

func (f fakeOwners) replicaSetOwner(ns, name string, _ types.UID) string { return f["rs/"+ns+"/"+name] }
func (f fakeOwners) jobOwner(ns, name string, _ types.UID) string        { return f["job/"+ns+"/"+name] }

func TestPodAttributesOwners(t *testing.T) {
	owners := fakeOwners{"rs/ns/web-5d": "web", "job/ns/backup-1": "backup"}
	notController := metav1.OwnerReference{Kind: "ReplicaSet", Name: "adopted-rs"}
	tests := []struct {
		name string
		refs []metav1.OwnerReference
		want map[string]string
	}{
		{"deployment", []metav1.OwnerReference{controller("ReplicaSet", "web-5d", "u")}, map[string]string{attrReplicaSet: "web-5d", attrDeployment: "web"}},
		{"cronjob", []metav1.OwnerReference{controller("Job", "backup-1", "u")}, map[string]string{attrJob: "backup-1", attrCronJob: "backup"}},
		{"statefulset", []metav1.OwnerReference{controller("StatefulSet", "db", "u")}, map[string]string{attrStatefulSet: "db"}},
		{"daemonset", []metav1.OwnerReference{controller("DaemonSet", "agent", "u")}, map[string]string{attrDaemonSet: "agent"}},
		{"controller wins", []metav1.OwnerReference{notController, controller("StatefulSet", "db", "u")}, map[string]string{attrStatefulSet: "db"}},
		{"first when no controller", []metav1.OwnerReference{notController}, map[string]string{attrReplicaSet: "adopted-rs"}},
		{"unknown kind", []metav1.OwnerReference{controller("Rollout", "r", "u")}, map[string]string{}},
		{"none", nil, map[string]string{}},
	}
	ownerKeys := []string{attrReplicaSet, attrDeployment, attrJob, attrCronJob, attrStatefulSet, attrDaemonSet}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := newPod("ns", "p", "uid", "n")
			pod.OwnerReferences = tc.refs
			podLevel, _ := podAttributes(pod, owners, nil, nil)
			got := map[string]string{}
			for _, kv := range podLevel.attrs {
				for _, k := range ownerKeys {
					if kv.k == k {
						got[k] = kv.v
					}
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("owners %v; want %v", got, tc.want)
			}
		})
	}
}

// TestSlimPod: the informer's transform keeps everything attribution reads.
func TestSlimPod(t *testing.T) {
	pod := newPod("ns", "p", "uid", "node-a",
		withOwner("ReplicaSet", "rs", "u"), withServiceAccount("sa"), withLabels("a", "b"), withAnnotations("c", "d"),
		withContainer("main", "img:1", cid("01")), withInitContainer("init", "init:2", cid("02")),
		withEphemeralContainer("dbg", "busybox", cid("03")))
	pod.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: "containerd://" + cid("04")}
	pod.Spec.Containers[0].Command = []string{"/bin/agent", "--token=secret"}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	slim, err := slimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	owners := fakeOwners{"rs/ns/rs": "dep"}
	labels := []extractRule{{"a", "k8s.pod.label.a"}}
	annotations := []extractRule{{"c", "k8s.pod.annotation.c"}}
	wantPod, wantCIDs := podAttributes(pod, owners, labels, annotations)
	gotPod, gotCIDs := podAttributes(slim.(*corev1.Pod), owners, labels, annotations)
	if !reflect.DeepEqual(gotPod, wantPod) || !reflect.DeepEqual(gotCIDs, wantCIDs) {
		t.Errorf("slim pod attributes differ:\n got %v %v\nwant %v %v", gotPod, gotCIDs, wantPod, wantCIDs)
	}
	if len(gotCIDs) != 4 {
		t.Errorf("%d container ids; want 4 (init, main, its previous instance, ephemeral)", len(gotCIDs))
	}
	sp := slim.(*corev1.Pod)
	if sp.ManagedFields != nil || sp.Spec.Containers[0].Command != nil {
		t.Error("slim pod keeps fields attribution does not need")
	}
	if got, _ := slimPod("not a pod"); got != "not a pod" {
		t.Error("non-pod objects (tombstones) must pass unchanged")
	}
}

// TestPodIndexStaticPod: a static pod's containers run in the cgroup of the
// kubelet's UID, which the mirror pod carries in an annotation.
func TestPodIndexStaticPod(t *testing.T) {
	x := newPodIndex("", nil, nil, nil)
	hash := "6c8d2b0f3e1a4c5b9d7e8f0a1b2c3d4e"
	x.upsert(newPod("kube-system", "etcd-node-a", "mirror-uid", "node-a", withAnnotations(mirrorPodAnnotation, hash)))
	for _, uid := range []string{"mirror-uid", hash} {
		if a := x.lookup("", uid, time.Now()); a == nil || !hasKV(a, attrPodName, "etcd-node-a") {
			t.Errorf("lookup by %s: %v", uid, a)
		}
	}
}

func TestPodIndexTombstoneBound(t *testing.T) {
	x := newPodIndex("", nil, nil, nil)
	now := time.Unix(1000, 0)
	x.now = func() time.Time { return now }
	n := maxTombstones/2 + 10
	for i := 0; i < n; i++ {
		uid := types.UID(fmt.Sprintf("uid-%d", i))
		x.upsert(newPod("ns", "p", string(uid), "n", withContainer("c", "i", fmt.Sprintf("%064x", i))))
		x.remove(uid, true)
	}
	if got := len(x.tombCID) + len(x.tombUID); got > maxTombstones {
		t.Errorf("%d tombstones; want at most %d", got, maxTombstones)
	}
	now = now.Add(deletedGrace + time.Second)
	x.upsert(newPod("ns", "p", "later", "n"))
	if got := len(x.tombCID) + len(x.tombUID); got != 0 {
		t.Errorf("%d tombstones after the grace period; want 0", got)
	}
}

func TestAPIHealthTransitions(t *testing.T) {
	zc, logs := observer.New(zapcore.InfoLevel)
	notified := 0
	h := newAPIHealth(zap.New(zc), func() { notified++ })
	down := errors.New("dial tcp: connection refused")
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "jobs"}, "", errors.New("rbac"))
	steps := []struct {
		resource string
		err      error
	}{
		{"pods", nil}, {"replicasets", down}, {"pods", down}, {"jobs", down}, {"pods", down},
		{"pods", nil}, {"replicasets", nil}, {"jobs", forbidden}, {"jobs", forbidden},
		{"pods", down}, {"pods", nil},
	}
	for _, s := range steps {
		h.observe(s.resource, s.err)
	}
	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Level.String()+": "+e.Message[:20])
	}
	want := []string{
		"warn: Kubernetes API serve", // replicasets down
		"warn: Kubernetes API refus", // the 403, once
		"info: Kubernetes API serve", // jobs, the last one down, answered (with that 403)
		"warn: Kubernetes API serve", // pods down again
		"info: Kubernetes API serve",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("logs:\n%q\nwant\n%q", got, want)
	}
	if notified != 2 {
		t.Errorf("waiters woken %d times; want 2 (each time pods became unreachable)", notified)
	}
	if h.podsUnreachable() {
		t.Error("pods unreachable at the end")
	}
	h.observe("pods", fmt.Errorf("wrapped: %w", context.Canceled))
	if h.podsUnreachable() {
		t.Error("a cancelled call (shutdown) is no outage")
	}
}
