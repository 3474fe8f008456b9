package spans

import (
	"net/netip"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"golang.org/x/sys/unix"
)

// Socket I/O is not one span per send: per (parent span, peer, transport) one aggregate counts
// the bytes and calls in each direction, and becomes a child span `send {peer}` (or
// `receive {peer}` when nothing was sent) when its parent ends, when it has been open for the
// aggregate interval (a long-lived parent), or when its process exits or the receiver stops.

// SocketID identifies a socket while it lives: the kernel's struct sock address and the socket's
// inode number (together: a freed and reused struct sock is another socket).
type SocketID struct{ Sock, Ino uint64 }

// Direction of a socket I/O call.
type Direction uint8

const (
	Egress  Direction = 1
	Ingress Direction = 2
)

// Transports of SocketIO.Transport (network.transport, except other).
const (
	TransportTCP   = "tcp"
	TransportUDP   = "udp"
	TransportUnix  = "unix"
	TransportPipe  = "pipe"
	TransportOther = "other"
)

// Values of agenttrail.socket.connected.
const (
	ConnectedThisTrace     = "this_trace"     // the connect (or accept) of a socket was seen in this trace
	ConnectedEarlier       = "earlier"        // seen, in an earlier trace (a reused keep-alive connection)
	ConnectedBeforeTracing = "before_tracing" // never seen: opened before the process was traced
	ConnectedUnknown       = "unknown"        // connect and accept are not traced (config), so it cannot be said
)

// Values of agenttrail.egress.attribution: which rule chose the parent span.
const (
	AttributionDirect    = "direct"    // the sending goroutine or thread had a call open
	AttributionHandoff   = "handoff"   // a Go goroutine without a call of its own (net/http's connection writer): the process's only open tool call, or its only routine with calls open
	AttributionInherited = "inherited" // what the goroutine or process inherited from its creator
	AttributionNone      = "none"      // no call at all: a root span of the process
)

// Bounds of the socket aggregation.
const (
	maxDNSNames          = 16 // query names kept per aggregate (agenttrail.dns.question.names)
	maxAggregateSockets  = 64 // distinct sockets counted per aggregate
	defaultSocketWindow  = 5 * time.Second
	defaultMaxAggregates = 10000
	defaultMaxConns      = 65536
)

// SocketIO is one send or receive on a socket (or a plaintext pipe) of a traced process.
type SocketIO struct {
	Socket    SocketID
	Direction Direction
	Bytes     uint64
	Transport string         // one of the Transport constants
	Peer      netip.AddrPort // invalid when unknown or not an IP socket
	Local     netip.AddrPort
	NetNS     uint32
	// PeerUnknown: an IP socket whose peer could not be read (neither connected nor named).
	PeerUnknown bool
	// Incomplete: Bytes may count less than the call moved (sendmmsg beyond the kernel's bound).
	Incomplete bool
	// DNSNames: the query names of a DNS message this call carried.
	DNSNames []string
}

type aggKey struct {
	pid       uint32
	parent    spanRef
	peer      string
	transport string
}

type sockAgg struct {
	key         aggKey
	proc        *process
	first, last Header
	io          SocketIO // the first call's addresses
	egressB     uint64
	egressN     uint64
	ingressB    uint64
	ingressN    uint64
	connected   string
	ageMs       int64 // -1: unknown
	attribution string
	dns         []string
	dnsCount    uint64
	sockets     []SocketID
	incomplete  bool
	emitted     bool
}

type connSeen struct {
	pid   uint32
	at    time.Time
	trace pcommon.TraceID
}

// SocketOf gives the socket identity of the thread's connect or accept in progress (its exit
// record carries it), so that later I/O on the socket knows when and in which trace it was
// connected. Call it before SyscallExit.
func (b *Builder) SocketOf(h Header, id SocketID) {
	if ps := b.syscalls[threadKey{h.PID, h.TID}]; ps != nil && (ps.sc.Name == "connect" || ps.sc.Name == "accept") {
		ps.socket = id
	}
}

