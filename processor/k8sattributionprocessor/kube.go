package k8sattributionprocessor

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/agenttrail/agenttrail/internal/k8sinventory"
)

const (
	userAgent  = "agenttrail-k8sattribution"
	ownerIndex = k8sinventory.OwnerIndex
)

// newClient builds the Kubernetes client for auth_type serviceAccount or
// kubeConfig. It does not contact the API server.
func newClient(cfg *Config) (kubernetes.Interface, error) {
	return k8sinventory.NewClient(cfg.AuthType, cfg.KubeConfig, userAgent)
}

// podListOptions returns the list/watch option tweak of the pod informer:
// only pods scheduled to nodeName when it is set.
func podListOptions(nodeName string) func(*metav1.ListOptions) {
	return k8sinventory.PodListOptions(nodeName)
}

// apiHealth follows whether the API server answers, from the outcome of every
// list and watch call of each informer, and logs the transitions once: one
// warning when a first resource becomes unreachable, one info when the last
// one recovers (so a real outage, where all fail, logs exactly one of each).
type apiHealth struct {
	logger      *zap.Logger
	onChange    func() // wakes waiting batches when pods become unreachable
	mu          sync.Mutex
	unreachable map[string]bool // resources whose last call failed without an answer
	podErr      error           // last outcome of the pod informer
	refused     map[string]bool // resource/reason already logged
	// For the component status (status.go): resources the API refused (by reason) until a
	// call succeeds, whether the informers synced, or are late doing so.
	denied           map[string]string
	synced, syncLate bool
	onStatus         func(msg string)
}

func newAPIHealth(logger *zap.Logger, onChange func()) *apiHealth {
	return &apiHealth{logger: logger, onChange: onChange, unreachable: map[string]bool{}, refused: map[string]bool{}, denied: map[string]string{}}
}

// observe records the outcome of one list or watch call for resource.
func (h *apiHealth) observe(resource string, err error) {
	if errors.Is(err, context.Canceled) {
		return // shutting down
	}
	if h.record(resource, err) && h.onChange != nil {
		h.onChange()
	}
	h.publish()
}

// record updates the state and reports whether the pods just became
// unreachable.
func (h *apiHealth) record(resource string, err error) (podsLost bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if resource == "pods" {
		h.podErr = err
	}
	if err == nil {
		delete(h.denied, resource)
	}
	var status apierrors.APIStatus
	if err != nil && errors.As(err, &status) {
		// The server answered, e.g. 403: a missing RBAC permission. Said
		// once per resource and reason.
		reason := string(apierrors.ReasonForError(err))
		h.denied[resource] = reason
		if key := resource + "/" + reason; !h.refused[key] {
			h.refused[key] = true
			h.logger.Warn("Kubernetes API refused to list or watch "+resource+"; attribution needing it stays incomplete (the ClusterRole needs get, list, watch on pods, replicasets.apps, jobs.batch)",
				zap.String("reason", reason), zap.Error(err))
		}
		err = nil // but it is reachable
	}
	if err == nil {
		if h.unreachable[resource] {
			delete(h.unreachable, resource)
			if len(h.unreachable) == 0 {
				h.logger.Info("Kubernetes API server is reachable again; pod metadata resumes")
			}
		}
		return false
	}
	if h.unreachable[resource] {
		return false
	}
	if len(h.unreachable) == 0 {
		h.logger.Warn("Kubernetes API server is unreachable: spans of containers whose pod is not cached yet are marked agenttrail.k8s.attribution=missing until it is back (retrying with backoff)",
			zap.String("resource", resource), zap.Error(err))
	}
	h.unreachable[resource] = true
	return resource == "pods"
}

// podsUnreachable reports whether the pod informer's last call failed
// without an answer from the API server.
func (h *apiHealth) podsUnreachable() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unreachable["pods"]
}

func (h *apiHealth) lastPodError() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.podErr
}

// kubeWatcher feeds the index from the pod, ReplicaSet and Job informers: its own, or those of
// a k8s_inventory extension shared with other components.
type kubeWatcher struct {
	logger *zap.Logger
	index  *podIndex
	health *apiHealth
	inf    *k8sinventory.Informers
	pods   cache.SharedIndexInformer
	rs     cache.SharedIndexInformer
	jobs   cache.SharedIndexInformer
	// shared: the informers belong to an extension, which runs them; detach removes what
	// attach added.
	shared    bool
	handlers  k8sinventory.Handlers // zero until attached
	unobserve func()
}

// newKubeWatcher builds the processor's own informers on client.
func newKubeWatcher(client kubernetes.Interface, nodeName string, resync time.Duration, index *podIndex, logger *zap.Logger) (*kubeWatcher, error) {
	inf, err := k8sinventory.New(client, nodeName, resync, logger)
	if err != nil {
		return nil, err
	}
	return attachKubeWatcher(inf, false, index, logger, nil)
}

