package k8sattributionprocessor

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"

	"github.com/agenttrail/agenttrail/internal/containerid"
	"github.com/agenttrail/agenttrail/internal/k8sinventory"
)

const (
	// procRecheck is how long a pid's cgroup read stays trusted before it is
	// read again (pids are reused; a process that is gone keeps its entry).
	procRecheck = 5 * time.Second
	// missedCacheSize bounds the ids that already timed out once and are not
	// waited for again.
	missedCacheSize = 4096
	// maxOwnerHolds bounds the batches held at once for an owner informer's first sync (a
	// gateway's OTLP receiver calls with many batches at once, each kept while held); past it a
	// batch goes on at once, its owners unresolved (hold_limit).
	maxOwnerHolds = 64
)

// pidEntry is what the cgroup of a process said, and the attribution last
// found for it. Entries are immutable: a change replaces the entry.
type pidEntry struct {
	cid     string
	podUID  string
	checked time.Time
	last    *attribution
}

// core does the work of one configured processor; the traces and logs
// processors created for the same component share it (one set of informers).
type core struct {
	cfg      *Config
	logger   *zap.Logger
	tel      *telemetry
	client   kubernetes.Interface // injected (NewFactoryWithClient), else built at Start
	hostName string
	nodeName string
	index    *podIndex
	pids     *lru.Cache[int64, *pidEntry]
	missed   *lru.Cache[string, struct{}]
	// readCgroup is containerid.FromPID; tests replace it.
	readCgroup func(procRoot string, pid uint32) (containerid.Info, error)
	now        func() time.Time

	watcher atomic.Pointer[kubeWatcher] // nil: no API
	holds   atomic.Int32                // batches held for owners now (maxOwnerHolds)
	status  *statusReporter
	// syncGrace: how long the informers may take to sync before the status says so.
	syncGrace time.Duration
	noAPIWhy  string // miss reason while watcher is nil
	mu        sync.Mutex
	started   bool
	stopped   bool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

func newCore(set component.TelemetrySettings, cfg *Config, client kubernetes.Interface, hostName, nodeName string) (*core, error) {
	tel, err := newTelemetry(set)
	if err != nil {
		return nil, err
	}
	pids, err := lru.New[int64, *pidEntry](cfg.PIDCacheSize)
	if err != nil {
		return nil, err
	}
	missed, err := lru.New[string, struct{}](missedCacheSize)
	if err != nil {
		return nil, err
	}
	labels := newExtractRules(cfg.Extract.Labels, labelPrefix)
	annotations := newExtractRules(cfg.Extract.Annotations, annotationPrefix)
	c := &core{
		cfg:        cfg,
		logger:     set.Logger,
		tel:        tel,
		client:     client,
		hostName:   hostName,
		nodeName:   nodeName,
		index:      newPodIndex(nodeName, labels, annotations, nil),
		pids:       pids,
		missed:     missed,
		readCgroup: containerid.FromPID,
		now:        time.Now,
		noAPIWhy:   reasonAPIUnavailable,
		status:     &statusReporter{},
		syncGrace:  syncGrace,
	}
	if cfg.AuthType == AuthTypeNone {
		c.noAPIWhy = reasonNoAPI
	}
	return c, nil
}

// start starts the informers unless auth_type is none. It never fails because
// the API server is unreachable or no client can be built: attribution then
// uses the cgroup and resource data only, and says so once.
func (c *core) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.stopped {
		return nil
	}
	c.started = true
	var shared *k8sinventory.Informers
	if c.cfg.Inventory != nil {
		var err error
		if shared, err = sharedInformers(c.status.firstHost(), *c.cfg.Inventory); err != nil {
			return err
		}
		if shared == nil {
			c.noAPIWhy = reasonNoAPI
			c.logger.Info("k8sattribution: the " + c.cfg.Inventory.String() + " extension has auth_type none, no Kubernetes API: pods are known only by the container id and pod UID of their cgroups")
			return nil
		}
	} else if c.cfg.AuthType == AuthTypeNone {
		c.logger.Info("k8sattribution: auth_type none, no Kubernetes API: pods are known only by the container id and pod UID of their cgroups")
		return nil
	}
	var w *kubeWatcher
	if shared != nil {
		var err error
		if w, err = attachKubeWatcher(shared, true, c.index, c.logger, c.status.set); err != nil {
			return err
		}
	} else {
		client := c.client
		if client == nil {
			var err error
			if client, err = newClient(c.cfg); err != nil {
				c.logger.Warn("k8sattribution: no Kubernetes client; container ids stay unresolved (agenttrail.k8s.attribution=missing)", zap.Error(err))
				return nil
			}
		}
		var err error
		if w, err = newKubeWatcher(client, c.nodeName, c.cfg.ResyncPeriod, c.index, c.logger); err != nil {
			return err
		}
	}
	c.index.mu.Lock()
	c.index.owners = w
	c.index.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	if !w.shared {
		w.health.onStatus = c.status.set // set while its informers are not running yet
	}
	w.run(ctx, &c.wg)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		w.watchSync(ctx, c.syncGrace)
	}()
	c.watcher.Store(w)
	if c.cfg.Inventory != nil {
		c.logger.Info("k8sattribution: using the pods of the " + c.cfg.Inventory.String() + " extension")
	} else if c.nodeName != "" {
		c.logger.Info("k8sattribution: watching the pods of this node", zap.String("node", c.nodeName))
	} else {
		c.logger.Info("k8sattribution: watching the pods of all nodes (no node_name and $" + c.cfg.NodeNameEnv + " is empty)")
	}
	return nil
}

