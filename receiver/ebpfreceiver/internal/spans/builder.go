package spans

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"golang.org/x/sys/unix"
)

// ScopeName is the instrumentation scope of every span the receiver emits.
const ScopeName = "github.com/agenttrail/agenttrail/receiver/ebpfreceiver"

// Counters the receiver exports as self-telemetry. All are totals since the Builder was made.
type Counters struct {
	SpansEmitted       uint64
	UnmatchedReturns   uint64 // a return whose entry was not seen (attached mid-call)
	UnwoundSpans       uint64 // spans closed because a caller returned first (panic, missed return)
	ProcessExitSpans   uint64 // spans closed because the process exited mid-call
	OpenSpanLimitDrops uint64 // calls not recorded because max open spans was reached
	UnknownProcess     uint64 // events of a process the receiver has not registered
	// WouldBlockAccepts: non-blocking accepts that returned EAGAIN (nothing pending), not
	// made spans: they are neither activity nor a failure.
	WouldBlockAccepts uint64
	// SocketSpans: `send`/`receive` aggregate spans emitted.
	SocketSpans uint64
	// SocketEarlyFlushes: times the aggregate table was full and everything in it was emitted
	// early (nothing is dropped; the spans cover shorter windows).
	SocketEarlyFlushes uint64
	// SocketConnectionsForgotten: connects forgotten because the table of seen connects was
	// full; their sockets' I/O reads as opened before tracing.
	SocketConnectionsForgotten uint64
	// Inferred tool spans (inferred.go): opened; calls of a response not given one (beyond 16
	// per response, or over MaxOpenSpans); windows ended by the time bound.
	InferredTools        uint64
	InferredToolsDropped uint64
	InferredToolsExpired uint64
	// Coroutine spans (coroutine.go) ended without their end observed: at the process's exit or
	// reset, evicted past MaxCoroutineSpans, or found freed when another coroutine took their
	// frame address.
	CoroutineSpansUnended  uint64
	CoroutineSpansEvicted  uint64
	CoroutineAddressReused uint64
	// CoroutineUnknownParents: socket I/O calls with no parent while coroutine calls were open
	// in the process (ParentMissingCoroutine).
	CoroutineUnknownParents uint64
}

// Options bound the Builder's memory.
type Options struct {
	MaxOpenSpans int // across all processes; default 100000
	// SocketWindow: an aggregate of socket I/O is emitted at the latest this long after its
	// first call (default 5s).
	SocketWindow time.Duration
	// MaxSocketAggregates bounds the aggregates open at once (default 10000);
	// MaxSocketConnections the connects remembered (default 65536).
	MaxSocketAggregates  int
	MaxSocketConnections int
	// ConnectsTraced: connect and accept are traced, so a socket whose connect was not seen was
	// opened before tracing (otherwise agenttrail.socket.connected is unknown).
	ConnectsTraced bool
	// MaxCoroutineSpans bounds the coroutine spans open in one process (default 1024); past it
	// the oldest ends (coroutine.go).
	MaxCoroutineSpans int
}

type threadKey struct {
	pid uint32
	tid uint32
}

type spanRef struct {
	trace pcommon.TraceID
	span  pcommon.SpanID
}

type routine struct {
	stack      []*span
	inherited  spanRef   // the creating goroutine's innermost span at creation time
	lastSample time.Time // last stack sample (ObserveStack) of this thread
}

type span struct {
	ref    spanRef
	parent pcommon.SpanID
	name   string
	kind   ptrace.SpanKind
	start  Header
	probe  *Probe
	attrs  pcommon.Map
	events ptrace.SpanEventSlice
	socks  []*sockAgg // socket I/O aggregated under this span, emitted when it ends
	// Reconstructed from stack samples (ObserveStack): the activation and when it was last seen.
	observed bool
	key      [2]uint64
	lastSeen time.Time
	// coroutine: a tracked coroutine call (coroutine.go), open while suspended; on is the
	// routine whose stack it is on while it runs (nil: suspended).
	coroutine bool
	on        *routine
}