// SocketLocal puts the socket's own address and network namespace, from the exit record of a
// connect or accept, on its span: with the peer, the connection's four-tuple as this node saw
// it, which the gateway's storyjoin matches with the other end's. An unbound address (a connect
// that failed before the kernel picked a port) is left out.
func (b *Builder) SocketLocal(h Header, local netip.AddrPort, netns uint32) {
	ps := b.syscalls[threadKey{h.PID, h.TID}]
	if ps == nil || ps.span == nil || (ps.sc.Name != "connect" && ps.sc.Name != "accept") {
		return
	}
	if local.IsValid() && local.Port() != 0 && !local.Addr().IsUnspecified() {
		ps.span.attrs.PutStr("network.local.address", local.Addr().Unmap().String())
		ps.span.attrs.PutInt("network.local.port", int64(local.Port()))
	}
	if netns != 0 {
		ps.span.attrs.PutInt("agenttrail.netns", int64(netns))
	}
}

// socketSeen records a connect or accept that succeeded (or is in progress) on a known socket.
func (b *Builder) socketSeen(ps *pendingSyscall, ret int64) {
	if ps.socket == (SocketID{}) || ps.span == nil {
		return
	}
	if ret < 0 && !(ps.sc.Name == "connect" && ret == -int64(unix.EINPROGRESS)) {
		return
	}
	if b.conns == nil {
		b.conns = make(map[SocketID]connSeen)
	}
	if _, ok := b.conns[ps.socket]; !ok && len(b.conns) >= b.opts.MaxSocketConnections {
		for k := range b.conns { // full: forget one (its socket then reads as opened before tracing)
			delete(b.conns, k)
			b.counters.SocketConnectionsForgotten++
			break
		}
	}
	b.conns[ps.socket] = connSeen{pid: ps.hdr.PID, at: ps.hdr.Time, trace: ps.span.ref.trace}
}

// SocketIO adds one send or receive to the aggregate of its parent span and peer. It returns
// the parent chosen and the attribution rule that chose it ("" when the process is unknown).
func (b *Builder) SocketIO(h Header, io SocketIO) (Parent, string) {
	p := b.procs[h.PID]
	if p == nil {
		b.counters.UnknownProcess++
		return Parent{PID: h.PID}, ""
	}
	parent, attribution := b.socketParent(p, h)
	key := aggKey{pid: h.PID, parent: parent, peer: peerLabel(io), transport: io.Transport}
	a := b.socks[key]
	if a == nil {
		if len(b.socks) >= b.opts.MaxSocketAggregates {
			// Full: emit what is aggregated so far rather than lose anything.
			b.counters.SocketEarlyFlushes++
			b.emitSockets(func(*sockAgg) bool { return true })
		}
		a = &sockAgg{key: key, proc: p, first: h, io: io, attribution: attribution, ageMs: -1}
		if b.socks == nil {
			b.socks = make(map[aggKey]*sockAgg)
		}
		b.socks[key] = a
		if attribution != AttributionNone {
			// The parent still open (an inherited parent may be): emitted when it ends.
			if s := b.openSpan(p, parent); s != nil {
				live := s.socks[:0] // those emitted by the interval already are dropped from the list
				for _, x := range s.socks {
					if !x.emitted {
						live = append(live, x)
					}
				}
				s.socks = append(live, a)
			}
		}
	}
	a.last = h
	switch io.Direction {
	case Egress:
		a.egressB += io.Bytes
		a.egressN++
	default:
		a.ingressB += io.Bytes
		a.ingressN++
	}
	a.incomplete = a.incomplete || io.Incomplete
	for _, n := range io.DNSNames {
		a.dnsCount++
		if len(a.dns) < maxDNSNames {
			a.dns = append(a.dns, n)
		}
	}
	a.addSocket(b, io.Socket, h.Time)
	missing := ""
	if attribution == AttributionNone && len(p.coros) > 0 {
		// A Python coroutine call is open (suspended, or running without a sample since it
		// resumed): the I/O may be its, but a socket call carries no Python stack to say which.
		missing = ParentMissingCoroutine
		b.counters.CoroutineUnknownParents++
	}
	return Parent{PID: h.PID, ref: parent, missing: missing}, attribution
}

