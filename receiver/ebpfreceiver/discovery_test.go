package ebpfreceiver

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agenttrail/agenttrail/internal/k8sinventory"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

func TestDiscoverConfig(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	if err := confmap.Validate(cfg); err == nil || !strings.Contains(err.Error(), `or set "discover.enabled"`) {
		t.Errorf("no targets and no discovery: %v", err)
	}
	cfg.Discover.Enabled = true
	if err := confmap.Validate(cfg); err != nil {
		t.Errorf("discovery alone: %v", err)
	}
	for _, tc := range []struct {
		set  func(*DiscoverConfig)
		want string
	}{
		{func(c *DiscoverConfig) { c.MaxWorkloads = 0 }, `"discover.max_workloads" must be between 1 and 4096`},
		{func(c *DiscoverConfig) { c.MaxProbation = 5000 }, `"discover.max_probation" must be between 1 and 4096`},
		{func(c *DiscoverConfig) { c.Probation = time.Millisecond }, `"discover.probation" must be at least 1s`},
		{func(c *DiscoverConfig) { c.TTL = -time.Second }, `"discover.ttl" must not be negative`},
		{func(c *DiscoverConfig) { c.TTL = time.Second }, `"discover.ttl" must be 0 or at least "discover.probation"`},
		{func(c *DiscoverConfig) { c.ScanInterval = time.Millisecond }, `"discover.scan_interval" must be at least 100ms`},
	} {
		c := *cfg
		tc.set(&c.Discover)
		if err := confmap.Validate(&c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want %q", err, tc.want)
		}
	}
}

func TestMapsOpenSSL(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]bool{
		"7f00-7f01 r-xp 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3\n": true,
		"7f00-7f01 r-xp 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libcrypto.so.3\n" +
			"7f00-7f01 r-xp 00000000 08:01 123 /opt/libssl.so.3.bak/libc.so.6\n": false,
		"": false,
		strings.Repeat("x", 200<<10) + "\n7f00-7f01 r-xp 0 08:01 1 /lib/libssl.so.1.1\n": true, // a long line is skipped
	} {
		p := filepath.Join(dir, "maps")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := mapsOpenSSL(p); got != want {
			t.Errorf("%.80q: %v, want %v", content, got, want)
		}
	}
}

// discoveredPID returns the spans of pid whose resource says discovered, and its service.name.
func discoveredSpans(c collected, pid int) (spans []ptrace.Span, name string) {
	for i, r := range c.res {
		if v, _ := r.Attributes().Get("process.pid"); v.Int() != int64(pid) {
			continue
		}
		if v, ok := r.Attributes().Get(attrDiscovered); ok && v.Type() == pcommon.ValueTypeBool && v.Bool() {
			spans = append(spans, c.spans[i])
			s, _ := r.Attributes().Get("service.name")
			name = s.Str()
		}
	}
	return spans, name
}