type process struct {
	info     Process
	routines map[uint64]*routine
	pending  ptrace.SpanSlice // finished spans waiting for Flush
	// inherited: the call that was open in the parent process's forking goroutine or thread;
	// work of this process with no open call of its own belongs under it.
	inherited spanRef
	// The socket I/O handoff parent (see handoff) as of span generation handoffGen.
	handoffGen uint64
	handoffRef spanRef
	handoffOK  bool
	// functions: the process opened a function span (uprobe or reconstructed), so its tool
	// spans are its own, never inferred (inferred.go).
	functions bool
	// coros: the open coroutine spans (coroutine.go), by frame address.
	coros map[uint64]*span
}

// Builder builds spans from events. Not safe for concurrent use.
type Builder struct {
	opts      Options
	rng       *rand.Rand
	procs     map[uint32]*process
	syscalls  map[threadKey]*pendingSyscall
	open      int
	pending   int
	counters  Counters
	resources []*process // processes with pending spans, in first-pending order
	socks     map[aggKey]*sockAgg
	conns     map[SocketID]connSeen // connects and accepts seen, by socket
	// spanGen counts spans opened and ended: a cached answer about open spans is valid while
	// it does not change.
	spanGen uint64
	// conversations: processes with inferred tool spans (inferred.go), by pid.
	conversations map[uint32]*conversation
}

type pendingSyscall struct {
	// proc: the process image that made the syscall; an execve returns in the new image, but
	// its span is the old one's.
	proc     *process
	sc       Syscall
	hdr      Header
	parent   spanRef
	onParent *span    // innermost open span of the same routine (openat becomes its event)
	span     *span    // child span for connect/accept/sendto/execve
	socket   SocketID // connect/accept: the socket, from the exit record (SocketOf)
}

// NewBuilder returns an empty Builder.
func NewBuilder(opts Options) *Builder {
	if opts.MaxOpenSpans <= 0 {
		opts.MaxOpenSpans = 100000
	}
	if opts.SocketWindow <= 0 {
		opts.SocketWindow = defaultSocketWindow
	}
	if opts.MaxSocketAggregates <= 0 {
		opts.MaxSocketAggregates = defaultMaxAggregates
	}
	if opts.MaxSocketConnections <= 0 {
		opts.MaxSocketConnections = defaultMaxConns
	}
	if opts.MaxCoroutineSpans <= 0 {
		opts.MaxCoroutineSpans = defaultMaxCoroutineSpans
	}
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
	if _, err := crand.Read(seed[8:]); err != nil {
		panic(fmt.Sprintf("spans: no randomness for trace ids: %v", err))
	}
	return &Builder{
		opts:     opts,
		rng:      rand.New(rand.NewChaCha8(seed)),
		procs:    make(map[uint32]*process),
		syscalls: make(map[threadKey]*pendingSyscall),
	}
}

// Counters returns the totals so far.
func (b *Builder) Counters() Counters { return b.counters }

// OpenSpans is the number of calls and syscalls in flight.
func (b *Builder) OpenSpans() int { return b.open }

// PendingSpans is the number of finished spans not yet flushed.
func (b *Builder) PendingSpans() int { return b.pending }

// AddProcess registers a traced process (or updates it after an exec).
func (b *Builder) AddProcess(p Process) {
	if existing, ok := b.procs[p.PID]; ok {
		existing.info = p
		return
	}
	b.procs[p.PID] = &process{info: p, routines: make(map[uint64]*routine), pending: ptrace.NewSpanSlice()}
}

