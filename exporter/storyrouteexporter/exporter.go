package storyrouteexporter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/exporterkit"
)

// errNoReplica is retryable: the data stays in the queue until a replica is known.
var errNoReplica = errors.New("no gateway replica resolved yet")

// backend is one replica: an OTLP/gRPC exporter without queue or retry of its own.
type backend struct {
	endpoint string
	exp      exporter.Traces
	// inflight counts the requests sent to it; one that leaves the ring is shut down when they
	// are done. Add is only called under routeExporter.mu's read lock, on a backend of the
	// current ring, so it never races the Wait of its removal.
	inflight sync.WaitGroup
}

type routeExporter struct {
	cfg    *Config
	set    exporter.Settings
	tel    *telemetry
	drops  *exporterkit.Drops
	keyer  *keyer
	lookup lookupFunc
	otlp   exporter.Factory

	host component.Host

	updateMu sync.Mutex // one replica list change at a time
	mu       sync.RWMutex
	ring     *ring
	backends []*backend // the ring's endpoints, in its order

	cancel   context.CancelFunc
	loopWG   sync.WaitGroup // the DNS loop
	removeWG sync.WaitGroup // replicas being shut down after they left the ring
	stopOnce sync.Once
}

func newRouteExporter(cfg *Config, set exporter.Settings) (*routeExporter, error) {
	tel, err := newTelemetry(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	return &routeExporter{
		cfg: cfg, set: set, tel: tel,
		drops:  exporterkit.NewDrops(tel.dropped, set.Logger, set.ID.String(), "traces", "spans"),
		keyer:  newKeyer(cfg.MaxTraces, cfg.MaxInbound, cfg.TraceTTL),
		lookup: net.DefaultResolver.LookupNetIP,
		otlp:   otlpexporter.NewFactory(),
	}, nil
}

func (e *routeExporter) start(ctx context.Context, host component.Host) error {
	e.host = host
	e.drops.Start()
	if e.cfg.Resolver.Static.HasValue() {
		e.setEndpoints(sortedDistinct(e.cfg.Resolver.Static.Get().Hostnames))
		return nil
	}
	d := e.cfg.Resolver.DNS.Get()
	// A name that does not resolve yet (the gateway not deployed, DNS not ready) must not stop
	// the agent: the queue holds the data and the loop tries again every interval.
	e.resolve(ctx, d, true)
	loopCtx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.loopWG.Add(1)
	go func() {
		defer e.loopWG.Done()
		t := time.NewTicker(d.Interval)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-loopCtx.Done():
				return
			case <-t.C:
				failing = !e.resolve(loopCtx, d, !failing)
			}
		}
	}()
	return nil
}

// resolve resolves the replicas once and applies the answer; warn says whether a failure is
// logged at warning level (the first of a run of failures) or debug. It reports success.
func (e *routeExporter) resolve(ctx context.Context, d *DNSResolver, warn bool) bool {
	endpoints, failure, err := resolveDNS(ctx, e.lookup, d)
	if failure != "" {
		e.tel.add(ctx, e.tel.resolverFailures, 1, "reason", failure)
	}
	if err != nil {
		if ctx.Err() != nil {
			return true // shutting down
		}
		lvl := zap.DebugLevel
		if warn {
			lvl = zap.WarnLevel
		}
		e.set.Logger.Log(lvl, "storyroute: resolving the gateway replicas failed; the last list stays", zap.Error(err), zap.Int("replicas", e.replicaCount()))
		return false
	}
	if failure == reasonTooMany {
		e.set.Logger.Warn("storyroute: more gateway replicas than supported; the first in sorted order are used", zap.Int("max", maxBackends))
	}
	e.setEndpoints(endpoints)
	return true
}

func (e *routeExporter) replicaCount() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.backends)
}

