// Package crossnode runs a story across two "nodes" on this machine, for real: two network
// namespaces joined by a veth pair, each with its own agent collector (the built distribution
// with the shipped agent configuration) tracing only its own process — an agent in one, a tool
// service in the other, over HTTP — and one gateway (the shipped gateway configuration: storyjoin
// then attackstory) exporting to Jaeger. The test reads the stories back from Jaeger's API.
package crossnode

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agenttrail/agenttrail/internal/testutil"
	"github.com/agenttrail/agenttrail/tests/internal/harness"
	"github.com/agenttrail/agenttrail/tests/jaeger"
)

const (
	addrA     = "10.77.0.1" // node-a: the agents and the outside host
	addrB     = "10.77.0.2" // node-b: the tool service
	sinkPort  = "9099"
	toolPort  = "8080"
	toolName  = "fetch-report"
	agentSvc  = "cn-agent"
	serverSvc = "tool-service"
)

func requireSetup(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("cross-node test: the collectors load eBPF programs and the test makes network namespaces; needs root")
	}
	collector := harness.Collector(t)
	harness.RequireJaeger(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("iproute2's ip is needed to make the network namespaces (apt-get install iproute2)")
	}
	return collector
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// namespaces makes node-a and node-b: two network namespaces and a veth pair between them,
// removed at the end of the test (deleting a namespace deletes its end of the pair).
func namespaces(t *testing.T) (nsA, nsB string) {
	t.Helper()
	id := os.Getpid() % 100000
	nsA, nsB = fmt.Sprintf("atcn-a-%d", id), fmt.Sprintf("atcn-b-%d", id)
	vA, vB := fmt.Sprintf("cna%d", id), fmt.Sprintf("cnb%d", id)
	run(t, "ip", "netns", "add", nsA)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", nsA).Run() })
	run(t, "ip", "netns", "add", nsB)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", nsB).Run() })
	run(t, "ip", "link", "add", vA, "netns", nsA, "type", "veth", "peer", "name", vB, "netns", nsB)
	for _, c := range [][]string{
		{"-n", nsA, "addr", "add", addrA + "/24", "dev", vA},
		{"-n", nsB, "addr", "add", addrB + "/24", "dev", vB},
		{"-n", nsA, "link", "set", vA, "up"}, {"-n", nsB, "link", "set", vB, "up"},
		{"-n", nsA, "link", "set", "lo", "up"}, {"-n", nsB, "link", "set", "lo", "up"},
	} {
		run(t, "ip", c...)
	}
	return nsA, nsB
}

// start starts a process with its output in log; it is stopped at the end.
func start(t *testing.T, log string, env []string, name string, args ...string) *harness.Proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	p := harness.MustStart(t, cmd, log)
	t.Cleanup(func() { p.Stop(20 * time.Second) })
	return p
}

func waitHealthy(t *testing.T, p *harness.Proc, port int) {
	t.Helper()
	harness.WaitHealthy(t, p, harness.HealthURL(port, "/status"), 60*time.Second, nil)
}

// agentCollector starts one node's agent collector: the shipped configuration, tracing only
// target (two collectors on one kernel each see every process: the target scopes them), its
// resources named after the node, exporting to the gateway.
func agentCollector(t *testing.T, collector, dir, node, gateway, target string) *harness.Proc {
	t.Helper()
	health := testutil.FreePort(t)
	over := filepath.Join(dir, node+".yaml")
	// The agents' traces go through storyroute (the shipped config.yaml): its replica list is
	// the gateway's address.
	gwHost, gwPort, err := net.SplitHostPort(gateway)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`receivers:
  ebpf:
    targets:
%s
processors:
  k8sattribution:
    host_name: %s
exporters:
  otlp_grpc:
    endpoint: %s
  storyroute:
    resolver:
      dns:
        hostname: %s
        port: %s
service:
  telemetry:
    metrics:
      level: none
`, target, node, gateway, gwHost, gwPort)
	if err := os.WriteFile(over, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, filepath.Join(dir, node+".log"), []string{
		fmt.Sprintf("AGENTTRAIL_HEALTH_ENDPOINT=127.0.0.1:%d", health),
		"AGENTTRAIL_K8S_AUTH=none",
		"AGENTTRAIL_PROFILES_DIR=" + filepath.Join(dir, node+"-profiles"),
	}, collector, "--config="+testutil.RepoPath(t, "distributions/agenttrail/config.yaml"), "--config="+over)
	waitHealthy(t, p, health)
	return p
}

