package llm

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2conv writes an HTTP/2 conversation with real frames (x/net/http2's Framer, hpack's Encoder)
// and records it as the client's TLS calls: what is pending in a direction becomes one call
// when flushed.
type h2conv struct {
	t       testing.TB
	calls   []h2call
	pending [2]bytes.Buffer // by side: client (writes), server (reads)
	fr      [2]*http2.Framer
	enc     [2]*hpack.Encoder
	hbuf    [2]bytes.Buffer
}

type h2call struct {
	dir  Direction
	data []byte
	meta any
}

const (
	client = 0
	server = 1
)

func newConv(t testing.TB) *h2conv {
	c := &h2conv{t: t}
	for i := range 2 {
		c.fr[i] = http2.NewFramer(&c.pending[i], nil)
		c.enc[i] = hpack.NewEncoder(&c.hbuf[i])
	}
	return c
}

// start writes the preface and both sides' SETTINGS, and flushes them.
func (c *h2conv) start(clientSettings, serverSettings []http2.Setting) *h2conv {
	c.pending[client].Write(h2Preface)
	c.must(c.fr[client].WriteSettings(clientSettings...))
	c.must(c.fr[client].WriteWindowUpdate(0, 1<<30))
	c.flush(client, "preface")
	c.must(c.fr[server].WriteSettings(serverSettings...))
	c.must(c.fr[server].WriteSettingsAck())
	c.flush(server, nil)
	c.must(c.fr[client].WriteSettingsAck())
	return c
}

func (c *h2conv) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
}

// block HPACK-encodes name/value pairs with the side's encoder.
func (c *h2conv) block(side int, fields ...string) []byte {
	c.hbuf[side].Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		c.must(c.enc[side].WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}))
	}
	return bytes.Clone(c.hbuf[side].Bytes())
}

func (c *h2conv) headers(side int, id uint32, end bool, fields ...string) {
	c.must(c.fr[side].WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(side, fields...), EndStream: end, EndHeaders: true}))
}

// data writes body in DATA frames of at most size bytes, the last one with END_STREAM if end.
func (c *h2conv) data(side int, id uint32, end bool, body []byte, size int) {
	for first := true; first || len(body) > 0; first = false {
		n := min(size, len(body))
		c.must(c.fr[side].WriteData(id, end && n == len(body), body[:n]))
		body = body[n:]
	}
}

func (c *h2conv) flush(side int, meta any) {
	if c.pending[side].Len() == 0 {
		return
	}
	dir := Write
	if side == server {
		dir = Read
	}
	c.calls = append(c.calls, h2call{dir, bytes.Clone(c.pending[side].Bytes()), meta})
	c.pending[side].Reset()
}

// feed gives the recorded calls to tr in pieces of at most piece bytes, each a call of its own.
func feed(tr *Tracker, key Key, calls []h2call, piece int) []Exchange {
	var out []Exchange
	at := t0
	for _, call := range calls {
		for _, p := range split(call.data, piece) {
			at = at.Add(time.Millisecond)
			out = append(out, tr.Data(key, call.dir, p, len(p), at, call.meta)...)
		}
	}
	return out
}

// body is the body of a recorded HTTP/1.1 message.
func body(t testing.TB, name string) []byte {
	t.Helper()
	_, b, ok := bytes.Cut(read(t, name), []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("%s: no body", name)
	}
	return b
}

var h2Key = Key{PID: 9, Conn: 0x20}

var pieces = []int{1 << 20, 1, 7, 13}

var wantToolCalls = &Inference{
	Provider: "openai", API: APIChatCompletions, Method: "POST", Path: "/v1/chat/completions", Host: "api.example.test",
	Status: 200, ProtocolVersion: "2", RequestModel: "gpt-4o-mini", ResponseModel: "gpt-4o-mini-2024-07-18", ResponseID: "chatcmpl-42",
	InputTokens: 57, OutputTokens: 21, HasInputTokens: true, HasOutputTokens: true,
	FinishReasons: []string{"tool_calls"},
	ToolCalls:     []ToolCall{{"export_customer_data", "call_abc"}, {"send_email", "call_def"}},
}

func h2OpenAIRequest(c *h2conv, id uint32, meta any) {
	c.headers(client, id, false, ":method", "POST", ":scheme", "https", ":authority", "api.example.test",
		":path", "/v1/chat/completions", "content-type", "application/json", "authorization", "Bearer sk-test-not-a-key")
	c.flush(client, meta)
	c.data(client, id, true, body(c.t, "openai_tool_calls.req"), 100)
	c.flush(client, "body")
}

