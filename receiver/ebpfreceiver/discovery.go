package ebpfreceiver

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"

	"github.com/agenttrail/agenttrail/internal/containerid"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/tls"
)

// Discovery (discover.enabled): processes nobody listed as a target whose traffic is an LLM API
// call become discovered workloads. The TLS and plain-HTTP probes only read the traffic of
// traced processes (the kernel programs look the process up in traced_processes first), so a
// process that could make such a call — a Go program, a process that maps an OpenSSL library,
// a program that embeds OpenSSL (Node, Bun) — is traced on probation: its records are read
// like a target's, but its spans are dropped until one of them is an LLM API call (an
// inference span, from TLS or plain HTTP). Then the process is a discovered workload: named,
// its spans sent on from that batch (the call's span included), traced until it exits (or
// until ttl passes without a call). A process whose probation ends without a call is no longer
// traced and not put on probation again for discoveryRecheck probations.

// DiscoverConfig bounds discovery.
type DiscoverConfig struct {
	// Enabled turns discovery on.
	Enabled bool `mapstructure:"enabled"`
	// MaxWorkloads bounds the discovered processes traced at once.
	MaxWorkloads int `mapstructure:"max_workloads"`
	// MaxProbation bounds the processes traced on probation at once.
	MaxProbation int `mapstructure:"max_probation"`
	// Probation is how long a candidate is traced waiting for an LLM API call.
	Probation time.Duration `mapstructure:"probation"`
	// TTL: a discovered process that makes no LLM API call for this long is no longer traced;
	// 0 keeps it traced until it exits.
	TTL time.Duration `mapstructure:"ttl"`
	// ScanInterval is how often /proc is scanned for candidates.
	ScanInterval time.Duration `mapstructure:"scan_interval"`
}

func defaultDiscoverConfig() DiscoverConfig {
	return DiscoverConfig{MaxWorkloads: 32, MaxProbation: 64, Probation: 2 * time.Minute, ScanInterval: 10 * time.Second}
}

// Validate checks the bounds; nothing is checked when discovery is off.
func (c *DiscoverConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	switch {
	case c.MaxWorkloads < 1 || c.MaxWorkloads > 4096:
		return fmt.Errorf(`"discover.max_workloads" must be between 1 and 4096, got %d`, c.MaxWorkloads)
	case c.MaxProbation < 1 || c.MaxProbation > 4096:
		return fmt.Errorf(`"discover.max_probation" must be between 1 and 4096, got %d`, c.MaxProbation)
	case c.Probation < time.Second:
		return fmt.Errorf(`"discover.probation" must be at least 1s, got %v`, c.Probation)
	case c.TTL < 0:
		return fmt.Errorf(`"discover.ttl" must not be negative (0: until the process exits), got %v`, c.TTL)
	case c.TTL != 0 && c.TTL < c.Probation:
		return fmt.Errorf(`"discover.ttl" must be 0 or at least "discover.probation" (%v), got %v`, c.Probation, c.TTL)
	case c.ScanInterval < 100*time.Millisecond:
		return fmt.Errorf(`"discover.scan_interval" must be at least 100ms, got %v`, c.ScanInterval)
	}
	return nil
}

// discoveryRecheck: a process whose probation found no call is put on probation again after
// this many probations (an agent idle at its first look is found at a later one).
const discoveryRecheck = 10

// maxNewPerScan bounds the candidates one scan puts on probation: setting a process up
// (attaching its Go TLS probes, reading its mappings for call stacks) takes tens of
// milliseconds on the read loop, which reads no record meanwhile; a node with many candidates
// has them put on probation over several scans.
const maxNewPerScan = 8

// maxMapsBytes bounds what is read of /proc/<pid>/maps to look for an OpenSSL library.
const maxMapsBytes = 1 << 20

// attrDiscovered marks the resource of a discovered workload's spans.
const attrDiscovered = "agenttrail.discovered"

type discoveryState uint8

const (
	stateProbation discoveryState = iota + 1
	stateDiscovered
	stateRejected // untraced: no call in probation, or ttl passed
)

type discoveredProc struct {
	state   discoveryState
	inode   probes.InodeKey // the executable's, to tell a reused pid
	since   time.Time       // probation start, or the last LLM call of a discovered one
	name    string
	parent  uint32 // a traced child's discovered (or probation) ancestor; 0 for a candidate
	recheck time.Time
}

