// Package llm reassembles the plaintext of TLS connections, as the kernel hands it over call by
// call, into HTTP/1.1 and HTTP/2 exchanges, and reads LLM API calls out of them (OpenAI chat completions
// and responses, Anthropic messages): provider, models, token usage, finish reasons and the tool
// calls the model asked for.
//
// The input is whatever the traced program wrote and read: anything can arrive, split anywhere,
// with bytes missing where a call moved more than the capture bound. Everything here is bounded
// (per-connection buffers, header and body sizes, connections, idle time), never panics on bad
// input, and says why when it could not parse something instead of guessing.
package llm

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/andybalholm/brotli"
)

// Direction of a TLS call.
type Direction uint8

const (
	Write Direction = 1 // the traced program sent (a client's request)
	Read  Direction = 2 // the traced program received (a client's response)
)

// Options bound the Tracker.
type Options struct {
	MaxBuffer int // bytes buffered per connection and direction (HTTP/2: per stream); default 1 MiB
	// MaxTotalBuffer bounds the message bytes held across all connections (bodies, headers,
	// HTTP/2 frames being assembled and header compression tables): once they are reached,
	// bodies are cut, and a connection whose headers or frames would pass it gives up what it
	// holds; default 64 MiB.
	MaxTotalBuffer int
	MaxConnections int           // connections tracked at once; default 4096
	IdleTimeout    time.Duration // a connection without data this long is forgotten; default 2 min
}

// Key identifies a connection: the process and the TLS library's connection object.
type Key struct {
	PID  uint32
	Conn uint64
}

// Message is one parsed HTTP/1.x or HTTP/2 request or response.
type Message struct {
	Method, Target string // request
	Status         int    // response
	Proto          string
	Header         textproto.MIMEHeader
	// Body is the decoded body (de-chunked, decompressed), possibly incomplete; Complete says
	// whether it is all there. WireSize is the body's size on the wire as far as seen.
	Body     []byte
	Complete bool
	WireSize int64
	// Problem says why the body is incomplete or could not be decoded; empty when it is fine.
	Problem string
	Start   time.Time // first byte seen
	End     time.Time // last byte seen
	// Meta is what the caller attached to the call that carried the message's first byte.
	Meta any
	// gaps: where body bytes are missing before bytes that were captured after them.
	gaps gaps
	// Joined: an HTTP/2 connection the receiver joined after its preface; HiddenFields: the
	// header fields of this message it could not decode there, taken from the HPACK table as
	// it was before the join (h2join.go).
	Joined       bool
	HiddenFields int
	// head is what the start line and the header fields kept hold, counted as HPACK counts a
	// header list (32 bytes more per field, for what a field costs besides its bytes), and
	// messageOverhead.
	head int
}

// messageOverhead is what a Message costs besides its bytes (the struct, its header map):
// thousands of minimal requests waiting for their responses hold that much each (measured:
// about 270 bytes for "GET / HTTP/1.1" on amd64).
const messageOverhead = 256

// held is the bytes a message holds while the Tracker keeps it.
func (m *Message) held() int { return m.head + len(m.Body) }

// Exchange is a request and its response (either may be missing), or a connection the Tracker
// could not parse (Unparsed set; then only the sizes are known).
type Exchange struct {
	Key      Key
	Request  *Message
	Response *Message
	Unparsed string // "not HTTP/1.x", "HTTP/2: bytes missing where frames could not be followed", ...
	// ResponseProblem says why a request has no response, when the Tracker knows.
	ResponseProblem string
	// Bytes seen per direction for an unparsed connection.
	BytesWritten, BytesRead int64
	Meta                    any // Meta of the connection's first call (unparsed connections)
}

// Tracker follows the TLS connections of all traced processes. Not safe for concurrent use.
type Tracker struct {
	opts  Options
	conns map[Key]*conn
	// held: message bytes held across connections (the sum of their conn.held).
	held  int64
	lim   bufLimit
	stats Stats
}

// Stats counts what the Tracker's bounds cut or gave up.
type Stats struct {
	// ConnectionsEvicted: connections forgotten because MaxConnections were tracked (what
	// they had pending came out, marked).
	ConnectionsEvicted uint64
	// BodiesCut: bodies cut because MaxTotalBuffer bytes were held across connections.
	BodiesCut uint64
	// RequestsGivenUp: HTTP/1.1 requests that came out without their response because more
	// than maxPending were waiting on one connection.
	RequestsGivenUp uint64
	// ConnectionsCut: connections whose messages in progress and waiting came out at once,
	// marked, because what they held (headers, HTTP/2 frames being assembled) would have
	// taken the bytes held across connections over MaxTotalBuffer.
	ConnectionsCut uint64
	// BodiesOverBuffer: bodies longer than MaxBuffer, of which only the beginning was kept.
	BodiesOverBuffer uint64
	// DecodedCut: compressed bodies that decompressed to more than maxDecoded bytes (or than
	// what MaxTotalBuffer had left): only the beginning was kept.
	DecodedCut uint64
	// HeadersCut: messages whose header list passed maxHeaderBytes (the fields after were not
	// kept) or whose headers never ended within it (the message was given up).
	HeadersCut uint64
	// StreamsGivenUp: HTTP/2 streams that came out unfinished because maxH2Streams were open
	// on their connection.
	StreamsGivenUp uint64
}

