package ebpfreceiver

import (
	"context"
	"testing"
	"unsafe"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/symbolize"
)

// record returns the bytes of a kernel record as the ring buffer delivers them.
func record[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// BenchmarkPipeline measures user space from ring-buffer records to spans handed to the next
// consumer: decode, argument redaction, span building and flushing, on one goroutine as in the
// receiver. Half the calls capture one string argument. Reported as events/s (one entry and
// one return record per call).
func BenchmarkPipeline(b *testing.B) {
	tel, err := newTelemetry(receivertest.NewNopSettings(componentType).TelemetrySettings)
	if err != nil {
		b.Fatal(err)
	}
	builder := spans.NewBuilder(spans.Options{})
	builder.AddProcess(spans.Process{PID: 42, Target: "bench", Executable: "/bench"})
	r := &ebpfReceiver{
		cfg: createDefaultConfig().(*Config), next: consumertest.NewNop(), telemetry: tel, logger: zap.NewNop(),
		builder: builder, redactor: redact.New(), clock: newMonoClock(),
		symbolizer: symbolize.New(symbolize.Options{}), panics: newPanicGuard(), health: newHealth(componenttest.NewNopHost()),
	}
	if err := r.wire(nil, newAttachProblems(r.health)); err != nil {
		b.Fatal(err)
	}
	r.functions.AddProbe(&spans.Probe{Target: "bench", Symbol: "main.Work", Role: spans.RoleFunction}, nil)
	r.functions.AddProbe(&spans.Probe{Target: "bench", Symbol: "main.(*Agent).HandlePrompt", Role: spans.RolePrompt,
		Args: []spans.ArgSpec{{Name: "prompt"}}}, []redact.Policy{redact.PolicyRedacted})

	entry := probes.FuncEvent{Hdr: probes.EventHeader{Kind: probes.KindFuncEntry, Tgid: 42, Tid: 42, Routine: 0xc000, ProbeId: 1}}
	ret := entry
	ret.Hdr.Kind = probes.KindFuncReturn
	argEntry := probes.FuncArgsEvent{Hdr: entry.Hdr}
	argEntry.Hdr.ProbeId = 2
	prompt := "What is the balance summary for C1001? My card is 4111 1111 1111 1111."
	argEntry.Args[0] = probes.FuncArg{Kind: probes.ArgString, Num: uint64(len(prompt)), Captured: uint32(len(prompt))}
	copy(argEntry.Args[0].Data[:], prompt)
	argRet := ret
	argRet.Hdr.ProbeId = 2
	recs := [][]byte{record(&entry), record(&ret), record(&argEntry), record(&argRet)}

	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, raw := range recs {
			r.handle(raw)
		}
		if r.builder.PendingSpans() >= maxBatchSpans {
			r.flush(ctx)
		}
	}
	r.flush(ctx)
	b.ReportMetric(float64(4*b.N)/b.Elapsed().Seconds(), "events/s")
}
