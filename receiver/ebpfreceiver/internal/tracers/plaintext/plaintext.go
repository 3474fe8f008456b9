// Package plaintext consumes the payload the sockets tracer captures on plaintext pipes and
// sockets of traced processes. On pipes (and unix sockets) it follows MCP over stdio
// (newline-delimited JSON-RPC, internal/mcp): each request the traced process sends becomes a
// span under the call that wrote it (`execute_tool {tool}` for tools/call), and the server
// process on the other end has its work placed under that span while it serves the request. On
// TCP sockets it reads plain HTTP: LLM API calls become the same inference spans as over TLS,
// MCP's streamable HTTP the same MCP spans as over stdio.
package plaintext

import (
	"cmp"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/mcp"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/httpspans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/sockets"
)

// Bounds of the consumer's own tables (the MCP tracker bounds its own).
const (
	maxLinks   = 4096 // pipes paired through /proc
	maxPending = 4096 // requests sent and not yet answered
	maxEarly   = 1024 // requests a server read before the client's write was seen
	earlyTTL   = time.Minute
)

// Consumer turns plaintext payload into spans. Not safe for concurrent use: it runs on the
// receiver's reader goroutine, as the sockets tracer does.
type Consumer struct {
	env     tracer.Env
	tracker *mcp.Tracker

	links   map[linkKey]link
	sessOf  map[linkKey]mcp.Key // the MCP session of a process's pipe
	stdin   map[uint32]mcp.Key  // a server's session: the pipe it reads requests on as fd 0
	pending map[uint64]*outCall // by mcp.Call.Seq
	byReq   map[reqKey]*outCall // by the pipe the request was written on and its id
	early   map[reqKey]early
	servers map[uint32]*server
	last    mcp.Stats

	http     *llm.Tracker
	emitter  *httpspans.Emitter
	lastHTTP llm.Stats
	// toolCalls: the model's tool calls per process (from this consumer's plain-HTTP inference
	// spans, http.go, and the TLS tracer's, wiring.go), for MCP tools/call spans.
	toolCalls   *httpspans.ToolCalls
	lastEvicted int64

	calls   metric.Int64Counter
	dropped metric.Int64Counter
	limited metric.Int64Counter
}

type linkKey struct {
	pid uint32
	ino uint64
}

// reqKey names a request on the wire: the pipe it went through and its JSON-RPC id. The client
// writes it and the server reads it on the same pipe.
type reqKey struct {
	ino uint64
	id  string
}

// meta is what a message's first bytes came with.
type meta struct {
	hdr       spans.Header
	parent    spans.Parent
	ino       uint64
	link      link
	fd        int32 // the descriptor the first bytes went through
	transport string
	// Streamable HTTP: the server's Host and the request's target, and the TLS library it was
	// read from ("" in plaintext).
	host, path string
	tlsLibrary string
}

// outCall is a request the traced process sent, in flight.
type outCall struct {
	seq     uint64
	res     *spans.Reserved
	key     reqKey
	from    linkKey  // the pipe the traced process wrote the request on
	servers []uint32 // processes serving it (delegated to its span)
}

type early struct {
	pid uint32
	seq uint64
	at  time.Time
}

// server is a process serving requests over its stdio: the requests in flight in the order
// read, and where its work is placed now.
type server struct {
	active []activeReq
	cur    *spans.Delegation
	curSeq uint64 // the client call its work is delegated to (0: none)
}

type activeReq struct {
	seq    uint64 // the server's own (inbound) call
	client *outCall
}

// Options are the consumer's settings.
type Options struct {
	// CaptureMessageContent exports the (redacted) messages of plain-HTTP LLM calls, as
	// tls.capture_message_content does for TLS.
	CaptureMessageContent bool
}

