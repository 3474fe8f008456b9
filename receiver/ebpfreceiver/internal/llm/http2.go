package llm

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/textproto"
	"slices"
	"strconv"
	"time"

	"golang.org/x/net/http2/hpack"
)

// HTTP/2 (RFC 9113) as the traced program speaks it when it is the client: it writes the
// preface and its frames, and reads the server's. Both directions are followed frame by frame
// from the preface on, because HPACK makes every header block depend on all those before it in
// the same direction. So only connections whose preface was seen are decoded (one joined midway
// is left to the HTTP/1.x sniffing, which gives up on it), and one whose frame boundaries or
// header blocks were not all captured cannot be followed any more and becomes unparsed.

const (
	frameHeaderLen = 9
	// maxH2Streams bounds the streams followed at once on a connection; servers advertise 100
	// to 250 concurrent streams.
	maxH2Streams = 256
	// defaultMaxFrame is SETTINGS_MAX_FRAME_SIZE until the peer says otherwise; maxFrameLimit
	// is the largest a peer may say (2^24-1, the most a frame header can carry).
	defaultMaxFrame = 16384
	maxFrameLimit   = 1<<24 - 1
	// defaultHeaderTable is SETTINGS_HEADER_TABLE_SIZE until the peer says otherwise;
	// maxHeaderTable bounds what a peer may make the decoders hold.
	defaultHeaderTable = 4096
	maxHeaderTable     = 64 << 10

	errFramesLost = "HTTP/2: bytes missing where frames could not be followed"
	errBlockSize  = "header block over 64 KiB"

	// streamOverhead is what a stream followed costs besides its messages and their fields
	// (measured: about 120 bytes on amd64).
	streamOverhead  = 128
	errCapturedPart = "body larger than the capture bound: only its beginning was seen"
)

// Frame types (RFC 9113 section 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
)

