package storyjoinprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agenttrail/agenttrail/internal/selftelemetry"
	"github.com/agenttrail/agenttrail/internal/sockspan"
	"github.com/agenttrail/agenttrail/processor/storyjoinprocessor/internal/metadata"
)

// Attribute values of the processor's metrics.
const (
	matchFourTuple       = "four_tuple"
	matchClientEndpoint  = "client_endpoint"
	reasonTimeout        = "timeout"
	reasonBufferFull     = "buffer_full"
	reasonShutdown       = "shutdown"
	reasonMaxClients     = "max_clients"
	reasonMaxInbound     = "max_inbound"
	reasonMaxJoined      = "max_joined"
	reasonBadAddress     = sockspan.ReasonBadAddress
	reasonBadPort        = sockspan.ReasonBadPort
	reasonTooManyPerPeer = "too_many_per_endpoint"
)

// telemetry is the processor's self-telemetry through the collector's meter (mdatagen is not
// available at this collector version, so the instruments are declared here).
type telemetry struct {
	joined, unjoined, forgotten, unusable metric.Int64Counter
	opts                                  map[string]metric.AddOption
}

func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	m := set.MeterProvider.Meter(metadata.ScopeName)
	t := &telemetry{opts: map[string]metric.AddOption{}}
	mk := selftelemetry.Counters{Meter: m}
	t.joined = mk.New("agenttrail.storyjoin.joined", "Server-side traces joined under a client-side span, by how they matched.", "{trace}")
	t.unjoined = mk.New("agenttrail.storyjoin.unjoined", "Server-side traces exported without their client half, by reason.", "{trace}")
	t.forgotten = mk.New("agenttrail.storyjoin.forgotten", "Remembered spans, connections or joins a bound made the processor forget, by reason.", "{item}")
	t.unusable = mk.New("agenttrail.storyjoin.unusable", "Socket spans whose address or port could not be used as a join key, by reason.", "{span}")
	if mk.Err != nil {
		return nil, mk.Err
	}
	for _, v := range []string{matchFourTuple, matchClientEndpoint} {
		t.opts[v] = metric.WithAttributeSet(attribute.NewSet(attribute.String("match", v)))
	}
	for _, v := range []string{reasonTimeout, reasonBufferFull, reasonShutdown, reasonMaxClients, reasonMaxInbound, reasonMaxJoined, reasonBadAddress, reasonBadPort, reasonTooManyPerPeer} {
		t.opts[v] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", v)))
	}
	return t, nil
}

func (t *telemetry) add(ctx context.Context, c metric.Int64Counter, n int, attr string) {
	if n > 0 {
		c.Add(ctx, int64(n), t.opts[attr])
	}
}
