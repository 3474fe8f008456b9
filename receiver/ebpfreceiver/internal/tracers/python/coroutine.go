package python

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/cilium/ebpf/link"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/pyinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// Coroutine calls. A configured coroutine's span lasts its whole call (spans.Builder's
// coroutine spans) when its end can be seen: the process has python_gen_dealloc attached (a
// uprobe on gen_dealloc filtered to the process, attached at its first configured coroutine
// seen on a stack: only then is it known that one is configured) and the coroutine's code object
// is registered in the kernel's python_coro_codes. Otherwise its spans stay one run between
// awaits each, and agenttrail.ebpf.python.coroutine.untracked says why.

// Reasons a coroutine is not tracked (agenttrail.ebpf.python.coroutine.untracked).
const (
	untrackedNoProgram  = "program_not_loaded" // python.audit off: the Python programs are not loaded
	untrackedNoDealloc  = "no_gen_dealloc"     // the interpreter's PyCoro_Type did not say where gen_dealloc is
	untrackedAttach     = "attach_failed"
	untrackedCodeLimit  = "code_limit" // maxCoroCodesPerProcess, or the kernel map, is full
	untrackedNoInterp   = "no_interpreter"
	untrackedNotOpen    = "no_span" // a coroutine end without an open span (its call never showed on a stack)
	maxCoroCodesPerProc = 64
)

// pyProc is a traced Python process's coroutine tracking.
type pyProc struct {
	interp *pyInterp
	link   link.Link // python_gen_dealloc on its interpreter; nil: not attached
	failed string    // why it cannot be attached (no more attempts), "" while it can
	// codes: the coroutine code objects registered in the kernel, with when (CLOCK_MONOTONIC,
	// as records' times): a stack sample older than that may show a call freed unseen.
	codes map[uint64]uint64
	// ended: coroutine calls ended when their frame was read cleared (pollCoroutines), by
	// frame address → code object: their gen_dealloc record is expected, not another end.
	ended map[uint64]uint64
}

// maxEndedEarly bounds a process's ended map (past it, it starts over: a later gen_dealloc
// record of one of those calls counts as no_span).
const maxEndedEarly = 1024

// coroCounters are the builder's counts of coroutine spans ended without their end seen, as
// last read (Housekeeping reports the difference).
type coroCounters struct{ unended, evicted, reused, unparented uint64 }

// tracked reports whether the coroutine running code in process pid ends by a
// python_gen_dealloc record, setting it up the first time: the probe on the process's
// interpreter, the code object in the kernel's filter. It runs on the reader goroutine at a
// stack's resolution, the first moment the receiver knows a configured function is a coroutine.
// fresh says that the sample at mono is older than the code object's registration: the call
// it shows may have been freed before the kernel watched its frees (checkFresh).
func (t *Tracer) tracked(pid uint32, l *pyinfo.Layout, code, mono uint64) (tracked, fresh bool) {
	pp := t.procs[pid]
	if pp == nil || pp.interp == nil || pp.interp.in == nil {
		t.untracked(untrackedNoInterp)
		return false, false
	}
	if reg, ok := pp.codes[code]; ok {
		return true, mono < reg
	}
	if pp.failed != "" {
		return false, false
	}
	if pp.link == nil {
		if reason := t.attachGenDealloc(pid, pp, l); reason != "" {
			pp.failed = reason
			t.untracked(reason)
			return false, false
		}
	}
	if len(pp.codes) >= maxCoroCodesPerProc {
		t.untracked(untrackedCodeLimit)
		return false, false
	}
	if err := t.env.Kernel.WatchPythonCoroutine(pid, code); err != nil {
		t.untracked(untrackedCodeLimit)
		t.env.Logger.Debug("cannot register a coroutine's code object in the kernel", zap.Uint32("pid", pid), zap.Error(err))
		return false, false
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		ts = unix.Timespec{Sec: math.MaxInt32} // every sample is then checked: never wrong, only slower
	}
	pp.codes[code] = uint64(ts.Nano())
	return true, true
}