// shutdown stops the informers and waits for their goroutines. It is
// idempotent and safe without start.
func (c *core) shutdown() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
	if w := c.watcher.Load(); w != nil && w.shared {
		w.detach() // the extension's informers run on for the other components
	}
	c.watcher.Store(nil)
	c.index.notify() // a batch still waiting stops now
}

func (c *core) processTraces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	rss := td.ResourceSpans()
	c.process(ctx, rss.Len(), func(i int) pcommon.Map { return rss.At(i).Resource().Attributes() })
	return td, nil
}

func (c *core) processLogs(ctx context.Context, ld plog.Logs) (plog.Logs, error) {
	rls := ld.ResourceLogs()
	c.process(ctx, rls.Len(), func(i int) pcommon.Map { return rls.At(i).Resource().Attributes() })
	return ld, nil
}

// pending is a resource whose container is not known yet, or whose pod is known but not its
// Deployment or CronJob while the owner informer has not synced (owner set).
type pending struct {
	m           pcommon.Map
	pid         int64
	entry       *pidEntry
	cid, podUID string
	owner       *attribution // the pod's, found; nil: the pod is not known yet
}

// process attributes the n resources of one batch; resources whose pod (or its owner's owner,
// at start) is not known yet wait together, at most wait_for_metadata.
func (c *core) process(ctx context.Context, n int, at func(int) pcommon.Map) {
	start := c.now()
	var waiting []pending
	owners := 0
	for i := 0; i < n; i++ {
		if p, wait := c.resolve(ctx, at(i), start); wait {
			waiting = append(waiting, p)
			if p.owner != nil {
				owners++
			}
		}
	}
	if owners > 0 {
		if c.holds.Add(1) > maxOwnerHolds {
			// Too many batches held already: this one's owners stay unresolved.
			rest := waiting[:0]
			for _, p := range waiting {
				if p.owner != nil {
					c.applyOwnerUnresolved(ctx, p.m, p.owner, attributionOK, p.cid, reasonHoldLimit)
				} else {
					rest = append(rest, p)
				}
			}
			waiting = rest
		}
		defer c.holds.Add(-1)
	}
	if len(waiting) > 0 {
		c.wait(ctx, waiting, start)
	}
}

// ownerHold decides for a pod's attribution a whose Deployment or CronJob is unknown: hold the
// resource while the owner informer is still syncing (at start), or release it now with the
// reason its owner stays unresolved ("" when nothing is missing: synced, the owner has none).
func (c *core) ownerHold(a *attribution) (hold bool, unresolved string) {
	if a.ownerNeeds == "" {
		return false, ""
	}
	w := c.watcher.Load()
	if w == nil {
		return false, ""
	}
	switch w.ownerState(a.ownerNeeds) {
	case ownerSyncing:
		if c.cfg.WaitForMetadata <= 0 {
			return false, reasonNotWaited
		}
		return true, ""
	case ownerFailing:
		return false, reasonAPIUnavailable
	}
	return false, ""
}

// found applies a pod's attribution a found for a resource now, or returns it pending for its
// owner (see ownerHold).
func (c *core) found(ctx context.Context, m pcommon.Map, a *attribution, pid int64, entry *pidEntry, cid, podUID string) (pending, bool) {
	hold, unresolved := c.ownerHold(a)
	switch {
	case hold:
		return pending{m: m, pid: pid, entry: entry, cid: cid, podUID: podUID, owner: a}, true
	case unresolved != "":
		c.applyOwnerUnresolved(ctx, m, a, attributionOK, cid, unresolved)
	default:
		applyAttribution(m, a, attributionOK, cid)
	}
	return pending{}, false
}

// applyOwnerUnresolved applies a, whose Deployment or CronJob is not known, and says so: the
// attribute agenttrail.k8s.owner_unresolved names what is missing, counted by reason.
func (c *core) applyOwnerUnresolved(ctx context.Context, m pcommon.Map, a *attribution, status, cid, reason string) {
	applyAttribution(m, a, status, cid)
	m.PutStr(attrOwnerUnresolved, a.ownerNeeds)
	c.tel.ownerUnresolved(ctx, reason)
}

