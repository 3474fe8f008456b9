// Package mcp follows Model Context Protocol sessions (JSON-RPC 2.0) in the bytes a traced
// process writes and reads: newline-delimited messages over stdio pipes or sockets, and the
// streamable HTTP transport's bodies (JSON or server-sent events) once an HTTP exchange has been
// parsed. It pairs requests with their responses by id, remembers what initialize said about
// the server, and reads the methods that matter for a trace: tools/list (tool names and
// descriptions), tools/call (tool, arguments, result size, isError), resources/read and
// prompts/get.
//
// The input is whatever the traced program wrote and read: anything can arrive, split anywhere,
// with bytes missing where a call moved more than the capture bound. Everything here is bounded
// (bytes kept per message, streams, sessions, requests in flight, idle time), never panics on
// bad input, and counts what it cut or gave up in Stats.
package mcp

import (
	"bytes"
	"cmp"
	"fmt"
	"time"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/jsonscan"
)

// Direction of a call, as the traced process saw it.
type Direction uint8

const (
	Write Direction = 1 // the traced process sent the bytes
	Read  Direction = 2 // the traced process received them
)

// Key identifies a byte stream (a pipe or socket of a process) or a session.
type Key struct {
	PID  uint32
	Conn uint64
}

// Options bound the Tracker; zero fields take the defaults.
type Options struct {
	MaxMessage  int           // bytes kept of one message (its beginning, plus its last 256 bytes); default 64 KiB
	MaxStreams  int           // stream directions followed at once; default 1024
	MaxSessions int           // sessions followed at once; default 1024
	MaxInFlight int           // requests waiting for their response per session; default 64
	Timeout     time.Duration // a request unanswered this long is given up; default 10 min
	IdleTimeout time.Duration // a stream or session without data this long (and nothing in flight) is forgotten; default 30 min
}

func (o Options) withDefaults() Options {
	o.MaxMessage = cmp.Or(o.MaxMessage, 64<<10)
	o.MaxStreams = cmp.Or(o.MaxStreams, 1024)
	o.MaxSessions = cmp.Or(o.MaxSessions, 1024)
	o.MaxInFlight = cmp.Or(o.MaxInFlight, 64)
	o.Timeout = cmp.Or(o.Timeout, 10*time.Minute)
	o.IdleTimeout = cmp.Or(o.IdleTimeout, 30*time.Minute)
	return o
}

// Stats counts what the Tracker's bounds cut or gave up, and what it could not read.
type Stats struct {
	MessagesCut        uint64 // messages larger than MaxMessage or with bytes not captured: read as far as they go
	MessagesUnreadable uint64 // lines that are not JSON-RPC
	BytesMissing       uint64 // bytes calls moved beyond what was captured
	BytesSkipped       uint64 // captured bytes dropped after a gap, up to the next message
	StreamsEvicted     uint64 // streams forgotten because MaxStreams were followed (a message in progress was lost)
	SessionsEvicted    uint64 // sessions forgotten because MaxSessions were followed (their requests came out unanswered)
	RequestsGivenUp    uint64 // requests that came out unanswered because MaxInFlight were waiting on their session
	RequestsExpired    uint64 // requests unanswered after Timeout
	ResponsesUnmatched uint64 // responses whose id answered no request in flight
	ToolsCut           uint64 // tools/list results with more tools than are listed, or descriptions cut
}

// Call is a JSON-RPC request and what came of it, or a notification. A request comes out twice:
// once when it is seen (Done false; the request's side is filled in) and once when it is
// answered or given up (Done true), both with the same Seq.
type Call struct {
	Seq     uint64 // unique per Tracker
	Session Key
	Done    bool
	// Inbound: the traced process received the request (it serves it); otherwise it sent it.
	Inbound  bool
	Method   string
	ID       string // the JSON-RPC id as written (strings in quotes); "" for a notification or an id not captured
	Request  *Message
	Response *Message // nil when none was seen (Problem says why)
	// Problem says what went wrong: no response, the id not captured, the message cut.
	Problem string

	// Server is what the session's initialize (or server/discover, or the _meta of the
	// 2026-07-28 protocol's messages) said, as known when the call came out.
	Server ServerInfo

	Tool      string // tools/call and prompts/get: params.name
	Arguments []byte // tools/call and prompts/get: params.arguments, raw JSON, possibly cut
	URI       string // resources/read: params.uri
	// IsError: a tools/call result said isError, or the response was a JSON-RPC error.
	IsError bool
	Error   *RPCError
	// ResultSize is the response's size on the wire in bytes.
	ResultSize int64
	Tools      []Tool // tools/list
	ToolsCut   bool   // more tools than listed, or descriptions cut
}

