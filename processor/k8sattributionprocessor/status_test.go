package k8sattributionprocessor

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/agenttrail/agenttrail/processor/k8sattributionprocessor/internal/metadata"
)

// statusHost records the component status events reported through it.
type statusHost struct {
	component.Host
	mu     sync.Mutex
	events []*componentstatus.Event
}

func (h *statusHost) Report(e *componentstatus.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

func (h *statusHost) last() *componentstatus.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.events) == 0 {
		return nil
	}
	return h.events[len(h.events)-1]
}

// startWithStatus starts a traces processor over client with a host that records its status;
// the informers may take grace to sync.
func startWithStatus(t *testing.T, client kubernetes.Interface, grace time.Duration) *statusHost {
	t.Helper()
	set := processortest.NewNopSettings(metadata.Type)
	set.Logger = zap.NewNop()
	f := &factory{client: client, cores: map[coreKey]*sharedCore{}}
	cfg := testConfig()
	p, err := f.createTraces(context.Background(), set, cfg, new(consumertest.TracesSink))
	if err != nil {
		t.Fatal(err)
	}
	f.cores[coreKey{set.ID, cfg}].core.syncGrace = grace
	host := &statusHost{Host: componenttest.NewNopHost()}
	if err := p.Start(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return host
}

func statusIs(h *statusHost, st componentstatus.Status, contains string) func() bool {
	return func() bool {
		ev := h.last()
		return ev != nil && ev.Status() == st && (contains == "" || strings.Contains(ev.Err().Error(), contains))
	}
}

// TestStatusNotSynced: informers that cannot list (the API server unreachable) and so have not
// synced after the grace make the status a recoverable error saying so; once the API answers
// and they sync, it is OK.
func TestStatusNotSynced(t *testing.T) {
	client := fake.NewClientset(newPod(nsAI, "agent-1", agentUID, "node-a"))
	var mu sync.Mutex
	failing := true
	client.PrependReactor("list", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return true, nil, errors.New("dial tcp 10.96.0.1:443: connect: connection refused")
		}
		return false, nil, nil
	})
	host := startWithStatus(t, client, 200*time.Millisecond)
	eventually(t, 5*time.Second, "not synced status", statusIs(host, componentstatus.StatusRecoverableError, "have not synced"))
	if msg := host.last().Err().Error(); !strings.Contains(msg, "Kubernetes API server unreachable (list/watch of ") {
		t.Errorf("status %q does not say the API is unreachable", msg)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	eventually(t, 30*time.Second, "OK after sync", statusIs(host, componentstatus.StatusOK, ""))
}

// TestStatusSyncedQuickly: informers that sync within the grace report nothing.
func TestStatusSyncedQuickly(t *testing.T) {
	host := startWithStatus(t, fake.NewClientset(newPod(nsAI, "agent-1", agentUID, "node-a")), 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	if ev := host.last(); ev != nil {
		t.Errorf("status %v %v, want none reported", ev.Status(), ev.Err())
	}
}

// TestStatusForbidden: a resource the API refuses (RBAC) is a recoverable error naming it.
func TestStatusForbidden(t *testing.T) {
	client := fake.NewClientset(newPod(nsAI, "agent-1", agentUID, "node-a"))
	client.PrependReactor("list", "replicasets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "replicasets"}, "", errors.New("RBAC: access denied"))
	})
	host := startWithStatus(t, client, 5*time.Second)
	eventually(t, 5*time.Second, "forbidden status", statusIs(host, componentstatus.StatusRecoverableError, "refused to list or watch replicasets (Forbidden)"))
}
