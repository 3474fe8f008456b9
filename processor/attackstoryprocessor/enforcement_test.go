package attackstoryprocessor

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/agenttrail/agenttrail/internal/enforce"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/enforcement"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// fakeKernel stands in for internal/enforce in the processor's tests.
type fakeKernel struct {
	mu       sync.Mutex
	applied  []enforce.Policy
	removed  []string
	attached map[string]enforce.Policy
	applyErr error
	closed   bool
	ch       chan enforce.Decision
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{attached: map[string]enforce.Policy{}, ch: make(chan enforce.Decision, 16)}
}

func (k *fakeKernel) Apply(p enforce.Policy) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.applyErr != nil {
		return k.applyErr
	}
	k.applied = append(k.applied, p)
	k.attached[p.Workload] = p
	return nil
}

func (k *fakeKernel) Remove(w string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.removed = append(k.removed, w)
	delete(k.attached, w)
}

func (k *fakeKernel) Decisions() <-chan enforce.Decision { return k.ch }

func (k *fakeKernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		k.closed = true
		clear(k.attached)
		close(k.ch)
	}
	return nil
}

func (k *fakeKernel) nAttached() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.attached)
}

const (
	testPodUID      = "5e6f7a8b-1c2d-4e3f-9a0b-c1d2e3f4a5b6"
	testContainerID = "3f9c2a3f9c2a3f9c2a3f9c2a3f9c2a3f9c2a3f9c2a3f9c2a3f9c2a3f9c2ab7e1"
)

// node is a fake node: a proc root with the agent's process and a cgroup root with its pod.
type node struct {
	procRoot, cgroupRoot, pod string
}

// newNode makes process pid run exe in a kubelet-style container cgroup (cgroupPath "" ) or
// in cgroupPath.
func newNode(t *testing.T, pid, exe, cgroupPath string) node {
	t.Helper()
	n := node{procRoot: t.TempDir(), cgroupRoot: t.TempDir()}
	podRel := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(testPodUID, "-", "_") + ".slice"
	if cgroupPath == "" {
		cgroupPath = podRel + "/cri-containerd-" + testContainerID + ".scope"
	}
	dir := filepath.Join(n.procRoot, pid)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.Symlink(exe, filepath.Join(dir, "exe")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::"+cgroupPath+"\n"), 0o644))
	cg := filepath.Join(n.cgroupRoot, cgroupPath)
	require.NoError(t, os.MkdirAll(cg, 0o755))
	for d := cg; d != n.cgroupRoot; d = filepath.Dir(d) {
		require.NoError(t, os.WriteFile(filepath.Join(d, "cgroup.procs"), nil, 0o644))
	}
	n.pod = filepath.Join(n.cgroupRoot, podRel)
	return n
}

// enforceHarness is the harness with a fake kernel and a fake node.
func newEnforceHarness(t *testing.T, cfg *Config, k *fakeKernel, kernelErr error) *harness {
	t.Helper()
	return newHarnessWith(t, cfg, func(p *storyProcessor) {
		p.enf.NewKernel = func() (enforcement.Kernel, error) {
			if kernelErr != nil {
				return nil, kernelErr
			}
			return k, nil
		}
	})
}

// completeProfile writes a complete profile of the bank agent: the model endpoint, no exec.
func completeProfile(t *testing.T, dir, mode string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o750))
	modeLine := ""
	if mode != "" {
		modeLine = "mode: " + mode + "\n"
	}
	y := `format: agenttrail.profile/v1
workload:
  process.executable.path: /srv/bank/bin/customer-agent
  service.name: customer-agent
status: complete
` + modeLine + `version: 3
stories: 20
tools: [accounts-summary, recent-transactions, transfers-low-value]
executables: []
files: []
destinations:
  - {address: 127.0.0.1, cidr: 127.0.0.0/24, port: 18443}
data_volume: {connects_p95: 2, connects_max: 2, bytes_sent_p95: 0, bytes_sent_max: 0, connects_samples: [], bytes_sent_samples: []}
`
	path := filepath.Join(dir, profile.FileName(bankWorkloadKey))
	require.NoError(t, os.WriteFile(path, []byte(y), 0o640))
	return path
}

