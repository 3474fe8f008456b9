package exporterkit

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Reasons Drops records for what exporterhelper drops (its "Exporting failed. Dropping data."
// and "Exporting failed. Rejecting data." lines), next to the exporters' own reasons.
const (
	ReasonRejected         = "rejected"          // a permanent error (e.g. HTTP 400, 401, 403)
	ReasonRetriesExhausted = "retries_exhausted" // retry_on_failure::max_elapsed_time reached
	ReasonTimeout          = "timeout"           // the request's context expired before the next retry
	ReasonShutdown         = "shutdown"          // interrupted by shutdown with an in-memory queue: lost
	ReasonQueueFull        = "queue_full"        // refused at the queue: the caller got the error
	ReasonExportFailed     = "export_failed"     // any other error exporterhelper gave up on
)

// DefaultSummaryInterval is how often Drops writes its summary line when something was dropped.
// At least the collector's log sampling tick (10 s), so that the line, whose message names the
// exporter, is never sampled away even with sampling on.
const DefaultSummaryInterval = time.Minute

// Drops counts what one exporter (one signal) dropped, by reason, in one place: the exporter's
// dropped counter (a metric with reason and signal attributes) and, from the same numbers, one
// summary log line per interval and one at shutdown. The metric and the log therefore agree.
type Drops struct {
	counter  metric.Int64Counter
	logger   *zap.Logger
	id       string
	signal   string
	unit     string // what is counted: "events", "rows", "spans"
	interval time.Duration
	message  string

	mu       sync.Mutex
	window   map[string]int64 // reason → count since the last summary line
	total    map[string]int64 // reason → count since start
	kept     int64            // items a shutdown left in the persistent queue, since the last line
	keptAll  int64
	started  time.Time
	stopCh   chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// NewDrops returns the accounting of exporter id (e.g. "splunk_hec/ack") for one signal.
// counter is the exporter's own dropped metric; unit names what it counts in the log line.
func NewDrops(counter metric.Int64Counter, logger *zap.Logger, id, signal, unit string) *Drops {
	return &Drops{
		counter: counter, logger: logger, id: id, signal: signal, unit: unit,
		interval: DefaultSummaryInterval,
		// The sampler keys on the message: one message per exporter and signal, written at most
		// once per interval, stays within any sampler's first entries of a tick.
		message: fmt.Sprintf("Drop summary of exporter %s (%s)", id, signal),
		window:  map[string]int64{}, total: map[string]int64{},
		started: time.Now(), stopCh: make(chan struct{}),
	}
}

// SetInterval changes the summary interval; call before Start.
func (d *Drops) SetInterval(every time.Duration) { d.interval = every }

// Add records n items dropped for reason.
func (d *Drops) Add(ctx context.Context, reason string, n int64) {
	if n <= 0 {
		return
	}
	d.counter.Add(ctx, n, metric.WithAttributes(attribute.String("reason", reason), attribute.String("signal", d.signal)))
	d.mu.Lock()
	d.window[reason] += n
	d.total[reason] += n
	d.mu.Unlock()
}

func (d *Drops) addKept(n int64) {
	d.mu.Lock()
	d.kept += n
	d.keptAll += n
	d.mu.Unlock()
}

// Start writes a summary line every interval in which something was dropped.
func (d *Drops) Start() {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(d.interval)
		defer t.Stop()
		for {
			select {
			case <-d.stopCh:
				return
			case <-t.C:
				d.summary(false)
			}
		}
	}()
}

// Shutdown stops the ticker and writes the last summary line, with the totals since start,
// whether or not anything was dropped. Idempotent; safe without Start.
func (d *Drops) Shutdown() {
	first := false
	d.stopOnce.Do(func() { close(d.stopCh); first = true })
	d.wg.Wait()
	if first {
		d.summary(true)
	}
}

// Totals returns the counts by reason since start (for tests and the shutdown line).
func (d *Drops) Totals() map[string]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int64, len(d.total))
	for k, v := range d.total {
		out[k] = v
	}
	return out
}

func (d *Drops) summary(final bool) {
	d.mu.Lock()
	window, kept := d.window, d.kept
	var sum, total int64
	for _, n := range window {
		sum += n
	}
	for _, n := range d.total {
		total += n
	}
	keptAll := d.keptAll
	d.window, d.kept = map[string]int64{}, 0
	d.mu.Unlock()
	if !final && sum == 0 && kept == 0 {
		return
	}
	fields := []zap.Field{
		zap.String("exporter", d.id),
		zap.String("signal", d.signal),
		zap.String("unit", d.unit),
		zap.Int64("dropped", sum),
		zap.String("dropped_by_reason", formatReasons(window)),
		zap.Int64("dropped_since_start", total),
	}
	if final {
		fields = append(fields, zap.Duration("since", time.Since(d.started).Round(time.Second)),
			zap.Int64("kept_in_persistent_queue_at_shutdown", keptAll))
	} else {
		fields = append(fields, zap.Duration("interval", d.interval))
	}
	if sum > 0 {
		d.logger.Warn(d.message, fields...)
	} else {
		d.logger.Info(d.message, fields...)
	}
}

