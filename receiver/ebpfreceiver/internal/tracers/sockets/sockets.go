// Package sockets is the probe family of socket I/O: the kernel's EVENT_FD_IO records (one per
// send or receive of a traced process on a socket, or on a pipe that carries a plaintext
// protocol) become `send {peer}` aggregate spans through the span builder, DNS queries are
// decoded, and captured plaintext is handed to the registered payload consumers.
package sockets

import (
	"encoding/binary"
	"net/netip"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/dnsmsg"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// Payload is the captured data of one send or receive on a socket or pipe that carries a
// plaintext protocol (or a DNS message).
type Payload struct {
	Header    spans.Header
	Socket    spans.SocketID // Sock is 0 for a pipe
	Key       uint64         // the kernel's plaintext mark key (SetPlain)
	FD        int32
	Direction spans.Direction
	Transport string // spans.Transport*
	Peer      netip.AddrPort
	// PeerIno: a unix socket's peer's inode as the kernel had it at the call (0: none or not
	// a unix socket); /proc and sock_diag, asked later, may no longer know the socket.
	PeerIno uint64
	Bytes   uint64 // what the call moved
	Data    []byte // the captured prefix; valid only during the call
	Cut     bool   // Data holds less than Bytes
	// Parent is where spans made from the payload belong (the call that made the I/O).
	Parent spans.Parent
}

// PayloadConsumer parses the plaintext of socket and pipe I/O (HTTP, MCP over stdio).
type PayloadConsumer interface {
	Payload(p *Payload)
}

// Tracer is the socket I/O family.
type Tracer struct {
	env       tracer.Env
	cfg       Config
	consumers []PayloadConsumer

	records      metric.Int64Counter
	unattributed metric.Int64Counter
	dnsDrops     metric.Int64Counter
	incomplete   metric.Int64Counter
	unmarked     metric.Int64Counter
	limited      metric.Int64Counter
	last         spans.Counters // the builder's counters at the last Housekeeping
}

// reasonOpt is a counter's attribute set for one reason, built once: a record's handler runs for
// every send and receive of the traced processes, and building the set per call (sorting and
// hashing it, two allocations) was about a third of the handler's time at saturation.
func reasonOpt(r string) metric.AddOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
}

// The reasons the handler and Housekeeping count.
var (
	reasonPeerUnknown   = reasonOpt("peer_unknown")
	reasonNoProcess     = reasonOpt("no_process")
	reasonNoCall        = reasonOpt("no_call")
	reasonMmsgTruncated = reasonOpt("mmsg_truncated")
	reasonReadFailed    = reasonOpt("read_failed")
	reasonIovCut        = reasonOpt("iov_cut")
	reasonNotJSONRPC    = reasonOpt("not_jsonrpc")
	reasonTableFull     = reasonOpt("aggregate_table_full")
	reasonConnsFull     = reasonOpt("connection_table_full")
)

var _ tracer.Tracer = (*Tracer)(nil)

// head is the fixed part of a record, before the captured data.
var head = int(offsetData())

// New makes the tracer; its counters come from env.Telemetry.Meter.
func New(env tracer.Env, cfg Config) (*Tracer, error) {
	t := &Tracer{env: env, cfg: cfg}
	m := env.Telemetry.Meter
	var err error
	counter := func(name, desc string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit("{call}"))
		return c
	}
	t.records = counter("agenttrail.ebpf.sockets.records", "Sends and receives of traced processes on sockets (and plaintext pipes), by kind (tcp, udp, unix, pipe, other) and direction.")
	t.unattributed = counter("agenttrail.ebpf.sockets.unattributed", "Socket I/O that could not be tied to a peer or a call, by reason (peer_unknown, no_process, no_call).")
	t.dnsDrops = counter("agenttrail.ebpf.sockets.dns_unparsed", "DNS messages sent by traced processes whose query could not be decoded, by reason.")
	t.incomplete = counter("agenttrail.ebpf.sockets.incomplete", "Socket I/O recorded only in part, by reason (mmsg_truncated: bytes of sendmmsg/recvmmsg messages beyond the kernel's bound not counted; read_failed: the payload could not be read).")
	t.unmarked = counter("agenttrail.ebpf.sockets.unmarked", "Pipes and unix sockets the kernel took for plaintext (data starting with '{') that do not carry JSON-RPC, unmarked (their payload no longer captured), by reason.")
	t.limited = counter("agenttrail.ebpf.sockets.limited", "Bounds of the socket I/O aggregation reached, by reason (aggregate_table_full: every aggregate emitted early; connection_table_full: a seen connect forgotten, its socket's I/O then reads as before_tracing).")
	if err != nil {
		return nil, err
	}
	return t, nil
}

// AddConsumer registers a consumer of captured plaintext.
func (t *Tracer) AddConsumer(c PayloadConsumer) { t.consumers = append(t.consumers, c) }