// bufLimit is what a call may keep: MaxBuffer per body, and what is left of MaxTotalBuffer.
type bufLimit struct {
	maxBuf int
	left   int
	stats  *Stats // the Tracker's
}

type conn struct {
	key      Key
	out, in  stream
	pending  []*Message // requests sent, waiting for their responses (pipelining)
	unparsed string
	meta     any
	bytes    [3]int64
	held     int64 // message bytes held, as of the last call (Tracker.held's share)
	last     time.Time
	reported bool
	// lostCalls: calls seen before any message could be parsed (attached mid-connection).
	lostCalls int
	// preface: bytes of the HTTP/2 client preface written so far; h2 is set once it is complete.
	preface int
	h2      *h2conn
	// orphans: HTTP/1.1 requests that came out without their responses (given up while
	// waiting): their responses, still to come, answer no later request.
	orphans int
}

// maxLostCalls: a connection whose first calls carry no HTTP/1.x message start is taken for
// another protocol after this many.
const maxLostCalls = 8

// maxPending bounds the HTTP/1.1 requests waiting for their responses on one connection
// (pipelining; clients send one at a time): beyond, the oldest comes out without a response.
const maxPending = 256

// NewTracker returns an empty Tracker.
func NewTracker(opts Options) *Tracker {
	if opts.MaxBuffer <= 0 {
		opts.MaxBuffer = 1 << 20
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = 4096
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 2 * time.Minute
	}
	if opts.MaxTotalBuffer <= 0 {
		opts.MaxTotalBuffer = 64 << 20
	}
	t := &Tracker{opts: opts, conns: map[Key]*conn{}}
	t.lim = bufLimit{maxBuf: opts.MaxBuffer, stats: &t.stats}
	return t
}

// Connections is the number of connections tracked.
func (t *Tracker) Connections() int { return len(t.conns) }

// Buffered is the number of message bytes held across connections: bodies and headers being
// reassembled, and requests waiting for their responses.
func (t *Tracker) Buffered() int64 { return t.held }

// Stats returns what the bounds cut or gave up so far.
func (t *Tracker) Stats() Stats { return t.stats }

// Data feeds one TLS call: data is what was captured of the call's total bytes (the rest is
// missing). It returns the exchanges completed by it.
func (t *Tracker) Data(key Key, dir Direction, data []byte, total int, at time.Time, meta any) []Exchange {
	return t.DataTail(key, dir, data, nil, total, at, meta)
}

// DataTail feeds one TLS call of which the first bytes (head) and the last bytes (tail) were
// captured; the total-len(head)-len(tail) bytes between were not. Where the gap falls inside a
// message body, the tail is kept as the body's end and the message says so; elsewhere the tail
// cannot be placed and is dropped (the bytes are then missing as with Data).
func (t *Tracker) DataTail(key Key, dir Direction, head, tail []byte, total int, at time.Time, meta any) []Exchange {
	data := head
	if len(head)+len(tail) > total {
		tail = nil // more than the call moved: the tail cannot be where it says
	}
	var out []Exchange
	c := t.conns[key]
	if c == nil {
		if len(t.conns) >= t.opts.MaxConnections {
			out = t.evictOldest()
		}
		c = &conn{key: key, meta: meta}
		c.out.dir, c.in.dir = Write, Read
		c.out.lim, c.in.lim = &t.lim, &t.lim
		t.conns[key] = c
	}
	t.room()
	out = append(out, t.data(c, dir, data, tail, total, at, meta)...)
	return append(out, t.settle(c)...)
}

// room sets what the next call may keep of MaxTotalBuffer.
func (t *Tracker) room() { t.lim.left = t.opts.MaxTotalBuffer - int(t.held) }

// errTotalBuffer is the problem of what a connection gave up to stay within MaxTotalBuffer.
const errTotalBuffer = "given up: the buffer for all connections was full"

// settle brings Tracker.held up to date with what c holds after a call. Bodies are cut as they
// come to stay within MaxTotalBuffer; what else a call may make c hold (a message's headers,
// HTTP/2 frames being assembled) is known once parsed: when it takes the total over the
// bound, c gives up everything it holds, so that the bound holds after every call.
func (t *Tracker) settle(c *conn) []Exchange {
	t.account(c)
	if t.held <= int64(t.opts.MaxTotalBuffer) {
		return nil
	}
	t.stats.ConnectionsCut++
	out := c.shed()
	t.account(c)
	return out
}