func enforceConfig(t *testing.T, n node) *Config {
	cfg := createDefaultConfig()
	cfg.ProfilesDir = filepath.Join(t.TempDir(), "profiles")
	cfg.Enforcement = EnforcementConfig{CgroupRoot: n.cgroupRoot, ProcRoot: n.procRoot}
	return cfg
}

// TestKernelPolicy: what the kernel enforces of a profile and the declared boundaries.
func TestKernelPolicy(t *testing.T) {
	d := &profile.Data{
		Destinations: []profile.Dest{
			{Address: "127.0.0.1", CIDR: "127.0.0.0/24", Port: 18443},
			{CIDR: "10.1.2.0/24"},
			{Address: "2001:db8::1", CIDR: "2001:db8::/64", Port: 443},
			{Address: "192.0.2.9", Port: 25},
			{Host: "api.example.com", Port: 443},
		},
		Executables: []string{"/usr/bin/git"},
	}
	k := profile.BuildKernelPolicy(d, []string{"198.51.100.7:8080", "203.0.113.0/24", "*:53", "*.internal:443", "bad entry"})
	var got []string
	for _, x := range k.Dests {
		got = append(got, x.Prefix.String()+":"+story.Itoa(int(x.Port)))
	}
	assert.Equal(t, []string{"0.0.0.0/0:53", "10.1.2.0/24:0", "127.0.0.0/24:18443", "192.0.2.9/32:25", "198.51.100.7/32:8080",
		"2001:db8::/64:443", "203.0.113.0/24:0", "::/0:53"}, got)
	assert.Len(t, k.Unenforceable, 2, "the host names of the profile and of allowed_destinations")
	for _, c := range []struct {
		addr string
		port int
		want bool
	}{
		{"127.0.0.1", 18443, true}, {"127.0.0.2", 18443, true}, {"127.0.0.2", 19999, false}, {"127.0.1.1", 18443, false},
		{"10.1.2.200", 1, true}, {"10.1.3.1", 1, false}, {"2001:db8::7", 443, true}, {"2001:db8:1::7", 443, false},
		{"::ffff:127.0.0.1", 18443, true}, {"192.0.2.9", 25, true}, {"192.0.2.9", 26, false}, {"8.8.8.8", 53, true},
		{"198.51.100.7", 8080, true}, {"203.0.113.99", 9, true},
	} {
		assert.Equal(t, c.want, k.AllowsDestination(netip.MustParseAddr(c.addr), c.port), "%s:%d", c.addr, c.port)
	}
	assert.True(t, k.AllowsExecutable("/usr/bin/git"))
	assert.False(t, k.AllowsExecutable("/bin/sh"))
	assert.NotEqual(t, k.Hash(3), k.Hash(4))
}