// ProcessExec records that the process in h replaced its program (execve). The old image's
// spans keep its identity: they stay with its process value until Flush, as at an exit, and its
// calls still open are closed (the exec ended them; the execve itself returns in the new image
// and stays the old image's span). The new image is named after path, the file the kernel
// exec'd, with the exec's arguments as command line, until AddProcess says more: the receiver
// reads /proc after the exec, when a short program may have exited already. Its work still
// belongs under the call its process was forked from.
func (b *Builder) ProcessExec(h Header, path string) {
	old := b.procs[h.PID]
	if old == nil {
		return
	}
	info := old.info
	info.CommandLine = ""
	info.IsGo = false // the kernel keys the new image by thread until it is known to be Go
	info.Capture = nil
	const reason = "process replaced its program (exec) during the call"
	var execve *pendingSyscall
	var execveKey threadKey
	for tk, ps := range b.syscalls {
		if tk.pid != h.PID || ps.proc != old {
			continue
		}
		if ps.sc.Name == "execve" && (execve == nil || tk.tid == h.TID) {
			if execve != nil { // two threads in execve at once (rare): the leader's is taken as the one that won
				delete(b.syscalls, execveKey)
				b.completeSyscall(execve, h.Time, 0, netip.AddrPort{}, reason)
			}
			execve, execveKey = ps, tk
			continue
		}
		delete(b.syscalls, tk)
		b.completeSyscall(ps, h.Time, 0, netip.AddrPort{}, reason)
	}
	if execve != nil {
		info.CommandLine = strings.Join(execve.sc.Argv, " ")
		if path == "" {
			path = execve.sc.Path
		}
		if execveKey.tid != h.TID {
			// A thread other than the leader exec'd: it returns as the leader (h.TID).
			delete(b.syscalls, execveKey)
			b.syscalls[threadKey{h.PID, h.TID}] = execve
		}
	}
	if path != "" {
		info.Executable = path
	}
	for _, r := range old.routines {
		for j := len(r.stack) - 1; j >= 0; j-- {
			if s := r.stack[j]; s.observed {
				b.finish(old, s, s.lastSeen, "")
				continue
			}
			b.counters.ProcessExitSpans++
			b.finish(old, r.stack[j], h.Time, reason)
		}
	}
	old.routines = nil
	b.emitSockets(func(a *sockAgg) bool { return a.proc == old })
	b.procs[h.PID] = &process{info: info, routines: make(map[uint64]*routine), pending: ptrace.NewSpanSlice(), inherited: old.inherited}
}

// Process returns what is known of a registered process.
func (b *Builder) Process(pid uint32) (Process, bool) {
	p, ok := b.procs[pid]
	if !ok {
		return Process{}, false
	}
	return p.info, true
}

// HasProcess reports whether the pid is registered.
func (b *Builder) HasProcess(pid uint32) bool {
	_, ok := b.procs[pid]
	return ok
}

func (b *Builder) newTraceID() pcommon.TraceID {
	var id pcommon.TraceID
	for id.IsEmpty() {
		binary.LittleEndian.PutUint64(id[:8], b.rng.Uint64())
		binary.LittleEndian.PutUint64(id[8:], b.rng.Uint64())
	}
	return id
}

func (b *Builder) newSpanID() pcommon.SpanID {
	var id pcommon.SpanID
	for id.IsEmpty() {
		binary.LittleEndian.PutUint64(id[:], b.rng.Uint64())
	}
	return id
}

func (p *process) routineFor(h Header) (*routine, uint64) {
	key := h.Routine
	if key == 0 {
		key = uint64(h.TID)
	}
	r := p.routines[key]
	if r == nil {
		r = &routine{inherited: p.inherited}
		p.routines[key] = r
	}
	return r, key
}

// parentOf is the span new work of this routine belongs under: its innermost open call, or
// what it inherited from the goroutine that created it.
func (r *routine) parentOf() (spanRef, *span) {
	if n := len(r.stack); n > 0 {
		return r.stack[n-1].ref, r.stack[n-1]
	}
	return r.inherited, nil
}