// New makes the consumer; its counters come from env.Telemetry.Meter.
func New(env tracer.Env, opts Options) (*Consumer, error) {
	c := &Consumer{env: env, tracker: mcp.NewTracker(mcp.Options{}), links: map[linkKey]link{}, sessOf: map[linkKey]mcp.Key{},
		stdin: map[uint32]mcp.Key{}, pending: map[uint64]*outCall{},
		byReq: map[reqKey]*outCall{}, early: map[reqKey]early{}, servers: map[uint32]*server{}}
	if c.env.ProcRoot == "" {
		c.env.ProcRoot = "/proc"
	}
	if c.env.Redactor == nil {
		c.env.Redactor = redact.New()
	}
	// The connection tracker's default bounds (1 MiB per connection and direction, 64 MiB in
	// all, 4096 connections, 2 minutes idle), as for TLS.
	c.http = llm.NewTracker(llm.Options{})
	c.toolCalls = httpspans.NewToolCalls()
	c.emitter = &httpspans.Emitter{Builder: env.Builder, Redactor: c.env.Redactor, CaptureContent: opts.CaptureMessageContent}
	m := env.Telemetry.Meter
	var err error
	if c.calls, err = m.Int64Counter("agenttrail.ebpf.mcp.calls", metric.WithUnit("{call}"),
		metric.WithDescription("MCP requests sent by traced processes and made spans, by method (the MCP methods known, else other).")); err != nil {
		return nil, err
	}
	if c.dropped, err = m.Int64Counter("agenttrail.ebpf.mcp.dropped", metric.WithUnit("{event}"),
		metric.WithDescription("MCP messages, requests and state cut or given up, by reason.")); err != nil {
		return nil, err
	}
	if c.limited, err = m.Int64Counter("agenttrail.ebpf.plaintext.limited", metric.WithUnit("{event}"),
		metric.WithDescription("Plain HTTP on sockets of traced processes not made spans or cut by the connection tracker's bounds, by reason.")); err != nil {
		return nil, err
	}
	return c, nil
}

var _ sockets.PayloadConsumer = (*Consumer)(nil)

// ToolCalls is the table of the model's tool calls this consumer's MCP spans read; the TLS
// tracer's inference spans record into it too (wiring.go).
func (c *Consumer) ToolCalls() *httpspans.ToolCalls { return c.toolCalls }

// Payload takes one captured send or receive.
func (c *Consumer) Payload(p *sockets.Payload) {
	if len(p.Data) == 0 {
		return
	}
	if p.Transport == spans.TransportTCP {
		c.socket(p)
		return
	}
	if p.Transport != spans.TransportPipe && p.Transport != spans.TransportUnix {
		return
	}
	ino := p.Socket.Ino
	lk := c.link(p.Header.PID, p.FD, ino, p.Transport == spans.TransportUnix, p.PeerIno, p.Header.Time)
	dir := mcp.Write
	if p.Direction == spans.Ingress {
		dir = mcp.Read
	}
	missing := 0
	if p.Cut && p.Bytes > uint64(len(p.Data)) {
		missing = int(min(p.Bytes-uint64(len(p.Data)), 1<<30))
	}
	m := &meta{hdr: p.Header, parent: p.Parent, ino: ino, link: lk, fd: p.FD, transport: p.Transport}
	msgs := c.tracker.Stream(mcp.Key{PID: p.Header.PID, Conn: ino}, dir, p.Data, missing, p.Header.Time, m)
	if len(msgs) == 0 {
		return
	}
	sess := c.session(p.Header.PID, p.FD, ino, lk, dir, msgs)
	for _, call := range c.tracker.Messages(sess, dir, msgs) {
		c.handle(call)
	}
}

