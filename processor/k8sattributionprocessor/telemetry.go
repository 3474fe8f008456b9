package k8sattributionprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agenttrail/agenttrail/processor/k8sattributionprocessor/internal/metadata"
)

// Reasons of agenttrail.k8s_attribution.misses.
const (
	// reasonWaitTimeout: the batch waited wait_for_metadata and the pod did
	// not show up.
	reasonWaitTimeout = "wait_timeout"
	// reasonNotFound: not found and not waited for, because the id already
	// timed out in an earlier batch or wait_for_metadata is 0.
	reasonNotFound = "not_found"
	// reasonAPIUnavailable: the API server is unreachable (or refused the
	// pod list), or no client could be built.
	reasonAPIUnavailable = "api_unavailable"
	// reasonNoAPI: auth_type none.
	reasonNoAPI = "no_api"
	// reasonProcessExited: only process.pid, and /proc/<pid> is gone before
	// the processor first saw the process.
	reasonProcessExited = "process_exited"
	// reasonNoIdentity: neither process.pid, container.id nor k8s.pod.uid.
	reasonNoIdentity = "no_identity"
	// reasonCanceled: the batch's context ended while waiting.
	reasonCanceled = "canceled"
	// reasonNotWaited (owner_unresolved): wait_for_metadata is 0.
	reasonNotWaited = "not_waited"
	// reasonHoldLimit (owner_unresolved): maxOwnerHolds batches were held already.
	reasonHoldLimit = "hold_limit"
)

// telemetry is the processor's self-telemetry through the collector's meter
// (mdatagen is not available at this collector version, so the instrument is
// declared here).
type telemetry struct {
	misses metric.Int64Counter
	// unresolved counts resources released without their Deployment or CronJob while the owner
	// informer had not synced.
	unresolved metric.Int64Counter
	// reasons holds a prepared attribute option per reason (no allocation
	// per miss).
	reasons map[string]metric.AddOption
}

func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	m := set.MeterProvider.Meter(metadata.ScopeName)
	c, err := m.Int64Counter("agenttrail.k8s_attribution.misses",
		metric.WithDescription("Resources marked agenttrail.k8s.attribution=missing, by reason."),
		metric.WithUnit("{resource}"))
	if err != nil {
		return nil, err
	}
	u, err := m.Int64Counter("agenttrail.k8s_attribution.owner_unresolved",
		metric.WithDescription("Resources released without their Deployment or CronJob name while the ReplicaSet or Job informer had not synced, by reason."),
		metric.WithUnit("{resource}"))
	if err != nil {
		return nil, err
	}
	t := &telemetry{misses: c, unresolved: u, reasons: map[string]metric.AddOption{}}
	for _, r := range []string{reasonWaitTimeout, reasonNotFound, reasonAPIUnavailable, reasonNoAPI, reasonProcessExited, reasonNoIdentity, reasonCanceled, reasonNotWaited, reasonHoldLimit} {
		t.reasons[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
	}
	return t, nil
}

func (t *telemetry) miss(ctx context.Context, reason string) {
	opt, ok := t.reasons[reason]
	if !ok {
		opt = metric.WithAttributes(attribute.String("reason", reason))
	}
	t.misses.Add(ctx, 1, opt)
}

func (t *telemetry) ownerUnresolved(ctx context.Context, reason string) {
	opt, ok := t.reasons[reason]
	if !ok {
		opt = metric.WithAttributes(attribute.String("reason", reason))
	}
	t.unresolved.Add(ctx, 1, opt)
}
