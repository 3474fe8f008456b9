package ebpfreceiver

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
)

// Record sizes: the structs the kernel programs fill (generated from bpf/common/events.h).
var (
	sizeHeader      = int(unsafe.Sizeof(probes.EventHeader{}))
	sizeFunc        = int(unsafe.Sizeof(probes.FuncEvent{}))
	sizeFuncArgs    = int(unsafe.Sizeof(probes.FuncArgsEvent{}))
	sizeGoroutine   = int(unsafe.Sizeof(probes.GoroutineEvent{}))
	sizeSyscall     = int(unsafe.Sizeof(probes.SyscallEvent{}))
	sizeSyscallExit = int(unsafe.Sizeof(probes.SyscallExitEvent{}))
	sizeProcess     = int(unsafe.Sizeof(probes.ProcessEvent{}))
	sizePyStack     = int(unsafe.Sizeof(probes.PythonStackEvent{}))
	sizePyAudit     = int(unsafe.Sizeof(probes.PythonAuditEvent{}))
	sizeTLS         = int(unsafe.Sizeof(probes.TLSEvent{}))
	// The records sent only as far as they were filled: the fixed part before the array.
	headPyStack = int(unsafe.Offsetof(probes.PythonStackEvent{}.Frames))
	headPyAudit = int(unsafe.Offsetof(probes.PythonAuditEvent{}.Values))
	headTLS     = int(unsafe.Offsetof(probes.TLSEvent{}.Data))
	sizeFDIO    = int(unsafe.Sizeof(probes.FDIOEvent{}))
	headFDIO    = int(unsafe.Offsetof(probes.FDIOEvent{}.Data))

	offsetKind = int(unsafe.Offsetof(probes.EventHeader{}.Kind))
	// maxRecord is the largest struct a record is viewed as.
	maxRecord = max(sizeFuncArgs, sizeGoroutine, sizeSyscall, sizeSyscallExit, sizeProcess, sizePyStack, sizePyAudit, sizeTLS, sizeFDIO)
)

// syscallNames maps x86-64 syscall numbers to the names used in config and spans.
var syscallNames = map[uint32]string{
	42: "connect", 43: "accept", 288: "accept", 44: "sendto", 59: "execve", 322: "execve", 257: "openat",
}

// recordKind is how one kind of ring-buffer record is handled.
type recordKind struct {
	name string // the `kind` attribute of the receiver's metrics
	// min: the bytes every record of the kind holds (checked here, once, for every kind);
	// full: the struct the handler views it as (the kernel sends Python stacks, audit events
	// and TLS data only as far as they were filled).
	min, full int
	// handle turns the record into spans; it returns why the record was dropped, or "".
	handle func(r *ebpfReceiver, h spans.Header, rec []byte) string
}

// numKinds bounds the kind numbers the kernel sends (enum event_kind).
const numKinds = probes.KindFDIO + 1

// recordKinds is the decoder's table, by kind. Receivers copy it (tests replace handlers).
var recordKinds = [numKinds]recordKind{
	probes.KindFuncEntry:       {"func_entry", sizeFunc, sizeFuncArgs, (*ebpfReceiver).onFuncEntry},
	probes.KindFuncReturn:      {"func_return", sizeFunc, sizeFunc, (*ebpfReceiver).onFuncReturn},
	probes.KindGoroutineCreate: {"goroutine_create", sizeGoroutine, sizeGoroutine, (*ebpfReceiver).onGoroutineCreate},
	probes.KindSyscallEnter:    {"syscall_enter", sizeSyscall, sizeSyscall, (*ebpfReceiver).onSyscallEnter},
	probes.KindSyscallExit:     {"syscall_exit", sizeSyscallExit, sizeSyscallExit, (*ebpfReceiver).onSyscallExit},
	probes.KindProcessExec:     {"process_exec", sizeProcess, sizeProcess, (*ebpfReceiver).onProcessExec},
	probes.KindProcessExit:     {"process_exit", sizeProcess, sizeProcess, (*ebpfReceiver).onProcessExit},
	probes.KindProcessFork:     {"process_fork", sizeProcess, sizeProcess, (*ebpfReceiver).onProcessFork},
	probes.KindPythonStack:     {"python_stack", headPyStack, sizePyStack, (*ebpfReceiver).onPythonStack},
	probes.KindPythonAudit:     {"python_audit", headPyAudit, sizePyAudit, (*ebpfReceiver).onPythonAudit},
	probes.KindTLSData:         {"tls_data", headTLS, sizeTLS, (*ebpfReceiver).onTLS},
	probes.KindThreadExit:      {"thread_exit", sizeProcess, sizeProcess, (*ebpfReceiver).onThreadExit},
	probes.KindFDIO:            {"fd_io", headFDIO, sizeFDIO, (*ebpfReceiver).onFDIO},
}

