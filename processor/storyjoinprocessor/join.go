package storyjoinprocessor

import (
	"net/netip"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Attributes the receiver writes and this processor reads or writes.
const (
	attrJoinMatch  = "agenttrail.join.match"
	attrJoinTrace  = "agenttrail.join.original_trace_id"
	attrJoinClient = "agenttrail.join.client.node"
	attrJoinServer = "agenttrail.join.server.node"
	attrJoinSpan   = "agenttrail.join.client.span_id"
)

// maxPerEndpoint bounds the client spans kept under one client endpoint: one connection's
// requests (a keep-alive connection used by many tool calls); the oldest go first.
const maxPerEndpoint = 64

// endpointKey is one side's address and port as the other side must see it. An address that
// means "this machine" (loopback, unspecified, link-local) is only the same endpoint within one
// node and network namespace, so those carry scope; a routable address (a pod IP) does not.
type endpointKey struct {
	ap    netip.AddrPort
	scope string
}

func keyOf(ap netip.AddrPort, node string, netns int64) endpointKey {
	a := ap.Addr()
	if a.IsLoopback() || a.IsUnspecified() || a.IsLinkLocalUnicast() {
		return endpointKey{ap: ap, scope: node + "/" + strconv.FormatInt(netns, 10)}
	}
	return endpointKey{ap: ap}
}

// inboundKey: a peer that connected to a process on node (from an accept span there).
type inboundKey struct {
	node string
	peer netip.AddrPort
}

// clientSpan is a client-side span that used a connection: its ids, the server endpoint it
// saw, its interval and node.
type clientSpan struct {
	key        endpointKey
	trace      pcommon.TraceID
	span       pcommon.SpanID
	parent     pcommon.SpanID
	server     netip.AddrPort
	start, end time.Time
	node       string
	seen       time.Time
	gone       bool
}

// evidence is a span that shows a trace is the server side of a connection: an accept of the
// client's connection, or socket I/O with a peer whose connection was accepted on that node.
type evidence struct {
	client endpointKey
	server netip.AddrPort // invalid when the span did not say (an accept without local address)
	start  time.Time
	node   string
	by     string // what made it server-side: accept, inbound (a connection accepted earlier) or ports
}

// joinInfo is where a server-side trace went: the client's trace and the span its root hangs
// under.
type joinInfo struct {
	trace      pcommon.TraceID
	parent     pcommon.SpanID
	clientSpan pcommon.SpanID
	match      string
	clientNode string
	serverNode string
	seen       time.Time
}

// distance of t to the interval [start, end]: 0 inside.
func distance(t, start, end time.Time) time.Duration {
	switch {
	case t.Before(start):
		return start.Sub(t)
	case t.After(end):
		return t.Sub(end)
	}
	return 0
}
