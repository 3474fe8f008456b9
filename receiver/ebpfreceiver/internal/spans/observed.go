package spans

import (
	"net/netip"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// BoundsObserved is the value of agenttrail.span.bounds on spans reconstructed from stack
// samples: their start and end are the first and last moments the function was seen on the
// stack, not its real entry and exit.
const BoundsObserved = "observed"

// StackFunc is a configured function found on one stack sample.
type StackFunc struct {
	// Key identifies one activation of the function (for Python: the frame and the code object).
	Key [2]uint64
	// Probe describes the function; its ID is 0.
	Probe *Probe
	// Tracked: a coroutine whose end the caller reports (CoroutineEnd): one span per call,
	// kept open while it is suspended (coroutine.go).
	Tracked bool
}

// ObserveStack reconciles the thread's reconstructed spans with one stack sample taken at h:
// funcs are the configured functions on the stack, outermost first. A function that was open
// and is still on the stack (same activation, same position) stays open and its last-seen time
// moves to h; open functions missing from the sample end at the moment they were last seen;
// functions new in the sample start at h, each the child of the configured function below it.
// A truncated sample (its outermost frames missing) only extends and opens, never closes.
func (b *Builder) ObserveStack(h Header, funcs []StackFunc, truncated bool) {
	p := b.procs[h.PID]
	if p == nil {
		b.counters.UnknownProcess++
		return
	}
	r, key := p.routineFor(h)
	r.lastSample = h.Time
	var open []*span
	for _, s := range r.stack {
		if s.observed {
			open = append(open, s)
		}
	}
	k := 0
	if truncated {
		// The sample lacks the outermost frames: match what it has against the open spans.
		for k < len(open) && !containsKey(funcs, open[k].key) {
			k++
		}
		start := k
		for k < len(open) && k-start < len(funcs) && open[k].key == funcs[k-start].Key {
			k++
		}
		for _, s := range open[start:k] {
			s.lastSeen = h.Time
		}
		funcs = funcs[k-start:]
	} else {
		for k < len(open) && k < len(funcs) && open[k].key == funcs[k].Key {
			open[k].lastSeen = h.Time
			k++
		}
		for j := len(open) - 1; j >= k; j-- {
			b.closeObserved(p, r, open[j])
		}
		funcs = funcs[k:]
	}
	for _, f := range funcs {
		resumed := f.Tracked && p.coros[f.Key[0]] != nil && p.coros[f.Key[0]].key == f.Key
		if b.open >= b.opts.MaxOpenSpans && !resumed {
			b.counters.OpenSpanLimitDrops++
			return
		}
		parent, _ := r.parentOf()
		if f.Tracked {
			s := b.startCoroutine(p, h, f, parent)
			s.lastSeen = h.Time
			s.on = r
			r.stack = append(r.stack, s)
			p.functions = true
			continue
		}
		name, kind := functionSpanName(f.Probe)
		s := b.startSpan(h, parent, name, kind)
		s.probe = f.Probe
		s.observed = true
		s.key = f.Key
		s.lastSeen = h.Time
		setFunctionAttributes(s.attrs, f.Probe, Header{TID: h.TID, Routine: h.Routine})
		s.attrs.PutStr("agenttrail.span.bounds", BoundsObserved)
		r.stack = append(r.stack, s)
		p.functions = true
	}
	_ = key
}

func containsKey(funcs []StackFunc, key [2]uint64) bool {
	for _, f := range funcs {
		if f.Key == key {
			return true
		}
	}
	return false
}

// closeObserved ends a reconstructed span at its last observation and removes it from the stack;
// a tracked coroutine's span is only taken off the stack (it is suspended, or its thread is
// idle or gone: its end comes with CoroutineEnd).
func (b *Builder) closeObserved(p *process, r *routine, s *span) {
	if s.coroutine {
		r.remove(s)
		return
	}
	for i, x := range r.stack {
		if x == s {
			r.stack = append(r.stack[:i], r.stack[i+1:]...)
			break
		}
	}
	b.finish(p, s, s.lastSeen, "")
}

// ThreadExit ends what a finished thread (h.TID) had open: its reconstructed Python calls at the
// moment they were last seen, and native calls and a syscall in progress with an error status.
// Go calls are keyed by goroutine, not thread, and are not affected.
func (b *Builder) ThreadExit(h Header) {
	p := b.procs[h.PID]
	if p == nil {
		return
	}
	key := uint64(h.TID)
	tk := threadKey{h.PID, h.TID}
	if ps := b.syscalls[tk]; ps != nil {
		delete(b.syscalls, tk)
		b.completeSyscall(ps, h.Time, 0, netip.AddrPort{}, "thread exited during the syscall")
	}
	r := p.routines[key]
	if r == nil {
		return
	}
	for j := len(r.stack) - 1; j >= 0; j-- {
		if s := r.stack[j]; s.observed {
			b.closeObserved(p, r, s)
		} else {
			b.counters.ProcessExitSpans++
			b.finish(p, s, h.Time, "thread exited before the call returned")
			r.stack = r.stack[:j]
		}
	}
	delete(p.routines, key)
}

// ExpireObserved ends the reconstructed spans of threads that have had no stack sample for
// idle (nor a syscall in progress): a thread that waits for its next piece of work shows
// nothing, so its functions are taken to have ended when they were last seen.
func (b *Builder) ExpireObserved(now time.Time, idle time.Duration) {
	for _, p := range b.procs {
		for key, r := range p.routines {
			if r.lastSample.IsZero() || now.Sub(r.lastSample) < idle {
				continue
			}
			if b.syscallInProgress(p.info.PID, key) {
				continue
			}
			for j := len(r.stack) - 1; j >= 0; j-- {
				if r.stack[j].observed {
					b.closeObserved(p, r, r.stack[j])
				}
			}
			r.lastSample = time.Time{}
		}
	}
}

func (b *Builder) syscallInProgress(pid uint32, routineKey uint64) bool {
	for tk := range b.syscalls {
		if tk.pid == pid && uint64(tk.tid) == routineKey {
			return true
		}
	}
	return false
}

// Parent is where new work of a thread belongs, captured at one moment (see ParentOf).
type Parent struct {
	PID uint32
	ref spanRef
	// missing says why there is no parent span when one may exist but cannot be known
	// (agenttrail.parent.missing on the span made under it; "" otherwise).
	missing string
}

// ParentOf returns the span that work of h's goroutine or thread belongs under now: its
// innermost open call, or what it inherited.
func (b *Builder) ParentOf(h Header) Parent {
	p := b.procs[h.PID]
	if p == nil {
		return Parent{PID: h.PID}
	}
	r, _ := p.routineFor(h)
	ref, _ := r.parentOf()
	return Parent{PID: h.PID, ref: ref}
}

// ParentForHandoff is ParentOf for work a goroutine does on behalf of another one it cannot be
// linked to: net/http writes a request on its connection's long-lived writer goroutine, which
// inherited the call that opened the connection, not the one sending this request. When the
// goroutine has no open call of its own and exactly one call with role is open in the process,
// that call is the parent; otherwise ParentOf's answer stands (and with several such calls open
// at once the choice would be a guess, so none is made).
func (b *Builder) ParentForHandoff(h Header, role Role) Parent {
	p := b.procs[h.PID]
	if p == nil {
		return Parent{PID: h.PID}
	}
	r, _ := p.routineFor(h)
	if len(r.stack) > 0 {
		ref, _ := r.parentOf()
		return Parent{PID: h.PID, ref: ref}
	}
	var only *span
	for _, other := range p.routines {
		for _, s := range other.stack {
			if s.probe != nil && s.probe.Role == role {
				if only != nil {
					return Parent{PID: h.PID, ref: r.inherited}
				}
				only = s
			}
		}
	}
	if only != nil {
		return Parent{PID: h.PID, ref: only.ref}
	}
	return Parent{PID: h.PID, ref: r.inherited}
}

// HasSpan reports whether the parent is a span (false: new work starts a trace).
func (p Parent) HasSpan() bool { return !p.ref.trace.IsEmpty() }

// SpanData is a finished span built elsewhere (an LLM call reassembled from TLS traffic).
type SpanData struct {
	Name       string
	Kind       ptrace.SpanKind
	Start, End time.Time
	TID        uint32
	Attributes func(pcommon.Map)
	Events     func(ptrace.SpanEventSlice)
	Error      string // non-empty: error status with this message
}

// AddSpan emits a finished span under parent. It returns false when the process is unknown.
func (b *Builder) AddSpan(parent Parent, d SpanData) bool {
	p := b.procs[parent.PID]
	if p == nil {
		b.counters.UnknownProcess++
		return false
	}
	s := b.startSpan(Header{Time: d.Start, PID: parent.PID, TID: d.TID}, parent.ref, d.Name, d.Kind)
	if d.Attributes != nil {
		d.Attributes(s.attrs)
	}
	putParentMissing(s, parent.missing)
	if d.Events != nil {
		d.Events(s.events)
	}
	b.finish(p, s, d.End, d.Error)
	return true
}

// Event records a point-in-time event of h's thread: an event of its innermost open span, or,
// when none is open, a span of its own (zero length) so that it is not lost.
func (b *Builder) Event(h Header, name string, kind ptrace.SpanKind, attrs func(pcommon.Map)) {
	p := b.procs[h.PID]
	if p == nil {
		b.counters.UnknownProcess++
		return
	}
	r, _ := p.routineFor(h)
	parent, onStack := r.parentOf()
	if onStack != nil {
		ev := onStack.events.AppendEmpty()
		ev.SetName(name)
		ev.SetTimestamp(pcommon.NewTimestampFromTime(h.Time))
		if attrs != nil {
			attrs(ev.Attributes())
		}
		return
	}
	s := b.startSpan(h, parent, name, kind)
	s.attrs.PutInt("thread.id", int64(h.TID))
	if attrs != nil {
		attrs(s.attrs)
	}
	b.finish(p, s, h.Time, "")
}