// TestEnforceAttachesAndMatchesDecisions: a complete profile in mode enforce is attached to
// the pod cgroup of the story's process; decisions land as "blocked" events on the matching
// connect and execve spans; a decision of no story becomes a story of its own after the grace.
func TestEnforceAttachesAndMatchesDecisions(t *testing.T) {
	n := newNode(t, "4242", "/srv/bank/bin/customer-agent", "")
	cfg := enforceConfig(t, n)
	completeProfile(t, cfg.ProfilesDir, "enforce")
	k := newFakeKernel()
	h := newEnforceHarness(t, cfg, k, nil)
	assert.Equal(t, 0, k.nAttached(), "the cgroup is not known before a story")

	b := benignStories(1)
	h.replay(b.traces(), false)
	h.settle()
	h.output()
	require.Len(t, k.applied, 1)
	pol := k.applied[0]
	assert.Equal(t, n.pod, pol.Cgroup, "the pod's cgroup, not the container's")
	assert.Equal(t, 3, pol.ProfileVersion)
	assert.True(t, pol.EnforceExec)
	assert.Empty(t, pol.AllowedExecutables)
	assert.Equal(t, []enforce.Destination{{Prefix: netip.MustParsePrefix("127.0.0.0/24"), Port: 18443}}, pol.AllowedDestinations)
	assert.Equal(t, int64(1), h.gauge("agenttrail.enforcement.attached_workloads"))

	// the attack, with a shell, enforced
	at := 20000.0
	b = newTraceBuilder()
	p := b.hostProcess("customer-agent", 4242)
	_, tool := attackStory(p, traceID(10), at)
	p.execve(tool, at+620, at+620.2, "/bin/sh", "-c", "uptime")
	conn := enforce.Decision{Time: ts(at + 610.1).AsTime(), Workload: pol.Workload, ProfileVersion: 3, Kind: enforce.KindConnect,
		PID: 4242, TID: 4243, Destination: netip.MustParseAddrPort("127.0.0.2:19999"), Protocol: "tcp"}
	exec := enforce.Decision{Time: ts(at + 620.1).AsTime(), Workload: pol.Workload, ProfileVersion: 3, Kind: enforce.KindExec,
		PID: 5001, PPID: 4242, Executable: "/bin/sh"}
	stray := enforce.Decision{Time: ts(at + 100).AsTime(), Workload: pol.Workload, ProfileVersion: 3, Kind: enforce.KindConnect,
		PID: 777, Destination: netip.MustParseAddrPort("203.0.113.5:443"), Protocol: "tcp"}
	h.clock.Set(ts(at).AsTime())
	for _, d := range []enforce.Decision{conn, exec, stray} {
		k.ch <- d
	}
	require.Eventually(t, func() bool {
		h.p.enf.Mu.Lock()
		defer h.p.enf.Mu.Unlock()
		return len(h.p.enf.Pending) == 3
	}, 5*time.Second, time.Millisecond)
	h.replay(b.traces(), false)
	h.settle()
	out := h.output()

	events := map[string]ptrace.SpanEvent{}
	var root ptrace.Span
	var strayStory []ptrace.Span
	forEachSpan(out, func(s ptrace.Span) {
		if s.ParentSpanID().IsEmpty() && s.Name() == "invoke_agent customer-agent" {
			root = s
		}
		if s.Name() == enforcement.BlockedEventName {
			strayStory = append(strayStory, s)
		}
		for i := 0; i < s.Events().Len(); i++ {
			if ev := s.Events().At(i); ev.Name() == enforcement.BlockedEventName {
				events[s.Name()] = ev
			}
		}
	})
	require.Contains(t, events, "connect", "the refused connect carries the blocked event")
	require.Contains(t, events, "execve", "the killed exec carries the blocked event")
	c := events["connect"].Attributes().AsRaw()
	assert.Equal(t, map[string]any{enforcement.AttrEnforcementRule: story.RuleEgressOutsideProfile, enforcement.AttrProfileVersion: int64(3), enforcement.AttrEnforcementAction: story.ActionRefused,
		enforcement.AttrEnforcementKind: "connect", story.AttrProcessPID: int64(4242), story.AttrPeerAddress: "127.0.0.2", story.AttrPeerPort: int64(19999), enforcement.AttrNetworkTransport: "tcp"}, c)
	x := events["execve"].Attributes().AsRaw()
	assert.Equal(t, story.RuleUnexpectedExecutable, x[enforcement.AttrEnforcementRule])
	assert.Equal(t, story.ActionKilled, x[enforcement.AttrEnforcementAction])
	assert.Equal(t, "/bin/sh", x[story.AttrProcessExecutable])

	sev, _ := root.Attributes().Get(story.AttrFindingSeverity)
	assert.Equal(t, "Critical", sev.Str(), "a tool outside the profile cannot be stopped: Critical in mode enforce")
	tv, _ := root.Attributes().Get(enforcement.AttrEnforcementTool)
	assert.Equal(t, enforcement.ToolNotEnforceable, tv.Str())
	fs := findingsOf(t, out)
	require.Len(t, fs, 1)
	un := fs[0]["unmapped"].(map[string]any)
	assert.Equal(t, "enforce", un["mode"])
	assert.Equal(t, enforcement.ToolNotEnforceable, un["tool_enforcement"])
	assert.Len(t, un["enforcement"], 2)
	assert.Contains(t, fs[0]["message"], "")
	var texts []string
	for _, r := range un["rules"].([]any) {
		for _, e := range r.(map[string]any)["evidence"].([]any) {
			texts = append(texts, e.(string))
		}
	}
	assert.Contains(t, strings.Join(texts, "\n"), "blocked: connect 127.0.0.2:19999: refused by the kernel with EPERM")
	assert.Contains(t, strings.Join(texts, "\n"), "blocked: exec /bin/sh: process 5001 killed by the kernel")

	require.Len(t, strayStory, 1, "the decision of no story is a story of its own")
	sa := strayStory[0].Attributes().AsRaw()
	assert.Equal(t, true, sa[enforcement.AttrEnforcementUnmatched])
	assert.Equal(t, "203.0.113.5", sa[story.AttrPeerAddress])
	assert.Equal(t, int64(777), sa[story.AttrProcessPID])
	assert.Equal(t, int64(1), h.counter("agenttrail.enforcement.unmatched_decisions", "", ""))
	assert.Equal(t, int64(3), h.counter("agenttrail.enforcement.decisions", "workload", bankWorkloadKey))
	assert.Equal(t, int64(1), h.counter("agenttrail.enforcement.decisions", "kind", "exec"))
}

