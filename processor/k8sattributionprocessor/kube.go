package k8sattributionprocessor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

const (
	userAgent = "agenttrail-k8sattribution"
	// ownerIndex indexes pods by the UIDs of their owners, so an owner
	// (ReplicaSet, Job) change re-labels exactly its pods.
	ownerIndex = "agenttrail.owner"
)

// newClient builds the Kubernetes client for auth_type serviceAccount or
// kubeConfig. It does not contact the API server.
func newClient(cfg *Config) (kubernetes.Interface, error) {
	var (
		rc  *rest.Config
		err error
	)
	switch cfg.AuthType {
	case AuthTypeServiceAccount:
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("auth_type %s: %w (outside a pod use auth_type %s or %s)", AuthTypeServiceAccount, err, AuthTypeKubeConfig, AuthTypeNone)
		}
	case AuthTypeKubeConfig:
		rules := clientcmd.NewDefaultClientConfigLoadingRules() // $KUBECONFIG, else ~/.kube/config
		if cfg.KubeConfig != "" {
			rules.ExplicitPath = cfg.KubeConfig
		}
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("auth_type %s: %w", AuthTypeKubeConfig, err)
		}
	default:
		return nil, fmt.Errorf("auth_type %q has no client", cfg.AuthType)
	}
	rc.UserAgent = userAgent
	rc.WarningHandler = rest.NoWarnings{}
	return kubernetes.NewForConfig(rc)
}

// podListOptions returns the list/watch option tweak of the pod informer:
// only pods scheduled to nodeName when it is set.
func podListOptions(nodeName string) func(*metav1.ListOptions) {
	return func(o *metav1.ListOptions) {
		if nodeName != "" {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
		}
	}
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

// kubeWatcher runs the pod, ReplicaSet and Job informers and feeds the index.
type kubeWatcher struct {
	logger *zap.Logger
	client kubernetes.Interface
	index  *podIndex
	health *apiHealth
	pods   cache.SharedIndexInformer
	rs     cache.SharedIndexInformer
	jobs   cache.SharedIndexInformer
}

func newKubeWatcher(client kubernetes.Interface, nodeName string, resync time.Duration, index *podIndex, logger *zap.Logger) (*kubeWatcher, error) {
	w := &kubeWatcher{
		logger: logger,
		client: client,
		index:  index,
		health: newAPIHealth(logger, index.notify),
	}
	tweak := podListOptions(nodeName)
	w.pods = cache.NewSharedIndexInformerWithOptions(
		w.listWatch("pods",
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				tweak(&o)
				return client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				tweak(&o)
				return client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, o)
			}),
		&corev1.Pod{},
		cache.SharedIndexInformerOptions{ResyncPeriod: resync, Indexers: cache.Indexers{ownerIndex: ownerUIDs}},
	)
	w.rs = cache.NewSharedIndexInformerWithOptions(
		w.listWatch("replicasets",
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return client.AppsV1().ReplicaSets(metav1.NamespaceAll).List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return client.AppsV1().ReplicaSets(metav1.NamespaceAll).Watch(ctx, o)
			}),
		&appsv1.ReplicaSet{},
		cache.SharedIndexInformerOptions{ResyncPeriod: resync},
	)
	w.jobs = cache.NewSharedIndexInformerWithOptions(
		w.listWatch("jobs",
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return client.BatchV1().Jobs(metav1.NamespaceAll).List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return client.BatchV1().Jobs(metav1.NamespaceAll).Watch(ctx, o)
			}),
		&batchv1.Job{},
		cache.SharedIndexInformerOptions{ResyncPeriod: resync},
	)
	for _, s := range []struct {
		inf       cache.SharedIndexInformer
		transform cache.TransformFunc
		handler   cache.ResourceEventHandler
	}{
		{w.pods, slimPod, cache.ResourceEventHandlerFuncs{AddFunc: w.onPod, UpdateFunc: func(_, obj any) { w.onPod(obj) }, DeleteFunc: w.onPodDelete}},
		{w.rs, slimOwned, cache.ResourceEventHandlerFuncs{AddFunc: w.onOwner, UpdateFunc: func(_, obj any) { w.onOwner(obj) }, DeleteFunc: w.onOwner}},
		{w.jobs, slimOwned, cache.ResourceEventHandlerFuncs{AddFunc: w.onOwner, UpdateFunc: func(_, obj any) { w.onOwner(obj) }, DeleteFunc: w.onOwner}},
	} {
		if err := s.inf.SetTransform(s.transform); err != nil {
			return nil, err
		}
		if err := s.inf.SetWatchErrorHandlerWithContext(w.watchError); err != nil {
			return nil, err
		}
		if _, err := s.inf.AddEventHandler(s.handler); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// listWatch wraps list and watch so that every call's outcome updates the
// API health.
func (w *kubeWatcher) listWatch(resource string,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
) cache.ListerWatcher {
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := list(ctx, o)
			w.health.observe(resource, err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			wi, err := watchFn(ctx, o)
			w.health.observe(resource, err)
			return wi, err
		},
	}, w.client)
}