// kindUnknown names records whose kind is not in the table (or cannot be read).
const kindUnknown = "unknown"

// decoder checks every record against its kind's size and gives handlers a view of it.
type decoder struct {
	kinds [numKinds]recordKind
	// scratch holds a record that cannot be viewed in place (shorter than its struct, or not
	// 8-byte aligned); dirty is how far its last use wrote.
	scratch []uint64
	dirty   int
}

func newDecoder() *decoder { return &decoder{kinds: recordKinds} }

// view returns the record's bytes in memory that holds the whole struct of its kind (full
// bytes), 8-byte aligned: in place when the record is that long, else copied, with the bytes the
// kernel did not send zeroed. A handler can then read any field of the struct; those the record
// did not hold read 0, never another record's bytes. len(view) is what the kernel sent.
func (d *decoder) view(raw []byte, full int) []byte {
	if len(raw) >= full && uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%8 == 0 {
		return raw
	}
	if d.scratch == nil {
		d.scratch = make([]uint64, (maxRecord+7)/8)
	}
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&d.scratch[0])), len(d.scratch)*8)
	n := copy(buf, raw)
	if d.dirty > n {
		clear(buf[n:d.dirty])
	}
	d.dirty = n
	return buf[:n]
}

// as is the one place a record's bytes become a struct: rec must come from view with a full size
// of at least T's (the table guarantees it for the kind's handler).
func as[T any](rec []byte) *T {
	if cap(rec) < int(unsafe.Sizeof(*new(T))) {
		panic("ebpf receiver: a record viewed as a larger struct than its kind's") // a bug of the table
	}
	return (*T)(unsafe.Pointer(unsafe.SliceData(rec)))
}

// handle decodes one ring-buffer record and feeds the span builder. Every kind is checked
// against its size here; a record that fails a check is dropped and counted by kind and
// reason. A panic in a record's handling is recovered here too (see recoverRecord).
func (r *ebpfReceiver) handle(raw []byte) {
	if len(raw) < sizeHeader {
		r.dropRecord(kindUnknown, "short_header")
		return
	}
	kind := binary.LittleEndian.Uint32(raw[offsetKind:])
	if kind >= numKinds || r.decoder.kinds[kind].handle == nil {
		r.dropRecord(kindUnknown, "unknown_kind")
		return
	}
	k := &r.decoder.kinds[kind]
	if len(raw) < k.min {
		r.dropRecord(k.name, "short_record")
		return
	}
	rec := r.decoder.view(raw, k.full)
	h := as[probes.EventHeader](rec)
	hdr := spans.Header{Mono: h.TsNs, Time: r.clock.wall(h.TsNs), PID: h.Tgid, TID: h.Tid, Routine: h.Routine, CgroupID: h.CgroupId}
	defer r.recoverRecord(k.name, hdr)
	if reason := k.handle(r, hdr, rec); reason != "" {
		r.dropRecord(k.name, reason)
	}
}

// dropRecord counts a record that was not used.
func (r *ebpfReceiver) dropRecord(kind, reason string) {
	r.telemetry.eventsInvalid.Add(ctxBackground, 1, metric.WithAttributes(
		attribute.String("kind", kind), attribute.String("reason", reason)))
}

func (r *ebpfReceiver) onFuncEntry(hdr spans.Header, rec []byte) string {
	h := as[probes.EventHeader](rec)
	pi := r.attacher.probe(h.ProbeId)
	if pi == nil {
		return "unknown_probe"
	}
	var args []spans.ArgValue
	if len(rec) >= sizeFuncArgs {
		args = r.decodeArgs(pi, as[probes.FuncArgsEvent](rec))
	}
	r.builder.FuncEntry(hdr, pi.probe, args)
	return ""
}