// TestDecisionWaitsForItsStory: a decision inside the root of an earlier story but whose own
// story (with its span) is still in flight is not put on the earlier story's head.
func TestDecisionWaitsForItsStory(t *testing.T) {
	st := func(tid int, at float64, withConnect bool) *story.Facts {
		b := newTraceBuilder()
		p := b.hostProcess("customer-agent", 4242)
		root := p.prompt(traceID(tid), at, at+100, "hi")
		if withConnect {
			p.connect(root, at+50, at+50.2, "127.0.0.2", 19999)
		}
		buf := story.NewBuffer(limitsOf(createDefaultConfig()), nil)
		buf.AddBatch(b.traces(), baseTime)
		return story.Extract(buf.Stories[traceID(tid)])
	}
	e := enforcement.New(enforcerSettingsOf(createDefaultConfig()), nil, zap.NewNop(), nil, newFakeClock(baseTime))
	d := enforce.Decision{Time: ts(50.1).AsTime(), Kind: enforce.KindConnect, PID: 4242, Destination: netip.MustParseAddrPort("127.0.0.2:19999")}
	e.Pending = []*enforcement.Pending{{D: d}}
	overlapping := st(1, 0, false)
	got := e.Claim([]*story.Facts{overlapping}, func(int64, time.Time) bool { return true })
	assert.Empty(t, got[0], "another story in flight may hold the span")
	got = e.Claim([]*story.Facts{overlapping, st(2, 0, true)}, func(int64, time.Time) bool { return false })
	assert.Empty(t, got[0])
	require.Len(t, got[1], 1, "a span match wins over a head match")
	assert.False(t, got[1][0].OnHead)
	e.Pending = []*enforcement.Pending{{D: d}}
	got = e.Claim([]*story.Facts{overlapping}, func(int64, time.Time) bool { return false })
	require.Len(t, got[0], 1)
	assert.True(t, got[0][0].OnHead, "no span: the head of the story whose root contains it")
}

