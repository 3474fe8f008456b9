package spans

import (
	"slices"
	"time"
)

// Coroutine spans. A configured Python coroutine (async def) whose end the caller can observe
// (StackFunc.Tracked: a probe reports when its object is freed) gets one span per call, not one
// per run between awaits: its frame lives inside its coroutine object, so every resumption
// shows the same frame address (StackFunc.Key[0]), and the span is kept by that address in
// the process while the coroutine is suspended. Other coroutines that run on the thread in
// between get spans of their own; work done while it runs goes under it. It ends at
// CoroutineEnd, at the process's exit (agenttrail.python.coroutine.end=not_observed), or, past
// Options.MaxCoroutineSpans open in the process, when it is the oldest (evicted).

// Values of agenttrail.python.coroutine.end the builder sets itself; CoroutineEnd's caller
// gives the others (how the coroutine's object was found).
const (
	CoroutineEndNotObserved = "not_observed" // the process exited (or was reset) first
	CoroutineEndEvicted     = "evicted"      // over MaxCoroutineSpans open in the process
	// CoroutineEndReused: another configured coroutine showed at its frame address, so its
	// object was freed without its end being seen.
	CoroutineEndReused = "address_reused"
)

const defaultMaxCoroutineSpans = 1024

// ParentMissingCoroutine is agenttrail.parent.missing on a span made from socket I/O (a
// plain-HTTP model call) that has no parent while coroutine calls were open in its process: the
// socket call carries no Python stack, and the thread showed no call running, so which call
// made it (if any) cannot be known. Counted in Counters.CoroutineUnknownParents per I/O call.
const ParentMissingCoroutine = "coroutine_not_known"

func putParentMissing(s *span, why string) {
	if why != "" && s.parent.IsEmpty() {
		s.attrs.PutStr("agenttrail.parent.missing", why)
	}
}

// startCoroutine returns the open span of the coroutine call f shows, or a new one opened at
// h under parent. The span is on no thread's stack when it returns.
func (b *Builder) startCoroutine(p *process, h Header, f StackFunc, parent spanRef) *span {
	if s := p.coros[f.Key[0]]; s != nil {
		if s.key == f.Key {
			if s.on != nil {
				s.on.remove(s) // it runs here now
			}
			return s
		}
		// Another function's coroutine at this address: the old one was freed unseen.
		b.endCoroutine(p, s, s.lastSeen, CoroutineEndReused, "")
		b.counters.CoroutineAddressReused++
	}
	if len(p.coros) >= b.opts.MaxCoroutineSpans {
		var oldest *span
		for _, s := range p.coros {
			if oldest == nil || s.start.Time.Before(oldest.start.Time) {
				oldest = s
			}
		}
		b.endCoroutine(p, oldest, oldest.lastSeen, CoroutineEndEvicted, "")
		b.counters.CoroutineSpansEvicted++
	}
	name, kind := functionSpanName(f.Probe)
	s := b.startSpan(h, parent, name, kind)
	s.probe = f.Probe
	s.observed = true
	s.coroutine = true
	s.key = f.Key
	setFunctionAttributes(s.attrs, f.Probe, Header{TID: h.TID, Routine: h.Routine})
	s.attrs.PutStr("agenttrail.span.bounds", BoundsObserved)
	if p.coros == nil {
		p.coros = map[uint64]*span{}
	}
	p.coros[f.Key[0]] = s
	return s
}

// remove takes s off the routine's stack (the coroutine is suspended, or ended).
func (r *routine) remove(s *span) {
	for i, x := range r.stack {
		if x == s {
			r.stack = append(r.stack[:i], r.stack[i+1:]...)
			break
		}
	}
	s.on = nil
}

// CoroutineEnd ends the span of the coroutine call whose frame is at frame running the code
// object code, when its object was freed (h): how it ended (end: agenttrail.python.coroutine.end)
// and errMsg (non-empty: error status) are the caller's reading of the object's state. The span
// ends when the coroutine was last seen running: the object is freed when the last reference
// goes (an asyncio task's coroutine when the task is released, after gather returns), which
// says that the call ended, not when. It returns false when no span of that call is open (the
// call never showed on a stack sample, or it was ended already).
func (b *Builder) CoroutineEnd(h Header, frame, code uint64, end, errMsg string) bool {
	p := b.procs[h.PID]
	if p == nil {
		b.counters.UnknownProcess++
		return false
	}
	s := p.coros[frame]
	if s == nil || s.key[1] != code {
		return false
	}
	b.endCoroutine(p, s, s.lastSeen, end, errMsg)
	return true
}

// endCoroutine ends a coroutine span, and what was open above it on the stack it is on (a
// coroutine is freed only when it no longer runs, so they are what no sample has closed yet).
func (b *Builder) endCoroutine(p *process, s *span, at time.Time, end, errMsg string) {
	if r := s.on; r != nil && slices.Contains(r.stack, s) {
		for j := len(r.stack) - 1; j >= 0 && r.stack[j] != s; j-- {
			if above := r.stack[j]; above.observed {
				b.closeObserved(p, r, above)
			} else {
				r.stack = r.stack[:j]
				b.counters.UnwoundSpans++
				b.finish(p, above, at, "its coroutine's object was freed before the call returned")
			}
		}
	}
	if s.on != nil {
		s.on.remove(s)
	}
	delete(p.coros, s.key[0])
	s.attrs.PutStr("agenttrail.python.coroutine.end", end)
	b.finish(p, s, at, errMsg)
}

// endCoroutines ends every coroutine span of the process as not observed (it exited or was
// reset), after the routines' stacks were emptied.
func (b *Builder) endCoroutines(p *process) {
	for _, s := range p.coros {
		s.on = nil
		b.counters.CoroutineSpansUnended++
		b.endCoroutine(p, s, s.lastSeen, CoroutineEndNotObserved, "")
	}
	p.coros = nil
}

// OpenCoroutineSpans is the number of coroutine spans open in the process (suspended or running).
func (b *Builder) OpenCoroutineSpans(pid uint32) int {
	if p := b.procs[pid]; p != nil {
		return len(p.coros)
	}
	return 0
}

// OpenCoroutines lists the keys (frame, code object) of the process's open coroutine spans.
func (b *Builder) OpenCoroutines(pid uint32) [][2]uint64 {
	p := b.procs[pid]
	if p == nil {
		return nil
	}
	out := make([][2]uint64, 0, len(p.coros))
	for _, s := range p.coros {
		out = append(out, s.key)
	}
	return out
}
