package llm

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// longConversation is a chat request body in openai-go's and OpenAI Python's field order:
// "messages" first, so "model" and "stream" come after 100 KB of conversation.
func longConversation() string {
	return `{"messages":[{"role":"system","content":"You are a bank's assistant."},{"role":"user","content":"` +
		strings.Repeat("x", 100000) + `"}],"model":"gpt-4o-mini","stream":true,"tools":[{"type":"function","function":{"name":"get_balance","parameters":{"type":"object","properties":{"model":{"type":"string"}}}}}]}`
}

// headTail is what the kernel sends of a write longer than captured: its first three quarters
// and its last quarter (bpf/tls/tls.c).
func headTail(b []byte, captured int) (head, tail []byte) {
	t := captured / 4
	return b[:captured-t], b[len(b)-t:]
}

// TestTailKeepsModel: a request whose model follows a long conversation keeps its model and
// stream flag when the write's tail is captured, over HTTP/1.1 with Content-Length and
// chunked, and says what it misses; without the tail (Data) the model is lost, as before.
func TestTailKeepsModel(t *testing.T) {
	resp := read(t, "openai_tool_calls.resp")
	body := longConversation()
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	for _, tc := range []struct {
		name string
		req  string
	}{
		{"content-length", fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: %d\r\n\r\n%s", len(body), body)},
		{"chunked", "POST /v1/chat/completions HTTP/1.1\r\nHost: api.example.test\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := []byte(tc.req)
			const captured = 16384
			head, tail := headTail(full, captured)
			tr := NewTracker(Options{})
			key := Key{PID: 1, Conn: 1}
			exs := tr.DataTail(key, Write, head, tail, len(full), t0, "req")
			exs = append(exs, tr.Data(key, Read, resp, len(resp), t0.Add(time.Second), nil)...)
			if len(exs) != 1 || exs[0].Request == nil || exs[0].Response == nil {
				t.Fatalf("%d exchanges: %+v", len(exs), exs)
			}
			// The size on the wire is the whole body's, as with everything captured.
			wtr := NewTracker(Options{})
			whole := wtr.Data(key, Write, full, len(full), t0, nil)
			whole = append(whole, wtr.Data(key, Read, resp, len(resp), t0, nil)...)
			req := exs[0].Request
			if req.Complete || req.Problem != errHeadTail || len(whole) == 0 {
				t.Errorf("request complete=%v problem %q", req.Complete, req.Problem)
			} else if want := whole[0].Request.WireSize; req.WireSize != want {
				t.Errorf("request size %d, want %d", req.WireSize, want)
			}
			inf, ok := Parse(exs[0])
			if !ok || inf.RequestModel != "gpt-4o-mini" || !inf.Stream || inf.RequestProblem != errHeadTail {
				t.Errorf("model %q stream %v problem %q", inf.RequestModel, inf.Stream, inf.RequestProblem)
			}
			// The body kept is the head's body bytes and the tail's, nothing between.
			if g := req.gaps; g.n != 1 || g.first != g.after || !strings.HasSuffix(string(req.Body[g.after:]), `"}}}}}]}`) {
				t.Errorf("gaps %+v", g)
			}

			// Without the tail the model is not there to be found.
			tr = NewTracker(Options{})
			exs = tr.Data(key, Write, full[:captured], len(full), t0, "req")
			exs = append(exs, tr.Data(key, Read, resp, len(resp), t0.Add(time.Second), nil)...)
			exs = append(exs, tr.Close(key)...)
			for _, ex := range exs {
				if inf, ok := Parse(ex); ok && inf.RequestModel != "" {
					t.Errorf("without the tail: model %q", inf.RequestModel)
				}
			}
		})
	}
}

// TestTailNeverAcrossGap: a value is never read across a gap, where the head's end and the
// tail's start would join into a field neither holds.
func TestTailNeverAcrossGap(t *testing.T) {
	m := &Message{Body: []byte(`{"messages":[{"content":"the "model":"` + `real"}],"model":"tail-model"}`)}
	// The gap falls right after `"model":"`: joined, the head would read "real".
	m.gaps = gaps{n: 1, first: strings.Index(string(m.Body), `real`), after: strings.Index(string(m.Body), `real`)}
	if model, _ := fieldsOf(m); model != "tail-model" {
		t.Errorf("model %q", model)
	}
	// Offsets a decoder left behind (past the body) are ignored, not a panic.
	m.gaps = gaps{n: 1, first: 5, after: 1 << 20}
	if model, _ := fieldsOf(m); model != "real" {
		t.Errorf("model %q", model)
	}
}