// session chooses the MCP session of a pipe's messages: the requests one way and the responses
// the other go through two pipes, which must pair into one session. In order: what was chosen
// before; the pipes' pairing from /proc (link); a server's stdio (what it reads on fd 0 and
// writes on fd 1 is one session, whether or not /proc still shows it); and, for a pipe whose
// first messages are responses, the one session of the process with a request of that id in
// flight (a process that exited before /proc was read). A pipe none of these pair is a session
// of its own (its responses then answer nothing, and are counted).
func (c *Consumer) session(pid uint32, fd int32, ino uint64, lk link, dir mcp.Direction, msgs []mcp.Message) mcp.Key {
	k := linkKey{pid, ino}
	if s, ok := c.sessOf[k]; ok {
		return s
	}
	own := mcp.Key{PID: pid, Conn: ino}
	s, found := own, false
	switch {
	case lk.partner != 0:
		s, found = mcp.Key{PID: pid, Conn: min(ino, lk.partner)}, true
		if ps, ok := c.sessOf[linkKey{pid, lk.partner}]; ok {
			s = ps // the partner pipe was given a session before /proc paired them
		}
	case fd == 0 && dir == mcp.Read:
		found = true
		c.stdin[pid] = own
	case fd == 1 && dir == mcp.Write && c.stdin[pid] != (mcp.Key{}):
		s, found = c.stdin[pid], true
	}
	if !found {
		s, found = c.adopt(pid, dir, msgs)
	}
	if !found {
		for _, m := range msgs {
			if m.Kind == mcp.KindResponse {
				return own // not remembered: a later response may pair it
			}
		}
	}
	if len(c.sessOf) >= maxLinks {
		clear(c.sessOf)
		c.drop("links_full")
	}
	c.sessOf[k] = s
	if lk.partner != 0 {
		if _, ok := c.sessOf[linkKey{pid, lk.partner}]; !ok {
			c.sessOf[linkKey{pid, lk.partner}] = s
		}
	}
	return s
}

// adopt finds the one session of pid with a request in flight that a response among msgs
// answers.
func (c *Consumer) adopt(pid uint32, dir mcp.Direction, msgs []mcp.Message) (mcp.Key, bool) {
	for _, m := range msgs {
		if m.Kind != mcp.KindResponse || m.ID == "" {
			continue
		}
		var found mcp.Key
		n := 0
		seen := map[mcp.Key]bool{}
		for lk, s := range c.sessOf {
			if lk.pid != pid || seen[s] {
				continue
			}
			seen[s] = true
			// A response the process reads answers a request it sent, and the other way round.
			if c.tracker.Waits(s, dir == mcp.Write, m.ID) {
				found, n = s, n+1
			}
		}
		if n == 1 {
			return found, true
		}
		if n > 1 {
			c.drop("session_ambiguous")
			return mcp.Key{}, false
		}
	}
	return mcp.Key{}, false
}

// linkRetry: a pipe /proc did not pair is looked up again after this long (the server may not
// have had its stdio set up yet).
const linkRetry = time.Second

func (c *Consumer) link(pid uint32, fd int32, ino uint64, sock bool, peerIno uint64, at time.Time) link {
	k := linkKey{pid, ino}
	prev, had := c.links[k]
	if had && (prev.partner != 0 || at.Sub(prev.tried) < linkRetry) {
		return prev
	}
	l := findLink(c.env.ProcRoot, pid, fd, ino, sock, peerIno)
	l.tried = at
	if l.command != "" {
		l.command, _ = c.env.Redactor.String(l.command)
	}
	if l.server == 0 && prev.server != 0 {
		// /proc no longer shows the server (it exited, or the look came before its stdio was
		// set up): what was learned of it, from /proc or from its reads, stays.
		l.server, l.command = prev.server, prev.command
	}
	if len(c.links) >= maxLinks {
		clear(c.links) // rebuilt from /proc as pipes are seen again
		c.drop("links_full")
	}
	c.links[k] = l
	return l
}

func (c *Consumer) handle(call mcp.Call) {
	if call.Inbound {
		c.served(call)
		return
	}
	if call.ID == "" && call.Done && call.Request != nil && call.Request.Kind == mcp.KindNotification {
		return // notifications are not spans (cancellations end their request)
	}
	if !call.Done {
		c.sent(call)
		return
	}
	c.answered(call)
}

// sent: the traced process wrote a request; its span's ids are fixed now, under the call that
// wrote it, so that the server's work can go under it.
func (c *Consumer) sent(call mcp.Call) {
	m, _ := call.Request.Meta.(*meta)
	if m == nil {
		return
	}
	if len(c.pending) >= maxPending {
		c.drop("pending_full")
		return // the call still comes out as a span when answered, without the server's work
	}
	// The server reads the request on the other end: the same pipe, or a socketpair's peer.
	o := &outCall{seq: call.Seq, res: c.env.Builder.Reserve(m.parent), key: reqKey{cmp.Or(m.link.wire, m.ino), call.ID},
		from: linkKey{m.hdr.PID, m.ino}}
	c.pending[call.Seq] = o
	if o.key.ino == 0 {
		return // streamable HTTP: the server's side is not followed
	}
	c.byReq[o.key] = o
	if e, ok := c.early[o.key]; ok {
		delete(c.early, o.key)
		c.serve(e.pid, e.seq, o, e.at)
	}
}