// TestDiscovery: with discover.enabled and no target, an undeclared Go client on the official
// OpenAI Go SDK, a Python client (standard library over OpenSSL), a Node client on the npm
// openai SDK and a Python client of a model served in plain HTTP, started before the receiver,
// are discovered at their next LLM API call: their
// inference spans arrive marked agenttrail.discovered and named by their executable, and
// their later syscalls are traced; a Go program that dials a socket and never calls a model
// sends no span at all.
func TestDiscovery(t *testing.T) {
	requireKernel(t)
	requirePython(t)
	script := requireNodeAgent(t)
	model := startMockModel(t)
	base := strings.TrimSuffix(model.url, "/chat/completions")
	t.Setenv("SSL_CERT_FILE", model.ca)
	t.Setenv("NODE_EXTRA_CA_CERTS", model.ca)

	goExe := buildOpenAIGo(t)
	goClient := startProgram(t, goExe, "model-x")
	goClient.waitLine(t, "ready")
	py, _ := startPyAgent(t, python311, model)
	node := startProgram(t, systemNode, script, "model-x")
	node.waitLine(t, "ready")
	// A model served in plain HTTP (inside a cluster, say), called by another Python client.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-p1","object":"chat.completion","created":1,"model":"model-x","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	}))
	t.Cleanup(plain.Close)
	pyPlain, _ := startPyAgent(t, python311, model)
	peer := listen(t)
	other := startProgram(t, buildGoAgent(t), peer)

	cfg := testConfig()
	cfg.Discover.Enabled = true
	cfg.Discover.ScanInterval = 200 * time.Millisecond
	cfg.Discover.MaxProbation = 4096 // the test host runs many Go programs
	sink := startReceiver(t, cfg)

	clients := []struct {
		p         *program
		cmd, want string
		name      string
	}{
		{goClient, "h1 " + base + " 1", "ok h1", "openaigo"},
		{py, "call " + model.url, "ok call", "python3.11"},
		{node, "chat " + base, "ok chat", "node"},
		{pyPlain, "call " + plain.URL + "/v1/chat/completions", "ok call", "python3.11"},
	}
	last, rounds, started := time.Time{}, 0, time.Now()
	c := waitSpansFor(t, sink, 90*time.Second, func(c collected) bool { // 8 new candidates a scan, on a busy machine
		done := true
		for _, cl := range clients {
			s, _ := discoveredSpans(c, cl.p.cmd.Process.Pid)
			if len(s) == 0 {
				done = false
			}
		}
		if !done && time.Since(last) > 500*time.Millisecond {
			last, rounds = time.Now(), rounds+1
			for _, cl := range clients {
				cl.p.do(t, cl.cmd, cl.want)
			}
			other.do(t, "dial "+peer, "ok dial")
		}
		return done
	})
	t.Logf("discovered in %v, %d rounds of calls", time.Since(started), rounds)
	for _, cl := range clients {
		pid := cl.p.cmd.Process.Pid
		s, name := discoveredSpans(c, pid)
		if name != cl.name {
			t.Errorf("%s: service.name %q", cl.name, name)
		}
		inference := false
		for _, sp := range s {
			inference = inference || fromTLS(sp)
		}
		if !inference {
			t.Errorf("%s: no inference span among %d discovered spans", cl.name, len(s))
		}
		if cl.p == pyPlain {
			plaintext := false
			for _, sp := range s {
				plaintext = plaintext || (fromTLS(sp) && attr(sp, "agenttrail.capture.source") == "plaintext")
			}
			if !plaintext {
				t.Error("the plain-HTTP client: no inference span read from its socket")
			}
		}
		for i, r := range c.res {
			if v, _ := r.Attributes().Get("process.pid"); v.Int() == int64(pid) {
				if _, ok := r.Attributes().Get(attrDiscovered); !ok {
					t.Errorf("%s: span %s without %s", cl.name, c.spans[i].Name(), attrDiscovered)
				}
			}
		}
	}
	// The mock model serves the calls over TLS: a server's side is not an LLM client's.
	for _, r := range c.res {
		if v, _ := r.Attributes().Get("process.executable.path"); strings.HasSuffix(v.Str(), "mock-model") {
			t.Fatalf("the model server was discovered: %v", r.Attributes().AsRaw())
		}
	}
	// From then on a discovered workload's syscalls are traced: the Go client's next call
	// connects again (a new connection per h1 call).
	goClient.do(t, "h1 "+base+" 1", "ok h1")
	waitSpansFor(t, sink, 10*time.Second, func(c collected) bool {
		for _, sp := range c.ofPID(goClient.cmd.Process.Pid).spans {
			if sp.Name() == "connect" {
				return true
			}
		}
		return false
	})
	other.do(t, "dial "+peer, "ok dial")
	time.Sleep(500 * time.Millisecond)
	if n := len(collectAll(sink).ofPID(other.cmd.Process.Pid).spans); n != 0 {
		t.Errorf("%d spans of a process that never called a model", n)
	}
}

// collectAll indexes what the sink received so far.
func collectAll(sink interface{ AllTraces() []ptrace.Traces }) collected {
	var c collected
	for _, td := range sink.AllTraces() {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				ss := rs.ScopeSpans().At(j)
				for k := 0; k < ss.Spans().Len(); k++ {
					c.spans = append(c.spans, ss.Spans().At(k))
					c.res = append(c.res, rs.Resource())
				}
			}
		}
	}
	return c
}