// addSocket counts a socket in the aggregate; the first one says how it was connected.
func (a *sockAgg) addSocket(b *Builder, id SocketID, at time.Time) {
	for _, s := range a.sockets {
		if s == id {
			return
		}
	}
	if len(a.sockets) >= maxAggregateSockets {
		return
	}
	a.sockets = append(a.sockets, id)
	if len(a.sockets) > 1 {
		return
	}
	if !b.opts.ConnectsTraced {
		a.connected = ConnectedUnknown
		return
	}
	c, ok := b.conns[id]
	switch {
	case !ok || id == (SocketID{}):
		a.connected = ConnectedBeforeTracing
		return
	case c.trace == a.key.parent.trace && !c.trace.IsEmpty():
		a.connected = ConnectedThisTrace
	default:
		a.connected = ConnectedEarlier
	}
	if d := at.Sub(c.at); d >= 0 {
		a.ageMs = d.Milliseconds()
	}
}

// socketParent chooses the span an I/O call belongs under, and says by which rule.
func (b *Builder) socketParent(p *process, h Header) (spanRef, string) {
	r, _ := p.routineFor(h)
	if n := len(r.stack); n > 0 {
		return r.stack[n-1].ref, AttributionDirect
	}
	if h.Routine != 0 {
		if ref, ok := b.handoff(p); ok {
			return ref, AttributionHandoff
		}
	}
	if !r.inherited.trace.IsEmpty() {
		return r.inherited, AttributionInherited
	}
	return spanRef{}, AttributionNone
}

// handoff is the parent of a Go goroutine's I/O when it has no call of its own: net/http writes
// and reads a connection on goroutines of the connection, which inherited the call that dialed
// it, not the one whose request this is. The process's only open tool call is taken, else the
// innermost call of its only goroutine with calls open; with several candidates, no guess. The
// answer is kept until a span opens or ends anywhere (a busy connection goroutine asks at every
// read and write, and a Go process may have thousands of goroutines).
func (b *Builder) handoff(p *process) (spanRef, bool) {
	if p.handoffGen == b.spanGen && p.handoffGen != 0 {
		return p.handoffRef, p.handoffOK
	}
	ref, ok := func() (spanRef, bool) {
		var tool *span
		tools := 0
		var busy *routine
		busyRoutines := 0
		for _, other := range p.routines {
			if len(other.stack) == 0 {
				continue
			}
			busy = other
			busyRoutines++
			for _, s := range other.stack {
				if s.probe != nil && s.probe.Role == RoleTool {
					tool = s
					tools++
				}
			}
		}
		switch {
		case tools == 1:
			return tool.ref, true
		case tools == 0 && busyRoutines == 1:
			return busy.stack[len(busy.stack)-1].ref, true
		}
		return spanRef{}, false
	}()
	p.handoffGen, p.handoffRef, p.handoffOK = b.spanGen, ref, ok
	return ref, ok
}

// openSpan finds the open span with ref in the process.
func (b *Builder) openSpan(p *process, ref spanRef) *span {
	for _, r := range p.routines {
		for _, s := range r.stack {
			if s.ref == ref {
				return s
			}
		}
	}
	return nil
}

func peerLabel(io SocketIO) string {
	switch {
	case io.Transport == TransportUnix || io.Transport == TransportPipe || io.Transport == TransportOther:
		return io.Transport
	case io.PeerUnknown || !io.Peer.IsValid():
		return "unknown"
	}
	return netip.AddrPortFrom(io.Peer.Addr().Unmap(), io.Peer.Port()).String()
}

