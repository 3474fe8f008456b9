package exporterkit

import (
	"context"
	"testing"

	"go.uber.org/zap"
)

func TestReportCallDrops(t *testing.T) {
	d, logs := newTestDrops(t)
	var c CallDrops
	d.Report(context.Background(), &c, "Dropped", "dropped_events", nil, nil)
	if logs.Len() != 0 {
		t.Fatalf("a call without drops wrote %d lines", logs.Len())
	}
	c.Note("too_large", 10)
	c.Note("too_large", 300)
	c.Note("too_large", 20)
	c.Note("empty_body", 0)
	d.Report(context.Background(), &c, "Dropped", "dropped_events", []zap.Field{zap.String("stream", "s")},
		func(reason string, largest int) []zap.Field {
			if reason == "too_large" {
				return []zap.Field{zap.Int("largest_event_bytes", largest)}
			}
			return nil
		})
	lines := logs.TakeAll()
	if len(lines) != 2 {
		t.Fatalf("%d lines, want one per reason", len(lines))
	}
	first, second := lines[0].ContextMap(), lines[1].ContextMap()
	if first["reason"] != "empty_body" || second["reason"] != "too_large" {
		t.Errorf("lines not sorted by reason: %v, %v", first["reason"], second["reason"])
	}
	if second["dropped_events"] != int64(3) || second["largest_event_bytes"] != int64(300) ||
		second["signal"] != "traces" || second["stream"] != "s" {
		t.Errorf("too_large line: %v", second)
	}
	if _, ok := first["largest_event_bytes"]; ok || first["dropped_events"] != int64(1) {
		t.Errorf("empty_body line: %v", first)
	}
	if got := d.Totals(); got["too_large"] != 3 || got["empty_body"] != 1 {
		t.Errorf("counted %v", got)
	}
}
