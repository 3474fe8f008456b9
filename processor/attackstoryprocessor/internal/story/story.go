package story

import (
	"bytes"
	"cmp"
	"container/heap"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/internal/handoff"
)

// Reasons a story is emitted incomplete (agenttrail.story.incomplete_reason).
const (
	ReasonMaxStories   = "max_stories"         // evicted to make room for a new story
	ReasonMaxSpans     = "max_spans_per_story" // the story reached max_spans_per_story
	ReasonOrphan       = "orphan_timeout"      // no root span arrived in orphan_timeout
	ReasonShutdown     = "shutdown"            // in flight when the collector stopped
	ReasonLate         = "late_spans"          // spans that arrived after their story was emitted
	ReasonContinuation = "continuation"        // spans after the story was emitted for max_spans_per_story
)

// Source is one ResourceSpans of an input batch.
type Source struct {
	Resource  pcommon.Resource
	SchemaURL string
	Key       string // canonical form of the resource attributes
	proc      string // process identity for stitching; "" without process.pid
}

// Scope is one ScopeSpans of an input batch.
type Scope struct {
	Src       *Source
	Scope     pcommon.InstrumentationScope
	SchemaURL string
	Key       string // resource key + scope identity
}

// Span is a buffered span. The span stays in the input batch it came in (the processor owns
// the data, MutatesData), so buffering does not copy it.
type Span struct {
	Span       ptrace.Span
	Scope      *Scope
	ID         pcommon.SpanID
	parent     pcommon.SpanID
	Start, End uint64
	Ord        int // index in story.spans, set while the story is emitted
	// acks are the requests waiting for this span to be passed on (one reference each; a
	// span sent again by a sender whose first answer timed out adds its request here).
	acks []*handoff.Ack
}

// Handed tells the requests waiting for the story's spans that they were passed on, err
// being the next component's answer.
func (s *Story) Handed(err error) {
	for _, sp := range s.spans {
		for _, a := range sp.acks {
			a.Done(err)
		}
		sp.acks = nil
	}
}

// Story is the spans of one trace id being buffered.
type Story struct {
	ID        pcommon.TraceID
	spans     []*Span
	byID      map[pcommon.SpanID]*Span
	Root      *Span
	MinStart  uint64
	MaxEnd    uint64
	firstSeen time.Time
	LastSeen  time.Time
	procs     []string

	list       *storyList
	prev, next *Story

	graceOnly        bool   // complete after the grace even without a root (late spans, continuation)
	Reason           string // why it is incomplete; "" for a complete story
	candidateProc    string // non-empty: the root may be stitched into a story of this process
	ambiguousCounted bool
	ready            bool // taken for emission in the current pass
	merged           bool // stitched into another story
	grown            bool // took a merge in the current stitching pass (stitchIndex)
}

func (s *Story) EnvelopeContains(start, end uint64) bool {
	if s.MinStart > start {
		return false
	}
	if s.Root == nil {
		return true // still open: its root has not ended yet
	}
	return max(s.Root.End, s.MaxEnd) >= end
}

func (s *Story) hasProc(p string) bool { return slices.Contains(s.procs, p) }

// storyList is an intrusive list of stories ordered by lastSeen (oldest first).
type storyList struct {
	head, tail *Story
	n          int
}

func (l *storyList) pushBack(s *Story) {
	s.list = l
	s.prev, s.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = s
	} else {
		l.head = s
	}
	l.tail = s
	l.n++
}

func (l *storyList) remove(s *Story) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		l.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		l.tail = s.prev
	}
	s.prev, s.next, s.list = nil, nil, nil
	l.n--
}

func (l *storyList) moveToBack(s *Story) {
	if l.tail == s {
		return
	}
	l.remove(s)
	l.pushBack(s)
}

type recentKind uint8

const (
	recentEmitted recentKind = iota + 1
	recentContinuation
	recentRedirect
)

