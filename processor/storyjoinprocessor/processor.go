package storyjoinprocessor

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processorhelper"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/handoff"
	"github.com/agenttrail/agenttrail/internal/sockspan"
)

// pendingTrace is a server-side trace waiting for its client half.
type pendingTrace struct {
	id       pcommon.TraceID
	traces   ptrace.Traces
	spans    int
	ev       evidence
	deadline time.Time
	// acks are the requests that brought spans of this trace: each is answered when the
	// trace was passed on (nothing acknowledged to a sender is held only here).
	acks []*handoff.Ack
}

// request is one ConsumeTraces call, in its context: its answer waits for the traces it left
// waiting (ack), and the waiting traces its spans released are answered with its own hand-off.
type request struct {
	ack      *handoff.Ack
	released []*handoff.Ack
}

type requestKey struct{}

func requestOf(ctx context.Context) *request {
	r, _ := ctx.Value(requestKey{}).(*request)
	return r
}

// joiner is the processor's state: the client-side spans seen lately, the connections each node
// accepted, the server-side traces waiting and where joined traces went (so their later spans
// follow). One mutex: a batch is classified under it, and the next consumer is called outside.
type joiner struct {
	cfg    *Config
	next   consumer.Traces
	tel    *telemetry
	logger *zap.Logger
	now    func() time.Time

	mu           sync.Mutex
	clients      map[endpointKey][]*clientSpan
	clientQueue  []*clientSpan
	clientCount  int
	inbound      *sockspan.Inbound[inboundKey]
	pending      map[pcommon.TraceID]*pendingTrace
	pendingQueue []pcommon.TraceID
	pendingSpans int
	joined       map[pcommon.TraceID]joinInfo
	joinedQueue  []pcommon.TraceID

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	sends    sync.WaitGroup // expired traces being passed on
	stopOnce sync.Once
}

func newJoiner(cfg *Config, set component.TelemetrySettings, next consumer.Traces) (*joiner, error) {
	tel, err := newTelemetry(set)
	if err != nil {
		return nil, err
	}
	return &joiner{
		cfg: cfg, next: next, tel: tel, logger: set.Logger, now: time.Now,
		clients: map[endpointKey][]*clientSpan{},
		inbound: sockspan.NewInbound[inboundKey](cfg.MaxInbound),
		pending: map[pcommon.TraceID]*pendingTrace{},
		joined:  map[pcommon.TraceID]joinInfo{},
	}, nil
}

// start runs the loop that exports server-side traces whose wait is over.
func (j *joiner) start(context.Context, component.Host) error {
	ctx, cancel := context.WithCancel(context.Background())
	j.cancel = cancel
	tick := j.cfg.Wait / 4
	tick = max(tick, 10*time.Millisecond)
	tick = min(tick, time.Second)
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				j.expire(ctx, false)
			}
		}
	}()
	return nil
}

// shutdown exports every trace still waiting, unjoined. Idempotent and safe without start.
func (j *joiner) shutdown(ctx context.Context) error {
	var err error
	j.stopOnce.Do(func() {
		if j.cancel != nil {
			j.cancel()
		}
		j.wg.Wait()
		err = j.expire(ctx, true)
		j.sends.Wait()
	})
	return err
}