// TestEnforceAtProcessStart: a new process of a workload in mode enforce (a new pod) is
// enforced when the receiver says it is traced, before its first story; the process.start span
// is passed on as it came, is no story, and teaches the profile nothing. A process of a workload
// without a profile creates none.
func TestEnforceAtProcessStart(t *testing.T) {
	n := newNode(t, "4242", "/srv/bank/bin/customer-agent", "")
	cfg := enforceConfig(t, n)
	path := completeProfile(t, cfg.ProfilesDir, "enforce")
	before := readFile(t, path)
	k := newFakeKernel()
	h := newEnforceHarness(t, cfg, k, nil)

	b := newTraceBuilder()
	b.hostProcess("customer-agent", 4242).started(traceID(1), 0)
	b.hostProcess("other-agent", 5151).started(traceID(2), 10)
	h.replay(b.traces(), false)
	require.Len(t, k.applied, 1, "attached at the process start")
	assert.Equal(t, n.pod, k.applied[0].Cgroup)
	out := h.output()
	require.Equal(t, 2, out.SpanCount(), "both process.start spans passed on")
	for i := 0; i < out.ResourceSpans().Len(); i++ {
		sp := out.ResourceSpans().At(i).ScopeSpans().At(0).Spans().At(0)
		assert.Equal(t, "process.start", sp.Name())
		assert.Equal(t, 0, sp.Events().Len())
	}
	h.settle()
	assert.Zero(t, h.counter("agenttrail.attackstory.stories", "", ""), "no story")
	assert.Empty(t, findingsOf(t, h.output()))
	h.p.emit(context.Background(), true)
	assert.Equal(t, before, readFile(t, path), "the profile learned nothing")
	files, errs := profile.ReadDir(cfg.ProfilesDir)
	require.Empty(t, errs)
	assert.Len(t, files, 1, "no profile for the workload never seen in a story")
}

// TestEnforceFailSafe: when the programs cannot be attached, the workload stays in mode alert
// and the reason is logged once at error level.
func TestEnforceFailSafe(t *testing.T) {
	for name, c := range map[string]struct {
		kernelErr, applyErr error
		want                string
	}{
		"no kernel":   {kernelErr: errors.New("enforce: create decision ring buffer: operation not permitted"), want: "kernel enforcement is unavailable"},
		"apply fails": {applyErr: errors.New("attach cgroup_inet4_connect: invalid argument"), want: "Cannot attach the enforcement programs"},
		"root cgroup": {want: "Cannot enforce the cgroup of a process"},
	} {
		t.Run(name, func(t *testing.T) {
			cgroupPath := ""
			if c.kernelErr == nil && c.applyErr == nil {
				cgroupPath = "/"
			}
			n := newNode(t, "4242", "/srv/bank/bin/customer-agent", cgroupPath)
			cfg := enforceConfig(t, n)
			completeProfile(t, cfg.ProfilesDir, "enforce")
			k := newFakeKernel()
			k.applyErr = c.applyErr
			h := newEnforceHarness(t, cfg, k, c.kernelErr)
			b := benignStories(1)
			attackStory(b.procs[0], traceID(9), 9000)
			h.replay(b.traces(), false)
			h.settle()
			out := h.output()
			assert.Equal(t, 0, k.nAttached())
			errs := h.logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessageSnippet(c.want).All()
			require.Len(t, errs, 1, "logged once, at error level: %v", h.logs.All())
			if cgroupPath == "/" {
				assert.Contains(t, errs[0].ContextMap()["error"], "root cgroup")
			}
			fs := findingsOf(t, out)
			require.Len(t, fs, 1)
			assert.Equal(t, "alert", fs[0]["unmapped"].(map[string]any)["mode"], "the workload stays in mode alert")
			assert.Nil(t, fs[0]["unmapped"].(map[string]any)["tool_enforcement"])
		})
	}
}