func h2OpenAIResponse(c *h2conv, id uint32) {
	c.headers(server, id, false, ":status", "200", "content-type", "application/json")
	c.data(server, id, true, body(c.t, "openai_tool_calls.resp"), 128)
	c.flush(server, nil)
}

// TestH2OpenAIToolCalls: a chat completion over HTTP/2, with every framing a peer may use
// (PADDED and PRIORITY headers, CONTINUATION, padded DATA, PING, WINDOW_UPDATE, an empty
// DATA frame ending the stream), reads as over HTTP/1.1, however the calls split it.
func TestH2OpenAIToolCalls(t *testing.T) {
	c := newConv(t).start([]http2.Setting{{ID: http2.SettingEnablePush, Val: 0}}, []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 100}})
	blk := c.block(client, ":method", "POST", ":scheme", "https", ":authority", "api.example.test", ":path", "/v1/chat/completions",
		"content-type", "application/json", "authorization", "Bearer sk-test-not-a-key")
	c.must(c.fr[client].WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:10], PadLength: 7,
		Priority: http2.PriorityParam{StreamDep: 0, Weight: 15, Exclusive: true}}))
	c.must(c.fr[client].WriteContinuation(1, false, blk[10:20]))
	c.must(c.fr[client].WriteContinuation(1, true, blk[20:]))
	c.flush(client, "request")
	req := body(t, "openai_tool_calls.req")
	c.must(c.fr[client].WriteDataPadded(1, false, req[:50], make([]byte, 20)))
	c.must(c.fr[client].WriteDataPadded(1, true, req[50:], make([]byte, 3)))
	c.flush(client, "body")
	c.must(c.fr[server].WritePing(false, [8]byte{1}))
	c.flush(server, nil)
	c.must(c.fr[client].WritePing(true, [8]byte{1}))
	c.flush(client, "pong")
	c.headers(server, 1, false, ":status", "200", "content-type", "application/json")
	resp := body(t, "openai_tool_calls.resp")
	c.data(server, 1, false, resp, 128)
	c.must(c.fr[server].WriteWindowUpdate(1, 1000))
	c.must(c.fr[server].WriteData(1, true, nil))
	c.flush(server, nil)

	for _, piece := range pieces {
		exs := feed(NewTracker(Options{}), h2Key, c.calls, piece)
		if len(exs) != 1 {
			t.Fatalf("piece %d: %d exchanges: %+v", piece, len(exs), exs)
		}
		ex := exs[0]
		r := ex.Request
		if r.Meta != "request" || r.Proto != "HTTP/2.0" || !r.Complete || r.WireSize != int64(len(req)) || r.Header.Get("Authorization") != "Bearer sk-test-not-a-key" {
			t.Errorf("piece %d: request %+v", piece, r)
		}
		if !ex.Response.Complete || ex.Response.WireSize != int64(len(resp)) || ex.Response.Problem != "" || !ex.Response.End.After(r.Start) {
			t.Errorf("piece %d: response %+v", piece, ex.Response)
		}
		inf, ok := Parse(ex)
		if !ok {
			t.Fatalf("piece %d: not an LLM call", piece)
		}
		check(t, fmt.Sprint("piece ", piece), inf, wantToolCalls)
		if !strings.Contains(inf.InputMessages, "4111 1111 1111 1111") || !strings.Contains(inf.OutputMessages, "call_abc") {
			t.Errorf("piece %d: messages not kept: %q / %q", piece, inf.InputMessages, inf.OutputMessages)
		}
	}
}

