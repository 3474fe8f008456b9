// Package enforce runs "observe to enforce" end to end on this machine's kernel: the bank's Go
// agent in a kubelet-style pod cgroup, the built collector (_build/otelcol-agenttrail), run as
// the DaemonSet runs it (its own pod cgroup, a private cgroup namespace, the host's cgroup
// hierarchy mounted beside its own), learning
// its profile in mode observe, `agenttrail profile show` and `promote --dry-run`, the promotion
// to enforce (the kernel's own list of programs on the pod cgroup is checked), the attack's
// exfiltration refused with EPERM inside the agent, a shell killed, the "blocked" events in
// the stories the collector exports, the way back to alert, and a collector restart and stop
// that leave nothing attached.
package enforce

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/internal/containerid"
	"github.com/agenttrail/agenttrail/internal/testutil"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
	"github.com/agenttrail/agenttrail/tests/internal/harness"
	"github.com/agenttrail/agenttrail/tests/siem"
	"github.com/agenttrail/agenttrail/tests/workloads/bank"
)

// agentName is the agent binary's name here: not "customer-agent", so that a collector of
// another test running at the same time (tests/e2e selects process_name customer-agent) does
// not trace this agent, and this collector does not trace that one.
const agentName = "enforce-agent"

const (
	podUID      = "7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6"
	containerID = "e4f0c0de" + "e4f0c0de" + "e4f0c0de" + "e4f0c0de" + "e4f0c0de" + "e4f0c0de" + "e4f0c0de" + "e4f0c0de"
)

// TestMain: with AGENTTRAIL_ENFORCE_PROBE=ADDR the test binary is the prober, a second process
// of the pod that connects to ADDR every 5 ms until it is refused and prints when.
func TestMain(m *testing.M) {
	if addr := os.Getenv("AGENTTRAIL_ENFORCE_PROBE"); addr != "" {
		probe(addr)
		return
	}
	os.Exit(m.Run())
}

func probe(addr string) {
	fmt.Println("ready")
	// wait for the go-ahead (the test moves this process into the pod first)
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		os.Exit(2)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		} else if errors.Is(err, syscall.EPERM) {
			fmt.Printf("denied %d\n", time.Now().UnixNano())
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Println("never denied")
	os.Exit(1)
}

func requireSetup(t *testing.T) (collector string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel enforcement test: loading eBPF programs and attaching them to cgroups needs root")
	}
	if _, err := containerid.FindCgroup2Mount(); err != nil {
		t.Skipf("kernel enforcement test: no cgroup v2 mount: %v", err)
	}
	collector = harness.Collector(t)
	return collector
}

// otlpSink receives the collector's stories over OTLP/HTTP.
type otlpSink struct {
	srv *httptest.Server
	mu  sync.Mutex
	all []ptrace.Traces
}

func startSink(t *testing.T) *otlpSink {
	s := &otlpSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := siem.ReadBody(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.all = append(s.all, req.Traces())
		s.mu.Unlock()
		out, _ := ptraceotlp.NewExportResponse().MarshalProto()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// span is one received span with its resource.
type span struct {
	res  pcommon.Map
	span ptrace.Span
}

// traces groups every span received so far by trace id.
func (s *otlpSink) traces() map[string][]span {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]span{}
	for _, td := range s.all {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				sps := rs.ScopeSpans().At(j).Spans()
				for k := 0; k < sps.Len(); k++ {
					sp := sps.At(k)
					out[sp.TraceID().String()] = append(out[sp.TraceID().String()], span{rs.Resource().Attributes(), sp})
				}
			}
		}
	}
	return out
}

func attr(m pcommon.Map, k string) string {
	if v, ok := m.Get(k); ok {
		return v.AsString()
	}
	return ""
}

func hasSpan(spans []span, name string) bool {
	for _, s := range spans {
		if s.span.Name() == name {
			return true
		}
	}
	return false
}

// collector runs the built collector with a config.
type collector struct {
	t      *testing.T
	bin    string
	config string
	log    string
	health int
	pod    *podView // nil: on the host
	proc   *harness.Proc
}

