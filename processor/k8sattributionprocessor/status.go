package k8sattributionprocessor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
)

// syncGrace is how long the informers may take to sync at start before the processor's status
// says they have not.
const syncGrace = 10 * time.Second

// statusReporter reports the processor's component status to the hosts of its instances (the
// traces and logs processors of one configuration share a core): a recoverable error while the
// Kubernetes metadata is incomplete (informers not synced, API server unreachable, a resource
// refused), OK once it is whole again. Only changes are reported.
type statusReporter struct {
	mu    sync.Mutex
	hosts []component.Host
	msg   string // what is wrong; "" when nothing is
}

// addHost adds an instance's host; it is told of a problem already active.
func (s *statusReporter) addHost(h component.Host) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hosts = append(s.hosts, h)
	if s.msg != "" {
		componentstatus.ReportStatus(h, componentstatus.NewRecoverableErrorEvent(errors.New(s.msg)))
	}
}

// set reports msg ("" for OK) when it differs from the last report.
func (s *statusReporter) set(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if msg == s.msg {
		return
	}
	s.msg = msg
	for _, h := range s.hosts {
		if msg == "" {
			componentstatus.ReportStatus(h, componentstatus.NewEvent(componentstatus.StatusOK))
		} else {
			componentstatus.ReportStatus(h, componentstatus.NewRecoverableErrorEvent(errors.New(msg)))
		}
	}
}

// statusMessage says what is wrong with the Kubernetes metadata ("" when nothing is). Called with
// h.mu held.
func (h *apiHealth) statusMessage() string {
	var parts []string
	if h.syncLate && !h.synced {
		parts = append(parts, "the Kubernetes informers have not synced (spans of containers whose pod is not cached are marked agenttrail.k8s.attribution=missing)")
	}
	if len(h.unreachable) > 0 {
		res := make([]string, 0, len(h.unreachable))
		for r := range h.unreachable {
			res = append(res, r)
		}
		slices.Sort(res)
		parts = append(parts, "Kubernetes API server unreachable (list/watch of "+strings.Join(res, ", ")+" failing)")
	}
	denied := make([]string, 0, len(h.denied))
	for r := range h.denied {
		denied = append(denied, r)
	}
	slices.Sort(denied)
	for _, r := range denied {
		parts = append(parts, "Kubernetes API refused to list or watch "+r+" ("+h.denied[r]+"): the ClusterRole needs get, list, watch on it")
	}
	if len(parts) == 0 {
		return ""
	}
	return "k8sattribution: " + strings.Join(parts, "; ")
}

// publish hands the current status to onStatus.
func (h *apiHealth) publish() {
	h.mu.Lock()
	msg, report := h.statusMessage(), h.onStatus
	h.mu.Unlock()
	if report != nil {
		report(msg)
	}
}

func (h *apiHealth) setSync(synced, late bool) {
	h.mu.Lock()
	h.synced, h.syncLate = synced, late
	h.mu.Unlock()
	h.publish()
}

// watchSync follows the informers' first sync: not synced after grace is a problem until they
// are.
func (w *kubeWatcher) watchSync(ctx context.Context, grace time.Duration) {
	deadline := time.Now().Add(grace)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	late := false
	owners := map[string]bool{} // owner attributes whose informer's handlers synced
	for {
		for _, attr := range []string{attrDeployment, attrCronJob} {
			if !owners[attr] && w.ownerState(attr) == ownerSynced {
				// One owner informer synced before the other (or the other is refused): the
				// batches held for this one's owners go on now.
				owners[attr] = true
				w.index.notify()
			}
		}
		if w.pods.HasSynced() && w.rs.HasSynced() && w.jobs.HasSynced() && (w.handlers.HasSynced == nil || w.handlers.HasSynced()) {
			w.health.setSync(true, late)
			// Batches holding a pod for its Deployment or CronJob (core.ownerHold) go on: an
			// owner the lists did not have changed nothing in the index.
			w.index.notify()
			return
		}
		if !late && !time.Now().Before(deadline) {
			late = true
			w.health.setSync(false, true)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
