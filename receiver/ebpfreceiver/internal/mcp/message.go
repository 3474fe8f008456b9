package mcp

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/jsonscan"
)

// Kind of a JSON-RPC message.
type Kind uint8

const (
	KindUnknown      Kind = iota // not read as JSON-RPC (see Message.Problem)
	KindRequest                  // method and id
	KindNotification             // method, no id
	KindResponse                 // result or error, and an id (or none when it was not captured)
)

// Message is one JSON-RPC 2.0 message as far as it was captured.
type Message struct {
	Kind Kind
	ID   string // the id as JSON wrote it: a number's digits, or a string in its quotes; "" when none was seen
	// NullID: the id was null, as a server answers a request it could not read (JSON-RPC 2.0:
	// an error whose request's id could not be told): the TypeScript SDK's streamable HTTP
	// server does so for any request before initialize, such as the Go SDK's server/discover.
	NullID bool
	Method string
	// Params and Result are the raw JSON of those members, possibly cut (Cut says so).
	Params, Result []byte
	// Error is set for an error response.
	Error *RPCError
	// Size is the message's size on the wire (without its newline), as far as it was counted.
	Size int64
	// Cut: the message was larger than the bound, or bytes of it were not captured; it was read
	// as far as it goes.
	Cut bool
	// Problem says why the message could not be read (in full); empty when it was fine.
	Problem string
	At      time.Time // when its first byte was seen
	End     time.Time // when its last byte was seen
	Meta    any       // what the caller attached to the call that carried its first byte
	// last is the message's last bytes when it was cut (where members written last are).
	last []byte
}

func (m *Message) tail() []byte { return m.last }

// RPCError is a JSON-RPC error object.
type RPCError struct {
	Code    int64
	Message string
}

// maxMethod bounds a method name (MCP's are short: "notifications/resources/list_changed").
const maxMethod = 128

// maxErrorMessage bounds the error message kept.
const maxErrorMessage = 1024

// parseMessage reads a message from what was kept of it: head is its beginning (all of it when
// cut is false), tail its last bytes when it was cut (where an id written last is found).
func parseMessage(head, tail []byte, cut bool) Message {
	m := Message{Cut: cut}
	if cut {
		m.last = tail
	}
	var jsonrpc string
	var sawResult, sawError, sawID, methodCut bool
	err := jsonscan.Members(head, func(key string, raw []byte, whole bool) {
		switch key {
		case "jsonrpc":
			if whole {
				jsonrpc = jsonscan.Unquote(raw)
			}
		case "id":
			if whole {
				m.ID, sawID = idText(raw), true
				m.NullID = string(bytes.TrimSpace(raw)) == "null"
			}
		case "method":
			if whole {
				m.Method = clip(jsonscan.Unquote(raw), maxMethod)
			} else {
				// A method cut short is no method name; the message is still a request.
				methodCut = true
			}
		case "params":
			m.Params = raw
		case "result":
			m.Result, sawResult = raw, true
		case "error":
			sawError = true
			m.Error = parseError(raw)
		}
	})
	switch {
	case err == nil && cut:
		// The head held a whole object after all (a line cut in its trailing bytes).
	case errors.Is(err, jsonscan.ErrCut) && !cut:
		m.Problem = "message ends inside a value"
		m.Cut = true
	case err != nil && !errors.Is(err, jsonscan.ErrCut):
		m.Problem = "not JSON-RPC: " + err.Error()
		return m
	}
	if !sawID && m.Cut && len(tail) > 0 {
		if id, ok := tailID(tail); ok {
			m.ID, sawID = id, true
		}
	}
	if jsonrpc != "" && jsonrpc != "2.0" {
		m.Problem = "not JSON-RPC 2.0: jsonrpc is " + strconv.Quote(clip(jsonrpc, 16))
		return m
	}
	switch {
	case methodCut:
		m.Kind = KindRequest
		m.Problem = "message cut inside its method"
		if !sawID {
			m.Kind = KindUnknown
		}
	case m.Method != "" && sawID:
		m.Kind = KindRequest
	case m.Method != "":
		m.Kind = KindNotification
		if m.Cut && !strings.HasPrefix(m.Method, "notifications/") {
			// The id may be in the part not captured: a request then, but which is unknown.
			m.Kind = KindRequest
		}
	case sawResult || sawError:
		m.Kind = KindResponse
	case m.Cut && sawID:
		m.Kind = KindResponse // the result (the large part) began past what was kept
	case m.Cut && jsonrpc != "":
		m.Kind = KindResponse
	default:
		if m.Problem == "" {
			m.Problem = "not JSON-RPC: neither a method nor a result or error"
		}
	}
	return m
}

// idText is an id's canonical text: numbers as written, strings with their quotes (so 1 and "1"
// differ, as JSON-RPC says they do); null and other values give "".
func idText(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || len(raw) > maxIDBytes {
		return ""
	}
	switch c := raw[0]; {
	case c == '"':
		if s := jsonscan.Unquote(raw); s != "" || len(raw) == 2 {
			return strconv.Quote(s)
		}
	case c == '-' || (c >= '0' && c <= '9'):
		for _, d := range raw[1:] {
			if !(d >= '0' && d <= '9' || d == '.' || d == 'e' || d == 'E' || d == '+' || d == '-') {
				return ""
			}
		}
		return string(raw)
	}
	return ""
}

// maxIDBytes bounds an id: JSON-RPC ids are small numbers or UUID-like strings.
const maxIDBytes = 128

// tailID finds an id written as the message's last member (as the TypeScript SDK writes
// responses: {"result":...,"jsonrpc":"2.0","id":7}) in its last bytes: `"id"` preceded by ',' and
// followed by ':' value '}' with only whitespace after, which within a well-formed object is the
// outer object's last member (a nested object's closing brace would follow).
func tailID(tail []byte) (string, bool) {
	t := bytes.TrimRight(tail, " \t\r\n")
	if len(t) == 0 || t[len(t)-1] != '}' {
		return "", false
	}
	t = bytes.TrimRight(t[:len(t)-1], " \t\r\n")
	k := bytes.LastIndex(t, []byte(`"id"`))
	if k <= 0 {
		return "", false
	}
	before := bytes.TrimRight(t[:k], " \t\r\n")
	if len(before) == 0 || before[len(before)-1] != ',' {
		return "", false
	}
	rest := bytes.TrimLeft(t[k+4:], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return "", false
	}
	v := bytes.TrimSpace(rest[1:])
	if len(v) > 0 && v[0] == '"' {
		if end, err := jsonscan.SkipString(v, 0); err != nil || end != len(v) {
			return "", false
		}
	}
	id := idText(v)
	return id, id != ""
}

func parseError(raw []byte) *RPCError {
	e := &RPCError{}
	_ = jsonscan.Members(raw, func(key string, v []byte, whole bool) {
		switch key {
		case "code":
			if whole {
				e.Code, _ = strconv.ParseInt(string(v), 10, 64)
			}
		case "message":
			if whole {
				e.Message = clip(jsonscan.Unquote(v), maxErrorMessage)
			} else {
				e.Message = clip(jsonscan.UnquotePrefix(v), maxErrorMessage)
			}
		}
	})
	return e
}

// clip cuts s to at most n bytes, at a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
