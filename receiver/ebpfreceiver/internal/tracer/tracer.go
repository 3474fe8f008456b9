// Package tracer is the contract between the eBPF receiver and its probe families. Each family
// (Go/native functions, syscalls, TLS, Python, ...) is a package under internal/tracers that
// implements Tracer: it attaches its probes, sets up the processes the receiver traces, turns its
// kinds of ring-buffer records into spans through the Env it was built with, and keeps its own
// state. The receiver's root package owns what the families share: the ring buffer, the decoder
// (a kind -> handler table built from every tracer's Kinds, with one size check), the registry of
// traced processes (Registry), component status and self-telemetry.
//
// Everything here runs on the receiver's reader goroutine (and in Start, before it runs): a
// tracer needs no locks of its own.
package tracer

import (
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/symbolize"
)

// Tracer is one probe family. The receiver calls, in this order: Start once, AttachBinary for
// each executable target's file and for each process a target's selector matches, SetupProcess
// for each process it traces from then on, the Kinds' handlers for each record, ProcessGone and
// Housekeeping as processes go and time passes, Close once at shutdown.
type Tracer interface {
	// Name names the family in logs ("functions", "tls", ...).
	Name() string
	// Kinds lists the record kinds the tracer handles; each kind belongs to one tracer.
	Kinds() []Kind
	// Start attaches what does not depend on a target (a host's shared libraries, the tables the
	// kernel programs read). Problems are reported through Env.Problems, not returned: the other
	// families still run.
	Start()
	// AttachBinary instruments a program file whose processes belong to a target, before the
	// kernel traces them: an executable target's file at Start (Binary.PID 0), or the program of
	// a running or exec'ing process a target's selector matched. An error means the target's
	// own instrumentation (its configured functions) could not be attached to the file; the
	// receiver reports it. A family that instruments per process returns nil and does its work
	// in SetupProcess.
	AttachBinary(b Binary) error
	// SetupProcess prepares a process the receiver traces from now on (matched, forked from a
	// traced process, or exec'ing a new image) and fills the tracer's part of p.Capture: what it
	// can record of the process, and in Capture.Missing what it cannot.
	SetupProcess(p *Process)
	// ProcessGone forgets what the tracer keeps of a process's image: the process exited or
	// exec'd another program, or its state is reset after a panic. What it had pending is
	// emitted first.
	ProcessGone(pid uint32)
	// Housekeeping runs at each flush interval (and while idle, when Waiting): state waiting for
	// time to pass is completed, emitted or expired. now is wall-clock time.
	Housekeeping(now time.Time)
	// Waiting reports whether the tracer holds state that Housekeeping must see even when no
	// record arrives (a response read until its connection closes, a span ended by a timeout).
	Waiting() bool
	// Close emits what is still open (the receiver flushes the builder after) and releases what
	// the tracer holds. The reader goroutine has stopped; the kernel programs are still loaded.
	Close() error
}

// Kind is how a tracer handles one kind of ring-buffer record.
type Kind struct {
	Kind uint32 // the kernel's enum event_kind value (probes.Kind*)
	Name string // the `kind` attribute of the receiver's metrics
	// Min is the bytes every record of the kind holds: the decoder drops shorter records
	// ("short_record") before the handler runs. Full is the struct the handler views the record
	// as; a record shorter than Full (sent only as far as the kernel filled it) is copied into a
	// zeroed buffer of Full bytes, so any field can be read and those not sent read 0.
	Min, Full int
	// Handle turns a record into spans; it returns why the record was dropped (a metric's
	// reason attribute), or "". rec holds len(rec) bytes from the kernel and cap(rec) >= Full:
	// view it with As. A panic is recovered by the receiver (the record is dropped and the
	// process's state reset).
	Handle func(h spans.Header, rec []byte) (dropReason string)
}

// Env is what a tracer gets from the receiver at construction: the shared span builder and
// helpers, its reporting channels and a read-only view of the traced processes. Fields a test
// without the kernel cannot provide are nil (Kernel); a tracer touches the kernel only in
// Start, AttachBinary and SetupProcess.
type Env struct {
	Logger     *zap.Logger
	Kernel     *probes.Set // nil in tests that run without the kernel
	Builder    *spans.Builder
	Symbolizer *symbolize.Symbolizer
	Redactor   *redact.Redactor
	Telemetry  *Telemetry
	// Problems collects what could not be instrumented, for the component status.
	Problems Problems
	// Processes is the registry of traced processes.
	Processes Registry
	// Stacks gives the interpreter stack sent just before a record (nil: no tracer provides
	// them, Python disabled).
	Stacks Stacks
	// ProcRoot is where /proc is mounted (proc_root).
	ProcRoot string
}

// Telemetry is the self-telemetry tracers share. A tracer makes the instruments only it updates
// from Meter (names agenttrail.ebpf.<family>.*, documented in the receiver's README).
type Telemetry struct {
	Meter metric.Meter
	// AttachFailures: targets, functions, libraries or processes that could not be instrumented.
	AttachFailures metric.Int64Counter
	// Calls: calls closed or skipped without a clean entry and return, by reason.
	Calls metric.Int64Counter
}

// Problems is the component status's list of what could not be instrumented. pid is the process
// a problem concerns (0: a target, file or library, which stays until the collector restarts); a
// process's problems end when it exits.
type Problems interface {
	Add(pid uint32, what string)
}

// Registry is the receiver's view of the processes it traces.
type Registry interface {
	// Process returns a traced process, or nil.
	Process(pid uint32) *Process
}

// Stacks gives, to the tracer whose record it is, the interpreter stack the kernel sent just
// before that record on the same thread. Taking a stack also tells the span builder which
// reconstructed functions are alive.
type Stacks interface {
	// Take returns the stack's frames, innermost first; nil when none belongs to the record.
	Take(h spans.Header) []spans.Frame
}

// Target is one configured target as the receiver resolved it.
type Target struct {
	ID     uint32 // 1-based; 0 in the kernel means "not traced"
	Config TargetConfig
	Inode  probes.InodeKey // executable targets, once resolved
}

// ProcInfo is what the receiver read of a process from /proc.
type ProcInfo struct {
	PID     uint32
	PPID    uint32
	Comm    string
	Exe     string // path as the process sees it (its mount namespace)
	ExeFile string // path that opens the same file from here: <proc>/<pid>/exe; "" when unknown
	Inode   probes.InodeKey
	Cmdline []string
}

// Process is a traced process.
type Process struct {
	ProcInfo
	Target *Target
	IsGo   bool
	// Capture is what the receiver can record of the process (its spans' agenttrail.capture.*
	// resource attributes): each tracer fills its part in SetupProcess, and may update it later
	// (TLS read from a library loaded after setup).
	Capture *spans.Capture
}

// Binary is a program file whose processes belong to a target.
type Binary struct {
	Target *Target
	Path   string // opens the file from here
	Inode  probes.InodeKey
	PID    uint32 // the process whose program it is; 0: an executable target's file, at Start
}

// TargetName is the name of the target a traced process belongs to ("" when not traced).
func TargetName(r Registry, pid uint32) string {
	if r == nil {
		return ""
	}
	if p := r.Process(pid); p != nil && p.Target != nil {
		return p.Target.Config.Name
	}
	return ""
}