// served: a traced process read a request (it serves it: its work goes under the client's span
// until it answers) or wrote the response.
func (c *Consumer) served(call mcp.Call) {
	m, _ := call.Request.Meta.(*meta)
	if m == nil || call.ID == "" {
		return
	}
	pid := m.hdr.PID
	if call.Done {
		c.unserve(pid, call.Seq)
		return
	}
	k := reqKey{m.ino, call.ID}
	if o := c.byReq[k]; o != nil {
		c.serve(pid, call.Seq, o, m.hdr.Time)
		return
	}
	// The server's read came before the client's write (their records race in the ring).
	if len(c.early) >= maxEarly {
		c.drop("early_full")
		return
	}
	c.early[k] = early{pid: pid, seq: call.Seq, at: m.hdr.Time}
}

func (c *Consumer) serve(pid uint32, seq uint64, o *outCall, at time.Time) {
	s := c.servers[pid]
	if s == nil {
		s = &server{}
		c.servers[pid] = s
	}
	s.active = append(s.active, activeReq{seq: seq, client: o})
	o.servers = append(o.servers, pid)
	c.learnServer(o.from, pid)
	c.place(pid, s, at)
}

// learnServer: pid was seen reading a request written on the client's pipe from: it is that
// pipe's server (the process that reads the requests, beneath any npx or shell wrapper). This
// holds when /proc, read after the fact, no longer shows either process: the receiver's reader
// lags the kernel (by seconds while it instruments a new process: finding OpenSSL in a node
// executable), and a short MCP session is over by then. The command line is the server's now,
// while the span builder still has the process.
func (c *Consumer) learnServer(from linkKey, pid uint32) {
	l, ok := c.links[from]
	if !ok {
		return // forgotten (links_full, or the client is gone)
	}
	if l.server != pid {
		l.server, l.command = pid, ""
	}
	if cmd := c.builderCommand(pid); cmd != "" {
		l.command = cmd
	}
	c.links[from] = l
}

// builderCommand is the command line the span builder has for pid: the kernel's exec arguments
// (each at most 128 bytes) refined from /proc by the registry, so the program the process runs
// now (after an exec through a wrapper), known even when /proc can no longer be read; ""
// when the process is not traced.
func (c *Consumer) builderCommand(pid uint32) string {
	if p, ok := c.env.Builder.Process(pid); ok {
		return p.CommandLine
	}
	return ""
}

// Why a stdio MCP span has no server command line (agenttrail.mcp.server.unresolved, and the
// reason of agenttrail.ebpf.mcp.dropped).
const (
	unresolvedServer  = "server_not_found"       // no process seen reading the requests, none in /proc
	unresolvedCommand = "server_command_unknown" // the server is known, its command line is not
)

// serverOf names the server of a request sent on m's pipe: the process seen reading it, else
// the one /proc showed with the pipes; its command line is the span builder's (current after
// an exec) when it has the process, else the one kept when it was first learned. unresolved
// says why there is none.
func (c *Consumer) serverOf(m *meta, o *outCall) (pid uint32, cmd, unresolved string) {
	l := m.link
	if cur, ok := c.links[linkKey{m.hdr.PID, m.ino}]; ok && cur.server != 0 {
		l = cur // learned after the request's first bytes, or re-resolved after an exec
	}
	pid, cmd = l.server, l.command
	if o != nil && len(o.servers) > 0 && o.servers[0] != pid {
		pid, cmd = o.servers[0], ""
	}
	if pid == 0 {
		return 0, "", unresolvedServer
	}
	if now := c.builderCommand(pid); now != "" {
		cmd = now
	}
	if cmd == "" {
		return pid, "", unresolvedCommand
	}
	return pid, cmd, ""
}

func (c *Consumer) unserve(pid uint32, seq uint64) {
	s := c.servers[pid]
	if s == nil {
		return
	}
	for i, a := range s.active {
		if a.seq == seq {
			s.active = append(s.active[:i], s.active[i+1:]...)
			break
		}
	}
	c.place(pid, s, time.Time{})
}