// podView runs the collector as a DaemonSet pod with cgroup v2 does: in a cgroup of its own and
// a private cgroup namespace rooted there, so that the workload's cgroup reads
// "/../../…" in /proc/<pid>/cgroup; its own cgroup2 mount shows only its cgroup, and the host's
// hierarchy is mounted at another folder (the DaemonSet's /host/sys/fs/cgroup), the host's
// mount hidden. The mount namespace is private: nothing is seen outside.
type podView struct {
	cgroup         string // the collector pod's cgroup (host view)
	root           string // the host's cgroup2 mount
	host, ownMount string // folders of the two views inside
}

func newPodView(t *testing.T, dir string) *podView {
	t.Helper()
	root, err := containerid.FindCgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	cg, cleanup, err := containerid.MakeKubeletCgroup(root, "0c0ffee0-1111-4222-8333-444455556666", strings.Repeat("c0", 32), containerid.QoSBurstable)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cleanup() })
	v := &podView{cgroup: cg, root: root, host: filepath.Join(dir, "host-cgroup"), ownMount: filepath.Join(dir, "own-cgroup")}
	for _, d := range []string{v.host, v.ownMount} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// command wraps the collector's command line: unshare starts in the pod's cgroup, so the new
// cgroup namespace's root is that cgroup.
func (v *podView) command(t *testing.T, args ...string) (*exec.Cmd, func()) {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("the collector runs as in a pod through unshare (util-linux): %v", err)
	}
	cg, err := os.Open(v.cgroup)
	if err != nil {
		t.Fatal(err)
	}
	script := `mount --bind "$1" "$2" && umount -l "$1" && mount -t cgroup2 none "$3" && shift 3 && exec "$@"`
	cmd := exec.Command(unshare, append([]string{"--cgroup", "--mount", "sh", "-c", script, "sh", v.root, v.host, v.ownMount}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	return cmd, func() { cg.Close() }
}

func (c *collector) start() {
	c.t.Helper()
	cmd := exec.Command(c.bin, "--config="+c.config)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if c.pod != nil {
		var done func()
		cmd, done = c.pod.command(c.t, c.bin, "--config="+c.config)
		defer done()
	}
	// The log is appended to across restarts: ready means one more "started" line than before.
	starts := strings.Count(readFile(c.log), "ebpf receiver started")
	c.proc = harness.MustStart(c.t, cmd, c.log)
	harness.WaitHealthy(c.t, c.proc, harness.HealthURL(c.health, "/"), 60*time.Second, func() bool {
		return strings.Count(readFile(c.log), "ebpf receiver started") > starts
	})
}

func (c *collector) stop() {
	if c.proc == nil {
		return
	}
	began := time.Now()
	defer func() { c.t.Logf("the collector stopped in %s", time.Since(began).Round(time.Millisecond)) }()
	if !c.proc.Stop(30 * time.Second) {
		c.t.Errorf("the collector did not stop within 30s of SIGTERM")
	}
	c.proc = nil
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// cgroupPrograms lists the programs the kernel has attached to the cgroup's connect and
// sendmsg hooks, by hook.
func cgroupPrograms(t *testing.T, cgroup string) map[ebpf.AttachType]int {
	t.Helper()
	f, err := os.Open(cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[ebpf.AttachType]int{}
	for _, typ := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupUDP4Sendmsg, ebpf.AttachCGroupUDP6Sendmsg} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: typ})
		if err != nil {
			t.Fatalf("query %s: %v", typ, err)
		}
		if n := len(res.Programs); n > 0 {
			out[typ] = n
		}
	}
	return out
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Time {
	t.Helper()
	return harness.WaitFor(t, what, timeout, 10*time.Millisecond, cond)
}

