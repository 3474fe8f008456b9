// Package kubeapi runs AgentTrail's Kubernetes components against a real kube-apiserver (built
// from the Go module proxy by tests/kubeapi/tools) and Debian's etcd on loopback: the shipped
// ClusterRole applied, the collector authenticated with its service account's token, pods with
// container statuses written through the status subresource. It checks what the fake clientset
// of the unit tests cannot: that the API server answers the components' lists and watches with
// the ClusterRole and nothing more, and that attribution works from its real objects.
package kubeapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/agenttrail/agenttrail/extension/k8sinventoryextension"
	"github.com/agenttrail/agenttrail/processor/k8sattributionprocessor"
)

const (
	manifest = "../../distributions/agenttrail/k8s/daemonset.yaml"
	appNS    = "customer-ai"
	node     = "node-a"
)

// Container ids as the runtime reports them (64 hex).
var (
	cidAgent   = strings.Repeat("a1", 32)
	cidAgent2  = strings.Repeat("a2", 32) // the agent container after a restart
	cidReport  = strings.Repeat("b1", 32)
	cidOther   = strings.Repeat("c1", 32) // a pod of another node
	cidUnknown = strings.Repeat("d1", 32)
)

func TestKubeAPI(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	role := c.applyRBAC(t, ctx, manifest)
	token := c.serviceAccountToken(t, ctx, "agenttrail", "agenttrail")
	kubeconfig := c.kubeconfig(t, token)
	sa, err := kubernetes.NewForConfig(c.restConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	agentPod := c.workloads(t, ctx)
	// The API server's RBAC authorizer learns the binding from its own informer: wait until it
	// has, so the checks below do not race it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Resource: "pods", Verb: "list"}},
		}, metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ClusterRoleBinding does not take effect: %v %+v", err, r)
		}
	}

	t.Run("LeastPrivilege", func(t *testing.T) { leastPrivilege(t, ctx, sa, role) })
	t.Run("OwnInformers", func(t *testing.T) {
		cfg := attributionConfig(kubeconfig)
		attribution(t, ctx, c, agentPod, cfg, componenttest.NewNopHost())
	})
	t.Run("InventoryExtension", func(t *testing.T) {
		ef := k8sinventoryextension.NewFactory()
		ecfg := ef.CreateDefaultConfig().(*k8sinventoryextension.Config)
		ecfg.AuthType, ecfg.KubeConfig, ecfg.NodeName = "kubeConfig", kubeconfig, node
		id := component.MustNewID("k8s_inventory")
		logs, logger := observed()
		ext, err := ef.Create(ctx, extension.Settings{ID: id, TelemetrySettings: telemetry(logger), BuildInfo: component.NewDefaultBuildInfo()}, ecfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := ext.Start(ctx, componenttest.NewNopHost()); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := ext.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		}()
		cfg := attributionConfig("")
		cfg.AuthType = "none" // the extension's client is used
		cfg.Inventory = &id
		attribution(t, ctx, c, agentPod, cfg, host{id: ext})
		noRefusal(t, logs)
	})
}

type host map[component.ID]component.Component

func (h host) GetExtensions() map[component.ID]component.Component { return h }

func observed() (*observer.ObservedLogs, *zap.Logger) {
	core, logs := observer.New(zapcore.InfoLevel)
	return logs, zap.New(core)
}

func telemetry(logger *zap.Logger) component.TelemetrySettings {
	ts := componenttest.NewNopTelemetrySettings()
	ts.Logger = logger
	return ts
}

// noRefusal fails when a component logged that the API server refused one of its lists or
// watches: a verb it uses that the ClusterRole does not grant.
func noRefusal(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	for _, e := range logs.All() {
		if strings.Contains(e.Message, "refused") || strings.Contains(e.Message, "unreachable") {
			t.Errorf("component logged %q %v", e.Message, e.ContextMap())
		}
	}
}

func attributionConfig(kubeconfig string) *k8sattributionprocessor.Config {
	cfg := k8sattributionprocessor.NewFactory().CreateDefaultConfig().(*k8sattributionprocessor.Config)
	cfg.AuthType, cfg.KubeConfig = "kubeConfig", kubeconfig
	cfg.NodeName = node
	cfg.WaitForMetadata = 3 * time.Second
	cfg.ResyncPeriod = 0
	return cfg
}

