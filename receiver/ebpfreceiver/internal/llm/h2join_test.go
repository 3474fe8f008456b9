package llm

import (
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

// joinedConversation: a connection with one chat completion, then a second one whose header
// fields the encoder takes from its dynamic table (":path", ":authority", "content-type" and
// "authorization" were added to it by the first). It returns the calls and the index of the
// first call of the second exchange.
func joinedConversation(t *testing.T) ([]h2call, int) {
	c := newConv(t).start(nil, nil)
	h2OpenAIRequest(c, 1, "first")
	h2OpenAIResponse(c, 1)
	from := len(c.calls)
	h2OpenAIRequest(c, 3, "second")
	h2OpenAIResponse(c, 3)
	h2OpenAIRequest(c, 5, "third")
	h2OpenAIResponse(c, 5)
	return c.calls, from
}

// TestH2JoinedAfterPreface: the receiver sees a connection only from its second exchange on
// (probes attached late): the frames are followed from the first call that starts at a frame
// boundary, the literal and static-table fields decoded, the fields the encoder took from its
// table as it was before the join counted as hidden, and the calls recognised as chat
// completions from their bodies, with the model, the tool calls and the tokens.
func TestH2JoinedAfterPreface(t *testing.T) {
	calls, from := joinedConversation(t)
	for _, piece := range []int{1 << 20} {
		exs := feed(NewTracker(Options{}), h2Key, calls[from:], piece)
		if len(exs) != 2 {
			t.Fatalf("%d exchanges: %+v", len(exs), exs)
		}
		for i, ex := range exs {
			r := ex.Request
			if !r.Joined || r.HiddenFields == 0 || r.Method != "POST" || r.Target != "" || !r.Complete {
				t.Errorf("%d: request joined %v hidden %d method %q target %q complete %v", i, r.Joined, r.HiddenFields, r.Method, r.Target, r.Complete)
			}
			// ":status 200" is in the static table; "content-type" was put in the table by the
			// first response.
			if ex.Response == nil || ex.Response.Status != 200 || ex.Response.HiddenFields != 1 || !ex.Response.Complete {
				t.Errorf("%d: response %+v", i, ex.Response)
			}
			inf, ok := Parse(ex)
			if !ok || !inf.FromBodies {
				t.Fatalf("%d: not recognised from the bodies: %+v", i, inf)
			}
			want := *wantToolCalls
			want.Path, want.Host, want.FromBodies = "", "", true
			check(t, "joined", inf, &want)
		}
		if exs[0].Request.Meta != "second" || exs[1].Request.Meta != "third" {
			t.Errorf("metas %v %v", exs[0].Request.Meta, exs[1].Request.Meta)
		}
	}
}

// TestH2JoinSkipsUntilBoundary: calls that start inside a frame are skipped until one starts at
// a boundary; a side that never finds one is not followed, and the other side's exchanges
// still come out (without their responses).
func TestH2JoinSkipsUntilBoundary(t *testing.T) {
	calls, from := joinedConversation(t)
	tr := NewTracker(Options{})
	// The tail of the first response's last call: not at a frame boundary.
	prev := calls[from-1]
	var exs []Exchange
	exs = append(exs, tr.Data(h2Key, prev.dir, prev.data[5:], len(prev.data)-5, t0, nil)...)
	if c := tr.conns[h2Key]; c == nil || c.h2 != nil || c.unparsed != "" {
		t.Fatalf("a call inside a frame joined or gave up the connection: %+v", c)
	}
	exs = append(exs, feed(tr, h2Key, calls[from:], 1<<20)...)
	if len(exs) != 2 {
		t.Fatalf("%d exchanges: %+v", len(exs), exs)
	}
	if inf, ok := Parse(exs[1]); !ok || inf.RequestModel != "gpt-4o-mini" {
		t.Errorf("after skipping: %+v", inf)
	}
}

// TestH2HPACKEvictionAfterJoin: entries the encoder adds after the join are decoded even once
// its table evicted the older ones; only the fields it took from before the join are hidden.
func TestH2HPACKEvictionAfterJoin(t *testing.T) {
	c := newConv(t).start(nil, nil)
	h2OpenAIRequest(c, 1, "first")
	h2OpenAIResponse(c, 1)
	from := len(c.calls)
	// New fields, enough to evict everything from the 4096-byte table.
	for i := range 3 {
		c.headers(client, uint32(3+2*i), false, ":method", "POST", ":scheme", "https", ":authority", "api.example.test",
			":path", "/v1/chat/completions", "x-big", strings.Repeat(string(rune('a'+i)), 1500))
		c.flush(client, "big")
		c.data(client, uint32(3+2*i), true, body(t, "openai_tool_calls.req"), 1<<14)
		c.flush(client, "body")
		h2OpenAIResponse(c, uint32(3+2*i))
	}
	exs := feed(NewTracker(Options{}), h2Key, c.calls[from:], 1<<20)
	if len(exs) != 3 {
		t.Fatalf("%d exchanges", len(exs))
	}
	if exs[2].Request.Header.Get("X-Big") != strings.Repeat("c", 1500) {
		t.Errorf("a field added after the join was not decoded: %q", exs[2].Request.Header.Get("X-Big"))
	}
}

func TestJoinable(t *testing.T) {
	calls, from := joinedConversation(t)
	settings := []byte{0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100}
	badSetting := []byte{0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 77, 0, 0, 0, 100}
	ping := []byte{0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	for _, tc := range []struct {
		name string
		dir  Direction
		data []byte
		want bool
	}{
		{"request headers", Write, calls[from].data, true},
		{"request body", Write, calls[from+1].data, true},
		{"response", Read, calls[from+2].data, true},
		{"settings", Write, settings, true},
		{"unknown setting", Write, badSetting, false},
		{"ping", Read, ping, true},
		{"two frames", Write, append(append([]byte{}, ping...), settings...), true},
		{"one byte short", Write, ping[:16], false},
		{"one byte over", Write, append(append([]byte{}, ping...), 0), false},
		{"HTTP/1.1", Write, []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"preface", Write, h2Preface, false},
		{"continuation first", Write, []byte{0, 0, 1, 9, 4, 0, 0, 0, 1, 0x82}, false},
		{"push promise from the client", Write, []byte{0, 0, 4, 5, 4, 0, 0, 0, 1, 0, 0, 0, 2}, false},
		{"headers on an even stream", Write, []byte{0, 0, 1, 1, 4, 0, 0, 0, 2, 0x82}, false},
		{"reserved bit", Write, []byte{0, 0, 8, 6, 0, 0x80, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, false},
		{"unknown flag", Write, []byte{0, 0, 8, 6, 2, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, false},
		{"empty", Write, nil, false},
	} {
		if got := joinable(tc.dir, tc.data, len(tc.data)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// A call cut by the capture bound inside its last frame's payload still joins.
	long := append([]byte{0, 0x10, 0, 0, 1, 0, 0, 0, 3}, make([]byte, 0x1000)...) // DATA, 4096 bytes, END_STREAM
	if !joinable(Write, long[:20], len(long)) || joinable(Write, long[:5], len(long)) {
		t.Error("a cut call")
	}
}

// FuzzH2Join: any calls on a connection joined midway: no panic, the bounds hold.
func FuzzH2Join(f *testing.F) {
	c := newConv(f).start(nil, nil)
	h2OpenAIRequest(c, 1, nil)
	h2OpenAIResponse(c, 1)
	h2OpenAIRequest(c, 3, nil)
	f.Add(c.calls[len(c.calls)-2].data, c.calls[len(c.calls)-1].data, c.calls[3].data)
	f.Fuzz(func(t *testing.T, w1, w2, r1 []byte) {
		tr := NewTracker(Options{MaxBuffer: 4096})
		for _, call := range []h2call{{Write, w1, nil}, {Read, r1, nil}, {Write, w2, nil}} {
			for _, ex := range tr.Data(h2Key, call.dir, call.data, len(call.data), t0, nil) {
				Parse(ex)
			}
			checkHeld(t, tr)
		}
		for _, ex := range tr.CloseProcess(h2Key.PID) {
			Parse(ex)
		}
		if tr.Buffered() != 0 {
			t.Fatalf("%d bytes held after the connection closed", tr.Buffered())
		}
	})
}

var _ = http2.SettingMaxFrameSize
