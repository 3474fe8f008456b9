// Package k8sinventory runs the pod, ReplicaSet and Job informers that AgentTrail's components
// resolve Kubernetes identity from: a node's pods (or a cluster's), with the owners that name
// their Deployment and CronJob, slimmed to what attribution and selection need. One Informers is
// run per k8sinventory extension and shared by every component that uses it (the
// k8sattribution processor, the eBPF receiver's Kubernetes targets); a component without the
// extension runs its own.
package k8sinventory // import "github.com/agenttrail/agenttrail/internal/k8sinventory"

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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// Authentication modes of auth_type.
const (
	AuthTypeServiceAccount = "serviceAccount"
	AuthTypeKubeConfig     = "kubeConfig"
	AuthTypeNone           = "none"
)

// OwnerIndex indexes pods by the UIDs of their owners, so an owner (ReplicaSet, Job) change
// re-labels exactly its pods.
const OwnerIndex = "agenttrail.owner"

// NewClient builds the Kubernetes client for auth_type serviceAccount or kubeConfig. It does
// not contact the API server.
func NewClient(authType, kubeConfig, userAgent string) (kubernetes.Interface, error) {
	var (
		rc  *rest.Config
		err error
	)
	switch authType {
	case AuthTypeServiceAccount:
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("auth_type %s: %w (outside a pod use auth_type %s or %s)", AuthTypeServiceAccount, err, AuthTypeKubeConfig, AuthTypeNone)
		}
	case AuthTypeKubeConfig:
		rules := clientcmd.NewDefaultClientConfigLoadingRules() // $KUBECONFIG, else ~/.kube/config
		if kubeConfig != "" {
			rules.ExplicitPath = kubeConfig
		}
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("auth_type %s: %w", AuthTypeKubeConfig, err)
		}
	default:
		return nil, fmt.Errorf("auth_type %q has no client", authType)
	}
	rc.UserAgent = userAgent
	rc.WarningHandler = rest.NoWarnings{}
	return kubernetes.NewForConfig(rc)
}

// PodListOptions returns the list/watch option tweak of the pod informer: only pods scheduled to
// nodeName when it is set.
func PodListOptions(nodeName string) func(*metav1.ListOptions) {
	return func(o *metav1.ListOptions) {
		if nodeName != "" {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
		}
	}
}

// Informers are the pod, ReplicaSet and Job informers of one client.
type Informers struct {
	Pods, ReplicaSets, Jobs cache.SharedIndexInformer

	client kubernetes.Interface
	logger *zap.Logger

	mu        sync.Mutex
	observers map[int]func(resource string, err error)
	next      int
}

// New builds the informers (not started). nodeName restricts pods to one node ("" all).
func New(client kubernetes.Interface, nodeName string, resync time.Duration, logger *zap.Logger) (*Informers, error) {
	in := &Informers{client: client, logger: logger, observers: map[int]func(string, error){}}
	tweak := PodListOptions(nodeName)
	in.Pods = cache.NewSharedIndexInformerWithOptions(
		in.listWatch("pods",
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				tweak(&o)
				return client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				tweak(&o)
				return client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, o)
			}),
		&corev1.Pod{},
		cache.SharedIndexInformerOptions{ResyncPeriod: resync, Indexers: cache.Indexers{OwnerIndex: ownerUIDs}},
	)
	in.ReplicaSets = cache.NewSharedIndexInformerWithOptions(
		in.listWatch("replicasets",
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return client.AppsV1().ReplicaSets(metav1.NamespaceAll).List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return client.AppsV1().ReplicaSets(metav1.NamespaceAll).Watch(ctx, o)
			}),
		&appsv1.ReplicaSet{},
		cache.SharedIndexInformerOptions{ResyncPeriod: resync},
	)
	in.Jobs = cache.NewSharedIndexInformerWithOptions(
		in.listWatch("jobs",
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
	}{{in.Pods, SlimPod}, {in.ReplicaSets, SlimOwned}, {in.Jobs, SlimOwned}} {
		if err := s.inf.SetTransform(s.transform); err != nil {
			return nil, err
		}
		if err := s.inf.SetWatchErrorHandlerWithContext(in.watchError); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// Observe calls fn with the outcome of every list and watch call (resource is pods,
// replicasets or jobs) until the returned function is called.
func (in *Informers) Observe(fn func(resource string, err error)) (remove func()) {
	in.mu.Lock()
	defer in.mu.Unlock()
	id := in.next
	in.next++
	in.observers[id] = fn
	return func() {
		in.mu.Lock()
		defer in.mu.Unlock()
		delete(in.observers, id)
	}
}

func (in *Informers) observe(resource string, err error) {
	in.mu.Lock()
	fns := make([]func(string, error), 0, len(in.observers))
	for _, fn := range in.observers {
		fns = append(fns, fn)
	}
	in.mu.Unlock()
	for _, fn := range fns {
		fn(resource, err)
	}
}

// listWatch wraps list and watch so that every call's outcome reaches the observers.
func (in *Informers) listWatch(resource string,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
) cache.ListerWatcher {
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := list(ctx, o)
			in.observe(resource, err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			wi, err := watchFn(ctx, o)
			in.observe(resource, err)
			return wi, err
		},
	}, in.client)
}

