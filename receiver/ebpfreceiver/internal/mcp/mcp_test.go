package mcp

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chunk is one write of a recorded stdio session: the client's (c) or the server's (s).
type chunk struct {
	client bool
	data   []byte
}

// readChunks reads a session recorded by testdata/nodeclient/tee.mjs.
func readChunks(t *testing.T, name string) []chunk {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "stdio", name))
	if err != nil {
		t.Fatal(err)
	}
	var out []chunk
	r := bufio.NewReader(bytes.NewReader(b))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		side, n, ok := strings.Cut(strings.TrimSpace(line), " ")
		size, err2 := strconv.Atoi(n)
		if !ok || err2 != nil || (side != "c" && side != "s") {
			t.Fatalf("bad chunk header %q", line)
		}
		data := make([]byte, size+1)
		if _, err := io_ReadFull(r, data); err != nil {
			t.Fatal(err)
		}
		out = append(out, chunk{side == "c", data[:size]})
	}
	if len(out) == 0 {
		t.Fatalf("no chunks in %s", name)
	}
	return out
}

func io_ReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

var (
	agent    = Key{PID: 100, Conn: 1}  // the client's session
	toServer = Key{PID: 100, Conn: 11} // the pipe the client writes
	fromSrv  = Key{PID: 100, Conn: 12} // the pipe the client reads
	server   = Key{PID: 200, Conn: 1}  // the server's session
	t0       = time.Unix(1_700_000_000, 0)
)

// feedClient feeds chunks as the client saw them; split > 0 cuts every chunk into pieces of
// that many bytes, as calls that moved less would.
func feedClient(tr *Tracker, chunks []chunk, split int) []Call {
	var out []Call
	at := t0
	for _, c := range chunks {
		stream, dir := toServer, Write
		if !c.client {
			stream, dir = fromSrv, Read
		}
		for d := c.data; len(d) > 0; {
			n := len(d)
			if split > 0 {
				n = min(n, split)
			}
			at = at.Add(time.Millisecond)
			out = append(out, tr.Data(stream, agent, dir, d[:n], 0, at, nil)...)
			d = d[n:]
		}
	}
	return out
}

func done(calls []Call) []Call {
	var out []Call
	for _, c := range calls {
		if c.Done && c.ID != "" {
			out = append(out, c)
		}
	}
	return out
}

// summary is what a test compares: method, id, tool or uri, isError.
func summary(calls []Call) string {
	var b strings.Builder
	for _, c := range done(calls) {
		fmt.Fprintf(&b, "%s %s %s%s err=%v\n", c.Method, c.ID, c.Tool, c.URI, c.IsError)
	}
	return b.String()
}

func TestNodeFilesystem(t *testing.T) {
	chunks := readChunks(t, "node-filesystem.chunks")
	tr := NewTracker(Options{})
	calls := feedClient(tr, chunks, 0)
	want := `initialize 0  err=false
tools/list 1  err=false
tools/call 2 read_text_file err=false
tools/call 3 list_directory err=false
tools/call 4 read_text_file err=true
`
	if got := summary(calls); got != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", got, want)
	}
	d := done(calls)
	if s := d[0].Server; s.Name != "secure-filesystem-server" || s.Version != "0.2.0" || s.ProtocolVersion != "2025-11-25" ||
		s.ClientName != "agenttrail-test-client" {
		t.Errorf("initialize: %+v", s)
	}
	if d[2].Server.Name != "secure-filesystem-server" {
		t.Errorf("a later call does not name the server: %+v", d[2].Server)
	}
	if len(d[1].Tools) != 14 || d[1].ToolsCut {
		t.Fatalf("tools/list: %d tools, cut %v", len(d[1].Tools), d[1].ToolsCut)
	}
	var found bool
	for _, tool := range d[1].Tools {
		if tool.Name == "read_text_file" && strings.HasPrefix(tool.Description, "Read the complete contents of a file") {
			found = true
		}
	}
	if !found {
		t.Errorf("read_text_file's description not listed: %+v", d[1].Tools[:2])
	}
	if string(d[2].Arguments) != `{"path":"/tmp/mcpfs/notes.txt"}` {
		t.Errorf("arguments %s", d[2].Arguments)
	}
	if d[2].ResultSize < 100 || d[2].Response == nil || d[2].Problem != "" {
		t.Errorf("result size %d, problem %q", d[2].ResultSize, d[2].Problem)
	}
	// Each request came out first when it was seen, with its side filled in.
	var started int
	for _, c := range calls {
		if !c.Done && c.Method == "tools/call" {
			started++
			if c.Tool == "" || c.Response != nil {
				t.Errorf("started call: %+v", c)
			}
		}
	}
	if started != 3 {
		t.Errorf("%d tools/call started, want 3", started)
	}
	if st := tr.Stats(); st != (Stats{}) {
		t.Errorf("stats %+v", st)
	}
}