// TestTailCannotBePlaced: a tail after a gap that is not inside a body (the body ended in the
// gap, or the call's head held no message) is dropped, never parsed as a message start; a tail
// longer than the call is refused.
func TestTailCannotBePlaced(t *testing.T) {
	key := Key{PID: 1, Conn: 2}
	body := `{"model":"m"}`
	req := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	// The request, then 1000 bytes of something else the tail "starts a request" in.
	tail := []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
	tr := NewTracker(Options{})
	exs := tr.DataTail(key, Write, []byte(req), tail, len(req)+1000+len(tail), t0, nil)
	if len(exs) != 0 || len(tr.conns[key].pending) != 1 {
		t.Fatalf("exchanges %+v, pending %d", exs, len(tr.conns[key].pending))
	}
	tr = NewTracker(Options{})
	exs = tr.DataTail(key, Write, []byte(req[:20]), tail, 10, t0, nil) // claims more than the call moved
	if len(exs) != 0 || tr.conns[key].out.gaps.n != 0 {
		t.Fatalf("exchanges %+v gaps %+v", exs, tr.conns[key].out.gaps)
	}
}

// TestH2TailKeepsModel: the same over HTTP/2, with the gap inside the request's DATA frame:
// frames are followed across it, the model found in the tail, and the next stream parses.
func TestH2TailKeepsModel(t *testing.T) {
	big := []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 1 << 20}}
	c := newConv(t).start(big, big)
	reqBody := []byte(longConversation())
	c.headers(client, 1, false, ":method", "POST", ":scheme", "https", ":authority", "api.example.test", ":path", "/v1/chat/completions")
	c.data(client, 1, true, reqBody, 1<<20)
	c.flush(client, "request")
	h2OpenAIResponse(c, 1)
	h2OpenAIRequest(c, 3, "second")
	h2OpenAIResponse(c, 3)

	const captured = 16384
	tr := NewTracker(Options{})
	var exs []Exchange
	for _, call := range c.calls {
		if call.dir == Write && len(call.data) > captured {
			head, tail := headTail(call.data, captured)
			exs = append(exs, tr.DataTail(h2Key, call.dir, head, tail, len(call.data), t0, call.meta)...)
			continue
		}
		exs = append(exs, tr.Data(h2Key, call.dir, call.data, len(call.data), t0, call.meta)...)
	}
	if len(exs) != 2 {
		t.Fatalf("%d exchanges: %+v", len(exs), exs)
	}
	req := exs[0].Request
	if req.Complete || req.WireSize != int64(len(reqBody)) || req.Problem != errHeadTail {
		t.Errorf("request complete=%v size %d problem %q", req.Complete, req.WireSize, req.Problem)
	}
	inf, _ := Parse(exs[0])
	if inf.RequestModel != "gpt-4o-mini" || !inf.Stream {
		t.Errorf("model %q stream %v", inf.RequestModel, inf.Stream)
	}
	inf, _ = Parse(exs[1])
	check(t, "after the tail", inf, wantToolCalls)
}

// FuzzTrackerTail: writes read as head and tail with a gap between, anywhere in a request
// stream, over HTTP/1.1 or HTTP/2 (a preface in front): the tracker neither panics nor holds
// more than its bounds, nor anything once the connection is gone.
func FuzzTrackerTail(f *testing.F) {
	body := longConversation()
	req := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	f.Add([]byte(req), uint16(16384), uint16(4096), false)
	f.Add([]byte(req[:5000]), uint16(1000), uint16(300), false)
	f.Add(append(append([]byte{}, h2Preface...), req[:2000]...), uint16(100), uint16(40), true)
	f.Fuzz(func(t *testing.T, data []byte, captured, tailLen uint16, h2 bool) {
		tr := NewTracker(Options{MaxBuffer: 4096})
		key := Key{PID: 1, Conn: 1}
		if h2 {
			tr.Data(key, Write, h2Preface, len(h2Preface), t0, nil)
		}
		step := int(captured)%4096 + 1
		for len(data) > 0 {
			// A call of step*3 bytes of which step were captured: head, gap, tail.
			call := data[:min(len(data), 3*step)]
			data = data[len(call):]
			head := call[:min(len(call), step)]
			tail := call[len(call)-min(len(call)-len(head), int(tailLen)%(step+1)):]
			for _, ex := range tr.DataTail(key, Write, head, tail, len(call), t0, nil) {
				Parse(ex)
			}
			checkHeld(t, tr)
		}
		for _, ex := range tr.CloseProcess(1) {
			Parse(ex)
		}
		if tr.Buffered() != 0 {
			t.Fatalf("%d bytes held after the connection closed", tr.Buffered())
		}
	})
}