func (r *ebpfReceiver) onFuncReturn(hdr spans.Header, rec []byte) string {
	h := as[probes.EventHeader](rec)
	if r.attacher.probe(h.ProbeId) == nil {
		return "unknown_probe"
	}
	r.builder.FuncReturn(hdr, h.ProbeId)
	return ""
}

func (r *ebpfReceiver) onGoroutineCreate(hdr spans.Header, rec []byte) string {
	r.builder.GoroutineCreate(hdr, as[probes.GoroutineEvent](rec).Child)
	return ""
}

func (r *ebpfReceiver) onSyscallEnter(hdr spans.Header, rec []byte) string {
	e := as[probes.SyscallEvent](rec)
	if syscallNames[e.Hdr.ProbeId] == "" {
		return "unknown_syscall"
	}
	sc := r.decodeSyscall(e)
	if r.python != nil {
		if st := r.python.take(hdr, r.targetName(hdr.PID)); st != nil {
			r.builder.ObserveStack(hdr, st.funcs, st.truncated)
			if len(st.frames) > 0 {
				sc.NativeStack, sc.Stack = sc.Stack, st.frames
			}
		}
	}
	r.builder.SyscallEnter(hdr, sc)
	return ""
}

func (r *ebpfReceiver) onSyscallExit(hdr spans.Header, rec []byte) string {
	e := as[probes.SyscallExitEvent](rec)
	if e.Sock != 0 {
		r.builder.SocketOf(hdr, spans.SocketID{Sock: e.Sock, Ino: e.Ino})
	}
	r.builder.SyscallExit(hdr, e.Ret, sockaddr(e.Family, e.Addr, e.Port))
	return ""
}

// onFDIO hands a socket I/O record to the sockets tracer.
func (r *ebpfReceiver) onFDIO(hdr spans.Header, rec []byte) string {
	if r.sockets == nil {
		return "sockets_disabled"
	}
	return r.sockets.Handle(hdr, rec)
}

func (r *ebpfReceiver) onThreadExit(hdr spans.Header, _ []byte) string {
	r.builder.ThreadExit(hdr)
	return ""
}

func (r *ebpfReceiver) onProcessExec(hdr spans.Header, rec []byte) string {
	e := as[probes.ProcessEvent](rec)
	r.forgetProcessState(hdr.PID)
	r.attacher.onExec(hdr, e.TargetId, cString(e.Filename[:], e.FilenameLen))
	return ""
}

func (r *ebpfReceiver) onProcessFork(hdr spans.Header, rec []byte) string {
	e := as[probes.ProcessEvent](rec)
	r.attacher.onFork(hdr, e.ChildTgid, e.TargetId)
	return ""
}

func (r *ebpfReceiver) onProcessExit(hdr spans.Header, _ []byte) string {
	r.forgetProcessState(hdr.PID)
	r.builder.ProcessExit(hdr)
	r.attacher.onExit(hdr.PID)
	return ""
}

// forgetProcessState drops what the receiver keeps about a process's image: its TLS
// connections and its Python state (at its exit, or its exec of a new program).
func (r *ebpfReceiver) forgetProcessState(pid uint32) {
	r.tlsProcessGone(pid)
	if r.plaintext != nil {
		r.plaintext.ProcessGone(pid)
	}
	if r.python != nil {
		r.python.forget(pid)
	}
}

func (r *ebpfReceiver) onPythonStack(hdr spans.Header, rec []byte) string {
	if r.python == nil {
		return "python_disabled"
	}
	if !r.python.onStack(hdr, rec) {
		return "short_record"
	}
	if as[probes.EventHeader](rec).ProbeId == probes.PythonSampleWait {
		// A sample of its own: the functions on the stack are alive, those gone ended.
		if st := r.python.take(hdr, r.targetName(hdr.PID)); st != nil {
			r.builder.ObserveStack(hdr, st.funcs, st.truncated)
		}
	}
	return ""
}

func (r *ebpfReceiver) onPythonAudit(hdr spans.Header, rec []byte) string {
	r.onAudit(hdr, rec)
	return ""
}

