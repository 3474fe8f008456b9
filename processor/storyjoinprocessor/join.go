package storyjoinprocessor

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Attributes the receiver writes and this processor reads or writes.
const (
	attrPeerAddr   = "network.peer.address"
	attrPeerPort   = "network.peer.port"
	attrLocalAddr  = "network.local.address"
	attrLocalPort  = "network.local.port"
	attrNetNS      = "agenttrail.netns"
	attrNodeName   = "k8s.node.name"
	attrHostName   = "host.name"
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

// nodeOf is the node a resource ran on: k8s.node.name, else host.name.
func nodeOf(res pcommon.Resource) string {
	if v, ok := res.Attributes().Get(attrNodeName); ok && v.Str() != "" {
		return v.Str()
	}
	if v, ok := res.Attributes().Get(attrHostName); ok {
		return v.Str()
	}
	return ""
}

// isSocketIO: the receiver's per-call socket aggregates, `send {peer}` / `receive {peer}`.
func isSocketIO(s ptrace.Span) bool {
	n := s.Name()
	return s.Kind() == ptrace.SpanKindClient && (strings.HasPrefix(n, "send ") || strings.HasPrefix(n, "receive "))
}

func isAccept(s ptrace.Span) bool {
	return s.Name() == "accept" && s.Kind() == ptrace.SpanKindServer
}

// addrPort reads an address and port attribute pair. ok is false when the pair is absent;
// reason names what made a present pair unusable (a hostile or broken sender).
func addrPort(m pcommon.Map, addrKey, portKey string) (ap netip.AddrPort, present bool, reason string) {
	av, okA := m.Get(addrKey)
	pv, okP := m.Get(portKey)
	if !okA || !okP {
		return netip.AddrPort{}, false, ""
	}
	s := av.AsString()
	if len(s) > 64 {
		return netip.AddrPort{}, true, reasonBadAddress
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, true, reasonBadAddress
	}
	var port int64
	switch pv.Type() {
	case pcommon.ValueTypeInt:
		port = pv.Int()
	case pcommon.ValueTypeStr:
		if len(pv.Str()) > 5 {
			return netip.AddrPort{}, true, reasonBadPort
		}
		port, err = strconv.ParseInt(pv.Str(), 10, 32)
		if err != nil {
			return netip.AddrPort{}, true, reasonBadPort
		}
	default:
		return netip.AddrPort{}, true, reasonBadPort
	}
	if port <= 0 || port > 65535 {
		return netip.AddrPort{}, true, reasonBadPort
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true, ""
}

func netnsOf(m pcommon.Map) int64 {
	if v, ok := m.Get(attrNetNS); ok && v.Type() == pcommon.ValueTypeInt {
		return v.Int()
	}
	return 0
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
