// Package k8sselect resolves the eBPF receiver's Kubernetes targets — a namespace, a pod label
// selector, a workload (kind and name), a container name — to the pods and containers of the
// node that match them, from the shared informers of the k8s_inventory extension, and keeps the
// answer current as pods come, change labels, restart containers and go.
//
// The receiver asks Match(pod UID, container id) for a process, with the identity its cgroup
// gives (internal/containerid): at an exec, and when Generation says the selection changed (a
// rescan of running processes). A pod's UID is in its cgroup path from its creation, before the
// kubelet reports its containers' ids, so a new pod of a selected workload matches from its
// first exec.
package k8sselect // import "github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/k8sselect"

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/agenttrail/agenttrail/internal/k8sinventory"
)

// Workload kinds a target may name.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindReplicaSet  = "ReplicaSet"
	KindJob         = "Job"
	KindCronJob     = "CronJob"
	KindPod         = "Pod"
)

var kinds = map[string]bool{KindDeployment: true, KindStatefulSet: true, KindDaemonSet: true, KindReplicaSet: true, KindJob: true, KindCronJob: true, KindPod: true}

// WorkloadConfig names a workload.
type WorkloadConfig struct {
	// Kind: Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Pod.
	Kind string `mapstructure:"kind"`
	// Name of the workload in the target's namespace (any namespace when none is set).
	Name string `mapstructure:"name"`
}