// ServerInfo is what initialize says about a server.
type ServerInfo struct {
	Name, Version   string
	ProtocolVersion string
	// Client: the clientInfo the request named.
	ClientName, ClientVersion string
}

// Tool is one tool a tools/list result named.
type Tool struct {
	Name, Description string
}

// Bounds on what a call carries out of its messages.
const (
	maxName        = 256     // a tool, prompt or server name, a version, a URI
	maxDescription = 4 << 10 // a tool's description
	maxTools       = 512     // tools listed from one tools/list result
	maxArguments   = 16 << 10
)

type streamKey struct {
	Key
	dir Direction
}

type pendingKey struct {
	inbound bool
	id      string
}

type session struct {
	server   ServerInfo
	inflight map[pendingKey]*Call
	seen     time.Time
	created  uint64 // order of creation: breaks ties of seen (map order would be random)
}

// Tracker follows the MCP sessions of all traced processes. Not safe for concurrent use.
type Tracker struct {
	opts     Options
	streams  map[streamKey]*stream
	sessions map[Key]*session
	made     uint64 // sessions made so far
	seq      uint64
	stats    Stats
}

// NewTracker returns a Tracker bounded by opts.
func NewTracker(opts Options) *Tracker {
	return &Tracker{opts: opts.withDefaults(), streams: map[streamKey]*stream{}, sessions: map[Key]*session{}}
}

// Stats returns the counters so far.
func (t *Tracker) Stats() Stats { return t.stats }

// Sessions is the number of sessions followed.
func (t *Tracker) Sessions() int { return len(t.sessions) }

// Data feeds the bytes of one call on the stream sk0: data is what was captured, missing how many
// more bytes the call moved. Messages are paired within session: for stdio the two pipes to one
// server, for a socket the connection itself.
func (t *Tracker) Data(sk0, sess Key, dir Direction, data []byte, missing int, at time.Time, meta any) []Call {
	msgs := t.Stream(sk0, dir, data, missing, at, meta)
	if len(msgs) == 0 {
		return nil
	}
	return t.Messages(sess, dir, msgs)
}

// Stream reassembles the bytes of one call on the stream sk0 without pairing them: the caller
// chooses the session of the messages (Messages) once it sees them.
func (t *Tracker) Stream(sk0 Key, dir Direction, data []byte, missing int, at time.Time, meta any) []Message {
	sk := streamKey{sk0, dir}
	s := t.streams[sk]
	if s == nil {
		if len(data) == 0 {
			return nil
		}
		if len(t.streams) >= t.opts.MaxStreams {
			t.evictStream()
		}
		s = &stream{}
		t.streams[sk] = s
	}
	return s.feed(data, missing, at, meta, t.opts.MaxMessage, &t.stats)
}

// Waits reports whether session k has a request with id in flight: one the traced process sent
// (inbound false) or received.
func (t *Tracker) Waits(k Key, inbound bool, id string) bool {
	se := t.sessions[k]
	return se != nil && se.inflight[pendingKey{inbound, id}] != nil
}