// resolve attributes one resource, or returns it as pending (wait true).
func (c *core) resolve(ctx context.Context, m pcommon.Map, now time.Time) (p pending, wait bool) {
	if v, ok := m.Get(attrAttribution); ok {
		switch v.Str() {
		case attributionOK, attributionLate, attributionHost:
			return p, false // attributed upstream (agent → gateway)
		}
	}
	cid := strings.ToLower(strAttr(m, attrContainerID))
	podUID := strAttr(m, attrPodUID)
	pid, hasPID := pidAttr(m)

	if cid != "" {
		// The fast path: the receiver names the container.
		if a := c.index.lookup(cid, podUID, now); a != nil {
			if hasPID && !c.cfg.Passthrough {
				c.rememberPID(pid, cid, a, now)
			}
			return c.found(ctx, m, a, pid, nil, cid, podUID)
		}
	}
	var entry *pidEntry
	if hasPID && !c.cfg.Passthrough {
		entry = c.pidInfo(pid, cid, now)
		if entry != nil {
			if cid == "" {
				cid = entry.cid
			}
			if podUID == "" {
				podUID = entry.podUID
			}
		}
	}
	if cid == "" && podUID == "" {
		switch {
		case entry != nil: // its cgroup says: no container
			c.applyHost(m, "", true)
		case hasPID && c.cfg.Passthrough: // the receiver sets container.id for containers
			c.applyHost(m, "", false)
		case hasPID:
			c.applyMissing(ctx, m, "", "", reasonProcessExited)
		default:
			c.applyMissing(ctx, m, "", "", reasonNoIdentity)
		}
		return p, false
	}
	if a := c.index.lookup(cid, podUID, now); a != nil {
		c.remember(pid, entry, a)
		return c.found(ctx, m, a, pid, entry, cid, podUID)
	}
	if entry != nil && entry.last != nil {
		// The pod is gone from the index; the process keeps the identity
		// it was last seen with.
		applyAttribution(m, entry.last, attributionOK, cid)
		return p, false
	}
	if entry != nil && podUID == "" {
		// A container, but its cgroup is no kubepods cgroup: not a pod
		// (docker, podman, nerdctl on the host).
		c.applyHost(m, cid, true)
		return p, false
	}
	if reason := c.noWaitReason(cid, podUID); reason != "" {
		c.applyMissing(ctx, m, cid, podUID, reason)
		return p, false
	}
	return pending{m: m, pid: pid, entry: entry, cid: cid, podUID: podUID}, true
}

// wait polls the index for the pending resources on every index change until
// all are found (→ late) or the batch's budget ends (→ missing).
func (c *core) wait(ctx context.Context, waiting []pending, start time.Time) {
	deadline := start.Add(c.cfg.WaitForMetadata)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	timer := time.NewTimer(deadline.Sub(c.now()))
	defer timer.Stop()
	for {
		changed := c.index.changes() // before the lookups: no change is missed
		rest := waiting[:0]
		now := c.now()
		for _, p := range waiting {
			a := c.index.lookup(p.cid, p.podUID, now)
			if a == nil {
				if p.owner != nil {
					// The pod left the index meanwhile: what was found stands.
					c.applyOwnerUnresolved(ctx, p.m, p.owner, attributionLate, p.cid, reasonWaitTimeout)
					continue
				}
				rest = append(rest, p)
				continue
			}
			c.remember(p.pid, p.entry, a)
			hold, unresolved := c.ownerHold(a)
			switch {
			case hold:
				p.owner = a
				rest = append(rest, p)
			case unresolved != "":
				c.applyOwnerUnresolved(ctx, p.m, a, attributionLate, p.cid, unresolved)
			default:
				applyAttribution(p.m, a, attributionLate, p.cid)
			}
		}
		waiting = rest
		if len(waiting) == 0 {
			return
		}
		reason := ""
		if w := c.watcher.Load(); w == nil || !w.waitable() {
			reason = reasonAPIUnavailable
		} else {
			select {
			case <-changed:
				continue
			case <-timer.C:
				reason = reasonWaitTimeout
			case <-ctx.Done():
				reason = reasonCanceled
			}
		}
		for _, p := range waiting {
			if p.owner != nil {
				// The pod is known. A last look: the owner informer may have synced since.
				if a := c.index.lookup(p.cid, p.podUID, c.now()); a != nil {
					if hold, unresolved := c.ownerHold(a); !hold && unresolved == "" {
						applyAttribution(p.m, a, attributionLate, p.cid)
						continue
					}
					p.owner = a
				}
				c.applyOwnerUnresolved(ctx, p.m, p.owner, attributionLate, p.cid, reason)
				continue
			}
			if reason == reasonWaitTimeout {
				c.missed.Add(missKey(p.cid, p.podUID), struct{}{})
			}
			c.applyMissing(ctx, p.m, p.cid, p.podUID, reason)
		}
		return
	}
}