func (b *Builder) startSpan(h Header, parent spanRef, name string, kind ptrace.SpanKind) *span {
	s := &span{name: name, kind: kind, start: h, attrs: pcommon.NewMap(), events: ptrace.NewSpanEventSlice()}
	if parent.trace.IsEmpty() {
		s.ref.trace = b.newTraceID()
	} else {
		s.ref.trace = parent.trace
		s.parent = parent.span
	}
	s.ref.span = b.newSpanID()
	b.open++
	b.spanGen++
	return s
}

// FuncEntry opens a span for a call of probe.
func (b *Builder) FuncEntry(h Header, probe *Probe, args []ArgValue) {
	p := b.procs[h.PID]
	if p == nil {
		b.counters.UnknownProcess++
		return
	}
	if b.open >= b.opts.MaxOpenSpans {
		b.counters.OpenSpanLimitDrops++
		return
	}
	r, _ := p.routineFor(h)
	parent, _ := r.parentOf()
	name, kind := functionSpanName(probe)
	s := b.startSpan(h, parent, name, kind)
	s.probe = probe
	setFunctionAttributes(s.attrs, probe, h)
	setArgAttributes(s.attrs, probe, args)
	r.stack = append(r.stack, s)
	p.functions = true
}

// FuncReturn closes the innermost open call of probe in the same goroutine or thread. Calls
// opened after it that never returned (a panic unwound them) are closed with an error.
func (b *Builder) FuncReturn(h Header, probeID uint32) {
	p := b.procs[h.PID]
	if p == nil {
		b.counters.UnknownProcess++
		return
	}
	r, _ := p.routineFor(h)
	i := len(r.stack) - 1
	for ; i >= 0; i-- {
		if !r.stack[i].observed && r.stack[i].probe.ID == probeID {
			break
		}
	}
	if i < 0 {
		b.counters.UnmatchedReturns++
		return
	}
	for j := len(r.stack) - 1; j > i; j-- {
		b.counters.UnwoundSpans++
		b.finish(p, r.stack[j], h.Time, "unwound: a caller returned before this call did (panic or recover)")
	}
	b.finish(p, r.stack[i], h.Time, "")
	r.stack = r.stack[:i]
}

// GoroutineCreate records that the goroutine at h.Routine created child: work of the child with
// no open call of its own belongs under the creator's innermost open call.
func (b *Builder) GoroutineCreate(h Header, child uint64) {
	p := b.procs[h.PID]
	if p == nil {
		b.counters.UnknownProcess++
		return
	}
	parent := p.routines[h.Routine]
	c := p.routines[child]
	if c == nil {
		c = &routine{}
		p.routines[child] = c
	} else {
		// The runtime reuses g structures: calls still open on this one belong to a goroutine
		// that ended without returning from them.
		for j := len(c.stack) - 1; j >= 0; j-- {
			b.counters.UnwoundSpans++
			b.finish(p, c.stack[j], h.Time, "goroutine ended without returning from this call")
		}
		c.stack = c.stack[:0]
	}
	c.inherited = spanRef{}
	if parent != nil {
		c.inherited, _ = parent.parentOf()
	}
}

// ProcessFork records that the process in h forked child (registered with AddProcess): the
// child's work belongs under the forking goroutine's or thread's innermost open call.
func (b *Builder) ProcessFork(h Header, child uint32) {
	p, c := b.procs[h.PID], b.procs[child]
	if p == nil || c == nil {
		return
	}
	r, _ := p.routineFor(h)
	c.inherited, _ = r.parentOf()
}