type discovery struct {
	cfg    DiscoverConfig
	target *tracer.Target
	procs  map[uint32]*discoveredProc
	// candidate caches, by executable inode: could it make an LLM API call (Go, or OpenSSL
	// embedded)?
	exeCandidate map[probes.InodeKey]bool
	inventory    inventoryProvider // nil: no Kubernetes names
	nextScan     time.Time
	probation    int
	workloads    int

	processes metric.Int64Counter       // by outcome
	dropped   metric.Int64Counter       // by reason
	active    metric.Int64UpDownCounter // discovered processes traced now
	failures  metric.Int64Counter       // attach failures of its processes, by reason

	// phase is the step of setting a process up while a candidateScope is open: the reason of
	// what cannot be instrumented then.
	phase string
}

// Reasons of agenttrail.ebpf.discovery.attach_failures: the step of setting a discovery
// process up that failed.
const (
	candidateAttach       = "attach"        // attaching its program's probes
	candidateTraceProcess = "trace_process" // the kernel refused to trace it: not on probation
	candidateSetup        = "setup"         // a probe family could not instrument part of it
)

// startDiscovery adds the probation target and the instruments; the first scan runs at the
// first housekeeping.
func (g *registry) startDiscovery(host component.Host) error {
	d := &discovery{cfg: g.cfg.Discover, procs: map[uint32]*discoveredProc{}, exeCandidate: map[probes.InodeKey]bool{}}
	// The instruments exist with discovery off too (at 0): a dashboard tells "off" from "absent".
	m := g.tel.meter
	var err error
	if d.processes, err = m.Int64Counter("agenttrail.ebpf.discovery.processes",
		metric.WithDescription("Processes discovery looked at, by outcome: probation, discovered, rejected (no LLM API call in probation), expired (ttl)."),
		metric.WithUnit("{process}")); err != nil {
		return err
	}
	if d.dropped, err = m.Int64Counter("agenttrail.ebpf.discovery.dropped",
		metric.WithDescription("What discovery left out, by reason: max_probation, max_workloads (processes), probation_spans (spans of processes on probation)."),
		metric.WithUnit("{item}")); err != nil {
		return err
	}
	if d.failures, err = m.Int64Counter("agenttrail.ebpf.discovery.attach_failures",
		metric.WithDescription("What could not be instrumented in processes discovery traces (candidates, discovered workloads, their children), by reason: attach, trace_process, setup. Not a component status problem."),
		metric.WithUnit("{failure}")); err != nil {
		return err
	}
	if d.active, err = m.Int64UpDownCounter("agenttrail.ebpf.discovery.workloads",
		metric.WithDescription("Discovered processes traced now."), metric.WithUnit("{process}")); err != nil {
		return err
	}
	if !g.cfg.Discover.Enabled {
		return nil
	}
	d.target = &tracer.Target{ID: uint32(len(g.targets) + 1), Config: TargetConfig{Name: "discovered"}}
	if id := g.cfg.KubernetesInventory; id != nil {
		if ext, ok := host.GetExtensions()[*id]; ok {
			if p, ok := ext.(inventoryProvider); ok && p.HasAPI() && p.Informers() != nil {
				d.inventory = p
			}
		}
	}
	g.targets = append(g.targets, d.target)
	g.discovery = d
	return nil
}

