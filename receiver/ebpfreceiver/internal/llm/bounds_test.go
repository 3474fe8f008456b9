package llm

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/textproto"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"golang.org/x/net/http2"
)

// checkHeld fails when the bytes the Tracker says it holds are over MaxTotalBuffer, or are not
// what its connections hold.
func checkHeld(t testing.TB, tr *Tracker) {
	t.Helper()
	var sum int64
	for _, c := range tr.conns {
		sum += c.size()
	}
	if tr.Buffered() != sum {
		t.Fatalf("Buffered() %d, but the connections hold %d", tr.Buffered(), sum)
	}
	if sum > int64(tr.opts.MaxTotalBuffer) {
		t.Fatalf("%d bytes held, over the %d-byte total", sum, tr.opts.MaxTotalBuffer)
	}
}

// feedChecked gives tr one call and checks the bound after it.
func feedChecked(t testing.TB, tr *Tracker, key Key, dir Direction, data []byte, total int) []Exchange {
	t.Helper()
	exs := tr.Data(key, dir, data, total, t0, nil)
	checkHeld(t, tr)
	return exs
}

func gzipped(t testing.TB, b []byte, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	for range n {
		if _, err := zw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func brotlied(t testing.TB, b []byte, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	bw := brotli.NewWriterLevel(&buf, brotli.BestSpeed)
	for range n {
		if _, err := bw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const okReq = "POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nContent-Length: 2\r\n\r\n{}"

// TestAdversarialBounds: what a traced program can make the Tracker hold stays within its
// bounds, and each cut is counted under its reason.
func TestAdversarialBounds(t *testing.T) {
	small := Options{MaxBuffer: 64 << 10, MaxTotalBuffer: 1 << 20, MaxConnections: 64}
	key := Key{PID: 1, Conn: 1}

	t.Run("1 GiB content-length", func(t *testing.T) {
		tr := NewTracker(small)
		feedChecked(t, tr, key, Write, []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nContent-Length: 1073741824\r\n\r\n"), 0x4b)
		chunk := bytes.Repeat([]byte("a"), 16<<10)
		for range 256 { // 4 MiB captured
			feedChecked(t, tr, key, Write, chunk, len(chunk))
		}
		// The rest of the gigabyte, over the capture bound.
		for range 60 {
			feedChecked(t, tr, key, Write, chunk, 16<<20)
		}
		if tr.Buffered() > int64(small.MaxBuffer)+1024 {
			t.Errorf("%d bytes held for one body", tr.Buffered())
		}
		if st := tr.Stats(); st.BodiesOverBuffer != 1 {
			t.Errorf("%+v", st)
		}
		exs := tr.Close(key)
		if len(exs) != 1 || len(exs[0].Request.Body) != small.MaxBuffer || exs[0].Request.Complete {
			t.Fatalf("%+v", exs)
		}
	})

	t.Run("endless chunked body", func(t *testing.T) {
		tr := NewTracker(small)
		feedChecked(t, tr, key, Write, []byte(okReq), len(okReq))
		feedChecked(t, tr, key, Read, []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 47)
		chunk := []byte("2000\r\n" + strings.Repeat("c", 0x2000) + "\r\n")
		for range 1000 {
			if exs := feedChecked(t, tr, key, Read, chunk, len(chunk)); len(exs) != 0 {
				t.Fatalf("%+v", exs)
			}
		}
		if st := tr.Stats(); st.BodiesOverBuffer != 1 {
			t.Errorf("%+v", st)
		}
	})

	// A compression bomb in a response is cut at maxDecoded; a request is held until its
	// response, so its decoded body takes from the total buffer.
	for _, bomb := range []struct {
		name, encoding string
		compress       func(testing.TB, []byte, int) []byte
	}{{"gzip bomb", "gzip", gzipped}, {"brotli bomb", "br", brotlied}} {
		t.Run(bomb.name, func(t *testing.T) {
			body := bomb.compress(t, make([]byte, 1<<20), 64) // 64 MiB of zeros
			resp := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s", bomb.encoding, len(body), body)
			tr := NewTracker(Options{MaxTotalBuffer: 16 << 20})
			feedChecked(t, tr, key, Write, []byte(okReq), len(okReq))
			exs := feedChecked(t, tr, key, Read, resp, len(resp))
			if len(exs) != 1 || len(exs[0].Response.Body) != maxDecoded || exs[0].Response.Complete || !strings.Contains(exs[0].Response.Problem, "decompressed body over") {
				t.Fatalf("%d exchanges: %+v", len(exs), exs[0].Response.Problem)
			}
			if st := tr.Stats(); st.DecodedCut != 1 {
				t.Errorf("%+v", st)
			}
			req := fmt.Appendf(nil, "POST /v1/chat/completions HTTP/1.1\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s", bomb.encoding, len(body), body)
			tr = NewTracker(small)
			for i := range 8 {
				feedChecked(t, tr, Key{PID: 1, Conn: uint64(i)}, Write, req, len(req))
			}
			if st := tr.Stats(); st.BodiesCut == 0 {
				t.Errorf("%+v", st)
			}
		})
	}

	t.Run("10k HTTP/2 streams", func(t *testing.T) {
		c := newConv(t).start(nil, nil)
		for i := range 10000 {
			c.headers(client, uint32(2*i+1), false, ":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/v1/chat/completions", "x-pad", strings.Repeat("p", 200))
			c.data(client, uint32(2*i+1), false, bytes.Repeat([]byte("d"), 1000), 1000)
			c.flush(client, nil)
		}
		tr := NewTracker(small)
		for _, call := range c.calls {
			feedChecked(t, tr, h2Key, call.dir, call.data, len(call.data))
		}
		if h := tr.conns[h2Key].h2; h != nil && len(h.streams) > maxH2Streams {
			t.Errorf("%d streams", len(h.streams))
		}
		if st := tr.Stats(); st.StreamsGivenUp != 10000-maxH2Streams {
			t.Errorf("%+v", st)
		}
	})

	t.Run("HPACK tables of 64 KiB on many connections", func(t *testing.T) {
		c := newConv(t).start([]http2.Setting{{ID: http2.SettingHeaderTableSize, Val: 1 << 20}}, []http2.Setting{{ID: http2.SettingHeaderTableSize, Val: 1 << 20}})
		tr := NewTracker(small)
		var unparsed int
		for i := range small.MaxConnections {
			for _, call := range c.calls {
				for _, ex := range feedChecked(t, tr, Key{PID: 1, Conn: uint64(i)}, call.dir, call.data, len(call.data)) {
					if ex.Unparsed == "HTTP/2: "+errTotalBuffer {
						unparsed++
					}
				}
			}
		}
		if st := tr.Stats(); st.ConnectionsCut == 0 || unparsed == 0 {
			t.Errorf("%+v, %d unparsed", st, unparsed)
		}
	})

	t.Run("never-ending SSE event", func(t *testing.T) {
		tr := NewTracker(small)
		feedChecked(t, tr, key, Write, []byte(okReq), len(okReq))
		feedChecked(t, tr, key, Read, []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: {\"choices\":[{\"delta\":{\"content\":\""), 100)
		part := bytes.Repeat([]byte("x"), 16<<10)
		for range 256 {
			feedChecked(t, tr, key, Read, part, len(part))
		}
		exs := tr.Close(key)
		if len(exs) != 1 || len(exs[0].Response.Body) > small.MaxBuffer {
			t.Fatalf("%+v", exs)
		}
		if inf, ok := Parse(exs[0]); !ok || inf.ResponseProblem == "" {
			t.Errorf("%+v", inf)
		}
	})

	t.Run("headers that never end, on many connections", func(t *testing.T) {
		tr := NewTracker(small)
		head := []byte("POST /v1/chat/completions HTTP/1.1\r\n")
		line := []byte("X-A: " + strings.Repeat("h", 1000) + "\r\n")
		for i := range small.MaxConnections {
			k := Key{PID: 1, Conn: uint64(i)}
			feedChecked(t, tr, k, Write, head, len(head))
			for range 60 {
				feedChecked(t, tr, k, Write, line, len(line))
			}
		}
		if st := tr.Stats(); st.ConnectionsCut == 0 {
			t.Errorf("%+v", st)
		}
	})

	t.Run("pending requests with large headers", func(t *testing.T) {
		tr := NewTracker(small)
		req := []byte("POST /v1/chat/completions HTTP/1.1\r\nX-A: " + strings.Repeat("h", 30000) + "\r\nContent-Length: 0\r\n\r\n")
		var given int
		for range 200 {
			for _, ex := range feedChecked(t, tr, key, Write, req, len(req)) {
				if ex.ResponseProblem == errTotalBuffer {
					given++
				}
			}
		}
		if st := tr.Stats(); st.ConnectionsCut == 0 || given == 0 {
			t.Errorf("%+v, %d given up", st, given)
		}
		// The responses of the requests given up answer none of the later requests.
		c := tr.conns[key]
		pending, orphans := len(c.pending), c.orphans
		resp := []byte("HTTP/1.1 204 No Content\r\n\r\n")
		var exs []Exchange
		for range orphans + pending {
			exs = append(exs, feedChecked(t, tr, key, Read, resp, len(resp))...)
		}
		if len(exs) != pending {
			t.Errorf("%d exchanges, want %d", len(exs), pending)
		}
	})

	t.Run("many header fields", func(t *testing.T) {
		tr := NewTracker(Options{})
		req := []byte("POST /v1/chat/completions HTTP/1.1\r\n" + strings.Repeat("a:\r\n", 16000) + "Content-Length: 0\r\n\r\n")
		feedChecked(t, tr, key, Write, req, len(req))
		m := tr.conns[key].pending[0]
		if n := len(m.Header["A"]); n*(1+fieldOverhead) > maxHeaderBytes || !strings.Contains(m.Problem, "header list") {
			t.Errorf("%d fields kept, problem %q", n, m.Problem)
		}
		if st := tr.Stats(); st.HeadersCut != 1 {
			t.Errorf("%+v", st)
		}
	})
}

// TestResyncEmitsLost: a message whose framing was lost comes out, marked, when the next one
// starts; the response it was is paired with its own request.
func TestResyncEmitsLost(t *testing.T) {
	tr := NewTracker(Options{})
	key := Key{PID: 1, Conn: 1}
	tr.Data(key, Write, []byte(okReq), len(okReq), t0, "first")
	head := []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123")
	if exs := tr.Data(key, Read, head, len(head)+100, t0, nil); len(exs) != 0 {
		t.Fatalf("%+v", exs)
	}
	tr.Data(key, Write, []byte(okReq), len(okReq), t0.Add(time.Millisecond), "second")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
	exs := tr.Data(key, Read, resp, len(resp), t0, nil)
	if len(exs) != 2 || exs[0].Request.Meta != "first" || exs[0].Response.Complete || exs[1].Request.Meta != "second" || !exs[1].Response.Complete {
		t.Fatalf("%+v", exs)
	}
}

// TestListedBound: a response naming thousands of tool calls lists maxListed of them and says
// so; a stream of thousands of finish reasons the same.
func TestListedBound(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"choices":[{"finish_reason":"tool_calls","message":{"tool_calls":[`)
	for i := range 5000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"c%d","function":{"name":"f"}}`, i)
	}
	b.WriteString(`]}}]}`)
	var sse strings.Builder
	for range 5000 {
		sse.WriteString(`data: {"choices":[{"finish_reason":"stop","delta":{"tool_calls":[{"function":{"name":"g"}}]}}]}` + "\n\n")
	}
	for _, resp := range []*Message{
		{Status: 200, Header: textproto.MIMEHeader{}, Body: []byte(b.String())},
		{Status: 200, Header: textproto.MIMEHeader{"Content-Type": {"text/event-stream"}}, Body: []byte(sse.String())},
	} {
		inf, _ := Parse(Exchange{Request: &Message{Method: "POST", Target: "/v1/chat/completions", Body: []byte(`{}`)}, Response: resp})
		if len(inf.ToolCalls) != maxListed || len(inf.FinishReasons) > maxListed || !strings.Contains(inf.ResponseProblem, "not listed") {
			t.Errorf("%d tool calls, %d finish reasons, problem %q", len(inf.ToolCalls), len(inf.FinishReasons), inf.ResponseProblem)
		}
	}
}

// TestHeapBounded: the heap a Tracker takes under traffic made to hold as much as it can
// (thousands of minimal requests waiting, thousands of HTTP/2 streams open) stays near
// MaxTotalBuffer: what it counts is what it holds, per-object costs included.
func TestHeapBounded(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const conns = 256
	opts := Options{MaxTotalBuffer: 4 << 20, MaxConnections: conns}
	c := newConv(t).start(nil, nil)
	for i := range maxH2Streams {
		c.headers(client, uint32(2*i+1), false, ":method", "GET", ":path", "/", ":scheme", "https")
	}
	c.flush(client, nil)
	req := []byte("GET / HTTP/1.1\r\n\r\n")
	for _, h2 := range []bool{false, true} {
		before := heap()
		tr := NewTracker(opts)
		for k := range conns {
			key := Key{PID: 1, Conn: uint64(k)}
			if h2 {
				for _, call := range c.calls {
					tr.Data(key, call.dir, call.data, len(call.data), t0, nil)
				}
				continue
			}
			for range maxPending {
				tr.Data(key, Write, req, len(req), t0, nil)
			}
		}
		// Besides what is counted: a connection's own state (its structs, HTTP/2's decoders).
		grew := int64(heap()) - int64(before)
		if limit := int64(opts.MaxTotalBuffer) + conns*8<<10; grew > limit {
			t.Errorf("HTTP/2 %v: the heap grew by %d bytes (%d counted), over %d", h2, grew, tr.Buffered(), limit)
		}
		t.Logf("HTTP/2 %v: the heap grew by %d bytes (%d counted)", h2, grew, tr.Buffered())
		runtime.KeepAlive(tr)
	}
}

// TestEventsBound: a stream of more events than any answer has is read up to maxEvents, and
// says so.
func TestEventsBound(t *testing.T) {
	body := bytes.Repeat([]byte("data: {}\n\n"), maxEvents+10)
	body = append(body, `data: {"choices":[{"finish_reason":"stop"}]}`+"\n\n"...)
	inf, _ := Parse(Exchange{Request: &Message{Method: "POST", Target: "/v1/chat/completions", Body: []byte(`{}`)},
		Response: &Message{Status: 200, Header: textproto.MIMEHeader{"Content-Type": {"text/event-stream"}}, Body: body}})
	if len(inf.FinishReasons) != 0 || !strings.Contains(inf.ResponseProblem, "events in the stream") {
		t.Errorf("finish reasons %v, problem %q", inf.FinishReasons, inf.ResponseProblem)
	}
}

// TestDrainDecodedBound: connections ended together (a process's, idle ones) whose partial
// responses decompress to much more than they hold come out decoded within what
// MaxTotalBuffer had left, all of them together: the exchanges of one call are in memory at
// once.
func TestDrainDecodedBound(t *testing.T) {
	bomb := gzipped(t, make([]byte, 1<<20), 1)
	resp := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s", len(bomb)+100, bomb)
	opts := Options{MaxTotalBuffer: 1 << 20, MaxConnections: 100}
	for _, end := range []string{"process", "idle"} {
		tr := NewTracker(opts)
		for i := range 50 {
			key := Key{PID: 1, Conn: uint64(i)}
			feedChecked(t, tr, key, Write, []byte(okReq), len(okReq))
			feedChecked(t, tr, key, Read, resp, len(resp))
		}
		var exs []Exchange
		if end == "process" {
			exs = tr.CloseProcess(1)
		} else {
			exs = tr.Expire(t0.Add(time.Hour))
		}
		var decoded int
		for _, ex := range exs {
			decoded += len(ex.Response.Body)
		}
		if len(exs) != 50 || decoded > opts.MaxTotalBuffer {
			t.Errorf("%s: %d exchanges, %d bytes decoded at once", end, len(exs), decoded)
		}
	}
}

// TestBrotliResponse: a brotli-encoded response (Content-Encoding: br) is decoded like gzip, in
// whatever pieces it is read, and a truncated one says so.
func TestBrotliResponse(t *testing.T) {
	raw := read(t, "openai_tool_calls.resp")
	i := bytes.Index(raw, []byte("\r\n\r\n"))
	body := brotlied(t, raw[i+4:], 1)
	resp := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: br\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	for _, sp := range splits {
		exs := replay(t, NewTracker(Options{}), read(t, "openai_tool_calls.req"), resp, sp.w, sp.r)
		if len(exs) != 1 {
			t.Fatalf("%v: %d exchanges", sp, len(exs))
		}
		inf, _ := Parse(exs[0])
		if inf.ResponseModel != "gpt-4o-mini-2024-07-18" || inf.ResponseID != "chatcmpl-42" || inf.OutputTokens != 21 ||
			len(inf.ToolCalls) != 2 || inf.ResponseProblem != "" || !exs[0].Response.Complete {
			t.Errorf("%v: %+v (problem %q)", sp, inf, exs[0].Response.Problem)
		}
	}
	m := &Message{Header: textproto.MIMEHeader{"Content-Encoding": {"br"}}, Body: body[:len(body)/2], Complete: true}
	decode(m, nil)
	if m.Complete || m.Problem == "" {
		t.Errorf("a truncated brotli body: complete %v, problem %q", m.Complete, m.Problem)
	}
}