// SyscallEnter starts a syscall of a traced process.
func (b *Builder) SyscallEnter(h Header, sc Syscall) {
	p := b.procs[h.PID]
	if p == nil {
		b.counters.UnknownProcess++
		return
	}
	r, _ := p.routineFor(h)
	parent, onStack := r.parentOf()
	ps := &pendingSyscall{proc: p, sc: sc, hdr: h, parent: parent, onParent: onStack}
	if sc.Name != "openat" || onStack == nil {
		kind := ptrace.SpanKindInternal
		switch sc.Name {
		case "connect", "sendto":
			kind = ptrace.SpanKindClient
		case "accept":
			kind = ptrace.SpanKindServer
		}
		ps.span = b.startSpan(h, parent, sc.Name, kind)
		setSyscallAttributes(ps.span.attrs, sc, h)
	}
	tk := threadKey{h.PID, h.TID}
	if old := b.syscalls[tk]; old != nil {
		// The thread never returned from the previous syscall as far as we saw (lost exit record).
		b.completeSyscall(old, h.Time, 0, netip.AddrPort{}, "no exit seen for this syscall")
	}
	b.syscalls[tk] = ps
}

// SyscallExit completes the thread's pending syscall. peer is the accepted connection's peer.
func (b *Builder) SyscallExit(h Header, ret int64, peer netip.AddrPort) {
	p := b.procs[h.PID]
	if p == nil {
		b.counters.UnknownProcess++
		return
	}
	tk := threadKey{h.PID, h.TID}
	ps := b.syscalls[tk]
	if ps == nil {
		return // entered before the receiver started, or its entry record was lost
	}
	delete(b.syscalls, tk)
	b.completeSyscall(ps, h.Time, ret, peer, "")
}

func (b *Builder) completeSyscall(ps *pendingSyscall, end time.Time, ret int64, peer netip.AddrPort, failure string) {
	p := ps.proc
	if ps.span == nil {
		ev := ps.onParent.events.AppendEmpty()
		ev.SetName(ps.sc.Name)
		ev.SetTimestamp(pcommon.NewTimestampFromTime(ps.hdr.Time))
		setSyscallAttributes(ev.Attributes(), ps.sc, ps.hdr)
		setSyscallResult(ev.Attributes(), ps.sc.Name, ret, failure)
		return
	}
	s := ps.span
	if failure == "" && ps.sc.Name == "accept" && ret == -int64(unix.EAGAIN) {
		// A non-blocking accept with no connection pending (EAGAIN, which is EWOULDBLOCK on
		// Linux): the server's event loop polls and tries again. As a span it would be a
		// one-span trace with an error status every time a server goes idle.
		b.open--
		b.counters.WouldBlockAccepts++
		return
	}
	if failure == "" {
		b.socketSeen(ps, ret)
	}
	if peer.IsValid() {
		s.attrs.PutStr("network.peer.address", peer.Addr().String())
		s.attrs.PutInt("network.peer.port", int64(peer.Port()))
	}
	msg := failure
	if msg == "" {
		msg = setSyscallResult(s.attrs, ps.sc.Name, ret, "")
	}
	b.finish(p, s, end, msg)
}

// ProcessExit closes everything still open in the process with an error status.
func (b *Builder) ProcessExit(h Header) {
	p := b.procs[h.PID]
	if p == nil {
		return
	}
	b.closeProcess(p, h.Time, "process exited during the syscall", "process exited before the call returned")
	b.emitProcessSockets(p)
	// Spans still pending stay with this process value (listed in b.resources) until Flush,
	// so a new process that reuses the pid cannot take them over.
	delete(b.procs, h.PID)
}

// ResetProcess closes everything open in the process with an error status saying why, and
// keeps the process registered: its later events start afresh (the receiver's recovery after an
// internal error while handling one of its events).
func (b *Builder) ResetProcess(pid uint32, now time.Time, reason string) {
	p := b.procs[pid]
	if p == nil {
		return
	}
	b.closeProcess(p, now, reason, reason)
	p.routines = make(map[uint64]*routine)
}

// Abandon closes every open call and syscall of every process with an error status saying
// why (the receiver is stopping), so nothing in flight is lost silently.
func (b *Builder) Abandon(now time.Time, reason string) {
	for pid, p := range b.procs {
		b.closeProcess(p, now, reason, reason)
		b.emitProcessSockets(p)
		delete(b.procs, pid)
	}
}