// account brings Tracker.held up to date with what c holds.
func (t *Tracker) account(c *conn) {
	n := c.size()
	t.held += n - c.held
	c.held = n
}

// shed gives up what c holds: its messages come out marked, and each direction waits for
// the next message to start (an HTTP/2 connection cannot be followed any more).
func (c *conn) shed() []Exchange {
	if c.h2 != nil {
		return c.h2Unparsed("HTTP/2: " + errTotalBuffer)
	}
	out := c.drain(errTotalBuffer)
	for _, ex := range out {
		if ex.Request != nil && ex.Response == nil {
			c.orphans++ // its response, if it comes, is skipped
		}
	}
	c.out.lose("")
	c.in.lose("")
	c.out.msg, c.in.msg = nil, nil
	return out
}

// forget removes c; what it had pending must have been taken out.
func (t *Tracker) forget(c *conn) {
	delete(t.conns, c.key)
	t.held -= c.held
	c.held = 0
}

// size is the message bytes c holds.
func (c *conn) size() int64 {
	n := c.out.size() + c.in.size()
	for _, m := range c.pending {
		n += m.held()
	}
	if c.h2 != nil {
		n += c.h2.size()
	}
	return int64(n)
}

func (t *Tracker) data(c *conn, dir Direction, data, tail []byte, total int, at time.Time, meta any) []Exchange {
	key := c.key
	c.last = at
	if dir == Write || dir == Read {
		c.bytes[dir] += int64(total)
	}
	if c.unparsed != "" {
		return nil
	}
	if c.h2 != nil {
		return c.feedH2(dir, data, tail, total-len(data)-len(tail), at, meta)
	}
	if c.out.msgs == 0 && c.in.msgs == 0 {
		fresh := len(c.out.buf) == 0 && len(c.in.buf) == 0 && c.out.state == stStart && c.in.state == stStart
		// A client preface (maybe in pieces): the connection's frames are decoded from there on.
		if dir == Write && (fresh || c.lostCalls > 0 || c.preface > 0) {
			var p int
			switch data, total, p = c.matchPreface(data, total); p {
			case prefaceMore:
				return nil
			case prefaceDone:
				c.h2 = newH2Conn(key, &t.lim)
				if len(data)+len(tail) > total {
					tail = nil // the preface was in the tail's bytes
				}
				return c.feedH2(dir, data, tail, total-len(data)-len(tail), at, meta)
			case prefaceLost:
				return c.h2Unparsed(errFramesLost)
			}
		}
		// HTTP/2 frames on a connection whose preface went by before the receiver saw it.
		if (fresh || c.lostCalls > 0) && c.preface == 0 && len(tail) == 0 && joinable(dir, data, total) {
			c.h2 = newJoinedH2Conn(key, &t.lim)
			return c.feedH2(dir, data, nil, total-len(data), at, meta)
		}
		reason := ""
		if fresh || c.lostCalls > 0 {
			reason = sniff(dir, data)
		}
		switch {
		case reason == "":
			c.lostCalls = 0
		case reason == serverSide || strings.HasPrefix(reason, "HTTP/2"):
			c.unparsed = reason
		case c.lostCalls < maxLostCalls:
			// Maybe the middle of a message (the receiver started during a keep-alive
			// connection): wait for a message to start before calling the connection unparsable.
			c.lostCalls++
			c.out.state, c.in.state = stLost, stLost
			c.out.buf, c.in.buf = nil, nil
			if startsRequest(data) || bytes.HasPrefix(data, []byte("HTTP/1.")) {
				c.lostCalls = 0
			} else {
				return nil
			}
		default:
			c.unparsed = reason
		}
		if c.unparsed != "" {
			if c.unparsed == serverSide {
				return nil // the program is the server: its requests are not LLM calls it makes
			}
			if !c.reported {
				c.reported = true
				return []Exchange{{Key: key, Unparsed: c.unparsed, BytesWritten: c.bytes[Write], BytesRead: c.bytes[Read], Meta: c.meta}}
			}
			return nil
		}
	}
	s := &c.out
	if dir == Read {
		s = &c.in
	}
	msgs := s.feed(data, total-len(data)-len(tail), at, meta, &t.lim)
	if len(tail) > 0 {
		msgs = append(msgs, s.feedTail(tail, at, meta, &t.lim)...)
	}
	if dir == Read {
		return c.pairResponses(msgs)
	}
	var out []Exchange
	for _, m := range msgs {
		// A new request: a response still waiting for its end (no length, read until close)
		// is as complete as it will get.
		out = append(out, c.closeOpenResponse("")...)
		if len(c.pending) >= maxPending {
			out = append(out, Exchange{Key: key, Request: c.pending[0], ResponseProblem: tooManyPending})
			c.pending = c.pending[1:]
			c.orphans++
			t.stats.RequestsGivenUp++
		}
		c.pending = append(c.pending, m)
	}
	return out
}

var tooManyPending = fmt.Sprintf("more than %d requests waiting for their responses on the connection: the oldest was given up", maxPending)