// noWaitReason returns why a container id that is not in the index is not
// waited for, or "" to wait.
func (c *core) noWaitReason(cid, podUID string) string {
	w := c.watcher.Load()
	switch {
	case w == nil:
		return c.noAPIWhy
	case !w.waitable():
		return reasonAPIUnavailable
	case c.cfg.WaitForMetadata <= 0 || c.missed.Contains(missKey(cid, podUID)):
		return reasonNotFound
	}
	return ""
}

func missKey(cid, podUID string) string {
	if cid != "" {
		return cid
	}
	return "pod:" + podUID
}

// pidInfo returns the cgroup identity of process pid: cached, or read from
// proc_root. cid, when not empty, is the container.id the resource carries;
// an entry naming another container (a reused pid) is not used.
func (c *core) pidInfo(pid int64, cid string, now time.Time) *pidEntry {
	if pid <= 0 || pid > 1<<32-1 {
		return nil
	}
	e, cached := c.pids.Get(pid)
	matches := cached && (cid == "" || e.cid == cid)
	if matches && now.Sub(e.checked) < procRecheck {
		return e
	}
	info, err := c.readCgroup(c.cfg.ProcRoot, uint32(pid))
	if err != nil {
		if matches {
			return e // the process is gone: it keeps its identity
		}
		return nil
	}
	ne := &pidEntry{cid: info.ID, podUID: info.PodUID, checked: now}
	if cached && e.cid == ne.cid && e.podUID == ne.podUID {
		ne.last = e.last
	}
	c.pids.Add(pid, ne)
	if cid != "" && ne.cid != cid {
		return nil
	}
	return ne
}

// remember records a on the pid's cache entry, so the process keeps it when
// the pod has left the index.
func (c *core) remember(pid int64, e *pidEntry, a *attribution) {
	if e == nil || e.last == a {
		return
	}
	ne := *e
	ne.last = a
	c.pids.Add(pid, &ne)
}

// rememberPID records that process pid runs in container cid, attributed a
// (found by the container.id the resource carries).
func (c *core) rememberPID(pid int64, cid string, a *attribution, now time.Time) {
	if pid <= 0 || pid > 1<<32-1 {
		return
	}
	e, ok := c.pids.Get(pid)
	if ok && e.cid == cid && e.last == a {
		return
	}
	ne := &pidEntry{cid: cid, podUID: a.podUID, checked: now, last: a}
	if ok && e.cid == cid {
		ne.checked = e.checked
	}
	c.pids.Add(pid, ne)
}

func applyAttribution(m pcommon.Map, a *attribution, status, cid string) {
	m.EnsureCapacity(m.Len() + len(a.attrs) + 3)
	for _, kv := range a.attrs {
		m.PutStr(kv.k, kv.v)
	}
	if !a.hasContainer && cid != "" {
		m.PutStr(attrContainerID, cid)
	}
	m.PutStr(attrWorkloadKind, workloadKindK8s)
	m.PutStr(attrAttribution, status)
}

func (c *core) applyHost(m pcommon.Map, cid string, local bool) {
	if cid != "" {
		m.PutStr(attrContainerID, cid)
	}
	name := c.cfg.HostName
	if name == "" && local {
		name = c.hostName
	}
	if name != "" {
		if _, ok := m.Get(attrHostName); !ok {
			m.PutStr(attrHostName, name)
		}
	}
	m.PutStr(attrWorkloadKind, workloadKindHost)
	m.PutStr(attrAttribution, attributionHost)
}

func (c *core) applyMissing(ctx context.Context, m pcommon.Map, cid, podUID, reason string) {
	if cid != "" {
		m.PutStr(attrContainerID, cid)
	}
	if podUID != "" {
		// The cgroup proves a pod; which one is what is missing.
		m.PutStr(attrPodUID, podUID)
		m.PutStr(attrWorkloadKind, workloadKindK8s)
	}
	m.PutStr(attrAttribution, attributionMissing)
	c.tel.miss(ctx, reason)
}

func strAttr(m pcommon.Map, k string) string {
	if v, ok := m.Get(k); ok && v.Type() == pcommon.ValueTypeStr {
		return v.Str()
	}
	return ""
}

func pidAttr(m pcommon.Map) (int64, bool) {
	v, ok := m.Get(attrProcessPID)
	if !ok {
		return 0, false
	}
	switch v.Type() {
	case pcommon.ValueTypeInt:
		return v.Int(), v.Int() > 0
	case pcommon.ValueTypeStr:
		n, err := strconv.ParseInt(v.Str(), 10, 64)
		return n, err == nil && n > 0
	}
	return 0, false
}