func (b *Builder) closeProcess(p *process, now time.Time, syscallMsg, callMsg string) {
	for tk, ps := range b.syscalls {
		if tk.pid == p.info.PID {
			delete(b.syscalls, tk)
			b.completeSyscall(ps, now, 0, netip.AddrPort{}, syscallMsg)
		}
	}
	for _, r := range p.routines {
		for j := len(r.stack) - 1; j >= 0; j-- {
			if s := r.stack[j]; s.coroutine {
				continue // ended below, with the suspended ones
			} else if s.observed {
				// Seen on the stack until lastSeen: that is all that is known of its end.
				b.finish(p, s, s.lastSeen, "")
				continue
			}
			b.counters.ProcessExitSpans++
			b.finish(p, r.stack[j], now, callMsg)
		}
	}
	p.routines = nil
	b.endCoroutines(p)
}

func (b *Builder) finish(p *process, s *span, end time.Time, errMsg string) {
	b.open--
	b.spanGen++
	out := p.pending.AppendEmpty()
	out.SetTraceID(s.ref.trace)
	out.SetSpanID(s.ref.span)
	out.SetParentSpanID(s.parent)
	out.SetName(s.name)
	out.SetKind(s.kind)
	out.SetStartTimestamp(pcommon.NewTimestampFromTime(s.start.Time))
	if end.Before(s.start.Time) {
		end = s.start.Time
	}
	out.SetEndTimestamp(pcommon.NewTimestampFromTime(end))
	s.attrs.MoveTo(out.Attributes())
	s.events.MoveAndAppendTo(out.Events())
	if errMsg != "" {
		out.Status().SetCode(ptrace.StatusCodeError)
		out.Status().SetMessage(errMsg)
	}
	if p.pending.Len() == 1 {
		b.resources = append(b.resources, p)
	}
	b.pending++
	b.counters.SpansEmitted++
	for _, a := range s.socks {
		b.emitSocket(a) // the call ended: its I/O is complete
	}
	s.socks = nil
}

// Flush returns the finished spans, one ResourceSpans per process, and forgets them.
func (b *Builder) Flush() ptrace.Traces {
	td := ptrace.NewTraces()
	for _, p := range b.resources {
		if p.pending.Len() == 0 {
			continue
		}
		rs := td.ResourceSpans().AppendEmpty()
		setResourceAttributes(rs.Resource().Attributes(), p.info)
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName(ScopeName)
		p.pending.MoveAndAppendTo(ss.Spans())
	}
	b.resources = b.resources[:0]
	b.pending = 0
	return td
}

func functionSpanName(p *Probe) (string, ptrace.SpanKind) {
	switch p.Role {
	case RolePrompt:
		return "invoke_agent " + p.Target, ptrace.SpanKindInternal
	case RoleInference:
		if p.Model != "" {
			return "chat " + p.Model, ptrace.SpanKindClient
		}
		return "chat", ptrace.SpanKindClient
	case RoleTool:
		return "execute_tool " + p.ToolName, ptrace.SpanKindInternal
	}
	return p.Symbol, ptrace.SpanKindInternal
}

func setFunctionAttributes(m pcommon.Map, p *Probe, h Header) {
	m.PutStr("code.function.name", p.Symbol)
	if p.File != "" {
		m.PutStr("code.file.path", p.File)
		m.PutInt("code.line.number", int64(p.Line))
	}
	m.PutStr("agenttrail.role", string(p.Role))
	if p.Coroutine {
		m.PutBool("agenttrail.python.coroutine", true)
	}
	m.PutInt("thread.id", int64(h.TID))
	if h.Routine != 0 {
		m.PutStr("agenttrail.goroutine", "0x"+strconv.FormatUint(h.Routine, 16))
	}
	switch p.Role {
	case RolePrompt:
		m.PutStr("gen_ai.operation.name", "invoke_agent")
		m.PutStr("gen_ai.agent.name", p.Target)
	case RoleInference:
		m.PutStr("gen_ai.operation.name", "chat")
		if p.Model != "" {
			m.PutStr("gen_ai.request.model", p.Model)
		}
	case RoleTool:
		m.PutStr("gen_ai.operation.name", "execute_tool")
		m.PutStr("gen_ai.tool.name", p.ToolName)
	}
}