// expire exports the traces whose wait is over (all of them at shutdown) and forgets what is
// older than client_ttl.
func (j *joiner) expire(ctx context.Context, all bool) error {
	now := j.now()
	out := ptrace.NewTraces()
	var acks []*handoff.Ack
	j.mu.Lock()
	n := 0
	for len(j.pendingQueue) > 0 {
		id := j.pendingQueue[0]
		p := j.pending[id]
		if p != nil && !all && now.Before(p.deadline) {
			break
		}
		j.pendingQueue = j.pendingQueue[1:]
		if p == nil {
			continue
		}
		j.dropPending(p)
		j.logDecision("storyjoin: passed on unjoined", id, p.ev, nil)
		p.traces.ResourceSpans().MoveAndAppendTo(out.ResourceSpans())
		acks = append(acks, p.acks...)
		n++
	}
	j.forgetOld(now)
	j.mu.Unlock()
	reason := reasonTimeout
	if all {
		reason = reasonShutdown
	}
	j.tel.add(ctx, j.tel.unjoined, n, reason)
	if out.SpanCount() == 0 {
		return nil
	}
	send := func(ctx context.Context) error {
		spans := out.SpanCount()
		err := j.next.ConsumeTraces(ctx, out)
		if err != nil {
			j.logger.Error("storyjoin: unjoined traces refused by the next component; the senders waiting for them get the error",
				zap.Int("spans", spans), zap.Error(err))
		}
		for _, a := range acks {
			a.Done(err)
		}
		return err
	}
	if all {
		return send(ctx)
	}
	// The next component may hold the traces too (attackstory answers once their stories
	// left): the loop goes on meanwhile, so that other traces' waits end on time. The send
	// outlives the loop's context; shutdown waits for it.
	j.sends.Add(1)
	go func() {
		defer j.sends.Done()
		_ = send(context.WithoutCancel(ctx))
	}()
	return nil
}

func (j *joiner) dropPending(p *pendingTrace) {
	delete(j.pending, p.id)
	j.pendingSpans -= p.spans
}

// forgetOld drops client spans, accepted peers and joins older than client_ttl.
func (j *joiner) forgetOld(now time.Time) {
	limit := now.Add(-j.cfg.ClientTTL)
	for len(j.clientQueue) > 0 && j.clientQueue[0].seen.Before(limit) {
		j.removeClient(j.clientQueue[0])
		j.clientQueue = j.clientQueue[1:]
	}
	j.inbound.ForgetBefore(limit)
	for len(j.joinedQueue) > 0 {
		id := j.joinedQueue[0]
		if ji, ok := j.joined[id]; ok && !ji.seen.Before(limit) {
			break
		}
		j.joinedQueue = j.joinedQueue[1:]
		delete(j.joined, id)
	}
}