// watchError replaces client-go's default handler (which logs every retry through klog):
// failures are reported once by the observers.
func (in *Informers) watchError(_ context.Context, r *cache.Reflector, err error) {
	if err == io.EOF || errors.Is(err, context.Canceled) {
		return
	}
	in.logger.Debug("Kubernetes list/watch failed; retrying with backoff", zap.String("reflector", r.TypeDescription()), zap.Error(err))
}

// Run starts the informers; they stop when ctx is cancelled, and wg is done when all of them
// have returned.
func (in *Informers) Run(ctx context.Context, wg *sync.WaitGroup) {
	ctx = klog.NewContext(ctx, NewZapLogr(in.logger))
	for _, inf := range []cache.SharedIndexInformer{in.Pods, in.ReplicaSets, in.Jobs} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inf.RunWithContext(ctx)
		}()
	}
}

// Handlers is one component's registration on the informers (see Watch).
type Handlers struct {
	// Remove unregisters the handlers; the informers run on for the other components. Safe to
	// call more than once.
	Remove func()
	// HasSynced reports whether every object the informers listed before the registration has
	// been delivered to the handlers: a component sharing running informers is not up to date
	// when they are synced, only when its own handlers have caught up.
	HasSynced func() bool
	// ReplicaSetsSynced and JobsSynced are HasSynced of the ReplicaSet and Job handlers alone:
	// until then onOwner has not seen every owner listed, so a pod's Deployment or CronJob may
	// not be known yet.
	ReplicaSetsSynced, JobsSynced func() bool
}

// Watch registers a component's handlers: onPod for each pod added or updated (with the new
// object), onPodDelete for each pod deleted, onOwner for each ReplicaSet or Job added, updated
// or deleted. A deleted object may come as a cache.DeletedFinalStateUnknown (a delete the watch
// missed). Objects already cached are delivered as adds.
func (in *Informers) Watch(onPod, onPodDelete, onOwner func(obj any)) (Handlers, error) {
	type reg struct {
		inf cache.SharedIndexInformer
		reg cache.ResourceEventHandlerRegistration
	}
	var regs []reg
	var once sync.Once
	remove := func() {
		once.Do(func() {
			for _, r := range regs {
				_ = r.inf.RemoveEventHandler(r.reg)
			}
		})
	}
	owner := cache.ResourceEventHandlerFuncs{AddFunc: onOwner, UpdateFunc: func(_, o any) { onOwner(o) }, DeleteFunc: onOwner}
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{in.Pods, cache.ResourceEventHandlerFuncs{AddFunc: onPod, UpdateFunc: func(_, o any) { onPod(o) }, DeleteFunc: onPodDelete}},
		// An owner that appears or changes after its pods (a ReplicaSet naming its Deployment)
		// changes which workload they belong to.
		{in.ReplicaSets, owner},
		{in.Jobs, owner},
	} {
		r, err := h.inf.AddEventHandler(h.h)
		if err != nil {
			remove()
			return Handlers{}, fmt.Errorf("k8s inventory: register handlers: %w", err)
		}
		regs = append(regs, reg{h.inf, r})
	}
	return Handlers{
		Remove: remove,
		HasSynced: func() bool {
			for _, r := range regs {
				if !r.reg.HasSynced() {
					return false
				}
			}
			return true
		},
		ReplicaSetsSynced: regs[1].reg.HasSynced,
		JobsSynced:        regs[2].reg.HasSynced,
	}, nil
}

// HasSynced reports whether the three informers have listed once.
func (in *Informers) HasSynced() bool {
	return in.Pods.HasSynced() && in.ReplicaSets.HasSynced() && in.Jobs.HasSynced()
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

// SlimPod keeps only what attribution and selection need, so a node's (or a gateway's
// cluster-wide) pod cache stays small.
func SlimPod(obj any) (any, error) {
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

// SlimOwned keeps the identity and owner references of a ReplicaSet or Job (their pod templates
// are large and not needed).
func SlimOwned(obj any) (any, error) {
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
