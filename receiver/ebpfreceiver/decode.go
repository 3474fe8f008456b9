package ebpfreceiver

import (
	"bytes"
	"net/netip"
	"slices"
	"strconv"
	"unsafe"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
)

// Record sizes; a record shorter than its kind's struct is rejected before it is read.
var (
	sizeHeader      = int(unsafe.Sizeof(probes.EventHeader{}))
	sizeFunc        = int(unsafe.Sizeof(probes.FuncEvent{}))
	sizeFuncArgs    = int(unsafe.Sizeof(probes.FuncArgsEvent{}))
	sizeGoroutine   = int(unsafe.Sizeof(probes.GoroutineEvent{}))
	sizeSyscall     = int(unsafe.Sizeof(probes.SyscallEvent{}))
	sizeSyscallExit = int(unsafe.Sizeof(probes.SyscallExitEvent{}))
	sizeProcess     = int(unsafe.Sizeof(probes.ProcessEvent{}))
)

// syscallNames maps x86-64 syscall numbers to the names used in config and spans.
var syscallNames = map[uint32]string{
	42: "connect", 43: "accept", 288: "accept", 44: "sendto", 59: "execve", 322: "execve", 257: "openat",
}

// handle decodes one ring-buffer record and feeds the span builder. The record's bytes are
// read in place: the kernel wrote them with the layout of the generated structs (checked by a
// test against the object's BTF), and the ring buffer reader hands out 8-byte aligned buffers.
func (r *ebpfReceiver) handle(raw []byte) {
	if len(raw) < sizeHeader {
		r.telemetry.eventsInvalid.Add(ctxBackground, 1)
		return
	}
	h := (*probes.EventHeader)(unsafe.Pointer(&raw[0]))
	hdr := spans.Header{Mono: h.TsNs, Time: r.clock.wall(h.TsNs), PID: h.Tgid, TID: h.Tid, Routine: h.Routine, CgroupID: h.CgroupId}
	switch h.Kind {
	case probes.KindFuncEntry:
		pi := r.attacher.probe(h.ProbeId)
		if pi == nil || len(raw) < sizeFunc {
			r.telemetry.eventsInvalid.Add(ctxBackground, 1)
			return
		}
		var args []spans.ArgValue
		if len(raw) >= sizeFuncArgs {
			e := (*probes.FuncArgsEvent)(unsafe.Pointer(&raw[0]))
			args = r.decodeArgs(pi, e)
		}
		r.builder.FuncEntry(hdr, pi.probe, args)
	case probes.KindFuncReturn:
		if len(raw) < sizeFunc {
			r.telemetry.eventsInvalid.Add(ctxBackground, 1)
			return
		}
		r.builder.FuncReturn(hdr, h.ProbeId)
	case probes.KindGoroutineCreate:
		if len(raw) < sizeGoroutine {
			r.telemetry.eventsInvalid.Add(ctxBackground, 1)
			return
		}
		e := (*probes.GoroutineEvent)(unsafe.Pointer(&raw[0]))
		r.builder.GoroutineCreate(hdr, e.Child)
	case probes.KindSyscallEnter:
		if len(raw) < sizeSyscall {
			r.telemetry.eventsInvalid.Add(ctxBackground, 1)
			return
		}
		sc := r.decodeSyscall((*probes.SyscallEvent)(unsafe.Pointer(&raw[0])))
		if r.python != nil {
			if st := r.python.take(hdr, r.targetName(h.Tgid)); st != nil {
				r.builder.ObserveStack(hdr, st.funcs, st.truncated)
				if len(st.frames) > 0 {
					sc.NativeStack, sc.Stack = sc.Stack, st.frames
				}
			}
		}
		r.builder.SyscallEnter(hdr, sc)
	case probes.KindSyscallExit:
		if len(raw) < sizeSyscallExit {
			r.telemetry.eventsInvalid.Add(ctxBackground, 1)
			return
		}
		e := (*probes.SyscallExitEvent)(unsafe.Pointer(&raw[0]))
		r.builder.SyscallExit(hdr, e.Ret, sockaddr(e.Family, e.Addr, e.Port))
	case probes.KindThreadExit:
		if len(raw) < sizeProcess {
			r.telemetry.eventsInvalid.Add(ctxBackground, 1)
			return
		}
		r.builder.ThreadExit(hdr)
	case probes.KindProcessExec, probes.KindProcessFork, probes.KindProcessExit:
		if len(raw) < sizeProcess {
			r.telemetry.eventsInvalid.Add(ctxBackground, 1)
			return
		}
		e := (*probes.ProcessEvent)(unsafe.Pointer(&raw[0]))
		switch h.Kind {
		case probes.KindProcessExec:
			r.tlsProcessGone(h.Tgid)
			if r.python != nil {
				r.python.forget(h.Tgid)
			}
			r.attacher.onExec(h.Tgid, e.TargetId, cString(e.Filename[:], e.FilenameLen))
		case probes.KindProcessFork:
			r.attacher.onFork(hdr, e.ChildTgid, e.TargetId)
		case probes.KindProcessExit:
			r.tlsProcessGone(h.Tgid)
			if r.python != nil {
				r.python.forget(h.Tgid)
			}
			r.builder.ProcessExit(hdr)
			r.attacher.onExit(h.Tgid)
		}
	case probes.KindPythonStack:
		if r.python == nil || !r.python.onStack(hdr, raw) {
			r.telemetry.eventsInvalid.Add(ctxBackground, 1)
			break
		}
		if h.ProbeId == probes.PythonSampleWait {
			// A sample of its own: the functions on the stack are alive, those gone ended.
			if st := r.python.take(hdr, r.targetName(h.Tgid)); st != nil {
				r.builder.ObserveStack(hdr, st.funcs, st.truncated)
			}
		}
	case probes.KindPythonAudit:
		r.onAudit(hdr, raw)
	case probes.KindTLSData:
		r.onTLS(hdr, raw)
	default:
		r.telemetry.eventsInvalid.Add(ctxBackground, 1)
	}
}

// targetName is the name of the target a traced process belongs to ("" when unknown).
func (r *ebpfReceiver) targetName(pid uint32) string {
	if t := r.attacher.traced[pid]; t != nil {
		return t.cfg.Name
	}
	return ""
}

func (r *ebpfReceiver) decodeArgs(pi *probeInfo, e *probes.FuncArgsEvent) []spans.ArgValue {
	out := make([]spans.ArgValue, 0, len(pi.probe.Args))
	for i, spec := range pi.probe.Args {
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
