package k8sattributionprocessor

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	appsv1client "k8s.io/client-go/kubernetes/typed/apps/v1"
	batchv1client "k8s.io/client-go/kubernetes/typed/batch/v1"
)

// slowOwners is a fake clientset whose ReplicaSet and Job lists answer only once released: an
// API server that lists pods first (the pod list of one node is small, the cluster's
// ReplicaSets and Jobs are not). client-go's fake takes one lock around every call's reactors,
// so a blocking reactor would hold back the pod list too; the typed clients are wrapped instead.
type slowOwners struct {
	*fake.Clientset
	releaseRS, releaseJobs chan struct{}
}

func (s slowOwners) AppsV1() appsv1client.AppsV1Interface {
	return slowApps{AppsV1Interface: s.Clientset.AppsV1(), release: s.releaseRS}
}

func (s slowOwners) BatchV1() batchv1client.BatchV1Interface {
	return slowBatch{BatchV1Interface: s.Clientset.BatchV1(), release: s.releaseJobs}
}

type slowApps struct {
	appsv1client.AppsV1Interface
	release chan struct{}
}

func (a slowApps) ReplicaSets(ns string) appsv1client.ReplicaSetInterface {
	return slowReplicaSets{ReplicaSetInterface: a.AppsV1Interface.ReplicaSets(ns), release: a.release}
}

type slowReplicaSets struct {
	appsv1client.ReplicaSetInterface
	release chan struct{}
}

