package plaintext

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/sockets"
)

// FuzzPayload feeds any bytes as the payloads of two processes' pipes and a TCP socket (ops
// picks, per piece, the process, fd, direction and transport): the consumer never panics, and
// every span it reserved is emitted or dropped by the time it closes. /proc is a path that does
// not exist: the pipes are paired by the servers' stdio and the responses' ids.
func FuzzPayload(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}`+"\n"+
		`{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}`+"\n"), []byte{0x00, 0x85, 0x41, 0xc4})
	f.Add([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"), []byte{0x22, 0x2a})
	f.Fuzz(func(t *testing.T, data, ops []byte) {
		b := spans.NewBuilder(spans.Options{})
		b.AddProcess(spans.Process{PID: 1})
		b.AddProcess(spans.Process{PID: 2})
		c, err := New(tracer.Env{Logger: zap.NewNop(), Builder: b, ProcRoot: "/nonexistent/agenttrail-fuzz", Telemetry: &tracer.Telemetry{Meter: noop.NewMeterProvider().Meter("fuzz")}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		at := time.Unix(1_700_000_000, 0)
		for i := 0; len(data) > 0; i++ {
			op := byte(0)
			if len(ops) > 0 {
				op = ops[i%len(ops)]
			}
			n := min(len(data), 1+int(op&0x3f)*4)
			pid := uint32(1 + op>>7)
			dir := spans.Egress
			if op&0x40 != 0 {
				dir = spans.Ingress
			}
			transport, ino, fd := spans.TransportPipe, uint64(10+op%3), int32(op%4)
			if op%5 == 0 {
				transport = spans.TransportTCP
			}
			at = at.Add(time.Duration(op) * time.Millisecond)
			h := spans.Header{Time: at, PID: pid, TID: pid}
			c.Payload(&sockets.Payload{Header: h, Socket: spans.SocketID{Sock: 0xffff0000 + ino, Ino: ino}, FD: fd, Direction: dir,
				Transport: transport, Bytes: uint64(n + int(op%7)), Data: data[:n], Cut: op%7 != 0, Parent: b.ParentOf(h)})
			if op%11 == 0 {
				c.Housekeeping(at.Add(time.Hour))
			}
			if op%13 == 0 {
				c.ProcessGone(pid)
				b.AddProcess(spans.Process{PID: pid})
			}
			data = data[n:]
		}
		_ = c.Close()
		if len(c.pending) != 0 || len(c.byReq) != 0 || len(c.servers) != 0 {
			t.Fatalf("left after close: %d pending, %d by request, %d servers", len(c.pending), len(c.byReq), len(c.servers))
		}
		b.Flush()
	})
}