// Config is a target's `kubernetes` selector: every key set must match.
type Config struct {
	// Namespace of the pods; empty: every namespace.
	Namespace string `mapstructure:"namespace"`
	// PodLabels is a label selector in kubectl's syntax: `app=agent,tier in (a,b),!canary`.
	PodLabels string `mapstructure:"pod_labels"`
	// Workload: the pods a controller owns (a Deployment's through its ReplicaSets, a CronJob's
	// through its Jobs).
	Workload *WorkloadConfig `mapstructure:"workload"`
	// ContainerName: only this container of the pods; empty: every container.
	ContainerName string `mapstructure:"container_name"`
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// maxSelector bounds the label selector's text.
const maxSelector = 4096

// Validate checks the selector without touching the system; it stops at the first problem and
// quotes the key.
func (c *Config) Validate() error {
	if c.Namespace == "" && c.PodLabels == "" && c.Workload == nil {
		return errors.New(`"kubernetes" must set "namespace", "pod_labels" or "workload" (a container name alone would select every pod of the node)`)
	}
	if c.Namespace != "" && !dnsLabel.MatchString(c.Namespace) {
		return fmt.Errorf(`"kubernetes.namespace" must be a namespace name, got %q`, c.Namespace)
	}
	if len(c.PodLabels) > maxSelector {
		return fmt.Errorf(`"kubernetes.pod_labels" is longer than %d bytes`, maxSelector)
	}
	if c.PodLabels != "" {
		if _, err := labels.Parse(c.PodLabels); err != nil {
			return fmt.Errorf(`"kubernetes.pod_labels": %w`, err)
		}
	}
	if w := c.Workload; w != nil {
		if !kinds[w.Kind] {
			return fmt.Errorf(`"kubernetes.workload.kind" must be one of Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod; got %q`, w.Kind)
		}
		if w.Name == "" || len(w.Name) > 253 || strings.ContainsAny(w.Name, " /\t\n") {
			return fmt.Errorf(`"kubernetes.workload.name" must be a %s name, got %q`, w.Kind, w.Name)
		}
	}
	if c.ContainerName != "" && !dnsLabel.MatchString(c.ContainerName) {
		return fmt.Errorf(`"kubernetes.container_name" must be a container name, got %q`, c.ContainerName)
	}
	return nil
}

// selector is a compiled Config.
type selector struct {
	cfg    Config
	labels labels.Selector // nil: any
}

func compile(c Config) (*selector, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s := &selector{cfg: c}
	if c.PodLabels != "" {
		sel, err := labels.Parse(c.PodLabels)
		if err != nil {
			return nil, err
		}
		s.labels = sel
	}
	return s, nil
}

// podMatch is how one pod matches one selector.
type podMatch struct {
	// all: every container of the pod (no container_name).
	all bool
	// ids: the container ids of the selected containers the kubelet reported.
	ids map[string]bool
	// others: the ids of the other containers; an id in neither set (a container the status
	// does not name yet) belongs to the selected container when it is the only one of the pod
	// whose id is not known.
	others map[string]bool
	// unknownIsSelected: the selected container is the only one whose id is not reported.
	unknownIsSelected bool
}

type podState struct {
	uids    []string    // the pod's UID, and a static pod's cgroup UID
	matches []*podMatch // by selector; nil: no match
}

// Resolver keeps the node's matching pods for a list of selectors. Match and Generation are
// safe for concurrent use; the informers' handlers update it.
type Resolver struct {
	inf      *k8sinventory.Informers
	nodeName string
	sels     []*selector

	mu    sync.RWMutex
	pods  map[types.UID]*podState
	byUID map[string]*podState

	gen atomic.Uint64
	// changed has room for one signal: a change while one is pending needs no second.
	changed  chan struct{}
	handlers k8sinventory.Handlers
}

// NewResolver compiles the selectors and follows inf's pods (of nodeName, "" all) for them.
func NewResolver(inf *k8sinventory.Informers, nodeName string, cfgs []Config) (*Resolver, error) {
	r := &Resolver{inf: inf, nodeName: nodeName, pods: map[types.UID]*podState{}, byUID: map[string]*podState{},
		changed: make(chan struct{}, 1)}
	for i, c := range cfgs {
		s, err := compile(c)
		if err != nil {
			return nil, fmt.Errorf("selector %d: %w", i, err)
		}
		r.sels = append(r.sels, s)
	}
	h, err := inf.Watch(r.onPod, r.onPodDelete, r.onOwner)
	if err != nil {
		return nil, err
	}
	r.handlers = h
	return r, nil
}

// Close stops following the informers (they are the extension's and run on).
func (r *Resolver) Close() {
	if r.handlers.Remove != nil {
		r.handlers.Remove()
	}
}

// HasSynced reports whether every pod known at start has been evaluated.
func (r *Resolver) HasSynced() bool { return r.handlers.HasSynced() && r.inf.HasSynced() }

// Generation changes each time a pod starts or stops matching a selector, or a matching pod's
// containers change: the receiver then looks again at the processes already running.
func (r *Resolver) Generation() uint64 { return r.gen.Load() }

// Changed receives a value after the generation changed (one for several changes in a row): a
// reader waiting for records must not wait for an unrelated one to look again, since a quiet
// node may have none for a long time.
func (r *Resolver) Changed() <-chan struct{} { return r.changed }

// bump advances the generation and signals Changed.
func (r *Resolver) bump() {
	r.gen.Add(1)
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Match returns the index of the first selector a process of the pod podUID and container cid
// (as its cgroup says: cid may be "" for a pod-level process, or an id the status does not
// report yet) belongs to, or -1.
func (r *Resolver) Match(podUID, cid string) int {
	if podUID == "" {
		return -1
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	p := r.byUID[podUID]
	if p == nil {
		return -1
	}
	for i, m := range p.matches {
		switch {
		case m == nil:
		case m.all, cid != "" && m.ids[cid]:
			return i
		case cid != "" && !m.others[cid] && m.unknownIsSelected:
			return i
		}
	}
	return -1
}

func (r *Resolver) onPod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if r.nodeName != "" && pod.Spec.NodeName != r.nodeName {
		r.remove(pod.UID) // the field selector is not honoured everywhere (fake clientsets)
		return
	}
	st := &podState{uids: []string{string(pod.UID)}}
	if m := pod.Annotations[corev1.MirrorPodAnnotationKey]; m != "" && m != string(pod.UID) {
		st.uids = append(st.uids, m) // a static pod runs in the cgroup of the kubelet's UID
	}
	owner := r.workloadOf(pod)
	any := false
	for _, s := range r.sels {
		m := s.match(pod, owner)
		st.matches = append(st.matches, m)
		any = any || m != nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.pods[pod.UID]
	if !any {
		if old != nil {
			r.removeLocked(pod.UID)
			r.bump()
		}
		return
	}
	if old != nil {
		for _, u := range old.uids {
			delete(r.byUID, u)
		}
	}
	r.pods[pod.UID] = st
	for _, u := range st.uids {
		r.byUID[u] = st
	}
	if old == nil || !sameMatches(old.matches, st.matches) {
		r.bump()
	}
}

func (r *Resolver) onPodDelete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		r.remove(pod.UID)
	}
}

func (r *Resolver) remove(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pods[uid] != nil {
		r.removeLocked(uid)
		r.bump()
	}
}

func (r *Resolver) removeLocked(uid types.UID) {
	for _, u := range r.pods[uid].uids {
		delete(r.byUID, u)
	}
	delete(r.pods, uid)
}

// onOwner re-evaluates the pods a ReplicaSet or Job owns.
func (r *Resolver) onOwner(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	pods, err := r.inf.Pods.GetIndexer().ByIndex(k8sinventory.OwnerIndex, string(o.GetUID()))
	if err != nil {
		return
	}
	for _, p := range pods {
		r.onPod(p)
	}
}

// workload is what owns a pod, as far as the informers know: its controller, and the
// controller's controller for a ReplicaSet (Deployment) and a Job (CronJob).
type workload struct {
	kind, name string // the top owner: Deployment, StatefulSet, ..., or Pod
	rs, job    string // the ReplicaSet or Job in between, when there is one
}

func (r *Resolver) workloadOf(pod *corev1.Pod) workload {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return workload{kind: KindPod, name: pod.Name}
	}
	w := workload{kind: ref.Kind, name: ref.Name}
	var store cache.Store
	switch ref.Kind {
	case KindReplicaSet:
		w.rs, store = ref.Name, r.inf.ReplicaSets.GetStore()
	case KindJob:
		w.job, store = ref.Name, r.inf.Jobs.GetStore()
	default:
		return w
	}
	obj, ok, err := store.GetByKey(pod.Namespace + "/" + ref.Name)
	if err != nil || !ok {
		return w // the owner is not cached yet: onOwner re-evaluates when it is
	}
	o, err := meta.Accessor(obj)
	if err != nil || o.GetUID() != ref.UID {
		return w
	}
	if top := metav1.GetControllerOfNoCopy(o); top != nil && (top.Kind == KindDeployment || top.Kind == KindCronJob) {
		w.kind, w.name = top.Kind, top.Name
	}
	return w
}