// scanDiscovery ends probations and ttls that passed, forgets processes gone, and puts new
// candidates on probation (at most max_probation at once).
func (g *registry) scanDiscovery(now time.Time) {
	d := g.discovery
	if d == nil || now.Before(d.nextScan) {
		return
	}
	d.nextScan = now.Add(d.cfg.ScanInterval)
	for pid, p := range d.procs {
		info, err := readProc(g.cfg.ProcRoot, pid)
		if err != nil || info.Inode != p.inode {
			g.forgetDiscovered(pid, p)
			continue
		}
		switch {
		case p.parent != 0:
		case p.state == stateProbation && now.Sub(p.since) >= d.cfg.Probation:
			g.untraceDiscovered(pid, p, now, "rejected")
		case p.state == stateDiscovered && d.cfg.TTL > 0 && now.Sub(p.since) >= d.cfg.TTL:
			g.logger.Info("a discovered LLM workload made no LLM API call for discover.ttl; it is no longer traced",
				zap.String("workload", p.name), zap.Uint32("pid", pid))
			g.untraceDiscovered(pid, p, now, "expired")
		case p.state == stateRejected && !p.recheck.IsZero() && !now.Before(p.recheck):
			g.forgetDiscovered(pid, p) // looked at again below
		}
	}
	if d.workloads >= d.cfg.MaxWorkloads {
		return // no room for what probation would find
	}
	pids, err := listPIDs(g.cfg.ProcRoot)
	if err != nil {
		g.logger.Warn("cannot list processes for discovery", zap.Error(err))
		return
	}
	self := uint32(os.Getpid())
	added := 0
	// The newest first (the highest pids, but for a wrap): a workload that just started is the
	// likeliest to be one nobody listed, and the scans that follow reach the older ones.
	slices.Sort(pids)
	slices.Reverse(pids)
	for _, pid := range pids {
		if pid == self || g.traced[pid] != nil || d.procs[pid] != nil {
			continue
		}
		if added == maxNewPerScan {
			break // the next scan goes on
		}
		info, err := readProc(g.cfg.ProcRoot, pid)
		if err != nil || !g.llmCandidate(info) {
			continue
		}
		if d.probation >= d.cfg.MaxProbation {
			d.dropped.Add(ctxBackground, 1, metric.WithAttributes(attribute.String("reason", "max_probation")))
			continue
		}
		g.trace(d.target, info, now)
		if g.traced[pid] == nil {
			continue // the kernel refused it: counted (trace_process)
		}
		d.procs[pid] = &discoveredProc{state: stateProbation, inode: info.Inode, since: now}
		d.probation++
		added++
		d.processes.Add(ctxBackground, 1, metric.WithAttributes(attribute.String("outcome", "probation")))
	}
}

// candidateScope opens, for a process of discovery's target (t), the scope in which what
// cannot be instrumented is counted in agenttrail.ebpf.discovery.attach_failures{reason=phase}
// and logged at info level instead of made a component status problem, and the tracers'
// warnings are written at debug level: nobody named these processes, and a candidate that
// cannot be read (a Python without a known frame layout, an unusual TLS library, a process that
// exited meanwhile) must not make the collector look unhealthy, on every node it runs on. It
// returns the function that closes the scope. Within an open scope it only sets the phase.
// Reader goroutine only. A tracer reports a file's problem once: a file first set up for a
// candidate is not reported again for a target's process that runs it later.
func (g *registry) candidateScope(t *tracer.Target, pid uint32, phase string) (end func()) {
	d := g.discovery
	if d == nil || t != d.target || g.problems == nil {
		return func() {}
	}
	d.phase = phase
	if g.problems.candidate != nil {
		return func() {}
	}
	g.problems.candidate = func(_ uint32, what string) { g.candidateProblem(pid, what) }
	g.problems.demote.Store(true)
	return func() {
		g.problems.candidate = nil
		g.problems.demote.Store(false)
	}
}

// candidatePhase moves an open candidateScope to the next step.
func (g *registry) candidatePhase(phase string) {
	if d := g.discovery; d != nil {
		d.phase = phase
	}
}

// candidateProblem counts and logs what could not be instrumented in a discovery process.
func (g *registry) candidateProblem(pid uint32, what string) {
	d := g.discovery
	d.failures.Add(ctxBackground, 1, metric.WithAttributes(attribute.String("reason", d.phase)))
	g.logger.Info("discovery: a process it traces could not be fully instrumented (counted, not a component problem)",
		zap.Uint32("pid", pid), zap.String("reason", d.phase), zap.String("what", what))
}

// demotingCore writes warnings at debug level while demote is set (a candidateScope is open):
// the tracers warn about what they cannot instrument, which for a discovery process
// candidateProblem already logs at info.
type demotingCore struct {
	zapcore.Core
	demote *atomic.Bool
}

func (c demotingCore) With(fields []zapcore.Field) zapcore.Core {
	return demotingCore{Core: c.Core.With(fields), demote: c.demote}
}

func (c demotingCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if ent.Level == zapcore.WarnLevel && c.demote.Load() {
		ent.Level = zapcore.DebugLevel
	}
	return c.Core.Check(ent, ce)
}

// tracerLogger is the tracers' logger: their warnings are demoted while a candidateScope is
// open.
func tracerLogger(l *zap.Logger, p *attachProblems) *zap.Logger {
	if p == nil {
		return l
	}
	return l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return demotingCore{Core: c, demote: &p.demote} }))
}

