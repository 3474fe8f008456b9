package llm

import (
	"bytes"
	"compress/zlib"
	"net/textproto"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// The fuzz targets of the parsers, one per layer (FuzzTracker, FuzzH2 and FuzzMembers are beside
// the tests of their layer): every byte here comes from a traced program.

var recorded = []string{"openai_tool_calls", "openai_chunked_gzip", "openai_stream", "anthropic_stream", "anthropic_tool_use", "openai_responses", "malformed_json"}

// recordedStreams returns the recorded connections: what the client wrote and read.
func recordedStreams(f *testing.F) (w, r [][]byte) {
	for _, name := range recorded {
		req, err := os.ReadFile(filepath.Join("testdata", name+".req"))
		if err != nil {
			f.Fatal(err)
		}
		resp, err := os.ReadFile(filepath.Join("testdata", name+".resp"))
		if err != nil {
			f.Fatal(err)
		}
		w, r = append(w, req), append(r, resp)
	}
	return w, r
}

// recordedExchanges returns the recorded connections as the Tracker reads them.
func recordedExchanges(f *testing.F) []Exchange {
	w, r := recordedStreams(f)
	var out []Exchange
	for i := range w {
		tr := NewTracker(Options{})
		tr.Data(Key{}, Write, w[i], len(w[i]), t0, nil)
		out = append(out, tr.Data(Key{}, Read, r[i], len(r[i]), t0, nil)...)
	}
	return out
}

// h2Seed is a recorded HTTP/2 conversation (every framing: padding, priority, CONTINUATION,
// PING, WINDOW_UPDATE, a table size change) as the bytes each side sent.
func h2Seed(f *testing.F) (w, r []byte) {
	c := newConv(f).start([]http2.Setting{{ID: http2.SettingHeaderTableSize, Val: 8192}}, []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 1 << 15}})
	blk := c.block(client, ":method", "POST", ":scheme", "https", ":authority", "api.example.test", ":path", "/v1/chat/completions",
		"content-type", "application/json")
	c.must(c.fr[client].WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:10], PadLength: 7,
		Priority: http2.PriorityParam{StreamDep: 0, Weight: 15, Exclusive: true}}))
	c.must(c.fr[client].WriteContinuation(1, true, blk[10:]))
	c.must(c.fr[client].WriteDataPadded(1, true, body(f, "openai_tool_calls.req"), make([]byte, 3)))
	c.must(c.fr[server].WritePing(false, [8]byte{1}))
	c.headers(server, 1, false, ":status", "200", "content-type", "text/event-stream")
	c.data(server, 1, false, body(f, "anthropic_stream.resp"), 100)
	c.must(c.fr[server].WriteWindowUpdate(1, 1000))
	c.must(c.fr[server].WriteRSTStream(3, http2.ErrCodeCancel))
	c.must(c.fr[server].WriteGoAway(1, http2.ErrCodeNo, []byte("bye")))
	c.flush(client, nil)
	c.flush(server, nil)
	for _, call := range c.calls {
		if call.dir == Write {
			w = append(w, call.data...)
		} else {
			r = append(r, call.data...)
		}
	}
	return w, r
}

// FuzzHTTP1: one direction of an HTTP/1.x connection (requests, or responses: lengths, chunks,
// trailers, content encodings), split anywhere, with bytes missing: no panic, what the stream
// holds stays within its bounds, and what comes out parses.
func FuzzHTTP1(f *testing.F) {
	w, r := recordedStreams(f)
	for i := range w {
		f.Add(w[i], false, uint8(13), uint8(0))
		f.Add(r[i], true, uint8(7), uint8(0))
	}
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n"), true, uint8(255), uint8(0))
	f.Add([]byte("POST /v1/messages HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{"), false, uint8(3), uint8(200))
	f.Fuzz(func(t *testing.T, data []byte, read bool, step uint8, missing uint8) {
		const maxBuf, total = 4096, 1 << 20
		stats := Stats{}
		lim := bufLimit{maxBuf: maxBuf, stats: &stats}
		s := stream{dir: Write, lim: &lim}
		if read {
			s.dir = Read
		}
		req := &Message{Method: "POST", Target: "/v1/chat/completions", Header: textproto.MIMEHeader{}}
		for i, p := range split(data, int(step)+1) {
			miss := 0
			if missing > 0 && i%int(missing) == 0 {
				miss = int(missing)
			}
			lim.left = total - s.size()
			for _, m := range s.feed(p, miss, t0, nil, &lim) {
				if len(m.Body) > maxDecoded {
					t.Fatalf("body of %d bytes", len(m.Body))
				}
				if read {
					Parse(Exchange{Request: req, Response: m})
				} else {
					Parse(Exchange{Request: m})
				}
			}
			// The unparsed bytes, the body and the head of the message in progress.
			if n := s.size(); n > 2*maxBuf+2*maxHeaderBytes {
				t.Fatalf("stream holds %d bytes", n)
			}
		}
		if m := s.partial("end"); m != nil && len(m.Body) > maxDecoded {
			t.Fatalf("body of %d bytes", len(m.Body))
		}
	})
}

