package attackstoryprocessor

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/enforcement"
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

func (h *statusHost) all() []*componentstatus.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*componentstatus.Event(nil), h.events...)
}

// TestEnforcementStatus: a workload in mode enforce that the kernel cannot enforce (no kernel
// enforcement, programs that fail to attach) makes the processor's status a recoverable error
// naming the workload and why; the programs attaching later make it OK again.
func TestEnforcementStatus(t *testing.T) {
	for name, c := range map[string]struct {
		kernelErr, applyErr error
		want                string
	}{
		"no kernel":   {kernelErr: errors.New("enforce: create decision ring buffer: operation not permitted"), want: "kernel enforcement is unavailable: enforce: create decision ring buffer"},
		"apply fails": {applyErr: errors.New("attach cgroup_inet4_connect: invalid argument"), want: "cannot attach the enforcement programs to "},
	} {
		t.Run(name, func(t *testing.T) {
			n := newNode(t, "4242", "/srv/bank/bin/customer-agent", "")
			cfg := enforceConfig(t, n)
			completeProfile(t, cfg.ProfilesDir, "enforce")
			k := newFakeKernel()
			k.applyErr = c.applyErr
			host := &statusHost{Host: componenttest.NewNopHost()}
			h := &harness{t: t, clock: newFakeClock(baseTime), sink: new(consumertest.TracesSink), tel: componenttest.NewTelemetry()}
			set := processortest.NewNopSettings(Type)
			set.TelemetrySettings = h.tel.NewTelemetrySettings()
			core, logs := observer.New(zap.InfoLevel)
			set.Logger, h.logs = zap.New(core), logs
			p, err := newProcessor(set, cfg, h.sink, h.clock)
			require.NoError(t, err)
			p.manual = true
			kernelErr := c.kernelErr
			p.enf.NewKernel = func() (enforcement.Kernel, error) {
				if kernelErr != nil {
					return nil, kernelErr
				}
				return k, nil
			}
			h.p = p
			require.NoError(t, p.Start(context.Background(), host))
			t.Cleanup(func() {
				require.NoError(t, p.Shutdown(context.Background()))
				require.NoError(t, h.tel.Shutdown(context.Background()))
			})
			b := benignStories(1)
			h.replay(b.traces(), false)
			h.settle()
			evs := host.all()
			require.NotEmpty(t, evs, "no status reported")
			last := evs[len(evs)-1]
			assert.Equal(t, componentstatus.StatusRecoverableError, last.Status())
			require.Error(t, last.Err())
			assert.Contains(t, last.Err().Error(), "workload "+bankWorkloadKey+" stays in mode alert: "+c.want)

			// The kernel side works now: the next reconcile attaches and the status is OK.
			if c.kernelErr != nil {
				p.enf.KErr = nil
				kernelErr = nil
			}
			k.mu.Lock()
			k.applyErr = nil
			k.mu.Unlock()
			p.emitMu.Lock()
			p.enf.Reconcile(p.profiles)
			p.emitMu.Unlock()
			assert.Equal(t, 1, k.nAttached())
			evs = host.all()
			assert.Equal(t, componentstatus.StatusOK, evs[len(evs)-1].Status(), "after the programs attached")
		})
	}
}
