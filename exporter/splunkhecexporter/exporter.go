package splunkhecexporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"sync"

	"github.com/google/uuid"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/exporter/splunkhecexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit"
)

type signal string

const (
	signalTraces signal = "traces"
	signalLogs   signal = "logs"
)

// Reasons recorded on agenttrail.splunk_hec.events.dropped.
const (
	dropEventTooLarge     = "event_too_large"            // encoded event > max_event_size
	dropOverContentLength = "exceeds_max_content_length" // one event alone > max_content_length_*
	dropEmptyBody         = "empty_body"                 // log record without body: Splunk rejects blank events
	dropMarshalError      = "marshal_error"              // not representable in JSON (e.g. NaN attribute)
	dropRejectedTooLarge  = "rejected_too_large"         // HEC answered 413 to a request holding this event alone
)

const droppedMetricName = "agenttrail.splunk_hec.events.dropped"

// hecExporter sends one signal (traces or logs) to a Splunk HTTP Event Collector.
type hecExporter struct {
	cfg              *Config
	signal           signal
	logger           *zap.Logger
	telemetry        component.TelemetrySettings
	mapper           eventMapper
	maxContentLength int
	maxEventSize     int
	compress         bool
	eventURL         string
	eventPath        string
	ackURL           string
	channel          string
	token            string
	headers          http.Header

	client *http.Client // created in start

	drops *exporterkit.Drops // the dropped metric and its summary log line

	statePool sync.Pool
	stopCh    chan struct{}
	stopOnce  sync.Once
	noAckOnce sync.Once
}

func newExporter(set exporter.Settings, cfg *Config, sig signal) (*hecExporter, error) {
	u, err := cfg.eventURL()
	if err != nil {
		return nil, fmt.Errorf(`"endpoint" must be a valid URL: %w`, err)
	}
	dropped, err := set.TelemetrySettings.MeterProvider.Meter(metadata.ScopeName).Int64Counter(
		droppedMetricName,
		metric.WithDescription("Events the Splunk HEC exporter dropped before sending, by reason."),
		metric.WithUnit("{event}"),
	)
	if err != nil {
		return nil, err
	}
	maxCL := cfg.MaxContentLengthTraces
	if sig == signalLogs {
		maxCL = cfg.MaxContentLengthLogs
	}
	appVersion := cfg.SplunkAppVersion
	if appVersion == "" {
		appVersion = set.BuildInfo.Version
	}
	channel := uuid.NewString()
	headers := http.Header{}
	headers.Set("Authorization", "Splunk "+string(cfg.Token))
	headers.Set("Content-Type", "application/json")
	headers.Set("User-Agent", cfg.SplunkAppName+"/"+appVersion)
	headers.Set("__splunk_app_name", cfg.SplunkAppName)
	headers.Set("__splunk_app_version", appVersion)
	if cfg.Ack.Enabled {
		headers.Set("X-Splunk-Request-Channel", channel)
	}
	return &hecExporter{
		cfg:              cfg,
		signal:           sig,
		logger:           set.Logger,
		telemetry:        set.TelemetrySettings,
		mapper:           newEventMapper(cfg, sig),
		maxContentLength: maxCL,
		maxEventSize:     cfg.MaxEventSize,
		compress:         !cfg.DisableCompression,
		eventURL:         u.String(),
		eventPath:        u.Path,
		ackURL:           ackURL(u, channel).String(),
		channel:          channel,
		token:            string(cfg.Token),
		headers:          headers,
		drops:            exporterkit.NewDrops(dropped, set.Logger, set.ID.String(), string(sig), "events"),
		stopCh:           make(chan struct{}),
	}, nil
}

func (e *hecExporter) start(ctx context.Context, host component.Host) error {
	cc := e.cfg.ClientConfig // copy: the shared config is never modified
	// Compression is done here (disable_compression), never by confighttp, to avoid double gzip.
	cc.Compression = ""
	var extensions map[component.ID]component.Component
	if host != nil {
		extensions = host.GetExtensions()
	}
	client, err := cc.ToClient(ctx, extensions, e.telemetry)
	if err != nil {
		return err
	}
	e.client = client
	e.drops.Start()
	return nil
}