// watchError replaces client-go's default handler (which logs every retry
// through klog): failures are reported once by apiHealth.
func (w *kubeWatcher) watchError(_ context.Context, r *cache.Reflector, err error) {
	if err == io.EOF || errors.Is(err, context.Canceled) {
		return
	}
	w.logger.Debug("Kubernetes list/watch failed; retrying with backoff", zap.String("reflector", r.TypeDescription()), zap.Error(err))
}

// run starts the informers; they stop when ctx is cancelled. wg is done when
// all of them have returned.
func (w *kubeWatcher) run(ctx context.Context, wg *sync.WaitGroup) {
	ctx = klog.NewContext(ctx, newZapLogr(w.logger))
	for _, inf := range []cache.SharedIndexInformer{w.pods, w.rs, w.jobs} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inf.RunWithContext(ctx)
		}()
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

func ownerUIDs(obj any) ([]string, error) {
	o, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil
	}
	refs := o.GetOwnerReferences()
	uids := make([]string, 0, len(refs))
	for _, r := range refs {
		uids = append(uids, string(r.UID))
	}
	return uids, nil
}

// slimPod keeps only what attribution needs, so a node's (or a gateway's
// cluster-wide) pod cache stays small.
func slimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			Labels: pod.Labels, Annotations: pod.Annotations, OwnerReferences: pod.OwnerReferences,
		},
		Spec: corev1.PodSpec{NodeName: pod.Spec.NodeName, ServiceAccountName: pod.Spec.ServiceAccountName},
		Status: corev1.PodStatus{
			ContainerStatuses:          slimStatuses(pod.Status.ContainerStatuses),
			InitContainerStatuses:      slimStatuses(pod.Status.InitContainerStatuses),
			EphemeralContainerStatuses: slimStatuses(pod.Status.EphemeralContainerStatuses),
		},
	}
	for _, c := range pod.Spec.InitContainers {
		out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range pod.Spec.Containers {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range pod.Spec.EphemeralContainers {
		out.Spec.EphemeralContainers = append(out.Spec.EphemeralContainers,
			corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image}})
	}
	return out, nil
}

func slimStatuses(in []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(in))
	for i, s := range in {
		out[i] = corev1.ContainerStatus{Name: s.Name, ContainerID: s.ContainerID, Image: s.Image}
		if t := s.LastTerminationState.Terminated; t != nil {
			out[i].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: t.ContainerID}
		}
	}
	return out
}

// slimOwned keeps the identity and owner references of a ReplicaSet or Job
// (their pod templates are large and not needed).
func slimOwned(obj any) (any, error) {
	switch o := obj.(type) {
	case *appsv1.ReplicaSet:
		return &appsv1.ReplicaSet{ObjectMeta: slimMeta(&o.ObjectMeta)}, nil
	case *batchv1.Job:
		return &batchv1.Job{ObjectMeta: slimMeta(&o.ObjectMeta)}, nil
	}
	return obj, nil
}

func slimMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion, OwnerReferences: m.OwnerReferences}
}