// place delegates the server's work to the request it read last among those it has not
// answered: with several in flight at once, which one a syscall serves is not known, and the
// latest is the one a sequential server works on.
func (c *Consumer) place(pid uint32, s *server, at time.Time) {
	var want *outCall
	if n := len(s.active); n > 0 {
		want = s.active[n-1].client
	}
	if want != nil && want.seq == s.curSeq {
		return
	}
	if s.cur != nil {
		c.env.Builder.EndDelegation(s.cur)
		s.cur, s.curSeq = nil, 0
	}
	if want != nil {
		if d, ok := c.env.Builder.Delegate(pid, want.res.Parent(), at); ok {
			s.cur, s.curSeq = d, want.seq
		}
	}
	if len(s.active) == 0 {
		delete(c.servers, pid)
	}
}

// answered: the request's response came back (or it was given up): its span is emitted.
func (c *Consumer) answered(call mcp.Call) {
	o := c.pending[call.Seq]
	m, _ := call.Request.Meta.(*meta)
	if m == nil {
		return
	}
	if o != nil {
		delete(c.pending, call.Seq)
		if c.byReq[o.key] == o {
			delete(c.byReq, o.key)
		}
		// A server that did not answer (gone, or not traced) stops working under the span.
		for _, pid := range o.servers {
			if s := c.servers[pid]; s != nil {
				for i, a := range s.active {
					if a.client == o {
						s.active = append(s.active[:i], s.active[i+1:]...)
						c.place(pid, s, time.Time{})
						break
					}
				}
			}
		}
	}
	if call.Method == "ping" {
		return
	}
	c.calls.Add(tracer.Ctx, 1, metric.WithAttributes(attribute.String("method", methodLabel(call.Method))))
	var srv serverID
	if m.host == "" && m.path == "" && m.fd != 0 && m.fd != 1 {
		// Over stdio, from the spawning side (a request a server writes to its own client on its
		// fd 0 or 1 has no server of its own to name).
		srv.pid, srv.command, srv.unresolved = c.serverOf(m, o)
		if srv.unresolved != "" {
			c.drop(srv.unresolved)
		}
	}
	d := c.spanData(call, m, srv)
	var ok bool
	if o != nil {
		ok = c.env.Builder.EndReserved(o.res, d)
	} else {
		ok = c.env.Builder.AddSpan(m.parent, d)
	}
	if !ok {
		c.drop("process_gone")
	}
}

var knownMethods = map[string]bool{
	"initialize": true, "server/discover": true, "tools/list": true, "tools/call": true, "resources/list": true,
	"resources/templates/list": true, "resources/read": true, "resources/subscribe": true, "resources/unsubscribe": true,
	"prompts/list": true, "prompts/get": true, "completion/complete": true, "logging/setLevel": true, "ping": true,
}

// methodLabel bounds a metric attribute that comes off the wire.
func methodLabel(m string) string {
	if knownMethods[m] {
		return m
	}
	return "other"
}

// maxArgs bounds the arguments exported on a span.
const maxArgs = 8 << 10

// serverID is the stdio server a span names.
type serverID struct {
	pid        uint32
	command    string
	unresolved string
}