func (j *joiner) removeClient(c *clientSpan) {
	if c.gone {
		return
	}
	c.gone = true
	j.clientCount--
	list := j.clients[c.key]
	for i, x := range list {
		if x == c {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(j.clients, c.key)
	} else {
		j.clients[c.key] = list
	}
}

// consume classifies a batch: client spans are remembered and passed on at once; a
// server-side trace is joined when its client half is known, else held for wait; spans of a
// trace already joined follow it.
func (j *joiner) consume(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	now := j.now()
	counts := map[string]int{}
	j.mu.Lock()
	// Accepted peers first: an accept and the I/O on that connection often come in one batch.
	sockspan.EachAcceptedPeer(td, counts, func(node string, peer netip.AddrPort) {
		j.rememberInbound(inboundKey{node: node, peer: peer}, now, counts)
	})
	evs := map[pcommon.TraceID]evidence{}
	var order []pcommon.TraceID // traces in the order of their first evidence: the same output for the same input
	sockspan.EachSpan(td, func(res pcommon.Resource, s ptrace.Span) {
		if j.classify(res, s, now, evs, counts) {
			order = append(order, s.TraceID())
		}
	})

	// Decide per trace: follow an earlier join, join now, or hold.
	hold := map[pcommon.TraceID]*pendingTrace{}
	rewrite := map[pcommon.TraceID]joinInfo{}
	joinedNow := map[string]int{}
	var held []pcommon.TraceID
	for _, id := range order {
		ev := evs[id]
		if _, ok := j.joined[id]; ok {
			continue
		}
		if _, ok := j.pending[id]; ok {
			continue
		}
		if ji, ok := j.match(id, ev, now); ok {
			j.rememberJoin(id, ji, counts)
			joinedNow[ji.match]++
			j.logDecision("storyjoin: joined", id, ev, &ji)
			continue
		}
		j.logDecision("storyjoin: waiting for the client half", id, ev, nil)
		hold[id] = &pendingTrace{id: id, traces: ptrace.NewTraces(), ev: ev, deadline: now.Add(j.cfg.Wait)}
		held = append(held, id)
	}
	full := 0
	touched := map[*pendingTrace]struct{}{} // waiting traces this request brought spans to
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		sss := rs.ScopeSpans()
		for k := 0; k < sss.Len(); k++ {
			ss := sss.At(k)
			var dst map[pcommon.TraceID]ptrace.SpanSlice
			ss.Spans().RemoveIf(func(s ptrace.Span) bool {
				id := s.TraceID()
				if ji, ok := j.joined[id]; ok {
					rewrite[id] = ji
					return false
				}
				p := j.pending[id]
				if p != nil {
					j.pendingSpans++ // waiting already: counted here (a new one is counted below)
				} else {
					p = hold[id]
				}
				if p == nil {
					return false
				}
				touched[p] = struct{}{}
				if dst == nil {
					dst = map[pcommon.TraceID]ptrace.SpanSlice{}
				}
				d, ok := dst[id]
				if !ok {
					nrs := p.traces.ResourceSpans().AppendEmpty()
					rs.Resource().CopyTo(nrs.Resource())
					nrs.SetSchemaUrl(rs.SchemaUrl())
					nss := nrs.ScopeSpans().AppendEmpty()
					ss.Scope().CopyTo(nss.Scope())
					nss.SetSchemaUrl(ss.SchemaUrl())
					d = nss.Spans()
					dst[id] = d
				}
				s.MoveTo(d.AppendEmpty())
				p.spans++
				return true
			})
		}
	}
	for _, id := range held {
		p := hold[id]
		if j.pendingSpans+p.spans > j.cfg.MaxPendingSpans {
			// No room: the trace goes on now, unjoined, rather than anything waiting being lost.
			full++
			p.traces.ResourceSpans().MoveAndAppendTo(rss)
			continue
		}
		j.pending[id] = p
		j.pendingQueue = append(j.pendingQueue, id)
		j.pendingSpans += p.spans
	}
	// Client spans of this batch may complete traces that were waiting.
	released := j.retryPending(now, joinedNow, counts)
	req := requestOf(ctx)
	for _, p := range released {
		rewrite[p.id] = j.joined[p.id]
		p.traces.ResourceSpans().MoveAndAppendTo(rss)
		// They go on with this request: their own requests are answered with its hand-off.
		if req != nil {
			req.released = append(req.released, p.acks...)
		} else {
			for _, a := range p.acks {
				a.Done(nil)
			}
		}
		p.acks = nil
	}
	if req != nil {
		for p := range touched {
			if j.pending[p.id] == p {
				req.ack.Add(1)
				p.acks = append(p.acks, req.ack)
			}
		}
	}
	j.applyRewrites(td, rewrite)
	j.mu.Unlock()

	for m, n := range joinedNow {
		j.tel.add(ctx, j.tel.joined, n, m)
	}
	j.tel.add(ctx, j.tel.unjoined, full, reasonBufferFull)
	for r, n := range counts {
		if r == reasonBadAddress || r == reasonBadPort {
			j.tel.add(ctx, j.tel.unusable, n, r)
		} else {
			j.tel.add(ctx, j.tel.forgotten, n, r)
		}
	}
	rss.RemoveIf(func(rs ptrace.ResourceSpans) bool {
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool { return ss.Spans().Len() == 0 })
		return rs.ScopeSpans().Len() == 0
	})
	if rss.Len() == 0 {
		return td, processorhelper.ErrSkipProcessingData
	}
	return td, nil
}