// lostResponse is ResponseProblem for a response read by a call the receiver did not see.
const lostResponse = "response not captured: it was read by a call already in flight when the probes were attached"

// LostRead reports a read of n bytes on the connection whose data was not seen (the call was in
// flight when the probes were attached) and that returned at `at`. A response lost that way
// answers the oldest request sent before it: that request is returned without a response, so
// that the responses that follow are paired with their own requests, and the stream waits for
// the next response to start.
func (t *Tracker) LostRead(key Key, n int, at time.Time) []Exchange {
	c := t.conns[key]
	if c == nil || c.unparsed != "" || n <= 0 {
		return nil
	}
	t.room()
	out := t.lostRead(c, n, at)
	return append(out, t.settle(c)...)
}

func (t *Tracker) lostRead(c *conn, n int, at time.Time) []Exchange {
	key := c.key
	c.last = at
	c.bytes[Read] += int64(n)
	if c.h2 != nil {
		return c.feedH2(Read, nil, nil, n, at, nil)
	}
	s := &c.in
	if s.state != stStart || len(s.buf) > 0 {
		return c.pairResponses(s.skip(int64(n), at))
	}
	s.lose("")
	if c.orphans > 0 {
		c.orphans-- // the response of a request already given up
		return nil
	}
	if len(c.pending) == 0 || c.pending[0].Start.After(at) {
		return nil
	}
	req := c.pending[0]
	c.pending = c.pending[1:]
	return []Exchange{{Key: key, Request: req, ResponseProblem: lostResponse}}
}

// answered takes the request a response answers: the oldest waiting. orphan: the response
// answers a request that already came out without it (it is then dropped: what it answered
// was reported, and counted, when that request was given up).
func (c *conn) answered() (req *Message, orphan bool) {
	if c.orphans > 0 {
		c.orphans--
		return nil, true
	}
	if len(c.pending) > 0 {
		req, c.pending = c.pending[0], c.pending[1:]
	}
	return req, false
}

// pairResponses pairs completed responses with the oldest requests waiting for them.
func (c *conn) pairResponses(msgs []*Message) []Exchange {
	var out []Exchange
	for _, m := range msgs {
		if m.Status/100 == 1 {
			continue // 100 Continue: the real response follows
		}
		if req, orphan := c.answered(); !orphan {
			out = append(out, Exchange{Key: c.key, Request: req, Response: m})
		}
	}
	return out
}

// closeOpenResponse finishes a response being read until the connection closes.
func (c *conn) closeOpenResponse(problem string) []Exchange {
	m := c.in.finishOpen(problem)
	if m == nil {
		return nil
	}
	if req, orphan := c.answered(); !orphan {
		return []Exchange{{Key: c.key, Request: req, Response: m}}
	}
	return nil
}

// Close reports a connection's end (the process exited): what is pending is returned.
func (t *Tracker) Close(key Key) []Exchange {
	c := t.conns[key]
	if c == nil {
		return nil
	}
	t.room()
	t.forget(c)
	return c.drain("connection ended before the response was complete")
}

// The calls that end many connections at once take what MaxTotalBuffer has left when they
// start (room) once, not again as each connection releases what it held: what they return is
// in memory all together, and bodies decompressed as their messages come out (gzip: a
// thousandfold) must fit in it.

// CloseProcess ends every connection of a process.
func (t *Tracker) CloseProcess(pid uint32) []Exchange {
	var out []Exchange
	t.room()
	for k, c := range t.conns {
		if k.PID == pid {
			t.forget(c)
			out = append(out, c.drain("connection ended before the response was complete")...)
		}
	}
	return out
}

// Expire forgets connections idle since before now-IdleTimeout and returns what they had pending.
func (t *Tracker) Expire(now time.Time) []Exchange {
	var out []Exchange
	t.room()
	for _, c := range t.conns {
		if now.Sub(c.last) > t.opts.IdleTimeout {
			t.forget(c)
			out = append(out, c.drain("connection idle before the response was complete")...)
		}
	}
	return out
}

// Flush completes responses that are read until the connection closes and have been idle for
// at least quiet: an LLM API answers with a length or chunks, so this is rare.
func (t *Tracker) Flush(now time.Time, quiet time.Duration) []Exchange {
	var out []Exchange
	t.room()
	for _, c := range t.conns {
		if c.in.state == stBodyUntilClose && now.Sub(c.last) >= quiet {
			out = append(out, c.closeOpenResponse("")...)
			t.account(c)
		}
	}
	return out
}

func (c *conn) drain(problem string) []Exchange {
	out := c.closeOpenResponse("")
	if m := c.in.partial(problem); m != nil {
		if req, orphan := c.answered(); !orphan {
			out = append(out, Exchange{Key: c.key, Request: req, Response: m})
		}
	}
	for _, req := range c.pending {
		out = append(out, Exchange{Key: c.key, Request: req, ResponseProblem: problem})
	}
	c.pending = nil
	// A request still being sent: what was seen of it.
	if m := c.out.partial(problem); m != nil {
		out = append(out, Exchange{Key: c.key, Request: m, ResponseProblem: problem})
	}
	if c.h2 != nil {
		out = append(out, c.h2.drain(problem)...)
	}
	return out
}

