package evidenceexporter // import "github.com/agenttrail/agenttrail/exporter/evidenceexporter"

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/internal/metadata"
)

var errNotStarted = errors.New("evidence exporter is not started")

// repairsMetricName counts crash-damaged tails cut off the open segment, by reason.
const repairsMetricName = "agenttrail.evidence.tail.repairs"

// droppedMetricName counts records exporterhelper gave up on (never written), by reason.
const droppedMetricName = "agenttrail.evidence.records.dropped"

type evidenceExporter struct {
	cfg     *Config
	logger  *zap.Logger
	repairs metric.Int64Counter
	dropped metric.Int64Counter // shared by the signals' drop accounting
	refs    int                 // guarded by the registry's mutex

	mu     sync.Mutex // guards start and shutdown
	arc    atomic.Pointer[archive.Archive]
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newEvidenceExporter(cfg *Config, set component.TelemetrySettings) (*evidenceExporter, error) {
	repairs, err := set.MeterProvider.Meter(metadata.ScopeName).Int64Counter(repairsMetricName,
		metric.WithDescription("Crash-damaged tails (a torn last record) cut off the open evidence segment, by reason."),
		metric.WithUnit("{repair}"))
	if err != nil {
		return nil, err
	}
	dropped, err := set.MeterProvider.Meter(metadata.ScopeName).Int64Counter(droppedMetricName,
		metric.WithDescription("Spans and log records the evidence exporter gave up on (never written to the archive), by reason and signal."),
		metric.WithUnit("{item}"))
	if err != nil {
		return nil, err
	}
	return &evidenceExporter{cfg: cfg, logger: set.Logger, repairs: repairs, dropped: dropped}, nil
}

// onRepair counts a repaired tail; the archive has already logged it with its details.
func (e *evidenceExporter) onRepair(r archive.Repair) {
	e.repairs.Add(context.Background(), 1, metric.WithAttributes(attribute.String("reason", r.Kind)))
}

func (e *evidenceExporter) start(_ context.Context, _ component.Host) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.arc.Load() != nil {
		return nil // the other signal started it
	}
	key, err := archive.LoadSigningKey(e.cfg.SigningKeyFile)
	if err != nil {
		return err
	}
	retention, err := archive.ParseRetention(e.cfg.Retention)
	if err != nil {
		return err
	}
	arc, err := archive.Open(e.cfg.Directory, key, archive.Options{
		SegmentMaxBytes: e.cfg.SegmentMaxBytes,
		SegmentMaxAge:   e.cfg.SegmentMaxAge,
		Retention:       retention,
		Fsync:           e.cfg.Fsync,
		Logger:          e.logger,
		OnRepair:        e.onRepair,
	})
	if err != nil {
		return err
	}
	seq, hash := arc.Head()
	e.logger.Info("Evidence archive opened", zap.String("directory", e.cfg.Directory),
		zap.Uint64("last_seq", seq), zap.String("last_hash", hash), zap.String("retention", retention.String()))
	e.arc.Store(arc)
	// The maintenance goroutine outlives Start's context; it has its own, cancelled in shutdown.
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.wg.Add(1)
	go e.maintain(ctx, arc)
	return nil
}

// rotationCheckInterval is how often an idle open segment is checked against segment_max_age.
func rotationCheckInterval(maxAge time.Duration) time.Duration {
	return min(max(maxAge/4, time.Second), time.Minute)
}

// maintain seals aged segments when no record arrives and applies retention.
func (e *evidenceExporter) maintain(ctx context.Context, arc *archive.Archive) {
	defer e.wg.Done()
	rotate := time.NewTicker(rotationCheckInterval(e.cfg.SegmentMaxAge))
	defer rotate.Stop()
	retention := time.NewTicker(e.cfg.RetentionCheckInterval)
	defer retention.Stop()
	e.applyRetention(arc)
	for {
		select {
		case <-ctx.Done():
			return
		case <-rotate.C:
			if err := arc.RotateIfDue(); err != nil && !errors.Is(err, archive.ErrClosed) {
				e.logger.Error("Sealing an aged evidence segment failed", zap.Error(err))
			}
		case <-retention.C:
			e.applyRetention(arc)
		}
	}
}

func (e *evidenceExporter) applyRetention(arc *archive.Archive) {
	removed, err := arc.ApplyRetention()
	if len(removed) > 0 {
		e.logger.Info("Evidence retention removed expired segments", zap.Strings("segments", removed))
	}
	if err != nil && !errors.Is(err, archive.ErrClosed) {
		e.logger.Error("Evidence retention failed", zap.Error(err))
	}
}

func (e *evidenceExporter) shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cancel != nil {
		e.cancel()
		e.wg.Wait()
		e.cancel = nil
	}
	arc := e.arc.Swap(nil)
	if arc == nil {
		return nil
	}
	return arc.Close()
}

func (e *evidenceExporter) pushTraces(ctx context.Context, td ptrace.Traces) error {
	arc := e.arc.Load()
	if arc == nil {
		return errNotStarted
	}
	entries, err := storyEntries(td)
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	return appendEntries(ctx, arc, entries)
}