// checkFresh looks at each coroutine call seen in a stack sample older than its code object's
// registration (the reader lags the kernel: the sample that made the receiver register it, and
// others already in the ring buffer): it may have finished, or been freed, before the kernel
// watched its frees. Still a live coroutine of that code (a state the layout names, the code
// pointer in place): its free comes after the registration and is seen. Cleared: it returned, its span ends now. Anything else: it was freed unseen, and its
// span ends now, its end not observed.
func (t *Tracer) checkFresh(h spans.Header, fresh [][2]uint64) {
	for _, key := range fresh {
		end := t.readCoroutine(h.PID, key[0], key[1])
		if end == "" {
			continue
		}
		if t.env.Builder.CoroutineEnd(h, key[0], key[1], end, "") {
			t.coroEnded(end, 1)
			if end == pyinfo.CoroutineCompleted {
				t.markEnded(h.PID, key[0], key[1])
			}
		}
	}
}

// readCoroutine reads the coroutine whose frame is at frame: "" while it is a live call of
// code (or cannot be read), CoroutineCompleted when its frame is cleared,
// spans.CoroutineEndNotObserved when something else is there.
func (t *Tracer) readCoroutine(pid uint32, frame, code uint64) string {
	l := t.layoutOf(pid)
	if l == nil {
		return ""
	}
	g := l.Gen
	size := g.Frame - g.FrameState + uint64(l.Kernel.FrameCode) + 8
	buf := make([]byte, size)
	if frame < g.Frame || t.reader.ReadMem(pid, frame-g.Frame+g.FrameState, buf) != nil {
		return ""
	}
	state := int8(buf[0])
	sameCode := binary.LittleEndian.Uint64(buf[size-8:]) == code
	switch {
	case sameCode && (state == g.Cleared || state == g.Completed):
		return pyinfo.CoroutineCompleted
	case sameCode && (state == 0 || g.CoroutineEnd(state) == pyinfo.CoroutineAbandoned):
		return "" // running, suspended or not started: alive
	}
	return spans.CoroutineEndNotObserved
}

// markEnded notes a call ended before its gen_dealloc record, which then ends nothing more.
func (t *Tracer) markEnded(pid uint32, frame, code uint64) {
	pp := t.procs[pid]
	if pp == nil {
		return
	}
	if pp.ended == nil || len(pp.ended) >= maxEndedEarly {
		pp.ended = map[uint64]uint64{}
	}
	pp.ended[frame] = code
}

// attachGenDealloc attaches python_gen_dealloc to the process's interpreter, filtered to the
// process; it returns why not ("" when attached).
func (t *Tracer) attachGenDealloc(pid uint32, pp *pyProc, l *pyinfo.Layout) string {
	if t.env.Kernel == nil || t.env.Kernel.PythonGenDealloc() == nil {
		return untrackedNoProgram
	}
	in := pp.interp.in
	if in.GenDeallocOffset == 0 {
		t.env.Logger.Info("this CPython's coroutine type does not say where gen_dealloc is: configured coroutines are spans per run between awaits",
			zap.String("interpreter", in.Path), zap.NamedError("reason", in.GenDeallocErr))
		return untrackedNoDealloc
	}
	ex, err := link.OpenExecutable(in.Path)
	if err == nil {
		pp.link, err = ex.Uprobe("gen_dealloc", t.env.Kernel.PythonGenDealloc(), &link.UprobeOptions{
			Address: in.GenDeallocOffset, PID: int(pid),
			Cookie: probes.PythonCoroCookie(l.Gen.Frame, l.Gen.FrameState, uint64(l.Kernel.FrameCode)),
		})
	}
	if err != nil {
		t.env.Telemetry.AttachFailures.Add(tracer.Ctx, 1)
		t.env.Problems.Add(pid, fmt.Sprintf("Python coroutine ends (gen_dealloc) in %s: %v", in.Path, err))
		t.env.Logger.Warn("cannot attach the Python coroutine end probe", zap.String("interpreter", in.Path), zap.Uint32("pid", pid), zap.Error(err))
		return untrackedAttach
	}
	return ""
}

