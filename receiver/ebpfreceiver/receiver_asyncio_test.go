package ebpfreceiver

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// asyncAgent handles two prompts at once under asyncio.gather, each connecting and awaiting.
const asyncAgent = `
import asyncio, sys

async def handle_prompt(i, port):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.05)
    w.write(b"prompt %d" % i)
    await w.drain()
    await asyncio.sleep(0.05)
    w.close()

async def main(port):
    await asyncio.gather(handle_prompt(1, port), handle_prompt(2, port))

print("ready", flush=True)
for line in sys.stdin:
    asyncio.run(main(int(sys.argv[1])))
    print("ok", flush=True)
`

// TestAsyncioCoroutineSpans: reconstructed spans of a configured coroutine (async def) say so:
// agenttrail.python.coroutine=true, read from the code object's co_flags, because each is one
// run of the coroutine between awaits, not its whole call (see Limits: two prompts under
// asyncio.gather come out as several spans).
func TestAsyncioCoroutineSpans(t *testing.T) {
	requireKernel(t)
	requirePython(t)
	script := filepath.Join(t.TempDir(), "async_agent.py")
	if err := os.WriteFile(script, []byte(asyncAgent), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(listen(t))
	if err != nil {
		t.Fatal(err)
	}
	sink, tel := startReceiverTelemetry(t, testConfig(TargetConfig{Name: "py-async", Executable: python311,
		PythonFunctions: []PythonFunctionConfig{{Pattern: "*:handle_prompt", Role: "prompt"}}}))
	p := startProgram(t, python311, "-B", "-u", "-E", "-s", script, port)
	p.waitLine(t, "ready")
	p.do(t, "go", "ok")
	pid := p.cmd.Process.Pid
	prompts := func(c collected) []ptrace.Span {
		return c.ofPID(pid).where("invoke_agent py-async", func(ptrace.Span) bool { return true })
	}
	c := waitSpans(t, sink, func(c collected) bool { return len(prompts(c)) >= 2 })
	for _, s := range prompts(c) {
		if attr(s, "agenttrail.python.coroutine") != "true" || attr(s, "agenttrail.span.bounds") != "observed" {
			t.Errorf("prompt span: coroutine %s bounds %s", attr(s, "agenttrail.python.coroutine"), attr(s, "agenttrail.span.bounds"))
		}
	}
	t.Logf("two prompts under asyncio.gather: %d prompt spans", len(prompts(c)))
	// The coroutine is counted once, as a configured function whose spans are split.
	m, err := tel.GetMetric("agenttrail.ebpf.python.coroutines")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		n += dp.Value
	}
	if n != 1 {
		t.Errorf("agenttrail.ebpf.python.coroutines %d, want 1", n)
	}
}