// formatReasons is "reason=n,reason=n" sorted by reason, or "none": one field a SIEM query can
// split, whatever the log encoding.
func formatReasons(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// exporterhelper v0.165.0's lines for data it gives up on (queue_sender.go, base_exporter.go),
// and the prefixes of the errors it wraps (retry_sender.go, experr).
const (
	helperDropping  = "Exporting failed. Dropping data."
	helperRejecting = "Exporting failed. Rejecting data."
	errShutdown     = "interrupted due to shutdown"
	errNotRetryable = "not retryable error"
	errNoMoreRetry  = "no more retries left"
	errCancelled    = "request is cancelled or timed out"
)

// HelperSettings returns set with its logger replaced by HelperLogger, for the exporterhelper
// that queue configures: "persistent" is a queue with a storage extension (file_storage).
func (d *Drops) HelperSettings(set exporter.Settings, queue configoptional.Optional[exporterhelper.QueueBatchConfig]) exporter.Settings {
	persistent := queue.HasValue() && queue.Get().StorageID != nil
	set.Logger = d.HelperLogger(set.Logger, persistent)
	return set
}

// HelperLogger returns the logger to give exporterhelper (exporter.Settings.Logger) so that
// what it drops is counted here by reason and its lines say what happened:
//   - a request interrupted by shutdown with a persistent queue is not dropped (the queue keeps
//     it for the next start): the line says "kept in the persistent queue", at info level;
//   - with an in-memory queue it is lost: counted as "shutdown";
//   - otherwise the line is counted by the error's reason, with dropped_items corrected to the
//     items not delivered when the error carries them (a partial failure);
//
// and these lines bypass log sampling: each is one request's fate. Every other line goes
// through the logger unchanged, sampled as configured.
func (d *Drops) HelperLogger(l *zap.Logger, persistentQueue bool) *zap.Logger {
	return l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return &helperCore{Core: c, d: d, persistent: persistentQueue}
	}))
}

type helperCore struct {
	zapcore.Core
	d          *Drops
	persistent bool
}

// Enabled says yes to exporterhelper's level for the lines it gives up on (error), whatever the
// logger's: zap asks before Check, and the count must not depend on the log level.
func (h *helperCore) Enabled(l zapcore.Level) bool {
	return l >= zapcore.ErrorLevel || h.Core.Enabled(l)
}

func (h *helperCore) With(fields []zapcore.Field) zapcore.Core {
	return &helperCore{Core: h.Core.With(fields), d: h.d, persistent: h.persistent}
}

func (h *helperCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if strings.HasPrefix(e.Message, helperDropping) || strings.HasPrefix(e.Message, helperRejecting) {
		// Counted even when the level is disabled: the count must not depend on the log level.
		return ce.AddCore(e, h)
	}
	return h.Core.Check(e, ce)
}

func (h *helperCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	var err error
	var items int64 = -1
	itemsKey := ""
	for _, f := range fields {
		switch {
		case f.Type == zapcore.ErrorType && f.Key == "error":
			err, _ = f.Interface.(error)
		case f.Key == "dropped_items" || f.Key == "rejected_items":
			items, itemsKey = f.Integer, f.Key
		}
	}
	if err == nil || items < 0 {
		return h.write(e, fields) // not the line this core knows: pass it on
	}
	if notDelivered, ok := undelivered(err); ok && notDelivered < items {
		fields = replaceInt(fields, itemsKey, notDelivered)
		fields = append(fields, zap.Int64("request_items", items))
		items = notDelivered
	}
	msg := err.Error()
	reason := ReasonExportFailed
	switch {
	case strings.HasPrefix(e.Message, helperRejecting):
		reason = ReasonQueueFull
		if !strings.Contains(msg, "queue is full") {
			reason = ReasonRejected
		}
	case strings.HasPrefix(msg, errShutdown) && h.persistent:
		h.d.addKept(items)
		e.Message = "Export interrupted by shutdown; the data is kept in the persistent queue and sent after the restart."
		e.Level = zapcore.InfoLevel
		return h.write(e, replaceKey(fields, "dropped_items", "kept_items"))
	case strings.HasPrefix(msg, errShutdown):
		reason = ReasonShutdown
		e.Message = "Export interrupted by shutdown; the data is lost (in-memory queue, no file_storage)."
	case strings.HasPrefix(msg, errNotRetryable) || consumererror.IsPermanent(err):
		reason = ReasonRejected
	case strings.HasPrefix(msg, errNoMoreRetry):
		reason = ReasonRetriesExhausted
	case strings.HasPrefix(msg, errCancelled):
		reason = ReasonTimeout
	}
	h.d.Add(context.Background(), reason, items)
	return h.write(e, append(fields, zap.String("reason", reason)))
}

func (h *helperCore) write(e zapcore.Entry, fields []zapcore.Field) error {
	if !h.Core.Enabled(e.Level) {
		return nil
	}
	return h.Core.Write(e, fields)
}

// undelivered is the item count of the data a partial failure hands back (what this project's
// exporters return for the part not delivered), if err carries one.
func undelivered(err error) (int64, bool) {
	var te consumererror.Traces
	if errors.As(err, &te) {
		return int64(te.Data().SpanCount()), true
	}
	var le consumererror.Logs
	if errors.As(err, &le) {
		return int64(le.Data().LogRecordCount()), true
	}
	return 0, false
}

func replaceInt(fields []zapcore.Field, key string, v int64) []zapcore.Field {
	out := make([]zapcore.Field, len(fields))
	copy(out, fields)
	for i := range out {
		if out[i].Key == key {
			out[i] = zap.Int64(key, v)
		}
	}
	return out
}

func replaceKey(fields []zapcore.Field, from, to string) []zapcore.Field {
	out := make([]zapcore.Field, len(fields))
	copy(out, fields)
	for i := range out {
		if out[i].Key == from {
			out[i].Key = to
		}
	}
	return out
}
