// Package sockspan reads the eBPF receiver's socket spans (accept, and the per-call `send {peer}` /
// `receive {peer}` aggregates) the way both tiers that pair the halves of a connection must agree
// on: the agents' storyroute exporter, which sends both halves to one gateway replica, and the
// gateway's storyjoin processor, which joins them. One copy, so the two cannot drift apart.
package sockspan

import (
	"net/netip"
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Attributes the receiver writes on socket spans, and the resource's node.
const (
	AttrPeerAddr  = "network.peer.address"
	AttrPeerPort  = "network.peer.port"
	AttrLocalAddr = "network.local.address"
	AttrLocalPort = "network.local.port"
	AttrNetNS     = "agenttrail.netns"
	AttrNodeName  = "k8s.node.name"
	AttrHostName  = "host.name"
)

// What made a present address/port pair unusable (a hostile or broken sender): the values of the
// components' `reason` metric attributes.
const (
	ReasonBadAddress = "bad_address"
	ReasonBadPort    = "bad_port"
)

// maxAddrLen bounds an address attribute before it is parsed (the longest IPv6 text is 45).
const maxAddrLen = 64

// EachSpan calls f with every span of td and its resource.
func EachSpan(td ptrace.Traces, f func(pcommon.Resource, ptrace.Span)) {
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		sss := rs.ScopeSpans()
		for k := 0; k < sss.Len(); k++ {
			spans := sss.At(k).Spans()
			for n := 0; n < spans.Len(); n++ {
				f(rs.Resource(), spans.At(n))
			}
		}
	}
}

// EachAcceptedPeer calls f with the node and the client's address of every accept span of td
// whose peer is usable, counting the unusable ones in counts by reason. Both tiers read the
// accepts of a batch first: an accept and the I/O on that connection often come in one batch.
func EachAcceptedPeer(td ptrace.Traces, counts map[string]int, f func(node string, peer netip.AddrPort)) {
	EachSpan(td, func(res pcommon.Resource, s ptrace.Span) {
		if !IsAccept(s) {
			return
		}
		peer, present, reason := AddrPort(s.Attributes(), AttrPeerAddr, AttrPeerPort)
		if reason != "" {
			counts[reason]++
		}
		if present && reason == "" {
			f(NodeOf(res), peer)
		}
	})
}

// Conn is what an accept or socket I/O span says of its connection, as its node's kernel saw it.
type Conn struct {
	Accept   bool           // an accept span, else socket I/O
	Peer     netip.AddrPort // the other end
	Local    netip.AddrPort // this end, when HasLocal
	HasLocal bool
	Node     string // the resource's node (NodeOf)
	NetNS    int64  // the socket's network namespace, 0 when unknown
}

// ConnOf reads the connection of span s of resource res. ok is false for a span that is not an
// accept or socket I/O and for one whose peer is absent or unusable: then the connection pairs
// with nothing. What made an address or port unusable is counted in counts by reason, but for an
// accept's peer: EachAcceptedPeer counted it in the first pass over the batch.
func ConnOf(res pcommon.Resource, s ptrace.Span, counts map[string]int) (c Conn, ok bool) {
	accept, io := IsAccept(s), IsSocketIO(s)
	if !accept && !io {
		return Conn{}, false
	}
	attrs := s.Attributes()
	peer, present, reason := AddrPort(attrs, AttrPeerAddr, AttrPeerPort)
	if !present || reason != "" {
		if io && reason != "" {
			counts[reason]++
		}
		return Conn{}, false
	}
	local, hasLocal, reason := AddrPort(attrs, AttrLocalAddr, AttrLocalPort)
	if reason != "" {
		counts[reason]++
		hasLocal = false
	}
	return Conn{Accept: accept, Peer: peer, Local: local, HasLocal: hasLocal, Node: NodeOf(res), NetNS: NetNS(attrs)}, true
}

// NodeOf is the node a resource ran on: k8s.node.name, else host.name.
func NodeOf(res pcommon.Resource) string {
	if v, ok := res.Attributes().Get(AttrNodeName); ok && v.Str() != "" {
		return v.Str()
	}
	if v, ok := res.Attributes().Get(AttrHostName); ok {
		return v.Str()
	}
	return ""
}

// IsSocketIO: the receiver's per-call socket aggregates, `send {peer}` / `receive {peer}`.
func IsSocketIO(s ptrace.Span) bool {
	n := s.Name()
	return s.Kind() == ptrace.SpanKindClient && (strings.HasPrefix(n, "send ") || strings.HasPrefix(n, "receive "))
}

// IsAccept: the receiver's span of an accepted connection.
func IsAccept(s ptrace.Span) bool {
	return s.Name() == "accept" && s.Kind() == ptrace.SpanKindServer
}

// AddrPort reads an address and port attribute pair. present is false when the pair is absent;
// reason (ReasonBadAddress, ReasonBadPort) names what made a present pair unusable. The address
// is bounded before it is parsed.
func AddrPort(m pcommon.Map, addrKey, portKey string) (ap netip.AddrPort, present bool, reason string) {
	av, okA := m.Get(addrKey)
	pv, okP := m.Get(portKey)
	if !okA || !okP {
		return netip.AddrPort{}, false, ""
	}
	s := av.AsString()
	if len(s) > maxAddrLen {
		return netip.AddrPort{}, true, ReasonBadAddress
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, true, ReasonBadAddress
	}
	var port int64
	switch pv.Type() {
	case pcommon.ValueTypeInt:
		port = pv.Int()
	case pcommon.ValueTypeStr:
		if len(pv.Str()) > 5 {
			return netip.AddrPort{}, true, ReasonBadPort
		}
		port, err = strconv.ParseInt(pv.Str(), 10, 32)
		if err != nil {
			return netip.AddrPort{}, true, ReasonBadPort
		}
	default:
		return netip.AddrPort{}, true, ReasonBadPort
	}
	if port <= 0 || port > 65535 {
		return netip.AddrPort{}, true, ReasonBadPort
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true, ""
}

// NetNS is the span's network namespace identity (agenttrail.netns), 0 when absent.
func NetNS(m pcommon.Map) int64 {
	if v, ok := m.Get(AttrNetNS); ok && v.Type() == pcommon.ValueTypeInt {
		return v.Int()
	}
	return 0
}

// ServedByPorts: without an accept, which end of a connection served it is told by the ports:
// the server's below Linux's ephemeral range (32768-60999), the client's in it. A client's span
// (its own port ephemeral) is then never taken for a server side, nor a server's span, which came
// before its accept, for a client's.
func ServedByPorts(local, peer netip.AddrPort) bool {
	return local.Port() < 32768 && peer.Port() >= 32768
}
