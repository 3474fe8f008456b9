package llm

import (
	"bytes"
	"cmp"
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Unix(1700000000, 0)

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replay feeds a recorded connection to a Tracker: the request in writes of wsize bytes, then
// the response in reads of rsize bytes, as a program's TLS calls would.
func replay(t *testing.T, tr *Tracker, req, resp []byte, wsize, rsize int) []Exchange {
	t.Helper()
	key := Key{PID: 7, Conn: 0xabc}
	var out []Exchange
	at := t0
	for _, part := range split(req, wsize) {
		at = at.Add(time.Millisecond)
		out = append(out, tr.Data(key, Write, part, len(part), at, "write-meta")...)
	}
	for _, part := range split(resp, rsize) {
		at = at.Add(time.Millisecond)
		out = append(out, tr.Data(key, Read, part, len(part), at, nil)...)
	}
	return out
}

func split(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		k := min(n, len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}

func parseRecorded(t *testing.T, name string, wsize, rsize int) *Inference {
	t.Helper()
	tr := NewTracker(Options{})
	exs := replay(t, tr, read(t, name+".req"), read(t, name+".resp"), wsize, rsize)
	if len(exs) != 1 {
		t.Fatalf("%s: %d exchanges, want 1", name, len(exs))
	}
	if exs[0].Request == nil || exs[0].Request.Meta != "write-meta" {
		t.Fatalf("%s: request %+v", name, exs[0].Request)
	}
	inf, ok := Parse(exs[0])
	if !ok {
		t.Fatalf("%s: not recognised as an LLM call", name)
	}
	return inf
}

// Every recorded stream parses the same whether it arrives whole or in tiny pieces.
var splits = []struct{ w, r int }{{1 << 20, 1 << 20}, {1, 1}, {7, 13}, {100, 3}}

func TestOpenAIToolCalls(t *testing.T) {
	for _, name := range []string{"openai_tool_calls", "openai_chunked_gzip"} {
		for _, sp := range splits {
			inf := parseRecorded(t, name, sp.w, sp.r)
			want := &Inference{
				Provider: "openai", API: APIChatCompletions, Method: "POST", Path: "/v1/chat/completions", Host: "api.example.test",
				Status: 200, ProtocolVersion: "1.1", RequestModel: "gpt-4o-mini", ResponseModel: "gpt-4o-mini-2024-07-18", ResponseID: "chatcmpl-42",
				InputTokens: 57, OutputTokens: 21, HasInputTokens: true, HasOutputTokens: true,
				FinishReasons: []string{"tool_calls"},
				ToolCalls:     []ToolCall{{"export_customer_data", "call_abc"}, {"send_email", "call_def"}},
			}
			check(t, fmt.Sprintf("%s %v", name, sp), inf, want)
			if !strings.Contains(inf.InputMessages, "4111 1111 1111 1111") || !strings.Contains(inf.OutputMessages, "call_abc") {
				t.Errorf("%s: messages not kept: %q / %q", name, inf.InputMessages, inf.OutputMessages)
			}
		}
	}
}

func check(t *testing.T, what string, got, want *Inference) {
	t.Helper()
	got2 := *got
	got2.InputMessages, got2.OutputMessages = "", ""
	got2.RequestBodySize, got2.ResponseBodySize = 0, 0
	got2.Stream = false
	if !reflect.DeepEqual(&got2, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got2, *want)
	}
}

func TestOpenAIStream(t *testing.T) {
	for _, sp := range splits {
		inf := parseRecorded(t, "openai_stream", sp.w, sp.r)
		if !inf.Stream || inf.ResponseModel != "gpt-4o" || inf.RequestModel != "gpt-4o" ||
			!reflect.DeepEqual(inf.ToolCalls, []ToolCall{{"lookup", "call_s1"}}) ||
			!reflect.DeepEqual(inf.FinishReasons, []string{"tool_calls"}) || inf.InputTokens != 10 || inf.OutputTokens != 5 {
			t.Errorf("%v: %+v", sp, inf)
		}
	}
}

func TestOpenAIResponses(t *testing.T) {
	inf := parseRecorded(t, "openai_responses", 1<<20, 1<<20)
	want := &Inference{
		Provider: "openai", API: APIResponses, Method: "POST", Path: "/v1/responses", Host: "api.example.test",
		Status: 200, ProtocolVersion: "1.1", RequestModel: "gpt-4.1", ResponseModel: "gpt-4.1-2025-04-14", ResponseID: "resp_1",
		InputTokens: 30, OutputTokens: 12, HasInputTokens: true, HasOutputTokens: true,
		FinishReasons: []string{"completed"}, ToolCalls: []ToolCall{{"get_weather", "call_r1"}},
	}
	check(t, "responses", inf, want)
	if inf.InputMessages != `"What is the weather?"` {
		t.Errorf("input %q", inf.InputMessages)
	}
}

// TestResponsesFinishReasons: a Responses API span says what the API said (its status, or why
// it is incomplete), never Chat Completions' "tool_calls" or "stop".
func TestResponsesFinishReasons(t *testing.T) {
	call := `{"type":"function_call","call_id":"call_1","name":"f","arguments":"{}"}`
	msg := `{"type":"message","role":"assistant","content":[{"type":"output_text","text":"hi"}]}`
	for _, tc := range []struct {
		name, status, incomplete, output string
		want                             []string
	}{
		{"tool call", "completed", "", call, []string{"completed"}},
		{"message", "completed", "", msg, []string{"completed"}},
		{"cut short", "incomplete", `{"reason":"max_output_tokens"}`, msg, []string{"max_output_tokens"}},
		{"failed", "failed", "", `[]`, []string{"failed"}},
		{"background", "in_progress", "", `[]`, nil},
		{"no status", "", "", call, nil},
	} {
		obj := fmt.Sprintf(`{"id":"resp_1","model":"m","status":%q,"incomplete_details":%s,"output":[%s]}`, tc.status, cmp.Or(tc.incomplete, "null"), strings.Trim(tc.output, "[]"))
		for _, stream := range []bool{false, true} {
			ex := Exchange{
				Request:  &Message{Method: "POST", Target: "/v1/responses", Header: textproto.MIMEHeader{}, Body: []byte(`{"model":"m","input":"x"}`), Complete: true},
				Response: &Message{Status: 200, Header: textproto.MIMEHeader{}, Body: []byte(obj), Complete: true},
			}
			if stream {
				ex.Response.Header.Set("Content-Type", "text/event-stream")
				ex.Response.Body = fmt.Appendf(nil, "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"m\",\"status\":\"in_progress\",\"output\":[]}}\n\n"+
					"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":%s}\n\n", obj)
			}
			inf, ok := Parse(ex)
			if !ok || !reflect.DeepEqual(inf.FinishReasons, tc.want) || inf.ResponseProblem != "" {
				t.Errorf("%s (stream %v): finish reasons %q, want %q (problem %q)", tc.name, stream, inf.FinishReasons, tc.want, inf.ResponseProblem)
			}
			if tc.output == call && (len(inf.ToolCalls) != 1 || inf.ToolCalls[0].ID != "call_1") {
				t.Errorf("%s (stream %v): tool calls %+v", tc.name, stream, inf.ToolCalls)
			}
		}
	}
}

func TestAnthropicToolUse(t *testing.T) {
	for _, sp := range splits {
		inf := parseRecorded(t, "anthropic_tool_use", sp.w, sp.r)
		want := &Inference{
			Provider: "anthropic", API: APIMessages, Method: "POST", Path: "/v1/messages", Host: "api.example.test",
			Status: 200, ProtocolVersion: "1.1", RequestModel: "claude-sonnet-4-20250514", ResponseModel: "claude-sonnet-4-20250514", ResponseID: "msg_01",
			InputTokens: 400, OutputTokens: 60, HasInputTokens: true, HasOutputTokens: true,
			FinishReasons: []string{"tool_use"}, ToolCalls: []ToolCall{{"get_balance", "toolu_01A"}},
		}
		check(t, fmt.Sprint(sp), inf, want)
		if !strings.HasPrefix(inf.InputMessages, `{"system":"You are a bank assistant."`) {
			t.Errorf("input %q", inf.InputMessages)
		}
	}
	inf := parseRecorded(t, "anthropic_stream", 5, 11)
	if inf.ResponseModel != "claude-3-5-haiku-20241022" || inf.InputTokens != 25 || inf.OutputTokens != 33 ||
		!reflect.DeepEqual(inf.ToolCalls, []ToolCall{{"transfer", "toolu_02B"}}) || !reflect.DeepEqual(inf.FinishReasons, []string{"tool_use"}) {
		t.Errorf("anthropic stream: %+v", inf)
	}
}

func TestMalformedJSON(t *testing.T) {
	inf := parseRecorded(t, "malformed_json", 1<<20, 4)
	if inf.RequestModel != "m1" || inf.ResponseModel != "m1" || !strings.Contains(inf.ResponseProblem, "not valid JSON") {
		t.Errorf("%+v", inf)
	}
	if inf.ResponseBodySize != int64(len(`{"id":"x","model":"m1","choices":[{"finish_reason":"stop",`)) {
		t.Errorf("response body size %d", inf.ResponseBodySize)
	}
}

func TestUnparsedConnections(t *testing.T) {
	tr := NewTracker(Options{})
	key := Key{PID: 1, Conn: 2}
	data := read(t, "not_http.req")
	var exs []Exchange
	calls := 0
	for len(exs) == 0 && calls < 20 {
		exs = tr.Data(key, Write, data, len(data), t0, "m")
		calls++
	}
	if len(exs) != 1 || exs[0].Unparsed != "not HTTP/1.x" || exs[0].BytesWritten != int64(calls*len(data)) || exs[0].Meta != "m" {
		t.Fatalf("%+v", exs)
	}
	if calls != maxLostCalls+1 {
		t.Errorf("recognised after %d calls", calls)
	}
	ignoresLaterTraffic(t, tr, key)

	// http2.req is a client preface and the header of a SETTINGS frame: the connection is
	// decoded as HTTP/2 and waits for the frame's payload. Zeros read are not the server's
	// frames (a DATA frame on stream 0): the connection becomes unparsed, said once.
	tr = NewTracker(Options{})
	data = read(t, "http2.req")
	if exs := tr.Data(key, Write, data, len(data), t0, "m"); len(exs) != 0 {
		t.Fatalf("preface: %+v", exs)
	}
	if tr.conns[key].h2 == nil {
		t.Fatal("the preface did not start HTTP/2 decoding")
	}
	zeros := bytes.Repeat([]byte{0}, 1000)
	exs = tr.Data(key, Read, zeros, len(zeros), t0, nil)
	if len(exs) != 1 || exs[0].Unparsed != "HTTP/2: DATA frame on stream 0" || exs[0].BytesWritten != int64(len(data)) ||
		exs[0].BytesRead != 1000 || exs[0].Meta != "m" {
		t.Fatalf("HTTP/2: %+v", exs)
	}
	ignoresLaterTraffic(t, tr, key)
}

// ignoresLaterTraffic: the traffic of an unparsed connection is ignored, not buffered.
func ignoresLaterTraffic(t *testing.T, tr *Tracker, key Key) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if exs := tr.Data(key, Read, bytes.Repeat([]byte{0}, 1000), 1000, t0, nil); len(exs) != 0 {
			t.Fatalf("more exchanges %+v", exs)
		}
	}
	if c := tr.conns[key]; len(c.in.buf)+len(c.out.buf) != 0 || c.h2 != nil {
		t.Error("bytes buffered for an unparsed connection")
	}
}