func setArgAttributes(m pcommon.Map, p *Probe, args []ArgValue) {
	if len(args) == 0 {
		return
	}
	var toolArgs pcommon.Map
	if p.Role == RoleTool {
		toolArgs = pcommon.NewMap()
	}
	for _, a := range args {
		key := "agenttrail.arg." + a.Name
		switch {
		case a.ReadError:
			m.PutStr(key+".error", "argument memory could not be read")
			continue
		case a.Omitted:
			m.PutInt(key+".length", int64(a.Length))
			continue
		}
		m.PutStr(key, a.Value)
		if a.Truncated {
			m.PutBool(key+".truncated", true)
			m.PutInt(key+".length", int64(a.Length))
		}
		if a.Redacted > 0 {
			m.PutInt(key+".redactions", int64(a.Redacted))
		}
		if toolArgs != (pcommon.Map{}) {
			toolArgs.PutStr(a.Name, a.Value)
		}
	}
	if toolArgs != (pcommon.Map{}) && toolArgs.Len() > 0 {
		m.PutStr("gen_ai.tool.call.arguments", mapJSON(toolArgs))
	}
}

// mapJSON renders string attributes as a JSON object with sorted keys.
func mapJSON(m pcommon.Map) string {
	var sb strings.Builder
	sb.WriteByte('{')
	first := true
	m.Range(func(k string, v pcommon.Value) bool {
		if !first {
			sb.WriteByte(',')
		}
		first = false
		sb.WriteString(strconv.Quote(k))
		sb.WriteByte(':')
		sb.WriteString(strconv.Quote(v.Str()))
		return true
	})
	sb.WriteByte('}')
	return sb.String()
}

func setSyscallAttributes(m pcommon.Map, sc Syscall, h Header) {
	m.PutStr("agenttrail.syscall", sc.Name)
	m.PutInt("thread.id", int64(h.TID))
	if h.Routine != 0 {
		m.PutStr("agenttrail.goroutine", "0x"+strconv.FormatUint(h.Routine, 16))
	}
	switch sc.Name {
	case "connect", "sendto":
		if sc.Peer.IsValid() {
			m.PutStr("network.peer.address", sc.Peer.Addr().String())
			m.PutInt("network.peer.port", int64(sc.Peer.Port()))
			if sc.Peer.Addr().Is4() || sc.Peer.Addr().Is4In6() {
				m.PutStr("network.type", "ipv4")
			} else {
				m.PutStr("network.type", "ipv6")
			}
		}
		m.PutInt("agenttrail.fd", sc.FD)
	case "accept":
		m.PutInt("agenttrail.fd", sc.FD)
	case "execve":
		m.PutStr("process.executable.path", sc.Path)
		m.PutStr("process.command_line", strings.Join(sc.Argv, " "))
	case "openat":
		m.PutStr("file.path", sc.Path)
		m.PutStr("agenttrail.open.flags", OpenFlags(sc.Flags))
	}
	if sc.Truncated {
		m.PutBool("agenttrail.truncated", true)
	}
	if len(sc.Stack) > 0 {
		m.PutStr("code.stacktrace", FormatStack(sc.Stack))
	}
	if len(sc.NativeStack) > 0 {
		m.PutStr("agenttrail.stacktrace.native", FormatStack(sc.NativeStack))
	}
}