// evictOldest forgets the connection idle the longest and returns what it had pending.
func (t *Tracker) evictOldest() []Exchange {
	var oldest *conn
	for _, c := range t.conns {
		if oldest == nil || c.last.Before(oldest.last) {
			oldest = c
		}
	}
	if oldest == nil {
		return nil
	}
	t.forget(oldest)
	t.room()
	t.stats.ConnectionsEvicted++
	return oldest.drain(fmt.Sprintf("connection forgotten before the response was complete: more than %d connections tracked", t.opts.MaxConnections))
}

var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// serverSide: the first bytes of a connection were read, and are a request.
const serverSide = "server side (not decoded)"

// sniff looks at a connection's first bytes: "" when they may be HTTP/1.x.
func sniff(dir Direction, data []byte) string {
	if len(data) == 0 {
		return ""
	}
	n := min(len(data), len(h2Preface))
	if dir == Write && bytes.Equal(data[:n], h2Preface[:n]) && n >= 3 {
		// A preface is decoded (matchPreface) before this is asked: here it can only be one
		// that never completed.
		return "HTTP/2: incomplete client preface"
	}
	if dir == Read {
		if bytes.HasPrefix(data, []byte("HTTP/1.")) || (len(data) < 7 && bytes.HasPrefix([]byte("HTTP/1."), data)) {
			return ""
		}
		if startsRequest(data) || bytes.Equal(data[:n], h2Preface[:n]) {
			return serverSide
		}
		return "not HTTP/1.x"
	}
	for i, b := range data {
		if b == ' ' && i > 0 {
			return ""
		}
		if b < 'A' || b > 'Z' || i > 16 {
			return "not HTTP/1.x"
		}
	}
	return ""
}

// startsRequest reports whether data begins with "METHOD /target HTTP/1.".
func startsRequest(data []byte) bool {
	line, _, _ := bytes.Cut(data, []byte("\r\n"))
	parts := bytes.SplitN(line, []byte(" "), 3)
	if len(parts) != 3 || len(parts[0]) == 0 || !bytes.HasPrefix(parts[2], []byte("HTTP/1.")) {
		return false
	}
	for _, b := range parts[0] {
		if b < 'A' || b > 'Z' {
			return false
		}
	}
	return true
}

// Stream states.
const (
	stStart = iota
	stBody
	stChunkSize
	stChunkData
	stChunkCRLF
	stTrailers
	stBodyUntilClose
	stLost // bytes are missing where they cannot be skipped: wait for a new message
)

// maxHeaderBytes bounds a message's start line and headers.
const maxHeaderBytes = 64 << 10

type stream struct {
	dir       Direction
	lim       *bufLimit // the Tracker's
	state     int
	buf       []byte // unparsed bytes
	msg       *Message
	body      []byte // raw (encoded) body bytes kept
	remaining int64  // bytes left in the body or current chunk
	bodyLost  bool   // some body bytes are missing or were not kept
	gaps      gaps   // where bytes of the body are missing, for a body kept with its end
	msgs      int
}

// gaps locates the bytes missing inside a body whose end was captured after them (a long write
// read as head and tail): the body is kept as head, tail, head, tail... and a field is looked
// for in the first part or the last one, never across a gap.
type gaps struct {
	n            int // gaps; 0: the body has none
	first, after int // offset in the body of the first gap, and where the part after the last one starts
}

func (s *stream) reset() {
	s.state, s.buf, s.msg, s.body, s.remaining, s.bodyLost, s.gaps = stStart, nil, nil, nil, 0, false, gaps{}
}

// size is the message bytes s holds.
func (s *stream) size() int {
	n := len(s.buf) + len(s.body)
	if s.msg != nil {
		n += s.msg.head
	}
	return n
}

// feed appends one call's bytes (missing: bytes of the call that were not captured, after data)
// and returns the messages it completed.
func (s *stream) feed(data []byte, missing int, at time.Time, meta any, lim *bufLimit) []*Message {
	var done []*Message
	if s.state == stLost {
		// Resynchronise at the next call that starts a message; the message whose framing
		// was lost comes out first, as far as it was seen.
		if (s.dir == Read && bytes.HasPrefix(data, []byte("HTTP/1."))) || (s.dir == Write && startsRequest(data)) {
			if m := s.partial("bytes missing where the message's framing could not be followed"); m != nil {
				done = append(done, m)
			}
			s.reset()
		} else {
			return nil
		}
	}
	if s.msg != nil {
		s.msg.End = at
	}
	s.buf = append(s.buf, data...)
	for {
		progressed, m := s.step(at, meta, lim)
		if m != nil {
			done = append(done, m)
		}
		if !progressed {
			break
		}
	}
	if missing > 0 {
		done = append(done, s.skip(int64(missing), at)...)
	}
	if len(s.buf) > lim.maxBuf {
		// A header that never ends, or a stream we cannot follow.
		s.lose("headers larger than the buffer")
		lim.stats.HeadersCut++
	}
	if cap(s.buf) > 2*len(s.buf)+smallBuf {
		// What is left of a large call: not worth keeping its whole array alive for.
		s.buf = bytes.Clone(s.buf)
	}
	return done
}