func TestNodeEverything(t *testing.T) {
	tr := NewTracker(Options{})
	calls := feedClient(tr, readChunks(t, "node-everything.chunks"), 0)
	want := `initialize 0  err=false
tools/list 1  err=false
tools/call 2 echo err=false
tools/call 3 get-sum err=false
resources/read 4 demo://resource/dynamic/text/1 err=false
prompts/get 5 simple-prompt err=false
`
	if got := summary(calls); got != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", got, want)
	}
	if d := done(calls); d[0].Server.Name != "mcp-servers/everything" {
		t.Errorf("server %+v", d[0].Server)
	}
}

// The server's side of the same session: the requests are inbound.
func TestServerSide(t *testing.T) {
	tr := NewTracker(Options{})
	var calls []Call
	for i, c := range readChunks(t, "node-filesystem.chunks") {
		dir := Read
		if !c.client {
			dir = Write
		}
		calls = append(calls, tr.Data(Key{PID: 200, Conn: uint64(dir)}, server, dir, c.data, 0, t0.Add(time.Duration(i)), nil)...)
	}
	d := done(calls)
	if len(d) != 5 {
		t.Fatalf("%d calls", len(d))
	}
	for _, c := range d {
		if !c.Inbound || c.Response == nil {
			t.Errorf("%s %s: inbound %v, response %v", c.Method, c.ID, c.Inbound, c.Response != nil)
		}
	}
}

// Messages split anywhere, or several in one call, come out the same.
func TestSplitAnywhere(t *testing.T) {
	chunks := readChunks(t, "node-filesystem.chunks")
	want := summary(feedClient(NewTracker(Options{}), chunks, 0))
	for _, split := range []int{1, 2, 7, 100, 4096} {
		if got := summary(feedClient(NewTracker(Options{}), chunks, split)); got != want {
			t.Errorf("split %d:\n%s", split, got)
		}
	}
	// All of one side's chunks in one call each way (requests first would find no response).
	tr := NewTracker(Options{})
	var joined []byte
	for _, c := range chunks[:3] { // initialize, initialized, tools/list
		if c.client {
			joined = append(joined, c.data...)
		}
	}
	calls := tr.Data(toServer, agent, Write, joined, 0, t0, nil)
	if n := len(tr.InFlight(agent)); n != 1 || len(calls) != 2 {
		t.Errorf("%d in flight, %d calls from one call with 2 requests and a notification", n, len(calls))
	}
}

// A message larger than the bound is read as far as it goes, and flagged; an id written last
// is found in its tail.
func TestMessageOverBound(t *testing.T) {
	tr := NewTracker(Options{MaxMessage: 600})
	calls := done(feedClient(tr, readChunks(t, "node-filesystem.chunks"), 0))
	if len(calls) != 5 {
		t.Fatalf("%d calls: %s", len(calls), summary(calls))
	}
	list := calls[1]
	if list.Method != "tools/list" || list.Response == nil || !list.Response.Cut || !list.ToolsCut || len(list.Tools) == 0 {
		t.Fatalf("tools/list: %+v", list)
	}
	if list.Tools[0].Name != "read_file" || list.Problem != "response cut: read as far as it goes" {
		t.Errorf("tools %+v, problem %q", list.Tools, list.Problem)
	}
	if list.ResultSize < 10000 {
		t.Errorf("result size %d: the whole message's", list.ResultSize)
	}
	if st := tr.Stats(); st.MessagesCut == 0 || st.ToolsCut == 0 {
		t.Errorf("stats %+v", st)
	}
}