type recentEntry struct {
	kind    recentKind
	target  pcommon.TraceID // recentRedirect: the story the trace was stitched into
	expires time.Time
	slot    int
}

// recentTraces remembers trace ids emitted or stitched lately (bounded, for orphan_timeout),
// so that their late spans are recognised.
type recentTraces struct {
	m    map[pcommon.TraceID]recentEntry
	ring []pcommon.TraceID
	used []bool
	next int
}

func newRecentTraces(capacity int) *recentTraces {
	return &recentTraces{m: make(map[pcommon.TraceID]recentEntry), ring: make([]pcommon.TraceID, capacity), used: make([]bool, capacity)}
}

func (r *recentTraces) add(id pcommon.TraceID, e recentEntry) {
	slot := r.next
	if r.used[slot] {
		if old, ok := r.m[r.ring[slot]]; ok && old.slot == slot {
			delete(r.m, r.ring[slot])
		}
	}
	e.slot = slot
	r.ring[slot], r.used[slot] = id, true
	r.m[id] = e
	r.next = (slot + 1) % len(r.ring)
}

func (r *recentTraces) get(id pcommon.TraceID, now time.Time) (recentEntry, bool) {
	e, ok := r.m[id]
	if !ok || now.After(e.expires) {
		return recentEntry{}, false
	}
	return e, true
}

// Buffer holds the stories in flight. It is not safe for concurrent use: the processor
// guards it with its mutex.
// Limits are the settings of the buffer (from the processor's configuration).
type Limits struct {
	MaxStories       int
	MaxSpansPerStory int
	CompletionGrace  time.Duration
	OrphanTimeout    time.Duration
	Stitching        bool
}

// Counters is the buffer's self-telemetry.
type Counters interface {
	Eviction(reason string)
	Duplicate()
	Ambiguous()
	Stitched()
}

type Buffer struct {
	cfg Limits
	tel Counters

	Stories    map[pcommon.TraceID]*Story
	grace      storyList // complete after completion_grace without new spans
	orphans    storyList // no root yet: incomplete after orphan_timeout without new spans
	ByProc     map[string]map[*Story]struct{}
	candidates map[string]map[*Story]struct{}
	recent     *recentTraces
	idx        stitchIndex // during stitch only
	Evicted    []*Story    // emitted early, waiting for the emitter
	// Starts: process.start spans (one per ResourceSpans), passed on by the emitter as they are
	// after telling enforcement about the process; never part of a story.
	Starts []ptrace.ResourceSpans
	// StartAcks[i] is the request waiting for Starts[i] (nil: none).
	StartAcks []*handoff.Ack
}

func NewBuffer(cfg Limits, tel Counters) *Buffer {
	return &Buffer{
		cfg:        cfg,
		tel:        tel,
		Stories:    make(map[pcommon.TraceID]*Story),
		ByProc:     make(map[string]map[*Story]struct{}),
		candidates: make(map[string]map[*Story]struct{}),
		recent:     newRecentTraces(cfg.MaxStories),
	}
}

// AddBatch buffers every span of td.
func (b *Buffer) AddBatch(td ptrace.Traces, now time.Time) { b.AddBatchFor(td, now, nil) }

// AddBatchFor buffers every span of td for the request ack (nil: nobody waits): each span
// takes a reference on ack until its story is passed on.
func (b *Buffer) AddBatchFor(td ptrace.Traces, now time.Time, ack *handoff.Ack) {
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		src := &Source{Resource: rs.Resource(), SchemaURL: rs.SchemaUrl()}
		src.Key = resourceKey(rs.Resource().Attributes())
		src.proc = processKey(rs.Resource().Attributes())
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			sc := &Scope{Src: src, Scope: ss.Scope(), SchemaURL: ss.SchemaUrl()}
			sc.Key = src.Key + "\x01" + ss.Scope().Name() + "\x01" + ss.Scope().Version() + "\x01" + ss.SchemaUrl() + "\x01" + rs.SchemaUrl()
			spans := ss.Spans()
			for k := 0; k < spans.Len(); k++ {
				if isProcessStart(spans.At(k)) && b.addStart(rs, ss, spans.At(k)) {
					ack.Add(1)
					b.StartAcks = append(b.StartAcks, ack)
					continue
				}
				b.add(sc, spans.At(k), now, ack)
			}
		}
	}
}

