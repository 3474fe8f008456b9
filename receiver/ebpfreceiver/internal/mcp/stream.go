package mcp

import (
	"bytes"
	"time"
)

// tailBytes is how many of a cut message's last bytes are kept, for an id written last.
const tailBytes = 256

// stream reassembles newline-delimited JSON-RPC messages (the MCP stdio transport) from the
// bytes of one direction of a pipe or connection, as the kernel hands them over call by call.
type stream struct {
	head    []byte // the message's first bytes, up to the bound
	tail    []byte // its last tailBytes bytes once it passed the bound
	size    int64  // its bytes so far
	cut     bool   // passed the bound, or bytes of it were not captured
	skip    bool   // after bytes that were not captured: drop bytes up to the next newline
	at, end time.Time
	meta    any
	seen    time.Time // last data
}

// feed takes the captured bytes of one call and how many bytes it moved beyond them (missing),
// and returns the messages it completed. limit bounds the bytes kept of one message.
func (s *stream) feed(data []byte, missing int, at time.Time, meta any, limit int, st *Stats) []Message {
	s.seen = at
	var out []Message
	for len(data) > 0 {
		if s.skip {
			// Writers put one message per call, so a call that begins with '{' after a gap begins
			// a message; anything else is the rest of one whose beginning was lost.
			if data[0] == '{' {
				s.skip = false
				continue
			}
			nl := bytes.IndexByte(data, '\n')
			if nl < 0 {
				st.BytesSkipped += uint64(len(data))
				data = nil
				break
			}
			st.BytesSkipped += uint64(nl + 1)
			data = data[nl+1:]
			s.skip = false
			continue
		}
		nl := bytes.IndexByte(data, '\n')
		part := data
		if nl >= 0 {
			part = data[:nl]
		}
		if s.size == 0 {
			part = bytes.TrimLeft(part, " \t\r")
			if len(part) == 0 {
				if nl < 0 {
					break
				}
				data = data[nl+1:]
				continue
			}
			s.at, s.meta = at, meta
		}
		s.add(part, limit)
		s.end = at
		if nl < 0 {
			break
		}
		out = append(out, s.finish(st))
		data = data[nl+1:]
	}
	if missing > 0 {
		// The call moved bytes that were not captured: the message in progress (if any) ends
		// here, cut, and the bytes up to the next newline are not a message's beginning.
		if s.size > 0 {
			s.size += int64(missing)
			s.cut = true
			out = append(out, s.finish(st))
		}
		s.skip = true
		st.BytesMissing += uint64(missing)
	}
	return out
}

func (s *stream) add(part []byte, limit int) {
	s.size += int64(len(part))
	if room := limit - len(s.head); room > 0 {
		n := min(room, len(part))
		s.head = append(s.head, part[:n]...)
		part = part[n:]
	}
	if len(part) == 0 {
		return
	}
	s.cut = true
	if len(part) >= tailBytes {
		s.tail = append(s.tail[:0], part[len(part)-tailBytes:]...)
		return
	}
	s.tail = append(s.tail, part...)
	if over := len(s.tail) - tailBytes; over > 0 {
		s.tail = append(s.tail[:0], s.tail[over:]...)
	}
}

// finish returns the message in progress and starts the next.
func (s *stream) finish(st *Stats) Message {
	// The message keeps slices of what it was read from: a copy, as the buffers are reused.
	head := bytes.Clone(bytes.TrimRight(s.head, " \t\r"))
	var tail []byte
	if s.cut {
		tail = bytes.Clone(s.tail)
	}
	m := parseMessage(head, tail, s.cut)
	m.Size, m.At, m.End, m.Meta = s.size, s.at, s.end, s.meta
	if m.Cut {
		st.MessagesCut++
	}
	if m.Problem != "" && m.Kind == KindUnknown {
		st.MessagesUnreadable++
	}
	// A buffer that grew large for one message is not kept for the next.
	if cap(s.head) > smallBuf {
		s.head = nil
	} else {
		s.head = s.head[:0]
	}
	s.tail = s.tail[:0]
	s.size, s.cut, s.meta = 0, false, nil
	return m
}

// smallBuf is the buffer a stream keeps between messages.
const smallBuf = 4096
