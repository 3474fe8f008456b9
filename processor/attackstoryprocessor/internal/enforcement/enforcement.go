package enforcement

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/containerid"
	"github.com/agenttrail/agenttrail/internal/enforce"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/policy"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// Kernel enforcement of workloads in mode enforce (agent mode: the collector runs on the node
// of the workload). For each such workload with a complete profile, the kernel programs of
// internal/enforce are attached to the workload's cgroup (the pod's, or the process's own off
// Kubernetes) with the profile's destinations and executables plus the declared
// allowed_destinations; every denial comes back as a decision that becomes a "blocked" span
// event of its story. When the programs cannot be attached the workload stays in mode alert and
// the reason is logged once at error level.

// Config tells the processor where the node's cgroups and processes are, for
// workloads in mode enforce.
type Config struct {
	// CgroupRoot is the cgroup v2 mount point; "" finds it in /proc/self/mountinfo.
	CgroupRoot string `mapstructure:"cgroup_root"`
	// ProcRoot is the proc file system of the node's processes (/host/proc in a container).
	ProcRoot string `mapstructure:"proc_root"`
}

// Kernel is what the processor needs of internal/enforce's Enforcer; tests fake it.
type Kernel interface {
	Apply(enforce.Policy) error
	Remove(workload string)
	Decisions() <-chan enforce.Decision
	Close() error
}