// TestH2ConcurrentStreams: two requests in flight at once, their frames interleaved; the
// second one is answered first.
func TestH2ConcurrentStreams(t *testing.T) {
	c := newConv(t).start(nil, nil)
	oreq, oresp := body(t, "openai_tool_calls.req"), body(t, "openai_tool_calls.resp")
	areq, aresp := body(t, "anthropic_tool_use.req"), body(t, "anthropic_tool_use.resp")
	c.headers(client, 1, false, ":method", "POST", ":scheme", "https", ":authority", "api.example.test", ":path", "/v1/chat/completions")
	c.flush(client, "openai")
	c.headers(client, 3, false, ":method", "POST", ":scheme", "https", ":authority", "api.example.test", ":path", "/v1/messages",
		"anthropic-version", "2023-06-01")
	c.data(client, 1, false, oreq[:100], 1<<14)
	c.flush(client, "anthropic")
	c.data(client, 3, true, areq, 1<<14)
	c.data(client, 1, true, oreq[100:], 1<<14)
	c.flush(client, "bodies")
	c.headers(server, 1, false, ":status", "200", "content-type", "application/json")
	c.data(server, 1, false, oresp[:200], 1<<14)
	c.headers(server, 3, false, ":status", "200", "content-type", "application/json")
	c.data(server, 3, false, aresp[:100], 1<<14)
	c.flush(server, nil)
	c.data(server, 3, true, aresp[100:], 1<<14)
	c.data(server, 1, true, oresp[200:], 1<<14)
	c.flush(server, nil)

	for _, piece := range pieces {
		exs := feed(NewTracker(Options{}), h2Key, c.calls, piece)
		if len(exs) != 2 {
			t.Fatalf("piece %d: %d exchanges", piece, len(exs))
		}
		a, _ := Parse(exs[0])
		o, _ := Parse(exs[1])
		if exs[0].Request.Meta != "anthropic" || exs[1].Request.Meta != "openai" || a == nil || o == nil {
			t.Fatalf("piece %d: %+v", piece, exs)
		}
		if a.Provider != "anthropic" || !reflect.DeepEqual(a.ToolCalls, []ToolCall{{"get_balance", "toolu_01A"}}) || a.InputTokens != 400 {
			t.Errorf("piece %d: anthropic %+v", piece, a)
		}
		check(t, fmt.Sprint("piece ", piece), o, wantToolCalls)
	}
}

// TestH2Gzip: a compressed response body is decoded as over HTTP/1.1.
func TestH2Gzip(t *testing.T) {
	c := newConv(t).start(nil, nil)
	h2OpenAIRequest(c, 1, "request")
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(body(t, "openai_tool_calls.resp"))
	zw.Close()
	c.headers(server, 1, false, ":status", "200", "content-type", "application/json", "content-encoding", "gzip")
	c.data(server, 1, true, z.Bytes(), 64)
	c.flush(server, nil)
	for _, piece := range pieces {
		exs := feed(NewTracker(Options{}), h2Key, c.calls, piece)
		if len(exs) != 1 || exs[0].Response.WireSize != int64(z.Len()) || !exs[0].Response.Complete {
			t.Fatalf("piece %d: %+v", piece, exs)
		}
		inf, _ := Parse(exs[0])
		check(t, fmt.Sprint("piece ", piece), inf, wantToolCalls)
	}
}

// TestH2CaptureBound: bodies larger than what the kernel captured of their calls. Bytes missing
// inside a DATA payload leave the body incomplete, and the frames are still followed; bytes
// missing over the next frame's header end the decoding.
func TestH2CaptureBound(t *testing.T) {
	big := []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 1 << 20}}
	c := newConv(t).start(big, big)
	reqBody := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("x", 100000) + `"}]}`)
	respBody := []byte(`{"id":"chatcmpl-9","model":"gpt-4o-mini-2024-07-18","choices":[{"message":{"content":"` + strings.Repeat("y", 100000) + `"}}]}`)
	c.headers(client, 1, false, ":method", "POST", ":scheme", "https", ":authority", "api.example.test", ":path", "/v1/chat/completions")
	c.data(client, 1, true, reqBody, 1<<20)
	c.flush(client, "request")
	c.headers(server, 1, false, ":status", "200", "content-type", "application/json")
	c.data(server, 1, false, respBody, 1<<20)
	c.flush(server, nil)
	c.must(c.fr[server].WriteData(1, true, nil))
	c.flush(server, nil)
	h2OpenAIRequest(c, 3, "second")
	h2OpenAIResponse(c, 3)

	const captured = 4096
	tr := NewTracker(Options{})
	var exs []Exchange
	for _, call := range c.calls {
		n := min(len(call.data), captured)
		exs = append(exs, tr.Data(h2Key, call.dir, call.data[:n], len(call.data), t0, call.meta)...)
	}
	if len(exs) != 2 {
		t.Fatalf("%d exchanges: %+v", len(exs), exs)
	}
	req, resp := exs[0].Request, exs[0].Response
	if req.Complete || req.WireSize != int64(len(reqBody)) || !strings.Contains(req.Problem, "capture bound") {
		t.Errorf("request complete=%v size %d problem %q", req.Complete, req.WireSize, req.Problem)
	}
	if resp.Complete || resp.WireSize != int64(len(respBody)) || !strings.Contains(resp.Problem, "capture bound") {
		t.Errorf("response complete=%v size %d problem %q", resp.Complete, resp.WireSize, resp.Problem)
	}
	inf, _ := Parse(exs[0])
	if inf.RequestModel != "gpt-4o-mini" || inf.ResponseModel != "gpt-4o-mini-2024-07-18" || inf.ResponseBodySize != int64(len(respBody)) ||
		!strings.Contains(inf.ResponseProblem, "capture bound") {
		t.Errorf("%+v", inf)
	}
	if exs[1].Request.Meta != "second" {
		t.Fatalf("the next exchange: %+v", exs[1])
	}
	inf, _ = Parse(exs[1])
	check(t, "after the capture bound", inf, wantToolCalls)

	// The same response with the frame that ends it in the same call: the missing bytes go
	// over that frame's header.
	c = newConv(t).start(big, big)
	h2OpenAIRequest(c, 1, "request")
	c.headers(server, 1, false, ":status", "200")
	c.data(server, 1, false, respBody, 1<<20)
	c.must(c.fr[server].WriteData(1, true, nil))
	c.flush(server, nil)
	tr = NewTracker(Options{})
	exs = nil
	for _, call := range c.calls {
		n := min(len(call.data), captured)
		exs = append(exs, tr.Data(h2Key, call.dir, call.data[:n], len(call.data), t0, call.meta)...)
	}
	if len(exs) != 2 || exs[0].Request.Meta != "request" || exs[0].Response == nil || exs[0].Response.Complete ||
		exs[1].Unparsed != errFramesLost {
		t.Fatalf("%+v", exs)
	}
}

