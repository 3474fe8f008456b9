// Package syscalls is the tracer of the syscalls traced processes make (connect, accept,
// sendto, execve, openat, from the syscall tracepoints: per-syscall, or sys_enter/sys_exit as
// the fallback, see probes.attachSyscalls) and of their threads' exits: each syscall
// becomes a span or event of the call that made it, with the peer, path or arguments and the
// symbolized user stack (a Python stack when the interpreter's is known). The beginning of the
// regular files they open for reading is checked for sensitive data (content.go), and only the
// names of the detectors that matched are recorded.
package syscalls

import (
	"bytes"
	"net/netip"
	"slices"
	"time"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// Tracer turns syscall records into spans. Reader goroutine only.
type Tracer struct {
	env      tracer.Env
	syscalls []string // configured, for agenttrail.capture.syscalls
	content  *sampler // nil: content sampling off, or openat not traced
}

var _ tracer.Tracer = (*Tracer)(nil)

// New returns the syscalls tracer; syscalls are the ones the kernel programs trace, content
// says whether and how files opened for reading are sampled.
func New(env tracer.Env, syscalls []string, content ContentConfig) (*Tracer, error) {
	t := &Tracer{env: env, syscalls: syscalls}
	if content.Enabled && slices.Contains(syscalls, "openat") {
		s, err := newSampler(env, content, time.Now)
		if err != nil {
			return nil, err
		}
		t.content = s
	}
	return t, nil
}

var (
	sizeSyscall     = tracer.SizeOf[probes.SyscallEvent]()
	sizeSyscallExit = tracer.SizeOf[probes.SyscallExitEvent]()
	sizeProcess     = tracer.SizeOf[probes.ProcessEvent]()
)

// names maps x86-64 syscall numbers to the names used in config and spans.
var names = map[uint32]string{
	42: "connect", 43: "accept", 288: "accept", 44: "sendto", 59: "execve", 322: "execve", 257: "openat",
}

func (t *Tracer) Name() string { return "syscalls" }

func (t *Tracer) Kinds() []tracer.Kind {
	return []tracer.Kind{
		{Kind: probes.KindSyscallEnter, Name: "syscall_enter", Min: sizeSyscall, Full: sizeSyscall, Handle: t.onEnter},
		{Kind: probes.KindSyscallExit, Name: "syscall_exit", Min: sizeSyscallExit, Full: sizeSyscallExit, Handle: t.onExit},
		{Kind: probes.KindThreadExit, Name: "thread_exit", Min: sizeProcess, Full: sizeProcess, Handle: t.onThreadExit},
	}
}

func (t *Tracer) Start()                           {}
func (t *Tracer) AttachBinary(tracer.Binary) error { return nil }
func (t *Tracer) ProcessGone(pid uint32) {
	if t.content != nil {
		for k := range t.content.pending {
			if k.pid == pid {
				delete(t.content.pending, k)
			}
		}
	}
}
func (t *Tracer) Housekeeping(time.Time) {}
func (t *Tracer) Waiting() bool          { return false }
func (t *Tracer) Close() error           { return nil }

// SetupProcess: every traced process has its syscalls traced (the syscall tracepoints are
// host-wide and filter by the kernel's set of traced processes).
func (t *Tracer) SetupProcess(p *tracer.Process) {
	if p.Capture != nil {
		p.Capture.Syscalls = t.syscalls
	}
}

func (t *Tracer) onEnter(hdr spans.Header, rec []byte) string {
	e := tracer.As[probes.SyscallEvent](rec)
	if names[e.Hdr.ProbeId] == "" {
		return "unknown_syscall"
	}
	sc := t.decode(e)
	if t.content != nil {
		t.content.forget(hdr.PID, hdr.TID) // a previous openat's exit was lost
		if sc.Name == "openat" && e.PathLen > 0 && e.Truncated == 0 {
			t.content.enter(hdr.PID, hdr.TID, tracer.CString(e.Path[:], e.PathLen), sc.Flags)
		}
	}
	if t.env.Stacks != nil {
		if frames := t.env.Stacks.Take(hdr); len(frames) > 0 {
			sc.NativeStack, sc.Stack = sc.Stack, frames
		}
	}
	t.env.Builder.SyscallEnter(hdr, sc)
	return ""
}

func (t *Tracer) onExit(hdr spans.Header, rec []byte) string {
	e := tracer.As[probes.SyscallExitEvent](rec)
	if e.Sock != 0 {
		t.env.Builder.SocketOf(hdr, spans.SocketID{Sock: e.Sock, Ino: e.Ino})
		t.env.Builder.SocketLocal(hdr, Sockaddr(e.LocalFamily, e.Local, e.LocalPort), e.Netns)
	}
	peer := Sockaddr(e.Family, e.Addr, e.Port)
	if t.content != nil {
		if d := t.content.exit(hdr.PID, hdr.TID, e.Ret); len(d) > 0 {
			t.env.Builder.SyscallExitContent(hdr, e.Ret, peer, d)
			return ""
		}
	}
	t.env.Builder.SyscallExit(hdr, e.Ret, peer)
	return ""
}

func (t *Tracer) onThreadExit(hdr spans.Header, _ []byte) string {
	if t.content != nil {
		t.content.forget(hdr.PID, hdr.TID)
	}
	t.env.Builder.ThreadExit(hdr)
	return ""
}

func (t *Tracer) decode(e *probes.SyscallEvent) spans.Syscall {
	sc := spans.Syscall{
		Name:      names[e.Hdr.ProbeId],
		FD:        e.Fd,
		Flags:     e.Flags,
		Peer:      Sockaddr(e.Family, e.Addr, e.Port),
		Truncated: e.Truncated != 0,
	}
	red := t.env.Redactor
	if e.PathLen > 0 {
		sc.Path, _ = red.String(tracer.CString(e.Path[:], e.PathLen))
	}
	if e.ArgvLen > 0 {
		for _, arg := range bytes.Split(bytes.TrimRight(tracer.Prefix(e.Argv[:], e.ArgvLen), "\x00"), []byte{0}) {
			v, _, _ := red.Value(redact.PolicyRedacted, arg, false)
			sc.Argv = append(sc.Argv, v)
		}
	}
	if e.StackLen > 0 {
		addrs := tracer.Prefix(e.Stack[:], e.StackLen)
		sym := t.env.Symbolizer
		// The frame-pointer walk skips the caller of a leaf without a frame pointer (a C
		// library syscall wrapper): its call frame information finds it on the stack.
		if caller, ok := sym.LeafCaller(e.Hdr.Tgid, addrs[0], e.Sp, e.StackTop[:]); ok && (len(addrs) < 2 || addrs[1] != caller) {
			addrs = slices.Insert(slices.Clone(addrs), 1, caller)
		}
		frames := sym.Symbolize(e.Hdr.Tgid, addrs)
		sc.Stack = make([]spans.Frame, len(frames))
		for i, f := range frames {
			sc.Stack[i] = spans.Frame{Function: f.Function, File: f.File, Line: f.Line, Module: f.Module, Address: f.Address}
		}
	}
	return sc
}

// Sockaddr is a kernel sockaddr's address and port (zero for families other than IPv4/IPv6).
func Sockaddr(family uint16, addr [16]uint8, port uint16) netip.AddrPort {
	switch family {
	case 2: // AF_INET
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[:4])), port)
	case 10: // AF_INET6
		return netip.AddrPortFrom(netip.AddrFrom16(addr).Unmap(), port)
	}
	return netip.AddrPort{}
}