// llmCandidate tells whether a process could make an LLM API call the probes can read: a Go
// program (crypto/tls and net/http are read in the binary), a program embedding OpenSSL (Node,
// Bun), or a process that maps an OpenSSL library (Python, Ruby, curl, ...). Plain HTTP is read
// from the same processes' sockets.
func (g *registry) llmCandidate(info tracer.ProcInfo) bool {
	if info.ExeFile == "" || info.Inode == (probes.InodeKey{}) {
		return false // a kernel thread
	}
	d := g.discovery
	c, ok := d.exeCandidate[info.Inode]
	if !ok {
		c = g.goBinary(info.ExeFile, info.Inode)
		if !c {
			c, _ = tls.ExportsOpenSSL(info.ExeFile)
		}
		if len(d.exeCandidate) >= 4096 {
			clear(d.exeCandidate) // bounded: a node with more programs reads their files again
		}
		d.exeCandidate[info.Inode] = c
	}
	return c || mapsOpenSSL(filepath.Join(g.cfg.ProcRoot, strconv.FormatUint(uint64(info.PID), 10), "maps"))
}

// mapsOpenSSL tells whether a maps file names libssl (at most maxMapsBytes are read).
func mapsOpenSSL(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	br := bufio.NewReaderSize(io.LimitReader(f, maxMapsBytes), 4096)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// Longer than PATH_MAX and a mapping's fields: not a library's line; skip its rest.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				return false
			}
			continue
		}
		line = bytes.TrimRight(line, "\n")
		if i := bytes.LastIndexByte(line, '/'); i >= 0 && bytes.HasPrefix(line[i+1:], []byte("libssl.so")) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// untraceDiscovered stops tracing a process; it is remembered as rejected (its spans still
// waiting are dropped) until it exits or is looked at again.
func (g *registry) untraceDiscovered(pid uint32, p *discoveredProc, now time.Time, outcome string) {
	d := g.discovery
	g.untrace(pid, now, "discovery stopped tracing the process")
	g.leaveState(p)
	for cpid, c := range d.procs {
		if c.parent == pid { // its children, traced since they forked
			g.untrace(cpid, now, "discovery stopped tracing the process")
			delete(d.procs, cpid)
		}
	}
	p.state = stateRejected
	p.recheck = now.Add(discoveryRecheck * d.cfg.Probation)
	d.processes.Add(ctxBackground, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

// forgetDiscovered drops what discovery keeps of a process that is gone (or to look at again).
func (g *registry) forgetDiscovered(pid uint32, p *discoveredProc) {
	g.leaveState(p)
	delete(g.discovery.procs, pid)
}

func (g *registry) leaveState(p *discoveredProc) {
	d := g.discovery
	if p.parent != 0 {
		return
	}
	switch p.state {
	case stateProbation:
		d.probation--
	case stateDiscovered:
		d.workloads--
		d.active.Add(ctxBackground, -1)
	}
}

// filterDiscovered runs on every batch before it is sent: spans of processes on probation are
// dropped unless the batch has one of their LLM API calls (the process is then discovered),
// spans of discovered processes are named and marked agenttrail.discovered.
func (g *registry) filterDiscovered(td ptrace.Traces, now time.Time) {
	d := g.discovery
	if d == nil {
		return
	}
	dropped := 0
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		v, ok := rs.Resource().Attributes().Get("process.pid")
		if !ok {
			return false
		}
		pid := uint32(v.Int())
		p := d.procs[pid]
		if p == nil {
			p = g.discoveredChild(pid)
			if p == nil {
				return false // a target's
			}
		}
		root := p
		if p.parent != 0 {
			if root = d.procs[p.parent]; root == nil {
				root = &discoveredProc{state: stateRejected}
			}
		}
		if root.state == stateProbation && hasLLMCall(rs) {
			g.promote(p.parent, pid, root, now)
		}
		switch root.state {
		case stateDiscovered:
			if hasLLMCall(rs) {
				root.since = now
			}
			rs.Resource().Attributes().PutStr("service.name", root.name)
			rs.Resource().Attributes().PutBool(attrDiscovered, true)
			return false
		default:
			dropped += countSpans(rs)
			return true
		}
	})
	if dropped > 0 {
		d.dropped.Add(ctxBackground, int64(dropped), metric.WithAttributes(attribute.String("reason", "probation_spans")))
	}
}

