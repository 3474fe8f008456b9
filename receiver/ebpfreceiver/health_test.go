package ebpfreceiver

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// TestPanicInHandlerIsRecovered injects a handler that panics: the reader survives, the
// record is counted by kind, logged once with its stack however often it repeats, the process's
// open call is ended with an error, the component reports a recoverable error, and OK again
// once an interval reads records without a panic.
func TestPanicInHandlerIsRecovered(t *testing.T) {
	sink := new(consumertest.TracesSink)
	o := newOffline(t, sink)
	o.r.decoder.kinds[probes.KindSyscallExit].Handle = func(spans.Header, []byte) string {
		var m map[string]int
		m["boom"]++ // a nil map write: a bug in a handler
		return ""
	}
	o.feed(funcEntry(pidTraced, 3, 1000))
	o.feed(syscallExit(pidTraced, 1001, 0))
	o.feed(syscallExit(pidTraced, 1002, 0))
	o.r.checkHealth(3)

	if got := o.counts(t, "agenttrail.ebpf.events.panics", "kind"); got["syscall_exit"] != 2 || len(got) != 1 {
		t.Errorf("panics %v, want syscall_exit: 2", got)
	}
	logged := o.logs.FilterMessageSnippet("recovered from a panic").All()
	if len(logged) != 1 {
		t.Fatalf("%d panic logs, want 1 (rate-limited per kind)", len(logged))
	}
	if stack := logged[0].ContextMap()["stack"]; !strings.Contains(stack.(string), "TestPanicInHandlerIsRecovered") {
		t.Errorf("the log has no stack of the panic: %v", stack)
	}
	ev := o.host.last()
	if ev == nil || ev.Status() != componentstatus.StatusRecoverableError || !strings.Contains(ev.Err().Error(), "syscall_exit record of process 100 panicked") {
		t.Fatalf("status after the panic: %+v", ev)
	}
	// The call open when its process's state was reset ended with an error saying why.
	o.r.flush(t.Context())
	var ended bool
	for _, td := range sink.AllTraces() {
		s := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
		ended = s.Name() == "main.f3" && s.Status().Code() == ptrace.StatusCodeError && strings.Contains(s.Status().Message(), "internal error")
	}
	if !ended {
		t.Errorf("the open call was not ended by the reset")
	}

	// Records flow again without panics: one interval later the component is OK.
	o.feed(funcEntry(pidTraced, 3, 2000))
	o.feed(funcReturn(pidTraced, 3, 2001))
	o.r.checkHealth(2)
	if ev := o.host.last(); ev.Status() != componentstatus.StatusOK {
		t.Errorf("status after clean records: %v (all: %v)", ev.Status(), o.host.statuses())
	}
	if got := o.counts(t, "agenttrail.ebpf.events.invalid", "kind", "reason"); len(got) != 0 {
		t.Errorf("invalid records: %v", got)
	}
}

// TestPanicStatusNeedsCleanRecords: an interval with no records does not clear a panic, and a
// panic in every interval keeps the error.
func TestPanicStatusNeedsCleanRecords(t *testing.T) {
	o := newOffline(t, consumertest.NewNop())
	o.r.decoder.kinds[probes.KindThreadExit].Handle = func(spans.Header, []byte) string { panic("bug") }
	o.feed(processEvent(probes.KindThreadExit, pidTraced, 0, 0, 1, ""))
	o.r.checkHealth(1)
	o.r.checkHealth(0)
	o.feed(processEvent(probes.KindThreadExit, pidTraced, 0, 0, 2, ""))
	o.r.checkHealth(1)
	if got := o.host.statuses(); len(got) != 1 || got[0] != componentstatus.StatusRecoverableError {
		t.Errorf("statuses %v, want the recoverable error kept (reported once: it did not change)", got)
	}
}

// TestRingBufferLossStatus: a growing kernel count of records the full ring buffer lost is a
// recoverable error; a check without new losses is OK again.
func TestRingBufferLossStatus(t *testing.T) {
	o := newOffline(t, consumertest.NewNop())
	lost := uint64(5)
	o.r.drops = func() (map[string]uint64, error) {
		return map[string]uint64{dropRingBufferFull: lost, "stack_unavailable": lost * 3}, nil
	}
	o.r.lastRingDrops = 5
	o.r.checkHealth(1)
	if got := o.host.statuses(); len(got) != 0 {
		t.Fatalf("statuses with no new loss: %v", got)
	}
	lost = 12
	o.r.checkHealth(1)
	ev := o.host.last()
	if ev == nil || ev.Status() != componentstatus.StatusRecoverableError || !strings.Contains(ev.Err().Error(), "7 records lost") {
		t.Fatalf("status after losses: %+v", ev)
	}
	o.r.checkHealth(1)
	if got := o.host.statuses(); len(got) != 2 || got[1] != componentstatus.StatusOK {
		t.Errorf("statuses %v, want error then OK", got)
	}
}

// TestAttachProblemsStatus: what could not be instrumented is a recoverable error naming it; a
// process's problem ends with the process, a target's stays.
func TestAttachProblemsStatus(t *testing.T) {
	o := newOffline(t, consumertest.NewNop())
	g := o.r.registry
	tg := g.targets[0]
	tg.Config.Functions = []FunctionConfig{{Symbol: "no_such_function"}}
	inode, err := tracer.StatInode("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.attachBinary(tracer.Binary{Target: tg, Path: "/bin/true", Inode: inode}); err != nil {
		t.Fatal(err)
	}
	ev := o.host.last()
	if ev == nil || ev.Status() != componentstatus.StatusRecoverableError || !strings.Contains(ev.Err().Error(), "function no_such_function of target agent in /bin/true") {
		t.Fatalf("status after a missing function: %+v", ev)
	}
	g.warnTarget(tg, 555, "cannot trace process 555", errors.New("no such process"))
	if ev := o.host.last(); !strings.Contains(ev.Err().Error(), "cannot trace process 555") || !strings.Contains(ev.Err().Error(), "no_such_function") {
		t.Errorf("status names %q", ev.Err())
	}
	g.onExit(555)
	if ev := o.host.last(); ev.Status() != componentstatus.StatusRecoverableError || strings.Contains(ev.Err().Error(), "555") {
		t.Errorf("after the process exited: %v %v", ev.Status(), ev.Err())
	}

	o2 := newOffline(t, consumertest.NewNop())
	o2.r.registry.warnTarget(o2.r.registry.targets[0], 777, "cannot trace process 777", nil)
	o2.r.registry.onExit(777)
	if got := o2.host.statuses(); len(got) != 2 || got[0] != componentstatus.StatusRecoverableError || got[1] != componentstatus.StatusOK {
		t.Errorf("statuses %v, want a recoverable error then OK", got)
	}
}

// TestAttachProblemsBounded: past maxAttachProblems only a count grows, and the status lists a
// few and says how many more.
func TestAttachProblemsBounded(t *testing.T) {
	o := newOffline(t, consumertest.NewNop())
	p := newAttachProblems(o.r.health)
	for i := range maxAttachProblems + 10 {
		p.Add(uint32(i+1), fmt.Sprintf("process %04d", i))
	}
	if len(p.byWhat) != maxAttachProblems || p.more != 10 {
		t.Errorf("%d listed, %d more", len(p.byWhat), p.more)
	}
	if msg := o.host.last().Err().Error(); !strings.Contains(msg, fmt.Sprintf("(and %d more", maxAttachProblems+10-5)) {
		t.Errorf("status %q", msg)
	}
}