func buildProgram(t *testing.T, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, "./testdata/"+name)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, b)
	}
	return out
}

type story struct {
	trace  jaeger.Trace
	agent  string // the agent whose tool span is the story's root
	byID   map[string]jaeger.Span
	remote []jaeger.Span // spans of tool-service
}

func (s *story) under(sp jaeger.Span, ancestor string) bool {
	for i := 0; i < 64 && sp.SpanID != ""; i++ {
		if sp.Parent() == ancestor {
			return true
		}
		sp = s.byID[sp.Parent()]
	}
	return false
}

func TestCrossNodeStory(t *testing.T) {
	collector := requireSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	nsA, nsB := namespaces(t)

	bins := map[string]string{}
	for _, n := range []string{"cnagent", "cnservice", "cnsink"} {
		bins[n] = buildProgram(t, dir, n)
	}
	for _, agent := range []string{"alpha", "beta"} {
		d := filepath.Join(dir, "data", agent)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "customers.csv"), []byte("id,name,iban\n1,"+agent+",DE00\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	j, err := jaeger.Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Stop()

	// The gateway: the shipped gateway.yaml on local ports.
	grpcPort, httpPort, gwHealth := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)
	gwOver := filepath.Join(dir, "gateway-over.yaml")
	if err := os.WriteFile(gwOver, []byte(fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
      http:
        endpoint: 127.0.0.1:%d
exporters:
  otlp_grpc:
    endpoint: %s
extensions:
  healthcheckv2:
    http:
      endpoint: 127.0.0.1:%d
service:
  telemetry:
    metrics:
      level: none
`, grpcPort, httpPort, jaeger.OTLPGRPCEndpoint, gwHealth)), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := start(t, filepath.Join(dir, "gateway.log"), []string{
		"AGENTTRAIL_QUEUE_DIR=" + filepath.Join(dir, "queue"),
		"AGENTTRAIL_PROFILES_DIR=" + filepath.Join(dir, "gateway-profiles"),
	}, collector, "--config="+testutil.RepoPath(t, "distributions/agenttrail/gateway.yaml"), "--config="+gwOver)
	waitHealthy(t, gw, gwHealth)
	gateway := fmt.Sprintf("127.0.0.1:%d", grpcPort)

	colA := agentCollector(t, collector, dir, "node-a", gateway, `      - name: `+agentSvc+`
        process_name: cnagent
        functions:
          - symbol: main.callTool
            role: tool
            tool_name: `+toolName)
	colB := agentCollector(t, collector, dir, "node-b", gateway, `      - name: `+serverSvc+`
        process_name: cnservice
        functions:
          - symbol: main.handle`)

	sink := start(t, filepath.Join(dir, "sink.log"), nil, "ip", "netns", "exec", nsA, bins["cnsink"], addrA+":"+sinkPort)
	service := start(t, filepath.Join(dir, "service.log"), nil, "ip", "netns", "exec", nsB, bins["cnservice"],
		addrB+":"+toolPort, filepath.Join(dir, "data"), addrA+":"+sinkPort)
	time.Sleep(2 * time.Second) // the service listens; its collector set it up at its exec

	// Two agents call the same service at the same time.
	const calls = 3
	var wg sync.WaitGroup
	agents := map[string]*harness.Proc{}
	for _, agent := range []string{"alpha", "beta"} {
		agents[agent] = start(t, filepath.Join(dir, agent+".log"), nil, "ip", "netns", "exec", nsA, bins["cnagent"],
			"http://"+addrB+":"+toolPort+"/report", agent, fmt.Sprint(calls), "400ms")
		wg.Add(1)
		go func(p *harness.Proc) { defer wg.Done(); <-p.Done() }(agents[agent])
	}
	wg.Wait()
	for agent, p := range agents {
		if p.Cmd.ProcessState.ExitCode() != 0 {
			t.Fatalf("agent %s failed:\n%s\nservice:\n%s", agent, harness.Tail(p.Log, 20), harness.Tail(service.Log, 20))
		}
	}
	pidOf := map[string]string{}
	for agent, p := range agents {
		// ip netns exec execs the program in place: the pid is the agent's.
		pidOf[fmt.Sprint(p.Cmd.Process.Pid)] = agent
	}

	// Read the stories back: each agent's tool spans, each with the service's work under it.
	var stories []*story
	deadline := time.Now().Add(60 * time.Second)
	for {
		stories = stories[:0]
		traces, err := j.TracesWith(ctx, agentSvc, "execute_tool "+toolName, 50)
		if err == nil {
			for _, tr := range traces {
				s := &story{trace: tr, byID: map[string]jaeger.Span{}}
				for _, sp := range tr.Spans {
					s.byID[sp.SpanID] = sp
					if tr.Processes[sp.ProcessID].ServiceName == serverSvc {
						s.remote = append(s.remote, sp)
					}
				}
				stories = append(stories, s)
			}
		}
		joined := 0
		for _, s := range stories {
			if len(s.remote) > 0 {
				joined++
			}
		}
		if joined >= 2*calls || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	logs := func() string {
		return fmt.Sprintf("gateway:\n%s\nnode-a:\n%s\nnode-b:\n%s\nsink:\n%s", harness.Tail(gw.Log, 30), harness.Tail(colA.Log, 20), harness.Tail(colB.Log, 20), harness.Tail(sink.Log, 10))
	}
	if len(stories) < 2*calls {
		t.Fatalf("%d stories of the agents' tool calls in Jaeger, want %d\n%s", len(stories), 2*calls, logs())
	}

	perAgent := map[string]int{}
	for _, s := range stories {
		var tool jaeger.Span
		for _, sp := range s.trace.Spans {
			if sp.OperationName == "execute_tool "+toolName {
				tool = sp
			}
		}
		s.agent = pidOf[jaeger.Tag(s.trace.Processes[tool.ProcessID].Tags, "process.pid")]
		if s.agent == "" {
			t.Errorf("trace %s: the tool span's process is not one of the agents", s.trace.TraceID)
			continue
		}
		var accept, handle, connect jaeger.Span
		readFile := ""
		for _, sp := range s.remote {
			switch {
			case sp.OperationName == "accept":
				accept = sp
			case sp.OperationName == "main.handle":
				handle = sp
			case sp.OperationName == "connect" && jaeger.Tag(sp.Tags, "network.peer.address") == addrA:
				connect = sp
			}
			for _, l := range sp.Logs {
				if p := jaeger.Tag(l.Fields, "file.path"); strings.HasSuffix(p, "customers.csv") {
					readFile = p
				}
			}
		}
		if accept.SpanID == "" || handle.SpanID == "" || connect.SpanID == "" || readFile == "" {
			var ops []string
			for _, sp := range s.trace.Spans {
				ops = append(ops, s.trace.Processes[sp.ProcessID].ServiceName+":"+sp.OperationName)
			}
			t.Errorf("trace %s of agent %s lacks the service's accept, handler, file read or outbound connect: %v", s.trace.TraceID, s.agent, ops)
			continue
		}
		// The accept and connect spans carry the connection's four-tuple and namespace as each
		// node saw it: the accept matches by all of it.
		if jaeger.Tag(accept.Tags, "network.local.address") != addrB || jaeger.Tag(accept.Tags, "network.local.port") != toolPort ||
			jaeger.Tag(accept.Tags, "agenttrail.netns") == "" || jaeger.Tag(accept.Tags, "agenttrail.join.match") != "four_tuple" {
			t.Errorf("trace %s: the accept span lacks its local address, namespace or four-tuple join: %v", s.trace.TraceID, accept.Tags)
		}
		if jaeger.Tag(connect.Tags, "network.local.address") != addrB || jaeger.Tag(connect.Tags, "agenttrail.netns") == "" {
			t.Errorf("trace %s: the service's connect lacks its local address or namespace: %v", s.trace.TraceID, connect.Tags)
		}
		for _, sp := range []jaeger.Span{accept, handle, connect} {
			if !s.under(sp, tool.SpanID) {
				t.Errorf("trace %s: the service's %s is not under the agent's tool span", s.trace.TraceID, sp.OperationName)
			}
		}
		// Not mixed up: the service read the file of the agent that called it.
		if !strings.Contains(readFile, "/"+s.agent+"/") {
			t.Errorf("trace %s of agent %s holds the service's read of %s: another agent's request", s.trace.TraceID, s.agent, readFile)
		}
		nodes := map[string]bool{}
		for _, p := range s.trace.Processes {
			nodes[jaeger.Tag(p.Tags, "host.name")] = true
		}
		if !nodes["node-a"] || !nodes["node-b"] {
			t.Errorf("trace %s: nodes %v, want node-a and node-b", s.trace.TraceID, nodes)
		}
		if jaeger.Tag(handle.Tags, "agenttrail.join.client.node") != "node-a" || jaeger.Tag(handle.Tags, "agenttrail.join.server.node") != "node-b" {
			t.Errorf("trace %s: the joined root does not name both nodes: %v", s.trace.TraceID, handle.Tags)
		}
		// The gateway's attackstory judged the joined story: the agent's read of nothing, the
		// service's read of customers.csv and its send to the outside host.
		if rules := jaeger.Tag(tool.Tags, "agenttrail.finding.rule_ids"); !strings.Contains(rules, "sensitive_read_then_egress") {
			t.Errorf("trace %s: no sensitive_read_then_egress finding on the joined story (rules %q)", s.trace.TraceID, rules)
		}
		findingNamesBothNodes(t, s.trace)
		perAgent[s.agent]++
	}
	if perAgent["alpha"] != calls || perAgent["beta"] != calls {
		t.Errorf("joined stories per agent %v, want %d each\n%s", perAgent, calls, logs())
	}
}

// findingNamesBothNodes: the gateway's finding on the joined story names both nodes and both
// workloads: an OCSF resource per workload with its host.name, unmapped.nodes, and the
// narrative's subject.
func findingNamesBothNodes(t *testing.T, trace jaeger.Trace) {
	t.Helper()
	var ocsf string
	for _, sp := range trace.Spans {
		for _, l := range sp.Logs {
			if v := jaeger.Tag(l.Fields, "agenttrail.finding.ocsf"); v != "" {
				ocsf = v
			}
		}
	}
	if ocsf == "" {
		t.Errorf("trace %s: no finding event with its OCSF finding", trace.TraceID)
		return
	}
	var f struct {
		Resources []struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		} `json:"resources"`
		Unmapped struct {
			Nodes     []string `json:"nodes"`
			Narrative string   `json:"narrative"`
		} `json:"unmapped"`
	}
	if err := json.Unmarshal([]byte(ocsf), &f); err != nil {
		t.Errorf("trace %s: the OCSF finding is not JSON: %v", trace.TraceID, err)
		return
	}
	resNodes := map[string]bool{}
	for _, r := range f.Resources {
		if n, ok := r.Data["host.name"].(string); ok {
			resNodes[n] = true
		}
	}
	if !resNodes["node-a"] || !resNodes["node-b"] || len(f.Resources) != 2 {
		t.Errorf("trace %s: the finding's resources name nodes %v (%d resources), want one workload on node-a and one on node-b", trace.TraceID, resNodes, len(f.Resources))
	}
	if !slices.Contains(f.Unmapped.Nodes, "node-a") || !slices.Contains(f.Unmapped.Nodes, "node-b") || len(f.Unmapped.Nodes) != 2 {
		t.Errorf("trace %s: the finding's unmapped.nodes %v, want node-a and node-b", trace.TraceID, f.Unmapped.Nodes)
	}
	if !strings.Contains(f.Unmapped.Narrative, " on node-a") || !strings.Contains(f.Unmapped.Narrative, " on node-b") {
		t.Errorf("trace %s: the narrative does not name both nodes: %s", trace.TraceID, f.Unmapped.Narrative)
	}
}
