package k8sattributionprocessor

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/agenttrail/agenttrail/processor/k8sattributionprocessor/internal/metadata"
)

// harness is one started traces processor with its sink, logs and metrics.
type harness struct {
	t    testing.TB
	p    processor.Traces
	sink *consumertest.TracesSink
	core *core
	logs *observer.ObservedLogs
	tel  *componenttest.Telemetry
}

// newHarness creates (and, unless noStart, starts) a traces processor.
// prepare, when not nil, adjusts the core before Start (test hooks).
func newHarness(t testing.TB, client kubernetes.Interface, cfg *Config, prepare func(*core)) *harness {
	t.Helper()
	zc, logs := observer.New(zapcore.DebugLevel)
	tel := componenttest.NewTelemetry()
	set := processortest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	set.Logger = zap.New(zc)
	f := &factory{client: client, cores: map[coreKey]*sharedCore{}}
	sink := new(consumertest.TracesSink)
	p, err := f.createTraces(context.Background(), set, cfg, sink)
	if err != nil {
		t.Fatalf("createTraces: %v", err)
	}
	h := &harness{t: t, p: p, sink: sink, core: f.cores[coreKey{set.ID, cfg}].core, logs: logs, tel: tel}
	if prepare != nil {
		prepare(h.core)
	}
	if err := p.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		_ = tel.Shutdown(context.Background())
	})
	return h
}

// waitSynced waits until the pod, ReplicaSet and Job informers and their handlers have synced.
func (h *harness) waitSynced() {
	h.t.Helper()
	w := h.core.watcher.Load()
	if w == nil {
		h.t.Fatal("no informers running")
	}
	eventually(h.t, 10*time.Second, "informers synced", func() bool {
		// The handlers too: until the owner handlers caught up, a batch holds the pods whose
		// Deployment or CronJob is not known yet (late, not ok).
		return w.pods.HasSynced() && w.rs.HasSynced() && w.jobs.HasSynced() && w.handlers.HasSynced()
	})
}

// process sends one batch with one resource (and two spans) per attribute
// map and returns the resources' attributes as the next consumer got them,
// and how long ConsumeTraces took.
func (h *harness) process(resources ...map[string]any) ([]map[string]any, time.Duration) {
	h.t.Helper()
	td := tracesWith(resources...)
	before := len(h.sink.AllTraces())
	start := time.Now()
	if err := h.p.ConsumeTraces(context.Background(), td); err != nil {
		h.t.Fatalf("ConsumeTraces: %v", err)
	}
	took := time.Since(start)
	all := h.sink.AllTraces()
	if len(all) != before+1 {
		h.t.Fatalf("next consumer got %d batches; want %d", len(all), before+1)
	}
	got := all[len(all)-1]
	if got.SpanCount() != 2*len(resources) {
		h.t.Errorf("span count %d; want %d", got.SpanCount(), 2*len(resources))
	}
	out := make([]map[string]any, got.ResourceSpans().Len())
	for i := range out {
		out[i] = got.ResourceSpans().At(i).Resource().Attributes().AsRaw()
	}
	return out, took
}

// tracesWith builds one resource with two spans per attribute map.
func tracesWith(resources ...map[string]any) ptrace.Traces {
	td := ptrace.NewTraces()
	for _, r := range resources {
		rs := td.ResourceSpans().AppendEmpty()
		if err := rs.Resource().Attributes().FromRaw(r); err != nil {
			panic(err)
		}
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Spans().AppendEmpty().SetName("invoke_agent customer-agent")
		ss.Spans().AppendEmpty().SetName("connect")
	}
	return td
}

// misses returns agenttrail.k8s_attribution.misses by reason.
func (h *harness) misses() map[string]int64 {
	h.t.Helper()
	out := map[string]int64{}
	m, err := h.tel.GetMetric("agenttrail.k8s_attribution.misses")
	if err != nil {
		return out // no miss recorded yet
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		h.t.Fatalf("misses is %T; want Sum[int64]", m.Data)
	}
	for _, dp := range sum.DataPoints {
		r, _ := dp.Attributes.Value("reason")
		out[r.AsString()] += dp.Value
	}
	return out
}

// logsAt returns the logged messages of one level.
func (h *harness) logsAt(level zapcore.Level) []string {
	var out []string
	for _, e := range h.logs.All() {
		if e.Level == level {
			out = append(out, e.Message)
		}
	}
	return out
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// k8sKeys are the attributes this processor may write; checkAttrs compares
// exactly these.
func isOurKey(k string) bool {
	return strings.HasPrefix(k, "k8s.") || strings.HasPrefix(k, "container.") ||
		strings.HasPrefix(k, "agenttrail.") || k == attrHostName
}

// checkAttrs compares the attributes this processor writes (k8s.*,
// container.*, agenttrail.*, host.name) with want exactly: missing and
// unexpected keys are both errors.
func checkAttrs(t testing.TB, got, want map[string]any) {
	t.Helper()
	var problems []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			problems = append(problems, fmt.Sprintf("missing %s (want %v)", k, w))
		} else if fmt.Sprint(g) != fmt.Sprint(w) {
			problems = append(problems, fmt.Sprintf("%s = %v; want %v", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok && isOurKey(k) {
			problems = append(problems, fmt.Sprintf("unexpected %s = %v", k, g))
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
}

func testConfig() *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.NodeNameEnv = ""
	return cfg
}

// cid returns a container id made of one repeated hex digit pattern.
func cid(seed string) string {
	return strings.Repeat(seed, 64/len(seed))[:64]
}

// Kubernetes objects for the fake clientset.

type podOpt func(*corev1.Pod)

func newPod(ns, name, uid, node string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Spec:       corev1.PodSpec{NodeName: node, ServiceAccountName: "default"},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func withContainer(name, image, id string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name, Image: image})
		st := corev1.ContainerStatus{Name: name, Image: image}
		if id != "" {
			st.ContainerID = "containerd://" + id
		}
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, st)
	}
}

func withInitContainer(name, image, id string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: name, Image: image})
		p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses,
			corev1.ContainerStatus{Name: name, Image: image, ContainerID: "cri-o://" + id})
	}
}

func withEphemeralContainer(name, image, id string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers,
			corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: name, Image: image}})
		p.Status.EphemeralContainerStatuses = append(p.Status.EphemeralContainerStatuses,
			corev1.ContainerStatus{Name: name, Image: image, ContainerID: "docker://" + id})
	}
}

func withOwner(kind, name, uid string) podOpt {
	return func(p *corev1.Pod) {
		p.OwnerReferences = append(p.OwnerReferences, controller(kind, name, uid))
	}
}

func withServiceAccount(sa string) podOpt {
	return func(p *corev1.Pod) { p.Spec.ServiceAccountName = sa }
}

func withLabels(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func withAnnotations(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func controller(kind, name, uid string) metav1.OwnerReference {
	yes := true
	apiVersion := "apps/v1"
	if kind == ownerKindJob || kind == ownerKindCronJob {
		apiVersion = "batch/v1"
	}
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID(uid), Controller: &yes}
}

func newReplicaSet(ns, name, uid, deployment string) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}}
	if deployment != "" {
		rs.OwnerReferences = []metav1.OwnerReference{controller(ownerKindDeployment, deployment, "dep-"+uid)}
	}
	return rs
}

func newJob(ns, name, uid, cronJob string) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}}
	if cronJob != "" {
		j.OwnerReferences = []metav1.OwnerReference{controller(ownerKindCronJob, cronJob, "cron-"+uid)}
	}
	return j
}

var _ component.Host = componenttest.NewNopHost()