// shutdown is idempotent and safe without start. exporterhelper calls it after its queue has
// shut down, so the last drop summary line includes what the shutdown dropped or kept.
func (e *hecExporter) shutdown(context.Context) error {
	e.stopOnce.Do(func() { close(e.stopCh) })
	e.drops.Shutdown()
	if e.client != nil {
		e.client.CloseIdleConnections()
	}
	return nil
}

// pushTraces hands back, with a retryable error, only the events still to be sent. A permanent
// error after part of the request was delivered carries the undelivered part too, so that the
// drop accounting (exporterkit.Drops.HelperLogger) counts what was really dropped.
func (e *hecExporter) pushTraces(ctx context.Context, td ptrace.Traces) error {
	res := e.export(ctx, e.mapper.spanEvents(td))
	if res.err == nil || (consumererror.IsPermanent(res.err) && res.resendFrom < 0) {
		return res.err
	}
	return consumererror.NewTraces(res.err, exporterkit.SelectSpans(td, res.needsResend))
}

func (e *hecExporter) pushLogs(ctx context.Context, ld plog.Logs) error {
	res := e.export(ctx, e.mapper.logEvents(ld))
	if res.err == nil || (consumererror.IsPermanent(res.err) && res.resendFrom < 0) {
		return res.err
	}
	return consumererror.NewLogs(res.err, exporterkit.SelectLogs(ld, res.needsResend))
}

// encodeState holds the per-call buffers; pooled across calls.
type encodeState struct {
	scratch bytes.Buffer
	enc     *json.Encoder
	batch   bytes.Buffer
	gzBuf   bytes.Buffer
	gz      *gzip.Writer
}

func (e *hecExporter) getState() *encodeState {
	if s, ok := e.statePool.Get().(*encodeState); ok {
		return s
	}
	s := &encodeState{}
	s.enc = json.NewEncoder(&s.scratch)
	s.enc.SetEscapeHTML(false)
	return s
}

func (e *hecExporter) putState(s *encodeState) {
	// Do not keep very large buffers alive (max_content_length 0 means unlimited).
	const keepLimit = 16 << 20
	if s.batch.Cap() > keepLimit || s.gzBuf.Cap() > keepLimit || s.scratch.Cap() > keepLimit {
		return
	}
	s.scratch.Reset()
	s.batch.Reset()
	s.gzBuf.Reset()
	e.statePool.Put(s)
}

// indexRange is a half-open range [from, to) of event positions sent in one request.
type indexRange struct{ from, to int }

type pendingAck struct {
	id int64
	indexRange
}

// exportResult tells which events must be sent again when err is retryable.
type exportResult struct {
	err        error
	resendFrom int // every position >= resendFrom (never reached or failed); -1 for none
	unacked    []indexRange
	dropped    map[int]struct{}
}

func (r *exportResult) needsResend(idx int) bool {
	if _, ok := r.dropped[idx]; ok {
		return false
	}
	if r.resendFrom >= 0 && idx >= r.resendFrom {
		return true
	}
	for _, rg := range r.unacked {
		if idx >= rg.from && idx < rg.to {
			return true
		}
	}
	return false
}