// Messages pairs messages read by another framing (an HTTP body) within a session.
func (t *Tracker) Messages(sess Key, dir Direction, msgs []Message) []Call {
	var out []Call
	var se *session
	for i := range msgs {
		m := &msgs[i]
		if m.Kind == KindUnknown {
			continue
		}
		if se == nil {
			se, out = t.session(out, sess, m.End)
		}
		se.seen = later(se.seen, m.End)
		out = t.message(out, sess, se, dir, m)
	}
	return out
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// session returns the session k, made when new; an older one evicted for it adds its
// unanswered requests to out.
func (t *Tracker) session(out []Call, k Key, at time.Time) (*session, []Call) {
	se := t.sessions[k]
	if se != nil {
		return se, out
	}
	if len(t.sessions) >= t.opts.MaxSessions {
		out = t.evictSession(out)
	}
	t.made++
	se = &session{inflight: map[pendingKey]*Call{}, seen: at, created: t.made}
	t.sessions[k] = se
	return se, out
}

func (t *Tracker) message(out []Call, sk Key, se *session, dir Direction, m *Message) []Call {
	switch m.Kind {
	case KindNotification:
		t.seq++
		c := Call{Seq: t.seq, Session: sk, Done: true, Inbound: dir == Read, Method: m.Method, Request: m, Server: se.server}
		if m.Cut {
			c.Problem = "message cut"
		}
		out = append(out, c)
		if m.Method == "notifications/cancelled" {
			out = t.cancelled(out, se, dir, m)
		}
		return out
	case KindRequest:
		t.seq++
		c := &Call{Seq: t.seq, Session: sk, Inbound: dir == Read, Method: m.Method, ID: m.ID, Request: m, Server: se.server}
		describeRequest(c)
		if m.ID == "" {
			c.Done = true
			c.Problem = "request id not captured: its response cannot be paired"
			return append(out, *c)
		}
		pk := pendingKey{c.Inbound, m.ID}
		if old := se.inflight[pk]; old != nil {
			// An id used again while in flight: the old request is given up.
			delete(se.inflight, pk)
			out = append(out, t.done(old, se, nil, "its id was used again before a response was seen"))
		}
		if len(se.inflight) >= t.opts.MaxInFlight {
			oldest := t.oldest(se)
			delete(se.inflight, pendingKey{oldest.Inbound, oldest.ID})
			t.stats.RequestsGivenUp++
			out = append(out, t.done(oldest, se, nil, fmt.Sprintf("more than %d requests in flight on the session: the oldest was given up", t.opts.MaxInFlight)))
		}
		se.inflight[pk] = c
		return append(out, *c)
	case KindResponse:
		// A response the process read answers a request it wrote, and the other way round.
		inbound := dir == Write
		if m.ID == "" {
			if c := t.only(se, inbound); c != nil {
				delete(se.inflight, pendingKey{inbound, c.ID})
				why := "response id not captured: paired with the only request in flight"
				if m.NullID {
					why = "response id null (the server could not read the request): paired with the only request in flight"
				}
				return append(out, t.done(c, se, m, why))
			}
			t.stats.ResponsesUnmatched++
			return out
		}
		pk := pendingKey{inbound, m.ID}
		c := se.inflight[pk]
		if c == nil {
			t.stats.ResponsesUnmatched++
			return out
		}
		delete(se.inflight, pk)
		return append(out, t.done(c, se, m, ""))
	}
	return out
}

// cancelled gives up the request a notifications/cancelled names (sent by the side that made it).
func (t *Tracker) cancelled(out []Call, se *session, dir Direction, m *Message) []Call {
	var id string
	_ = jsonscan.Members(m.Params, func(key string, raw []byte, whole bool) {
		if key == "requestId" && whole {
			id = idText(raw)
		}
	})
	pk := pendingKey{dir == Read, id}
	if c := se.inflight[pk]; id != "" && c != nil {
		delete(se.inflight, pk)
		out = append(out, t.done(c, se, nil, "cancelled by the client"))
	}
	return out
}

func (t *Tracker) only(se *session, inbound bool) *Call {
	var found *Call
	for pk, c := range se.inflight {
		if pk.inbound != inbound {
			continue
		}
		if found != nil {
			return nil
		}
		found = c
	}
	return found
}

func (t *Tracker) oldest(se *session) *Call {
	var o *Call
	for _, c := range se.inflight {
		if o == nil || c.Seq < o.Seq {
			o = c
		}
	}
	return o
}

// done completes a call with its response (nil when given up, problem saying why).
func (t *Tracker) done(c *Call, se *session, resp *Message, problem string) Call {
	c.Done = true
	c.Response = resp
	c.Problem = problem
	if resp != nil {
		describeResponse(c, resp, se)
		if c.ToolsCut {
			t.stats.ToolsCut++
		}
		if resp.Cut && c.Problem == "" {
			c.Problem = "response cut: read as far as it goes"
		}
	} else if c.Problem == "" {
		c.Problem = "no response seen"
	}
	c.Server = se.server
	return *c
}

// Expire gives up requests unanswered for Timeout, and forgets streams and sessions idle for
// IdleTimeout.
func (t *Tracker) Expire(now time.Time) []Call {
	var out []Call
	for k, s := range t.streams {
		if now.Sub(s.seen) > t.opts.IdleTimeout {
			delete(t.streams, k)
		}
	}
	for k, se := range t.sessions {
		for pk, c := range se.inflight {
			if now.Sub(c.Request.End) > t.opts.Timeout {
				delete(se.inflight, pk)
				t.stats.RequestsExpired++
				out = append(out, t.done(c, se, nil, fmt.Sprintf("no response within %s", t.opts.Timeout)))
			}
		}
		if len(se.inflight) == 0 && now.Sub(se.seen) > t.opts.IdleTimeout {
			delete(t.sessions, k)
		}
	}
	return out
}

// CloseProcess forgets a process's streams and sessions (it exited); its requests in flight
// come out unanswered.
func (t *Tracker) CloseProcess(pid uint32) []Call {
	for k := range t.streams {
		if k.PID == pid {
			delete(t.streams, k)
		}
	}
	var out []Call
	for k, se := range t.sessions {
		if k.PID != pid {
			continue
		}
		out = t.drain(out, se, "the process exited before a response was seen")
		delete(t.sessions, k)
	}
	return out
}

// CloseSession forgets a session (its pipes or connection closed); its requests in flight come
// out unanswered.
func (t *Tracker) CloseSession(k Key) []Call {
	se := t.sessions[k]
	if se == nil {
		return nil
	}
	delete(t.sessions, k)
	return t.drain(nil, se, "the session ended before a response was seen")
}

func (t *Tracker) drain(out []Call, se *session, problem string) []Call {
	for pk, c := range se.inflight {
		delete(se.inflight, pk)
		out = append(out, t.done(c, se, nil, problem))
	}
	return out
}

func (t *Tracker) evictStream() {
	var oldest streamKey
	var at time.Time
	first := true
	for k, s := range t.streams {
		if first || s.seen.Before(at) {
			oldest, at, first = k, s.seen, false
		}
	}
	delete(t.streams, oldest)
	t.stats.StreamsEvicted++
}

// evictSession forgets one session to make room: one with nothing in flight if there is one
// (it loses no request), else the one seen least recently; ties go to the older session.
func (t *Tracker) evictSession(out []Call) []Call {
	var oldest Key
	var victim *session
	for k, se := range t.sessions {
		if victim == nil || evictsBefore(se, victim) {
			oldest, victim = k, se
		}
	}
	se := victim
	delete(t.sessions, oldest)
	t.stats.SessionsEvicted++
	return t.drain(out, se, "session evicted: too many sessions followed")
}

func evictsBefore(a, b *session) bool {
	if idleA, idleB := len(a.inflight) == 0, len(b.inflight) == 0; idleA != idleB {
		return idleA
	}
	if !a.seen.Equal(b.seen) {
		return a.seen.Before(b.seen)
	}
	return a.created < b.created
}

// InFlight returns the requests of a session waiting for their response.
func (t *Tracker) InFlight(k Key) []Call {
	se := t.sessions[k]
	if se == nil {
		return nil
	}
	out := make([]Call, 0, len(se.inflight))
	for _, c := range se.inflight {
		out = append(out, *c)
	}
	return out
}

// describeRequest reads the request side of the methods a trace cares about.
func describeRequest(c *Call) {
	p := c.Request.Params
	if len(p) == 0 {
		return
	}
	switch c.Method {
	case "tools/call", "prompts/get":
		_ = jsonscan.Members(p, func(key string, raw []byte, whole bool) {
			switch key {
			case "name":
				c.Tool = clip(stringValue(raw, whole), maxName)
			case "arguments":
				c.Arguments = raw[:min(len(raw), maxArguments)]
			}
		})
	case "resources/read":
		_ = jsonscan.Members(p, func(key string, raw []byte, whole bool) {
			if key == "uri" {
				c.URI = clip(stringValue(raw, whole), maxName)
			}
		})
	}
}

func stringValue(raw []byte, whole bool) string {
	if whole {
		return jsonscan.Unquote(raw)
	}
	return jsonscan.UnquotePrefix(raw)
}

// Keys of the _meta members through which the 2026-07-28 protocol (SEP-2575, stateless: the Go
// SDK's server/discover instead of initialize) says on every request and result who speaks.
const (
	metaServerInfo      = "io.modelcontextprotocol/serverInfo"
	metaClientInfo      = "io.modelcontextprotocol/clientInfo"
	metaProtocolVersion = "io.modelcontextprotocol/protocolVersion"
)

// describeResponse reads the response side in one walk over the result, and what it (and the
// request) say about the server into se.
func describeResponse(c *Call, resp *Message, se *session) {
	c.ResultSize = resp.Size
	if resp.Error != nil {
		c.Error, c.IsError = resp.Error, true
		return
	}
	handshake := c.Method == "initialize" || c.Method == "server/discover"
	var s ServerInfo
	_ = jsonscan.Members(c.Request.Params, func(key string, raw []byte, whole bool) {
		switch key {
		case "clientInfo":
			nameVersion(raw, &s.ClientName, &s.ClientVersion)
		case "protocolVersion":
			s.ProtocolVersion = clip(stringValue(raw, whole), maxName)
		case "_meta":
			_ = jsonscan.Members(raw, func(key string, v []byte, whole bool) {
				switch key {
				case metaClientInfo:
					nameVersion(v, &s.ClientName, &s.ClientVersion)
				case metaProtocolVersion:
					s.ProtocolVersion = clip(stringValue(v, whole), maxName)
				}
			})
		}
	})
	_ = jsonscan.Members(resp.Result, func(key string, raw []byte, whole bool) {
		switch key {
		case "protocolVersion":
			if handshake {
				s.ProtocolVersion = clip(stringValue(raw, whole), maxName)
			}
		case "serverInfo":
			if handshake {
				nameVersion(raw, &s.Name, &s.Version)
			}
		case "_meta":
			_ = jsonscan.Members(raw, func(key string, v []byte, whole bool) {
				if key == metaServerInfo {
					nameVersion(v, &s.Name, &s.Version)
				}
			})
		case "isError":
			if c.Method == "tools/call" && whole && string(raw) == "true" {
				c.IsError = true
			}
		case "tools":
			if c.Method == "tools/list" {
				listTools(c, raw)
			}
		}
	})
	// isError follows the content, so a cut result may have it only in the kept tail.
	if c.Method == "tools/call" && resp.Cut && bytes.Contains(resp.tail(), []byte(`"isError":true`)) {
		c.IsError = true
	}
	se.server.update(s)
}

// update takes what a call said about the session's server and client.
func (s *ServerInfo) update(n ServerInfo) {
	if n.Name != "" {
		s.Name, s.Version = n.Name, n.Version
	}
	if n.ClientName != "" {
		s.ClientName, s.ClientVersion = n.ClientName, n.ClientVersion
	}
	if n.ProtocolVersion != "" {
		s.ProtocolVersion = n.ProtocolVersion
	}
}

func listTools(c *Call, raw []byte) {
	err := jsonscan.Elements(raw, func(el []byte, whole bool) {
		if len(c.Tools) >= maxTools {
			c.ToolsCut = true
			return
		}
		var tool Tool
		_ = jsonscan.Members(el, func(key string, v []byte, whole bool) {
			switch key {
			case "name":
				tool.Name = clip(stringValue(v, whole), maxName)
			case "description":
				d := stringValue(v, whole)
				if len(d) > maxDescription || !whole {
					c.ToolsCut = true
				}
				tool.Description = clip(d, maxDescription)
			}
		})
		if tool.Name != "" {
			c.Tools = append(c.Tools, tool)
		}
	})
	if err != nil {
		c.ToolsCut = true
	}
}

func nameVersion(raw []byte, name, version *string) {
	_ = jsonscan.Members(raw, func(key string, v []byte, whole bool) {
		switch key {
		case "name":
			*name = clip(stringValue(v, whole), maxName)
		case "version":
			*version = clip(stringValue(v, whole), maxName)
		}
	})
}

// CloseAll forgets every stream and session (the receiver stops); requests in flight come out
// unanswered.
func (t *Tracker) CloseAll() []Call {
	clear(t.streams)
	var out []Call
	for k, se := range t.sessions {
		out = t.drain(out, se, "the receiver stopped before a response was seen")
		delete(t.sessions, k)
	}
	return out
}