func (c *Consumer) spanData(call mcp.Call, m *meta, srv serverID) spans.SpanData {
	name := call.Method
	switch call.Method {
	case "tools/call":
		name = "execute_tool " + call.Tool
	case "prompts/get":
		name = "prompts/get " + call.Tool
	case "":
		name = "mcp request"
	}
	end := call.Request.End
	if call.Response != nil {
		end = call.Response.End
	}
	d := spans.SpanData{Name: name, Kind: ptrace.SpanKindClient, Start: call.Request.At, End: end, TID: m.hdr.TID}
	switch {
	case call.Error != nil:
		d.Error = "MCP error " + strconv.FormatInt(call.Error.Code, 10) + ": " + call.Error.Message
	case call.IsError:
		d.Error = "the tool reported an error (isError)"
	case call.Response == nil:
		d.Error = call.Problem
	}
	red := c.env.Redactor
	// The model's id for this call when the process's latest inference asked for exactly one
	// call of this tool (httpspans.ToolCalls.Match says the rule).
	var modelID string
	if call.Method == "tools/call" {
		modelID, _ = c.toolCalls.Match(m.hdr.PID, call.Request.At, call.Tool)
	}
	d.Attributes = func(a pcommon.Map) {
		a.PutStr("mcp.method.name", call.Method)
		a.PutStr("network.transport", m.transport)
		if m.host != "" || m.path != "" {
			a.PutStr("agenttrail.mcp.transport", "streamable_http")
			httpspans.PutServer(a, m.host)
			path, _ := red.String(m.path)
			a.PutStr("url.path", path)
		} else {
			a.PutStr("agenttrail.mcp.transport", "stdio")
		}
		if m.tlsLibrary != "" {
			a.PutStr("agenttrail.capture.source", "tls")
			a.PutStr("agenttrail.tls.library", m.tlsLibrary)
		} else {
			a.PutStr("agenttrail.capture.source", "plaintext")
		}
		if id := unquoteID(call.ID); id != "" {
			a.PutStr("jsonrpc.request.id", id)
		}
		if s := call.Server; s.Name != "" {
			a.PutStr("mcp.server.name", s.Name)
			if s.Version != "" {
				a.PutStr("mcp.server.version", s.Version)
			}
		}
		if v := call.Server.ProtocolVersion; v != "" {
			a.PutStr("mcp.protocol.version", v)
		}
		if srv.command != "" {
			a.PutStr("agenttrail.mcp.server.command_line", srv.command)
		}
		if srv.pid != 0 {
			a.PutInt("agenttrail.mcp.server.pid", int64(srv.pid))
		}
		if srv.unresolved != "" {
			a.PutStr("agenttrail.mcp.server.unresolved", srv.unresolved)
		}
		a.PutInt("thread.id", int64(m.hdr.TID))
		switch call.Method {
		case "tools/call":
			a.PutStr("gen_ai.operation.name", "execute_tool")
			a.PutStr("gen_ai.tool.name", call.Tool)
			a.PutStr("agenttrail.role", string(spans.RoleTool))
			if modelID != "" {
				a.PutStr("gen_ai.tool.call.id", modelID)
				a.PutStr("agenttrail.tool_call.id.source", "model")
			} else if id := unquoteID(call.ID); id != "" {
				a.PutStr("gen_ai.tool.call.id", id)
				a.PutStr("agenttrail.tool_call.id.source", "jsonrpc")
			}
			if len(call.Arguments) > 0 {
				raw := call.Arguments
				cut := call.Request.Cut
				if len(raw) > maxArgs {
					raw, cut = raw[:maxArgs], true
				}
				if v, counts, ok := red.Value(redact.PolicyRedacted, raw, cut); ok {
					a.PutStr("gen_ai.tool.call.arguments", v)
					if n := counts.Total(); n > 0 {
						a.PutInt("gen_ai.tool.call.arguments.redactions", int64(n))
					}
				}
			}
			if call.Response != nil {
				a.PutBool("agenttrail.mcp.result.is_error", call.IsError)
			}
		case "prompts/get":
			a.PutStr("gen_ai.prompt.name", call.Tool)
		case "resources/read":
			uri, _ := red.String(call.URI)
			a.PutStr("mcp.resource.uri", uri)
			a.PutStr("agenttrail.role", "data_access")
		case "tools/list":
			names := a.PutEmptySlice("agenttrail.mcp.tools")
			for _, t := range call.Tools {
				names.AppendEmpty().SetStr(t.Name)
			}
			if call.ToolsCut {
				a.PutBool("agenttrail.mcp.tools.cut", true)
			}
		}
		if call.Response != nil {
			a.PutInt("agenttrail.mcp.result.size", call.ResultSize)
		}
		if call.Error != nil {
			a.PutStr("error.type", "jsonrpc_error")
			a.PutInt("rpc.jsonrpc.error_code", call.Error.Code)
		} else if call.IsError {
			a.PutStr("error.type", "tool_error")
		}
		if call.Problem != "" {
			a.PutStr("agenttrail.mcp.problem", call.Problem)
		}
	}
	if call.Method == "tools/list" && len(call.Tools) > 0 {
		// Each tool's description as an event: what the model is told about it, where a
		// poisoned server hides its instructions.
		d.Events = func(evs ptrace.SpanEventSlice) {
			for _, t := range call.Tools {
				ev := evs.AppendEmpty()
				ev.SetName("mcp.tool")
				ev.SetTimestamp(pcommon.NewTimestampFromTime(end))
				ev.Attributes().PutStr("gen_ai.tool.name", t.Name)
				if t.Description != "" {
					ev.Attributes().PutStr("gen_ai.tool.description", t.Description)
				}
			}
		}
	}
	return d
}