// Frame flags.
const (
	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// Settings read.
const (
	settingHeaderTableSize = 0x1
	settingMaxFrameSize    = 0x5
)

var frameNames = [...]string{"DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING", "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"}

func frameName(t uint8) string {
	if int(t) < len(frameNames) {
		return frameNames[t]
	}
	return fmt.Sprintf("frame type 0x%x", t)
}

var errCodeNames = [...]string{"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
	"STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR",
	"ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"}

func errCodeName(c uint32) string {
	if int(c) < len(errCodeNames) {
		return errCodeNames[c]
	}
	return fmt.Sprintf("error code 0x%x", c)
}

type frameHeader struct {
	length int
	typ    uint8
	flags  uint8
	stream uint32
}

func readFrameHeader(b []byte) frameHeader {
	return frameHeader{
		length: int(b[0])<<16 | int(b[1])<<8 | int(b[2]),
		typ:    b[3],
		flags:  b[4],
		stream: binary.BigEndian.Uint32(b[5:]) & 0x7fffffff,
	}
}

// Where a direction is in its frames.
const (
	h2Head = iota // reading a frame header
	h2Keep        // keeping the start of a payload that the frame's handler needs
	h2Data        // streaming a DATA payload into its message's body
	h2Skip        // passing over the rest of a payload: padding, frames that change nothing here
)

// h2side is one direction of a connection: the frames one endpoint sends, and the HPACK
// decoder that mirrors that endpoint's encoder.
type h2side struct {
	dir      Direction
	st       int
	fh       frameHeader // the frame being read
	buf      []byte      // its header's bytes, then the payload bytes kept (h2Keep)
	need     int         // payload bytes h2Keep keeps
	left     int         // payload bytes of the frame still to come
	dataLeft int         // of which body bytes (h2Data)
	at       time.Time   // the call that carried the frame's first byte
	meta     any
	// maxFrame is the largest frame this direction may carry: the receiving peer's
	// SETTINGS_MAX_FRAME_SIZE.
	maxFrame int
	dec      *hpack.Decoder
	// table is the most its decoder's dynamic table may hold: what the receiving peer
	// announced (SETTINGS_HEADER_TABLE_SIZE), at most maxHeaderTable.
	table    int
	fields   []hpack.HeaderField // the header block being decoded
	listSize int                 // its size as HPACK counts it
	listCut  bool                // fields over maxHeaderBytes were not kept
	hidden   int                 // its fields taken from the table as it was before a join
	synced   bool                // a joined connection's side found a frame boundary (h2join.go)
	// The header block being assembled from HEADERS or PUSH_PROMISE and CONTINUATION frames.
	block     []byte
	blockOpen bool
	blockFH   frameHeader // the frame that started it
	blockAt   time.Time
	blockMeta any
}

// h2stream is one request and its response.
type h2stream struct {
	id        uint32
	req, resp stream   // the messages being reassembled (msg set while one is open)
	request   *Message // the request once its END_STREAM was seen
}

// h2conn follows the frames of a connection whose client preface was seen.
type h2conn struct {
	key     Key
	out, in h2side
	streams map[uint32]*h2stream
	lim     *bufLimit  // the Tracker's
	broken  string     // why the frames cannot be followed any more
	done    []Exchange // exchanges completed by the call being fed
	// joined: the connection was joined after its preface (h2join.go); skippedCalls counts
	// the calls of a side not yet at a frame boundary.
	joined       bool
	skippedCalls int
}

func newH2Conn(key Key, lim *bufLimit) *h2conn {
	h := &h2conn{key: key, streams: map[uint32]*h2stream{}, lim: lim}
	for _, s := range []*h2side{&h.out, &h.in} {
		s.maxFrame, s.table = defaultMaxFrame, defaultHeaderTable
		s.dec = hpack.NewDecoder(defaultHeaderTable, s.emit)
	}
	h.out.dir, h.in.dir = Write, Read
	return h
}

// size is the message bytes h holds, counting the HPACK tables as full: their entries are
// header fields too, and a peer may make each hold up to maxHeaderTable.
func (h *h2conn) size() int {
	n := len(h.out.buf) + len(h.in.buf) + len(h.out.block) + len(h.in.block) + h.out.table + h.in.table
	n += len(h.streams) * streamOverhead
	for _, st := range h.streams {
		n += st.req.size() + st.resp.size()
		if st.request != nil {
			n += st.request.held()
		}
	}
	return n
}

// Preface matching outcomes.
const (
	prefaceMore = iota // all the call's bytes are the preface's beginning: wait for the rest
	prefaceDone        // the preface is complete: what follows are frames
	prefaceNo          // not the preface
	prefaceLost        // bytes of the preface were not captured
)

// matchPreface follows the client preface across calls, since a program may write it in
// pieces. Bytes held as a possible preface are given back (data is then those bytes and the
// call's) when the connection turns out not to start with it.
func (c *conn) matchPreface(data []byte, total int) ([]byte, int, int) {
	held := c.preface
	n := min(len(data), len(h2Preface)-held)
	giveBack := func() ([]byte, int, int) {
		c.preface = 0
		if held == 0 {
			return data, total, prefaceNo
		}
		return append(h2Preface[:held:held], data...), total + held, prefaceNo
	}
	if (n == 0 && held == 0) || string(data[:n]) != string(h2Preface[held:held+n]) {
		return giveBack()
	}
	c.preface += n
	if c.preface == len(h2Preface) {
		c.preface = 0
		return data[n:], total - n, prefaceDone
	}
	if total > len(data) {
		if c.preface >= 3 {
			c.preface = 0
			return nil, 0, prefaceLost
		}
		return giveBack()
	}
	return nil, 0, prefaceMore
}

// feedH2 feeds a call to a connection decoded as HTTP/2; when its frames cannot be followed any
// more, what it had pending comes out and the connection is reported unparsed.
func (c *conn) feedH2(dir Direction, data, tail []byte, missing int, at time.Time, meta any) []Exchange {
	h := c.h2
	out := h.feed(dir, data, tail, missing, at, meta)
	if h.broken == "" {
		return out
	}
	return append(out, c.h2Unparsed(h.broken)...)
}

// h2Unparsed gives up decoding the connection.
func (c *conn) h2Unparsed(reason string) []Exchange {
	var out []Exchange
	if c.h2 != nil {
		out = c.h2.drain(reason)
		c.h2 = nil
	}
	c.unparsed = reason
	if !c.reported {
		c.reported = true
		out = append(out, Exchange{Key: c.key, Unparsed: reason, BytesWritten: c.bytes[Write], BytesRead: c.bytes[Read], Meta: c.meta})
	}
	return out
}

// feed reads one call's bytes (missing: bytes of the call that were not captured, after data;
// tail: the call's last bytes, captured after the missing ones) and returns the exchanges it
// completed.
func (h *h2conn) feed(dir Direction, data, tail []byte, missing int, at time.Time, meta any) []Exchange {
	s := &h.out
	if dir == Read {
		s = &h.in
	}
	if !h.syncJoined(s, data, len(data)+missing+len(tail)) {
		return nil
	}
	h.consume(s, data, at, meta)
	if missing > 0 && h.broken == "" {
		h.skip(s, missing, at)
	}
	if len(tail) > 0 && h.broken == "" {
		// Frames are followed across the gap (skip kept count): a gap inside a DATA payload
		// leaves the tail as the body's end.
		if s.st == h2Data {
			if b := h.bodyOf(s); b != nil {
				b.markGap()
			}
		}
		h.consume(s, tail, at, meta)
	}
	out := h.done
	h.done = nil
	return out
}

func (h *h2conn) consume(s *h2side, data []byte, at time.Time, meta any) {
	for len(data) > 0 && h.broken == "" {
		switch s.st {
		case h2Head:
			if len(s.buf) == 0 {
				s.at, s.meta = at, meta
			}
			n := min(frameHeaderLen-len(s.buf), len(data))
			s.buf = append(s.buf, data[:n]...)
			data = data[n:]
			if len(s.buf) == frameHeaderLen {
				h.beginFrame(s, readFrameHeader(s.buf), at)
			}
		case h2Keep:
			n := min(s.need-len(s.buf), len(data))
			s.buf = append(s.buf, data[:n]...)
			data, s.left = data[n:], s.left-n
			if len(s.buf) == s.need {
				h.kept(s, at)
			}
		case h2Data:
			n := min(s.dataLeft, len(data))
			if b := h.bodyOf(s); b != nil {
				b.msg.End = at
				b.keep(data[:n], h.lim)
			}
			data, s.left, s.dataLeft = data[n:], s.left-n, s.dataLeft-n
			h.settle(s, at)
		case h2Skip:
			n := min(s.left, len(data))
			data, s.left = data[n:], s.left-n
			h.settle(s, at)
		}
	}
}

// skip accounts for n bytes that were not captured. Only bytes inside a payload that is not
// needed whole can be missing: a DATA payload's (its message is then incomplete) or a skipped
// one's. Anywhere else the next frame header, or the HPACK state, is lost.
func (h *h2conn) skip(s *h2side, n int, at time.Time) {
	for n > 0 && h.broken == "" {
		switch s.st {
		case h2Data:
			k := min(n, s.dataLeft)
			if b := h.bodyOf(s); b != nil {
				b.msg.End = at
				b.msg.WireSize += int64(k)
				if !b.bodyLost && b.msg.Problem == "" {
					b.msg.Problem = errCapturedPart
				}
				b.bodyLost = true
			}
			n, s.left, s.dataLeft = n-k, s.left-k, s.dataLeft-k
		case h2Skip:
			k := min(n, s.left)
			n, s.left = n-k, s.left-k
		default:
			h.fail(errFramesLost)
			return
		}
		h.settle(s, at)
	}
}

func (h *h2conn) fail(reason string) {
	if h.broken == "" {
		h.broken = reason
	}
}

// beginFrame checks a frame header and decides what of the payload to keep.
func (h *h2conn) beginFrame(s *h2side, fh frameHeader, at time.Time) {
	s.fh, s.left, s.buf = fh, fh.length, s.buf[:0]
	if fh.length > s.maxFrame {
		h.fail(fmt.Sprintf("HTTP/2: %s frame of %d bytes, over the %d-byte maximum frame size", frameName(fh.typ), fh.length, s.maxFrame))
		return
	}
	if s.blockOpen && (fh.typ != frameContinuation || fh.stream != s.blockFH.stream) {
		h.fail("HTTP/2: header block interrupted by a " + frameName(fh.typ) + " frame")
		return
	}
	need, problem := s.keepLen(fh)
	if problem != "" {
		if problem == errBlockSize {
			h.lim.stats.HeadersCut++
		}
		h.fail("HTTP/2: " + problem)
		return
	}
	s.need, s.st = need, h2Keep
	if need == 0 {
		h.kept(s, at)
	}
}

// fixedFrameLen: the frames whose payload has one size.
var fixedFrameLen = map[uint8]int{frameRSTStream: 4, framePing: 8, frameWindowUpdate: 4, framePriority: 5}

// keepLen says how much of a frame's payload its handler needs, or why the frame is malformed.
// The lengths are checked as the endpoints check them: a frame they would reject would have
// ended the connection.
func (s *h2side) keepLen(fh frameHeader) (int, string) {
	if n, ok := fixedFrameLen[fh.typ]; ok && fh.length != n {
		return 0, fmt.Sprintf("%s frame of %d bytes", frameName(fh.typ), fh.length)
	}
	switch fh.typ {
	case frameData:
		if fh.stream == 0 {
			return 0, "DATA frame on stream 0"
		}
		if fh.flags&flagPadded != 0 {
			if fh.length == 0 {
				return 0, "padded DATA frame without its pad length"
			}
			return 1, ""
		}
		return 0, ""
	case frameHeaders, framePushPromise, frameContinuation:
		if fh.stream == 0 {
			return 0, frameName(fh.typ) + " frame on stream 0"
		}
		if fh.typ == frameContinuation && !s.blockOpen {
			return 0, "CONTINUATION frame without a header block"
		}
		if fh.length > maxHeaderBytes || (s.blockOpen && len(s.block)+fh.length > maxHeaderBytes) {
			return 0, errBlockSize
		}
		return fh.length, ""
	case frameSettings:
		switch {
		case fh.stream != 0, fh.flags&flagAck != 0 && fh.length != 0, fh.length%6 != 0, fh.length > maxHeaderBytes:
			return 0, fmt.Sprintf("malformed SETTINGS frame of %d bytes", fh.length)
		}
		return fh.length, ""
	case frameRSTStream:
		if fh.stream == 0 {
			return 0, "RST_STREAM frame on stream 0"
		}
		return 4, ""
	case frameGoAway:
		if fh.length < 8 || fh.stream != 0 {
			return 0, fmt.Sprintf("malformed GOAWAY frame of %d bytes", fh.length)
		}
		return 8, "" // the debug data that follows is skipped
	}
	return 0, "" // PING, WINDOW_UPDATE, PRIORITY and unknown types change nothing here
}

// kept runs a frame's handler once the payload bytes it needs are there.
func (h *h2conn) kept(s *h2side, at time.Time) {
	switch s.fh.typ {
	case frameData:
		pad := 0
		if s.fh.flags&flagPadded != 0 {
			pad = int(s.buf[0])
		}
		if pad > s.left {
			h.fail("HTTP/2: DATA frame padding longer than the frame")
			return
		}
		s.dataLeft, s.st = s.left-pad, h2Data
	case frameHeaders, framePushPromise, frameContinuation:
		h.headerFrame(s, at)
	case frameSettings:
		h.settings(s)
	case frameRSTStream:
		h.resetStream(s, at)
	case frameGoAway:
		h.goAway(s)
	}
	if h.broken != "" {
		return
	}
	if s.st != h2Data {
		s.st = h2Skip
	}
	h.settle(s, at)
}

// settle moves on when a payload's part is over, and ends the frame when all of it is.
func (h *h2conn) settle(s *h2side, at time.Time) {
	if s.st == h2Data && s.dataLeft == 0 {
		s.st = h2Skip
	}
	if s.st != h2Skip || s.left > 0 {
		return
	}
	if s.fh.typ == frameData && s.fh.flags&flagEndStream != 0 {
		h.endStream(s, s.fh.stream, at)
	}
	s.st, s.buf = h2Head, s.buf[:0]
	if cap(s.buf) > smallBuf {
		s.buf = nil // a large frame's: not kept for the next ones
	}
}

// bodyOf is the message the current DATA frame belongs to, nil when it is not followed.
func (h *h2conn) bodyOf(s *h2side) *stream {
	st := h.streams[s.fh.stream]
	switch {
	case st == nil:
		return nil
	case s.dir == Write && st.req.msg != nil:
		return &st.req
	case s.dir == Read && st.resp.msg != nil:
		return &st.resp
	}
	return nil
}

// endStream: the side finished sending on the stream (END_STREAM).
func (h *h2conn) endStream(s *h2side, id uint32, at time.Time) {
	st := h.streams[id]
	switch {
	case st == nil:
	case s.dir == Write && st.req.msg != nil:
		st.request = st.req.finish(at, "")
	case s.dir == Read && st.resp.msg != nil:
		resp := st.resp.finish(at, "")
		req := st.request
		if req == nil && st.req.msg != nil {
			req = st.req.partial("the response ended before the request was sent completely")
		}
		h.emit(st, req, resp, "")
	}
}

// abort ends a stream that will not complete: what was seen of it comes out with the problem.
func (h *h2conn) abort(st *h2stream, problem string) {
	req := st.request
	if req == nil && st.req.msg != nil {
		req = st.req.partial(problem)
	}
	var resp *Message
	if st.resp.msg != nil {
		resp = st.resp.partial(problem)
	}
	respProblem := ""
	if resp == nil {
		respProblem = problem
	}
	h.emit(st, req, resp, respProblem)
}

func (h *h2conn) emit(st *h2stream, req, resp *Message, respProblem string) {
	delete(h.streams, st.id)
	h.done = append(h.done, Exchange{Key: h.key, Request: req, Response: resp, ResponseProblem: respProblem})
}

// drain ends every stream (the connection is closed, idle or no longer followed).
func (h *h2conn) drain(problem string) []Exchange {
	for _, id := range slices.Sorted(maps.Keys(h.streams)) {
		h.abort(h.streams[id], problem)
	}
	out := h.done
	h.done = nil
	return out
}

// headerFrame assembles a header block; once complete, it is decoded whatever the stream, so
// that the HPACK table stays in step with the encoder's.
func (h *h2conn) headerFrame(s *h2side, at time.Time) {
	p, fh := s.buf, s.fh
	if fh.typ != frameContinuation {
		if fh.flags&flagPadded != 0 {
			if len(p) < 1 || int(p[0]) > len(p)-1 {
				h.fail("HTTP/2: " + frameName(fh.typ) + " frame padding longer than the frame")
				return
			}
			p = p[1 : len(p)-int(p[0])]
		}
		skip := 0
		if fh.typ == frameHeaders && fh.flags&flagPriority != 0 {
			skip = 5 // stream dependency and weight
		} else if fh.typ == framePushPromise {
			skip = 4 // promised stream
		}
		if len(p) < skip {
			h.fail("HTTP/2: " + frameName(fh.typ) + " frame too short")
			return
		}
		p = p[skip:]
		s.block, s.blockOpen, s.blockFH, s.blockAt, s.blockMeta = s.block[:0], true, fh, s.at, s.meta
	}
	s.block = append(s.block, p...)
	if fh.flags&flagEndHeaders == 0 {
		return
	}
	s.blockOpen = false
	if !h.decodeBlock(s) {
		return
	}
	switch {
	case s.blockFH.typ == framePushPromise:
		// A pushed response's request: decoded only to keep the table in step (clients
		// disable push; nothing here asks for it).
	case s.dir == Write:
		h.requestHeaders(s, at)
	default:
		h.responseHeaders(s, at)
	}
	// A large block's buffers are not kept for the next ones.
	if cap(s.block) > smallBuf {
		s.block = nil
	}
	if cap(s.fields) > 64 {
		s.fields = nil
	}
}

func (h *h2conn) decodeBlock(s *h2side) bool {
	s.fields, s.listSize, s.listCut, s.hidden = s.fields[:0], 0, false, 0
	s.dec.SetEmitEnabled(true)
	_, err := s.dec.Write(s.block)
	if err == nil {
		err = s.dec.Close()
	}
	if err != nil {
		h.fail("HTTP/2: HPACK " + err.Error())
		return false
	}
	return true
}

// emit keeps a decoded field. A small block can name large table entries many times over:
// beyond maxHeaderBytes the fields are still decoded (the table must follow) but not kept.
func (s *h2side) emit(f hpack.HeaderField) {
	if f.Name == placeholder {
		s.hidden++ // an entry added before the receiver joined the connection (h2join.go)
		return
	}
	s.listSize += int(f.Size())
	if s.listSize > maxHeaderBytes {
		s.listCut = true
		s.dec.SetEmitEnabled(false)
		return
	}
	s.fields = append(s.fields, f)
}

// message makes a Message of the decoded block; the pseudo-header fields are returned apart.
// What its fields hold is taken from what the bodies that follow may keep.
func (h *h2conn) message(s *h2side, at time.Time) (m *Message, pseudo map[string]string) {
	m = &Message{Proto: "HTTP/2.0", Header: textproto.MIMEHeader{}, Start: s.blockAt, End: at, Meta: s.blockMeta, head: messageOverhead,
		Joined: h.joined, HiddenFields: s.hidden}
	pseudo = map[string]string{}
	for _, f := range s.fields {
		m.head += int(f.Size())
		if f.IsPseudo() {
			pseudo[f.Name] = f.Value
			continue
		}
		m.Header.Add(textproto.CanonicalMIMEHeaderKey(f.Name), f.Value)
	}
	if s.listCut {
		m.Problem = "header list over 64 KiB: the fields after were not kept"
		h.lim.stats.HeadersCut++
	}
	h.lim.left -= m.head
	return m, pseudo
}

// requestHeaders starts a request, or ends one with its trailers.
func (h *h2conn) requestHeaders(s *h2side, at time.Time) {
	fh := s.blockFH
	end := fh.flags&flagEndStream != 0
	if st := h.streams[fh.stream]; st != nil {
		if st.req.msg != nil {
			st.req.msg.End = at
			if end {
				st.request = st.req.finish(at, "")
			}
		}
		return
	}
	if fh.stream%2 == 0 {
		return // not a stream the client opens
	}
	m, pseudo := h.message(s, at)
	if pseudo[":method"] == "" {
		return // trailers of a stream already over
	}
	m.Method, m.Target = pseudo[":method"], pseudo[":path"]
	if a := pseudo[":authority"]; a != "" {
		m.Header.Set("Host", a) // :authority stands for Host, and wins over it (RFC 9113 8.3.1)
	}
	if len(h.streams) >= maxH2Streams {
		oldest := slices.Min(slices.Collect(maps.Keys(h.streams)))
		h.abort(h.streams[oldest], fmt.Sprintf("more than %d HTTP/2 streams open at once: the oldest was given up", maxH2Streams))
		h.lim.stats.StreamsGivenUp++
	}
	st := &h2stream{id: fh.stream}
	st.req.lim, st.resp.lim = h.lim, h.lim
	st.req.msg = m
	h.streams[fh.stream] = st
	if end {
		st.request = st.req.finish(at, "")
	}
}

// responseHeaders starts a response (after any 1xx), or ends one with its trailers.
func (h *h2conn) responseHeaders(s *h2side, at time.Time) {
	fh := s.blockFH
	end := fh.flags&flagEndStream != 0
	st := h.streams[fh.stream]
	if st == nil {
		return
	}
	if st.resp.msg != nil {
		st.resp.msg.End = at
		if end {
			h.endStream(s, fh.stream, at)
		}
		return
	}
	m, pseudo := h.message(s, at)
	code, err := strconv.Atoi(pseudo[":status"])
	if err != nil || code < 100 || code > 999 {
		code = 0
		if m.Problem == "" {
			m.Problem = "invalid :status " + strconv.Quote(pseudo[":status"])
		}
	}
	if code/100 == 1 && !end {
		return // informational: the final response follows
	}
	m.Status = code
	st.resp.msg = m
	if end {
		h.endStream(s, fh.stream, at)
	}
}

// settings applies what a side announces to the other side, whose encoder and frames it bounds.
func (h *h2conn) settings(s *h2side) {
	if s.fh.flags&flagAck != 0 {
		return
	}
	peer := &h.in
	if s.dir == Read {
		peer = &h.out
	}
	for p := s.buf; len(p) >= 6; p = p[6:] {
		v := binary.BigEndian.Uint32(p[2:])
		switch binary.BigEndian.Uint16(p) {
		case settingHeaderTableSize:
			// The table the announcing side decodes with is the one the peer encodes into.
			peer.table = int(min(v, maxHeaderTable))
			peer.dec.SetAllowedMaxDynamicTableSize(uint32(peer.table))
		case settingMaxFrameSize:
			if v < defaultMaxFrame || v > maxFrameLimit {
				h.fail(fmt.Sprintf("HTTP/2: invalid SETTINGS_MAX_FRAME_SIZE %d", v))
				return
			}
			peer.maxFrame = int(v)
		}
	}
}

func (h *h2conn) resetStream(s *h2side, at time.Time) {
	st := h.streams[s.fh.stream]
	if st == nil {
		return
	}
	who := "client"
	if s.dir == Read {
		who = "server"
	}
	for _, m := range []*Message{st.req.msg, st.resp.msg} {
		if m != nil {
			m.End = at
		}
	}
	h.abort(st, fmt.Sprintf("HTTP/2 stream reset by the %s (%s)", who, errCodeName(binary.BigEndian.Uint32(s.buf))))
}

// goAway: the server will not process the streams after the last one it names. A client's
// GOAWAY changes nothing here: the streams it already opened may still be answered.
func (h *h2conn) goAway(s *h2side) {
	if s.dir != Read {
		return
	}
	last := binary.BigEndian.Uint32(s.buf) & 0x7fffffff
	code := errCodeName(binary.BigEndian.Uint32(s.buf[4:]))
	for _, id := range slices.Sorted(maps.Keys(h.streams)) {
		if id > last {
			h.abort(h.streams[id], "the server did not process the request (HTTP/2 GOAWAY, "+code+")")
		}
	}
}
