package mcp

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// checkCall fails on a call that holds more than the bounds allow.
func checkCall(t *testing.T, c Call, seen map[uint64]bool) {
	t.Helper()
	if len(c.Tool) > maxName || len(c.URI) > maxName || len(c.Server.Name) > maxName || len(c.Arguments) > maxArguments ||
		len(c.Tools) > maxTools || len(c.Method) > maxMethod || len(c.ID) > maxIDBytes+2 {
		t.Fatalf("call over its bounds: tool %d, uri %d, arguments %d, tools %d", len(c.Tool), len(c.URI), len(c.Arguments), len(c.Tools))
	}
	for _, tool := range c.Tools {
		if len(tool.Name) > maxName || len(tool.Description) > maxDescription {
			t.Fatal("tool over its bounds")
		}
	}
	if c.Done {
		if seen[c.Seq] {
			t.Fatalf("call %d done twice", c.Seq)
		}
		seen[c.Seq] = true
	}
}

func addRecorded(f *testing.F) {
	for _, name := range []string{"node-filesystem.chunks", "node-everything.chunks", "go-filesystem.chunks", "go-everything.chunks"} {
		b, err := os.ReadFile(filepath.Join("testdata", "stdio", name))
		if err != nil {
			f.Fatal(err)
		}
		// The beginning of a recorded session: the fuzzing engine minimizes each new input for up
		// to a minute, which on a long one is all of a short run.
		f.Add(b[:min(len(b), 400)], []byte{3, 200, 17, 0, 255, 9})
	}
}

// FuzzTracker feeds any bytes, split anywhere (the split bytes also pick the direction and bytes
// missing after each piece), through a Tracker with small bounds.
func FuzzTracker(f *testing.F) {
	addRecorded(f)
	f.Add([]byte(`{"method":"tools/call","params":{"name":"x","arguments":{"a":1}},"jsonrpc":"2.0","id":1}`+"\n"+
		`{"result":{"content":[],"isError":true},"jsonrpc":"2.0","id":1}`+"\n"), []byte{90, 128})
	f.Add([]byte(`{"jsonrpc":"2.0","id":"x","result":{"tools":[{"name":"a","description":"`), []byte{10, 10, 10})
	f.Fuzz(func(t *testing.T, data, splits []byte) {
		tr := NewTracker(Options{MaxMessage: 300, MaxStreams: 3, MaxSessions: 2, MaxInFlight: 4, Timeout: time.Second})
		seen := map[uint64]bool{}
		at := t0
		for i := 0; len(data) > 0; i++ {
			s := byte(0)
			if len(splits) > 0 {
				s = splits[i%len(splits)]
			}
			n := min(len(data), 1+int(s&0x7f))
			dir, stream := Write, toServer
			if s&0x80 != 0 {
				dir, stream = Read, fromSrv
			}
			missing := 0
			if s%13 == 0 {
				missing = int(s)
			}
			sess := agent
			if s%7 == 0 {
				sess = Key{PID: uint32(s % 5)}
			}
			at = at.Add(100 * time.Millisecond)
			for _, c := range tr.Data(stream, sess, dir, data[:n], missing, at, nil) {
				checkCall(t, c, seen)
			}
			if s%17 == 0 {
				for _, c := range tr.Expire(at) {
					checkCall(t, c, seen)
				}
			}
			data = data[n:]
		}
		for _, s := range tr.streams {
			if len(s.head) > 300 || len(s.tail) > tailBytes {
				t.Fatalf("stream holds %d+%d bytes", len(s.head), len(s.tail))
			}
		}
		if len(tr.streams) > 3 || len(tr.sessions) > 2 {
			t.Fatalf("%d streams, %d sessions", len(tr.streams), len(tr.sessions))
		}
		for _, se := range tr.sessions {
			if len(se.inflight) > 4 {
				t.Fatalf("%d in flight", len(se.inflight))
			}
		}
		for _, c := range tr.CloseProcess(agent.PID) {
			checkCall(t, c, seen)
		}
	})
}

// FuzzBody reads any HTTP body as JSON or as an event stream and pairs what it holds.
func FuzzBody(f *testing.F) {
	f.Add("text/event-stream", []byte("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"}]}}\n\n"), true)
	f.Add("application/json", []byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`), true)
	f.Add("application/json", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"`), false)
	f.Fuzz(func(t *testing.T, ct string, body []byte, complete bool) {
		_ = LooksLikeJSONRPC(ct, body)
		tr := NewTracker(Options{MaxMessage: 200})
		seen := map[uint64]bool{}
		msgs := Body(ct, body, complete, t0, t0, nil, 200)
		if len(msgs) > maxEvents+len(body) {
			t.Fatalf("%d messages", len(msgs))
		}
		for _, m := range msgs {
			if len(m.Params) > 200 || len(m.Result) > 200 || len(m.tail()) > tailBytes {
				t.Fatalf("message holds %d/%d bytes", len(m.Params), len(m.Result))
			}
		}
		for _, c := range tr.Messages(agent, Write, msgs) {
			checkCall(t, c, seen)
		}
		for _, c := range tr.Messages(agent, Read, msgs) {
			checkCall(t, c, seen)
		}
	})
}

// FuzzMessage reads one message, whole or cut, with any tail.
func FuzzMessage(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x\u00e9"}}`), []byte(`,"id":"a\"b"}`), false)
	f.Add([]byte(`{"method":"tools/call","params":{"name":"rea`), []byte(`"isError":true},"jsonrpc":"2.0","id":9}`), true)
	f.Fuzz(func(t *testing.T, head, tail []byte, cut bool) {
		m := parseMessage(head, tail, cut)
		if len(m.Method) > maxMethod || len(m.ID) > maxIDBytes+2 || (m.Error != nil && len(m.Error.Message) > maxErrorMessage) {
			t.Fatalf("message over its bounds: %+v", m)
		}
		if m.Kind == KindUnknown && m.Problem == "" {
			t.Fatal("unknown message without a problem")
		}
		_, _ = tailID(tail)
	})
}
