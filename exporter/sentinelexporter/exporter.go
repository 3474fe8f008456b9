package sentinelexporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/monitor/ingestion/azlogs"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/exporter/sentinelexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit"
)

type signal string

const (
	signalTraces signal = "traces"
	signalLogs   signal = "logs"
)

// Reasons recorded on agenttrail.sentinel.rows.dropped.
const (
	dropRowTooLarge      = "row_too_large"      // one encoded row alone exceeds max_batch_bytes
	dropEmptyBody        = "empty_body"         // log record without body: no finding to report
	dropRejectedTooLarge = "rejected_too_large" // the service answered 413 for a request holding this row alone
)

const droppedMetricName = "agenttrail.sentinel.rows.dropped"

// gzipEncoding is the Content-Encoding of every upload: azlogs sends the bytes it is given and
// only sets the header, so the exporter compresses the JSON array itself.
var gzipEncoding = "gzip"

// uploader is the part of *azlogs.Client the exporter uses.
type uploader interface {
	Upload(ctx context.Context, ruleID string, streamName string, logs []byte, options *azlogs.UploadOptions) (azlogs.UploadResponse, error)
}

type idleCloser interface{ CloseIdleConnections() }

// sentinelExporter sends one signal (findings or spans) to one DCR stream.
type sentinelExporter struct {
	cfg       *Config
	signal    signal
	stream    string
	path      string // request path, for error messages
	maxBatch  int
	logger    *zap.Logger
	telemetry component.TelemetrySettings
	opts      factoryOptions
	identity  string // who authenticates, for error messages; never the secret
	authority string // the Entra authority host used, for error messages
	secret    string // redacted from anything the service or the SDK echoes back

	drops *exporterkit.Drops // the dropped metric and its summary log line

	mu     sync.Mutex
	client uploader   // created in start
	idle   idleCloser // the transport's idle connections, closed in shutdown

	auth authHold

	statePool sync.Pool
	gzipPool  sync.Pool
}

func newExporter(set exporter.Settings, cfg *Config, sig signal, opts factoryOptions) (*sentinelExporter, error) {
	dropped, err := set.TelemetrySettings.MeterProvider.Meter(metadata.ScopeName).Int64Counter(
		droppedMetricName,
		metric.WithDescription("Rows the Sentinel exporter dropped instead of sending, by reason."),
		metric.WithUnit("{row}"),
	)
	if err != nil {
		return nil, err
	}
	stream := cfg.StreamNameSpans
	if sig == signalLogs {
		stream = cfg.StreamNameFindings
	}
	return &sentinelExporter{
		cfg:       cfg,
		signal:    sig,
		stream:    stream,
		path:      "/dataCollectionRules/" + url.PathEscape(cfg.DCRImmutableID) + "/streams/" + url.PathEscape(stream),
		maxBatch:  cfg.MaxBatchBytes,
		logger:    set.Logger,
		telemetry: set.TelemetrySettings,
		opts:      opts,
		identity:  describeIdentity(&cfg.Auth),
		authority: effectiveAuthority(cfg),
		secret:    string(cfg.Auth.ClientSecret),
		drops:     exporterkit.NewDrops(dropped, set.Logger, set.ID.String(), string(sig), "rows"),
	}, nil
}

// start builds the credential and the Logs Ingestion client; no request is sent yet.
func (e *sentinelExporter) start(_ context.Context, _ component.Host) error {
	var transport policy.Transporter
	var idle idleCloser
	if e.opts.transport != nil {
		transport = e.opts.transport
		idle, _ = transport.(idleCloser)
	} else {
		hc := newHTTPClient()
		transport, idle = hc, hc
	}
	cred, err := newCredential(e.cfg, transport, e.opts)
	if err != nil {
		return fmt.Errorf("sentinel: cannot create the %s: %s", e.identity, e.redact(err.Error()))
	}
	client, err := newIngestionClient(e.cfg, cred, transport)
	if err != nil {
		return fmt.Errorf("sentinel: cannot create the Logs Ingestion client: %w", err)
	}
	e.mu.Lock()
	e.client, e.idle = client, idle
	e.mu.Unlock()
	e.drops.Start()
	e.logger.Info("Sentinel exporter started",
		zap.String("signal", string(e.signal)),
		zap.String("endpoint", redactedEndpoint(e.cfg.Endpoint)),
		zap.String("dcr_immutable_id", e.cfg.DCRImmutableID),
		zap.String("stream", e.stream),
		zap.String("identity", e.identity))
	return nil
}

// shutdown is idempotent and safe without start. It closes the idle connections of the
// transport (MSAL and azcore keep keep-alive connections to Entra and the ingestion endpoint).
// exporterhelper calls it after its queue has shut down, so the last drop summary line includes
// what the shutdown dropped or kept.
func (e *sentinelExporter) shutdown(context.Context) error {
	e.drops.Shutdown()
	e.mu.Lock()
	idle := e.idle
	e.client = nil
	e.mu.Unlock()
	if idle != nil {
		idle.CloseIdleConnections()
	}
	return nil
}

