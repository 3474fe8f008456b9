// Package dnsmsg decodes the question section of a DNS message sent by a traced process (RFC
// 1035 section 4), so that a query name (and DNS tunnelling: many long random labels) shows in
// the trace. Every byte comes from a traced process and is hostile: lengths are checked before
// use, names and questions are bounded, and compression pointers (which a query has no reason to
// use, and which can loop) are refused. A message that cannot be read is an *Error naming the
// reason, for a counter.
package dnsmsg

import (
	"encoding/binary"
	"strconv"
	"strings"
)

// Bounds of what is decoded.
const (
	// MaxQuestions: questions decoded per message (a query has one; QDCOUNT beyond is cut).
	MaxQuestions = 4
	// MaxNameBytes: a name's wire length at most (RFC 1035: 255).
	MaxNameBytes = 255
	headerBytes  = 12
)

// Reasons a message is not decoded (the `reason` attribute of the drop counter).
const (
	ReasonShort       = "short"         // fewer bytes than a header, or a TCP length prefix
	ReasonResponse    = "response"      // the QR bit is set: not a query
	ReasonNoQuestion  = "no_question"   // QDCOUNT is 0
	ReasonLabelType   = "label_type"    // a label length with the reserved 01/10 top bits
	ReasonCompression = "compression"   // a compression pointer in a question name
	ReasonNameTooLong = "name_too_long" // over 255 bytes on the wire
	ReasonTruncated   = "truncated"     // the message ends inside a question
	ReasonTCPLength   = "tcp_length"    // a TCP length prefix shorter than a header
	ReasonOpcode      = "opcode"        // not a standard query (opcode 0)
)

// Error says why a message was not decoded.
type Error struct{ Reason string }

func (e *Error) Error() string { return "dns message: " + e.Reason }

// Question is one decoded question.
type Question struct {
	Name  string // dotted, without the root's trailing dot; bytes outside [A-Za-z0-9_-] escaped as \DDD
	Type  uint16
	Class uint16
}

// Message is the decoded head of a query.
type Message struct {
	ID        uint16
	Questions []Question
	// More: QDCOUNT announced more questions than MaxQuestions (or than the bytes held).
	More bool
}

// ParseQuery decodes a query's header and questions. tcp: the message starts with the 2-byte
// length prefix of DNS over TCP (RFC 1035 4.2.2). The data may be cut after the questions (the
// kernel captures a bounded prefix); it must hold the questions decoded.
func ParseQuery(b []byte, tcp bool) (*Message, error) {
	if tcp {
		if len(b) < 2 {
			return nil, &Error{ReasonShort}
		}
		n := int(binary.BigEndian.Uint16(b))
		if n < headerBytes {
			return nil, &Error{ReasonTCPLength}
		}
		b = b[2:]
		if len(b) > n {
			b = b[:n] // a second message follows in the same write: only the first is read
		}
	}
	if len(b) < headerBytes {
		return nil, &Error{ReasonShort}
	}
	flags := binary.BigEndian.Uint16(b[2:])
	if flags&0x8000 != 0 {
		return nil, &Error{ReasonResponse}
	}
	if (flags>>11)&0xf != 0 {
		return nil, &Error{ReasonOpcode}
	}
	qd := int(binary.BigEndian.Uint16(b[4:]))
	if qd == 0 {
		return nil, &Error{ReasonNoQuestion}
	}
	m := &Message{ID: binary.BigEndian.Uint16(b)}
	if qd > MaxQuestions {
		qd, m.More = MaxQuestions, true
	}
	off := headerBytes
	for i := 0; i < qd; i++ {
		name, next, err := readName(b, off)
		if err != nil {
			if i > 0 && err.Reason == ReasonTruncated {
				m.More = true // the capture ended after the first question: keep what was read
				return m, nil
			}
			return nil, err
		}
		if next+4 > len(b) {
			if i > 0 {
				m.More = true
				return m, nil
			}
			return nil, &Error{ReasonTruncated}
		}
		m.Questions = append(m.Questions, Question{
			Name:  name,
			Type:  binary.BigEndian.Uint16(b[next:]),
			Class: binary.BigEndian.Uint16(b[next+2:]),
		})
		off = next + 4
	}
	return m, nil
}

// readName decodes the uncompressed name at off; it returns the offset after it.
func readName(b []byte, off int) (string, int, *Error) {
	var sb strings.Builder
	wire := 0
	for {
		if off >= len(b) {
			return "", 0, &Error{ReasonTruncated}
		}
		l := int(b[off])
		switch l & 0xc0 {
		case 0xc0:
			return "", 0, &Error{ReasonCompression}
		case 0x40, 0x80:
			return "", 0, &Error{ReasonLabelType}
		}
		wire += 1 + l
		if wire > MaxNameBytes {
			return "", 0, &Error{ReasonNameTooLong}
		}
		off++
		if l == 0 {
			return sb.String(), off, nil
		}
		if off+l > len(b) {
			return "", 0, &Error{ReasonTruncated}
		}
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		for _, c := range b[off : off+l] {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
				sb.WriteByte(c)
				continue
			}
			sb.WriteByte('\\')
			s := strconv.Itoa(int(c))
			sb.WriteString(strings.Repeat("0", 3-len(s)))
			sb.WriteString(s)
		}
		off += l
	}
}
