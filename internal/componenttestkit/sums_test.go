package componenttestkit

import (
	"context"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

func TestInt64Sums(t *testing.T) {
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	if got := Int64Sums(t, tel, "c"); len(got) != 0 {
		t.Fatalf("nothing recorded: %v", got)
	}
	c, err := tel.NewTelemetrySettings().MeterProvider.Meter("m").Int64Counter("c")
	if err != nil {
		t.Fatal(err)
	}
	add := func(n int64, kv ...attribute.KeyValue) {
		c.Add(context.Background(), n, metric.WithAttributes(kv...))
	}
	add(1, attribute.String("reason", "a"), attribute.String("tier", "x"))
	add(2, attribute.String("reason", "a"), attribute.String("tier", "y"))
	add(4, attribute.String("reason", "b"))
	for _, tc := range []struct {
		keys []string
		want map[string]int64
	}{
		{nil, map[string]int64{"": 7}},
		{[]string{"reason"}, map[string]int64{"a": 3, "b": 4}},
		{[]string{"reason", "tier"}, map[string]int64{"a/x": 1, "a/y": 2, "b/": 4}},
	} {
		got := Int64Sums(t, tel, "c", tc.keys...)
		if len(got) != len(tc.want) {
			t.Errorf("by %v: %v, want %v", tc.keys, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("by %v: %v, want %v", tc.keys, got, tc.want)
			}
		}
	}
}