// SetPlain marks (or unmarks) a socket or pipe as carrying plaintext, so the kernel captures
// its payload (or stops). No-op without the kernel.
func (t *Tracer) SetPlain(key uint64, plain bool) error {
	if t.env.Kernel == nil {
		return nil
	}
	return t.env.Kernel.MarkPlain(key, plain)
}

func (t *Tracer) Name() string { return "sockets" }

func (t *Tracer) Kinds() []tracer.Kind {
	return []tracer.Kind{{Kind: probes.KindFDIO, Name: "fd_io", Min: head, Full: tracer.SizeOf[probes.FDIOEvent](), Handle: t.Handle}}
}

func (t *Tracer) Start()                           {}
func (t *Tracer) AttachBinary(tracer.Binary) error { return nil }
func (t *Tracer) SetupProcess(*tracer.Process)     {}
func (t *Tracer) ProcessGone(uint32)               {} // the span builder emits a process's aggregates at its exit or exec

// Housekeeping emits the aggregates whose window has passed and counts the bounds reached.
func (t *Tracer) Housekeeping(now time.Time) {
	t.env.Builder.FlushSockets(now)
	c := t.env.Builder.Counters()
	if d := c.SocketEarlyFlushes - t.last.SocketEarlyFlushes; d > 0 {
		t.limited.Add(tracer.Ctx, int64(d), reasonTableFull)
	}
	if d := c.SocketConnectionsForgotten - t.last.SocketConnectionsForgotten; d > 0 {
		t.limited.Add(tracer.Ctx, int64(d), reasonConnsFull)
	}
	t.last = c
}

// Waiting: aggregates wait for their window even when no record arrives.
func (t *Tracer) Waiting() bool { return t.env.Builder.SocketAggregates() > 0 }

// Close emits every aggregate.
func (t *Tracer) Close() error {
	t.env.Builder.EmitSockets()
	return nil
}

// kind is a record kind's transport and the records counter's attribute sets for it, by
// direction (0 send, 1 receive), built once.
type kind struct {
	transport string
	records   [2]metric.AddOption
}