// workloads creates, as the controllers and the kubelet would, a Deployment's ReplicaSet and
// pod and a CronJob's Job and pod on node-a, and a pod on another node, each with its
// containers' ids in the status; it returns the Deployment's pod.
func (c *cluster) workloads(t *testing.T, ctx context.Context) *corev1.Pod {
	t.Helper()
	a := c.admin
	if _, err := a.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "customer-agent"}
	template := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "ghcr.io/acme/customer-agent:2.3.1"}}},
	}
	dep, err := a.AppsV1().Deployments(appNS).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "customer-agent"},
		Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: template},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := a.AppsV1().ReplicaSets(appNS).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "customer-agent-5f7c9", OwnerReferences: owner("apps/v1", "Deployment", dep.Name, dep.UID)},
		Spec:       appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: template},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	agent := c.pod(t, ctx, appNS, "customer-agent-5f7c9-k2x8p", node, "agent-sa", "agent", "ghcr.io/acme/customer-agent:2.3.1",
		owner("apps/v1", "ReplicaSet", rs.Name, rs.UID), labels, runningStatus("agent", "ghcr.io/acme/customer-agent:2.3.1", cidAgent))

	never := corev1.RestartPolicyNever
	job, err := a.BatchV1().Jobs(appNS).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly-report-29071234", OwnerReferences: owner("batch/v1", "CronJob", "nightly-report", types.UID("0d1e2f30-0000-4000-8000-000000000001"))},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: never, Containers: []corev1.Container{{Name: "report", Image: "ghcr.io/acme/report:1.0"}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.pod(t, ctx, appNS, "nightly-report-29071234-x7k2d", node, "default", "report", "ghcr.io/acme/report:1.0",
		owner("batch/v1", "Job", job.Name, job.UID), job.Spec.Template.Labels, runningStatus("report", "ghcr.io/acme/report:1.0", cidReport))
	c.pod(t, ctx, appNS, "elsewhere", "node-b", "default", "agent", "ghcr.io/acme/customer-agent:2.3.1",
		nil, nil, runningStatus("agent", "ghcr.io/acme/customer-agent:2.3.1", cidOther))
	return agent
}

func owner(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes}}
}

func runningStatus(name, image, cid string) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: name, Image: image, ImageID: image, ContainerID: "containerd://" + cid, Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}
}

// pod creates a pod bound to nodeName and then, as the kubelet does, writes its status (the
// status subresource) with the container's id.
func (c *cluster) pod(t *testing.T, ctx context.Context, ns, name, nodeName, sa, container, image string,
	owners []metav1.OwnerReference, labels map[string]string, st corev1.ContainerStatus,
) *corev1.Pod {
	t.Helper()
	p, err := c.admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, OwnerReferences: owners},
		Spec: corev1.PodSpec{
			NodeName: nodeName, ServiceAccountName: sa, RestartPolicy: corev1.RestartPolicyAlways,
			Containers: []corev1.Container{{Name: container, Image: image}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.ContainerStatuses = []corev1.ContainerStatus{st}
	p, err = c.admin.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("status of pod %s/%s: %v", ns, name, err)
	}
	return p
}