// TestH2HPACKTable: header blocks refer to fields of earlier ones (the dynamic table), and
// each side's table size is the one its peer announced. A pushed request's block, decoded only
// to keep the table in step, is not an exchange.
func TestH2HPACKTable(t *testing.T) {
	// The client decodes with a 16 KiB table, the server with an 8 KiB one: each encoder
	// grows its table to what its peer allows.
	c := newConv(t).start([]http2.Setting{{ID: http2.SettingHeaderTableSize, Val: 16384}},
		[]http2.Setting{{ID: http2.SettingHeaderTableSize, Val: 8192}})
	c.enc[client].SetMaxDynamicTableSizeLimit(8192)
	c.enc[client].SetMaxDynamicTableSize(8192)
	c.enc[server].SetMaxDynamicTableSizeLimit(16384)
	c.enc[server].SetMaxDynamicTableSize(16384)
	var sizes []int
	for i, id := range []uint32{1, 3} {
		before := len(c.calls)
		h2OpenAIRequest(c, id, fmt.Sprint("request ", i))
		sizes = append(sizes, len(c.calls[before].data))
		c.must(c.fr[server].WritePushPromise(http2.PushPromiseParam{StreamID: id, PromiseID: 2 + 2*uint32(i), EndHeaders: true,
			BlockFragment: c.block(server, ":method", "GET", ":path", "/pushed", "x-pushed", "yes")}))
		c.headers(server, id, false, ":status", "200", "content-type", "application/json", "x-pushed", "yes")
		c.data(server, id, true, body(t, "openai_tool_calls.resp"), 1<<14)
		c.flush(server, nil)
	}
	if sizes[1] >= sizes[0] {
		t.Fatalf("the second request's headers (%d bytes) are not smaller than the first's (%d): no table reuse", sizes[1], sizes[0])
	}
	for _, piece := range pieces {
		exs := feed(NewTracker(Options{}), h2Key, c.calls, piece)
		if len(exs) != 2 {
			t.Fatalf("piece %d: %+v", piece, exs)
		}
		for i, ex := range exs {
			if ex.Request == nil || ex.Response == nil {
				t.Fatalf("piece %d: exchange %d: %+v", piece, i, ex)
			}
			if ex.Request.Meta != fmt.Sprint("request ", i) || ex.Request.Header.Get("Authorization") != "Bearer sk-test-not-a-key" ||
				ex.Response.Header.Get("X-Pushed") != "yes" {
				t.Errorf("piece %d: exchange %d: %+v / %+v", piece, i, ex.Request, ex.Response)
			}
			inf, _ := Parse(ex)
			check(t, fmt.Sprint("piece ", piece), inf, wantToolCalls)
		}
	}

	// Without the server's SETTINGS_HEADER_TABLE_SIZE, the client may not grow its table: the
	// block that does is an HPACK error, and the connection is no longer decoded.
	c = newConv(t).start(nil, nil)
	c.enc[client].SetMaxDynamicTableSizeLimit(8192)
	c.enc[client].SetMaxDynamicTableSize(8192)
	h2OpenAIRequest(c, 1, "request")
	exs := feed(NewTracker(Options{}), h2Key, c.calls, 1<<20)
	if len(exs) != 1 || !strings.HasPrefix(exs[0].Unparsed, "HTTP/2: HPACK") {
		t.Fatalf("%+v", exs)
	}
}

