package ebpfreceiver

import (
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// health is the receiver's component status: a recoverable error naming every problem that is
// active (records whose handling panicked, the ring buffer losing records, what could not be
// instrumented), and OK again once none is. It reports only changes.
type health struct {
	mu       sync.Mutex
	host     component.Host
	problems map[string]string // by source: what is wrong
	reported string            // the last error reported; "" once OK was reported (or never an error)
}

// Problem sources.
const (
	problemPanic      = "panic"
	problemRingBuffer = "ring_buffer"
	problemAttach     = "attach"
)

func newHealth(host component.Host) *health {
	return &health{host: host, problems: map[string]string{}}
}

// set makes a problem active (or changes what it says).
func (h *health) set(source, msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.problems[source] = msg
	h.report()
}

// clear ends a problem.
func (h *health) clear(source string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.problems[source]; !ok {
		return
	}
	delete(h.problems, source)
	h.report()
}

// active reports whether a problem of the source is active.
func (h *health) active(source string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.problems[source]
	return ok
}

func (h *health) report() {
	sources := make([]string, 0, len(h.problems))
	for s := range h.problems {
		sources = append(sources, s)
	}
	slices.Sort(sources)
	msgs := make([]string, len(sources))
	for i, s := range sources {
		msgs[i] = h.problems[s]
	}
	msg := strings.Join(msgs, "; ")
	switch {
	case msg == h.reported:
		return
	case msg == "":
		componentstatus.ReportStatus(h.host, componentstatus.NewEvent(componentstatus.StatusOK))
	default:
		componentstatus.ReportStatus(h.host, componentstatus.NewRecoverableErrorEvent(errors.New("ebpf receiver: "+msg)))
	}
	h.reported = msg
}

// panicLogInterval: a kind whose handling keeps panicking is logged (with its stack) at most
// this often; every panic is counted.
const panicLogInterval = time.Minute

// panicGuard is what the reader loop knows of recovered panics. Reader goroutine only.
type panicGuard struct {
	lastLog    map[string]time.Time // by kind
	suppressed map[string]int       // panics not logged since the kind's last log
	sinceCheck int                  // panics since the last health check
	last       string               // the last panic, for the status
}

func newPanicGuard() *panicGuard {
	return &panicGuard{lastLog: map[string]time.Time{}, suppressed: map[string]int{}}
}

// recoverRecord, deferred around each record's handler, turns a panic into a dropped record:
// it is counted by kind, logged with its stack (rate-limited per kind), made a recoverable error
// of the component until records flow without panics again, and what the receiver kept of the
// record's process is reset, so a state the bug left half-updated does not carry over.
func (r *ebpfReceiver) recoverRecord(kind string, h spans.Header) {
	p := recover()
	if p == nil {
		return
	}
	r.telemetry.panics.Add(ctxBackground, 1, metric.WithAttributes(attribute.String("kind", kind)))
	g := r.panics
	g.sinceCheck++
	g.last = fmt.Sprintf("handling a %s record of process %d panicked: %v", kind, h.PID, p)
	now := time.Now()
	if now.Sub(g.lastLog[kind]) >= panicLogInterval {
		r.logger.Error("recovered from a panic while handling a kernel record; the record is dropped and the process's open spans are ended",
			zap.String("kind", kind), zap.Uint32("pid", h.PID), zap.Any("panic", p),
			zap.Int("suppressed_since_last_log", g.suppressed[kind]), zap.ByteString("stack", debug.Stack()))
		g.lastLog[kind], g.suppressed[kind] = now, 0
	} else {
		g.suppressed[kind]++
	}
	r.health.set(problemPanic, g.last)
	r.resetProcess(h.PID)
}

// resetProcess ends what the receiver had open for a process with an error status and forgets
// its TLS connections, Python stacks and memory map, after a panic while handling one of its
// records. The process stays traced: its next records start afresh. A panic here is counted
// (kind "reset") and goes no further.
func (r *ebpfReceiver) resetProcess(pid uint32) {
	defer func() {
		if p := recover(); p != nil {
			r.telemetry.panics.Add(ctxBackground, 1, metric.WithAttributes(attribute.String("kind", "reset")))
			r.logger.Error("resetting a process's state after a panic panicked too", zap.Uint32("pid", pid), zap.Any("panic", p))
		}
	}()
	r.builder.ResetProcess(pid, r.clock.wall(r.clock.now()), "the receiver dropped this process's state after an internal error (agenttrail.ebpf.events.panics)")
	r.forgetProcessState(pid)
	if r.symbolizer != nil {
		r.symbolizer.Forget(pid)
	}
}

// checkHealth runs at each flush interval: the panics problem ends once an interval read
// records without a panic; the ring buffer problem is active while the kernel's count of
// records it could not write grows.
func (r *ebpfReceiver) checkHealth(read int) {
	switch g := r.panics; {
	case g.sinceCheck > 0:
		g.sinceCheck = 0
	case read > 0:
		r.health.clear(problemPanic)
	}
	if r.drops == nil {
		return
	}
	drops, err := r.drops()
	if err != nil {
		return
	}
	full := drops[dropRingBufferFull]
	if full > r.lastRingDrops {
		r.health.set(problemRingBuffer, fmt.Sprintf("the ring buffer was full: %d records lost since the last check (raise ring_buffer_size, or trace less)", full-r.lastRingDrops))
	} else {
		r.health.clear(problemRingBuffer)
	}
	r.lastRingDrops = full
}

// dropRingBufferFull is the kernel's drop reason for a full ring buffer.
const dropRingBufferFull = "ring_buffer_full"

// maxAttachProblems bounds the list of what could not be instrumented; beyond, only a count.
const maxAttachProblems = 64

// attachProblems is what could not be instrumented, for the component status. The receiver
// does not retry attaching, so a problem of a target or binary stays until the collector
// restarts; a process's ends when the process exits. Reader goroutine (and Start) only.
type attachProblems struct {
	health *health
	byWhat map[string]uint32 // what could not be instrumented → its process (0: none)
	more   int               // problems past maxAttachProblems, not listed

	// candidate, while set, takes the problems instead of the status: those of a process
	// discovery traces, which nobody named (registry.candidateScope).
	candidate func(pid uint32, what string)
	// demote is set with candidate: the tracers' warnings are written at debug level meanwhile
	// (demotingCore). Atomic: the tracers' logger may be used from other goroutines.
	demote atomic.Bool
}

func newAttachProblems(h *health) *attachProblems {
	return &attachProblems{health: h, byWhat: map[string]uint32{}}
}

var _ tracer.Problems = (*attachProblems)(nil)

// Add records a problem; pid is the process it concerns (0 when it concerns a target or file).
func (p *attachProblems) Add(pid uint32, what string) {
	if p == nil {
		return
	}
	if p.candidate != nil {
		p.candidate(pid, what)
		return
	}
	if _, ok := p.byWhat[what]; ok {
		return
	}
	if len(p.byWhat) >= maxAttachProblems {
		p.more++
	} else {
		p.byWhat[what] = pid
	}
	p.update()
}

// processGone ends the problems of a process that exited.
func (p *attachProblems) processGone(pid uint32) {
	if p == nil || pid == 0 {
		return
	}
	n := len(p.byWhat)
	for what, owner := range p.byWhat {
		if owner == pid {
			delete(p.byWhat, what)
		}
	}
	if len(p.byWhat) != n {
		p.update()
	}
}

func (p *attachProblems) update() {
	if len(p.byWhat) == 0 && p.more == 0 {
		p.health.clear(problemAttach)
		return
	}
	whats := make([]string, 0, len(p.byWhat))
	for w := range p.byWhat {
		whats = append(whats, w)
	}
	slices.Sort(whats)
	const listed = 5 // the status stays readable; the log has every one
	msg := "could not instrument " + strings.Join(whats[:min(listed, len(whats))], "; ")
	if hidden := max(0, len(whats)-listed) + p.more; hidden > 0 {
		msg += fmt.Sprintf(" (and %d more, see the log)", hidden)
	}
	p.health.set(problemAttach, msg)
}