func (t *Tracer) untracked(reason string) {
	if t.coroUntracked != nil {
		t.coroUntracked.Add(tracer.Ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
	}
}

func (t *Tracer) coroEnded(end string, n uint64) {
	if t.coroEnds != nil && n > 0 {
		t.coroEnds.Add(tracer.Ctx, int64(n), metric.WithAttributes(attribute.String("end", end)))
	}
}

// forgetProc detaches a gone process's coroutine probe and its code objects.
func (t *Tracer) forgetProc(pid uint32) {
	pp := t.procs[pid]
	if pp == nil {
		return
	}
	delete(t.procs, pid)
	if pp.link != nil {
		_ = pp.link.Close()
	}
	if t.env.Kernel != nil {
		for code := range pp.codes {
			_ = t.env.Kernel.UnwatchPythonCoroutine(pid, code)
		}
	}
}

var sizeCoroEnd = tracer.SizeOf[probes.PythonCoroEndEvent]()

// onCoroEnd ends the span of a configured coroutine's call whose object is being freed.
func (t *Tracer) onCoroEnd(h spans.Header, rec []byte) string {
	e := tracer.As[probes.PythonCoroEndEvent](rec)
	end := pyinfo.CoroutineStateUnknown
	if l := t.layoutOf(h.PID); l != nil && e.Flags&probes.PyCoroStateUnread == 0 {
		end = l.Gen.CoroutineEnd(e.State)
	}
	errMsg := ""
	if end == pyinfo.CoroutineAbandoned {
		errMsg = "coroutine freed while suspended: it never ran to its end"
	}
	if pp := t.procs[h.PID]; pp != nil && pp.ended[e.Frame] == e.Code && e.Code != 0 {
		delete(pp.ended, e.Frame) // ended and counted when its frame was read cleared
		return ""
	}
	if !t.env.Builder.CoroutineEnd(h, e.Frame, e.Code, end, errMsg) {
		end = untrackedNotOpen
	}
	t.coroEnded(end, 1)
	return ""
}

// layoutOf is the layout of the process's interpreter (nil: unknown).
func (t *Tracer) layoutOf(pid uint32) *pyinfo.Layout {
	if pp := t.procs[pid]; pp != nil && pp.interp != nil && pp.interp.in != nil {
		return pp.interp.in.Layout
	}
	return nil
}

// reportCoroutineEnds counts the coroutine spans the builder ended without their end seen.
func (t *Tracer) reportCoroutineEnds() {
	c := t.env.Builder.Counters()
	now := coroCounters{c.CoroutineSpansUnended, c.CoroutineSpansEvicted, c.CoroutineAddressReused, c.CoroutineUnknownParents}
	t.coroEnded(spans.CoroutineEndNotObserved, now.unended-t.coroSeen.unended)
	t.coroEnded(spans.CoroutineEndEvicted, now.evicted-t.coroSeen.evicted)
	t.coroEnded(spans.CoroutineEndReused, now.reused-t.coroSeen.reused)
	if n := now.unparented - t.coroSeen.unparented; n > 0 && t.coroUnparented != nil {
		t.coroUnparented.Add(tracer.Ctx, int64(n), metric.WithAttributes(attribute.String("reason", "no_python_stack")))
	}
	t.coroSeen = now
}

// pollCoroutines ends the open coroutine calls whose frame the process has cleared: a call that
// returned is freed only when its last reference goes, and asyncio libraries (httpx's anyio)
// leave finished coroutines in reference cycles that only the cyclic garbage collector frees,
// seconds or minutes later, so gen_dealloc alone would hold their spans back that long. The
// object cannot be freed and its address reused without a gen_dealloc record (the probe sees
// every free), so a cleared state read at a frame whose span is open is that call's: its span
// ends (at its last observation, as at gen_dealloc) and its later record is expected.
func (t *Tracer) pollCoroutines(now time.Time) {
	for pid, pp := range t.procs {
		if len(pp.codes) == 0 || pp.interp == nil || pp.interp.in == nil || pp.interp.in.Layout == nil {
			continue
		}
		for _, key := range t.env.Builder.OpenCoroutines(pid) {
			// Only a cleared frame ends a span here: anything else at the address may be
			// a read that raced with the process, and gen_dealloc ends it anyway.
			frame, code := key[0], key[1]
			if t.readCoroutine(pid, frame, code) != pyinfo.CoroutineCompleted {
				continue
			}
			if t.env.Builder.CoroutineEnd(spans.Header{PID: pid, Time: now}, frame, code, pyinfo.CoroutineCompleted, "") {
				t.markEnded(pid, frame, code)
				t.coroEnded(pyinfo.CoroutineCompleted, 1)
			}
		}
	}
}