var kinds = func() map[uint8]kind {
	m := map[uint8]kind{}
	for k, name := range map[uint8]string{
		probes.FDIOTCP: spans.TransportTCP, probes.FDIOUDP: spans.TransportUDP, probes.FDIOUnix: spans.TransportUnix,
		probes.FDIOPipe: spans.TransportPipe, probes.FDIOOther: spans.TransportOther,
	} {
		var kd kind
		kd.transport = name
		for i, dir := range [2]string{"send", "receive"} {
			kd.records[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", name), attribute.String("direction", dir)))
		}
		m[k] = kd
	}
	return m
}()

// Handle turns one EVENT_FD_IO record (a view with the capacity of the whole struct) into the
// span builder's socket I/O; it returns why the record was dropped, or "".
func (t *Tracer) Handle(h spans.Header, rec []byte) string {
	e := tracer.As[probes.FDIOEvent](rec)
	kd, ok := kinds[e.Kind]
	transport := kd.transport
	switch {
	case !ok:
		return "fd_io_kind"
	case e.Direction != probes.FDIOSend && e.Direction != probes.FDIORecv:
		return "fd_io_direction"
	case int(e.Captured) > len(rec)-head || int(e.Captured) > len(e.Data):
		return "fd_io_length" // more captured than the record holds
	}
	dir, dirIdx := spans.Egress, 0
	if e.Direction == probes.FDIORecv {
		dir, dirIdx = spans.Ingress, 1
	}
	t.records.Add(tracer.Ctx, 1, kd.records[dirIdx])
	io := spans.SocketIO{
		Socket:     spans.SocketID{Sock: e.Sock, Ino: e.Ino},
		Direction:  dir,
		Bytes:      e.Bytes,
		Transport:  transport,
		NetNS:      e.Netns,
		Incomplete: e.Flags&probes.FDIOTruncated != 0,
	}
	if e.Kind == probes.FDIOTCP || e.Kind == probes.FDIOUDP || (e.Kind == probes.FDIOOther && (e.Family == unix.AF_INET || e.Family == unix.AF_INET6)) {
		io.Peer = addrPort(e.Family, e.Peer, e.PeerPort)
		io.Local = addrPort(e.Family, e.Local, e.LocalPort)
		io.PeerUnknown = e.Flags&probes.FDIOPeerUnknown != 0 || !io.Peer.IsValid()
		if io.PeerUnknown {
			io.Peer = netip.AddrPort{}
			t.unattributed.Add(tracer.Ctx, 1, reasonPeerUnknown)
		}
	}
	if io.Incomplete {
		t.incomplete.Add(tracer.Ctx, 1, reasonMmsgTruncated)
	}
	if e.Flags&probes.FDIOReadFailed != 0 {
		t.incomplete.Add(tracer.Ctx, 1, reasonReadFailed)
	}
	if e.Flags&probes.FDIOIovCut != 0 {
		// Data past the first 16 buffers of a writev or sendmsg (within the capture bound) was
		// not captured: the payload is cut there (Payload.Cut), counted here.
		t.incomplete.Add(tracer.Ctx, 1, reasonIovCut)
	}
	data := tracer.Bytes(e.Data[:], e.Captured)
	if e.Flags&probes.FDIOPlain != 0 && (e.Kind == probes.FDIOPipe || e.Kind == probes.FDIOUnix) && startsJSON(data) && !t.jsonrpc(e, data) {
		if e.Kind == probes.FDIOPipe {
			return "" // a pipe is reported only while it carries JSON-RPC
		}
		data = nil
	}
	if e.Flags&probes.FDIODNS != 0 && dir == spans.Egress && len(data) > 0 {
		m, err := dnsmsg.ParseQuery(data, e.Kind == probes.FDIOTCP)
		if err != nil {
			reason := "unknown"
			if de, ok := err.(*dnsmsg.Error); ok {
				reason = de.Reason
			}
			t.dnsDrops.Add(tracer.Ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
		} else {
			for _, q := range m.Questions {
				io.DNSNames = append(io.DNSNames, q.Name)
			}
		}
	}
	if !t.env.Builder.HasProcess(h.PID) {
		t.unattributed.Add(tracer.Ctx, 1, reasonNoProcess)
		return ""
	}
	if dir == spans.Egress {
		t.env.Builder.ModelRequest(h, io.Socket.Sock) // the next model call ends its inferred tool spans first
	}
	parent, attribution := t.env.Builder.SocketIO(h, io)
	if attribution == spans.AttributionNone {
		t.unattributed.Add(tracer.Ctx, 1, reasonNoCall)
	}
	if len(t.consumers) > 0 && e.Flags&probes.FDIOPlain != 0 && len(data) > 0 {
		key := e.Sock
		if key == 0 {
			key = e.Ino
		}
		p := &Payload{Header: h, Socket: io.Socket, Key: key, FD: e.Fd, Direction: dir, Transport: transport,
			Peer: io.Peer, Bytes: e.Bytes, Data: data, Cut: uint64(len(data)) < e.Bytes, Parent: parent}
		if e.Kind == probes.FDIOUnix {
			p.PeerIno = binary.NativeEndian.Uint64(e.Peer[:8])
		}
		for _, c := range t.consumers {
			c.Payload(p)
		}
	}
	return ""
}

// jsonrpc checks the kernel's mark of a pipe or unix socket on a message starting with '{': a
// JSON-RPC message's first key is one of its own (MCP over stdio), a structured log line's is
// not ({"level":...}). One that is not JSON-RPC is unmarked, so the kernel stops capturing it.
func (t *Tracer) jsonrpc(e *probes.FDIOEvent, data []byte) bool {
	if looksJSONRPC(data) {
		return true
	}
	key := e.Sock
	if key == 0 {
		key = e.Ino
	}
	if err := t.SetPlain(key, false); err != nil {
		t.env.Logger.Debug("unmark a pipe or socket that does not carry JSON-RPC", zap.Error(err))
	}
	t.unmarked.Add(tracer.Ctx, 1, reasonNotJSONRPC)
	return false
}

var jsonrpcKeys = []string{`"jsonrpc"`, `"id"`, `"method"`, `"params"`, `"result"`, `"error"`}

// looksJSONRPC reports whether data starts with a JSON object whose first key is a JSON-RPC 2.0
// member (JSON whitespace allowed before the brace and the key).
func looksJSONRPC(data []byte) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	for _, k := range jsonrpcKeys {
		if len(data)-i >= len(k) && string(data[i:i+len(k)]) == k {
			return true
		}
	}
	return false
}

// startsJSON: the data's first byte past JSON whitespace is '{' (what the kernel marks a pipe
// or unix socket on); HTTP on a unix socket (a container runtime's API) is left alone.
func startsJSON(data []byte) bool {
	i := skipSpace(data, 0)
	return i < len(data) && data[i] == '{'
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// addrPort reads an address the kernel wrote in network order (IPv4 in the first 4 bytes).
func addrPort(family uint16, b [16]uint8, port uint16) netip.AddrPort {
	if port == 0 {
		return netip.AddrPort{}
	}
	var a netip.Addr
	switch family {
	case unix.AF_INET:
		a = netip.AddrFrom4([4]byte(b[:4]))
	case unix.AF_INET6:
		a = netip.AddrFrom16(b).Unmap()
	default:
		return netip.AddrPort{}
	}
	if a.IsUnspecified() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, port)
}
