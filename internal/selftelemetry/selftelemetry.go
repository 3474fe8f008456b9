// Package selftelemetry holds what the components' own telemetry code shares: making a run of
// int64 counters on one meter and stopping at the first error.
package selftelemetry

import "go.opentelemetry.io/otel/metric"

// Counters makes the int64 counters of one component on Meter. The first error is kept in Err
// and every later call returns nil without trying, so a constructor makes all its counters and
// checks Err once.
type Counters struct {
	Meter metric.Meter
	Err   error
}

// New makes the counter name with its description and unit, or returns nil once Err is set.
func (c *Counters) New(name, desc, unit string) metric.Int64Counter {
	if c.Err != nil {
		return nil
	}
	ctr, err := c.Meter.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
	if err != nil {
		c.Err = err
		return nil
	}
	return ctr
}