// setEndpoints makes endpoints the replicas: new ones get an exporter, kept ones keep theirs,
// and the ones that left are shut down once their requests are done.
func (e *routeExporter) setEndpoints(endpoints []string) {
	e.updateMu.Lock()
	defer e.updateMu.Unlock()
	e.mu.RLock()
	cur := e.backends
	e.mu.RUnlock()
	old := make(map[string]*backend, len(cur))
	var curEndpoints []string
	for _, b := range cur {
		old[b.endpoint] = b
		curEndpoints = append(curEndpoints, b.endpoint)
	}
	if slices.Equal(curEndpoints, endpoints) && (e.ring != nil || len(endpoints) == 0) {
		return
	}
	var next []*backend
	var names []string
	for _, ep := range endpoints {
		if b, ok := old[ep]; ok {
			next = append(next, b)
			names = append(names, ep)
			delete(old, ep)
			continue
		}
		b, err := e.newBackend(ep)
		if err != nil {
			// Only a configuration the otlp exporter refuses gets here, and then for every
			// replica alike: the data waits in the queue, the error says why.
			e.set.Logger.Error("storyroute: cannot create the exporter of a gateway replica", zap.String("endpoint", ep), zap.Error(err))
			continue
		}
		next = append(next, b)
		names = append(names, ep)
	}
	r := newRing(names)
	e.mu.Lock()
	e.ring, e.backends = r, next
	e.mu.Unlock()
	e.tel.replicas.Record(context.Background(), int64(len(next)))
	e.set.Logger.Info("storyroute: gateway replicas", zap.Strings("endpoints", names), zap.Strings("previous", curEndpoints))
	for _, b := range old {
		e.removeWG.Add(1)
		go func() {
			defer e.removeWG.Done()
			b.inflight.Wait()
			if err := b.exp.Shutdown(context.Background()); err != nil {
				e.set.Logger.Warn("storyroute: shutting down a replica's exporter", zap.String("endpoint", b.endpoint), zap.Error(err))
			}
		}()
	}
}

func (e *routeExporter) newBackend(endpoint string) (*backend, error) {
	cfg := e.cfg.Protocol.OTLP // a copy: each replica its own endpoint
	cfg.ClientConfig.Endpoint = endpoint
	set := exporter.Settings{
		ID:                component.NewIDWithName(e.otlp.Type(), endpoint),
		TelemetrySettings: e.set.TelemetrySettings,
		BuildInfo:         e.set.BuildInfo,
	}
	set.Logger = e.set.Logger.With(zap.String("replica", endpoint))
	exp, err := e.otlp.CreateTraces(context.Background(), set, &cfg)
	if err != nil {
		return nil, fmt.Errorf("create exporter for %s: %w", endpoint, err)
	}
	if err := exp.Start(context.Background(), e.host); err != nil {
		return nil, fmt.Errorf("start exporter for %s: %w", endpoint, err)
	}
	return &backend{endpoint: endpoint, exp: exp}, nil
}

// shutdown stops the DNS loop and every replica's exporter. exporterhelper has drained the
// queue (or kept it on disk) before it calls this. Idempotent; safe when start never ran.
func (e *routeExporter) shutdown(context.Context) error {
	var err error
	e.stopOnce.Do(func() {
		if e.cancel != nil {
			e.cancel()
		}
		e.loopWG.Wait()
		e.updateMu.Lock()
		e.mu.Lock()
		bs := e.backends
		e.ring, e.backends = nil, nil
		e.mu.Unlock()
		e.updateMu.Unlock()
		for _, b := range bs {
			b.inflight.Wait()
			err = errors.Join(err, b.exp.Shutdown(context.Background()))
		}
		e.removeWG.Wait()
		e.drops.Shutdown()
	})
	return err
}

