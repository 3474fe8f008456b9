package storyrouteexporter

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agenttrail/agenttrail/exporter/storyrouteexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/selftelemetry"
)

// telemetry is the exporter's self-telemetry through the collector's meter (mdatagen is not
// available at this collector version, so the instruments are declared here and in
// metadata.yaml, which component_test.go holds them to).
type telemetry struct {
	traces, unusable, forgotten, resolverFailures, dropped metric.Int64Counter
	replicas                                               metric.Int64Gauge
}

func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	m := set.MeterProvider.Meter(metadata.ScopeName)
	t := &telemetry{}
	mk := selftelemetry.Counters{Meter: m}
	t.traces = mk.New("agenttrail.storyroute.traces", "Traces routed to a gateway replica (per export attempt), by what chose the replica.", "{trace}")
	t.unusable = mk.New("agenttrail.storyroute.unusable", "Socket spans whose address or port could not be a routing key, by reason.", "{span}")
	t.forgotten = mk.New("agenttrail.storyroute.forgotten", "Remembered traces or accepted connections a bound made the exporter forget, by reason.", "{item}")
	t.resolverFailures = mk.New("agenttrail.storyroute.resolver.failures", "Resolutions of the replicas' DNS name that failed or were cut, by reason.", "{resolution}")
	t.dropped = mk.New("agenttrail.storyroute.spans.dropped", "Spans the story route exporter gave up on, by reason and signal.", "{span}")
	if mk.Err != nil {
		return nil, mk.Err
	}
	var err error
	t.replicas, err = m.Int64Gauge("agenttrail.storyroute.replicas", metric.WithDescription("Gateway replicas spans are routed to."), metric.WithUnit("{replica}"))
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (t *telemetry) add(ctx context.Context, c metric.Int64Counter, n int, key, value string) {
	if n > 0 {
		c.Add(ctx, int64(n), metric.WithAttributeSet(attribute.NewSet(attribute.String(key, value))))
	}
}