func (r slowReplicaSets) List(ctx context.Context, o metav1.ListOptions) (*appsv1.ReplicaSetList, error) {
	select {
	case <-r.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r.ReplicaSetInterface.List(ctx, o)
}

type slowBatch struct {
	batchv1client.BatchV1Interface
	release chan struct{}
}

func (b slowBatch) Jobs(ns string) batchv1client.JobInterface {
	return slowJobs{JobInterface: b.BatchV1Interface.Jobs(ns), release: b.release}
}

type slowJobs struct {
	batchv1client.JobInterface
	release chan struct{}
}

func (j slowJobs) List(ctx context.Context, o metav1.ListOptions) (*batchv1.JobList, error) {
	select {
	case <-j.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return j.JobInterface.List(ctx, o)
}

// ownerUnresolved returns agenttrail.k8s_attribution.owner_unresolved by reason.
func (h *harness) ownerUnresolved() map[string]int64 {
	h.t.Helper()
	out := map[string]int64{}
	m, err := h.tel.GetMetric("agenttrail.k8s_attribution.owner_unresolved")
	if err != nil {
		return out
	}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		v, _ := dp.Attributes.Value(attribute.Key("reason"))
		out[v.AsString()] += dp.Value
	}
	return out
}

// ownerRig: a Deployment's pod and a CronJob's pod on the node, their ReplicaSet and Job
// listed only once release is called; the harness has the pods.
func ownerRig(t *testing.T, wait time.Duration, prepare func(*core)) (h *harness, release func(), rsPod, jobPod string) {
	t.Helper()
	h, releaseRS, releaseJobs, rsPod, jobPod := ownerRigWith(t, wait, true, prepare)
	return h, func() { releaseRS(); releaseJobs() }, rsPod, jobPod
}

// ownerRigWith is ownerRig with a release of each list; without owners the ReplicaSet and the
// Job do not exist.
func ownerRigWith(t *testing.T, wait time.Duration, owners bool, prepare func(*core)) (h *harness, releaseRS, releaseJobs func(), rsPod, jobPod string) {
	t.Helper()
	rsPod, jobPod = cid("a1"), cid("b2")
	objects := []runtime.Object{
		newPod(nsAI, "agent-6b5-x2", "uid-agent", "node-a", withOwner(ownerKindReplicaSet, "agent-6b5", "rs-1"), withContainer("agent", "agent:1", rsPod)),
		newPod(nsAI, "nightly-29-q", "uid-nightly", "node-a", withOwner(ownerKindJob, "nightly-29", "job-1"), withContainer("etl", "etl:3", jobPod)),
	}
	if owners {
		objects = append(objects, newReplicaSet(nsAI, "agent-6b5", "rs-1", "customer-agent"), newJob(nsAI, "nightly-29", "job-1", "nightly"))
	}
	rsListed, jobsListed := make(chan struct{}), make(chan struct{})
	client := slowOwners{Clientset: fake.NewClientset(objects...), releaseRS: rsListed, releaseJobs: jobsListed}
	var rsOnce, jobsOnce sync.Once
	releaseRS = func() { rsOnce.Do(func() { close(rsListed) }) }
	releaseJobs = func() { jobsOnce.Do(func() { close(jobsListed) }) }
	t.Cleanup(releaseRS)
	t.Cleanup(releaseJobs)
	cfg := testConfig()
	cfg.WaitForMetadata = wait
	h = newHarness(t, client, cfg, func(c *core) {
		noProc(c)
		if prepare != nil {
			prepare(c)
		}
	})
	eventually(t, 10*time.Second, "pods indexed", func() bool {
		now := time.Now()
		return h.core.index.lookup(rsPod, "", now) != nil && h.core.index.lookup(jobPod, "", now) != nil
	})
	w := h.core.watcher.Load()
	if w.rs.HasSynced() || w.jobs.HasSynced() {
		t.Fatal("the owner informers synced before their lists were released")
	}
	return h, releaseRS, releaseJobs, rsPod, jobPod
}

// TestOwnerInformerNotSynced: a pod whose ReplicaSet (Job) the owner informer has not listed
// yet — just after start — is held, at most wait_for_metadata, until it has: its resources
// then have the Deployment (CronJob), attribution late. Past the bounds they go on with
// agenttrail.k8s.owner_unresolved naming what is missing, counted by reason. Before, the batch
// went on at once without k8s.deployment.name / k8s.cronjob.name and nothing said why.
func TestOwnerInformerNotSynced(t *testing.T) {
	t.Run("held until synced", func(t *testing.T) {
		h, release, rsPod, jobPod := ownerRig(t, 5*time.Second, nil)
		time.AfterFunc(300*time.Millisecond, release)
		got, took := h.process(map[string]any{attrContainerID: rsPod}, map[string]any{attrContainerID: jobPod})
		checkAttrs(t, got[0], map[string]any{
			attrNamespace: nsAI, attrPodName: "agent-6b5-x2", attrPodUID: "uid-agent", attrNodeName: "node-a", attrServiceAccount: "default",
			attrReplicaSet: "agent-6b5", attrDeployment: "customer-agent",
			attrContainerName: "agent", attrContainerID: rsPod, attrImageName: "agent", attrImageTag: "1",
			attrWorkloadKind: workloadKindK8s, attrAttribution: attributionLate,
		})
		checkAttrs(t, got[1], map[string]any{
			attrNamespace: nsAI, attrPodName: "nightly-29-q", attrPodUID: "uid-nightly", attrNodeName: "node-a", attrServiceAccount: "default",
			attrJob: "nightly-29", attrCronJob: "nightly",
			attrContainerName: "etl", attrContainerID: jobPod, attrImageName: "etl", attrImageTag: "3",
			attrWorkloadKind: workloadKindK8s, attrAttribution: attributionLate,
		})
		if took < 250*time.Millisecond || took > 4*time.Second {
			t.Errorf("the batch took %v; want from the lists' release (300ms) to well before wait_for_metadata", took)
		}
		if u := h.ownerUnresolved(); len(u) != 0 {
			t.Errorf("owner_unresolved %v; want none", u)
		}
		// Synced: the next batch is not held, ok at once.
		got, took = h.process(map[string]any{attrContainerID: rsPod})
		if got[0][attrAttribution] != attributionOK || got[0][attrDeployment] != "customer-agent" || took > 200*time.Millisecond {
			t.Errorf("after the sync: %v in %v", got[0], took)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		wait := 500 * time.Millisecond
		h, _, rsPod, jobPod := ownerRig(t, wait, nil)
		got, took := h.process(map[string]any{attrContainerID: rsPod}, map[string]any{attrContainerID: jobPod})
		if took < wait || took > wait+time.Second {
			t.Errorf("the batch took %v; want wait_for_metadata %v", took, wait)
		}
		for i, want := range []struct{ owner, unresolved string }{{attrReplicaSet, attrDeployment}, {attrJob, attrCronJob}} {
			r := got[i]
			if r[want.owner] == nil || r[want.unresolved] != nil || r[attrOwnerUnresolved] != want.unresolved || r[attrAttribution] != attributionLate {
				t.Errorf("resource %d: %v; want %s, no %s, %s=%s, late", i, r, want.owner, want.unresolved, attrOwnerUnresolved, want.unresolved)
			}
		}
		if u := h.ownerUnresolved(); u[reasonWaitTimeout] != 2 || len(u) != 1 {
			t.Errorf("owner_unresolved %v; want wait_timeout: 2", u)
		}
		if m := h.misses(); len(m) != 0 {
			t.Errorf("misses %v: the pods were found", m)
		}
	})
	t.Run("one owner informer synced", func(t *testing.T) {
		// The ReplicaSets are listed (the pod's is not among them: there is no Deployment to
		// wait for), the Jobs never are: the ReplicaSet's pod goes on once its informer
		// synced, not at wait_for_metadata.
		h, releaseRS, _, rsPod, _ := ownerRigWith(t, 5*time.Second, false, nil)
		time.AfterFunc(300*time.Millisecond, releaseRS)
		got, took := h.process(map[string]any{attrContainerID: rsPod})
		if got[0][attrDeployment] != nil || got[0][attrOwnerUnresolved] != nil || got[0][attrAttribution] != attributionLate {
			t.Errorf("after the ReplicaSets were listed: %v", got[0])
		}
		if took < 250*time.Millisecond || took > 3*time.Second {
			t.Errorf("the batch took %v; want from the ReplicaSets' release (300ms), not wait_for_metadata (5s)", took)
		}
	})
	t.Run("not waited", func(t *testing.T) {
		h, _, rsPod, _ := ownerRig(t, 0, nil)
		got, took := h.process(map[string]any{attrContainerID: rsPod})
		if got[0][attrOwnerUnresolved] != attrDeployment || got[0][attrAttribution] != attributionOK || took > 200*time.Millisecond {
			t.Errorf("wait_for_metadata 0s: %v in %v", got[0], took)
		}
		if u := h.ownerUnresolved(); u[reasonNotWaited] != 1 {
			t.Errorf("owner_unresolved %v; want not_waited: 1", u)
		}
	})
	t.Run("hold limit", func(t *testing.T) {
		h, _, rsPod, _ := ownerRig(t, 5*time.Second, func(c *core) { c.holds.Store(maxOwnerHolds) })
		got, took := h.process(map[string]any{attrContainerID: rsPod})
		if got[0][attrOwnerUnresolved] != attrDeployment || took > 200*time.Millisecond {
			t.Errorf("past the hold limit: %v in %v", got[0], took)
		}
		if u := h.ownerUnresolved(); u[reasonHoldLimit] != 1 {
			t.Errorf("owner_unresolved %v; want hold_limit: 1", u)
		}
		if n := h.core.holds.Load(); n != maxOwnerHolds {
			t.Errorf("holds %d after the batch; want %d (its own released)", n, maxOwnerHolds)
		}
	})
}