// smallBuf: a buffer's capacity worth keeping for reuse.
const smallBuf = 4096

// skip accounts for bytes that were not captured.
func (s *stream) skip(n int64, at time.Time) []*Message {
	switch s.state {
	case stBody:
		if s.msg != nil {
			s.msg.WireSize += min(n, s.remaining)
		}
		s.bodyLost = true
		if n >= s.remaining {
			n -= s.remaining
			s.remaining = 0
			m := s.finish(at, "body larger than the capture bound: only its beginning was seen")
			if n > 0 {
				s.lose("")
			}
			return []*Message{m}
		}
		s.remaining -= n
		return nil
	case stBodyUntilClose:
		if s.msg != nil {
			s.msg.WireSize += n
		}
		s.bodyLost = true
		return nil
	case stChunkData:
		if n < s.remaining {
			s.remaining -= n
			s.bodyLost = true
			if s.msg != nil {
				s.msg.WireSize += n
			}
			return nil
		}
	}
	s.lose("bytes missing (over the capture bound) where the message's framing could not be followed")
	return nil
}

// errHeadTail is the problem of a body that was captured in part on both sides of a gap.
const errHeadTail = "body larger than the capture bound: its beginning and its end were seen, not the bytes between"

// markGap notes that the body's bytes kept from now on come after missing ones.
func (s *stream) markGap() {
	if s.msg == nil {
		return
	}
	if s.gaps.n == 0 {
		s.gaps.first = len(s.body)
	}
	s.gaps.n++
	s.gaps.after = len(s.body)
	if s.msg.Problem == "" || s.msg.Problem == errCapturedPart {
		s.msg.Problem = errHeadTail
	}
}

// feedTail feeds the last bytes of a call whose bytes before them were missing (skipped by
// feed): inside a body they are its continuation; anywhere else they cannot be placed.
func (s *stream) feedTail(tail []byte, at time.Time, meta any, lim *bufLimit) []*Message {
	switch s.state {
	case stBody, stChunkData, stBodyUntilClose:
		s.markGap()
		return s.feed(tail, 0, at, meta, lim)
	}
	return nil
}

func (s *stream) lose(problem string) {
	s.state = stLost
	s.buf = nil
	if s.msg != nil && problem != "" {
		s.msg.Problem = problem
	}
}

// step parses what it can of s.buf; it reports whether it consumed anything, and returns a
// message when one ended (complete or given up).
func (s *stream) step(at time.Time, meta any, lim *bufLimit) (bool, *Message) {
	switch s.state {
	case stStart:
		return s.stepHead(at, meta, lim)
	case stBody:
		if len(s.buf) == 0 {
			return false, nil
		}
		if s.takeBody(lim) {
			return true, s.finish(at, "")
		}
		return true, nil
	case stBodyUntilClose:
		if len(s.buf) == 0 {
			return false, nil
		}
		s.keep(s.buf, lim)
		s.buf = nil
		return true, nil
	case stChunkSize:
		return s.stepChunkSize(at)
	case stChunkData:
		if len(s.buf) == 0 {
			return false, nil
		}
		if s.takeBody(lim) {
			s.state = stChunkCRLF
		}
		return true, nil
	case stChunkCRLF:
		return s.stepChunkCRLF(at)
	case stTrailers:
		end := bytes.Index(s.buf, []byte("\r\n"))
		if end < 0 {
			return false, nil
		}
		s.buf = s.buf[end+2:]
		if end == 0 {
			return true, s.finish(at, "")
		}
		return true, nil // a trailer line
	}
	return false, nil
}

// stepHead parses a message's start line and header fields once they are all there, and
// chooses how its body is framed.
func (s *stream) stepHead(at time.Time, meta any, lim *bufLimit) (bool, *Message) {
	// Skip blank lines between messages.
	for len(s.buf) >= 2 && s.buf[0] == '\r' && s.buf[1] == '\n' {
		s.buf = s.buf[2:]
	}
	end := bytes.Index(s.buf, []byte("\r\n\r\n"))
	if end < 0 {
		if len(s.buf) > maxHeaderBytes {
			s.lose("headers larger than 64 KiB")
			lim.stats.HeadersCut++
		}
		return false, nil
	}
	head := s.buf[:end]
	s.buf = s.buf[end+4:]
	m, err := parseHead(s.dir, head)
	if err != nil {
		s.lose("")
		return false, &Message{Problem: err.Error(), Start: at, End: at, Meta: meta, head: messageOverhead}
	}
	if m.Problem != "" {
		lim.stats.HeadersCut++ // the header list was cut
	}
	lim.left -= m.head // the bodies that follow have that much less room
	m.Start, m.End, m.Meta = at, at, meta
	s.msg, s.body, s.bodyLost = m, nil, false
	s.msgs++
	return s.frameBody(at)
}