// A call that moved more bytes than were captured ends its message there; the response is
// paired with the only request in flight, and the next message is read again.
func TestBytesMissing(t *testing.T) {
	tr := NewTracker(Options{})
	req := []byte(`{"method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"/etc/passwd"}},"jsonrpc":"2.0","id":7}` + "\n")
	tr.Data(toServer, agent, Write, req, 0, t0, nil)
	resp := []byte(`{"result":{"content":[{"type":"text","text":"root:x:0:0:...`)
	calls := tr.Data(fromSrv, agent, Read, resp, 50000, t0.Add(time.Second), nil)
	if len(calls) != 1 || calls[0].ID != "7" || calls[0].Tool != "read_text_file" || !calls[0].Response.Cut ||
		calls[0].ResultSize != int64(len(resp)+50000) || !strings.Contains(calls[0].Problem, "only request in flight") {
		t.Fatalf("calls %+v", calls)
	}
	// The next call's bytes begin a message again.
	tr.Data(toServer, agent, Write, bytes.Replace(req, []byte(`"id":7`), []byte(`"id":8`), 1), 0, t0, nil)
	calls = tr.Data(fromSrv, agent, Read, []byte(`{"result":{"content":[]},"jsonrpc":"2.0","id":8}`+"\n"), 0, t0, nil)
	if len(calls) != 1 || calls[0].ID != "8" || calls[0].Problem != "" {
		t.Fatalf("after the gap: %+v", calls)
	}
	// The rest of a message after a gap (not beginning with '{') is skipped.
	tr.Data(fromSrv, agent, Read, []byte(`{"result":`), 10, t0, nil)
	if calls := tr.Data(fromSrv, agent, Read, []byte(`"x"},"id":9}`+"\n"), 0, t0, nil); len(calls) != 0 {
		t.Errorf("the rest of a message was read as one: %+v", calls)
	}
	if st := tr.Stats(); st.BytesMissing != 50010 || st.BytesSkipped == 0 || st.ResponsesUnmatched != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestBounds(t *testing.T) {
	tr := NewTracker(Options{MaxInFlight: 2, Timeout: time.Minute, MaxSessions: 2, MaxStreams: 3})
	req := func(sess Key, id int, at time.Time) []Call {
		return tr.Data(Key{PID: sess.PID, Conn: 99}, sess, Write, fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"t"}}`+"\n", id), 0, at, nil)
	}
	req(agent, 1, t0)
	req(agent, 2, t0)
	calls := req(agent, 3, t0)
	if len(calls) != 2 || !calls[0].Done || calls[0].ID != "1" || !strings.Contains(calls[0].Problem, "more than 2 requests in flight") {
		t.Fatalf("in-flight bound: %+v", calls)
	}
	calls = tr.Expire(t0.Add(2 * time.Minute))
	if len(calls) != 2 || calls[0].Problem != "no response within 1m0s" {
		t.Fatalf("expiry: %+v", calls)
	}
	req(Key{PID: 1}, 1, t0)
	req(Key{PID: 2}, 1, t0.Add(time.Second))
	calls = req(Key{PID: 3}, 1, t0.Add(2*time.Second))
	if len(calls) != 2 || calls[0].Session != (Key{PID: 1}) || !strings.Contains(calls[0].Problem, "evicted") {
		t.Fatalf("session bound: %+v", calls)
	}
	if calls := tr.CloseProcess(3); len(calls) != 1 || !strings.Contains(calls[0].Problem, "exited") {
		t.Fatalf("close: %+v", calls)
	}
	st := tr.Stats()
	if st.RequestsGivenUp != 1 || st.RequestsExpired != 2 || st.SessionsEvicted != 2 || st.StreamsEvicted == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestCancelledAndErrors(t *testing.T) {
	tr := NewTracker(Options{})
	tr.Data(toServer, agent, Write, []byte(`{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"slow"}}`+"\n"), 0, t0, nil)
	calls := tr.Data(toServer, agent, Write, []byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"a-1","reason":"timeout"}}`+"\n"), 0, t0, nil)
	if len(calls) != 2 || calls[1].ID != `"a-1"` || calls[1].Problem != "cancelled by the client" {
		t.Fatalf("cancel: %+v", calls)
	}
	tr.Data(toServer, agent, Write, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}`+"\n"), 0, t0, nil)
	calls = tr.Data(fromSrv, agent, Read, []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Tool nope not found"}}`+"\n"), 0, t0, nil)
	if len(calls) != 1 || !calls[0].IsError || calls[0].Error.Code != -32602 || calls[0].Error.Message != "Tool nope not found" {
		t.Fatalf("error: %+v", calls)
	}
	// "1" and 1 are different ids.
	tr.Data(toServer, agent, Write, []byte(`{"jsonrpc":"2.0","id":"1","method":"ping"}`+"\n"), 0, t0, nil)
	if calls := tr.Data(fromSrv, agent, Read, []byte(`{"jsonrpc":"2.0","id":1,"result":{}}`+"\n"), 0, t0, nil); len(calls) != 0 {
		t.Errorf("a number id answered a string id: %+v", calls)
	}
	// Not JSON-RPC: counted, nothing paired.
	tr.Data(fromSrv, agent, Read, []byte("hello\n{\"jsonrpc\":\"1.0\",\"id\":1,\"result\":1}\n"), 0, t0, nil)
	if st := tr.Stats(); st.MessagesUnreadable != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestBody(t *testing.T) {
	req := []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"http://x"}}}`)
	if !LooksLikeJSONRPC("application/json", req) || LooksLikeJSONRPC("application/json", []byte(`{"model":"gpt"}`)) ||
		LooksLikeJSONRPC("text/plain", req) {
		t.Fatal("LooksLikeJSONRPC")
	}
	sse := []byte("event: message\r\nid: 1\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\r\n\r\n" +
		"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\n" + "data: \"result\":{\"content\":[],\"isError\":true}}\n\n")
	if !LooksLikeJSONRPC("text/event-stream; charset=utf-8", sse) {
		t.Fatal("LooksLikeJSONRPC sse")
	}
	tr := NewTracker(Options{})
	tr.Messages(agent, Write, Body("application/json", req, true, t0, t0, nil, 0))
	msgs := Body("text/event-stream", sse, true, t0, t0, nil, 0)
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	calls := tr.Messages(agent, Read, msgs)
	if len(calls) != 2 || calls[1].ID != "3" || calls[1].Tool != "fetch" || !calls[1].IsError {
		t.Fatalf("calls %+v", calls)
	}
	batch := Body("application/json", []byte(`[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":2,"result":{}}]`), true, t0, t0, nil, 0)
	if len(batch) != 2 || batch[1].ID != "2" {
		t.Fatalf("batch %+v", batch)
	}
	// A body cut inside its message, and one over the bound with the id at its end.
	if m := Body("application/json", req[:60], false, t0, t0, nil, 0); len(m) != 1 || !m[0].Cut || m[0].Method != "tools/call" {
		t.Fatalf("cut body %+v", m)
	}
	big := []byte(`{"result":{"content":[{"type":"text","text":"` + strings.Repeat("x", 5000) + `"}]},"jsonrpc":"2.0","id":12}`)
	if m := Body("application/json", big, true, t0, t0, nil, 1000); len(m) != 1 || !m[0].Cut || m[0].ID != "12" || m[0].Size != int64(len(big)) {
		t.Fatalf("big body %+v", m)
	}
}