// TestH2Trailers: fields after the body (a second HEADERS, with END_STREAM) end the message;
// an informational response (1xx) before the final one is passed over.
func TestH2Trailers(t *testing.T) {
	c := newConv(t).start(nil, nil)
	c.headers(client, 1, false, ":method", "POST", ":scheme", "https", ":authority", "api.example.test", ":path", "/v1/chat/completions")
	c.data(client, 1, false, body(t, "openai_tool_calls.req"), 1<<14)
	c.headers(client, 1, true, "x-checksum", "1")
	c.flush(client, "request")
	c.headers(server, 1, false, ":status", "103", "link", "</style.css>; rel=preload")
	c.headers(server, 1, false, ":status", "200")
	c.data(server, 1, false, body(t, "openai_tool_calls.resp"), 1<<14)
	c.headers(server, 1, true, "x-usage", "ok")
	c.flush(server, nil)
	exs := feed(NewTracker(Options{}), h2Key, c.calls, 1<<20)
	if len(exs) != 1 || !exs[0].Request.Complete || !exs[0].Response.Complete {
		t.Fatalf("%+v", exs)
	}
	inf, _ := Parse(exs[0])
	check(t, "trailers", inf, wantToolCalls)
}

// TestH2Reset: streams reset by either side come out with what was seen and why; the
// connection goes on.
func TestH2Reset(t *testing.T) {
	c := newConv(t).start(nil, nil)
	h2OpenAIRequest(c, 1, "cancelled")
	c.must(c.fr[client].WriteRSTStream(1, http2.ErrCodeCancel))
	c.flush(client, nil)
	h2OpenAIRequest(c, 3, "failed")
	c.headers(server, 3, false, ":status", "200")
	c.data(server, 3, false, body(t, "openai_tool_calls.resp")[:100], 1<<14)
	c.must(c.fr[server].WriteRSTStream(3, http2.ErrCodeInternal))
	c.flush(server, nil)
	h2OpenAIRequest(c, 5, "fine")
	h2OpenAIResponse(c, 5)
	exs := feed(NewTracker(Options{}), h2Key, c.calls, 1<<20)
	if len(exs) != 3 {
		t.Fatalf("%d exchanges: %+v", len(exs), exs)
	}
	cancelled, _ := Parse(exs[0])
	if exs[0].Request.Meta != "cancelled" || !cancelled.NoResponse || cancelled.ResponseProblem != "HTTP/2 stream reset by the client (CANCEL)" {
		t.Errorf("cancelled: %+v", cancelled)
	}
	failed, _ := Parse(exs[1])
	if exs[1].Request.Meta != "failed" || exs[1].Response.Complete || exs[1].Response.WireSize != 100 ||
		failed.ResponseProblem != "HTTP/2 stream reset by the server (INTERNAL_ERROR)" {
		t.Errorf("failed: %+v / %+v", exs[1].Response, failed)
	}
	fine, _ := Parse(exs[2])
	check(t, "after the resets", fine, wantToolCalls)
}

// TestH2GoAway: the streams after the last one a server's GOAWAY names were not processed.
func TestH2GoAway(t *testing.T) {
	c := newConv(t).start(nil, nil)
	h2OpenAIRequest(c, 1, "processed")
	h2OpenAIRequest(c, 3, "refused")
	c.must(c.fr[server].WriteGoAway(1, http2.ErrCodeNo, []byte("bye")))
	c.flush(server, nil)
	h2OpenAIResponse(c, 1)
	exs := feed(NewTracker(Options{}), h2Key, c.calls, 1<<20)
	if len(exs) != 2 || exs[0].Request.Meta != "refused" || !strings.Contains(exs[0].ResponseProblem, "GOAWAY") ||
		exs[1].Request.Meta != "processed" || exs[1].Response == nil {
		t.Fatalf("%+v", exs)
	}
}

