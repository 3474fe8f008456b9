package attackstoryprocessor

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// handler is a server's request handler in a trace of its own (apart from its accept's): the
// function span and its socket I/O on the connection it served (local port 8080, the client's
// ephemeral), and a file read.
func (p *procBuilder) handler(trace pcommon.TraceID, startMs, endMs float64, clientPort int, file string) {
	s, root := p.newSpan(trace, nil, "main.handle", ptrace.SpanKindInternal, startMs, endMs)
	p.function(s.Attributes(), "main.handle", "/srv/svc/main.go", 18, "function")
	io := p.send(root, startMs+1, endMs-1, "10.77.0.1", clientPort, 40, 1, "earlier", 1)
	m := io.proc.spans[io.idx].span.Attributes()
	m.PutStr("network.local.address", "10.77.0.2")
	m.PutInt("network.local.port", 8080)
	p.openat(root, startMs+2, file, "O_RDONLY|O_CLOEXEC")
}

// TestConcurrentHandlersNotStitched: tests/crossnode's flake. Two clients call one service at
// once; alpha's handler runs inside beta's in time. A handler serves a connection of its own:
// it is not stitched into the other client's handler (it became that client's story, and the
// gateway joined alpha's file read under beta's tool call).
func TestConcurrentHandlersNotStitched(t *testing.T) {
	b := newTraceBuilder()
	p := b.hostProcess("tool-service", 5151)
	p.handler(traceID(1), 0, 100, 40002, "/data/beta/customers.csv")
	p.handler(traceID(2), 10, 50, 40001, "/data/alpha/customers.csv")
	h := newHarness(t, createDefaultConfig())
	h.replay(b.traces(), false)
	h.settle()
	out := h.output()
	assert.Zero(t, h.counter("agenttrail.attackstory.stitched", "", ""))
	forEachSpan(out, func(s ptrace.Span) {
		assert.False(t, s.Attributes().AsRaw()[story.AttrStitched] == true, s.Name())
		if s.Name() == "main.handle" {
			assert.True(t, s.ParentSpanID().IsEmpty(), "each handler stays the root of its story")
		}
	})
	assert.Equal(t, 2, countTraces(out))
}