// setSyscallResult records the return value; it returns an error message for failed syscalls.
func setSyscallResult(m pcommon.Map, name string, ret int64, failure string) string {
	if failure != "" {
		m.PutStr("error.type", "incomplete")
		return failure
	}
	m.PutInt("agenttrail.syscall.result", ret)
	if ret >= 0 {
		return ""
	}
	errno := unix.Errno(-ret)
	if name == "connect" && errno == unix.EINPROGRESS {
		return "" // a non-blocking connect in progress, as Go and most event loops do
	}
	m.PutStr("error.type", unix.ErrnoName(errno))
	return fmt.Sprintf("%s failed: %s", name, errno.Error())
}

// FormatStack renders frames one per line, innermost first, as code.stacktrace.
func FormatStack(frames []Frame) string {
	var sb strings.Builder
	for i, f := range frames {
		if i > 0 {
			sb.WriteByte('\n')
		}
		if f.Function != "" {
			sb.WriteString(f.Function)
		} else {
			sb.WriteString("0x")
			sb.WriteString(strconv.FormatUint(f.Address, 16))
		}
		switch {
		case f.File != "":
			sb.WriteString(" (")
			sb.WriteString(f.File)
			sb.WriteByte(':')
			sb.WriteString(strconv.Itoa(f.Line))
			sb.WriteByte(')')
		case f.Module != "":
			sb.WriteString(" (")
			sb.WriteString(f.Module)
			sb.WriteByte(')')
		}
	}
	return sb.String()
}

var openFlagNames = []struct {
	bit  uint64
	name string
}{
	{unix.O_CREAT, "O_CREAT"}, {unix.O_EXCL, "O_EXCL"}, {unix.O_TRUNC, "O_TRUNC"},
	{unix.O_APPEND, "O_APPEND"}, {unix.O_NONBLOCK, "O_NONBLOCK"}, {unix.O_DIRECTORY, "O_DIRECTORY"},
	{unix.O_CLOEXEC, "O_CLOEXEC"}, {unix.O_NOFOLLOW, "O_NOFOLLOW"},
}

// OpenFlags names openat flags, access mode first.
func OpenFlags(flags uint64) string {
	var parts []string
	switch flags & unix.O_ACCMODE {
	case unix.O_RDONLY:
		parts = append(parts, "O_RDONLY")
	case unix.O_WRONLY:
		parts = append(parts, "O_WRONLY")
	case unix.O_RDWR:
		parts = append(parts, "O_RDWR")
	}
	for _, f := range openFlagNames {
		if flags&f.bit != 0 {
			parts = append(parts, f.name)
		}
	}
	return strings.Join(parts, "|")
}

func setResourceAttributes(m pcommon.Map, p Process) {
	m.PutStr("service.name", p.Target)
	m.PutInt("process.pid", int64(p.PID))
	if p.ParentPID != 0 {
		m.PutInt("process.parent_pid", int64(p.ParentPID))
	}
	if p.Executable != "" {
		m.PutStr("process.executable.path", p.Executable)
	}
	if p.CommandLine != "" {
		m.PutStr("process.command_line", p.CommandLine)
	}
	if p.ContainerID != "" {
		m.PutStr("container.id", p.ContainerID)
	}
	if p.IsGo {
		m.PutStr("process.runtime.name", "go")
	}
	if c := p.Capture; c != nil {
		if c.Functions != "" {
			m.PutStr("agenttrail.capture.functions", c.Functions)
		}
		m.PutStr("agenttrail.capture.tls", c.TLS)
		m.PutStr("agenttrail.capture.python", c.Python)
		putStrings(m, "agenttrail.capture.syscalls", c.Syscalls)
		m.PutBool("agenttrail.capture.incomplete", len(c.Missing) > 0)
		if len(c.Missing) > 0 {
			putStrings(m, "agenttrail.capture.missing", c.Missing)
		}
	}
}

func putStrings(m pcommon.Map, key string, values []string) {
	s := m.PutEmptySlice(key)
	s.EnsureCapacity(len(values))
	for _, v := range values {
		s.AppendEmpty().SetStr(v)
	}
}
