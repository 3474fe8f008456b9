package llm

import (
	"bytes"
	"encoding/binary"

	"golang.org/x/net/http2/hpack"
)

// Joining an HTTP/2 connection after its preface (probes attached to a process whose
// connection was already open: the collector restarted, or a process_name target attached
// after the exec). Two things are unknown there: where frames start, and what the peers' HPACK
// dynamic tables hold.
//
// Frames: a call is taken as starting at a frame boundary only when its bytes are a chain of
// frame headers that the endpoints would accept (known type, flags, stream rules and lengths of
// RFC 9113) ending exactly at the call's end. Clients and servers write whole frames per call
// (Go's framer flushes after each HEADERS block and each stream's DATA), so the first such call
// of each direction joins it; calls before are skipped.
//
// HPACK: a field the encoder takes from its dynamic table refers to it by position, newest
// first. The decoder of a joined direction starts with its table full of placeholder entries
// of the smallest size (33 bytes, up to maxHeaderTable): entries the encoder adds after the join
// take the newest positions, as in the encoder's table, and a position past them, an entry
// added before the join, lands on a placeholder instead of failing the block. Placeholders are
// the fewest bytes an entry can take, so the decoder never evicts an entry the encoder still
// has. Such fields are counted (Message.HiddenFields) and left out: literals and static-table
// fields (":method POST", ":status 200", "content-type", ...) are decoded; a ":path" the
// encoder had put in its table before the join is not, so an LLM call on a joined connection
// is recognised from its bodies (Parse).

// placeholder is the name of the entries a joined decoder's table starts with.
const placeholder = "\x00"

// newJoinedH2Conn follows a connection whose preface went by before the receiver saw it.
func newJoinedH2Conn(key Key, lim *bufLimit) *h2conn {
	h := newH2Conn(key, lim)
	h.joined = true
	prefill := bytes.Repeat([]byte{0x40, 0x01, 0x00, 0x00}, maxHeaderTable/(32+len(placeholder)))
	for _, s := range []*h2side{&h.out, &h.in} {
		// The peers may have announced any frame size and table size before the join.
		s.maxFrame, s.table = maxFrameLimit, maxHeaderTable
		s.dec = hpack.NewDecoder(maxHeaderTable, s.emit)
		s.dec.SetEmitEnabled(false)
		_, err := s.dec.Write(prefill) // literal with incremental indexing, name "\x00", value ""
		if err == nil {
			err = s.dec.Close()
		}
		if err != nil {
			h.fail("HTTP/2: " + err.Error()) // not reached: the block is well formed
		}
	}
	return h
}

// joinable reports whether a call (data: its first bytes, of total) is HTTP/2 frames from its
// first byte to its last, as dir's endpoint would write them.
func joinable(dir Direction, data []byte, total int) bool {
	off, frames := 0, 0
	for off < total {
		if off+frameHeaderLen > len(data) {
			return false // a frame header not captured: cannot tell
		}
		if data[off+5]&0x80 != 0 {
			return false // the reserved bit of the stream identifier
		}
		fh := readFrameHeader(data[off:])
		if !plausibleFrame(dir, fh) || frames == 0 && fh.typ == frameContinuation {
			return false // a header block's continuation: its start went by
		}
		if fh.typ == frameSettings && fh.flags&flagAck == 0 {
			// Each setting's identifier must be one RFC 9113 or its extensions define.
			if !plausibleSettings(data[min(off+frameHeaderLen, len(data)):min(off+frameHeaderLen+fh.length, len(data))]) {
				return false
			}
		}
		off += frameHeaderLen + fh.length
		frames++
	}
	return off == total && frames > 0
}

// frameFlags: the flags each frame type defines.
var frameFlags = [...]uint8{
	frameData:         flagEndStream | flagPadded,
	frameHeaders:      flagEndStream | flagEndHeaders | flagPadded | flagPriority,
	framePriority:     0,
	frameRSTStream:    0,
	frameSettings:     flagAck,
	framePushPromise:  flagEndHeaders | flagPadded,
	framePing:         flagAck,
	frameGoAway:       0,
	frameWindowUpdate: 0,
	frameContinuation: flagEndHeaders,
}

// plausibleFrame: a frame header an endpoint would accept from dir's side (the traced program
// is the client).
func plausibleFrame(dir Direction, fh frameHeader) bool {
	if int(fh.typ) >= len(frameFlags) || fh.flags&^frameFlags[fh.typ] != 0 || fh.length > maxFrameLimit {
		return false
	}
	if n, ok := fixedFrameLen[fh.typ]; ok && fh.length != n {
		return false
	}
	switch fh.typ {
	case frameSettings:
		return fh.stream == 0 && fh.length%6 == 0 && (fh.flags&flagAck == 0 || fh.length == 0)
	case framePing:
		return fh.stream == 0
	case frameGoAway:
		return fh.stream == 0 && fh.length >= 8
	case framePushPromise:
		return dir == Read && fh.stream != 0
	case frameHeaders:
		// A client opens odd streams; a server answers on them.
		return fh.stream%2 == 1
	case frameWindowUpdate:
		return true
	}
	return fh.stream != 0 // DATA, PRIORITY, RST_STREAM, CONTINUATION
}

// plausibleSettings: every identifier is a defined setting (RFC 9113 6.5.2, RFC 8441's 8,
// RFC 9218's 9).
func plausibleSettings(p []byte) bool {
	for ; len(p) >= 6; p = p[6:] {
		if id := binary.BigEndian.Uint16(p); id == 0 || id > 9 {
			return false
		}
	}
	return true
}

// syncJoined reports whether a call of a joined connection's side is followed: a side that has
// not found a frame boundary yet takes this call only when it starts at one.
func (h *h2conn) syncJoined(s *h2side, data []byte, total int) bool {
	if !h.joined || s.synced {
		return true
	}
	if s.st != h2Head || len(s.buf) > 0 || !joinable(s.dir, data, total) {
		h.skippedCalls++
		return false
	}
	s.synced = true
	return true
}