func TestTailID(t *testing.T) {
	for tail, want := range map[string]string{
		`xx"}]},"jsonrpc":"2.0","id":12}`:          "12",
		`xx"}]},"jsonrpc":"2.0","id":"ab"}` + "\n": `"ab"`,
		`xx"}]},"id": 5 }`:                         "5",
		`"a":{"id":12}}`:                           "", // a nested object's id
		`text with \"id\":3}`:                      "", // inside a string
		`"id":3`:                                   "",
		`,"id":"a"b"}`:                             "",
	} {
		if got, _ := tailID([]byte(tail)); got != want {
			t.Errorf("tailID(%q) = %q, want %q", tail, got, want)
		}
	}
}

// TestNullID: the TypeScript SDK's streamable HTTP server (server-everything 2026.8.31) answers
// the Go SDK's server/discover, sent before any session, with HTTP 400 and a JSON-RPC error
// whose id is null (testdata/http, as they sent it). The error is the discovery's, paired as
// the only request in flight and saying so, not as an id the capture lost; with none or two in
// flight it answers nothing.
func TestNullID(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "http", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	req, resp := read("go-discover.req"), read("node-not-initialized.resp")
	tr := NewTracker(Options{})
	tr.Messages(agent, Write, Body("application/json", req, true, t0, t0, nil, 0))
	calls := tr.Messages(agent, Read, Body("application/json", resp, true, t0, t0, nil, 0))
	if len(calls) != 1 || calls[0].Method != "server/discover" || calls[0].ID != "1" || !calls[0].IsError ||
		calls[0].Error == nil || calls[0].Error.Code != -32000 || calls[0].Error.Message != "Bad Request: Server not initialized" ||
		calls[0].Problem != "response id null (the server could not read the request): paired with the only request in flight" {
		t.Fatalf("calls %+v", calls)
	}
	// None in flight, then two: unmatched both times.
	tr.Messages(agent, Read, Body("application/json", resp, true, t0, t0, nil, 0))
	tr.Messages(agent, Write, Body("application/json", req, true, t0, t0, nil, 0))
	tr.Messages(agent, Write, Body("application/json", bytes.Replace(req, []byte(`"id":1`), []byte(`"id":2`), 1), true, t0, t0, nil, 0))
	if calls := tr.Messages(agent, Read, Body("application/json", resp, true, t0, t0, nil, 0)); len(calls) != 0 {
		t.Errorf("a null id answered one of two: %+v", calls)
	}
	if st := tr.Stats(); st.ResponsesUnmatched != 2 {
		t.Errorf("stats %+v", st)
	}
}
