package storyrouteexporter

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/internal/sockspan"
)

// What a trace was routed by (the "key" attribute of agenttrail.storyroute.traces).
const (
	byServerPeer  = "server_peer"  // the client's address, as the peer of an accept or of I/O that served
	byClientLocal = "client_local" // the trace's own address, from its client-side socket spans
	byFollowed    = "followed"     // an earlier batch of the trace was routed by one of the above
	byTraceID     = "trace_id"     // no socket span: the trace id, as contrib's loadbalancing does
)

// Reasons of agenttrail.storyroute.unusable and agenttrail.storyroute.forgotten.
const (
	reasonBadAddress = sockspan.ReasonBadAddress
	reasonBadPort    = sockspan.ReasonBadPort
	reasonMaxTraces  = "max_traces"
	reasonMaxInbound = "max_inbound"
)

// routeKey is what a trace goes to a replica by.
type routeKey struct {
	key string
	by  string
}

// candidate is a socket span's claim on its trace's key; the earliest wins.
type candidate struct {
	key   string
	start time.Time
	local bool // a "this machine" address: only used when nothing routable is there
}

type inboundKey struct {
	node string
	peer netip.AddrPort
}

type seenAt struct {
	id pcommon.TraceID
	at time.Time
}

// keyer decides the key of every trace of a batch. It remembers, bounded and for ttl, the key
// of each trace it routed by a socket span (so a later batch of the trace follows it) and the
// connections its node accepted (so I/O on one is known as the server side, as storyjoin does).
type keyer struct {
	maxTraces int
	ttl       time.Duration
	now       func() time.Time

	mu         sync.Mutex
	traces     map[pcommon.TraceID]remembered
	traceQueue []seenAt
	inbound    *sockspan.Inbound[inboundKey]
}

type remembered struct {
	key string
	at  time.Time
}

func newKeyer(maxTraces, maxInbound int, ttl time.Duration) *keyer {
	return &keyer{
		maxTraces: maxTraces, ttl: ttl, now: time.Now,
		traces: map[pcommon.TraceID]remembered{}, inbound: sockspan.NewInbound[inboundKey](maxInbound),
	}
}

// keys returns the key of every trace in td, and counts in counts what it could not use
// (bad_address, bad_port) and what its bounds made it forget (max_traces, max_inbound).
//
// A trace's key is the address of the client of the connection it took part in, which both
// halves of a join carry: the server side (an accept, or socket I/O on an accepted connection
// or whose ports say it served) has it as its peer, the client side as its own local address.
// When a trace has both (a service that was called and calls another) the server side wins:
// that join is the one that makes this trace a child of its caller's.
func (k *keyer) keys(td ptrace.Traces, counts map[string]int) map[pcommon.TraceID]routeKey {
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forgetOld(now)
	sockspan.EachAcceptedPeer(td, counts, func(node string, peer netip.AddrPort) {
		k.rememberInbound(inboundKey{node: node, peer: peer}, now, counts)
	})
	server := map[pcommon.TraceID]candidate{}
	client := map[pcommon.TraceID]candidate{}
	out := map[pcommon.TraceID]routeKey{}
	sockspan.EachSpan(td, func(res pcommon.Resource, s ptrace.Span) {
		id := s.TraceID()
		if _, ok := out[id]; !ok {
			out[id] = routeKey{key: traceIDKey(id), by: byTraceID}
		}
		c, ok := sockspan.ConnOf(res, s, counts)
		if !ok {
			return
		}
		start := s.StartTimestamp().AsTime()
		if c.Accept || k.isInbound(inboundKey{node: c.Node, peer: c.Peer}) || (c.HasLocal && sockspan.ServedByPorts(c.Local, c.Peer)) {
			offer(server, id, addrKey(c.Peer.Addr(), c.Node, c.NetNS), start)
			return
		}
		if c.HasLocal {
			offer(client, id, addrKey(c.Local.Addr(), c.Node, c.NetNS), start)
		}
	})
	for id := range out {
		if r, ok := k.traces[id]; ok {
			out[id] = routeKey{key: r.key, by: byFollowed}
			continue
		}
		c, ok := server[id]
		by := byServerPeer
		if !ok {
			c, ok = client[id]
			by = byClientLocal
		}
		if !ok {
			continue // the trace id: the same key every time, nothing to remember
		}
		out[id] = routeKey{key: c.key, by: by}
		k.rememberTrace(id, c.key, now, counts)
	}
	return out
}

// offer keeps the better candidate of a trace: a routable address over a "this machine" one,
// then the earliest span (the connection the trace began with), then the smaller key, so that
// the same batch always gives the same key whatever the order of its spans.
func offer(m map[pcommon.TraceID]candidate, id pcommon.TraceID, key string, start time.Time) {
	c := candidate{key: key, start: start, local: strings.Contains(key, "|")}
	old, ok := m[id]
	switch {
	case !ok,
		old.local && !c.local,
		old.local == c.local && c.start.Before(old.start),
		old.local == c.local && c.start.Equal(old.start) && c.key < old.key:
		m[id] = c
	}
}

// addrKey is the key of a client address. An address that means "this machine" (loopback,
// unspecified, link-local) is the same client only within one node and network namespace, so
// it carries them, as storyjoin's endpoint keys do; a routable address (a pod IP) does not.
func addrKey(a netip.Addr, node string, netns int64) string {
	if a.IsLoopback() || a.IsUnspecified() || a.IsLinkLocalUnicast() {
		// The node name comes from the resource, over the network: bounded to a DNS name's
		// length, so a remembered key stays small.
		if len(node) > 253 {
			node = node[:253]
		}
		return node + "/" + strconv.FormatInt(netns, 10) + "|" + a.String()
	}
	return a.String()
}

func traceIDKey(id pcommon.TraceID) string { return "trace:" + id.String() }

func (k *keyer) rememberTrace(id pcommon.TraceID, key string, now time.Time, counts map[string]int) {
	if _, ok := k.traces[id]; !ok && len(k.traces) >= k.maxTraces {
		for len(k.traceQueue) > 0 {
			q := k.traceQueue[0]
			k.traceQueue = k.traceQueue[1:]
			if r, ok := k.traces[q.id]; ok && r.at.Equal(q.at) {
				delete(k.traces, q.id)
				counts[reasonMaxTraces]++
				break
			}
		}
	}
	k.traces[id] = remembered{key: key, at: now}
	k.traceQueue = append(k.traceQueue, seenAt{id: id, at: now})
}

func (k *keyer) rememberInbound(ik inboundKey, now time.Time, counts map[string]int) {
	t, ok := k.inbound.Seen(ik)
	if ok && now.Sub(t) < k.ttl/2 {
		// Seen lately: not queued again, so a sender repeating one accept cannot grow the
		// queue (at most three entries per connection within ttl).
		return
	}
	if k.inbound.Put(ik, now) {
		counts[reasonMaxInbound]++
	}
}

func (k *keyer) isInbound(ik inboundKey) bool {
	_, ok := k.inbound.Seen(ik)
	return ok
}

// forgetOld drops the traces and accepted connections older than ttl. The queues hold one
// entry per remembering; an entry whose time is no longer the map's was refreshed later.
func (k *keyer) forgetOld(now time.Time) {
	limit := now.Add(-k.ttl)
	for len(k.traceQueue) > 0 && k.traceQueue[0].at.Before(limit) {
		q := k.traceQueue[0]
		k.traceQueue = k.traceQueue[1:]
		if r, ok := k.traces[q.id]; ok && r.at.Equal(q.at) {
			delete(k.traces, q.id)
		}
	}
	k.inbound.ForgetBefore(limit)
}