// FuzzDecode: a body of anything under any content encoding decodes to at most maxDecoded
// bytes, and to no more than what the total buffer has left.
func FuzzDecode(f *testing.F) {
	for _, ex := range recordedExchanges(f) {
		if ex.Response != nil && ex.Response.Header.Get("Content-Encoding") != "" {
			raw := ex.Response.Body // decoded: encode it again
			f.Add(gzipped(f, raw, 1), uint8(0), uint32(1<<20))
			f.Add(brotlied(f, raw, 1), uint8(3), uint32(1<<20))
		}
	}
	f.Add(brotlied(f, make([]byte, 1<<16), 100), uint8(3), uint32(100)) // 6.4 MB of zeros
	f.Add([]byte{0x11}, uint8(3), uint32(1<<20))                        // the large-window marker, refused
	f.Add(gzipped(f, make([]byte, 1<<16), 100), uint8(0), uint32(100))  // 6.4 MB of zeros
	var zb bytes.Buffer
	zw := zlib.NewWriter(&zb)
	zw.Write(bytes.Repeat([]byte(`{"a":1}`), 1000))
	zw.Close()
	f.Add(zb.Bytes(), uint8(2), uint32(1<<20))
	f.Fuzz(func(t *testing.T, body []byte, enc uint8, room uint32) {
		encs := []string{"gzip", "x-gzip", "deflate", "br", "identity", ""}
		m := &Message{Header: textproto.MIMEHeader{}, Body: body, Complete: true}
		m.Header.Set("Content-Encoding", encs[int(enc)%len(encs)])
		stats := Stats{}
		lim := bufLimit{maxBuf: 1 << 20, left: int(room % (8 << 20)), stats: &stats}
		before := lim.left
		decode(m, &lim)
		if len(m.Body) > max(maxDecoded, len(body)) {
			t.Fatalf("decoded %d bytes", len(m.Body))
		}
		if grew := len(m.Body) - len(body); grew > before {
			t.Fatalf("decoded body grew by %d bytes with %d left", grew, before)
		}
		if m.Complete && m.Problem != "" {
			t.Fatalf("complete with a problem: %q", m.Problem)
		}
	})
}

// FuzzParse: the JSON extractors (OpenAI chat completions and responses, Anthropic messages,
// and their event streams) on any request and response bodies: no panic, bounded lists.
func FuzzParse(f *testing.F) {
	for _, ex := range recordedExchanges(f) {
		if ex.Request == nil || ex.Response == nil {
			continue
		}
		_, api, _ := Recognize(ex.Request)
		f.Add(uint8(map[string]int{APIChatCompletions: 0, APIResponses: 1, APIMessages: 2}[api]), ex.Response.Header.Get("Content-Type") == "text/event-stream",
			ex.Request.Body, ex.Response.Body, uint16(ex.Response.Status))
	}
	f.Add(uint8(0), false, []byte(`{"model":"m","messages":[]}`), []byte(`{"choices":[{"finish_reason":"stop","message":{"tool_calls":[{"id":"a","function":{"name":"f"}}]}}],"usage":{"prompt_tokens":1}}`), uint16(200))
	f.Add(uint8(2), false, []byte(`{"model":"m","system":"s","messages":[]}`), []byte(`{"error":{"type":"overloaded_error"}}`), uint16(529))
	f.Fuzz(func(t *testing.T, api uint8, stream bool, req, resp []byte, status uint16) {
		paths := []string{"/v1/chat/completions", "/v1/responses", "/v1/messages"}
		ex := Exchange{
			Request:  &Message{Method: "POST", Target: paths[int(api)%len(paths)], Header: textproto.MIMEHeader{}, Body: req, Complete: true},
			Response: &Message{Status: int(status), Header: textproto.MIMEHeader{}, Body: resp, Complete: true},
		}
		if stream {
			ex.Response.Header.Set("Content-Type", "text/event-stream")
		}
		inf, ok := Parse(ex)
		if !ok {
			t.Fatal("not recognised")
		}
		if len(inf.ToolCalls) > maxListed || len(inf.FinishReasons) > maxListed {
			t.Fatalf("%d tool calls, %d finish reasons", len(inf.ToolCalls), len(inf.FinishReasons))
		}
		if len(inf.OutputMessages) > 2*len(resp)+2 || len(inf.InputMessages) > len(req)+64 {
			t.Fatalf("messages of %d and %d bytes from bodies of %d and %d", len(inf.InputMessages), len(inf.OutputMessages), len(req), len(resp))
		}
	})
}