// isProcessStart reports whether span is the receiver's process.start marker.
func isProcessStart(span ptrace.Span) bool {
	if !span.ParentSpanID().IsEmpty() || span.Name() != "process.start" {
		return false
	}
	v, ok := span.Attributes().Get(attrProcessEvent)
	return ok && v.Str() == "start"
}

// maxStarts bounds the process.start spans waiting for the emitter: beyond, one is handled as
// any span (a story of its own), without the early enforcement (its first story brings it).
const maxStarts = 1024

func (b *Buffer) addStart(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, span ptrace.Span) bool {
	if len(b.Starts) >= maxStarts {
		return false
	}
	out := ptrace.NewResourceSpans()
	rs.Resource().CopyTo(out.Resource())
	out.SetSchemaUrl(rs.SchemaUrl())
	oss := out.ScopeSpans().AppendEmpty()
	ss.Scope().CopyTo(oss.Scope())
	oss.SetSchemaUrl(ss.SchemaUrl())
	span.CopyTo(oss.Spans().AppendEmpty())
	b.Starts = append(b.Starts, out)
	return true
}

func (b *Buffer) add(sc *Scope, span ptrace.Span, now time.Time, ack *handoff.Ack) {
	tid := span.TraceID()
	st := b.Stories[tid]
	if st == nil {
		reason := ""
		if e, ok := b.recent.get(tid, now); ok {
			switch e.kind {
			case recentRedirect:
				tid = e.target
				span.SetTraceID(tid)
				if st = b.Stories[tid]; st == nil {
					reason = ReasonLate
				}
			case recentContinuation:
				reason = ReasonContinuation
			default:
				reason = ReasonLate
			}
		}
		if st == nil {
			st = b.newStory(tid, now, reason)
		}
	}
	sid := span.SpanID()
	if old, dup := st.byID[sid]; dup {
		// A sender's retry (its first answer timed out) or a repeated span: the first copy is
		// passed on, and the request waits for it.
		b.tel.Duplicate()
		if ack != nil {
			ack.Add(1)
			old.acks = append(old.acks, ack)
		}
		return
	}
	if len(st.spans) >= b.cfg.MaxSpansPerStory {
		b.evict(st, ReasonMaxSpans, now)
		st = b.newStory(tid, now, ReasonContinuation)
	}
	sp := &Span{Span: span, Scope: sc, ID: sid, parent: span.ParentSpanID(), Start: uint64(span.StartTimestamp()), End: uint64(span.EndTimestamp())}
	if ack != nil {
		ack.Add(1)
		sp.acks = []*handoff.Ack{ack}
	}
	if sp.End < sp.Start {
		sp.End = sp.Start
	}
	b.attach(st, sp)
	st.LastSeen = now
	if sp.parent.IsEmpty() && (st.Root == nil || sp.Start < st.Root.Start) {
		st.Root = sp
		if st.list == &b.orphans {
			b.orphans.remove(st)
			b.grace.pushBack(st)
		}
		b.updateCandidate(st)
	}
	st.list.moveToBack(st)
}

// attach adds sp to st and its indexes (no limit check).
func (b *Buffer) attach(st *Story, sp *Span) {
	st.spans = append(st.spans, sp)
	st.byID[sp.ID] = sp
	if len(st.spans) == 1 || sp.Start < st.MinStart {
		st.MinStart = sp.Start
	}
	st.MaxEnd = max(st.MaxEnd, sp.End)
	if p := sp.Scope.Src.proc; p != "" && !st.hasProc(p) {
		st.procs = append(st.procs, p)
		set := b.ByProc[p]
		if set == nil {
			set = make(map[*Story]struct{})
			b.ByProc[p] = set
		}
		set[st] = struct{}{}
	}
}

