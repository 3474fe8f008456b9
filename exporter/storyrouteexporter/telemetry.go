package storyrouteexporter

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agenttrail/agenttrail/exporter/storyrouteexporter/internal/metadata"
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
	var err error
	mk := func(name, desc, unit string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		return c
	}
	t.traces = mk("agenttrail.storyroute.traces", "Traces routed to a gateway replica (per export attempt), by what chose the replica.", "{trace}")
	t.unusable = mk("agenttrail.storyroute.unusable", "Socket spans whose address or port could not be a routing key, by reason.", "{span}")
	t.forgotten = mk("agenttrail.storyroute.forgotten", "Remembered traces or accepted connections a bound made the exporter forget, by reason.", "{item}")
	t.resolverFailures = mk("agenttrail.storyroute.resolver.failures", "Resolutions of the replicas' DNS name that failed or were cut, by reason.", "{resolution}")
	t.dropped = mk("agenttrail.storyroute.spans.dropped", "Spans the story route exporter gave up on, by reason and signal.", "{span}")
	if err != nil {
		return nil, err
	}
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