// discoveredChild registers a process forked by a discovered (or probation) process, which the
// kernel traces under the probation target.
func (g *registry) discoveredChild(pid uint32) *discoveredProc {
	d := g.discovery
	tp := g.traced[pid]
	if tp == nil || tp.Target != d.target {
		return nil
	}
	anc := tp.PPID
	for hops := 0; anc != 0 && hops < 8; hops++ {
		if a := d.procs[anc]; a != nil {
			root := anc
			if a.parent != 0 {
				root = a.parent
			}
			p := &discoveredProc{state: stateDiscovered, inode: tp.Inode, parent: root}
			d.procs[pid] = p
			return p
		}
		ap := g.traced[anc]
		if ap == nil {
			break
		}
		anc = ap.PPID
	}
	return nil
}

// promote makes a process on probation a discovered workload (room permitting).
func (g *registry) promote(parent, pid uint32, p *discoveredProc, now time.Time) {
	d := g.discovery
	if parent != 0 {
		pid = parent
	}
	if d.workloads >= d.cfg.MaxWorkloads {
		d.dropped.Add(ctxBackground, 1, metric.WithAttributes(attribute.String("reason", "max_workloads")))
		g.untraceDiscovered(pid, p, now, "rejected")
		return
	}
	d.probation--
	d.workloads++
	p.state, p.since = stateDiscovered, now
	p.name = g.workloadName(pid)
	if bp, ok := g.builder.Process(pid); ok {
		bp.Target = p.name // later spans carry the name (gen_ai.agent.name too)
		g.builder.AddProcess(bp)
	}
	exe := ""
	if tp := g.traced[pid]; tp != nil {
		exe = tp.Exe
	}
	d.processes.Add(ctxBackground, 1, metric.WithAttributes(attribute.String("outcome", "discovered")))
	d.active.Add(ctxBackground, 1)
	g.logger.Info("discovered an LLM workload: it is traced from now on", zap.String("workload", p.name),
		zap.Uint32("pid", pid), zap.String("executable", exe))
}

// workloadName names a discovered process: its Kubernetes workload ("namespace/name") when
// the inventory knows its pod, its container ("container/<12 hex>"), else its executable.
func (g *registry) workloadName(pid uint32) string {
	d := g.discovery
	ci, _ := containerid.FromPID(g.cfg.ProcRoot, pid)
	if ci.PodUID != "" && d.inventory != nil {
		if name := podWorkload(d.inventory, ci.PodUID); name != "" {
			return name
		}
	}
	if ci.ID != "" {
		return "container/" + ci.ID[:12]
	}
	if tp := g.traced[pid]; tp != nil && tp.Exe != "" {
		return filepath.Base(tp.Exe)
	}
	return "pid/" + strconv.FormatUint(uint64(pid), 10)
}

// podWorkload is "namespace/name" of the workload of the pod uid: a Deployment's name from its
// ReplicaSet's (less the pod-template-hash), else the controller's, else the pod's.
func podWorkload(p inventoryProvider, uid string) string {
	for _, obj := range p.Informers().Pods.GetStore().List() {
		pod, ok := obj.(*corev1.Pod)
		if !ok || string(pod.UID) != uid {
			continue
		}
		name := pod.Name
		for _, ref := range pod.OwnerReferences {
			if ref.Controller == nil || !*ref.Controller {
				continue
			}
			name = ref.Name
			if h := pod.Labels["pod-template-hash"]; ref.Kind == "ReplicaSet" && h != "" {
				name = strings.TrimSuffix(name, "-"+h)
			}
		}
		return pod.Namespace + "/" + name
	}
	return ""
}

// hasLLMCall tells whether a process's spans include an LLM API call (an inference span from
// TLS or plain HTTP names its provider).
func hasLLMCall(rs ptrace.ResourceSpans) bool {
	for i := 0; i < rs.ScopeSpans().Len(); i++ {
		ss := rs.ScopeSpans().At(i).Spans()
		for j := 0; j < ss.Len(); j++ {
			if _, ok := ss.At(j).Attributes().Get("gen_ai.provider.name"); ok {
				return true
			}
		}
	}
	return false
}

func countSpans(rs ptrace.ResourceSpans) int {
	n := 0
	for i := 0; i < rs.ScopeSpans().Len(); i++ {
		n += rs.ScopeSpans().At(i).Spans().Len()
	}
	return n
}