// export encodes events as newline-separated JSON into batches whose uncompressed size stays
// within the signal's max_content_length, posts each batch, then (ack enabled) waits for the
// indexer acknowledgement of every batch it posted.
func (e *hecExporter) export(ctx context.Context, events iter.Seq2[int, *hecEvent]) exportResult {
	res := exportResult{resendFrom: -1}
	if e.client == nil {
		res.err = consumererror.NewPermanent(errors.New("splunk_hec exporter is not started"))
		return res
	}
	st := e.getState()
	defer e.putState(st)

	var drops exporterkit.CallDrops
	drop := func(idx int, reason string, size int) {
		if res.dropped == nil {
			res.dropped = map[int]struct{}{}
		}
		res.dropped[idx] = struct{}{}
		drops.Note(reason, size)
	}

	var pending []pendingAck
	// The events of the batch being built: byte offset in st.batch and pdata position, so that
	// a 413 can split the batch (exporterkit.Bisect) and a failure can name what to resend.
	var starts, positions []int
	flush := func() error {
		body := st.batch.Bytes()
		end := func(i int) int {
			if i < len(starts) {
				return starts[i]
			}
			return len(body)
		}
		failed := -1
		err := exporterkit.Bisect(0, len(starts), func(lo, hi int) error {
			ackID, hasAck, err := e.post(ctx, st, body[starts[lo]:end(hi)])
			if err != nil {
				failed = lo
				if exporterkit.IsTooLarge(err) && hi-lo > 1 {
					e.logger.Debug("Splunk HEC refused the request as too large; splitting it in two",
						zap.Int("events", hi-lo), zap.Int("bytes", end(hi)-starts[lo]))
				}
				return err
			}
			if hasAck {
				pending = append(pending, pendingAck{id: ackID, indexRange: indexRange{positions[lo], positions[hi-1] + 1}})
			}
			return nil
		}, func(i int, _ error) {
			drop(positions[i], dropRejectedTooLarge, end(i+1)-starts[i]-1)
		})
		if err != nil {
			res.resendFrom = positions[failed]
			return err
		}
		st.batch.Reset()
		starts, positions = starts[:0], positions[:0]
		return nil
	}

	var postErr error
	for idx, ev := range events {
		if ev == nil {
			drop(idx, dropEmptyBody, 0)
			continue
		}
		st.scratch.Reset()
		if err := st.enc.Encode(ev); err != nil { // Encode appends the newline separator
			drop(idx, dropMarshalError, 0)
			continue
		}
		n := st.scratch.Len()
		if e.maxEventSize > 0 && n-1 > e.maxEventSize {
			drop(idx, dropEventTooLarge, n-1)
			continue
		}
		if e.maxContentLength > 0 && n > e.maxContentLength {
			drop(idx, dropOverContentLength, n)
			continue
		}
		if e.maxContentLength > 0 && st.batch.Len()+n > e.maxContentLength {
			if postErr = flush(); postErr != nil {
				break
			}
		}
		starts = append(starts, st.batch.Len())
		positions = append(positions, idx)
		st.batch.Write(st.scratch.Bytes())
	}
	if postErr == nil && len(starts) > 0 {
		postErr = flush()
	}
	e.reportDrops(ctx, &drops)

	if postErr != nil && consumererror.IsPermanent(postErr) {
		res.err = postErr
		return res
	}
	if len(pending) > 0 {
		unacked, ackErr := e.waitForAcks(ctx, pending)
		for _, p := range unacked {
			res.unacked = append(res.unacked, p.indexRange)
		}
		if postErr == nil {
			postErr = ackErr
		}
	}
	res.err = postErr
	return res
}

func (e *hecExporter) reportDrops(ctx context.Context, drops *exporterkit.CallDrops) {
	e.drops.Report(ctx, drops, "Dropped events that Splunk HEC cannot accept", "dropped_events", nil,
		func(reason string, largest int) []zap.Field {
			switch reason {
			case dropEventTooLarge:
				return []zap.Field{zap.Int("largest_event_bytes", largest), zap.Int("max_event_size", e.maxEventSize)}
			case dropOverContentLength:
				return []zap.Field{zap.Int("largest_event_bytes", largest), zap.Int("max_content_length", e.maxContentLength)}
			case dropRejectedTooLarge:
				return []zap.Field{zap.Int("largest_event_bytes", largest)}
			}
			return nil
		})
}

// redactedEndpoint is safe to log: no user info, no query.
func redactedEndpoint(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid endpoint>"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