func (e *sentinelExporter) getClient() uploader {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.client
}

var errNotStarted = consumererror.NewPermanent(errors.New("sentinel exporter is not started"))

// begin returns the batcher of one export call of n items, or the error that stops the call
// before any upload; done gives the call's buffers back.
func (e *sentinelExporter) begin(ctx context.Context, n int) (b *batcher, done func(), err error) {
	client := e.getClient()
	if client == nil {
		return nil, nil, errNotStarted
	}
	if err := e.auth.held(); err != nil {
		return nil, nil, err
	}
	st := e.getState()
	return e.newBatcher(ctx, client, st, n), func() { e.putState(st) }, nil
}

func (e *sentinelExporter) pushTraces(ctx context.Context, td ptrace.Traces) error {
	b, done, err := e.begin(ctx, td.SpanCount())
	if err != nil {
		return err
	}
	defer done()
	st := b.st
	idx := 0
	rss := td.ResourceSpans()
resources:
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		rc := st.resourceCtx(rs.Resource())
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			scope := sss.At(j).Scope()
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				st.row = appendSpanRow(st.row[:0], &rc, scope, spans.At(k))
				if !b.add(idx, st.row) {
					break resources
				}
				idx++
			}
		}
	}
	// A retryable error hands back only the rows still to be sent; a permanent one carries them
	// too, so that the drop accounting (exporterkit.Drops.HelperLogger) counts what was dropped.
	if err := b.finish(); err != nil {
		return consumererror.NewTraces(err, exporterkit.SelectSpans(td, b.pending))
	}
	return nil
}

func (e *sentinelExporter) pushLogs(ctx context.Context, ld plog.Logs) error {
	b, done, err := e.begin(ctx, ld.LogRecordCount())
	if err != nil {
		return err
	}
	defer done()
	st := b.st
	idx := 0
	rls := ld.ResourceLogs()
resources:
	for i := 0; i < rls.Len(); i++ {
		rl := rls.At(i)
		rc := st.resourceCtx(rl.Resource())
		sls := rl.ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			lrs := sls.At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				row, ok := appendFindingRow(st.row[:0], &rc, lrs.At(k), &st.scratch)
				st.row = row
				if !ok {
					b.drop(idx, dropEmptyBody, 0)
				} else if !b.add(idx, row) {
					break resources
				}
				idx++
			}
		}
	}
	if err := b.finish(); err != nil {
		return consumererror.NewLogs(err, exporterkit.SelectLogs(ld, b.pending))
	}
	return nil
}

// encodeState holds the buffers of one export call; pooled across calls.
type encodeState struct {
	row     []byte // the row being encoded
	res     []byte // the current resource's attributes as JSON
	rows    []byte // rows of the current batch, comma separated, without the brackets
	starts  []int  // start offset in rows of each row of the batch
	ends    []int  // end offset in rows of each row of the batch
	idx     []int  // position in the pdata of each row of the batch
	done    []bool // per pdata position: delivered or dropped
	scratch bytes.Buffer
}

// resourceCtx is newResourceCtx encoding into the state's buffer, kept for the next resource.
func (st *encodeState) resourceCtx(res pcommon.Resource) resourceCtx {
	rc := newResourceCtx(res, st.res)
	if rc.attrsJSON != nil {
		st.res = rc.attrsJSON
	}
	return rc
}

func (e *sentinelExporter) getState() *encodeState {
	if s, ok := e.statePool.Get().(*encodeState); ok {
		return s
	}
	return &encodeState{rows: make([]byte, 0, e.maxBatch)}
}

func (e *sentinelExporter) putState(s *encodeState) {
	const keepLimit = 4 << 20
	if cap(s.row) > keepLimit || cap(s.rows) > keepLimit || s.scratch.Cap() > keepLimit || cap(s.done) > 1<<20 {
		return
	}
	s.rows, s.starts, s.ends, s.idx = s.rows[:0], s.starts[:0], s.ends[:0], s.idx[:0]
	s.scratch.Reset()
	e.statePool.Put(s)
}

// batcher cuts the rows of one export call into JSON arrays of at most max_batch_bytes and
// uploads each as soon as it is full. It stops at the first failed upload.
type batcher struct {
	e      *sentinelExporter
	ctx    context.Context
	client uploader
	st     *encodeState
	err    error
	drops  exporterkit.CallDrops
}

func (e *sentinelExporter) newBatcher(ctx context.Context, client uploader, st *encodeState, n int) *batcher {
	if cap(st.done) < n {
		st.done = make([]bool, n)
	} else {
		st.done = st.done[:n]
		clear(st.done)
	}
	return &batcher{e: e, ctx: ctx, client: client, st: st}
}