// unquoteID is a JSON-RPC id as an attribute: a string's text, a number's digits.
func unquoteID(id string) string {
	if len(id) >= 2 && id[0] == '"' {
		return strings.ReplaceAll(id[1:len(id)-1], `\"`, `"`)
	}
	return id
}

func (c *Consumer) drop(reason string) {
	c.dropped.Add(tracer.Ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
}

// Housekeeping gives up requests unanswered for too long, forgets what waited too long, and
// counts what the MCP tracker cut or gave up.
func (c *Consumer) Housekeeping(now time.Time) {
	for _, call := range c.tracker.Expire(now) {
		c.handle(call)
	}
	for k, e := range c.early {
		if now.Sub(e.at) > earlyTTL {
			delete(c.early, k)
			c.drop("server_read_unmatched")
		}
	}
	c.report()
	c.housekeepHTTP(now)
}

// Waiting: requests in flight wait for their response or expiry, HTTP connections for their
// responses' end.
func (c *Consumer) Waiting() bool { return len(c.pending) > 0 || c.http.Connections() > 0 }

// ProcessGone: a process exited (or exec'd): its requests in flight come out unanswered, and
// what is known of its pipes is forgotten.
func (c *Consumer) ProcessGone(pid uint32) {
	c.emitHTTP(c.http.CloseProcess(pid))
	for _, call := range c.tracker.CloseProcess(pid) {
		c.handle(call)
	}
	for k := range c.links {
		if k.pid == pid {
			delete(c.links, k)
		}
	}
	for k := range c.sessOf {
		if k.pid == pid {
			delete(c.sessOf, k)
		}
	}
	delete(c.stdin, pid)
	if s := c.servers[pid]; s != nil {
		c.env.Builder.EndDelegation(s.cur)
		delete(c.servers, pid)
	}
	c.toolCalls.Forget(pid) // after its last MCP spans above
}

// Close emits every request in flight as it is.
func (c *Consumer) Close() error {
	for pid := range c.servers {
		c.env.Builder.EndDelegation(c.servers[pid].cur)
	}
	clear(c.servers)
	c.emitHTTP(c.http.Expire(time.Now().Add(1000 * time.Hour)))
	for _, call := range c.tracker.CloseAll() {
		c.handle(call)
	}
	c.report()
	c.reportHTTP()
	return nil
}

// report adds what the tracker counted since the last report to the dropped counter.
func (c *Consumer) report() {
	st := c.tracker.Stats()
	add := func(reason string, now, before uint64) {
		if now > before {
			c.dropped.Add(tracer.Ctx, int64(now-before), metric.WithAttributes(attribute.String("reason", reason)))
		}
	}
	add("message_cut", st.MessagesCut, c.last.MessagesCut)
	add("not_jsonrpc", st.MessagesUnreadable, c.last.MessagesUnreadable)
	add("bytes_skipped", st.BytesSkipped, c.last.BytesSkipped)
	add("stream_evicted", st.StreamsEvicted, c.last.StreamsEvicted)
	add("session_evicted", st.SessionsEvicted, c.last.SessionsEvicted)
	add("request_given_up", st.RequestsGivenUp, c.last.RequestsGivenUp)
	add("request_expired", st.RequestsExpired, c.last.RequestsExpired)
	add("response_unmatched", st.ResponsesUnmatched, c.last.ResponsesUnmatched)
	add("tools_cut", st.ToolsCut, c.last.ToolsCut)
	c.last = st
	if n := c.toolCalls.Evicted(); n > c.lastEvicted {
		c.dropped.Add(tracer.Ctx, n-c.lastEvicted, metric.WithAttributes(attribute.String("reason", "tool_calls_evicted")))
		c.lastEvicted = n
	}
}