func (e *evidenceExporter) pushLogs(ctx context.Context, ld plog.Logs) error {
	arc := e.arc.Load()
	if arc == nil {
		return errNotStarted
	}
	entries, err := findingEntries(ld)
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	return appendEntries(ctx, arc, entries)
}

func appendEntries(ctx context.Context, arc *archive.Archive, entries []archive.Entry) error {
	err := arc.Append(ctx, entries)
	if errors.Is(err, archive.ErrInvalidEntry) {
		return consumererror.NewPermanent(err)
	}
	// Anything else (a full disk, an I/O error) left the archive as it was: retrying is safe.
	return err
}

// storyEntries splits a batch by trace id, keeping each span's resource and scope, and returns
// one story entry per trace id in the order the ids first appear.
func storyEntries(td ptrace.Traces) ([]archive.Entry, error) {
	type group struct {
		td     ptrace.Traces
		rs     map[int]ptrace.ResourceSpans
		scopes map[[2]int]ptrace.ScopeSpans
	}
	var order []string
	groups := map[string]*group{}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			for k := 0; k < ss.Spans().Len(); k++ {
				span := ss.Spans().At(k)
				id := span.TraceID().String()
				g := groups[id]
				if g == nil {
					g = &group{td: ptrace.NewTraces(), rs: map[int]ptrace.ResourceSpans{}, scopes: map[[2]int]ptrace.ScopeSpans{}}
					groups[id] = g
					order = append(order, id)
				}
				out, ok := g.rs[i]
				if !ok {
					out = g.td.ResourceSpans().AppendEmpty()
					rs.Resource().CopyTo(out.Resource())
					out.SetSchemaUrl(rs.SchemaUrl())
					g.rs[i] = out
				}
				outScope, ok := g.scopes[[2]int{i, j}]
				if !ok {
					outScope = out.ScopeSpans().AppendEmpty()
					ss.Scope().CopyTo(outScope.Scope())
					outScope.SetSchemaUrl(ss.SchemaUrl())
					g.scopes[[2]int{i, j}] = outScope
				}
				span.CopyTo(outScope.Spans().AppendEmpty())
			}
		}
	}
	var m ptrace.JSONMarshaler
	entries := make([]archive.Entry, 0, len(order))
	for _, id := range order {
		payload, err := m.MarshalTraces(groups[id].td)
		if err != nil {
			return nil, fmt.Errorf("encoding story %s: %w", id, err)
		}
		entries = append(entries, archive.Entry{Kind: archive.KindStory, TraceID: id, Payload: payload})
	}
	return entries, nil
}

// traceIDAttributeKeys are the log record attributes that may carry a finding's trace id when
// the record's own trace id field is empty, in order of preference.
func traceIDAttributeKeys() []string {
	return []string{"agenttrail.trace_id", "trace_id", "trace.id"}
}

// findingEntries returns one finding entry per log record, its payload the OTLP JSON of a
// single-record plog.Logs keeping the record's resource and scope.
func findingEntries(ld plog.Logs) ([]archive.Entry, error) {
	var m plog.JSONMarshaler
	var entries []archive.Entry
	for i := 0; i < ld.ResourceLogs().Len(); i++ {
		rl := ld.ResourceLogs().At(i)
		for j := 0; j < rl.ScopeLogs().Len(); j++ {
			sl := rl.ScopeLogs().At(j)
			for k := 0; k < sl.LogRecords().Len(); k++ {
				lr := sl.LogRecords().At(k)
				one := plog.NewLogs()
				orl := one.ResourceLogs().AppendEmpty()
				rl.Resource().CopyTo(orl.Resource())
				orl.SetSchemaUrl(rl.SchemaUrl())
				osl := orl.ScopeLogs().AppendEmpty()
				sl.Scope().CopyTo(osl.Scope())
				osl.SetSchemaUrl(sl.SchemaUrl())
				lr.CopyTo(osl.LogRecords().AppendEmpty())
				payload, err := m.MarshalLogs(one)
				if err != nil {
					return nil, fmt.Errorf("encoding finding: %w", err)
				}
				entries = append(entries, archive.Entry{Kind: archive.KindFinding, TraceID: findingTraceID(lr), Payload: payload})
			}
		}
	}
	return entries, nil
}

func findingTraceID(lr plog.LogRecord) string {
	if id := lr.TraceID(); !id.IsEmpty() {
		return id.String()
	}
	for _, k := range traceIDAttributeKeys() {
		v, ok := lr.Attributes().Get(k)
		if !ok {
			continue
		}
		var s string
		switch v.Type() {
		case pcommon.ValueTypeStr:
			s = v.Str()
		case pcommon.ValueTypeBytes:
			if b := v.Bytes().AsRaw(); len(b) == 16 {
				s = pcommon.TraceID(b).String()
			}
		}
		if id, err := archive.NormalizeTraceID(s); err == nil {
			return id
		}
	}
	return ""
}