// pushTraces sends each trace of td to the replica of its key. A replica that fails gets only
// its part back as a retryable error (consumererror.Traces), so a retry sends that part alone,
// routed again on the replicas known then.
func (e *routeExporter) pushTraces(ctx context.Context, td ptrace.Traces) error {
	counts := map[string]int{}
	keys := e.keyer.keys(td, counts)
	by := map[string]int{}
	for _, k := range keys {
		by[k.by]++
	}
	for v, n := range by {
		e.tel.add(ctx, e.tel.traces, n, "key", v)
	}
	for r, n := range counts {
		if r == reasonBadAddress || r == reasonBadPort {
			e.tel.add(ctx, e.tel.unusable, n, "reason", r)
		} else {
			e.tel.add(ctx, e.tel.forgotten, n, "reason", r)
		}
	}

	e.mu.RLock()
	r, bs := e.ring, e.backends
	if r == nil || len(bs) == 0 {
		e.mu.RUnlock()
		return consumererror.NewTraces(errNoReplica, td)
	}
	target := make(map[pcommon.TraceID]int, len(keys))
	var used []int
	for id, k := range keys {
		i := r.pick(k.key)
		target[id] = i
		if !slices.Contains(used, i) {
			used = append(used, i)
			bs[i].inflight.Add(1)
		}
	}
	e.mu.RUnlock()
	defer func() {
		for _, i := range used {
			bs[i].inflight.Done()
		}
	}()
	slices.Sort(used)

	parts := map[int]ptrace.Traces{}
	if len(used) == 1 {
		parts[used[0]] = td // the whole batch to one replica: no copy (the exporters do not mutate)
	} else {
		parts = split(td, target)
	}
	errs := make([]error, len(used))
	var wg sync.WaitGroup
	for n, i := range used {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := bs[i].exp.ConsumeTraces(ctx, parts[i]); err != nil {
				errs[n] = fmt.Errorf("gateway replica %s: %w", bs[i].endpoint, err)
			}
		}()
	}
	wg.Wait()

	var retryErr, permErr error
	retry, perm := ptrace.NewTraces(), ptrace.NewTraces()
	for n, i := range used {
		err := errs[n]
		if err == nil {
			continue
		}
		if consumererror.IsPermanent(err) {
			permErr = errors.Join(permErr, err)
			appendTraces(perm, parts[i], len(used) == 1)
		} else {
			retryErr = errors.Join(retryErr, err)
			appendTraces(retry, parts[i], len(used) == 1)
		}
	}
	switch {
	case retryErr == nil && permErr == nil:
		return nil
	case retryErr == nil:
		return consumererror.NewPermanent(consumererror.NewTraces(permErr, perm))
	case permErr != nil:
		// The retryable part goes back to exporterhelper; the rejected part cannot ride along
		// (a permanent error would stop the retry), so it is counted and logged here.
		n := perm.SpanCount()
		e.drops.Add(ctx, exporterkit.ReasonRejected, int64(n))
		e.set.Logger.Error("storyroute: a gateway replica rejected spans; dropping them", zap.Int("dropped_items", n), zap.Error(permErr))
	}
	return consumererror.NewTraces(retryErr, retry)
}

// appendTraces adds part to dst: copied when part is the request's own data (which a retry
// still needs), moved when it is a split of it.
func appendTraces(dst, part ptrace.Traces, own bool) {
	if own {
		part.ResourceSpans().CopyTo(dst.ResourceSpans())
		return
	}
	part.ResourceSpans().MoveAndAppendTo(dst.ResourceSpans())
}

// split copies td into one Traces per replica, each span to the replica of its trace, with
// its resource and scope.
func split(td ptrace.Traces, target map[pcommon.TraceID]int) map[int]ptrace.Traces {
	out := map[int]ptrace.Traces{}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		dstRS := map[int]ptrace.ResourceSpans{}
		sss := rs.ScopeSpans()
		for k := 0; k < sss.Len(); k++ {
			ss := sss.At(k)
			dstSS := map[int]ptrace.ScopeSpans{}
			spans := ss.Spans()
			for n := 0; n < spans.Len(); n++ {
				s := spans.At(n)
				b := target[s.TraceID()]
				d, ok := dstSS[b]
				if !ok {
					r, ok := dstRS[b]
					if !ok {
						t, ok := out[b]
						if !ok {
							t = ptrace.NewTraces()
							out[b] = t
						}
						r = t.ResourceSpans().AppendEmpty()
						rs.Resource().CopyTo(r.Resource())
						r.SetSchemaUrl(rs.SchemaUrl())
						dstRS[b] = r
					}
					d = r.ScopeSpans().AppendEmpty()
					ss.Scope().CopyTo(d.Scope())
					d.SetSchemaUrl(ss.SchemaUrl())
					dstSS[b] = d
				}
				s.CopyTo(d.Spans().AppendEmpty())
			}
		}
	}
	return out
}