// TestH2Malformed: frames the endpoints would reject end the decoding; the request waiting
// comes out, and the connection is reported once with its sizes, then ignored.
func TestH2Malformed(t *testing.T) {
	for _, tc := range []struct {
		name, unparsed string
		frame          []byte
	}{
		{"length", "HTTP/2: DATA frame of 16777215 bytes, over the 16384-byte maximum frame size", []byte{0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1}},
		{"settings", "HTTP/2: malformed SETTINGS frame of 7 bytes", []byte{0, 0, 7, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7}},
		{"padding", "HTTP/2: DATA frame padding longer than the frame", []byte{0, 0, 3, 0, flagPadded, 0, 0, 0, 1, 9, 0, 0}},
		{"interleaved", "HTTP/2: header block interrupted by a PING frame", append([]byte{0, 0, 1, 1, 0, 0, 0, 0, 1, 0x88}, 0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"hpack", "HTTP/2: HPACK decoding error: invalid indexed representation index 63", []byte{0, 0, 1, 1, flagEndHeaders, 0, 0, 0, 1, 0xbf}},
	} {
		c := newConv(t).start(nil, nil)
		h2OpenAIRequest(c, 1, "request")
		c.pending[server].Write(tc.frame)
		c.flush(server, nil)
		tr := NewTracker(Options{})
		exs := feed(tr, h2Key, c.calls, 1<<20)
		var written, readn int64
		for _, call := range c.calls {
			if call.dir == Write {
				written += int64(len(call.data))
			} else {
				readn += int64(len(call.data))
			}
		}
		if len(exs) != 2 || exs[0].Request.Meta != "request" || exs[0].ResponseProblem != tc.unparsed ||
			exs[1].Unparsed != tc.unparsed || exs[1].BytesWritten != written || exs[1].BytesRead != readn || exs[1].Meta != "preface" {
			t.Errorf("%s: %+v", tc.name, exs)
			continue
		}
		ignoresLaterTraffic(t, tr, h2Key)
	}
}

// TestH2MissingInHeaders: bytes missing inside a HEADERS frame lose the HPACK state.
func TestH2MissingInHeaders(t *testing.T) {
	c := newConv(t).start(nil, nil)
	h2OpenAIRequest(c, 1, "request")
	h2OpenAIResponse(c, 1)
	tr := NewTracker(Options{})
	var exs []Exchange
	for i, call := range c.calls {
		data := call.data
		if call.meta == "request" {
			data = data[:frameHeaderLen+5]
		}
		exs = append(exs, tr.Data(h2Key, call.dir, data, len(call.data), t0.Add(time.Duration(i)), call.meta)...)
	}
	if len(exs) != 1 || exs[0].Unparsed != errFramesLost {
		t.Fatalf("%+v", exs)
	}
}

// TestH2Drain: what a connection has pending comes out when it closes or idles.
func TestH2Drain(t *testing.T) {
	c := newConv(t).start(nil, nil)
	h2OpenAIRequest(c, 1, "unanswered")
	h2OpenAIRequest(c, 3, "half answered")
	c.headers(server, 3, false, ":status", "200")
	c.data(server, 3, false, []byte(`{"id":`), 1<<14)
	c.flush(server, nil)

	tr := NewTracker(Options{})
	feed(tr, h2Key, c.calls, 1<<20)
	if exs := tr.Flush(t0.Add(time.Hour), time.Second); len(exs) != 0 {
		t.Fatalf("flushed %+v", exs)
	}
	exs := tr.Close(h2Key)
	if len(exs) != 2 || exs[0].Request.Meta != "unanswered" || exs[0].ResponseProblem != "connection ended before the response was complete" ||
		exs[1].Request.Meta != "half answered" || exs[1].Response == nil || exs[1].Response.Complete ||
		exs[1].Response.Problem != "connection ended before the response was complete" {
		t.Fatalf("close: %+v", exs)
	}
	if inf, _ := Parse(exs[0]); !inf.NoResponse {
		t.Errorf("%+v", inf)
	}

	tr = NewTracker(Options{IdleTimeout: time.Second})
	feed(tr, h2Key, c.calls, 1<<20)
	if exs := tr.Expire(t0.Add(time.Hour)); len(exs) != 2 || exs[0].ResponseProblem != "connection idle before the response was complete" {
		t.Fatalf("expire: %+v", exs)
	}
	tr = NewTracker(Options{})
	feed(tr, h2Key, c.calls, 1<<20)
	if exs := tr.CloseProcess(h2Key.PID); len(exs) != 2 || tr.Connections() != 0 {
		t.Fatalf("close process: %+v", exs)
	}
}

// TestH2Bounds: streams and bodies held are bounded.
func TestH2Bounds(t *testing.T) {
	c := newConv(t).start(nil, nil)
	for i := range maxH2Streams + 10 {
		c.headers(client, uint32(2*i+1), true, ":method", "POST", ":scheme", "https", ":authority", "a", ":path", fmt.Sprint("/v1/chat/completions?", i))
	}
	c.flush(client, "requests")
	c.headers(server, 1, false, ":status", "200")
	c.data(server, 1, true, bytes.Repeat([]byte("z"), 10000), 1<<14)
	c.flush(server, nil)
	tr := NewTracker(Options{MaxBuffer: 4096})
	exs := feed(tr, h2Key, c.calls, 1<<20)
	if len(exs) != 10 || !strings.Contains(exs[0].ResponseProblem, "streams open at once") || exs[0].Request.Target != "/v1/chat/completions?0" {
		t.Fatalf("%d exchanges: %+v", len(exs), exs[:min(len(exs), 2)])
	}
	if n := len(tr.conns[h2Key].h2.streams); n != maxH2Streams {
		t.Fatalf("%d streams", n)
	}
	// Stream 1 was given up: its response is not followed. A response to a stream followed is
	// kept up to the buffer.
	c.calls = nil
	id := uint32(2*(maxH2Streams+9) + 1)
	c.headers(server, id, false, ":status", "200")
	c.data(server, id, true, bytes.Repeat([]byte("z"), 10000), 1<<14)
	c.flush(server, nil)
	exs = feed(tr, h2Key, c.calls, 1<<20)
	if len(exs) != 1 || len(exs[0].Response.Body) != 4096 || exs[0].Response.WireSize != 10000 || !strings.Contains(exs[0].Response.Problem, "buffer") {
		t.Fatalf("%+v", exs)
	}
}

// TestH2PrefaceSplit: a preface written in pieces, or bytes that only begin like one.
func TestH2PrefaceSplit(t *testing.T) {
	tr := NewTracker(Options{})
	for _, b := range h2Preface[:10] {
		if exs := tr.Data(h2Key, Write, []byte{b}, 1, t0, nil); len(exs) != 0 {
			t.Fatalf("%+v", exs)
		}
	}
	if exs := tr.Data(h2Key, Write, h2Preface[10:], len(h2Preface)-10, t0, nil); len(exs) != 0 || tr.conns[h2Key].h2 == nil {
		t.Fatalf("%+v", exs)
	}
	// Missing bytes inside the preface.
	tr = NewTracker(Options{})
	if exs := tr.Data(h2Key, Write, h2Preface[:5], 100, t0, "m"); len(exs) != 1 || exs[0].Unparsed != errFramesLost {
		t.Fatalf("%+v", exs)
	}
	// A PUT written byte by byte begins like the preface ("P"): it is an HTTP/1.1 request.
	tr = NewTracker(Options{})
	put := []byte("PUT /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
	for _, b := range put {
		tr.Data(h2Key, Write, []byte{b}, 1, t0, nil)
	}
	resp := []byte("HTTP/1.1 204 No Content\r\n\r\n")
	if exs := tr.Data(h2Key, Read, resp, len(resp), t0, nil); len(exs) != 1 || exs[0].Request.Method != "PUT" {
		t.Fatalf("%+v", exs)
	}
}

// recConn records a client's reads and writes as the TLS probes see them: a write when it
// starts, a read when it returns.
type recConn struct {
	net.Conn
	mu    *sync.Mutex
	calls *[]h2call
}

func (c recConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	*c.calls = append(*c.calls, h2call{Write, bytes.Clone(p), len(*c.calls)})
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		*c.calls = append(*c.calls, h2call{Read, bytes.Clone(p[:n]), len(*c.calls)})
		c.mu.Unlock()
	}
	return n, err
}

// TestH2NetHTTP: net/http's own HTTP/2 client and server (unencrypted, with prior knowledge,
// the same frames as over TLS), two calls at once and a large response.
func TestH2NetHTTP(t *testing.T) {
	large := []byte(`{"id":"chatcmpl-big","model":"m-large","choices":[{"finish_reason":"stop","message":{"content":"` +
		strings.Repeat("w", 300000) + `"}}]}`)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("large") != "" {
			w.Write(large)
			return
		}
		w.Write(body(t, "openai_tool_calls.resp"))
	})
	mux.HandleFunc("POST /v1/messages", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body(t, "anthropic_tool_use.resp"))
	})
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protos}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	var mu sync.Mutex
	var calls []h2call
	tr := &http.Transport{Protocols: &protos, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		return recConn{conn, &mu, &calls}, err
	}}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	post := func(path, name string) {
		req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+path, bytes.NewReader(body(t, name)))
		req.Header.Set("Authorization", "Bearer sk-test-not-a-key")
		resp, err := hc.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("%s over %s", path, resp.Proto)
		}
	}
	// The first call opens the connection the others share.
	post("/v1/chat/completions", "openai_tool_calls.req")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); post("/v1/messages", "anthropic_tool_use.req") }()
	go func() { defer wg.Done(); post("/v1/chat/completions?large=1", "openai_tool_calls.req") }()
	wg.Wait()
	tr.CloseIdleConnections()
	mu.Lock()
	defer mu.Unlock()

	for _, piece := range []int{1 << 20, 1, 1000} {
		exs := feed(NewTracker(Options{}), h2Key, calls, piece)
		if len(exs) != 3 {
			t.Fatalf("piece %d: %d exchanges", piece, len(exs))
		}
		seen := map[string]bool{}
		for _, ex := range exs {
			inf, ok := Parse(ex)
			if !ok || ex.Response == nil || !ex.Response.Complete || inf.Status != 200 {
				t.Fatalf("piece %d: %+v", piece, ex)
			}
			switch {
			case inf.Provider == "anthropic":
				seen["anthropic"] = reflect.DeepEqual(inf.ToolCalls, []ToolCall{{"get_balance", "toolu_01A"}})
			case inf.ResponseModel == "m-large":
				seen["large"] = inf.ResponseBodySize == int64(len(large)) && inf.ResponseProblem == ""
			default:
				inf.Host = "api.example.test" // the test server's address
				check(t, fmt.Sprint("piece ", piece), inf, wantToolCalls)
				seen["openai"] = true
			}
		}
		if !seen["anthropic"] || !seen["large"] || !seen["openai"] {
			t.Errorf("piece %d: %v", piece, seen)
		}
	}
}