// TestModeReloadFromYAML: `promote` writes mode into the profile; the periodic reload attaches
// or detaches; Shutdown detaches everything; a restart re-attaches from the saved profile
// before any story.
func TestModeReloadFromYAML(t *testing.T) {
	n := newNode(t, "4242", "/srv/bank/bin/customer-agent", "")
	cfg := enforceConfig(t, n)
	cfg.Workloads = []WorkloadConfig{{Match: map[string]string{"service.name": "customer-agent"}, Mode: profile.ModeAlert}}
	path := completeProfile(t, cfg.ProfilesDir, "")
	k := newFakeKernel()
	h := newEnforceHarness(t, cfg, k, nil)
	h.replay(benignStories(1).traces(), false)
	h.settle()
	assert.Empty(t, k.applied, "mode alert from the configuration")

	tick := func() {
		h.clock.Advance(cfg.ProfilesSaveInterval + time.Second)
		h.p.emit(context.Background(), false)
	}
	prev, err := profile.SetMode(path, profile.ModeEnforce)
	require.NoError(t, err)
	assert.Empty(t, prev)
	tick()
	require.Len(t, k.applied, 1, "the reload attaches: the cgroup is known from the earlier stories")
	assert.Equal(t, 1, k.nAttached())
	b, _ := os.ReadFile(path)
	assert.Contains(t, string(b), "status: complete\nmode: enforce")

	_, err = profile.SetMode(path, profile.ModeAlert)
	require.NoError(t, err)
	tick()
	assert.Equal(t, 0, k.nAttached(), "back to alert: detached")
	assert.Len(t, k.removed, 1)
	assert.Equal(t, int64(0), h.gauge("agenttrail.enforcement.attached_workloads"))

	_, err = profile.SetMode(path, profile.ModeEnforce)
	require.NoError(t, err)
	tick()
	assert.Equal(t, 1, k.nAttached())
	require.NoError(t, h.p.Shutdown(context.Background()))
	assert.True(t, k.closed, "Shutdown closes the kernel: every link is released")

	// a restart: attached at Start from the saved profile and state, before any story
	k2 := newFakeKernel()
	newEnforceHarness(t, cfg, k2, nil)
	assert.Equal(t, 1, k2.nAttached())
	assert.Equal(t, n.pod, k2.applied[0].Cgroup)
}

func TestSetProfileMode(t *testing.T) {
	dir := t.TempDir()
	path := completeProfile(t, dir, "")
	b, _ := os.ReadFile(path)
	learning := filepath.Join(dir, "learning.yaml")
	require.NoError(t, os.WriteFile(learning, []byte(strings.Replace(string(b), "status: complete", "status: learning", 1)), 0o640))
	_, err := profile.SetMode(learning, profile.ModeEnforce)
	require.ErrorIs(t, err, profile.ErrNotComplete)
	_, err = profile.SetMode(learning, profile.ModeAlert)
	require.NoError(t, err, "alert and observe need no complete profile")
	_, err = profile.SetMode(path, "block")
	require.Error(t, err)
	prev, err := profile.SetMode(path, profile.ModeEnforce)
	require.NoError(t, err)
	assert.Empty(t, prev)
	f, err := profile.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "enforce", f.Mode())
	prev, err = profile.SetMode(path, profile.ModeObserve)
	require.NoError(t, err)
	assert.Equal(t, "enforce", prev)
	after, _ := os.ReadFile(path)
	assert.Equal(t, strings.Replace(string(b), "status: complete\n", "status: complete\nmode: observe # observe | alert | enforce: set by agenttrail profile promote; overrides the configuration\n", 1), string(after),
		"only the mode line is added; comments and the rest stay")
	_, err = profile.Parse([]byte(strings.Replace(string(b), "status: complete\n", "status: complete\nmode: block\n", 1)))
	require.ErrorContains(t, err, `line 6: mode: "block" is not one of observe, alert, enforce`)
}

// gauge reads the last value of a gauge of the processor's self-telemetry.
func (h *harness) gauge(name string) int64 {
	m, err := h.tel.GetMetric(name)
	if err != nil {
		return -1
	}
	var v int64
	for _, dp := range m.Data.(metricdata.Gauge[int64]).DataPoints {
		v = dp.Value
	}
	return v
}