func (b *Buffer) newStory(tid pcommon.TraceID, now time.Time, reason string) *Story {
	for len(b.Stories) >= b.cfg.MaxStories {
		b.evictOldest(now)
	}
	st := &Story{ID: tid, byID: make(map[pcommon.SpanID]*Span, 8), firstSeen: now, LastSeen: now, Reason: reason}
	st.graceOnly = reason != ""
	b.Stories[tid] = st
	if st.graceOnly {
		b.grace.pushBack(st)
	} else {
		b.orphans.pushBack(st)
	}
	return st
}

func (b *Buffer) evictOldest(now time.Time) {
	victim := b.grace.head
	if o := b.orphans.head; o != nil && (victim == nil || o.LastSeen.Before(victim.LastSeen)) {
		victim = o
	}
	if victim != nil {
		b.evict(victim, ReasonMaxStories, now)
	}
}

// evict takes st out of the buffer now, as incomplete, for the emitter. Spans of its trace
// that arrive later form a continuation story.
func (b *Buffer) evict(st *Story, reason string, now time.Time) {
	b.remove(st)
	st.Reason = reason
	b.tel.Eviction(reason)
	b.Evicted = append(b.Evicted, st)
	b.recent.add(st.ID, recentEntry{kind: recentContinuation, expires: now.Add(b.cfg.OrphanTimeout)})
}

func (b *Buffer) remove(st *Story) {
	delete(b.Stories, st.ID)
	if st.list != nil {
		st.list.remove(st)
	}
	for _, p := range st.procs {
		if set := b.ByProc[p]; set != nil {
			delete(set, st)
			if len(set) == 0 {
				delete(b.ByProc, p)
			}
		}
	}
	b.dropCandidate(st)
}

func (b *Buffer) dropCandidate(st *Story) {
	if st.candidateProc == "" {
		return
	}
	if set := b.candidates[st.candidateProc]; set != nil {
		delete(set, st)
		if len(set) == 0 {
			delete(b.candidates, st.candidateProc)
		}
	}
	st.candidateProc = ""
}

// updateCandidate records whether st's root may be stitched into another story: it must come
// from a known process and be neither a prompt (a request of its own) nor an accept (the start
// of the next request).
func (b *Buffer) updateCandidate(st *Story) {
	b.dropCandidate(st)
	if !b.cfg.Stitching || st.Root == nil {
		return
	}
	proc := st.Root.Scope.Src.proc
	if proc == "" || st.Root.Span.Kind() == ptrace.SpanKindServer || isPromptSpan(st.Root.Span) {
		return
	}
	st.candidateProc = proc
	set := b.candidates[proc]
	if set == nil {
		set = make(map[*Story]struct{})
		b.candidates[proc] = set
	}
	set[st] = struct{}{}
}

func isPromptSpan(s ptrace.Span) bool {
	attrs := s.Attributes()
	if v, ok := attrs.Get(AttrRole); ok && v.Str() == "prompt" {
		return true
	}
	if v, ok := attrs.Get(AttrGenAIOperation); ok && v.Str() == "invoke_agent" {
		return true
	}
	return false
}