// targetName is the name of the target a traced process belongs to ("" when unknown).
func (r *ebpfReceiver) targetName(pid uint32) string {
	if t := r.attacher.traced[pid]; t != nil {
		return t.cfg.Name
	}
	return ""
}

// decodeArgs renders a function's captured arguments. The probe's argument list is ours (at
// most MaxArgs, checked in Config.Validate); the values are the kernel's, each bounded by its
// slot.
func (r *ebpfReceiver) decodeArgs(pi *probeInfo, e *probes.FuncArgsEvent) []spans.ArgValue {
	n := min(len(pi.probe.Args), len(e.Args), len(pi.policies))
	out := make([]spans.ArgValue, 0, n)
	for i, spec := range pi.probe.Args[:n] {
		a := &e.Args[i]
		v := spans.ArgValue{Name: spec.Name, Length: a.Num}
		if a.Flags&probes.ArgFlagReadFailed != 0 {
			v.ReadError = true
			out = append(out, v)
			continue
		}
		policy := pi.policies[i]
		switch a.Kind {
		case probes.ArgInt:
			v.Value = strconv.FormatInt(int64(a.Num), 10)
		case probes.ArgUint:
			v.Value = strconv.FormatUint(a.Num, 10)
		case probes.ArgBool:
			v.Value = strconv.FormatBool(a.Num&0xff != 0)
		case probes.ArgString, probes.ArgBytes, probes.ArgCString:
			n := min(int(a.Captured), len(a.Data))
			v.Truncated = a.Flags&probes.ArgFlagTruncated != 0
			value, counts, ok := r.redactor.Value(policy, a.Data[:n], v.Truncated)
			v.Value, v.Redacted, v.Omitted = value, counts.Total(), !ok
			out = append(out, v)
			continue
		default:
			// A kind the probe was not set up with: nothing of it can be trusted.
			v.Length, v.ReadError = 0, true
			out = append(out, v)
			continue
		}
		if policy == redact.PolicyNone {
			v.Value, v.Omitted = "", true
		}
		out = append(out, v)
	}
	return out
}

func (r *ebpfReceiver) decodeSyscall(e *probes.SyscallEvent) spans.Syscall {
	sc := spans.Syscall{
		Name:      syscallNames[e.Hdr.ProbeId],
		FD:        e.Fd,
		Flags:     e.Flags,
		Peer:      sockaddr(e.Family, e.Addr, e.Port),
		Truncated: e.Truncated != 0,
	}
	if e.PathLen > 0 {
		sc.Path, _ = r.redactor.String(cString(e.Path[:], e.PathLen))
	}
	if e.ArgvLen > 0 {
		n := min(int(e.ArgvLen), len(e.Argv))
		for _, arg := range bytes.Split(bytes.TrimRight(e.Argv[:n], "\x00"), []byte{0}) {
			v, _, _ := r.redactor.Value(redact.PolicyRedacted, arg, false)
			sc.Argv = append(sc.Argv, v)
		}
	}
	if e.StackLen > 0 {
		n := min(int(e.StackLen), len(e.Stack))
		addrs := e.Stack[:n]
		// The frame-pointer walk skips the caller of a leaf without a frame pointer (a C
		// library syscall wrapper): its call frame information finds it on the stack.
		if caller, ok := r.symbolizer.LeafCaller(e.Hdr.Tgid, addrs[0], e.Sp, e.StackTop[:]); ok && (n < 2 || addrs[1] != caller) {
			addrs = slices.Insert(slices.Clone(addrs), 1, caller)
		}
		frames := r.symbolizer.Symbolize(e.Hdr.Tgid, addrs)
		sc.Stack = make([]spans.Frame, len(frames))
		for i, f := range frames {
			sc.Stack[i] = spans.Frame{Function: f.Function, File: f.File, Line: f.Line, Module: f.Module, Address: f.Address}
		}
	}
	return sc
}

func sockaddr(family uint16, addr [16]uint8, port uint16) netip.AddrPort {
	switch family {
	case 2: // AF_INET
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[:4])), port)
	case 10: // AF_INET6
		return netip.AddrPortFrom(netip.AddrFrom16(addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// cString returns the first n bytes of b (bounded by len(b)), as sent by the kernel.
func cString(b []uint8, n uint32) string {
	return string(b[:min(int(n), len(b))])
}
