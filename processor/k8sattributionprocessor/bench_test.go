package k8sattributionprocessor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agenttrail/agenttrail/processor/k8sattributionprocessor/internal/metadata"
)

// BenchmarkProcessWarm: batches of 100 resources (processes, as the ebpf
// receiver emits them: pid + container.id) × 10 spans, every container known
// to the informer and every pid in the cache; reports spans/s through the
// whole processor (processorhelper included) on one goroutine.
func BenchmarkProcessWarm(b *testing.B) {
	const (
		resources = 100
		spans     = 10
		pods      = 20
	)
	var objs []runtime.Object
	cids := make([]string, resources)
	for i := range cids {
		cids[i] = fmt.Sprintf("%064x", i+1)
	}
	for p := 0; p < pods; p++ {
		rs := fmt.Sprintf("agent-%d-7d9f", p)
		objs = append(objs, newReplicaSet(nsAI, rs, "rs-"+rs, fmt.Sprintf("agent-%d", p)))
		var opts []podOpt
		opts = append(opts, withOwner(ownerKindReplicaSet, rs, "rs-"+rs), withServiceAccount("agent-sa"),
			withLabels("app.kubernetes.io/name", "agent"))
		for c := p; c < resources; c += pods {
			opts = append(opts, withContainer(fmt.Sprintf("c%d", c), "ghcr.io/acme/agent:1.0", cids[c]))
		}
		objs = append(objs, newPod(nsAI, rs+"-x", fmt.Sprintf("00000000-0000-4000-8000-%012d", p), "node-a", opts...))
	}
	client := fake.NewClientset(objs...)
	f := NewFactoryWithClient(client)
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.NodeNameEnv = ""
	cfg.Extract.Labels = []FieldExtractConfig{{Key: "app.kubernetes.io/name"}}
	ctx := context.Background()
	p, err := f.CreateTraces(ctx, processortest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(ctx, componenttest.NewNopHost()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = p.Shutdown(ctx) }()

	template := ptrace.NewTraces()
	for i := 0; i < resources; i++ {
		rs := template.ResourceSpans().AppendEmpty()
		a := rs.Resource().Attributes()
		a.PutStr("service.name", "customer-agent")
		a.PutInt(attrProcessPID, int64(100000+i))
		a.PutInt("process.parent_pid", 1)
		a.PutStr("process.executable.path", "/srv/agent/agent")
		a.PutStr("process.command_line", "/srv/agent/agent --serve")
		a.PutStr(attrContainerID, cids[i])
		ss := rs.ScopeSpans().AppendEmpty()
		for s := 0; s < spans; s++ {
			ss.Spans().AppendEmpty().SetName("connect")
		}
	}
	// Warm up: every container known (owners included), every pid cached.
	deadline := time.Now().Add(10 * time.Second)
	for {
		td := ptrace.NewTraces()
		template.CopyTo(td)
		if err := p.ConsumeTraces(ctx, td); err != nil {
			b.Fatal(err)
		}
		ok := true
		for i := 0; i < resources; i++ {
			a := td.ResourceSpans().At(i).Resource().Attributes()
			st, _ := a.Get(attrAttribution)
			dep, _ := a.Get(attrDeployment)
			if st.Str() != attributionOK || dep.Str() == "" {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("informer never learned the pods")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Fresh copies are made outside the timer, a pool at a time.
	const pool = 256
	batches := make([]ptrace.Traces, pool)
	refill := func() {
		for i := range batches {
			batches[i] = ptrace.NewTraces()
			template.CopyTo(batches[i])
		}
	}
	refill()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var paused time.Duration
	for i := 0; i < b.N; i++ {
		if i > 0 && i%pool == 0 {
			b.StopTimer()
			t0 := time.Now()
			refill()
			paused += time.Since(t0)
			b.StartTimer()
		}
		if err := p.ConsumeTraces(ctx, batches[i%pool]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	elapsed := time.Since(start) - paused
	b.ReportMetric(float64(b.N*resources*spans)/elapsed.Seconds(), "spans/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*resources), "ns/resource")
}