// pending reports whether the row at pdata position idx still has to be delivered.
func (b *batcher) pending(idx int) bool { return idx >= len(b.st.done) || !b.st.done[idx] }

func (b *batcher) drop(idx int, reason string, size int) {
	b.drops.Note(reason, size)
	if idx < len(b.st.done) {
		b.st.done[idx] = true
	}
}

// add appends one encoded row; false means an upload failed and the call must stop.
func (b *batcher) add(idx int, row []byte) bool {
	if len(row)+2 > b.e.maxBatch { // "[" row "]"
		b.drop(idx, dropRowTooLarge, len(row))
		return true
	}
	st := b.st
	if n := len(st.starts); n > 0 && len(st.rows)+1+len(row)+2 > b.e.maxBatch {
		if err := b.flush(); err != nil {
			b.err = err
			return false
		}
	}
	if len(st.starts) > 0 {
		st.rows = append(st.rows, ',')
	}
	st.starts = append(st.starts, len(st.rows))
	st.rows = append(st.rows, row...)
	st.ends = append(st.ends, len(st.rows))
	st.idx = append(st.idx, idx)
	return true
}

func (b *batcher) flush() error {
	st := b.st
	if len(st.starts) == 0 {
		return nil
	}
	err := b.upload(0, len(st.starts))
	st.rows, st.starts, st.ends, st.idx = st.rows[:0], st.starts[:0], st.ends[:0], st.idx[:0]
	return err
}

// finish uploads the last batch, records the drops and returns the first upload error.
func (b *batcher) finish() error {
	if b.err == nil {
		b.err = b.flush()
	}
	b.e.reportDrops(b.ctx, &b.drops)
	return b.err
}

// upload sends rows [lo, hi) of the batch as one JSON array. A 413 answer splits the range in
// two halves sent one after the other, down to single rows, which are dropped if still refused
// (exporterkit.Bisect, shared with the Splunk HEC exporter).
func (b *batcher) upload(lo, hi int) error {
	st := b.st
	return exporterkit.Bisect(lo, hi, func(lo, hi int) error {
		body := st.rows[st.starts[lo]:st.ends[hi-1]]
		err := b.e.send(b.ctx, b.client, body)
		if err == nil {
			for i := lo; i < hi; i++ {
				st.done[st.idx[i]] = true
			}
		} else if exporterkit.IsTooLarge(err) && hi-lo > 1 {
			b.e.logger.Debug("Logs Ingestion API refused the request as too large; splitting it in two",
				zap.String("stream", b.e.stream), zap.Int("rows", hi-lo), zap.Int("bytes", len(body)+2))
		}
		return err
	}, func(i int, _ error) {
		b.drop(st.idx[i], dropRejectedTooLarge, st.ends[i]-st.starts[i]+2)
	})
}

// send gzips "[" rows "]" and uploads it. The compressed buffer is not reused: the HTTP
// transport may still read a request body after the response has arrived.
func (e *sentinelExporter) send(ctx context.Context, client uploader, rows []byte) error {
	out := bytes.NewBuffer(make([]byte, 0, len(rows)/4+512))
	zw, _ := e.gzipPool.Get().(*gzip.Writer)
	if zw == nil {
		zw, _ = gzip.NewWriterLevel(out, gzip.BestSpeed)
	} else {
		zw.Reset(out)
	}
	_, _ = zw.Write([]byte{'['})
	_, _ = zw.Write(rows)
	_, _ = zw.Write([]byte{']'})
	if err := zw.Close(); err != nil {
		return consumererror.NewPermanent(fmt.Errorf("sentinel: gzip: %w", err))
	}
	e.gzipPool.Put(zw)
	_, err := client.Upload(ctx, e.cfg.DCRImmutableID, e.stream, out.Bytes(), &azlogs.UploadOptions{ContentEncoding: &gzipEncoding})
	if err == nil {
		return nil
	}
	return e.classify(err)
}

func (e *sentinelExporter) reportDrops(ctx context.Context, drops *exporterkit.CallDrops) {
	e.drops.Report(ctx, drops, "Dropped rows that the Logs Ingestion API cannot accept", "dropped_rows",
		[]zap.Field{zap.String("stream", e.stream)},
		func(reason string, largest int) []zap.Field {
			switch reason {
			case dropRowTooLarge:
				return []zap.Field{zap.Int("largest_row_bytes", largest), zap.Int("max_batch_bytes", e.maxBatch)}
			case dropRejectedTooLarge:
				return []zap.Field{zap.Int("largest_request_bytes", largest)}
			}
			return nil
		})
}

// newHTTPClient is the transport of an exporter without an injected one: a private clone of
// http.DefaultTransport (proxy from HTTPS_PROXY/NO_PROXY, HTTP/2) so that Shutdown can close
// its idle connections without touching other components.
func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: t}
}