// TakeReady removes and returns the stories to emit now: the evicted ones, then those whose
// grace or orphan timeout has passed (all of them when flushAll, as incomplete "shutdown"),
// after stitching candidate roots into the story that contains them.
func (b *Buffer) TakeReady(now time.Time, flushAll bool) []*Story {
	var ready []*Story
	if flushAll {
		for _, l := range []*storyList{&b.grace, &b.orphans} {
			for st := l.head; st != nil; st = st.next {
				st.Reason = ReasonShutdown
				b.tel.Eviction(ReasonShutdown)
				ready = append(ready, st)
			}
		}
	} else {
		for st := b.grace.head; st != nil && now.Sub(st.LastSeen) >= b.cfg.CompletionGrace; st = st.next {
			ready = append(ready, st)
		}
		for st := b.orphans.head; st != nil && now.Sub(st.LastSeen) >= b.cfg.OrphanTimeout; st = st.next {
			if st.Reason == "" {
				st.Reason = ReasonOrphan
				b.tel.Eviction(ReasonOrphan)
			}
			ready = append(ready, st)
		}
	}
	for _, st := range ready {
		st.ready = true
	}
	if b.cfg.Stitching && len(ready) > 0 {
		b.stitch(ready)
	}
	out := b.Evicted
	b.Evicted = nil
	slices.SortStableFunc(ready, func(x, y *Story) int {
		if c := cmp.Compare(x.MinStart, y.MinStart); c != 0 {
			return c
		}
		return bytes.Compare(x.ID[:], y.ID[:])
	})
	for _, st := range ready {
		if st.merged {
			continue
		}
		b.remove(st)
		b.recent.add(st.ID, recentEntry{kind: recentEmitted, expires: now.Add(b.cfg.OrphanTimeout)})
		out = append(out, st)
	}
	return out
}

// stitch moves stitching candidates into the one story of their process whose time span
// contains them: first the ready candidates (into any story in flight), then the candidates
// still in flight that lie inside a ready story (which would otherwise leave without them).
func (b *Buffer) stitch(ready []*Story) {
	if b.idx.procs == nil {
		b.idx.procs = make(map[string]*procIndex)
	}
	defer b.idx.done()
	for _, c := range ready {
		if c.candidateProc == "" || c.merged {
			continue
		}
		if target, ambiguous := b.stitchTarget(c); target != nil {
			b.merge(c, target)
		} else if ambiguous && !c.ambiguousCounted {
			c.ambiguousCounted = true
			b.tel.Ambiguous()
		}
	}
	for _, st := range ready {
		if st.merged {
			continue
		}
		var inside []*Story
		for _, p := range st.procs {
			b.idx.candidatesIn(b, p, st.MinStart, st.envelopeEnd(), func(c *Story) {
				// Only a candidate inside st's envelope can be stitched into st: the cheap test
				// first, so that a busy process's stories do not cost their number squared.
				if c == st || c.ready || c.merged || !st.EnvelopeContains(c.Root.Start, c.Root.End) {
					return
				}
				if target, _ := b.stitchTarget(c); target == st {
					inside = append(inside, c)
				}
			})
		}
		slices.SortFunc(inside, func(x, y *Story) int { return bytes.Compare(x.ID[:], y.ID[:]) })
		for _, c := range inside {
			if !c.merged {
				b.merge(c, st)
			}
		}
	}
}

// stitchTarget is the only story of c's process (other than c) whose time span contains c's
// Root; ambiguous when there are several.
func (b *Buffer) stitchTarget(c *Story) (*Story, bool) {
	if servesConnection(c) {
		// A request of its own, like an accept: a server's handler (in a trace apart from its
		// accept's) lies in time inside a concurrent handler of another client, and stitched
		// there it became that client's story (the gateway's storyjoin then joined both under
		// that client's tool call).
		return nil, false
	}
	start, end := c.Root.Start, c.Root.End
	var found *Story
	n := 0
	b.idx.containing(b, c.candidateProc, c, start, end, func(s *Story) bool {
		n++
		found = s
		return n < 2
	})
	if n > 1 {
		return nil, true
	}
	if found == nil || innermost(found, start, end).IsEmpty() {
		return nil, false
	}
	return found, false
}

