package selftelemetry

import (
	"errors"
	"testing"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// failingMeter fails the counter named bad and counts the counters asked for.
type failingMeter struct {
	noop.Meter
	bad   string
	asked []string
}

func (m *failingMeter) Int64Counter(name string, opts ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	m.asked = append(m.asked, name)
	if name == m.bad {
		return nil, errors.New("refused")
	}
	return m.Meter.Int64Counter(name, opts...)
}

func TestCountersStopAtTheFirstError(t *testing.T) {
	m := &failingMeter{bad: "b"}
	c := Counters{Meter: m}
	if c.New("a", "A.", "{x}") == nil || c.Err != nil {
		t.Fatalf("first counter: err %v", c.Err)
	}
	if c.New("b", "B.", "{x}") != nil || c.Err == nil {
		t.Fatal("the failing counter did not set Err")
	}
	if c.New("c", "C.", "{x}") != nil {
		t.Fatal("a counter made after an error")
	}
	if len(m.asked) != 2 {
		t.Errorf("asked the meter for %v, want a and b only", m.asked)
	}
}