// frameBody sets the state that reads the body of s.msg, whose header fields were just
// parsed: chunked, a Content-Length, until the connection closes (a response without
// either), or none.
func (s *stream) frameBody(at time.Time) (bool, *Message) {
	m := s.msg
	te := strings.ToLower(m.Header.Get("Transfer-Encoding"))
	cl := m.Header.Get("Content-Length")
	switch {
	case strings.Contains(te, "chunked"):
		s.state = stChunkSize
	case cl != "":
		n, err := strconv.ParseInt(strings.TrimSpace(cl), 10, 64)
		if err != nil || n < 0 {
			m.Problem = "invalid Content-Length " + strconv.Quote(cl)
			s.lose("")
			s.msg = nil
			return false, m
		}
		s.remaining = n
		s.state = stBody
		if n == 0 {
			return true, s.finish(at, "")
		}
	case s.dir == Read && !noBody(m):
		s.state = stBodyUntilClose
	default:
		return true, s.finish(at, "")
	}
	return true, nil
}

// takeBody keeps what s.buf holds of the s.remaining bytes of a body or chunk; it reports
// whether they are all there.
func (s *stream) takeBody(lim *bufLimit) bool {
	n := min(int64(len(s.buf)), s.remaining)
	s.keep(s.buf[:n], lim)
	s.buf = s.buf[n:]
	s.remaining -= n
	return s.remaining == 0
}

// stepChunkSize parses a chunk's size line; a size of 0 ends the chunks.
func (s *stream) stepChunkSize(at time.Time) (bool, *Message) {
	end := bytes.Index(s.buf, []byte("\r\n"))
	if end < 0 {
		if len(s.buf) > 1024 {
			s.lose("malformed chunk size line")
		}
		return false, nil
	}
	line := string(s.buf[:end])
	if i := strings.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
	s.buf = s.buf[end+2:]
	if err != nil || n < 0 {
		return false, s.giveUp(at, "malformed chunk size "+strconv.Quote(line))
	}
	s.msg.WireSize += int64(end + 2)
	if n == 0 {
		s.state = stTrailers
		return true, nil
	}
	s.remaining = n
	s.state = stChunkData
	return true, nil
}

// stepChunkCRLF checks the CRLF after a chunk's data.
func (s *stream) stepChunkCRLF(at time.Time) (bool, *Message) {
	if len(s.buf) < 2 {
		return false, nil
	}
	if s.buf[0] != '\r' || s.buf[1] != '\n' {
		return false, s.giveUp(at, "malformed chunk: no CRLF after the data")
	}
	s.buf = s.buf[2:]
	s.msg.WireSize += 2
	s.state = stChunkSize
	return true, nil
}

// giveUp ends the message being read with problem and loses the stream (its framing can no
// longer be followed); it returns the message.
func (s *stream) giveUp(at time.Time, problem string) *Message {
	m := s.msg
	s.lose(problem)
	s.msg, s.body = nil, nil
	m.End = at
	return m
}

func noBody(m *Message) bool {
	return m.Status/100 == 1 || m.Status == 204 || m.Status == 304
}

// keep stores body bytes up to the buffer bounds: lim.maxBuf for the body, lim.left for all
// connections together.
func (s *stream) keep(b []byte, lim *bufLimit) {
	s.msg.WireSize += int64(len(b))
	room := lim.maxBuf - len(s.body)
	if room < len(b) {
		if !s.bodyLost {
			s.msg.Problem = fmt.Sprintf("body larger than the %d-byte buffer: only its beginning was kept", lim.maxBuf)
			lim.stats.BodiesOverBuffer++
		}
		s.bodyLost = true
		b = b[:max(room, 0)]
	}
	if lim.left < len(b) {
		if !s.bodyLost {
			s.msg.Problem = fmt.Sprintf("body cut after %d bytes: the buffer for all connections was full", len(s.body)+max(lim.left, 0))
			lim.stats.BodiesCut++
		}
		s.bodyLost = true
		b = b[:max(lim.left, 0)]
	}
	s.body = append(s.body, b...)
	lim.left -= len(b)
}

func (s *stream) finish(at time.Time, problem string) *Message {
	m := s.msg
	m.End = at
	if problem != "" && m.Problem == "" {
		m.Problem = problem
	}
	m.Complete = !s.bodyLost
	m.Body = s.body
	m.gaps = s.gaps
	if m.Complete || len(m.Body) > 0 {
		decode(m, s.lim)
	}
	s.msg, s.body, s.bodyLost, s.remaining, s.gaps = nil, nil, false, 0, gaps{}
	s.state = stStart
	return m
}

