package ebpfreceiver

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
)

// maxLoneRecords is the most records a read woken from idle may hold and still be taken for
// the node's process churn (an exec, a fork and an exit of a process not traced) rather than
// the start of traffic.
const maxLoneRecords = 4

// idleAgain reports whether the read that woke the loop from idle left nothing in flight: no
// span open or waiting to be sent, no tracer state waiting for time to pass. Then the loop
// waits idle again at once instead of polling for another flush interval. Every exec, fork
// and exit on the node wakes the reader (a target may have started); without this each cost
// two reads and two flushes, the second a flush interval later for nothing. Evidence is not
// delayed: an idle reader is woken by the next record at once, and a read that opened a span
// keeps the loop polling.
func (r *ebpfReceiver) idleAgain(read int) bool {
	return read <= maxLoneRecords && r.builder.OpenSpans() == 0 && r.builder.PendingSpans() == 0 && !r.tracersWaiting()
}

// readerWakes counts the read loop's reads of the ring buffer by what woke it: what an idle
// collector costs is mostly how often it wakes.
type readerWakes struct {
	c              metric.Int64Counter // nil: not counted (the meter refused it)
	idle, interval metric.AddOption
}

func newReaderWakes(m metric.Meter, logger *zap.Logger) readerWakes {
	c, err := m.Int64Counter("agenttrail.ebpf.reader.wakeups",
		metric.WithDescription("Reads of the ring buffer by what woke the reader: idle (a record or housekeeping woke a reader waiting idle) or interval (the flush interval while records come)."),
		metric.WithUnit("{wakeup}"))
	if err != nil {
		logger.Debug("the reader's wakeups are not counted", zap.Error(err))
		return readerWakes{}
	}
	set := func(v string) metric.AddOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String("wake", v)))
	}
	return readerWakes{c: c, idle: set("idle"), interval: set("interval")}
}

func (w readerWakes) add(ctx context.Context, idle bool) {
	if w.c == nil {
		return
	}
	if idle {
		w.c.Add(ctx, 1, w.idle)
	} else {
		w.c.Add(ctx, 1, w.interval)
	}
}