// attribution runs a k8sattribution processor with cfg and checks the identity it gives the
// containers of the cluster's pods, before and after the agent's container restarts.
func attribution(t *testing.T, ctx context.Context, c *cluster, agentPod *corev1.Pod, cfg *k8sattributionprocessor.Config, h component.Host) {
	t.Helper()
	f := k8sattributionprocessor.NewFactory()
	logs, logger := observed()
	set := processortest.NewNopSettings(f.Type())
	set.TelemetrySettings = telemetry(logger)
	sink := new(consumertest.TracesSink)
	p, err := f.CreateTraces(ctx, set, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx, h); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()

	// The first batch, sent right after Start: the pod informer may have the pods before the
	// ReplicaSet and Job informers listed their owners; the processor holds the batch for them
	// (README, "Owners at start"), so the Deployment and CronJob are in it (they were missing
	// from it in most runs before).
	got := consume(t, ctx, p, sink, cidAgent, cidReport, cidOther, cidUnknown)
	for _, id := range []string{cidAgent, cidReport} {
		if u, ok := got[id]["agenttrail.k8s.owner_unresolved"]; ok {
			t.Errorf("container %s… in the first batch: owner unresolved (%s)", id[:8], u)
		}
	}
	want(t, got[cidAgent], map[string]string{
		"k8s.namespace.name":           appNS,
		"k8s.pod.name":                 agentPod.Name,
		"k8s.pod.uid":                  string(agentPod.UID),
		"k8s.node.name":                node,
		"k8s.pod.service_account.name": "agent-sa",
		"k8s.container.name":           "agent",
		"container.image.name":         "ghcr.io/acme/customer-agent",
		"container.image.tag":          "2.3.1",
		"k8s.replicaset.name":          "customer-agent-5f7c9",
		"k8s.deployment.name":          "customer-agent",
		"agenttrail.workload.kind":     "k8s",
	})
	want(t, got[cidReport], map[string]string{
		"k8s.pod.name":       "nightly-report-29071234-x7k2d",
		"k8s.container.name": "report",
		"k8s.job.name":       "nightly-report-29071234",
		"k8s.cronjob.name":   "nightly-report",
	})
	// Another node's pod is not watched (field selector spec.nodeName), an unknown id is not
	// invented.
	for _, id := range []string{cidOther, cidUnknown} {
		want(t, got[id], map[string]string{"agenttrail.k8s.attribution": "missing"})
		if _, ok := got[id]["k8s.pod.name"]; ok {
			t.Errorf("container %s… attributed to pod %s", id[:8], got[id]["k8s.pod.name"])
		}
	}

	// The kubelet restarts the agent's container: a new id, the old one in lastState.
	restarted := runningStatus("agent", "ghcr.io/acme/customer-agent:2.3.1", cidAgent2)
	restarted.RestartCount = 1
	restarted.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: 1, Reason: "Error", ContainerID: "containerd://" + cidAgent, FinishedAt: metav1.Now(),
	}}
	cur, err := c.admin.CoreV1().Pods(appNS).Get(ctx, agentPod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Status.ContainerStatuses = []corev1.ContainerStatus{restarted}
	if _, err := c.admin.CoreV1().Pods(appNS).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got = consume(t, ctx, p, sink, cidAgent2, cidAgent)
	for _, id := range []string{cidAgent2, cidAgent} {
		want(t, got[id], map[string]string{"k8s.pod.name": agentPod.Name, "k8s.container.name": "agent", "k8s.deployment.name": "customer-agent"})
	}
	noRefusal(t, logs)
}

// consume sends one span per container id, each in its own resource, and returns the resource
// attributes the processor passed on, by container id.
func consume(t *testing.T, ctx context.Context, p processor.Traces, sink *consumertest.TracesSink, ids ...string) map[string]map[string]string {
	t.Helper()
	sink.Reset()
	td := ptrace.NewTraces()
	for _, id := range ids {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("container.id", id)
		rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("exec")
	}
	if err := p.ConsumeTraces(ctx, td); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]string{}
	for _, out := range sink.AllTraces() {
		for i := 0; i < out.ResourceSpans().Len(); i++ {
			attrs := map[string]string{}
			out.ResourceSpans().At(i).Resource().Attributes().Range(func(k string, v pcommon.Value) bool {
				attrs[k] = v.AsString()
				return true
			})
			got[attrs["container.id"]] = attrs
		}
	}
	if len(got) != len(ids) {
		t.Fatalf("got %d resources back, want %d: %v", len(got), len(ids), got)
	}
	return got
}

func want(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("container %s…: %s = %q, want %q (all: %v)", got["container.id"][:8], k, got[k], v, got)
		}
	}
	if a := got["agenttrail.k8s.attribution"]; want["agenttrail.k8s.attribution"] == "" && a != "ok" && a != "late" {
		t.Errorf("container %s…: agenttrail.k8s.attribution = %q, want ok or late", got["container.id"][:8], a)
	}
}

