package componenttestkit

import (
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Int64Sums reads the int64 counter name a component recorded in tel: its totals by the values
// of keys, joined by "/" (a data point without one of the keys counts under ""; with no keys,
// the total is under ""). Nothing recorded yet is an empty map; a metric of another kind fails
// the test.
func Int64Sums(t testing.TB, tel *componenttest.Telemetry, name string, keys ...string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	m, err := tel.GetMetric(name)
	if err != nil {
		return out
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is %T, want an int64 sum", name, m.Data)
	}
	vals := make([]string, len(keys))
	for _, dp := range sum.DataPoints {
		for i, k := range keys {
			v, _ := dp.Attributes.Value(attribute.Key(k))
			vals[i] = v.AsString()
		}
		out[strings.Join(vals, "/")] += dp.Value
	}
	return out
}