// FuzzH2: frames of anything, split anywhere, with bytes missing: no panic, bounded memory.
func FuzzH2(f *testing.F) {
	c := newConv(f).start(nil, nil)
	h2OpenAIRequest(c, 1, nil)
	h2OpenAIResponse(c, 1)
	var w, r []byte
	for _, call := range c.calls {
		if call.dir == Write {
			w = append(w, call.data...)
		} else {
			r = append(r, call.data...)
		}
	}
	f.Add(w[len(h2Preface):], r, uint8(7), uint16(0))
	f.Add(w[len(h2Preface):], r, uint8(100), uint16(5))
	w, r = h2Seed(f)
	f.Add(w[len(h2Preface):], r, uint8(31), uint16(0))
	f.Fuzz(func(t *testing.T, w, r []byte, step uint8, missing uint16) {
		tr := NewTracker(Options{MaxBuffer: 4096, MaxTotalBuffer: 64 << 10})
		tr.Data(h2Key, Write, h2Preface, len(h2Preface), t0, nil)
		n := int(step) + 1
		ws, rs := split(w, n), split(r, n)
		for i := 0; i < max(len(ws), len(rs)); i++ {
			if i < len(ws) {
				for _, ex := range tr.Data(h2Key, Write, ws[i], len(ws[i])+int(missing%3), t0, nil) {
					Parse(ex)
				}
			}
			if i < len(rs) {
				for _, ex := range tr.Data(h2Key, Read, rs[i], len(rs[i]), t0, nil) {
					Parse(ex)
				}
			}
			if c := tr.conns[h2Key]; c != nil && c.h2 != nil {
				h := c.h2
				if len(h.streams) > maxH2Streams || len(h.out.buf)+len(h.in.buf) > 2*maxHeaderBytes || len(h.out.block)+len(h.in.block) > 2*maxHeaderBytes {
					t.Fatalf("unbounded: %d streams, buffers %d %d", len(h.streams), len(h.out.buf), len(h.in.buf))
				}
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