func cli(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

func TestObserveToEnforce(t *testing.T) {
	collectorBin := requireSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir := t.TempDir()

	// The agent's pod: a kubelet-style cgroup (systemd driver, containerd).
	containerCgroup, cleanupCgroup, err := containerid.MakeKubeletCgroup("", podUID, containerID, containerid.QoSBurstable)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cleanupCgroup() })
	podCgroup := filepath.Dir(containerCgroup)

	// The programs: the bank (its agent under another name) and the CLI.
	bins, err := bank.Build(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	agentBin := filepath.Join(dir, "bin", agentName)
	if err := os.Rename(bins.Agent, agentBin); err != nil {
		t.Fatal(err)
	}
	bins.Agent = agentBin
	cliBin := filepath.Join(dir, "bin", "agenttrail")
	build := exec.CommandContext(ctx, "go", "build", "-o", cliBin, "./cmd/agenttrail")
	build.Dir = testutil.RepoPath(t, "")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/agenttrail: %v\n%s", err, out)
	}

	// The collector: the agent's functions, the attackstory processor with a tiny learning
	// window, stories to this test over OTLP/HTTP and to an evidence archive.
	sink := startSink(t)
	keyFile := filepath.Join(dir, "evidence.key")
	if _, err := archive.GenerateSigningKey(keyFile); err != nil {
		t.Fatal(err)
	}
	profiles := filepath.Join(dir, "profiles")
	evidenceDir := filepath.Join(dir, "evidence")
	c := &collector{t: t, bin: collectorBin, config: filepath.Join(dir, "collector.yaml"), log: filepath.Join(dir, "collector.log"), health: testutil.FreePort(t),
		pod: newPodView(t, dir)}
	conf := fmt.Sprintf(`receivers:
  ebpf:
    targets:
      - name: customer-agent
        process_name: %s
        functions:
          - {symbol: main.(*Agent).HandlePrompt, role: prompt, args: [prompt]}
          - {symbol: main.(*ModelClient).Complete, role: inference, model: model-x}
          - {symbol: main.(*Tools).AccountsSummary, role: tool, tool_name: accounts-summary, args: [customerID]}
          - {symbol: main.(*Tools).RecentTransactions, role: tool, tool_name: recent-transactions, args: [customerID]}
          - {symbol: main.(*Tools).TransferLowValue, role: tool, tool_name: transfers-low-value, args: [from, to, cents]}
          - {symbol: main.(*Tools).ExportCustomerData, role: tool, tool_name: customer-data-export, args: [query, destination]}
          - {symbol: main.(*Tools).SystemDiagnostics, role: tool, tool_name: system-diagnostics, args: [check]}
    syscalls: [connect, accept, execve, openat]
processors:
  attackstory:
    profiles_dir: %s
    profiles_save_interval: 200ms
    completion_grace: 1s
    default_mode: observe
    # min_stories: the agent's start-up (its own stories, one or two) and at least one whole
    # benign conversation, whatever the timing: the profile is complete with all three tools.
    learning: {min_stories: 8, min_duration: 1s}
exporters:
  otlp_http:
    endpoint: %s
    compression: none
  evidence:
    directory: %s
    signing_key_file: %s
    fsync: false
extensions:
  healthcheckv2:
    endpoint: 127.0.0.1:%d
service:
  extensions: [healthcheckv2]
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [ebpf]
      processors: [attackstory]
      exporters: [otlp_http, evidence]
`, agentName, profiles, sink.srv.URL, evidenceDir, keyFile, c.health)
	if err := os.WriteFile(c.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c.start()
	defer c.stop()
	defer func() {
		if t.Failed() {
			t.Logf("collector log:\n%s", harness.Tail(c.log, 60))
		}
	}()

	env, err := bank.Start(ctx, bins, bank.Options{Dir: filepath.Join(dir, "bank"),
		AgentAddr: "127.0.0.1:0", ModelAddr: "127.0.0.1:0", SinkAddr: "127.0.0.2:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	// Into the pod before any traffic: the sockets it creates from now on belong to the pod.
	if err := containerid.AddProcess(containerCgroup, env.AgentPID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the collector attaches to the agent at its exec

	benign := func(session string) {
		t.Helper()
		for i, msg := range bank.BenignConversation {
			r, err := env.Chat(ctx, session, msg)
			if err != nil {
				t.Fatalf("benign %q: %v", msg, err)
			}
			if len(r.ToolCalls) != 1 || r.ToolCalls[0].Name != bank.BenignTools[i] || r.ToolCalls[0].Error != "" {
				t.Fatalf("benign %q: tool calls %+v", msg, r.ToolCalls)
			}
		}
	}

	// 1. Observe: the profile learns from benign conversations until it is complete.
	var prof *profile.File
	for round := 0; prof == nil; round++ {
		if round == 10 {
			t.Fatalf("the profile did not complete after %d benign conversations:\n%s", round, harness.Tail(c.log, 30))
		}
		benign("learn-" + strconv.Itoa(round))
		deadline := time.Now().Add(5 * time.Second)
		for prof == nil && time.Now().Before(deadline) {
			files, _ := profile.ReadDir(profiles)
			for _, f := range files {
				if f.Workload()["service.name"] == "customer-agent" && f.Status() == "complete" {
					prof = f
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("profile %s complete, version %d", prof.Path, prof.Version())

	// 2. profile show
	out, code := cli(t, cliBin, "profile", "show", "customer-agent", "--dir", profiles)
	modelURL, err := url.Parse(env.ModelURL)
	if err != nil {
		t.Fatal(err)
	}
	modelPort := modelURL.Port()
	for _, want := range []string{"status       complete", "accounts-summary", "recent-transactions", "transfers-low-value",
		"127.0.0.0/24 port " + modelPort, "executables (0)"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("profile show (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	t.Logf("agenttrail profile show customer-agent:\n%s", out)

	// 3. Dry run: the benign history would have blocked nothing; an archive holding an attack
	// story lists its connect to the outside host and its shell.
	out, code = cli(t, cliBin, "profile", "promote", "customer-agent", "--mode", "enforce", "--dir", profiles, "--dry-run", "--evidence", evidenceDir, "--since", "1h")
	if code != 0 || !strings.Contains(out, "nothing would have been blocked in ") || strings.Contains(out, "nothing would have been blocked in 0 stories") {
		t.Errorf("dry run on the benign history (exit %d):\n%s", code, out)
	}
	attackArchive, attackTrace := writeAttackArchive(t, dir, keyFile, env, modelPort)
	out, code = cli(t, cliBin, "profile", "promote", "customer-agent", "--mode", "enforce", "--dir", profiles, "--dry-run", "--evidence", attackArchive)
	sinkHostPort := strings.TrimPrefix(env.SinkURL, "http://")
	for _, want := range []string{attackTrace + "  connect  " + sinkHostPort, "egress_outside_profile (refused)",
		attackTrace + "  exec     /bin/sh", "unexpected_executable (killed)", "2 attempts would have been blocked in 1 of 2 stories; nothing was changed"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("dry run on the attack archive (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	if strings.Contains(out, ":"+modelPort+" ") {
		t.Errorf("the dry run lists the model connection:\n%s", out)
	}
	t.Logf("dry run:\n%s", out)
	if f, _ := profile.ReadFile(prof.Path); f.Mode() != "" {
		t.Errorf("the dry run changed the profile's mode to %q", f.Mode())
	}
	if n := cgroupPrograms(t, podCgroup); len(n) != 0 {
		t.Fatalf("programs attached before promotion: %v", n)
	}

	// A second process of the pod, to time the promotion: it connects to a destination
	// outside the profile until it is refused.
	probeLn, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer probeLn.Close()
	go func() {
		for {
			c, err := probeLn.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	prober := exec.Command(os.Args[0], "-test.run=^$")
	prober.Env = append(os.Environ(), "AGENTTRAIL_ENFORCE_PROBE="+probeLn.Addr().String())
	proberIn, _ := prober.StdinPipe()
	proberOut, _ := prober.StdoutPipe()
	prober.Stderr = os.Stderr
	if err := prober.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = prober.Process.Kill(); _ = prober.Wait() }()
	proberLines := bufio.NewScanner(proberOut)
	if !proberLines.Scan() || proberLines.Text() != "ready" {
		t.Fatal("the prober did not start")
	}
	if err := containerid.AddProcess(containerCgroup, prober.Process.Pid); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(proberIn, "go")
	denied := make(chan time.Time, 1)
	go func() {
		for proberLines.Scan() {
			if ns, ok := strings.CutPrefix(proberLines.Text(), "denied "); ok {
				n, _ := strconv.ParseInt(ns, 10, 64)
				denied <- time.Unix(0, n)
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // the prober connects freely for a while

	// 4. Promote to enforce.
	promoted := time.Now()
	out, code = cli(t, cliBin, "profile", "promote", "customer-agent", "--mode", "enforce", "--dir", profiles)
	if code != 0 {
		t.Fatalf("promote (exit %d):\n%s", code, out)
	}
	attached := waitFor(t, "the connect4 program on the pod cgroup", 30*time.Second, func() bool {
		return cgroupPrograms(t, podCgroup)[ebpf.AttachCGroupInet4Connect] == 1
	})
	var firstDenied time.Time
	select {
	case firstDenied = <-denied:
	case <-time.After(30 * time.Second):
		t.Fatal("the prober was never refused")
	}
	t.Logf("promote → programs attached (kernel's view): %s; promote → first enforced decision (a refused connect of the pod): %s",
		attached.Sub(promoted).Round(time.Millisecond), firstDenied.Sub(promoted).Round(time.Millisecond))
	if got := cgroupPrograms(t, podCgroup); len(got) != 4 {
		t.Errorf("programs on the pod cgroup: %v, want connect4, connect6, sendmsg4, sendmsg6", got)
	}

	// 5. Enforced: benign conversations work; the attack's upload is refused inside the agent,
	// which keeps answering; the shell of system-diagnostics is killed.
	benign("enforced")
	r, err := env.Chat(ctx, "attacker", bank.AttackMessageTo(env.UploadURL))
	if err != nil {
		t.Fatalf("attack: %v", err)
	}
	if len(r.ToolCalls) != 1 || r.ToolCalls[0].Name != "customer-data-export" || !strings.Contains(r.ToolCalls[0].Error, "operation not permitted") {
		t.Errorf("the export was not refused with EPERM: %+v", r.ToolCalls)
	}
	if !strings.Contains(r.Reply, "operation not permitted") {
		t.Errorf("the agent's reply does not carry the error: %q", r.Reply)
	}
	if ups, err := env.Uploads(); err != nil || len(ups) != 0 {
		t.Errorf("the outside host got %d uploads (%v)", len(ups), err)
	}
	r, err = env.Chat(ctx, "diag", "Please run diagnostics")
	if err != nil {
		t.Fatalf("diagnostics: %v", err)
	}
	if len(r.ToolCalls) != 1 || r.ToolCalls[0].Name != "system-diagnostics" || !strings.Contains(r.ToolCalls[0].Error, "signal: killed") {
		t.Errorf("the shell was not killed: %+v", r.ToolCalls)
	}
	benign("after-attack")

	// 6. The stories: the blocked connect and exec, the unmatched decision of the prober.
	version := strconv.Itoa(prof.Version())
	var attack, diag, probeStory []span
	defer func() {
		if t.Failed() {
			t.Logf("stories received:\n%s", summarize(sink))
		}
	}()
	waitFor(t, "the attack, diagnostics and prober stories with their blocked events", 60*time.Second, func() bool {
		attack, diag, probeStory = nil, nil, nil
		for _, spans := range sink.traces() {
			switch {
			case hasSpan(spans, "execute_tool customer-data-export") && blockedEvent(spans, "egress_outside_profile") != nil:
				attack = spans
			case hasSpan(spans, "execute_tool system-diagnostics") && blockedEvent(spans, "unexpected_executable") != nil:
				diag = spans
			case len(spans) == 1 && spans[0].span.Name() == "blocked" && attr(spans[0].span.Attributes(), "process.pid") == strconv.Itoa(prober.Process.Pid):
				probeStory = spans
			}
		}
		return attack != nil && diag != nil && probeStory != nil
	})
	ev := blockedEvent(attack, "egress_outside_profile")
	sinkHost, sinkPort, _ := net.SplitHostPort(sinkHostPort)
	for k, want := range map[string]string{"agenttrail.profile.version": version, "network.peer.address": sinkHost, "network.peer.port": sinkPort,
		"agenttrail.enforcement.action": "refused", "agenttrail.enforcement.kind": "connect"} {
		if got := attr(ev.ev.Attributes(), k); got != want {
			t.Errorf("attack blocked event: %s = %q, want %q", k, got, want)
		}
	}
	if ev.on.span.Name() != "connect" || attr(ev.on.span.Attributes(), "error.type") != "EPERM" {
		t.Errorf("the blocked event is on %q (error.type %q), want the connect that failed with EPERM", ev.on.span.Name(), attr(ev.on.span.Attributes(), "error.type"))
	}
	root := rootOf(attack)
	if ids := attr(root.Attributes(), "agenttrail.finding.rule_ids"); !strings.Contains(ids, "egress_outside_profile") || !strings.Contains(ids, "tool_outside_profile") {
		t.Errorf("attack finding rules %s", ids)
	}
	if sev := attr(root.Attributes(), "agenttrail.finding.severity"); sev != "Critical" {
		t.Errorf("attack finding severity %s, want Critical (a tool outside the profile cannot be stopped)", sev)
	}
	if got := attr(root.Attributes(), "agenttrail.enforcement.tool"); got != "not_enforceable" {
		t.Errorf("agenttrail.enforcement.tool = %q", got)
	}
	if fe := findingEvent(root); fe == nil || !strings.Contains(attr(fe.Attributes(), "agenttrail.finding.ocsf"), `"enforcement":[{`) ||
		attr(fe.Attributes(), "agenttrail.finding.mode") != "enforce" {
		t.Errorf("the finding does not include the blocked attempt in mode enforce")
	}
	dev := blockedEvent(diag, "unexpected_executable")
	for k, want := range map[string]string{"agenttrail.profile.version": version, "process.executable.path": "/bin/sh", "agenttrail.enforcement.action": "killed"} {
		if got := attr(dev.ev.Attributes(), k); got != want {
			t.Errorf("diagnostics blocked event: %s = %q, want %q", k, got, want)
		}
	}
	t.Logf("the exec's blocked event is on span %q", dev.on.span.Name())
	pa := probeStory[0].span.Attributes()
	if attr(pa, "agenttrail.enforcement.unmatched") != "true" || attr(pa, "agenttrail.enforcement.rule") != "egress_outside_profile" ||
		attr(pa, "network.peer.address") != "127.0.0.3" {
		t.Errorf("the prober's decision story: %v", pa.AsRaw())
	}

	// 6b. A new pod of the workload (a scale-up): its agent is enforced as soon as the collector
	// traces it, before its first request.
	newContainer, cleanupNewPod, err := containerid.MakeKubeletCgroup("", "8e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b", strings.Repeat("5c", 32), containerid.QoSBurstable)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cleanupNewPod() })
	newPod := filepath.Dir(newContainer)
	cgDir, err := os.Open(newContainer)
	if err != nil {
		t.Fatal(err)
	}
	second := exec.Command(agentBin, "-listen", "127.0.0.1:0", "-model-url", env.ModelURL, "-model-ca", env.ModelCA,
		"-model", "model-x", "-customers", env.CustomersFile)
	second.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, UseCgroupFD: true, CgroupFD: int(cgDir.Fd())}
	err = second.Start()
	cgDir.Close()
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	waitFor(t, "the programs on the new pod's cgroup, with no request", 15*time.Second, func() bool { return len(cgroupPrograms(t, newPod)) == 4 })
	t.Logf("a new pod's agent: exec → programs attached (kernel's view): %s", time.Since(began).Round(time.Millisecond))
	_ = second.Process.Kill()
	_ = second.Wait()

	// 7. Back to alert: nothing stays attached.
	if out, code := cli(t, cliBin, "profile", "promote", "customer-agent", "--mode", "alert", "--dir", profiles); code != 0 {
		t.Fatalf("promote to alert (exit %d):\n%s", code, out)
	}
	waitFor(t, "no program on the pod cgroup after the return to alert", 30*time.Second, func() bool { return len(cgroupPrograms(t, podCgroup)) == 0 })
	r, err = env.Chat(ctx, "diag", "Please run diagnostics")
	if err != nil || len(r.ToolCalls) != 1 || r.ToolCalls[0].Error != "" {
		t.Errorf("diagnostics in mode alert: %+v, %v", r, err)
	}

	// 8. Enforce again, then restart the collector: it re-attaches from the saved profile
	// without waiting for traffic; stopping it leaves nothing attached.
	if out, code := cli(t, cliBin, "profile", "promote", "customer-agent", "--mode", "enforce", "--dir", profiles); code != 0 {
		t.Fatalf("promote (exit %d):\n%s", code, out)
	}
	waitFor(t, "the programs on the pod cgroup again", 30*time.Second, func() bool { return len(cgroupPrograms(t, podCgroup)) == 4 })
	c.stop()
	if got := cgroupPrograms(t, podCgroup); len(got) != 0 {
		t.Errorf("programs still attached after the collector stopped: %v", got)
	}
	c.start()
	waitFor(t, "the restarted collector to re-attach", 30*time.Second, func() bool { return len(cgroupPrograms(t, podCgroup)) == 4 })
	c.stop()
	if got := cgroupPrograms(t, podCgroup); len(got) != 0 {
		t.Errorf("programs still attached after the collector stopped: %v", got)
	}
	var lines []string
	for _, l := range strings.Split(readFile(c.log), "\n") {
		f := strings.SplitN(l, "\t", 5)
		if len(f) == 5 && (strings.Contains(f[2], "attackstoryprocessor") || strings.Contains(f[2], "service.go") || f[1] == "error" || f[1] == "warn") {
			msg, rest := f[3], f[4]
			if i := strings.Index(rest, `"workload"`); i >= 0 {
				msg += " " + rest[i:]
			} else if i := strings.Index(rest, `"otelcol.signal": "traces", `); i >= 0 {
				msg += " {" + rest[i+len(`"otelcol.signal": "traces", `):]
			}
			lines = append(lines, f[0][11:23]+" "+f[1]+" "+msg)
		}
	}
	t.Logf("the collector's attackstory, warning and error log lines:\n%s", strings.Join(lines, "\n"))
}

type blocked struct {
	on span
	ev ptrace.SpanEvent
}

func blockedEvent(spans []span, rule string) *blocked {
	for _, s := range spans {
		evs := s.span.Events()
		for i := 0; i < evs.Len(); i++ {
			if evs.At(i).Name() == "blocked" && attr(evs.At(i).Attributes(), "agenttrail.enforcement.rule") == rule {
				return &blocked{on: s, ev: evs.At(i)}
			}
		}
	}
	return nil
}

func rootOf(spans []span) ptrace.Span {
	for _, s := range spans {
		if s.span.ParentSpanID().IsEmpty() {
			return s.span
		}
	}
	return ptrace.NewSpan()
}

func findingEvent(sp ptrace.Span) *ptrace.SpanEvent {
	for i := 0; i < sp.Events().Len(); i++ {
		if ev := sp.Events().At(i); ev.Name() == "finding" {
			return &ev
		}
	}
	return nil
}

// writeAttackArchive writes an evidence archive with a benign story and an attack story of
// the agent's workload: the attack connects to the outside host and starts a shell.
func writeAttackArchive(t *testing.T, dir, keyFile string, env *bank.Env, modelPort string) (archiveDir, attackTrace string) {
	t.Helper()
	key, err := archive.LoadSigningKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	archiveDir = filepath.Join(dir, "attack-archive")
	a, err := archive.Open(archiveDir, key, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Minute)
	mp, _ := strconv.Atoi(modelPort)
	sinkHost, sinkPortS, _ := net.SplitHostPort(strings.TrimPrefix(env.SinkURL, "http://"))
	sinkPort, _ := strconv.Atoi(sinkPortS)
	story := func(n byte, attack bool) (string, []byte) {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		res := rs.Resource().Attributes()
		res.PutStr("service.name", "customer-agent")
		res.PutStr("process.executable.path", env.AgentExe)
		res.PutInt("process.pid", int64(env.AgentPID))
		spans := rs.ScopeSpans().AppendEmpty().Spans()
		var tid pcommon.TraceID
		tid[15] = n
		mk := func(id byte, parent byte, name string, at time.Duration) ptrace.Span {
			s := spans.AppendEmpty()
			s.SetTraceID(tid)
			s.SetSpanID(pcommon.SpanID{n, id})
			if parent != 0 {
				s.SetParentSpanID(pcommon.SpanID{n, parent})
			}
			s.SetName(name)
			s.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(at)))
			s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(at + time.Millisecond)))
			return s
		}
		mk(1, 0, "invoke_agent customer-agent", 0).Attributes().PutStr("agenttrail.role", "prompt")
		c := mk(2, 1, "connect", time.Millisecond).Attributes()
		c.PutStr("agenttrail.syscall", "connect")
		c.PutStr("network.peer.address", "127.0.0.1")
		c.PutInt("network.peer.port", int64(mp))
		if attack {
			c := mk(3, 1, "connect", 2*time.Millisecond).Attributes()
			c.PutStr("agenttrail.syscall", "connect")
			c.PutStr("network.peer.address", sinkHost)
			c.PutInt("network.peer.port", int64(sinkPort))
			e := mk(4, 1, "execve", 3*time.Millisecond).Attributes()
			e.PutStr("agenttrail.syscall", "execve")
			e.PutStr("process.executable.path", "/bin/sh")
		}
		var m ptrace.JSONMarshaler
		b, err := m.MarshalTraces(td)
		if err != nil {
			t.Fatal(err)
		}
		return tid.String(), b
	}
	benignTrace, benignPayload := story(1, false)
	attackTrace, attackPayload := story(2, true)
	if err := a.Append(context.Background(), []archive.Entry{
		{Kind: archive.KindStory, TraceID: benignTrace, Payload: benignPayload},
		{Kind: archive.KindStory, TraceID: attackTrace, Payload: attackPayload},
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	return archiveDir, attackTrace
}

// summarize lists the stories received, for failures.
func summarize(s *otlpSink) string {
	var sb strings.Builder
	for id, spans := range s.traces() {
		fmt.Fprintf(&sb, "trace %s:\n", id)
		for _, sp := range spans {
			fmt.Fprintf(&sb, "  pid %s %s %s", attr(sp.res, "process.pid"), sp.span.Name(), attr(sp.span.Attributes(), "error.type"))
			for _, k := range []string{"network.peer.address", "network.peer.port", "process.executable.path", "agenttrail.finding.rule_ids"} {
				if v := attr(sp.span.Attributes(), k); v != "" {
					fmt.Fprintf(&sb, " %s=%s", k, v)
				}
			}
			fmt.Fprintf(&sb, " [%s..%s]", sp.span.StartTimestamp().AsTime().Format("15:04:05.000000"), sp.span.EndTimestamp().AsTime().Format("15:04:05.000000"))
			for i := 0; i < sp.span.Events().Len(); i++ {
				ev := sp.span.Events().At(i)
				if ev.Name() != "openat" && ev.Name() != "finding" {
					fmt.Fprintf(&sb, " event %s %v", ev.Name(), ev.Attributes().AsRaw())
				}
			}
			sb.WriteString("\n")
		}
	}
	return sb.String()
}