// leastPrivilege checks, as the service account, that every verb of the shipped ClusterRole is
// allowed (and works: get, list and a watch of each resource) and that what the agent must not
// do is forbidden by the API server.
func leastPrivilege(t *testing.T, ctx context.Context, sa kubernetes.Interface, role *rbacv1.ClusterRole) {
	t.Helper()
	allowed := func(attrs authorizationv1.ResourceAttributes) bool {
		t.Helper()
		r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("access review %+v: %v", attrs, err)
		}
		return r.Status.Allowed
	}
	// What the components do: get, list, watch of pods, replicasets.apps, jobs.batch (and
	// namespaces, which the ClusterRole grants).
	for _, r := range []struct{ group, resource string }{{"", "pods"}, {"", "namespaces"}, {"apps", "replicasets"}, {"batch", "jobs"}} {
		for _, verb := range []string{"get", "list", "watch"} {
			if !allowed(authorizationv1.ResourceAttributes{Group: r.group, Resource: r.resource, Verb: verb}) {
				t.Errorf("%s %s.%s is not allowed by the ClusterRole %s", verb, r.resource, r.group, role.Name)
			}
		}
	}
	for _, rule := range role.Rules {
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				for _, verb := range rule.Verbs {
					if !allowed(authorizationv1.ResourceAttributes{Group: g, Resource: res, Verb: verb}) {
						t.Errorf("%s %s.%s of the ClusterRole's rules is not allowed", verb, res, g)
					}
				}
			}
		}
	}
	if _, err := sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list pods: %v", err)
	}
	if _, err := sa.CoreV1().Pods(appNS).Get(ctx, "customer-agent-5f7c9-k2x8p", metav1.GetOptions{}); err != nil {
		t.Errorf("get pod: %v", err)
	}
	if _, err := sa.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list replicasets: %v", err)
	}
	if _, err := sa.BatchV1().Jobs("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list jobs: %v", err)
	}
	if _, err := sa.CoreV1().Namespaces().Get(ctx, appNS, metav1.GetOptions{}); err != nil {
		t.Errorf("get namespace: %v", err)
	}
	w, err := sa.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Errorf("watch pods of a node: %v", err)
	} else {
		w.Stop()
	}

	// What the agent must not do: read secrets or config maps, change pods, reach nodes, mint
	// tokens, read the Deployments (not needed: the ReplicaSet's owner names it).
	for _, a := range []authorizationv1.ResourceAttributes{
		{Resource: "secrets", Verb: "get"},
		{Resource: "secrets", Verb: "list"},
		{Resource: "configmaps", Verb: "get"},
		{Resource: "pods", Verb: "create", Namespace: appNS},
		{Resource: "pods", Verb: "delete", Namespace: appNS},
		{Resource: "pods", Verb: "patch", Namespace: appNS},
		{Resource: "pods", Subresource: "status", Verb: "update", Namespace: appNS},
		{Resource: "pods", Subresource: "exec", Verb: "create", Namespace: appNS},
		{Resource: "pods", Subresource: "log", Verb: "get", Namespace: appNS},
		{Resource: "nodes", Verb: "list"},
		{Resource: "nodes", Subresource: "proxy", Verb: "get"},
		{Resource: "serviceaccounts", Subresource: "token", Verb: "create", Namespace: "agenttrail"},
		{Group: "apps", Resource: "deployments", Verb: "list"},
		{Group: "apps", Resource: "replicasets", Verb: "update", Namespace: appNS},
		{Group: "batch", Resource: "jobs", Verb: "delete", Namespace: appNS},
		{Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Verb: "escalate"},
		{Resource: "users", Verb: "impersonate"},
	} {
		if allowed(a) {
			t.Errorf("the service account may %s %s/%s.%s: beyond what the agent needs", a.Verb, a.Resource, a.Subresource, a.Group)
		}
	}
	// And the API server refuses the requests themselves.
	if _, err := sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets: %v, want forbidden", err)
	}
	if err := sa.CoreV1().Pods(appNS).Delete(ctx, "customer-agent-5f7c9-k2x8p", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("delete pod: %v, want forbidden", err)
	}
	_, err = sa.CoreV1().Pods(appNS).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "intruder"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("create pod: %v, want forbidden", err)
	}
}
