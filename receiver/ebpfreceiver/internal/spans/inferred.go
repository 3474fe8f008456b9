package spans

import (
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Tool spans inferred from the model's tool calls, for a process whose functions are not
// probed (a Node agent: JavaScript functions cannot be uprobed): its model calls are seen (TLS or
// plain HTTP) but not the code that runs the tools. When such a chat's response asks for tool
// calls, an `execute_tool {name}` span opens per call, under the chat, and the process's work
// with no call of its own (syscalls, socket I/O, forks, through Delegate) goes under it until
// the process writes its next request on a connection that carried the conversation's model
// calls (ModelRequest), or its next model call is emitted, or inferredToolBound passes. The
// next chat of the process then goes under the conversation's first chat, so that a
// conversation is one trace (one story) as a Go agent's is under its prompt span.
//
// What the kernel cannot say, and is therefore not guessed:
//   - A response asking for several calls: each call has its span, but which call did which
//     syscall is not known; the work goes under the chat that asked for them (same trace).
//   - Two conversations of one process at once (an agent serving concurrent prompts on one
//     event loop): their turns interleave in one per-process window. A chat whose parent is
//     not the conversation's starts a new one (the open window ends), so work may be counted
//     in the wrong conversation of the two; the spans say they are inferred.
//   - A process that ever opened a function span (configured uprobes, Python functions) gets
//     none: its own tool spans are exact.

// InferredCall is one tool call of a model response, as the inferred span shows it.
type InferredCall struct {
	Name string
	ID   string
	// Arguments as the model sent them, already redacted and bounded by the caller; Cut says
	// they were cut.
	Arguments string
	Cut       bool
	// Args: the arguments' top-level members (name, value), redacted, as agenttrail.arg.<name>
	// like a probed tool's captured arguments, for the story's narrative and content rules.
	Args [][2]string
}

// Bounds of the inferred tool spans.
const (
	// maxInferredCalls: calls of one response given a span (the rest counted in
	// Counters.InferredToolsDropped).
	maxInferredCalls = 16
	// inferredToolBound: a window ends this long after it opened if nothing ended it before
	// (a tool that never returns, an agent that stops calling the model).
	inferredToolBound = 10 * time.Minute
	// maxModelConns: connections of a conversation on which a write ends the window.
	maxModelConns = 8
	// inferredRoutine: the routines map key of the inferred tool spans (above any goroutine
	// address or thread id), so that a process exit, an exec, a reset and socket attribution
	// treat them as the process's open calls.
	inferredRoutine = uint64(1) << 63
)

// AttrToolInferred and AttrToolInferredFrom mark an inferred tool span.
const (
	AttrToolInferred     = "agenttrail.tool.inferred"
	AttrToolInferredFrom = "agenttrail.tool.inferred_from"
	// InferredFromModel: the span stands for a tool call the model's response asked for.
	InferredFromModel = "model_tool_call"
)

type conversation struct {
	proc    *process
	root    spanRef   // the conversation's first chat
	chat    spanRef   // the chat whose calls are open
	tools   []spanRef // the inferred tool spans (open while in the routine's stack)
	last    spanRef   // the first inferred tool span of the latest turn: the next chat goes under it
	conns   []uint64
	deleg   *Delegation
	opened  time.Time
	waiting bool // ModelRequest ended the tools: the next chat belongs to this conversation
}

// ModelTurn is told each inference span of process chat.PID once emitted: chat is the span
// (Reserve), under is where it was put (the request's Parent), conn the connection it came on
// (the tracker's key), start and end its bounds, calls the tool calls its response asked for.
// For a process with no function spans it ends the window of the previous turn and opens the
// inferred tool spans of this one; it reports whether it did anything.
func (b *Builder) ModelTurn(under, chat Parent, conn uint64, start, end time.Time, calls []InferredCall) bool {
	p := b.procs[chat.PID]
	if p == nil || p.functions {
		return false
	}
	c := b.conversations[chat.PID]
	if c != nil && c.proc != p {
		b.endConversation(chat.PID, c, start)
		c = nil
	}
	if under.HasSpan() && (c == nil || !c.owns(under.ref)) {
		return false // under work of something else (a delegation, a forking parent's call)
	}
	if c != nil && !under.HasSpan() {
		// A new conversation (or another at once): the open one ends here.
		b.endConversation(chat.PID, c, start)
		c = nil
	}
	if c != nil {
		b.endTools(c, start, "")
		b.EndDelegation(c.deleg)
		c.deleg = nil
	}
	if len(calls) == 0 {
		if c != nil {
			delete(b.conversations, chat.PID)
		}
		return c != nil
	}
	if c == nil {
		c = &conversation{proc: p, root: chat.ref}
		if b.conversations == nil {
			b.conversations = make(map[uint32]*conversation)
		}
		b.conversations[chat.PID] = c
	}
	c.chat, c.opened, c.waiting = chat.ref, end, false
	c.addConn(conn)
	if len(calls) > maxInferredCalls {
		b.counters.InferredToolsDropped += uint64(len(calls) - maxInferredCalls)
		calls = calls[:maxInferredCalls]
	}
	r := p.routines[inferredRoutine]
	if r == nil {
		r = &routine{}
		p.routines[inferredRoutine] = r
	}
	for _, call := range calls {
		if b.open >= b.opts.MaxOpenSpans {
			b.counters.OpenSpanLimitDrops++
			b.counters.InferredToolsDropped++
			continue
		}
		s := b.startSpan(Header{Time: end, PID: chat.PID}, chat.ref, "execute_tool "+call.Name, ptrace.SpanKindInternal)
		s.attrs.PutStr("gen_ai.operation.name", "execute_tool")
		s.attrs.PutStr("gen_ai.tool.name", call.Name)
		if call.ID != "" {
			s.attrs.PutStr("gen_ai.tool.call.id", call.ID)
		}
		if call.Arguments != "" {
			s.attrs.PutStr("gen_ai.tool.call.arguments", call.Arguments)
		}
		for _, a := range call.Args {
			s.attrs.PutStr("agenttrail.arg."+a[0], a[1])
		}
		if call.Cut {
			s.attrs.PutBool("gen_ai.tool.call.arguments.truncated", true)
		}
		s.attrs.PutStr("agenttrail.role", string(RoleTool))
		s.attrs.PutBool(AttrToolInferred, true)
		s.attrs.PutStr(AttrToolInferredFrom, InferredFromModel)
		s.attrs.PutInt("agenttrail.tool.inferred.calls", int64(len(calls)))
		r.stack = append(r.stack, s)
		c.tools = append(c.tools, s.ref)
		b.counters.InferredTools++
	}
	to := chat.ref // several calls: which did what is not known, the chat that asked holds it
	if len(c.tools) == 1 {
		to = c.tools[0]
	}
	if len(c.tools) > 0 {
		c.last = c.tools[0]
	}
	c.deleg, _ = b.Delegate(chat.PID, Parent{PID: chat.PID, ref: to}, end)
	return true
}

// ModelRequest is told each write of a traced process on an HTTP connection, before the
// write's parent is taken: a write on a connection that carried the conversation's model calls
// is the next model call, sent with the tools' results, so the tools are done. The request and
// what the process does until its response is in goes under the conversation's first chat.
func (b *Builder) ModelRequest(h Header, conn uint64) {
	c := b.conversations[h.PID]
	if c == nil || c.waiting || !c.hasConn(conn) {
		return
	}
	if p := b.procs[h.PID]; p == nil || p != c.proc {
		return
	}
	b.endTools(c, h.Time, "")
	b.EndDelegation(c.deleg)
	c.deleg, _ = b.Delegate(h.PID, Parent{PID: h.PID, ref: c.root}, h.Time)
	c.waiting = true
}

// ExpireInferred ends the windows that have been open for inferredToolBound, and forgets the
// conversations of processes that are gone.
func (b *Builder) ExpireInferred(now time.Time) {
	for pid, c := range b.conversations {
		if p := b.procs[pid]; p != c.proc {
			delete(b.conversations, pid) // exited or exec'd: its spans were closed with it
			continue
		}
		if now.Sub(c.opened) < inferredToolBound {
			continue
		}
		if len(c.tools) > 0 {
			b.counters.InferredToolsExpired++
		}
		b.endConversation(pid, c, now)
	}
}

func (b *Builder) endConversation(pid uint32, c *conversation, at time.Time) {
	b.endTools(c, at, "")
	if b.procs[pid] == c.proc {
		b.EndDelegation(c.deleg)
	}
	delete(b.conversations, pid)
}

// endTools ends the conversation's inferred tool spans still open (an exit or an exec of the
// process closed them already, with its status).
func (b *Builder) endTools(c *conversation, at time.Time, errMsg string) {
	defer func() { c.tools = c.tools[:0] }()
	if len(c.tools) == 0 {
		return
	}
	r := c.proc.routines[inferredRoutine]
	if r == nil {
		return
	}
	keep := r.stack[:0]
	for _, s := range r.stack {
		if c.ownsTool(s.ref) {
			b.finish(c.proc, s, at, errMsg)
			continue
		}
		keep = append(keep, s)
	}
	r.stack = keep
	if len(r.stack) == 0 {
		delete(c.proc.routines, inferredRoutine)
	}
}

func (c *conversation) owns(ref spanRef) bool {
	return ref == c.root || ref == c.chat || ref == c.last || c.ownsTool(ref)
}

// InferredChatParent is where an inference span of a conversation with inferred tool spans
// goes: under the tool span whose result it carries (the first of the latest turn), as a
// probed agent's next model call follows its tool; under is what its request's thread
// belonged to. Anything else stays under.
func (b *Builder) InferredChatParent(under Parent) Parent {
	c := b.conversations[under.PID]
	if c == nil || c.proc != b.procs[under.PID] || !under.HasSpan() || !c.owns(under.ref) || c.last.trace.IsEmpty() {
		return under
	}
	return Parent{PID: under.PID, ref: c.last}
}

// MaxInferredReceived bounds what an inferred tool span keeps of the content its tool received
// (InferredToolReceived).
const MaxInferredReceived = 4096

// AttrToolReceived: what an inferred tool received over HTTP while it ran (response bodies,
// redacted, at most MaxInferredReceived bytes), the nearest the receiver sees of the tool's
// result, which goes back to the model in a request body it may not capture whole.
const AttrToolReceived = "agenttrail.tool.inferred.received"

// InferredToolReceived adds text (already redacted) to the open inferred tool span parent is,
// if it is one; it reports whether it was.
func (b *Builder) InferredToolReceived(parent Parent, text string) bool {
	c := b.conversations[parent.PID]
	if c == nil || text == "" || !c.ownsTool(parent.ref) {
		return false
	}
	r := c.proc.routines[inferredRoutine]
	if r == nil {
		return false
	}
	for _, s := range r.stack {
		if s.ref != parent.ref {
			continue
		}
		had := ""
		if v, ok := s.attrs.Get(AttrToolReceived); ok {
			had = v.Str() + "\n"
		}
		if room := MaxInferredReceived - len(had); len(text) > room {
			for room > 0 && !utf8.RuneStart(text[room]) {
				room--
			}
			text = text[:max(room, 0)]
			s.attrs.PutBool(AttrToolReceived+".truncated", true)
		}
		if text != "" {
			s.attrs.PutStr(AttrToolReceived, had+text)
		}
		return true
	}
	return false
}

func (c *conversation) ownsTool(ref spanRef) bool {
	for _, t := range c.tools {
		if t == ref {
			return true
		}
	}
	return false
}

func (c *conversation) hasConn(conn uint64) bool {
	for _, k := range c.conns {
		if k == conn {
			return true
		}
	}
	return false
}

func (c *conversation) addConn(conn uint64) {
	if c.hasConn(conn) {
		return
	}
	if len(c.conns) >= maxModelConns {
		c.conns = c.conns[1:] // the oldest connection is the least likely to be used again
	}
	c.conns = append(c.conns, conn)
}
