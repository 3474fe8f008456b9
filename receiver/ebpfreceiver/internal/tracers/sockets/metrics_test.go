package sockets

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// newSDKTracer is newTracer with the SDK's meter, as the collector's telemetry has it: the cost
// of recording is the SDK's, not the no-op's.
func newSDKTracer(t testing.TB) (*Tracer, *sdkmetric.ManualReader) {
	t.Helper()
	rd := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
	b := spans.NewBuilder(spans.Options{})
	b.AddProcess(spans.Process{PID: pid, Target: "agent"})
	tr, err := New(tracer.Env{Logger: zap.NewNop(), Builder: b, Telemetry: &tracer.Telemetry{Meter: mp.Meter("test")}}, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return tr, rd
}

// sums reads a counter's points as "attr=value,attr=value" → sum.
func sums(t *testing.T, rd *sdkmetric.ManualReader, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				key := ""
				for _, kv := range dp.Attributes.ToSlice() {
					if key != "" {
						key += ","
					}
					key += string(kv.Key) + "=" + kv.Value.Emit()
				}
				out[key] += dp.Value
			}
		}
	}
	return out
}

// TestRecordMetrics: the records counter says each record's kind and direction, and the
// reasons of the other counters, with the same attributes however they are built.
func TestRecordMetrics(t *testing.T) {
	tr, rd := newSDKTracer(t)
	h := spans.Header{Time: time.Unix(1700000000, 0), PID: pid, TID: 7}
	send := func(kind, dir uint8, flags uint8, port uint16) {
		e := &probes.FDIOEvent{Sock: 0x1000, Ino: 5, Bytes: 10, Family: unix.AF_INET, PeerPort: port, LocalPort: 40000,
			Direction: dir, Kind: kind, Flags: flags}
		e.Peer[0], e.Peer[3] = 10, 1
		if r := tr.Handle(h, record(e)); r != "" {
			t.Fatalf("dropped: %s", r)
		}
	}
	send(probes.FDIOTCP, probes.FDIOSend, 0, 443)
	send(probes.FDIOTCP, probes.FDIOSend, 0, 443)
	send(probes.FDIOTCP, probes.FDIORecv, probes.FDIOTruncated, 443)
	send(probes.FDIOUDP, probes.FDIOSend, probes.FDIOReadFailed|probes.FDIOIovCut, 0) // port 0: peer unknown
	send(probes.FDIOUnix, probes.FDIORecv, 0, 0)
	send(probes.FDIOPipe, probes.FDIOSend, 0, 0)
	send(probes.FDIOOther, probes.FDIORecv, 0, 0) // AF_INET, port 0: peer unknown too
	h.PID = pid + 1                               // no such process
	e := &probes.FDIOEvent{Direction: probes.FDIOSend, Kind: probes.FDIOPipe}
	if r := tr.Handle(h, record(e)); r != "" {
		t.Fatalf("dropped: %s", r)
	}

	want := map[string]int64{
		"direction=send,kind=tcp": 2, "direction=receive,kind=tcp": 1, "direction=send,kind=udp": 1,
		"direction=receive,kind=unix": 1, "direction=send,kind=pipe": 2, "direction=receive,kind=other": 1,
	}
	check := func(name string, want map[string]int64) {
		t.Helper()
		got := sums(t, rd, name)
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s{%s} = %d, want %d (all: %v)", name, k, got[k], v, got)
			}
		}
	}
	check("agenttrail.ebpf.sockets.records", want)
	check("agenttrail.ebpf.sockets.incomplete", map[string]int64{"reason=mmsg_truncated": 1, "reason=read_failed": 1, "reason=iov_cut": 1})
	check("agenttrail.ebpf.sockets.unattributed", map[string]int64{"reason=peer_unknown": 2, "reason=no_process": 1, "reason=no_call": 7})
}

// BenchmarkHandle is the handler of one TCP send record of a known process, with the SDK's
// meter (the collector's), the common case at saturation.
func BenchmarkHandle(b *testing.B) {
	tr, _ := newSDKTracer(b)
	h := spans.Header{Time: time.Unix(1700000000, 0), PID: pid, TID: 7}
	e := &probes.FDIOEvent{Sock: 0x1000, Ino: 5, Bytes: 100, Family: unix.AF_INET, PeerPort: 443, LocalPort: 40000,
		Direction: probes.FDIOSend, Kind: probes.FDIOTCP}
	e.Peer[0], e.Peer[3] = 10, 1
	rec := record(e)
	b.ReportAllocs()
	for b.Loop() {
		if tr.Handle(h, rec) != "" {
			b.Fatal("dropped")
		}
	}
}
