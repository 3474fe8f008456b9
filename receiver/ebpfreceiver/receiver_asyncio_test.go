package ebpfreceiver

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// asyncAgent handles two prompts at once under asyncio.gather, each calling the model over
// HTTPS with Debian's httpx AsyncClient (one client, so two connections in flight): the first
// prompt makes one call, the second two, so that each call's inference spans show whose they are.
const asyncAgent = `
import asyncio, sys
import httpx

CA = sys.argv[1]
TOOLS = [{"type": "function", "function": {"name": "accounts-summary", "parameters": {"type": "object"}}}]

async def handle_prompt(client, url, customer, calls):
    for _ in range(calls):
        r = await client.post(url, json={"model": "model-x", "tools": TOOLS,
            "messages": [{"role": "user", "content": "What is the balance of %s?" % customer}]})
        r.raise_for_status()
        await asyncio.sleep(0.1)  # the agent works on the answer

async def main(url):
    async with httpx.AsyncClient(verify=CA, timeout=20) as client:
        await asyncio.gather(handle_prompt(client, url, "C1001", 1), handle_prompt(client, url, "C1002", 2))

print("ready", flush=True)
for line in sys.stdin:
    asyncio.run(main(line.strip()))
    print("ok", flush=True)
`

// TestAsyncioCoroutineSpans: a configured coroutine (async def) called twice at once under
// asyncio.gather, each call awaiting real HTTPS requests, is one span per call (not one per run
// between awaits), from its first run to its last, ended when gen_dealloc frees the coroutine
// (agenttrail.python.coroutine.end=completed), with that call's model requests (TLS writes,
// which carry the Python stack) nested under it and not under the other call. Two rounds: the
// second round's coroutines take the addresses the first round's freed.
func TestAsyncioCoroutineSpans(t *testing.T) {
	requireKernel(t)
	requireHTTPX(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(httpxModel))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "async_agent.py")
	if err := os.WriteFile(script, []byte(asyncAgent), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(TargetConfig{Name: "py-async", Executable: python311,
		PythonFunctions: []PythonFunctionConfig{{Pattern: "*:handle_prompt", Role: "prompt"}}})
	cfg.TLS.CaptureMessageContent = true // the prompt in the request says whose call it was
	sink, tel := startReceiverTelemetry(t, cfg)
	p := startProgram(t, python311, "-B", "-u", "-E", "-s", script, ca)
	p.waitLine(t, "ready")
	const rounds = 2
	for range rounds {
		p.do(t, srv.URL+"/v1/chat/completions", "ok")
	}
	pid := p.cmd.Process.Pid
	prompts := func(c collected) []ptrace.Span {
		return c.ofPID(pid).where("invoke_agent py-async", func(ptrace.Span) bool { return true })
	}
	chats := func(c collected) []ptrace.Span { return c.ofPID(pid).where("chat model-x", fromTLS) }
	waitSpans(t, sink, func(c collected) bool { return len(prompts(c)) >= 2*rounds && len(chats(c)) >= 3*rounds })
	time.Sleep(300 * time.Millisecond) // any span beyond one per call would come by now
	c := waitSpans(t, sink, func(collected) bool { return true })
	if n := len(prompts(c)); n != 2*rounds {
		t.Fatalf("%d prompt spans for %d calls of the coroutine", n, 2*rounds)
	}
	byID := map[string]ptrace.Span{}
	for _, s := range prompts(c) {
		byID[s.SpanID().String()] = s
		if attr(s, "agenttrail.python.coroutine") != "true" || attr(s, "agenttrail.span.bounds") != "observed" ||
			attr(s, "agenttrail.python.coroutine.end") != "completed" || s.Status().Code() == ptrace.StatusCodeError {
			t.Errorf("prompt span: coroutine %s, bounds %s, end %s, status %v", attr(s, "agenttrail.python.coroutine"),
				attr(s, "agenttrail.span.bounds"), attr(s, "agenttrail.python.coroutine.end"), s.Status().Code())
		}
	}
	// Each prompt span holds the calls of one customer: one for C1001, two for C1002.
	calls := map[string][]string{} // prompt span → customers of the requests under it
	for _, s := range chats(c) {
		parent, ok := byID[s.ParentSpanID().String()]
		if !ok || parent.TraceID() != s.TraceID() {
			t.Errorf("inference span %s is not under a prompt span", s.SpanID())
			continue
		}
		customer := "C1001"
		if strings.Contains(attr(s, "gen_ai.input.messages"), "C1002") {
			customer = "C1002"
		}
		calls[parent.SpanID().String()] = append(calls[parent.SpanID().String()], customer)
	}
	perCustomer := map[string]int{}
	for id, cs := range calls {
		want := []string{"C1001"}
		if cs[0] == "C1002" {
			want = []string{"C1002", "C1002"}
		}
		if strings.Join(cs, ",") != strings.Join(want, ",") {
			t.Errorf("prompt span %s holds the calls of %v, want %v", id, cs, want)
		}
		perCustomer[cs[0]]++
	}
	if perCustomer["C1001"] != rounds || perCustomer["C1002"] != rounds {
		t.Errorf("prompt spans by customer %v, want %d each", perCustomer, rounds)
	}
	t.Logf("%d calls of the coroutine under asyncio.gather: %d prompt spans, %d inference spans under them", 2*rounds, len(prompts(c)), len(chats(c)))
	// The coroutine is counted once, as a configured function; each call's end once.
	sum := func(name string, pred func(metricdata.DataPoint[int64]) bool) int64 {
		m, err := tel.GetMetric(name)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
			if pred(dp) {
				n += dp.Value
			}
		}
		return n
	}
	if n := sum("agenttrail.ebpf.python.coroutines", func(metricdata.DataPoint[int64]) bool { return true }); n != 1 {
		t.Errorf("agenttrail.ebpf.python.coroutines %d, want 1", n)
	}
	// httpx (anyio) leaves a finished call's coroutine in a reference cycle: the spans above
	// came before the objects were freed (their frames read cleared). At the interpreter's exit
	// the cyclic collector frees them: those gen_dealloc records end nothing more.
	_ = p.stdin.Close()
	_ = p.cmd.Wait()
	ends := func(end string) int64 {
		return sum("agenttrail.ebpf.python.coroutine.ends", func(dp metricdata.DataPoint[int64]) bool {
			v, _ := dp.Attributes.Value("end")
			return v.AsString() == end
		})
	}
	time.Sleep(time.Second) // the exit's records are read and handled (flush interval 50 ms)
	if n := ends("completed"); n != 2*rounds {
		t.Errorf("agenttrail.ebpf.python.coroutine.ends{end=completed} %d, want %d", n, 2*rounds)
	}
	for _, end := range []string{"no_span", "not_observed", "abandoned", "address_reused", "evicted"} {
		if n := ends(end); n != 0 {
			t.Errorf("agenttrail.ebpf.python.coroutine.ends{end=%s} %d, want 0", end, n)
		}
	}
	if n := len(prompts(waitSpans(t, sink, func(collected) bool { return true }))); n != 2*rounds {
		t.Errorf("%d prompt spans after the exit, want %d", n, 2*rounds)
	}
}