// FuzzSSE: an event stream of any bytes, read as each API's.
func FuzzSSE(f *testing.F) {
	for _, ex := range recordedExchanges(f) {
		if ex.Response != nil && ex.Response.Header.Get("Content-Type") == "text/event-stream" {
			f.Add(ex.Response.Body)
		}
	}
	f.Add([]byte("event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3}}\r\n\r\ndata: [DONE]\n"))
	f.Add([]byte("data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"status\":\"incomplete\",\"incomplete_details\":{\"reason\":\"max_output_tokens\"}}}\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, api := range []string{APIChatCompletions, APIResponses, APIMessages} {
			inf := &Inference{API: api}
			parseStream(inf, body)
			if len(inf.ToolCalls) > maxListed || len(inf.FinishReasons) > maxListed {
				t.Fatalf("%s: %d tool calls, %d finish reasons", api, len(inf.ToolCalls), len(inf.FinishReasons))
			}
			if len(inf.OutputMessages) > 6*len(body)+2 { // JSON escapes a byte in at most 6
				t.Fatalf("%s: output of %d bytes from %d", api, len(inf.OutputMessages), len(body))
			}
		}
	})
}

// FuzzTrackerAPI drives the Tracker's whole API as the receiver does, in an order the fuzzer
// chooses: each op byte says what to do next (write or read a chunk of the client's or the
// server's bytes, with or without bytes missing, on one of two connections; a lost read; time
// passing; a connection's or the process's end). Whatever the order: no panic, the bytes held
// never exceed MaxTotalBuffer and are what the connections hold, and nothing is held once
// every connection ended.
func FuzzTrackerAPI(f *testing.F) {
	w, r := recordedStreams(f)
	hw, hr := h2Seed(f)
	w, r = append(w, append(append([]byte{}, h2Preface...), hw...)), append(r, hr)
	for i := range w {
		// Write it all in chunks of 64, then read it all in chunks of 100.
		var ops []byte
		for range len(w[i])/64 + 1 {
			ops = append(ops, 0x00, 64)
		}
		for range len(r[i])/100 + 1 {
			ops = append(ops, 0x01, 100)
		}
		f.Add(w[i], r[i], ops)
		// Interleaved on two connections, with bytes missing and time passing.
		f.Add(w[i], r[i], []byte{0x00, 200, 0x08, 200, 0x01, 50, 0x09, 50, 0x02, 30, 0x03, 7, 0x04, 0, 0x00, 255, 0x01, 255, 0x05, 1, 0x06, 0, 0x07, 0})
	}
	f.Fuzz(func(t *testing.T, w, r, ops []byte) {
		opts := Options{MaxBuffer: 4096, MaxTotalBuffer: 24 << 10, MaxConnections: 2, IdleTimeout: time.Second}
		tr := NewTracker(opts)
		keys := [...]Key{{PID: 1, Conn: 1}, {PID: 1, Conn: 2}, {PID: 2, Conn: 1}}
		var pos [len(keys)][2]int // per connection, bytes of w and r given so far
		at := t0
		for i := 0; i+1 < len(ops) && i < 2000; i += 2 {
			op, arg := ops[i], int(ops[i+1])
			k := int(op>>3) % len(keys)
			key := keys[k]
			at = at.Add(time.Millisecond)
			var exs []Exchange
			switch op & 7 {
			case 0, 1, 2: // a chunk of the client's writes (0) or reads (1), or a read with bytes missing (2)
				src, p := w, &pos[k][0]
				dir := Write
				if op&7 != 0 {
					src, p, dir = r, &pos[k][1], Read
				}
				n := min(arg+1, len(src)-*p)
				chunk := src[*p : *p+n]
				*p += n
				total := n
				if op&7 == 2 {
					total += arg * 16
				}
				exs = tr.Data(key, dir, chunk, total, at, i)
			case 3: // a write whose end was not captured
				n := min(arg+1, len(w)-pos[k][0])
				exs = tr.Data(key, Write, w[pos[k][0]:pos[k][0]+n], n+arg+1, at, i)
				pos[k][0] += n
			case 4:
				exs = tr.LostRead(key, arg*64+1, at)
			case 5:
				at = at.Add(time.Duration(arg) * 20 * time.Millisecond)
				exs = append(tr.Flush(at, 2*time.Second), tr.Expire(at)...)
			case 6:
				exs = tr.Close(key)
			case 7:
				exs = tr.CloseProcess(key.PID)
			}
			for _, ex := range exs {
				Parse(ex)
			}
			checkHeld(t, tr)
			if tr.Connections() > opts.MaxConnections {
				t.Fatalf("%d connections", tr.Connections())
			}
		}
		for _, pid := range []uint32{1, 2} {
			for _, ex := range tr.CloseProcess(pid) {
				Parse(ex)
			}
		}
		if tr.Buffered() != 0 || tr.Connections() != 0 {
			t.Fatalf("%d bytes held, %d connections after every connection ended", tr.Buffered(), tr.Connections())
		}
	})
}