func (s *selector) match(pod *corev1.Pod, w workload) *podMatch {
	c := s.cfg
	if c.Namespace != "" && pod.Namespace != c.Namespace {
		return nil
	}
	if s.labels != nil && !s.labels.Matches(labels.Set(pod.Labels)) {
		return nil
	}
	if c.Workload != nil {
		ok := false
		switch c.Workload.Kind {
		case KindPod:
			ok = pod.Name == c.Workload.Name
		case KindReplicaSet:
			ok = w.rs == c.Workload.Name
		case KindJob:
			ok = w.job == c.Workload.Name
		default:
			ok = w.kind == c.Workload.Kind && w.name == c.Workload.Name
		}
		if !ok {
			return nil
		}
	}
	if c.ContainerName == "" {
		return &podMatch{all: true}
	}
	m := &podMatch{ids: map[string]bool{}, others: map[string]bool{}}
	has := false
	unknown := map[string]bool{} // names of containers whose id is not reported
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, ct := range list {
			has = has || ct.Name == c.ContainerName
			unknown[ct.Name] = true
		}
	}
	for _, ct := range pod.Spec.EphemeralContainers {
		has = has || ct.Name == c.ContainerName
		unknown[ct.Name] = true
	}
	if !has {
		return nil
	}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, st := range list {
			id := bareID(st.ContainerID)
			if id == "" {
				continue
			}
			delete(unknown, st.Name)
			if st.Name == c.ContainerName {
				m.ids[id] = true
			} else {
				m.others[id] = true
			}
			// A restarted container's previous id: its processes are gone, but say whose it was.
			if t := st.LastTerminationState.Terminated; t != nil {
				if prev := bareID(t.ContainerID); prev != "" && st.Name != c.ContainerName {
					m.others[prev] = true
				}
			}
		}
	}
	m.unknownIsSelected = len(unknown) == 1 && unknown[c.ContainerName]
	return m
}

// bareID is the id of a container status's runtime://id.
func bareID(s string) string {
	if _, id, ok := strings.Cut(s, "://"); ok {
		return id
	}
	return s
}

func sameMatches(a, b []*podMatch) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if (x == nil) != (y == nil) {
			return false
		}
		if x == nil {
			continue
		}
		if x.all != y.all || x.unknownIsSelected != y.unknownIsSelected || !sameSet(x.ids, y.ids) || !sameSet(x.others, y.others) {
			return false
		}
	}
	return true
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
