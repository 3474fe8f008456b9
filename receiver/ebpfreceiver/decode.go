package ebpfreceiver

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

var (
	sizeHeader  = tracer.SizeHeader
	sizeProcess = tracer.SizeOf[probes.ProcessEvent]()
	offsetKind  = int(unsafe.Offsetof(probes.EventHeader{}.Kind))
)

// maxKinds bounds the kind numbers a decoder accepts (enum event_kind is small; a table
// indexed by kind stays small too).
const maxKinds = 256

// kindUnknown names records whose kind is not in the table (or cannot be read).
const kindUnknown = "unknown"

// decoder checks every record against its kind's size and gives handlers a view of it. Its
// table is built from the kinds of the root (process lifecycle) and of every tracer.
type decoder struct {
	kinds []tracer.Kind // by kind number; Handle nil: not a kind of this receiver
	// scratch holds a record that cannot be viewed in place (shorter than its struct, or not
	// 8-byte aligned); dirty is how far its last use wrote.
	scratch []uint64
	dirty   int
}

// newDecoder builds the table. A kind claimed twice, out of range, or whose sizes cannot hold a
// header is a wiring bug: an error, not a record dropped later.
func newDecoder(kinds ...tracer.Kind) (*decoder, error) {
	d := &decoder{}
	maxFull := sizeHeader
	for _, k := range kinds {
		switch {
		case k.Kind == 0 || k.Kind >= maxKinds:
			return nil, fmt.Errorf("record kind %d (%s) out of range", k.Kind, k.Name)
		case k.Handle == nil || k.Name == "":
			return nil, fmt.Errorf("record kind %d has no handler or name", k.Kind)
		case k.Min < sizeHeader || k.Full < k.Min:
			return nil, fmt.Errorf("record kind %d (%s): sizes %d/%d do not hold a header", k.Kind, k.Name, k.Min, k.Full)
		}
		if int(k.Kind) >= len(d.kinds) {
			d.kinds = append(d.kinds, make([]tracer.Kind, int(k.Kind)+1-len(d.kinds))...)
		}
		if d.kinds[k.Kind].Handle != nil {
			return nil, fmt.Errorf("record kind %d claimed by %s and %s", k.Kind, d.kinds[k.Kind].Name, k.Name)
		}
		d.kinds[k.Kind] = k
		maxFull = max(maxFull, k.Full)
	}
	d.scratch = make([]uint64, (maxFull+7)/8)
	return d, nil
}

// kind returns the table's entry of a record kind, nil when the receiver has none.
func (d *decoder) kind(kind uint32) *tracer.Kind {
	if kind >= uint32(len(d.kinds)) || d.kinds[kind].Handle == nil {
		return nil
	}
	return &d.kinds[kind]
}

// view returns the record's bytes in memory that holds the whole struct of its kind (full
// bytes), 8-byte aligned: in place when the record is that long, else copied, with the bytes the
// kernel did not send zeroed. A handler can then read any field of the struct; those the record
// did not hold read 0, never another record's bytes. len(view) is what the kernel sent.
func (d *decoder) view(raw []byte, full int) []byte {
	if len(raw) >= full && uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%8 == 0 {
		return raw
	}
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&d.scratch[0])), len(d.scratch)*8)
	n := copy(buf, raw)
	if d.dirty > n {
		clear(buf[n:d.dirty])
	}
	d.dirty = n
	return buf[:n]
}

// handle decodes one ring-buffer record and hands it to its kind's handler. Every kind is
// checked against its size here, once; a record that fails a check is dropped and counted by
// kind and reason. A panic in a record's handling is recovered here too (see recoverRecord).
func (r *ebpfReceiver) handle(raw []byte) {
	if len(raw) < sizeHeader {
		r.dropRecord(kindUnknown, "short_header")
		return
	}
	k := r.decoder.kind(binary.LittleEndian.Uint32(raw[offsetKind:]))
	if k == nil {
		r.dropRecord(kindUnknown, "unknown_kind")
		return
	}
	if len(raw) < k.Min {
		r.dropRecord(k.Name, "short_record")
		return
	}
	rec := r.decoder.view(raw, k.Full)
	h := tracer.As[probes.EventHeader](rec)
	hdr := spans.Header{Mono: h.TsNs, Time: r.clock.wall(h.TsNs), PID: h.Tgid, TID: h.Tid, Routine: h.Routine, CgroupID: h.CgroupId}
	defer r.recoverRecord(k.Name, hdr)
	if reason := k.Handle(hdr, rec); reason != "" {
		r.dropRecord(k.Name, reason)
	}
}

// dropRecord counts a record that was not used.
func (r *ebpfReceiver) dropRecord(kind, reason string) {
	r.telemetry.eventsInvalid.Add(ctxBackground, 1, metric.WithAttributes(
		attribute.String("kind", kind), attribute.String("reason", reason)))
}

// lifecycleKinds are the records the registry of traced processes follows: processes that
// exec, fork and exit (sched tracepoints in bpf/syscalls/syscalls.c).
func (r *ebpfReceiver) lifecycleKinds() []tracer.Kind {
	return []tracer.Kind{
		{Kind: probes.KindProcessExec, Name: "process_exec", Min: sizeProcess, Full: sizeProcess, Handle: r.onProcessExec},
		{Kind: probes.KindProcessExit, Name: "process_exit", Min: sizeProcess, Full: sizeProcess, Handle: r.onProcessExit},
		{Kind: probes.KindProcessFork, Name: "process_fork", Min: sizeProcess, Full: sizeProcess, Handle: r.onProcessFork},
	}
}

func (r *ebpfReceiver) onProcessExec(hdr spans.Header, rec []byte) string {
	e := tracer.As[probes.ProcessEvent](rec)
	r.forgetProcessState(hdr.PID)
	r.registry.onExec(hdr, e.TargetId, tracer.CString(e.Filename[:], e.FilenameLen))
	return ""
}

func (r *ebpfReceiver) onProcessFork(hdr spans.Header, rec []byte) string {
	e := tracer.As[probes.ProcessEvent](rec)
	r.registry.onFork(hdr, e.ChildTgid, e.TargetId)
	return ""
}

func (r *ebpfReceiver) onProcessExit(hdr spans.Header, _ []byte) string {
	r.forgetProcessState(hdr.PID)
	r.builder.ProcessExit(hdr)
	r.registry.onExit(hdr.PID)
	return ""
}

// forgetProcessState has every tracer drop what it keeps about a process's image (at its exit,
// or its exec of a new program).
func (r *ebpfReceiver) forgetProcessState(pid uint32) {
	for _, tr := range r.tracers {
		tr.ProcessGone(pid)
	}
}