// TestCaptureBound: the request's body is larger than what the kernel captured of the call.
func TestCaptureBound(t *testing.T) {
	resp := read(t, "openai_tool_calls.resp")
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("x", 100000) + `"}]}`
	full := []byte(fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	tr := NewTracker(Options{})
	key := Key{PID: 1, Conn: 1}
	const captured = 4096
	exs := tr.Data(key, Write, full[:captured], len(full), t0, nil)
	exs = append(exs, tr.Data(key, Read, resp, len(resp), t0.Add(time.Second), nil)...)
	if len(exs) != 1 {
		t.Fatalf("%d exchanges", len(exs))
	}
	inf, ok := Parse(exs[0])
	if !ok {
		t.Fatal("not an LLM call")
	}
	if inf.RequestModel != "gpt-4o-mini" || !strings.Contains(inf.RequestProblem, "capture bound") || inf.ResponseModel != "gpt-4o-mini-2024-07-18" {
		t.Errorf("%+v", inf)
	}
	if exs[0].Request.Complete || exs[0].Request.WireSize != int64(len(body)) {
		t.Errorf("request complete=%v size %d", exs[0].Request.Complete, exs[0].Request.WireSize)
	}
}

// TestBufferBound: a response body larger than the per-connection buffer is kept in part, and
// memory stays bounded.
func TestBufferBound(t *testing.T) {
	tr := NewTracker(Options{MaxBuffer: 1 << 16})
	key := Key{PID: 1, Conn: 1}
	req := read(t, "openai_tool_calls.req")
	tr.Data(key, Write, req, len(req), t0, nil)
	n := 1 << 20
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
	tr.Data(key, Read, []byte(head), len(head), t0, nil)
	chunk := bytes.Repeat([]byte("a"), 4096)
	var exs []Exchange
	for sent := 0; sent < n; sent += len(chunk) {
		exs = append(exs, tr.Data(key, Read, chunk, len(chunk), t0, nil)...)
		if c := tr.conns[key]; c != nil && len(c.in.body) > 1<<16 {
			t.Fatalf("buffer grew to %d", len(c.in.body))
		}
	}
	if len(exs) != 1 || exs[0].Response.Complete || !strings.Contains(exs[0].Response.Problem, "buffer") || exs[0].Response.WireSize != int64(n) {
		t.Fatalf("%+v", exs)
	}
	inf, _ := Parse(exs[0])
	if inf.ResponseProblem == "" {
		t.Error("no problem reported")
	}
}

func TestHeadersNeverEnd(t *testing.T) {
	tr := NewTracker(Options{MaxBuffer: 1 << 16})
	key := Key{PID: 1, Conn: 1}
	tr.Data(key, Write, []byte("POST /v1/chat/completions HTTP/1.1\r\n"), 36, t0, nil)
	for i := 0; i < 1000; i++ {
		line := []byte("X-Junk: " + strings.Repeat("y", 1000) + "\r\n")
		tr.Data(key, Write, line, len(line), t0, nil)
	}
	if c := tr.conns[key]; len(c.out.buf) > 1<<16 {
		t.Fatalf("buffer grew to %d", len(c.out.buf))
	}
	// The next request is parsed again.
	req := read(t, "openai_tool_calls.req")
	resp := read(t, "openai_tool_calls.resp")
	tr.Data(key, Write, req, len(req), t0, nil)
	exs := tr.Data(key, Read, resp, len(resp), t0, nil)
	if len(exs) != 1 || exs[0].Request == nil {
		t.Fatalf("%+v", exs)
	}
}

func TestKeepAliveAndPipelining(t *testing.T) {
	tr := NewTracker(Options{})
	key := Key{PID: 1, Conn: 1}
	req := read(t, "openai_tool_calls.req")
	resp := read(t, "openai_tool_calls.resp")
	req2 := read(t, "anthropic_tool_use.req")
	resp2 := read(t, "anthropic_tool_use.resp")
	both := append(append([]byte{}, req...), req2...)
	tr.Data(key, Write, both, len(both), t0, nil)
	bothResp := append(append([]byte{}, resp...), resp2...)
	exs := tr.Data(key, Read, bothResp, len(bothResp), t0, nil)
	if len(exs) != 2 {
		t.Fatalf("%d exchanges", len(exs))
	}
	a, _ := Parse(exs[0])
	b, _ := Parse(exs[1])
	if a.Provider != "openai" || b.Provider != "anthropic" || b.ToolCalls[0].ID != "toolu_01A" {
		t.Errorf("%+v / %+v", a, b)
	}
}

func TestBadChunks(t *testing.T) {
	tr := NewTracker(Options{})
	key := Key{PID: 1, Conn: 1}
	req := read(t, "openai_tool_calls.req")
	tr.Data(key, Write, req, len(req), t0, nil)
	bad := []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
	exs := tr.Data(key, Read, bad, len(bad), t0, nil)
	if len(exs) != 1 || !strings.Contains(exs[0].Response.Problem, "chunk") {
		t.Fatalf("%+v", exs)
	}
	inf, ok := Parse(exs[0])
	if !ok || inf.ResponseProblem == "" {
		t.Errorf("%+v", inf)
	}
}

// TestAttachedMidConnection: the first bytes seen are the end of a response; the next exchange
// on the connection is parsed.
func TestAttachedMidConnection(t *testing.T) {
	tr := NewTracker(Options{})
	key := Key{PID: 1, Conn: 1}
	tail := []byte(`"usage":{"prompt_tokens":1}}`)
	if exs := tr.Data(key, Read, tail, len(tail), t0, nil); len(exs) != 0 {
		t.Fatalf("%+v", exs)
	}
	exs := replay(t, tr, read(t, "openai_tool_calls.req"), read(t, "openai_tool_calls.resp"), 50, 50)
	if len(exs) != 1 {
		t.Fatalf("%d exchanges", len(exs))
	}
	if inf, ok := Parse(exs[0]); !ok || inf.ResponseModel != "gpt-4o-mini-2024-07-18" {
		t.Errorf("%+v", inf)
	}
}

func TestServerSideIgnored(t *testing.T) {
	tr := NewTracker(Options{})
	key := Key{PID: 1, Conn: 1}
	req := read(t, "openai_tool_calls.req")
	if exs := tr.Data(key, Read, req, len(req), t0, nil); len(exs) != 0 {
		t.Fatalf("a server's connection reported: %+v", exs)
	}
	resp := read(t, "openai_tool_calls.resp")
	if exs := tr.Data(key, Write, resp, len(resp), t0, nil); len(exs) != 0 {
		t.Fatalf("a server's connection reported: %+v", exs)
	}
}

func TestNotLLM(t *testing.T) {
	tr := NewTracker(Options{})
	key := Key{PID: 1, Conn: 1}
	r := []byte("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
	tr.Data(key, Write, r, len(r), t0, nil)
	s := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	exs := tr.Data(key, Read, s, len(s), t0, nil)
	if len(exs) != 1 {
		t.Fatalf("%+v", exs)
	}
	if _, ok := Parse(exs[0]); ok {
		t.Error("a GET of a page is taken for an LLM call")
	}
}

func TestExpireAndClose(t *testing.T) {
	tr := NewTracker(Options{IdleTimeout: time.Second, MaxConnections: 2})
	req := read(t, "openai_tool_calls.req")
	var evicted []Exchange
	for i := 0; i < 3; i++ {
		evicted = append(evicted, tr.Data(Key{PID: 1, Conn: uint64(i)}, Write, req, len(req), t0.Add(time.Duration(i)*time.Millisecond), i)...)
	}
	if tr.Connections() != 2 || tr.Stats().ConnectionsEvicted != 1 {
		t.Fatalf("connections %d evicted %d", tr.Connections(), tr.Stats().ConnectionsEvicted)
	}
	// The evicted connection's request is not lost: it comes out, saying why it has no response.
	if len(evicted) != 1 || evicted[0].Request.Meta != 0 || !strings.Contains(evicted[0].ResponseProblem, "more than 2 connections tracked") {
		t.Fatalf("evicted: %+v", evicted)
	}
	exs := tr.Expire(t0.Add(time.Minute))
	if len(exs) != 2 || exs[0].Response != nil || tr.Connections() != 0 {
		t.Fatalf("%+v", exs)
	}
	inf, ok := Parse(exs[0])
	if !ok || !inf.NoResponse {
		t.Errorf("%+v", inf)
	}
	tr.Data(Key{PID: 5, Conn: 1}, Write, req, len(req), t0, nil)
	half := []byte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"id\":")
	tr.Data(Key{PID: 5, Conn: 1}, Read, half, len(half), t0, nil)
	exs = tr.CloseProcess(5)
	if len(exs) != 1 || exs[0].Response == nil || exs[0].Response.Complete {
		t.Fatalf("%+v", exs)
	}
	if tr.Buffered() != 0 {
		t.Errorf("%d bytes still held with no connection", tr.Buffered())
	}
}

// TestTotalBuffer: bodies reassembled on many connections at once share MaxTotalBuffer with
// their headers; once it is held, bodies are cut (marked and counted), a connection whose
// headers would take it over gives up what it holds (its request comes out at once, and its
// response is not paired with a later request), and what completed exchanges release is
// available again.
func TestTotalBuffer(t *testing.T) {
	tr := NewTracker(Options{MaxBuffer: 1 << 20, MaxTotalBuffer: 100_000})
	body := bytes.Repeat([]byte("x"), 60_000)
	head := []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n")
	req := append(append([]byte{}, head...), body...)
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") // no body: nothing of it to cut
	// What the request's start line and header fields hold.
	hs := messageOverhead + len(head) - 4 + 3*fieldOverhead
	var exs []Exchange
	for i := range 3 {
		for _, p := range split(req, 4096) {
			exs = append(exs, tr.Data(Key{PID: 1, Conn: uint64(i)}, Write, p, len(p), t0, nil)...)
			if got := tr.Buffered(); got > 100_000 {
				t.Fatalf("%d bytes held, over the 100000-byte total", got)
			}
		}
	}
	if len(exs) != 1 || exs[0].Key.Conn != 2 || exs[0].Response != nil || exs[0].ResponseProblem != errTotalBuffer || len(exs[0].Request.Body) != 0 {
		t.Fatalf("%+v", exs)
	}
	for i := range 3 {
		exs = append(exs, tr.Data(Key{PID: 1, Conn: uint64(i)}, Read, resp, len(resp), t0, nil)...)
	}
	if len(exs) != 3 || exs[1].Response == nil || exs[2].Response == nil {
		t.Fatalf("%d exchanges: %+v", len(exs), exs)
	}
	exs = append(exs[1:], exs[0])
	var kept []int
	for _, ex := range exs {
		kept = append(kept, len(ex.Request.Body))
		if len(ex.Request.Body) < 60_000 && (ex.Request.Complete || !strings.Contains(ex.Request.Problem+ex.ResponseProblem, "buffer for all connections was full")) {
			t.Errorf("cut body: complete %v, problem %q", ex.Request.Complete, ex.Request.Problem)
		}
	}
	if kept[0] != 60_000 || kept[1] != 40_000-2*hs || kept[2] != 0 {
		t.Errorf("bodies kept %v, want [60000 %d 0]", kept, 40_000-2*hs)
	}
	if st := tr.Stats(); st.BodiesCut != 2 || st.ConnectionsCut != 1 {
		t.Errorf("BodiesCut %d, want 2, ConnectionsCut %d, want 1 (kept %v)", st.BodiesCut, st.ConnectionsCut, kept)
	}
	if tr.Buffered() != 0 {
		t.Errorf("%d bytes held after every exchange completed", tr.Buffered())
	}
	// Released: a new body is kept whole.
	for _, p := range split(req, 4096) {
		tr.Data(Key{PID: 1, Conn: 9}, Write, p, len(p), t0, nil)
	}
	exs = tr.Data(Key{PID: 1, Conn: 9}, Read, resp, len(resp), t0, nil)
	if len(exs) != 1 || len(exs[0].Request.Body) != 60_000 || !exs[0].Request.Complete {
		t.Fatalf("after release: %+v", exs)
	}
}

// TestPendingBound: requests sent on one connection without responses (pipelining, or responses
// the probes do not see) are bounded; the oldest come out, saying why.
func TestPendingBound(t *testing.T) {
	tr := NewTracker(Options{})
	req := read(t, "openai_tool_calls.req")
	var exs []Exchange
	for range maxPending + 10 {
		exs = append(exs, tr.Data(Key{PID: 1, Conn: 1}, Write, req, len(req), t0, nil)...)
	}
	if len(exs) != 10 || tr.Stats().RequestsGivenUp != 10 {
		t.Fatalf("%d exchanges, %d given up", len(exs), tr.Stats().RequestsGivenUp)
	}
	if inf, ok := Parse(exs[0]); !ok || !inf.NoResponse || !strings.Contains(inf.ResponseProblem, "waiting for their responses") {
		t.Errorf("%+v", inf)
	}
	var want int64
	for _, m := range tr.conns[Key{PID: 1, Conn: 1}].pending {
		want += int64(m.held())
	}
	if body := int64(len(req) - bytes.Index(req, []byte("\r\n\r\n")) - 4); tr.Buffered() != want || want < maxPending*body {
		t.Errorf("%d bytes held, want %d (the pending requests' headers and bodies, %d each)", tr.Buffered(), want, body)
	}
}

// FuzzTracker: any bytes, split anywhere, with bytes missing: no panic, bounded memory.
func FuzzTracker(f *testing.F) {
	for _, name := range []string{"openai_tool_calls", "openai_chunked_gzip", "openai_stream", "anthropic_stream"} {
		req, _ := os.ReadFile(filepath.Join("testdata", name+".req"))
		resp, _ := os.ReadFile(filepath.Join("testdata", name+".resp"))
		f.Add(req, resp, uint8(7), uint16(0))
	}
	f.Fuzz(func(t *testing.T, req, resp []byte, step uint8, missing uint16) {
		tr := NewTracker(Options{MaxBuffer: 4096})
		key := Key{PID: 1, Conn: 1}
		n := int(step) + 1
		for _, p := range split(req, n) {
			for _, ex := range tr.Data(key, Write, p, len(p)+int(missing%3), t0, nil) {
				Parse(ex)
			}
			checkHeld(t, tr)
		}
		for _, p := range split(resp, n) {
			for _, ex := range tr.Data(key, Read, p, len(p), t0, nil) {
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

// TestLostRead: a Go client keeps a read blocked on every idle keep-alive connection, so the
// probes, attached meanwhile, miss the response to the first request they see. Without
// LostRead every later response would be paired with the request before its own.
func TestLostRead(t *testing.T) {
	tr := NewTracker(Options{})
	key := Key{PID: 1, Conn: 1}
	req, resp := read(t, "openai_tool_calls.req"), read(t, "openai_tool_calls.resp")
	req2, resp2 := read(t, "anthropic_tool_use.req"), read(t, "anthropic_tool_use.resp")
	tr.Data(key, Write, req2, len(req2), t0, "first")
	exs := tr.LostRead(key, len(resp2), t0.Add(time.Millisecond))
	if len(exs) != 1 || exs[0].Request.Meta != "first" || exs[0].Response != nil {
		t.Fatalf("lost read: %+v", exs)
	}
	if inf, ok := Parse(exs[0]); !ok || !inf.NoResponse || !strings.Contains(inf.ResponseProblem, "in flight") {
		t.Errorf("lost response: %+v", inf)
	}
	tr.Data(key, Write, req, len(req), t0.Add(2*time.Millisecond), "second")
	exs = tr.Data(key, Read, resp, len(resp), t0.Add(3*time.Millisecond), nil)
	if len(exs) != 1 || exs[0].Request.Meta != "second" {
		t.Fatalf("next exchange: %+v", exs)
	}
	if inf, _ := Parse(exs[0]); len(inf.ToolCalls) != 2 || inf.ToolCalls[0].Name != "export_customer_data" {
		t.Errorf("next exchange parsed %+v", inf)
	}
}

// TestLostReadAfterTheRequest: a goroutine's lost read is applied to the connection of its
// next read; a request sent after the lost read (a goroutine reused for a new connection) is
// not the one it answered.
func TestLostReadAfterTheRequest(t *testing.T) {
	tr := NewTracker(Options{})
	key := Key{PID: 1, Conn: 1}
	req, resp := read(t, "openai_tool_calls.req"), read(t, "openai_tool_calls.resp")
	tr.Data(key, Write, req, len(req), t0.Add(time.Second), "later")
	if exs := tr.LostRead(key, 100, t0); len(exs) != 0 {
		t.Fatalf("%+v", exs)
	}
	exs := tr.Data(key, Read, resp, len(resp), t0.Add(2*time.Second), nil)
	if len(exs) != 1 || exs[0].Request.Meta != "later" || exs[0].Response == nil {
		t.Fatalf("%+v", exs)
	}
}

// TestLostReadMidResponse: bytes lost in the middle of a response leave it incomplete, and the
// next response is parsed.
func TestLostReadMidResponse(t *testing.T) {
	tr := NewTracker(Options{})
	key := Key{PID: 1, Conn: 1}
	req, resp := read(t, "openai_tool_calls.req"), read(t, "openai_tool_calls.resp")
	tr.Data(key, Write, req, len(req), t0, "first")
	head := bytes.Index(resp, []byte("\r\n\r\n")) + 4
	if exs := tr.Data(key, Read, resp[:head+10], head+10, t0, nil); len(exs) != 0 {
		t.Fatalf("%+v", exs)
	}
	exs := tr.LostRead(key, len(resp)-head-10, t0)
	if len(exs) != 1 || exs[0].Request.Meta != "first" || exs[0].Response == nil || exs[0].Response.Problem == "" {
		t.Fatalf("%+v", exs)
	}
	exs = replay(t, tr, req, resp, 1<<20, 1<<20)
	if len(exs) != 1 || exs[0].Response == nil || exs[0].Response.Problem != "" {
		t.Fatalf("%+v", exs)
	}
}

func TestProtocolVersion(t *testing.T) {
	for in, want := range map[string]string{"HTTP/1.1": "1.1", "HTTP/1.0": "1.0", "HTTP/2.0": "2", "HTTP/1.1x": "", "HTTP/3": "", "": ""} {
		if got := ProtocolVersion(in); got != want {
			t.Errorf("ProtocolVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