// classify records a span's part in a join: evidence that its trace is a server side (the
// earliest per trace is kept) or a client-side use of a connection.
// It reports whether the span was the first evidence of its trace.
func (j *joiner) classify(res pcommon.Resource, s ptrace.Span, now time.Time, evs map[pcommon.TraceID]evidence, counts map[string]int) bool {
	conn, ok := sockspan.ConnOf(res, s, counts)
	if !ok {
		return false
	}
	accept, peer, local, localPresent, node, netns := conn.Accept, conn.Peer, conn.Local, conn.HasLocal, conn.Node, conn.NetNS
	start := s.StartTimestamp().AsTime()
	ik := inboundKey{node: node, peer: peer}
	// I/O whose ports say this end served is server-side whether or not its client or accept
	// was seen yet: the handler of a connection often runs in a trace of its own (Go's HTTP
	// server serves on a goroutine apart from the accept's), and its agent may deliver it
	// before the accept's batch and before the client's node delivers the client span. Passed
	// on at once, it lost its join for good (and the gateway's attackstory stitched it into
	// whichever story of its process was in flight: another client's).
	if accept || j.isInbound(ik, now) || (localPresent && sockspan.ServedByPorts(local, peer)) {
		ev := evidence{client: keyOf(peer, node, netns), start: start, node: node, by: "ports"}
		switch {
		case accept:
			ev.by = "accept"
		case j.wasInbound(ik):
			ev.by = "inbound"
		}
		if localPresent {
			ev.server = local
		}
		old, ok := evs[s.TraceID()]
		if !ok || start.Before(old.start) {
			evs[s.TraceID()] = ev
		}
		return !ok
	}
	if !localPresent {
		return false
	}
	c := &clientSpan{
		key: keyOf(local, node, netns), trace: s.TraceID(), span: s.SpanID(), parent: s.ParentSpanID(),
		server: peer, start: start, end: s.EndTimestamp().AsTime(), node: node, seen: now,
	}
	j.rememberClient(c, counts)
	return false
}

func (j *joiner) isInbound(k inboundKey, now time.Time) bool {
	t, ok := j.inbound.Seen(k)
	if ok && now.Sub(t) > j.cfg.ClientTTL/2 {
		// A long-lived connection stays known while it is used.
		j.inbound.Put(k, now)
	}
	return ok
}

// wasInbound: k's accept was seen (without refreshing it, as isInbound does).
func (j *joiner) wasInbound(k inboundKey) bool {
	_, ok := j.inbound.Seen(k)
	return ok
}

func (j *joiner) rememberInbound(k inboundKey, now time.Time, counts map[string]int) {
	if j.inbound.Put(k, now) {
		counts[reasonMaxInbound]++
	}
}

func (j *joiner) rememberClient(c *clientSpan, counts map[string]int) {
	if j.clientCount >= j.cfg.MaxClients {
		for len(j.clientQueue) > 0 {
			old := j.clientQueue[0]
			j.clientQueue = j.clientQueue[1:]
			if !old.gone {
				j.removeClient(old)
				counts[reasonMaxClients]++
				break
			}
		}
	}
	list := j.clients[c.key]
	if len(list) >= maxPerEndpoint {
		j.removeClient(list[0])
		counts[reasonTooManyPerPeer]++
		list = j.clients[c.key]
	}
	j.clients[c.key] = append(list, c)
	j.clientQueue = append(j.clientQueue, c)
	j.clientCount++
}

func (j *joiner) rememberJoin(id pcommon.TraceID, ji joinInfo, counts map[string]int) {
	if len(j.joined) >= j.cfg.MaxClients {
		for len(j.joinedQueue) > 0 {
			old := j.joinedQueue[0]
			j.joinedQueue = j.joinedQueue[1:]
			if _, ok := j.joined[old]; ok {
				delete(j.joined, old)
				counts[reasonMaxJoined]++
				break
			}
		}
	}
	j.joined[id] = ji
	j.joinedQueue = append(j.joinedQueue, id)
}

