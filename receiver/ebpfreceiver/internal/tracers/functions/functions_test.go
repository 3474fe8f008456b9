package functions

import (
	"os"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type problems []string

func (p *problems) Add(_ uint32, what string) { *p = append(*p, what) }

func newTracer(t *testing.T) (*Tracer, *problems) {
	t.Helper()
	meter := componenttest.NewNopTelemetrySettings().MeterProvider.Meter("test")
	failures, err := meter.Int64Counter("agenttrail.ebpf.attach.failures")
	if err != nil {
		t.Fatal(err)
	}
	probs := &problems{}
	return New(tracer.Env{
		Logger: zap.NewNop(), Builder: spans.NewBuilder(spans.Options{MaxOpenSpans: 10}), Redactor: redact.New(),
		Problems: probs, Telemetry: &tracer.Telemetry{Meter: meter, AttachFailures: failures},
	}), probs
}

// TestDecodeArgs: each argument is rendered by its kind and policy, bounded by its slot; a
// failed read or a kind the probe was not set up with carries no value.
func TestDecodeArgs(t *testing.T) {
	pi := &probeInfo{
		probe:    &spans.Probe{Args: []spans.ArgSpec{{Name: "prompt"}, {Name: "n"}, {Name: "secret"}, {Name: "bad"}}},
		policies: []redact.Policy{redact.PolicyRedacted, redact.PolicyFull, redact.PolicyNone, redact.PolicyFull},
	}
	var e probes.FuncArgsEvent
	prompt := "card 4111 1111 1111 1111"
	e.Args[0] = probes.FuncArg{Kind: probes.ArgString, Num: uint64(len(prompt)), Captured: 1 << 30} // captured beyond the slot
	copy(e.Args[0].Data[:], prompt)
	e.Args[1] = probes.FuncArg{Kind: probes.ArgInt, Num: uint64(1<<64 - 3)}
	e.Args[2] = probes.FuncArg{Kind: probes.ArgUint, Num: 42}
	e.Args[3] = probes.FuncArg{Kind: 200, Num: 7}
	got := decodeArgs(redact.New(), pi, &e)
	if len(got) != 4 {
		t.Fatalf("%d arguments", len(got))
	}
	if strings.Contains(got[0].Value, "4111 1111 1111 1111") || got[0].Redacted == 0 {
		t.Errorf("prompt %+v: not redacted", got[0])
	}
	if got[1].Value != "-3" {
		t.Errorf("int %+v", got[1])
	}
	if got[2].Value != "" || !got[2].Omitted {
		t.Errorf("policy none %+v", got[2])
	}
	if !got[3].ReadError || got[3].Length != 0 {
		t.Errorf("unknown kind %+v", got[3])
	}
	e.Args[0] = probes.FuncArg{Kind: probes.ArgString, Flags: probes.ArgFlagReadFailed, Captured: 3}
	if got := decodeArgs(redact.New(), pi, &e); !got[0].ReadError || got[0].Value != "" {
		t.Errorf("failed read %+v", got[0])
	}
}

// TestAttachBinaryCapture: a target's functions missing from its program are reported, and the
// process's capture says how many are instrumented and why not the others; a process whose
// program the functions were not looked up in (a child's exec of a shell) says nothing.
func TestAttachBinaryCapture(t *testing.T) {
	tr, probs := newTracer(t)
	tg := &tracer.Target{ID: 1, Config: tracer.TargetConfig{Name: "agent", Functions: []tracer.FunctionConfig{{Symbol: "no_such_function"}}}}
	inode, err := tracer.StatInode("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.AttachBinary(tracer.Binary{Target: tg, Path: "/bin/true", Inode: inode, PID: 5}); err != nil {
		t.Fatal(err)
	}
	if len(*probs) != 1 || !strings.Contains((*probs)[0], "function no_such_function of target agent in /bin/true") {
		t.Errorf("problems %q", *probs)
	}
	p := &tracer.Process{ProcInfo: tracer.ProcInfo{PID: 5, Inode: inode}, Target: tg, Capture: &spans.Capture{}}
	tr.SetupProcess(p)
	if p.Capture.Functions != "0/1" || len(p.Capture.Missing) != 1 || !strings.HasPrefix(p.Capture.Missing[0], "functions: 1 of 1 not instrumented (no_such_function: ") {
		t.Errorf("capture %+v", p.Capture)
	}
	other := &tracer.Process{ProcInfo: tracer.ProcInfo{PID: 6, Inode: probes.InodeKey{Dev: 1, Ino: 2}}, Target: tg, Capture: &spans.Capture{}}
	tr.SetupProcess(other)
	if other.Capture.Functions != "" || len(other.Capture.Missing) != 0 {
		t.Errorf("another program's capture %+v", other.Capture)
	}
	// Not an ELF file: an error for the receiver to report, kept for the file's next process.
	if err := tr.AttachBinary(tracer.Binary{Target: tg, Path: "/etc/hostname", Inode: probes.InodeKey{Dev: 9, Ino: 9}}); err == nil {
		t.Error("a text file was attached")
	}
}

// TestGoRuntimeLater: the program of a process matched as it runs (a Go program: this test's)
// gets its goroutine creation probe at the process's SetupProcess, after the TLS tracer's, not
// at AttachBinary, where its DWARF lookup held up every tracer's setup of the process (issue
// #18: the first connection of a process_name target was over before its TLS probes). Without
// a kernel here, an attach at AttachBinary would be a nil kernel's panic.
func TestGoRuntimeLater(t *testing.T) {
	tr, probs := newTracer(t)
	tg := &tracer.Target{ID: 1, Config: tracer.TargetConfig{Name: "agent"}}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	inode, err := tracer.StatInode(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.AttachBinary(tracer.Binary{Target: tg, Path: exe, Inode: inode, PID: 5}); err != nil {
		t.Fatal(err)
	}
	if tr.laterRuntimes[inode] != exe || len(tr.goRuntimes) != 0 || len(*probs) != 0 {
		t.Errorf("after AttachBinary: later %v, attached %v, problems %q", tr.laterRuntimes, tr.goRuntimes, *probs)
	}
	// A process of another program leaves it pending.
	tr.SetupProcess(&tracer.Process{ProcInfo: tracer.ProcInfo{PID: 6, Inode: probes.InodeKey{Dev: 1, Ino: 2}}, Target: tg, Capture: &spans.Capture{}})
	if tr.laterRuntimes[inode] != exe {
		t.Errorf("another program's setup took the pending probe: %v", tr.laterRuntimes)
	}
}

// TestUnknownProbe: records of a probe id never handed out are dropped with the reason.
func TestUnknownProbe(t *testing.T) {
	tr, _ := newTracer(t)
	id := tr.AddProbe(&spans.Probe{Symbol: "main.f"}, nil)
	rec := make([]byte, sizeFuncArgs)
	h := tracer.As[probes.EventHeader](rec)
	h.ProbeId = id + 1
	for _, k := range tr.Kinds()[:2] {
		if got := k.Handle(spans.Header{PID: 1}, rec[:sizeFunc]); got != "unknown_probe" {
			t.Errorf("%s: %q", k.Name, got)
		}
	}
}
