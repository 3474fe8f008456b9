package ebpfreceiver

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/containerid"
	"github.com/agenttrail/agenttrail/internal/k8sinventory"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/k8sselect"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// Targets by Kubernetes identity (targets[].kubernetes): the selectors are resolved by
// k8sselect on the informers of the k8s_inventory extension named by kubernetes_inventory. A
// process matches at its exec (its cgroup names its pod UID, and its container id) and, when a
// pod starts or stops matching, at the rescan of running processes that follows.

// inventoryProvider is what the k8s_inventory extension offers (extension/k8sinventoryextension).
type inventoryProvider interface {
	Informers() *k8sinventory.Informers
	HasAPI() bool
	NodeName() string
}

// kubernetesTargets maps the resolver's selectors back to targets and remembers which
// selection the running processes were last matched against.
type kubernetesTargets struct {
	resolver *k8sselect.Resolver
	targets  []*tracer.Target // by selector index
	scanned  uint64           // the resolver's generation at the last rescan
	// rescanAt is the earliest next rescan: a selection that changes at every pod update (a
	// busy node) rescans /proc at most once per kubernetesRescanInterval.
	rescanAt time.Time
	// stop ends the goroutine that wakes an idle reader when the selection changes.
	stop chan struct{}
	wg   sync.WaitGroup
}

// kubernetesRescanInterval bounds how often running processes are matched again.
const kubernetesRescanInterval = time.Second

// startKubernetes builds the resolver of the kubernetes targets, if any. The extension runs
// before the receiver starts (the collector starts extensions first). wake ends the read
// loop's idle wait: a selection that changes must be acted on without waiting for a ring
// buffer record, which a quiet node may not write for a long time.
func (g *registry) startKubernetes(host component.Host, wake func()) error {
	var cfgs []k8sselect.Config
	var targets []*tracer.Target
	for _, t := range g.targets {
		if t.Config.Kubernetes != nil {
			cfgs = append(cfgs, *t.Config.Kubernetes)
			targets = append(targets, t)
		}
	}
	if len(cfgs) == 0 {
		return nil
	}
	id := *g.cfg.KubernetesInventory
	ext, ok := host.GetExtensions()[id]
	if !ok {
		return fmt.Errorf("kubernetes_inventory %s: no such extension (add it under service::extensions)", id)
	}
	p, ok := ext.(inventoryProvider)
	if !ok {
		return fmt.Errorf("kubernetes_inventory %s: the extension is not a k8s_inventory extension", id)
	}
	if !p.HasAPI() {
		for _, t := range targets {
			g.warnTarget(t, 0, "the "+id.String()+" extension has auth_type none: no pod is known, nothing is traced for this target", nil)
		}
		return nil
	}
	inf := p.Informers()
	if inf == nil {
		return fmt.Errorf("kubernetes_inventory %s: the extension has no informers (it is not started)", id)
	}
	r, err := k8sselect.NewResolver(inf, p.NodeName(), cfgs)
	if err != nil {
		return fmt.Errorf("kubernetes_inventory %s: %w", id, err)
	}
	g.k8s = &kubernetesTargets{resolver: r, targets: targets}
	// The pods known now are matched by attachTargets' scan; wait briefly for the informers'
	// first list so that it sees them (later pods are matched at their exec or a rescan).
	deadline := time.Now().Add(5 * time.Second)
	for !r.HasSynced() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !r.HasSynced() {
		g.logger.Warn("the Kubernetes pods are not listed yet; processes of selected pods are traced once they are", zap.String("extension", id.String()))
	}
	g.k8s.scanned = r.Generation()
	k := g.k8s
	k.stop = make(chan struct{})
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		for {
			select {
			case <-r.Changed():
				wake()
			case <-k.stop:
				return
			}
		}
	}()
	return nil
}

// closeKubernetes stops following the informers.
func (g *registry) closeKubernetes() {
	if g.k8s != nil {
		close(g.k8s.stop)
		g.k8s.wg.Wait()
		g.k8s.resolver.Close()
	}
}

// matchKubernetes tells whether a process of cgroup identity ci belongs to target t.
func (g *registry) matchKubernetes(t *tracer.Target, ci containerid.Info) bool {
	if g.k8s == nil {
		return false
	}
	i := g.k8s.resolver.Match(ci.PodUID, ci.ID)
	return i >= 0 && g.k8s.targets[i] == t
}

// rescanKubernetes traces the running processes of pods (or containers) that came into a
// selection since the last look (a pod relabelled into it, a container whose id the kubelet
// just reported), and stops tracing those of pods that left it (relabelled out, deleted).
func (g *registry) rescanKubernetes(now time.Time) {
	k := g.k8s
	if k == nil || now.Before(k.rescanAt) {
		return
	}
	gen := k.resolver.Generation()
	if gen == k.scanned {
		return
	}
	k.scanned, k.rescanAt = gen, now.Add(kubernetesRescanInterval)
	pids, err := listPIDs(g.cfg.ProcRoot)
	if err != nil {
		g.logger.Warn("cannot list processes for the Kubernetes targets", zap.Error(err))
		return
	}
	// A process whose pod (or container) left its target's selection is no longer traced: a
	// pod relabelled out is no longer the operator's agent.
	for pid, p := range g.traced {
		if p.Target == nil || p.Target.Config.Kubernetes == nil {
			continue
		}
		ci, err := containerid.FromPID(g.cfg.ProcRoot, pid)
		if err != nil {
			continue // gone: its exit record forgets it
		}
		if i := k.resolver.Match(ci.PodUID, ci.ID); i < 0 || k.targets[i] != p.Target {
			g.logger.Info("a process's pod left its target's Kubernetes selection; it is no longer traced",
				zap.String("target", p.Target.Config.Name), zap.Uint32("pid", pid))
			g.untrace(pid, now, "the process's pod left the target's selection")
		}
	}
	self := uint32(os.Getpid())
	for _, pid := range pids {
		if pid == self || g.traced[pid] != nil {
			continue
		}
		ci, err := containerid.FromPID(g.cfg.ProcRoot, pid)
		if err != nil || ci.PodUID == "" {
			continue // not in a pod, or gone
		}
		i := k.resolver.Match(ci.PodUID, ci.ID)
		if i < 0 {
			continue
		}
		info, err := readProc(g.cfg.ProcRoot, pid)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				g.logger.Debug("cannot read a selected pod's process", zap.Uint32("pid", pid), zap.Error(err))
			}
			continue
		}
		g.trace(k.targets[i], info, now)
	}
}

// untrace stops tracing a process that has not exited: the kernel forgets it, the tracers drop
// its state, and what it had open is closed with reason as its error.
func (g *registry) untrace(pid uint32, now time.Time, reason string) {
	if g.kernel != nil {
		if err := g.kernel.UntraceProcess(pid); err != nil {
			g.logger.Debug("cannot untrace a process", zap.Uint32("pid", pid), zap.Error(err))
		}
	}
	for _, tr := range g.tracers {
		tr.ProcessGone(pid)
	}
	g.builder.ResetProcess(pid, now, reason)
	g.builder.ProcessExit(spans.Header{PID: pid, Time: now})
	g.onExit(pid)
}

// kubernetesWaiting says whether an idle reader must wake for a rescan.
func (g *registry) kubernetesWaiting() bool {
	return g.k8s != nil && g.k8s.resolver.Generation() != g.k8s.scanned
}