// waitSpansFor is waitSpans with its own timeout: discovery waits for a scan and a call.
func waitSpansFor(t *testing.T, sink interface{ AllTraces() []ptrace.Traces }, timeout time.Duration, done func(collected) bool) collected {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c := collectAll(sink)
		if done(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans did not arrive in %v; got %d", timeout, len(c.spans))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// discoveryRegistry is a registry with discovery on and no kernel: the filter's decisions.
func discoveryRegistry(t *testing.T, tel *componenttest.Telemetry) *registry {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.Discover.Enabled = true
	cfg.ProcRoot = t.TempDir() // no process is found there: names come from the executable
	tm, err := newTelemetry(tel.NewTelemetrySettings())
	if err != nil {
		t.Fatal(err)
	}
	g := newRegistry(cfg, nil, zap.NewNop(), tm, spans.NewBuilder(spans.Options{}), nil, nil, nil)
	if err := g.startDiscovery(componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	return g
}

func batch(pids map[uint32][]string) ptrace.Traces {
	td := ptrace.NewTraces()
	for pid, names := range pids {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutInt("process.pid", int64(pid))
		rs.Resource().Attributes().PutStr("service.name", "discovered")
		ss := rs.ScopeSpans().AppendEmpty()
		for _, n := range names {
			s := ss.Spans().AppendEmpty()
			s.SetName(n)
			if strings.HasPrefix(n, "chat") {
				s.Attributes().PutStr("gen_ai.provider.name", "openai")
			}
		}
	}
	return td
}

func byPID(td ptrace.Traces) map[int64]pcommon.Map {
	out := map[int64]pcommon.Map{}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		a := td.ResourceSpans().At(i).Resource().Attributes()
		v, _ := a.Get("process.pid")
		out[v.Int()] = a
	}
	return out
}

// TestDiscoveryFilter: a candidate's spans are dropped (and counted) until a batch has its LLM
// API call; from that batch on its spans and its children's are named and marked; a target's
// are untouched.
func TestDiscoveryFilter(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	g := discoveryRegistry(t, tel)
	d := g.discovery
	now := time.Now()
	target := &tracer.Target{ID: 1, Config: TargetConfig{Name: "declared"}}
	g.traced[100] = &tracer.Process{ProcInfo: tracer.ProcInfo{PID: 100, Exe: "/srv/bin/advisor"}, Target: d.target}
	g.traced[101] = &tracer.Process{ProcInfo: tracer.ProcInfo{PID: 101, PPID: 100, Exe: "/bin/sh"}, Target: d.target}
	g.traced[200] = &tracer.Process{ProcInfo: tracer.ProcInfo{PID: 200, Exe: "/srv/bin/declared"}, Target: target}
	d.procs[100] = &discoveredProc{state: stateProbation, since: now}
	d.probation = 1

	td := batch(map[uint32][]string{100: {"connect", "openat"}, 101: {"execve"}, 200: {"connect"}})
	g.filterDiscovered(td, now)
	got := byPID(td)
	if len(got) != 1 || got[200].Len() == 0 {
		t.Fatalf("on probation: kept %v, want only the target's", got)
	}
	if v, _ := got[200].Get("service.name"); v.Str() != "discovered" {
		t.Errorf("a target's resource changed: %v", got[200].AsRaw())
	}
	if n := metricSum(t, tel, "agenttrail.ebpf.discovery.dropped", "probation_spans"); n != 3 {
		t.Errorf("probation_spans %d, want 3", n)
	}

	td = batch(map[uint32][]string{100: {"connect", "chat model-x"}})
	g.filterDiscovered(td, now)
	got = byPID(td)
	if a, ok := got[100]; !ok {
		t.Fatal("the batch with the LLM call was dropped")
	} else if v, _ := a.Get("service.name"); v.Str() != "advisor" {
		t.Errorf("service.name %q, want the executable's name", v.Str())
	} else if v, _ := a.Get(attrDiscovered); !v.Bool() {
		t.Errorf("%s not set", attrDiscovered)
	}
	if d.workloads != 1 || d.probation != 0 || d.procs[100].state != stateDiscovered {
		t.Errorf("workloads %d probation %d state %d", d.workloads, d.probation, d.procs[100].state)
	}
	td = batch(map[uint32][]string{100: {"openat"}, 101: {"execve"}})
	g.filterDiscovered(td, now)
	got = byPID(td)
	if v, _ := got[101].Get("service.name"); len(got) != 2 || v.Str() != "advisor" {
		t.Errorf("after discovery: kept %d resources, the child named %q", len(got), v.Str())
	}
}

// TestPodWorkload: a discovered process in a pod is named by its Deployment (the ReplicaSet's
// name less the pod-template-hash), else by its controller, else by the pod.
func TestPodWorkload(t *testing.T) {
	yes := true
	pod := func(uid, name string, labels map[string]string, owner ...metav1.OwnerReference) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "wealth-ai", Name: name, UID: types.UID(uid), Labels: labels, OwnerReferences: owner},
			Spec: corev1.PodSpec{NodeName: "node-1"}}
	}
	client := fake.NewClientset(
		pod("u-1", "advisor-7f9c-abcde", map[string]string{"pod-template-hash": "7f9c"}, metav1.OwnerReference{Kind: "ReplicaSet", Name: "advisor-7f9c", Controller: &yes}),
		pod("u-2", "kyc-0", nil, metav1.OwnerReference{Kind: "StatefulSet", Name: "kyc", Controller: &yes}),
		pod("u-3", "debug", nil),
	)
	inf, err := k8sinventory.New(client, "node-1", 0, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	inf.Run(ctx, &wg)
	for !inf.HasSynced() {
		time.Sleep(5 * time.Millisecond)
	}
	p := &inventoryStub{inf: inf}
	for uid, want := range map[string]string{"u-1": "wealth-ai/advisor", "u-2": "wealth-ai/kyc", "u-3": "wealth-ai/debug", "u-9": ""} {
		if got := podWorkload(p, uid); got != want {
			t.Errorf("%s: %q, want %q", uid, got, want)
		}
	}
}