// match finds the client span of a server-side trace: the same client endpoint, a server
// endpoint that agrees when both sides said it, the server span starting within the client
// span's interval widened by window; the closest interval wins, then the latest start. A client
// span in a trace still waiting for its own client half does not match yet (its trace id will
// change); one in a joined trace is followed to where that trace went.
func (j *joiner) match(id pcommon.TraceID, ev evidence, now time.Time) (joinInfo, bool) {
	var best *clientSpan
	bestFour := false
	var bestDist time.Duration
	for _, c := range j.clients[ev.client] {
		if c.trace == id {
			continue
		}
		if _, waiting := j.pending[c.trace]; waiting {
			continue
		}
		d := distance(ev.start, c.start, c.end)
		if d > j.cfg.Window {
			continue
		}
		four := ev.server.IsValid() && c.server == ev.server
		better := best == nil ||
			(four && !bestFour) ||
			(four == bestFour && (d < bestDist || (d == bestDist && c.start.After(best.start))))
		if better {
			best, bestFour, bestDist = c, four, d
		}
	}
	if best == nil {
		return joinInfo{}, false
	}
	ji := joinInfo{trace: best.trace, parent: best.parent, clientSpan: best.span, match: matchClientEndpoint,
		clientNode: best.node, serverNode: ev.node, seen: now}
	if bestFour {
		ji.match = matchFourTuple
	}
	if ji.parent.IsEmpty() {
		ji.parent = best.span
	}
	if up, ok := j.joined[best.trace]; ok {
		// The client span's own trace was joined under another: follow it.
		ji.trace = up.trace
	}
	return ji, true
}

// retryPending joins the waiting traces whose client half is now known, and hands them back.
func (j *joiner) retryPending(now time.Time, joinedNow map[string]int, counts map[string]int) []*pendingTrace {
	var out []*pendingTrace
	// A join can make another waiting trace's client span resolvable (a chain of services):
	// repeat while something joins, at most once per waiting trace.
	for changed := true; changed; {
		changed = false
		for _, id := range j.pendingQueue {
			p := j.pending[id]
			if p == nil {
				continue
			}
			ji, ok := j.match(id, p.ev, now)
			if !ok {
				continue
			}
			j.dropPending(p)
			j.rememberJoin(id, ji, counts)
			joinedNow[ji.match]++
			j.logDecision("storyjoin: joined a waiting trace", id, p.ev, &ji)
			out = append(out, p)
			changed = true
		}
	}
	return out
}

// applyRewrites moves the spans of joined traces into their client's trace: the trace id of
// each, and for the root (no parent) the client's span as parent and the join's attributes.
func (j *joiner) applyRewrites(td ptrace.Traces, rewrite map[pcommon.TraceID]joinInfo) {
	if len(rewrite) == 0 {
		return
	}
	sockspan.EachSpan(td, func(_ pcommon.Resource, s ptrace.Span) {
		ji, ok := rewrite[s.TraceID()]
		if !ok {
			return
		}
		orig := s.TraceID()
		s.SetTraceID(ji.trace)
		if !s.ParentSpanID().IsEmpty() {
			return
		}
		s.SetParentSpanID(ji.parent)
		a := s.Attributes()
		a.PutStr(attrJoinMatch, ji.match)
		a.PutStr(attrJoinTrace, orig.String())
		a.PutStr(attrJoinSpan, ji.clientSpan.String())
		a.PutStr(attrJoinClient, ji.clientNode)
		a.PutStr(attrJoinServer, ji.serverNode)
	})
}

// logDecision logs at debug level what the processor decided for a server-side trace and why:
// an operator's way to see which client a trace went under (or that none came).
func (j *joiner) logDecision(msg string, id pcommon.TraceID, ev evidence, ji *joinInfo) {
	ce := j.logger.Check(zap.DebugLevel, msg)
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.Stringer("trace_id", id), zap.String("by", ev.by), zap.String("server_node", ev.node),
		zap.Stringer("client", ev.client.ap), zap.Stringer("server", ev.server), zap.Time("start", ev.start),
	}
	if ji != nil {
		fields = append(fields, zap.String("match", ji.match), zap.Stringer("client_trace_id", ji.trace),
			zap.Stringer("client_span_id", ji.clientSpan), zap.String("client_node", ji.clientNode))
	}
	ce.Write(fields...)
}