func newKernel() (Kernel, error) {
	e, err := enforce.New()
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Attributes and values of enforcement.
const (
	AttrEnforcementRule      = "agenttrail.enforcement.rule"
	AttrEnforcementAction    = "agenttrail.enforcement.action"
	AttrEnforcementKind      = "agenttrail.enforcement.kind"
	AttrEnforcementTool      = "agenttrail.enforcement.tool"
	AttrEnforcementUnmatched = "agenttrail.enforcement.unmatched"
	attrEnforcementWorkload  = "agenttrail.enforcement.workload"
	AttrProfileVersion       = "agenttrail.profile.version"
	AttrNetworkTransport     = "network.transport"

	BlockedEventName   = "blocked"
	ToolNotEnforceable = "not_enforceable"

	// matchSlack widens a span's interval when a decision is matched to it: the receiver and
	// the enforcer convert the same kernel clock to wall time separately.
	matchSlack = 50 * time.Millisecond
	// rootSlack: a decision outside every span of its process's stories is put on the story
	// whose root span contains its time within this slack.
	rootSlack = 2 * time.Millisecond
	// maxPending bounds the decisions waiting for their story; beyond it the oldest are
	// emitted at once as stories of their own.
	maxPending = 10000
	// enforcementStateFile, in profiles_dir, remembers the cgroups each workload was attached
	// to, so that a restarted collector re-attaches before the workload's next story.
	enforcementStateFile = ".enforcement-state.json"
	maxRecentPIDs        = 16
)

// ToolNotEnforceableText explains attrEnforcementTool=not_enforceable.
const ToolNotEnforceableText = "not enforceable: this kernel cannot stop a user-space function from a uprobe " +
	"(no bpf_override_return for uprobes, no BPF LSM), so the tool call ran; only its egress and execs are enforced"

// decisionRule is the rule a kernel decision enforces.
func decisionRule(d enforce.Decision) (rule, action string) {
	if d.Kind == enforce.KindExec {
		return story.RuleUnexpectedExecutable, story.ActionKilled
	}
	return story.RuleEgressOutsideProfile, story.ActionRefused
}

// attachment is the programs of one workload on one cgroup.
type attachment struct {
	name    string // the name given to the kernel: workload key @ cgroup
	hash    string
	version int
}

// procRef is a process a story of the workload came from.
type procRef struct {
	pid int64
	exe string
}

// Workload is the enforcement state of one workload.
type Workload struct {
	key      string
	attrs    map[string]string // resource attributes, for the stories of unmatched decisions
	pol      *policy.Policy    // of its last story; nil: resolved from the profile's attributes
	procs    []procRef         // recent processes, newest last
	resolved map[int64]bool    // processes whose cgroup was looked up
	cgroups  map[string]bool   // absolute cgroup directories of its processes
	attached map[string]*attachment
	logged   map[string]bool // messages logged once
}

func (w *Workload) logOnce(key string) bool {
	if w.logged[key] {
		return false
	}
	w.logged[key] = true
	return true
}

// Pending is a decision waiting for the story that holds it.
type Pending struct {
	D       enforce.Decision
	key     string // workload key
	arrived time.Time
}

// BlockMatch is a decision matched to a story: on span (index in facts.spans) or, when no
// Span matched, on the story's head.
type BlockMatch struct {
	D       enforce.Decision
	Span    int
	OnHead  bool
	Rule    string
	Action  string
	version int
}

// Enforcer is the processor's side of kernel enforcement. Everything but the pending
// decisions is used by the emitter only (under the processor's emitMu).
type Enforcer struct {
	cfg       Config
	scope     string // instrumentation scope of the stories of unmatched decisions
	grace     time.Duration
	maxWait   time.Duration
	logger    *zap.Logger
	tel       Telemetry
	clock     interface{ Now() time.Time }
	NewKernel func() (Kernel, error)
	stateDir  string // profiles_dir; "" keeps no state
	pols      *policy.Set

	k    Kernel
	KErr error
	// Host receives the component status: a recoverable error while a workload in mode
	// enforce is not enforced because the kernel side failed (unavailable: why, by workload).
	Host        component.Host
	unavailable map[string]string
	reported    string
	closed      bool
	cgroups     *containerid.CgroupView // found at the first cgroup wanted
	byKey       map[string]*Workload
	saved       map[string][]string // cgroups of the saved state, by workload key
	stateSaved  string
	wg          sync.WaitGroup

	Mu      sync.Mutex
	byName  map[string]string // kernel name → workload key
	Pending []*Pending
}

// Telemetry is the enforcer's self-telemetry.
type Telemetry interface {
	Decision(kind, workload string)
	Attached(workloads int64)
	UnmatchedDecision()
}

// Settings are the enforcer's part of the processor's configuration.
type Settings struct {
	Config          Config
	CompletionGrace time.Duration // how long a decision waits for its story after the last span
	OrphanTimeout   time.Duration // the most it waits
	StateDir        string        // profiles_dir; "" keeps no state
	ScopeName       string        // the processor's instrumentation scope
}

func New(set Settings, pols *policy.Set, logger *zap.Logger, tel Telemetry, clock interface{ Now() time.Time }) *Enforcer {
	return &Enforcer{
		pols: pols, cfg: set.Config, scope: set.ScopeName, grace: set.CompletionGrace, maxWait: set.OrphanTimeout, logger: logger, tel: tel, clock: clock,
		NewKernel: newKernel, stateDir: set.StateDir,
		byKey: map[string]*Workload{}, saved: map[string][]string{}, byName: map[string]string{},
	}
}

// Start loads the saved attachments of the last run.
func (e *Enforcer) Start() {
	if e.stateDir == "" {
		return
	}
	b, err := os.ReadFile(filepath.Join(e.stateDir, enforcementStateFile))
	if err != nil {
		return
	}
	var st map[string][]string
	if err := json.Unmarshal(b, &st); err != nil {
		e.logger.Warn("Ignoring the saved enforcement state", zap.String("file", filepath.Join(e.stateDir, enforcementStateFile)), zap.Error(err))
		return
	}
	e.saved = st
	e.stateSaved = string(b)
}

func (e *Enforcer) workload(key string) *Workload {
	w := e.byKey[key]
	if w == nil {
		w = &Workload{key: key, resolved: map[int64]bool{}, cgroups: map[string]bool{}, attached: map[string]*attachment{}, logged: map[string]bool{}}
		for _, cg := range e.saved[key] {
			w.cgroups[cg] = true
		}
		e.byKey[key] = w
	}
	return w
}

// configuredMode is the workload's mode: the profile's mode field when set (written by
// `agenttrail profile promote`), else the configuration's.
func configuredMode(pol *policy.Policy, prof *profile.Profile) profile.Mode {
	if prof != nil && prof.Data.Mode != "" {
		return profile.Mode(prof.Data.Mode)
	}
	return pol.Mode
}

// active reports whether the workload has programs attached.
func (e *Enforcer) active(key string) bool {
	w := e.byKey[key]
	return w != nil && len(w.attached) > 0
}

// Observe records the process of a story of workload wid and returns the mode its story is
// judged in: enforce only while programs are attached, else alert (fail safe: visible).
// A newly seen process of a workload in mode enforce gets its cgroup enforced at once.
func (e *Enforcer) Observe(wid profile.WorkloadID, res pcommon.Map, pol *policy.Policy, prof *profile.Profile, profiles *profile.Store) profile.Mode {
	mode := configuredMode(pol, prof)
	pidv, ok := res.Get(story.AttrProcessPID)
	if !ok {
		if mode == profile.ModeEnforce && !e.active(wid.Key) {
			return profile.ModeAlert
		}
		return mode
	}
	w := e.workload(wid.Key)
	w.pol = pol
	pid := pidv.Int()
	exe := story.AttrStr(res, story.AttrProcessExecutable)
	if n := len(w.procs); n == 0 || w.procs[n-1].pid != pid {
		w.procs = slices.DeleteFunc(w.procs, func(p procRef) bool { return p.pid == pid })
		w.procs = append(w.procs, procRef{pid: pid, exe: exe})
		if len(w.procs) > maxRecentPIDs {
			w.procs = w.procs[len(w.procs)-maxRecentPIDs:]
		}
	}
	if w.attrs == nil {
		w.attrs = map[string]string{}
		for _, k := range []string{story.AttrServiceName, story.AttrProcessExecutable, story.AttrK8sNamespace, story.AttrK8sDeployment, story.AttrK8sStatefulSet, story.AttrK8sDaemonSet, story.AttrK8sContainer, story.AttrK8sNodeName} {
			if v := story.AttrStr(res, k); v != "" {
				w.attrs[k] = v
			}
		}
	}
	if mode == profile.ModeEnforce {
		if !w.resolved[pid] {
			e.reconcileWorkload(w, prof, profiles)
		}
		if !e.active(wid.Key) {
			return profile.ModeAlert
		}
	}
	return mode
}

// Reconcile brings the kernel in line with every workload's mode and profile: called when the
// profiles were reloaded or saved, and at start.
func (e *Enforcer) Reconcile(profiles *profile.Store) {
	if e.closed {
		return
	}
	for _, key := range story.SortedKeys(profiles.ByKey) {
		p := profiles.ByKey[key]
		if p.Data.Mode == string(profile.ModeEnforce) || e.byKey[key] != nil || len(e.saved[key]) > 0 {
			e.reconcileWorkload(e.workload(key), p, profiles)
		}
	}
	for _, key := range story.SortedKeys(e.byKey) {
		if profiles.ByKey[key] == nil && len(e.byKey[key].attached) > 0 {
			e.reconcileWorkload(e.byKey[key], nil, profiles)
		}
	}
	e.saveState()
	e.recordAttached()
}

// policyOf is the workload's resolved configuration: of its last story, or from its profile's
// attributes when no story was seen since start.
func (e *Enforcer) policyOf(w *Workload, prof *profile.Profile) *policy.Policy {
	if w.pol != nil {
		return w.pol
	}
	res := pcommon.NewMap()
	if prof != nil {
		for k, v := range prof.Data.Workload {
			res.PutStr(k, v)
		}
	}
	return e.pols.Resolve(res)
}

func (e *Enforcer) reconcileWorkload(w *Workload, prof *profile.Profile, profiles *profile.Store) {
	if e.closed {
		return
	}
	// Waiting for a complete profile or a cgroup is the mode working as documented; a kernel
	// that cannot enforce is a failure the health check must show.
	unavailable := ""
	defer func() { e.setUnavailable(w.key, unavailable) }()
	pol := e.policyOf(w, prof)
	mode := configuredMode(pol, prof)
	switch {
	case mode != profile.ModeEnforce:
		e.detachAll(w, "the workload's mode is now "+string(mode))
		delete(w.logged, "waiting-complete")
		return
	case prof == nil || !prof.Complete():
		e.detachAll(w, "its profile is not complete")
		if w.logOnce("waiting-complete") {
			e.logger.Warn("Mode enforce waits for a complete profile: until then the workload is in mode alert",
				zap.String("workload", w.key))
		}
		return
	}
	delete(w.logged, "waiting-complete")
	if e.k == nil && e.KErr == nil {
		e.k, e.KErr = e.NewKernel()
		if e.KErr == nil {
			e.wg.Add(1)
			go e.readDecisions(e.k.Decisions())
		}
	}
	if e.KErr != nil {
		unavailable = "kernel enforcement is unavailable: " + e.KErr.Error()
		if w.logOnce("kernel") {
			e.logger.Error("Cannot enforce: kernel enforcement is unavailable (needs root, cgroup v2 and eBPF); the workload stays in mode alert",
				zap.String("workload", w.key), zap.Error(e.KErr))
		}
		return
	}
	for _, pr := range w.procs {
		if w.resolved[pr.pid] {
			continue
		}
		w.resolved[pr.pid] = true
		cg, err := e.cgroupOf(pr)
		if err != nil {
			if w.logOnce("cgroup " + err.Error()) {
				e.logger.Error("Cannot enforce the cgroup of a process of the workload; the workload stays in mode alert until its cgroup is known",
					zap.String("workload", w.key), zap.Int64("pid", pr.pid), zap.Error(err))
			}
			continue
		}
		w.cgroups[cg] = true
	}
	if len(w.resolved) > 4*maxRecentPIDs {
		clear(w.resolved) // the processes of a long-lived workload come and go
		for _, pr := range w.procs {
			w.resolved[pr.pid] = true
		}
	}
	for cg := range w.cgroups {
		if _, err := os.Stat(filepath.Join(cg, "cgroup.procs")); err != nil {
			delete(w.cgroups, cg)
			if a := w.attached[cg]; a != nil {
				e.remove(w, cg, a)
				e.logger.Info("Enforcement removed: the cgroup is gone", zap.String("workload", w.key), zap.String("cgroup", cg))
			}
		}
	}
	if len(w.cgroups) == 0 {
		if w.logOnce("waiting-cgroup") {
			e.logger.Info("Mode enforce: waiting for a story of the workload to find its cgroup; until then it is in mode alert",
				zap.String("workload", w.key))
		}
		return
	}
	delete(w.logged, "waiting-cgroup")
	kp := profile.BuildKernelPolicy(&prof.Data, pol.AllowedRaw)
	hash := kp.Hash(prof.Data.Version)
	for _, cg := range story.SortedKeys(w.cgroups) {
		if a := w.attached[cg]; a != nil && a.hash == hash {
			continue
		}
		name := w.key + " @ " + cg
		err := e.k.Apply(enforce.Policy{Workload: name, Cgroup: cg, AllowedDestinations: kernelDests(kp.Dests),
			AllowedExecutables: kp.Execs, EnforceExec: true, ProfileVersion: prof.Data.Version})
		if err != nil {
			unavailable = "cannot attach the enforcement programs to " + cg + ": " + err.Error()
			if w.logOnce("apply " + cg + " " + hash + " " + err.Error()) {
				e.logger.Error("Cannot attach the enforcement programs; the workload stays in mode alert",
					zap.String("workload", w.key), zap.String("cgroup", cg), zap.Int("profile_version", prof.Data.Version), zap.Error(err))
			}
			continue
		}
		e.Mu.Lock()
		e.byName[name] = w.key
		e.Mu.Unlock()
		first := w.attached[cg] == nil
		w.attached[cg] = &attachment{name: name, hash: hash, version: prof.Data.Version}
		msg := "Enforcement attached"
		if !first {
			msg = "Enforcement updated"
		}
		e.logger.Info(msg, zap.String("workload", w.key), zap.String("cgroup", cg), zap.Int("profile_version", prof.Data.Version),
			zap.Int("destinations", len(kp.Dests)), zap.Int("executables", len(kp.Execs)))
		if len(kp.Unenforceable) > 0 && w.logOnce("unenforceable "+hash) {
			e.logger.Warn("Some allowed destinations cannot be enforced by the kernel: connections to them are refused unless their address is allowed otherwise",
				zap.String("workload", w.key), zap.Strings("entries", kp.Unenforceable))
		}
	}
}

// setUnavailable records why a workload in mode enforce is not enforced ("": it is, or it is not
// in mode enforce) and reports the processor's status when what it says changed: a recoverable
// error naming each such workload, OK once none is left.
func (e *Enforcer) setUnavailable(key, why string) {
	if why == "" {
		delete(e.unavailable, key)
	} else {
		if e.unavailable == nil {
			e.unavailable = map[string]string{}
		}
		e.unavailable[key] = why
	}
	var msgs []string
	for _, k := range story.SortedKeys(e.unavailable) {
		msgs = append(msgs, "workload "+k+" stays in mode alert: "+e.unavailable[k])
	}
	msg := strings.Join(msgs, "; ")
	if msg == e.reported || e.Host == nil {
		return
	}
	e.reported = msg
	if msg == "" {
		componentstatus.ReportStatus(e.Host, componentstatus.NewEvent(componentstatus.StatusOK))
		return
	}
	componentstatus.ReportStatus(e.Host, componentstatus.NewRecoverableErrorEvent(errors.New("enforcement: "+msg)))
}

func (e *Enforcer) detachAll(w *Workload, why string) {
	if len(w.attached) == 0 {
		return
	}
	for _, cg := range story.SortedKeys(w.attached) {
		e.remove(w, cg, w.attached[cg])
	}
	e.logger.Info("Enforcement removed: every program of the workload is detached", zap.String("workload", w.key), zap.String("reason", why))
}

func (e *Enforcer) remove(w *Workload, cg string, a *attachment) {
	if e.k != nil {
		e.k.Remove(a.name)
	}
	delete(w.attached, cg)
	delete(w.logged, "apply "+cg+" "+a.hash)
}

// cgroupOf finds the cgroup to enforce for a process: its pod's directory on Kubernetes (the
// parent of the container's), else its own. It refuses a process that is not the story's
// (another executable: a reused pid, or a story from another node) and the root cgroup.
func (e *Enforcer) cgroupOf(pr procRef) (string, error) {
	if e.cgroups == nil {
		v, err := containerid.NewCgroupView(e.cfg.CgroupRoot)
		if err != nil {
			return "", fmt.Errorf("no cgroup v2: %w", err)
		}
		e.cgroups = v
	}
	procDir := filepath.Join(e.cfg.ProcRoot, strconv.FormatInt(pr.pid, 10))
	if pr.exe != "" {
		exe, err := os.Readlink(filepath.Join(procDir, "exe"))
		if err != nil {
			return "", fmt.Errorf("process %d: %w", pr.pid, err)
		}
		if strings.TrimSuffix(exe, " (deleted)") != pr.exe {
			return "", fmt.Errorf("process %d runs %s, not %s (not the story's process: a reused pid or another node)", pr.pid, exe, pr.exe)
		}
	}
	info, err := containerid.FromPID(e.cfg.ProcRoot, uint32(pr.pid))
	if err != nil {
		return "", err
	}
	rel := info.CgroupPath
	if rel == "" {
		return "", fmt.Errorf("process %d: no cgroup v2 path", pr.pid)
	}
	// A path with ".." is above this cgroup namespace's root (a collector in a container): the
	// view places it in the host's hierarchy when that is mounted. (path.Dir would clean the
	// ".." away.)
	dir, err := e.cgroups.Dir(rel)
	if err != nil {
		return "", fmt.Errorf("process %d: %w", pr.pid, err)
	}
	if info.PodUID != "" && info.ID != "" {
		dir = filepath.Dir(dir) // the pod: every container of it
	}
	if dir == e.cgroups.Mount() {
		return "", fmt.Errorf("process %d is in the root cgroup (the top of %s): enforcing there would apply to the whole host; run the workload in a cgroup of its own (a container or a systemd service)", pr.pid, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		return "", fmt.Errorf("cgroup of process %d: %w", pr.pid, err)
	}
	return dir, nil
}

// saveState remembers the attached cgroups of every workload (for a restart).
func (e *Enforcer) saveState() {
	if e.stateDir == "" {
		return
	}
	st := map[string][]string{}
	for key, w := range e.byKey {
		if len(w.attached) > 0 {
			st[key] = story.SortedKeys(w.attached)
		}
	}
	b, _ := json.Marshal(st)
	if string(b) == e.stateSaved {
		return
	}
	target := filepath.Join(e.stateDir, enforcementStateFile)
	tmp := target + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		e.logger.Warn("Cannot save the enforcement state", zap.String("file", target), zap.Error(err))
		return
	}
	if err := os.Rename(tmp, target); err != nil {
		e.logger.Warn("Cannot save the enforcement state", zap.String("file", target), zap.Error(err))
		return
	}
	e.stateSaved = string(b)
	e.saved = st
}

func (e *Enforcer) recordAttached() {
	n := 0
	for _, w := range e.byKey {
		if len(w.attached) > 0 {
			n++
		}
	}
	e.tel.Attached(int64(n))
}

// readDecisions moves the kernel's decisions into pending until the kernel is closed.
func (e *Enforcer) readDecisions(ch <-chan enforce.Decision) {
	defer e.wg.Done()
	for d := range ch {
		e.Mu.Lock()
		key := e.byName[d.Workload]
		if key == "" {
			key = d.Workload
		}
		e.Pending = append(e.Pending, &Pending{D: d, key: key, arrived: e.clock.Now()})
		e.Mu.Unlock()
		e.tel.Decision(string(d.Kind), key)
	}
}

// Shutdown detaches every program (closing the kernel) and waits for the decisions read.
func (e *Enforcer) Shutdown() {
	if e.closed {
		return
	}
	e.closed = true
	if e.k != nil {
		if err := e.k.Close(); err != nil {
			e.logger.Warn("Closing the kernel enforcement", zap.Error(err))
		}
		e.wg.Wait()
		n := 0
		for _, w := range e.byKey {
			n += len(w.attached)
			clear(w.attached)
		}
		if n > 0 {
			e.logger.Info("Enforcement removed at shutdown: every program is detached", zap.Int("cgroups", n))
		}
	}
	e.recordAttached()
}

// Claim takes the pending decisions that belong to the stories of one emission: first those
// that match a span of any of them (a connect or sendto of the same process to the same
// destination, or an execve by the killed process or its parent of the same path, the
// Decision's time within the span), then, for the rest, the head of the story whose root
// Span, of the same process (or the parent), contains the decision's time, unless a story of
// that process still in flight contains it too (it may hold the decision's span: the decision
// waits for it).
func (e *Enforcer) Claim(fs []*story.Facts, inFlight func(pid int64, t time.Time) bool) [][]BlockMatch {
	out := make([][]BlockMatch, len(fs))
	e.Mu.Lock()
	defer e.Mu.Unlock()
	if len(e.Pending) == 0 {
		return out
	}
	pids := make([][]int64, len(fs))
	for s, f := range fs {
		pids[s] = make([]int64, len(f.Spans))
		for i, sp := range f.Spans {
			pids[s][i] = -1
			if v, ok := sp.Scope.Src.Resource.Attributes().Get(story.AttrProcessPID); ok {
				pids[s][i] = v.Int()
			}
		}
	}
	within := func(t time.Time, start, end uint64, slack time.Duration) bool {
		ns := uint64(t.UnixNano())
		return ns+uint64(slack) >= start && ns <= end+uint64(slack)
	}
	claimed := make([]bool, len(e.Pending))
	take := func(i, s, span int, onHead bool) {
		d := e.Pending[i].D
		m := BlockMatch{D: d, Span: span, OnHead: onHead, version: d.ProfileVersion}
		m.Rule, m.Action = decisionRule(d)
		out[s] = append(out[s], m)
		claimed[i] = true
	}
	for i, pd := range e.Pending {
		d := pd.D
	stories:
		for s, f := range fs {
			for j, sp := range f.Spans {
				if !within(d.Time, sp.Start, sp.End, matchSlack) {
					continue
				}
				attrs := sp.Span.Attributes()
				switch story.SyscallName(sp.Span) {
				case "connect", "sendto":
					if d.Kind == enforce.KindExec || pids[s][j] != int64(d.PID) {
						continue
					}
					a, err := netip.ParseAddr(story.AttrStr(attrs, story.AttrPeerAddress))
					port, _ := attrs.Get(story.AttrPeerPort)
					if err != nil || a.Unmap() != d.Destination.Addr().Unmap() || port.Int() != int64(d.Destination.Port()) {
						continue
					}
				case "execve":
					if d.Kind != enforce.KindExec || (pids[s][j] != int64(d.PID) && pids[s][j] != int64(d.PPID)) ||
						story.AttrStr(attrs, story.AttrProcessExecutable) != d.Executable {
						continue
					}
				default:
					continue
				}
				take(i, s, j, false)
				break stories
			}
		}
	}
	for i, pd := range e.Pending {
		if claimed[i] {
			continue
		}
		d := pd.D
		for s, f := range fs {
			if len(f.Spans) == 0 || f.Story.Root == nil {
				continue
			}
			head := f.Spans[f.Head]
			hp := pids[s][f.Head]
			if (hp == int64(d.PID) || d.PPID != 0 && hp == int64(d.PPID)) && within(d.Time, head.Start, head.End, rootSlack) &&
				!inFlight(int64(d.PID), d.Time) && (d.PPID == 0 || !inFlight(int64(d.PPID), d.Time)) {
				take(i, s, f.Head, true)
				break
			}
		}
	}
	kept := e.Pending[:0]
	for i, pd := range e.Pending {
		if !claimed[i] {
			kept = append(kept, pd)
		}
	}
	clear(e.Pending[len(kept):])
	e.Pending = kept
	for _, ms := range out {
		slices.SortStableFunc(ms, func(a, b BlockMatch) int { return a.D.Time.Compare(b.D.Time) })
	}
	return out
}

// Expired returns the decisions no story claimed: completion_grace after they arrived and
// after the last span of a story in flight of their process (that story may still hold them),
// at most orphan_timeout after they arrived; all of them when flushAll.
func (e *Enforcer) Expired(now time.Time, flushAll bool, lastSeen func(pid uint32) time.Time) []*Pending {
	e.Mu.Lock()
	defer e.Mu.Unlock()
	if len(e.Pending) == 0 {
		return nil
	}
	var out []*Pending
	kept := e.Pending[:0]
	over := len(e.Pending) - maxPending
	for i, pd := range e.Pending {
		expire := flushAll || i < over || now.Sub(pd.arrived) >= e.maxWait
		if !expire && now.Sub(pd.arrived) >= e.grace {
			last := lastSeen(pd.D.PID)
			if pd.D.PPID != 0 {
				if l := lastSeen(pd.D.PPID); l.After(last) {
					last = l
				}
			}
			expire = now.Sub(last) >= e.grace
		}
		if expire {
			out = append(out, pd)
		} else {
			kept = append(kept, pd)
		}
	}
	clear(e.Pending[len(kept):])
	e.Pending = kept
	return out
}

// WriteUnmatched appends the story of one decision no story claimed: one span "blocked" with
// the decision's attributes, flagged agenttrail.enforcement.unmatched.
func (e *Enforcer) WriteUnmatched(td ptrace.Traces, pd *Pending) {
	rs := td.ResourceSpans().AppendEmpty()
	res := rs.Resource().Attributes()
	if w := e.byKey[pd.key]; w != nil {
		for _, k := range story.SortedKeys(w.attrs) {
			res.PutStr(k, w.attrs[k])
		}
	}
	res.PutInt(story.AttrProcessPID, int64(pd.D.PID))
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName(e.scope)
	sp := ss.Spans().AppendEmpty()
	var tid pcommon.TraceID
	var sid pcommon.SpanID
	_, _ = rand.Read(tid[:])
	_, _ = rand.Read(sid[:])
	sp.SetTraceID(tid)
	sp.SetSpanID(sid)
	sp.SetName(BlockedEventName)
	sp.SetKind(ptrace.SpanKindInternal)
	ts := pcommon.NewTimestampFromTime(pd.D.Time)
	sp.SetStartTimestamp(ts)
	sp.SetEndTimestamp(ts)
	rule, action := decisionRule(pd.D)
	putBlockedAttributes(sp.Attributes(), pd.D, rule, action)
	sp.Attributes().PutStr(attrEnforcementWorkload, pd.key)
	sp.Attributes().PutBool(AttrEnforcementUnmatched, true)
	sp.Status().SetCode(ptrace.StatusCodeError)
	sp.Status().SetMessage(BlockedText(pd.D, action))
	e.tel.UnmatchedDecision()
}

// putBlockedAttributes: the attributes of a "blocked" event (or span).
func putBlockedAttributes(m pcommon.Map, d enforce.Decision, rule, action string) {
	m.PutStr(AttrEnforcementRule, rule)
	m.PutInt(AttrProfileVersion, int64(d.ProfileVersion))
	m.PutStr(AttrEnforcementAction, action)
	m.PutStr(AttrEnforcementKind, string(d.Kind))
	m.PutInt(story.AttrProcessPID, int64(d.PID))
	if d.Kind == enforce.KindExec {
		m.PutStr(story.AttrProcessExecutable, d.Executable)
		if d.PPID != 0 {
			m.PutInt("process.parent_pid", int64(d.PPID))
		}
		return
	}
	m.PutStr(story.AttrPeerAddress, d.Destination.Addr().Unmap().String())
	m.PutInt(story.AttrPeerPort, int64(d.Destination.Port()))
	if d.Protocol != "" {
		m.PutStr(AttrNetworkTransport, d.Protocol)
	}
}

func BlockedText(d enforce.Decision, action string) string {
	if d.Kind == enforce.KindExec {
		return fmt.Sprintf("exec %s: process %d killed by the kernel (outside the profile, version %d)", d.Executable, d.PID, d.ProfileVersion)
	}
	return fmt.Sprintf("%s %s: %s by the kernel with EPERM (outside the profile, version %d)", d.Kind, d.Destination, action, d.ProfileVersion)
}

// WriteBlocked puts a "blocked" event on the span of every match (after writeStory).
func WriteBlocked(f *story.Facts, blocked []BlockMatch) {
	for _, m := range blocked {
		sp := f.Spans[m.Span].Span
		ev := sp.Events().AppendEmpty()
		ev.SetName(BlockedEventName)
		ev.SetTimestamp(pcommon.NewTimestampFromTime(m.D.Time))
		putBlockedAttributes(ev.Attributes(), m.D, m.Rule, m.Action)
	}
}

// kernelDests converts the profile's kernel destinations to the kernel package's.
func kernelDests(ds []profile.KernelDest) []enforce.Destination {
	out := make([]enforce.Destination, len(ds))
	for i, d := range ds {
		out[i] = enforce.Destination{Prefix: d.Prefix, Port: d.Port}
	}
	return out
}