// servesConnection: st holds socket I/O on a connection it served, told by the ports as the
// gateway's storyjoin tells it: its own port below Linux's ephemeral range (32768), its peer's
// in it.
func servesConnection(st *Story) bool {
	for _, sp := range st.spans {
		a := sp.Span.Attributes()
		if _, ok := a.Get(AttrEgressCalls); !ok {
			continue
		}
		lp, okL := a.Get("network.local.port")
		pp, okP := a.Get("network.peer.port")
		if okL && okP && lp.Type() == pcommon.ValueTypeInt && pp.Type() == pcommon.ValueTypeInt &&
			lp.Int() > 0 && lp.Int() < 32768 && pp.Int() >= 32768 && pp.Int() <= 65535 {
			return true
		}
	}
	return false
}

// innermost is the id of the span of st that contains [start, end] and started last: an ended
// Span, or a parent that has not arrived yet (open) whose earliest child started before start.
func innermost(st *Story, start, end uint64) pcommon.SpanID {
	var best *Span
	for _, sp := range st.spans {
		if sp.Start > start || sp.End < end || isSyscallSpan(sp.Span) {
			continue
		}
		if best == nil || sp.Start > best.Start || sp.Start == best.Start && (sp.End < best.End ||
			sp.End == best.End && bytes.Compare(sp.ID[:], best.ID[:]) < 0) {
			best = sp
		}
	}
	var openID pcommon.SpanID
	var openStart uint64
	open := map[pcommon.SpanID]uint64{}
	for _, sp := range st.spans {
		if sp.parent.IsEmpty() || st.byID[sp.parent] != nil {
			continue
		}
		if s, ok := open[sp.parent]; !ok || sp.Start < s {
			open[sp.parent] = sp.Start
		}
	}
	for id, s := range open {
		if s > start {
			continue
		}
		if openID.IsEmpty() || s > openStart || s == openStart && bytes.Compare(id[:], openID[:]) < 0 {
			openID, openStart = id, s
		}
	}
	switch {
	case best != nil && (openID.IsEmpty() || best.Start >= openStart):
		return best.ID
	case !openID.IsEmpty():
		return openID
	}
	return pcommon.SpanID{}
}

// merge moves candidate c into target: same trace id, c's root under the innermost span of
// target that contains it, marked agenttrail.stitched.
func (b *Buffer) merge(c, target *Story) {
	parent := innermost(target, c.Root.Start, c.Root.End)
	c.Root.parent = parent
	c.Root.Span.SetParentSpanID(parent)
	c.Root.Span.Attributes().PutBool(AttrStitched, true)
	for _, sp := range c.spans {
		sp.Span.SetTraceID(target.ID)
		if old, dup := target.byID[sp.ID]; dup {
			b.tel.Duplicate()
			old.acks = append(old.acks, sp.acks...) // the copy passed on answers for both
			sp.acks = nil
			continue
		}
		b.attach(target, sp)
	}
	b.idx.grew(target)
	b.remove(c)
	c.merged = true
	b.recent.add(c.ID, recentEntry{kind: recentRedirect, target: target.ID, expires: c.LastSeen.Add(b.cfg.OrphanTimeout)})
	b.tel.Stitched()
}

// isSyscallSpan: a syscall span, or a socket I/O aggregate (a leaf as well: nothing the
// process did happens inside it).
func isSyscallSpan(s ptrace.Span) bool {
	if _, ok := s.Attributes().Get(attrSyscall); ok {
		return true
	}
	_, ok := s.Attributes().Get(AttrEgressCalls)
	return ok
}