// finishOpen completes a response read until close.
func (s *stream) finishOpen(problem string) *Message {
	if s.state != stBodyUntilClose || s.msg == nil {
		return nil
	}
	return s.finish(s.msg.End, problem)
}

// partial returns the message in progress, marked incomplete.
func (s *stream) partial(problem string) *Message {
	if s.msg == nil {
		return nil
	}
	s.bodyLost = true
	return s.finish(s.msg.End, problem)
}

// maxDecoded bounds a decompressed body: a few kilobytes of gzip can stand for gigabytes.
const maxDecoded = 4 << 20

// decode undoes Content-Encoding, bounded to maxDecoded and to what lim has left (nil: no
// total bound). The decoded body replaces the encoded one, whose room it may take.
func decode(m *Message, lim *bufLimit) {
	enc := strings.ToLower(strings.TrimSpace(m.Header.Get("Content-Encoding")))
	if enc == "" || enc == "identity" {
		return
	}
	var r io.Reader
	var err error
	switch enc {
	case "gzip", "x-gzip":
		r, err = gzip.NewReader(bytes.NewReader(m.Body))
	case "deflate":
		r, err = zlib.NewReader(bytes.NewReader(m.Body))
	case "br":
		// The decoder's window is at most 16 MiB (large windows are not accepted): a bound on
		// what one hostile header can make it allocate, whatever the body claims.
		r = brotli.NewReader(bytes.NewReader(m.Body))
	default:
		m.Problem = "content encoding " + strconv.Quote(enc) + " is not decoded"
		m.Complete = false
		m.Body = nil
		return
	}
	if err != nil {
		m.Problem = enc + ": " + err.Error()
		m.Complete = false
		m.Body = nil
		return
	}
	limit := maxDecoded
	if lim != nil {
		limit = min(limit, len(m.Body)+max(lim.left, 0))
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if len(out) > limit {
		out = out[:limit]
		switch {
		case limit == maxDecoded:
			err = fmt.Errorf("decompressed body over %d bytes: only its beginning was kept", maxDecoded)
			if lim != nil {
				lim.stats.DecodedCut++
			}
		default:
			err = fmt.Errorf("decompressed body cut after %d bytes: the buffer for all connections was full", limit)
			lim.stats.BodiesCut++
		}
	}
	if lim != nil {
		lim.left -= len(out) - len(m.Body)
	}
	if err != nil {
		if !errors.Is(err, io.ErrUnexpectedEOF) || m.Complete {
			m.Problem = enc + ": " + err.Error()
		}
		m.Complete = false
	}
	m.Body = out
}

// parseHead parses a start line and headers (without the blank line).
//
// The head is cut in place (strings.Cut), not split into slices of lines and words first: it is
// parsed for every message of every traced connection.
func parseHead(dir Direction, head []byte) (*Message, error) {
	first, rest, more := strings.Cut(string(head), "\r\n")
	m := &Message{Header: textproto.MIMEHeader{}}
	// The start line's first two words and the rest (strings.SplitN(first, " ", 3)).
	w0, after, one := strings.Cut(first, " ")
	w1, w2, two := strings.Cut(after, " ")
	if dir == Write {
		if !two || !strings.HasPrefix(w2, "HTTP/1.") || w0 == "" {
			return nil, fmt.Errorf("not an HTTP/1.x request line: %.60q", first)
		}
		m.Method, m.Target, m.Proto = w0, w1, w2
	} else {
		if !one || !strings.HasPrefix(w0, "HTTP/1.") {
			return nil, fmt.Errorf("not an HTTP/1.x status line: %.60q", first)
		}
		code, err := strconv.Atoi(w1)
		if err != nil || code < 100 || code > 999 {
			return nil, fmt.Errorf("invalid status code %.10q", w1)
		}
		m.Proto, m.Status = w0, code
	}
	// The fields are counted as HPACK counts a header list, so that many tiny fields (each a
	// map entry and two strings) weigh what they cost; past maxHeaderBytes they are not kept.
	// The fields kept are substrings of the head: it stays held whole.
	m.head = messageOverhead + len(head)
	list := 0
	for more {
		var l string
		l, rest, more = strings.Cut(rest, "\r\n")
		k, v, ok := strings.Cut(l, ":")
		if !ok || k == "" {
			continue // tolerate junk header lines
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if list += len(k) + len(v) + fieldOverhead; list > maxHeaderBytes {
			m.Problem = "header list over 64 KiB: the fields after were not kept"
			break
		}
		m.Header.Add(textproto.CanonicalMIMEHeaderKey(k), v)
		m.head += fieldOverhead
	}
	return m, nil
}

// fieldOverhead is what a header field costs besides its name and value (RFC 7541 4.1).
const fieldOverhead = 32