// attachKubeWatcher feeds index from inf; shared informers are run by their owner. onStatus is
// set before the observer is added: shared informers are already running.
func attachKubeWatcher(inf *k8sinventory.Informers, shared bool, index *podIndex, logger *zap.Logger, onStatus func(string)) (*kubeWatcher, error) {
	w := &kubeWatcher{
		logger: logger,
		index:  index,
		health: newAPIHealth(logger, index.notify),
		inf:    inf,
		pods:   inf.Pods,
		rs:     inf.ReplicaSets,
		jobs:   inf.Jobs,
		shared: shared,
	}
	w.health.onStatus = onStatus
	w.unobserve = inf.Observe(w.health.observe)
	h, err := inf.Watch(w.onPod, w.onPodDelete, w.onOwner)
	if err != nil {
		w.detach()
		return nil, err
	}
	w.handlers = h
	return w, nil
}

// detach removes the handlers and the observer from the informers (shared ones keep running
// for the other components).
func (w *kubeWatcher) detach() {
	if w.handlers.Remove != nil {
		w.handlers.Remove()
	}
	if w.unobserve != nil {
		w.unobserve()
	}
}

// run starts the informers unless they are shared; they stop when ctx is cancelled. wg is done
// when all of them have returned.
func (w *kubeWatcher) run(ctx context.Context, wg *sync.WaitGroup) {
	if !w.shared {
		w.inf.Run(ctx, wg)
	}
}

// waitable reports whether waiting for the pod informer can help: not when
// the API server is unreachable, nor when the pod informer has not synced
// because its last list failed.
func (w *kubeWatcher) waitable() bool {
	if w.health.podsUnreachable() {
		return false
	}
	return w.pods.HasSynced() || w.health.lastPodError() == nil
}

// Owner informer states (ownerState).
const (
	ownerSynced  = iota // its handlers saw every owner listed: what is not known does not exist
	ownerSyncing        // still delivering its first list: worth waiting for
	ownerFailing        // not synced and its calls fail, are refused, or the sync is late
)

// ownerState says whether the informer that fills attr (k8s.deployment.name: ReplicaSets,
// k8s.cronjob.name: Jobs) can still fill it.
func (w *kubeWatcher) ownerState(attr string) int {
	synced, resource := w.handlers.ReplicaSetsSynced, "replicasets"
	if attr == attrCronJob {
		synced, resource = w.handlers.JobsSynced, "jobs"
	}
	if synced == nil || synced() {
		return ownerSynced
	}
	if w.health.ownerFailing(resource) {
		return ownerFailing
	}
	return ownerSyncing
}

// ownerFailing reports whether an owner informer's resource is unreachable or refused, or the
// informers are late syncing (syncGrace): a batch does not wait for it then.
func (h *apiHealth) ownerFailing(resource string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unreachable[resource] || h.denied[resource] != "" || h.syncLate
}

func (w *kubeWatcher) onPod(obj any) {
	if pod, ok := obj.(*corev1.Pod); ok {
		w.index.upsert(pod)
	}
}

func (w *kubeWatcher) onPodDelete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		w.index.remove(pod.UID, true)
	}
}

// onOwner re-indexes the pods owned by a ReplicaSet or Job that appeared,
// changed or went away, so their Deployment / CronJob name follows.
func (w *kubeWatcher) onOwner(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	pods, err := w.pods.GetIndexer().ByIndex(ownerIndex, string(o.GetUID()))
	if err != nil {
		return
	}
	for _, p := range pods {
		if pod, ok := p.(*corev1.Pod); ok {
			w.index.upsert(pod)
		}
	}
}

func (w *kubeWatcher) replicaSetOwner(namespace, name string, uid types.UID) string {
	return ownerOf(w.rs.GetIndexer(), namespace, name, uid, ownerKindDeployment)
}

func (w *kubeWatcher) jobOwner(namespace, name string, uid types.UID) string {
	return ownerOf(w.jobs.GetIndexer(), namespace, name, uid, ownerKindCronJob)
}

func ownerOf(store cache.Store, namespace, name string, uid types.UID, kind string) string {
	obj, ok, err := store.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return ""
	}
	o, err := meta.Accessor(obj)
	if err != nil || (uid != "" && o.GetUID() != uid) {
		return ""
	}
	if ref := controllerRef(o.GetOwnerReferences()); ref != nil && ref.Kind == kind {
		return ref.Name
	}
	return ""
}

// slimPod is the shared informers' pod transform.
func slimPod(obj any) (any, error) { return k8sinventory.SlimPod(obj) }
