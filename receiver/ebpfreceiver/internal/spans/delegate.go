package spans

import "time"

// Spans whose identity is fixed before their content, and work of one process placed under a
// span of another: an MCP tool call is written by the agent and served by another process (its
// stdio server), whose syscalls, sends and execs belong under the call's span while the server
// works on it, though the span itself is known only when the response comes back.

// Reserved is a span whose trace and span ids are fixed when it starts; EndReserved completes
// it with its content.
type Reserved struct {
	pid     uint32
	parent  spanRef
	ref     spanRef
	missing string // Parent.missing
}

// Reserve fixes the ids of a span that starts now under parent (a new trace when parent has
// no span). Nothing is emitted until EndReserved.
func (b *Builder) Reserve(parent Parent) *Reserved {
	r := &Reserved{pid: parent.PID, parent: parent.ref, missing: parent.missing}
	if parent.ref.trace.IsEmpty() {
		r.ref.trace = b.newTraceID()
	} else {
		r.ref.trace = parent.ref.trace
	}
	r.ref.span = b.newSpanID()
	return r
}

// Parent is the reserved span as a parent of other work.
func (r *Reserved) Parent() Parent { return Parent{PID: r.pid, ref: r.ref} }

// EndReserved emits the reserved span with d's content (d.Start and d.End bound it). It reports
// false when the process that made it is no longer known (its spans went with it).
func (b *Builder) EndReserved(r *Reserved, d SpanData) bool {
	p := b.procs[r.pid]
	if p == nil {
		b.counters.UnknownProcess++
		return false
	}
	s := b.startSpan(Header{Time: d.Start, PID: r.pid, TID: d.TID}, r.parent, d.Name, d.Kind)
	s.ref = r.ref
	if d.Attributes != nil {
		d.Attributes(s.attrs)
	}
	putParentMissing(s, r.missing)
	if d.Events != nil {
		d.Events(s.events)
	}
	b.finish(p, s, d.End, d.Error)
	return true
}

// Delegation is work of one process placed under a span of another (Delegate).
type Delegation struct {
	pid   uint32
	proc  *process
	to    spanRef
	saved spanRef            // the process's inherited call before
	kept  map[uint64]spanRef // each routine's inherited call before
}

// maxDelegatedRoutines bounds the routines whose inherited call a delegation remembers; the
// others go back to the process's (what a routine created after the delegation gets too).
const maxDelegatedRoutines = 4096

// Delegate places the work of pid that has no open call of its own (its syscalls, socket I/O,
// forks and the work of routines it starts) under to, from now until EndDelegation. A process's
// own open calls still come first. It reports false when pid is not traced.
func (b *Builder) Delegate(pid uint32, to Parent, at time.Time) (*Delegation, bool) {
	p := b.procs[pid]
	if p == nil || to.ref.trace.IsEmpty() {
		return nil, false
	}
	d := &Delegation{pid: pid, proc: p, to: to.ref, saved: p.inherited, kept: make(map[uint64]spanRef, len(p.routines))}
	for k, r := range p.routines {
		if len(d.kept) < maxDelegatedRoutines {
			d.kept[k] = r.inherited
		}
		r.inherited = to.ref
	}
	p.inherited = to.ref
	return d, true
}

// EndDelegation puts the process's work back where it belonged before Delegate (for the
// process's current image: an exec keeps what the process inherited). Routines whose inherited
// call changed since (a goroutine created under one of its own calls) keep theirs.
func (b *Builder) EndDelegation(d *Delegation) {
	if d == nil {
		return
	}
	p := b.procs[d.pid]
	if p == nil {
		return
	}
	if p.inherited == d.to {
		p.inherited = d.saved
	}
	for k, r := range p.routines {
		if r.inherited != d.to {
			continue
		}
		if was, ok := d.kept[k]; ok && p == d.proc {
			r.inherited = was
		} else {
			r.inherited = p.inherited
		}
	}
}