// resourceKey is a canonical form of resource attributes (sorted keys).
func resourceKey(m pcommon.Map) string {
	type kv struct{ k, v string }
	kvs := make([]kv, 0, m.Len())
	for k, v := range m.All() {
		kvs = append(kvs, kv{k, v.AsString()})
	}
	slices.SortFunc(kvs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	var sb strings.Builder
	for _, e := range kvs {
		sb.WriteString(e.k)
		sb.WriteByte(0)
		sb.WriteString(e.v)
		sb.WriteByte(0)
	}
	return sb.String()
}

// processKey identifies a process across batches: its pid on its host (host.name or
// k8s.node.name) or in its container; "" without process.pid.
func processKey(m pcommon.Map) string {
	pid, ok := m.Get(AttrProcessPID)
	if !ok {
		return ""
	}
	var sb strings.Builder
	sb.WriteString(strconv.FormatInt(pid.Int(), 10))
	for _, k := range []string{AttrHostName, AttrK8sNodeName, AttrContainerID} {
		sb.WriteByte('|')
		if v, ok := m.Get(k); ok {
			sb.WriteString(v.AsString())
		}
	}
	return sb.String()
}

// ordering: spans in time order, but never a child before its parent (clock skew between
// threads, CPUs or nodes can make a child appear to start first). Ties break by span id, so
// the order is deterministic.

type orderNode struct {
	time   uint64
	tie    []byte
	parent int // index of the parent node, -1 for none
	seq    int
}

type nodeHeap struct {
	nodes []orderNode
	idx   []int
}

func (h *nodeHeap) Len() int { return len(h.idx) }
func (h *nodeHeap) Less(i, j int) bool {
	a, b := &h.nodes[h.idx[i]], &h.nodes[h.idx[j]]
	if a.time != b.time {
		return a.time < b.time
	}
	if c := bytes.Compare(a.tie, b.tie); c != 0 {
		return c < 0
	}
	return a.seq < b.seq
}
func (h *nodeHeap) Swap(i, j int) { h.idx[i], h.idx[j] = h.idx[j], h.idx[i] }
func (h *nodeHeap) Push(x any)    { h.idx = append(h.idx, x.(int)) }
func (h *nodeHeap) Pop() any {
	n := len(h.idx) - 1
	x := h.idx[n]
	h.idx = h.idx[:n]
	return x
}

// topoTimeOrder returns the node indexes in time order with every node after its parent.
// Nodes caught in a parent cycle are placed by time after the rest.
func topoTimeOrder(nodes []orderNode) []int {
	order := make([]int, len(nodes))
	for i := range order {
		order[i] = i
		nodes[i].seq = i
	}
	slices.SortFunc(order, func(a, b int) int {
		na, nb := &nodes[a], &nodes[b]
		if na.time != nb.time {
			return cmp.Compare(na.time, nb.time)
		}
		if c := bytes.Compare(na.tie, nb.tie); c != 0 {
			return c
		}
		return a - b
	})
	// Usually every parent starts before its children: then time order is the answer (the
	// heap below would pop exactly this order).
	pos := make([]int, len(nodes))
	for p, i := range order {
		pos[i] = p
	}
	for i := range nodes {
		if p := nodes[i].parent; p >= 0 && p != i && pos[p] > pos[i] {
			return topoTimeOrderHeap(nodes)
		}
	}
	return order
}

// topoTimeOrderHeap: repeatedly the earliest node whose parent is placed.
func topoTimeOrderHeap(nodes []orderNode) []int {
	children := make([][]int, len(nodes))
	h := &nodeHeap{nodes: nodes, idx: make([]int, 0, len(nodes))}
	for i := range nodes {
		nodes[i].seq = i
		if p := nodes[i].parent; p >= 0 && p != i {
			children[p] = append(children[p], i)
		} else {
			h.idx = append(h.idx, i)
		}
	}
	heap.Init(h)
	done := make([]bool, len(nodes))
	out := make([]int, 0, len(nodes))
	for len(out) < len(nodes) {
		if h.Len() == 0 {
			// a cycle: release the earliest node not yet placed
			var rest []int
			for i := range nodes {
				if !done[i] {
					rest = append(rest, i)
				}
			}
			h.idx = append(h.idx, rest...)
			heap.Init(h)
			for _, i := range rest {
				done[i] = true // pushed; mark so it is not pushed again by its parent
			}
		}
		i := heap.Pop(h).(int)
		done[i] = true
		out = append(out, i)
		for _, c := range children[i] {
			if !done[c] {
				done[c] = true
				heap.Push(h, c)
			}
		}
	}
	return out
}