// FlushSockets emits the aggregates that have been open for the aggregate interval: a
// long-lived parent's I/O shows up while it runs, one window at a time.
func (b *Builder) FlushSockets(now time.Time) {
	b.ExpireInferred(now) // on the same tick: an inferred tool span's window has a time bound
	b.emitSockets(func(a *sockAgg) bool { return now.Sub(a.first.Time) >= b.opts.SocketWindow })
}

// EmitSockets emits every aggregate (the receiver stops).
func (b *Builder) EmitSockets() {
	b.emitSockets(func(*sockAgg) bool { return true })
}

// SocketAggregates is the number of aggregates not yet emitted.
func (b *Builder) SocketAggregates() int { return len(b.socks) }

func (b *Builder) emitSockets(which func(*sockAgg) bool) {
	for _, a := range b.socks {
		if which(a) {
			b.emitSocket(a)
		}
	}
}

// emitProcessSockets emits every aggregate of the process (it exits or exec'd).
func (b *Builder) emitProcessSockets(p *process) {
	b.emitSockets(func(a *sockAgg) bool { return a.proc == p })
	for k, c := range b.conns {
		if c.pid == p.info.PID {
			delete(b.conns, k)
		}
	}
}

func (b *Builder) emitSocket(a *sockAgg) {
	if a.emitted {
		return
	}
	a.emitted = true
	delete(b.socks, a.key)
	verb := "send "
	if a.egressN == 0 {
		verb = "receive "
	}
	s := b.startSpan(a.first, a.key.parent, verb+a.key.peer, ptrace.SpanKindClient)
	a.putAttributes(s.attrs)
	b.finish(a.proc, s, a.last.Time, "")
	b.counters.SocketSpans++
}

func (a *sockAgg) putAttributes(m pcommon.Map) {
	io := a.io
	if io.Peer.IsValid() && !io.PeerUnknown {
		m.PutStr("network.peer.address", io.Peer.Addr().Unmap().String())
		m.PutInt("network.peer.port", int64(io.Peer.Port()))
	}
	if io.Transport != TransportOther {
		m.PutStr("network.transport", io.Transport)
	} else {
		m.PutStr("agenttrail.socket.kind", TransportOther)
	}
	addr := io.Peer
	if !addr.IsValid() {
		addr = io.Local
	}
	if addr.IsValid() {
		if addr.Addr().Unmap().Is4() {
			m.PutStr("network.type", "ipv4")
		} else {
			m.PutStr("network.type", "ipv6")
		}
	}
	if io.Local.IsValid() {
		m.PutStr("network.local.address", io.Local.Addr().Unmap().String())
		m.PutInt("network.local.port", int64(io.Local.Port()))
	}
	if io.NetNS != 0 {
		m.PutInt("agenttrail.netns", int64(io.NetNS))
	}
	if io.PeerUnknown {
		m.PutBool("agenttrail.peer.unknown", true)
	}
	m.PutInt("agenttrail.egress.bytes", int64(a.egressB))
	m.PutInt("agenttrail.egress.calls", int64(a.egressN))
	m.PutInt("agenttrail.ingress.bytes", int64(a.ingressB))
	m.PutInt("agenttrail.ingress.calls", int64(a.ingressN))
	if a.incomplete {
		m.PutBool("agenttrail.bytes.incomplete", true)
	}
	if a.connected != "" {
		m.PutStr("agenttrail.socket.connected", a.connected)
	}
	if a.ageMs >= 0 {
		m.PutInt("agenttrail.connection.age_ms", a.ageMs)
	}
	m.PutInt("agenttrail.socket.count", int64(len(a.sockets)))
	m.PutStr("agenttrail.egress.attribution", a.attribution)
	if len(a.dns) > 0 {
		m.PutStr("dns.question.name", a.dns[0])
		putStrings(m, "agenttrail.dns.question.names", a.dns)
		m.PutInt("agenttrail.dns.question.count", int64(a.dnsCount))
	}
	m.PutInt("thread.id", int64(a.first.TID))
	if a.first.Routine != 0 {
		m.PutStr("agenttrail.goroutine", "0x"+strconv.FormatUint(a.first.Routine, 16))
	}
}
