package mcp

import (
	"bytes"
	"mime"
	"strings"
	"time"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/jsonscan"
)

// The streamable HTTP transport carries JSON-RPC in HTTP bodies: the client POSTs a message (or
// a batch, an array of them) as application/json; the server answers with application/json or
// with text/event-stream, whose events' data are messages. The bodies come from an HTTP parser
// (internal/llm) that has already bounded and decoded them.

// maxEvents bounds the server-sent events read from one body.
const maxEvents = 4096

// LooksLikeJSONRPC reports whether an HTTP body of that content type carries JSON-RPC: JSON
// whose first member is jsonrpc, method or id (or an array of such), or an event stream whose
// first data line is.
func LooksLikeJSONRPC(contentType string, body []byte) bool {
	switch mediaType(contentType) {
	case "application/json":
		return startsJSONRPC(body)
	case "text/event-stream":
		for line := range lines(body) {
			if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
				return startsJSONRPC(d)
			}
		}
	}
	return false
}

func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt, _, _ = strings.Cut(ct, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	return mt
}

func startsJSONRPC(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) > 0 && b[0] == '[' {
		b = bytes.TrimLeft(b[1:], " \t\r\n")
	}
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	b = bytes.TrimLeft(b[1:], " \t\r\n")
	for _, k := range []string{`"jsonrpc"`, `"method"`, `"id"`} {
		if bytes.HasPrefix(b, []byte(k)) {
			return true
		}
	}
	return false
}

// lines yields b's lines without their line ends (\n, \r\n or \r, as server-sent events allow).
func lines(b []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			i := bytes.IndexAny(b, "\r\n")
			if i < 0 {
				yield(b)
				return
			}
			line := b[:i]
			next := i + 1
			if b[i] == '\r' && next < len(b) && b[next] == '\n' {
				next++
			}
			if !yield(line) {
				return
			}
			b = b[next:]
		}
	}
}

// Body reads the JSON-RPC messages of an HTTP body. complete says whether the body is all there
// (a cut body's last message is read as far as it goes). limit bounds the bytes read of one
// message, as Options.MaxMessage does for a stream. at and end are the body's first and last
// byte; meta is attached to every message.
func Body(contentType string, body []byte, complete bool, at, end time.Time, meta any, limit int) []Message {
	if limit <= 0 {
		limit = Options{}.withDefaults().MaxMessage
	}
	var out []Message
	add := func(raw []byte, whole bool) {
		cut := !whole || len(raw) > limit
		size := int64(len(raw))
		var last []byte
		if len(raw) > limit {
			last = bytes.Clone(raw[max(len(raw)-tailBytes, limit):])
			raw = raw[:limit]
		}
		m := parseMessage(bytes.Clone(raw), last, cut)
		m.Size, m.At, m.End, m.Meta = size, at, end, meta
		if m.Kind != KindUnknown {
			out = append(out, m)
		}
	}
	switch mediaType(contentType) {
	case "text/event-stream":
		var data []byte
		var n int
		flush := func(whole bool) {
			if len(data) > 0 && n < maxEvents {
				add(data, whole)
				n++
			}
			data = data[:0]
		}
		for line := range lines(body) {
			if len(line) == 0 {
				flush(true)
				continue
			}
			if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
				d, _ = bytes.CutPrefix(d, []byte(" "))
				if len(data) > 0 {
					data = append(data, '\n')
				}
				data = append(data, d...)
			}
		}
		// An event not ended by a blank line is whole only if the body is.
		flush(complete)
	default:
		b := bytes.TrimSpace(body)
		if len(b) > 0 && b[0] == '[' {
			_ = jsonscan.Elements(b, func(raw []byte, whole bool) { add(raw, whole) })
			break
		}
		if len(b) > 0 {
			add(b, complete)
		}
	}
	return out
}
