package k8sattributionprocessor

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// deletedGrace is how long the attributions of a deleted pod (or of a
	// container id that left a pod's status) still resolve: spans of a
	// process that ran in it can arrive after the pod is gone.
	deletedGrace = 2 * time.Minute
	// maxTombstones bounds the remembered attributions of deleted pods and
	// containers.
	maxTombstones = 1 << 16
)

// podIndex maps container ids and pod UIDs to attributions. It is filled by
// the pod informer's event handlers and read by every batch.
type podIndex struct {
	nodeName    string
	labels      []extractRule
	annotations []extractRule
	owners      ownerLookup
	grace       time.Duration
	now         func() time.Time

	mu        sync.RWMutex
	byCID     map[string]*attribution
	byUID     map[string]*attribution
	pods      map[types.UID]*podRecord
	tombCID   map[string]tombstone
	tombUID   map[string]tombstone
	nextSweep time.Time
	// changed is closed (and replaced) whenever the index changes, waking
	// batches that wait for a container id.
	changed chan struct{}
}

type podRecord struct {
	uids []string // pod UID and, for a static pod's mirror, the kubelet's UID
	pod  *attribution
	cids map[string]*attribution
}

type tombstone struct {
	a     *attribution
	until time.Time
}

func newPodIndex(nodeName string, labels, annotations []extractRule, owners ownerLookup) *podIndex {
	return &podIndex{
		nodeName:    nodeName,
		labels:      labels,
		annotations: annotations,
		owners:      owners,
		grace:       deletedGrace,
		now:         time.Now,
		byCID:       map[string]*attribution{},
		byUID:       map[string]*attribution{},
		pods:        map[types.UID]*podRecord{},
		tombCID:     map[string]tombstone{},
		tombUID:     map[string]tombstone{},
		changed:     make(chan struct{}),
	}
}

// onNode reports whether the pod belongs in the index (the node filter is
// applied here too: field selectors are not honoured everywhere, e.g. by
// fake clientsets).
func (x *podIndex) onNode(pod *corev1.Pod) bool {
	return x.nodeName == "" || pod.Spec.NodeName == x.nodeName
}

// upsert indexes (or re-indexes) a pod. The attributions are built under the
// write lock, so that a rebuild triggered by an owner change and one
// triggered by the pod itself cannot overwrite each other with stale owner
// names.
func (x *podIndex) upsert(pod *corev1.Pod) {
	if !x.onNode(pod) {
		x.remove(pod.UID, false)
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	podLevel, cids := podAttributes(pod, x.owners, x.labels, x.annotations)
	uids := []string{string(pod.UID)}
	if m := pod.Annotations[mirrorPodAnnotation]; m != "" && m != string(pod.UID) {
		// A static pod's containers run in the cgroup of the kubelet's
		// UID (the config hash), which the mirror pod carries here.
		uids = append(uids, m)
	}
	now := x.now()
	if old := x.pods[pod.UID]; old != nil {
		for cid, a := range old.cids {
			if _, still := cids[cid]; !still {
				delete(x.byCID, cid)
				x.tombCID[cid] = tombstone{a, now.Add(x.grace)}
			}
		}
		for _, u := range old.uids {
			delete(x.byUID, u)
		}
	}
	for cid, a := range cids {
		x.byCID[cid] = a
		delete(x.tombCID, cid)
	}
	for _, u := range uids {
		x.byUID[u] = podLevel
		delete(x.tombUID, u)
	}
	x.pods[pod.UID] = &podRecord{uids: uids, pod: podLevel, cids: cids}
	x.sweepLocked(now)
	x.notifyLocked()
}

// remove drops a pod; with remember, its attributions resolve for grace.
func (x *podIndex) remove(uid types.UID, remember bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	rec := x.pods[uid]
	if rec == nil {
		return
	}
	now := x.now()
	for cid, a := range rec.cids {
		delete(x.byCID, cid)
		if remember {
			x.tombCID[cid] = tombstone{a, now.Add(x.grace)}
		}
	}
	for _, u := range rec.uids {
		delete(x.byUID, u)
		if remember {
			x.tombUID[u] = tombstone{rec.pod, now.Add(x.grace)}
		}
	}
	delete(x.pods, uid)
	x.sweepLocked(now)
	x.notifyLocked()
}

// notify wakes waiting batches, e.g. when the API becomes unreachable.
func (x *podIndex) notify() {
	x.mu.Lock()
	x.notifyLocked()
	x.mu.Unlock()
}

func (x *podIndex) notifyLocked() {
	close(x.changed)
	x.changed = make(chan struct{})
}

func (x *podIndex) sweepLocked(now time.Time) {
	over := len(x.tombCID)+len(x.tombUID) > maxTombstones
	if !over && now.Before(x.nextSweep) {
		return
	}
	x.nextSweep = now.Add(x.grace / 4)
	for _, m := range []map[string]tombstone{x.tombCID, x.tombUID} {
		for k, t := range m {
			if now.After(t.until) {
				delete(m, k)
			}
		}
	}
	// Still too many (a burst of deletions): forget arbitrary ones.
	for _, m := range []map[string]tombstone{x.tombCID, x.tombUID} {
		for k := range m {
			if len(x.tombCID)+len(x.tombUID) <= maxTombstones {
				return
			}
			delete(m, k)
		}
	}
}

// lookup returns the attribution of container cid (live, then recently
// removed) or else of pod podUID (live, then recently deleted); nil when
// unknown.
func (x *podIndex) lookup(cid, podUID string, now time.Time) *attribution {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if cid != "" {
		if a := x.byCID[cid]; a != nil {
			return a
		}
	}
	if cid != "" {
		if t, ok := x.tombCID[cid]; ok && !now.After(t.until) {
			return t.a
		}
	}
	if podUID != "" {
		if a := x.byUID[podUID]; a != nil {
			return a
		}
	}
	if podUID != "" {
		if t, ok := x.tombUID[podUID]; ok && !now.After(t.until) {
			return t.a
		}
	}
	return nil
}

// changes returns a channel closed at the next change of the index.
func (x *podIndex) changes() <-chan struct{} {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.changed
}

// size returns the number of indexed pods and container ids.
func (x *podIndex) size() (pods, containers int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.pods), len(x.byCID)
}
