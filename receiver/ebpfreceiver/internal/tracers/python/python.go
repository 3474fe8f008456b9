// Package python is the tracer of CPython processes: it finds the interpreter of traced
// processes, attaches the audit probe once per interpreter binary, tells the kernel where each
// process's interpreter state is, turns the kernel's Python stacks into frames (given to the
// other tracers through tracer.Stacks, and made the spans of configured Python functions) and
// audit records into span events.
package python

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/pyinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// Config configures CPython support (the receiver's `python` key).
type Config struct {
	// Enabled: find CPython in traced processes and capture Python call stacks.
	Enabled bool `mapstructure:"enabled"`
	// Audit attaches CPython's `audit` USDT probe: audit events with their arguments.
	Audit bool `mapstructure:"audit"`
	// AuditEvents: audit event names (globs, e.g. "os.*", "*") recorded as span events.
	AuditEvents []string `mapstructure:"audit_events"`
	// SpanIdleTimeout ends the reconstructed spans of a thread with no stack sample for this long.
	SpanIdleTimeout time.Duration `mapstructure:"span_idle_timeout"`
}

// Tracer is the receiver's CPython support. Reader goroutine (and Start) only.
type Tracer struct {
	env         tracer.Env
	cfg         Config
	reader      *pyinfo.Reader
	unreadables metric.Int64Counter // values that failed a check, by field and reason (nil in unit tests)
	// coroutines: configured functions found to be coroutines, whose reconstructed spans are
	// one run between awaits each (nil in unit tests).
	coroutines metric.Int64Counter
	// coroEnds: coroutine calls ended, by how (end); coroUntracked: coroutines whose spans stay
	// one run between awaits, by reason (coroutine.go). Nil in unit tests.
	coroEnds, coroUntracked metric.Int64Counter
	// coroUnparented: socket I/O of processes with coroutine calls open that could not be put
	// under one (spans.ParentMissingCoroutine).
	coroUnparented metric.Int64Counter
	coroSeen       coroCounters
	procs          map[uint32]*pyProc // traced Python processes, for coroutine ends

	interps  map[string]*pyInterp // by "dev:inode" of the binary
	bins     []*pyInterp          // by kernel index
	warned   map[string]bool      // interpreter versions warned about
	patterns map[string][]pyPattern
	funcs    map[pyFuncKey]*spans.Probe
	pending  map[uint32]*pendingStack // thread id → the stack sent before its next record
}

var (
	_ tracer.Tracer = (*Tracer)(nil)
	_ tracer.Stacks = (*Tracer)(nil)
)

type pyInterp struct {
	in     *pyinfo.Interpreter // nil: not an interpreter
	idx    uint32
	audit  bool // the audit probe is attached
	failed bool
}

type pyPattern struct {
	module, qualname string
	cfg              tracer.PythonFunctionConfig
}

type pyFuncKey struct {
	target   string
	pattern  int
	qualname string
	file     string
}

type pendingStack struct {
	pid    uint32
	mono   uint64
	status uint16
	layout uint16
	frames []probes.PyFrame
}

// pyStack is a resolved Python stack.
type pyStack struct {
	frames    []spans.Frame     // innermost first
	funcs     []spans.StackFunc // configured functions, outermost first
	truncated bool
	// fresh: coroutine calls on the stack whose code object was registered for gen_dealloc
	// only now (checkFresh).
	fresh [][2]uint64
	// unreadable lists what could not be read of its code objects, as "field:reason" (see
	// pyinfo's Field and Reason constants), each once.
	unreadable []string
}

// putUnreadable says, on the span or event that carries the stack, what its frames lack.
func (st *pyStack) putUnreadable(m pcommon.Map) {
	if len(st.unreadable) > 0 {
		m.PutStr("agenttrail.python.stack.unreadable", strings.Join(st.unreadable, ","))
	}
}

// Bounds of what the receiver keeps of Python processes.
const (
	// maxPendingStacks bounds the stacks waiting for their thread's next record (one per
	// thread; a thread whose next record never comes leaves one behind).
	maxPendingStacks = 4096
	// maxInterps bounds the binaries remembered as interpreters or not (a process can exec
	// or map any number of files).
	maxInterps = 4096
	// maxPyFuncs bounds the probes of configured Python functions, one per qualified name and
	// file that matched: a process can make any number of functions whose names match a glob.
	// Past it they start over (spans of functions open then may be split).
	maxPyFuncs = 16384
	// maxWarnedVersions bounds the interpreter versions warned about (a version can come
	// from a file name).
	maxWarnedVersions = 64
	// maxPyProcs bounds the Python processes whose coroutine ends are tracked.
	maxPyProcs = 4096
)

// unreadable counts a value of a Python process that failed a check, and notes it on the
// stack it belongs to (st may be nil).
func (t *Tracer) unreadable(st *pyStack, field, reason string) {
	if t.unreadables != nil {
		t.unreadables.Add(tracer.Ctx, 1, metric.WithAttributes(attribute.String("field", field), attribute.String("reason", reason)))
	}
	if st != nil && !slices.Contains(st.unreadable, field+":"+reason) {
		st.unreadable = append(st.unreadable, field+":"+reason)
	}
}

// New returns the Python tracer of the targets' processes.
func New(env tracer.Env, cfg Config, targets []tracer.TargetConfig) (*Tracer, error) {
	unreadables, err := env.Telemetry.Meter.Int64Counter("agenttrail.ebpf.python.unreadable",
		metric.WithDescription("Values read from Python processes (code objects, audit arguments) that failed a check, by field and reason; the stack or argument says what is missing."),
		metric.WithUnit("{value}"))
	if err != nil {
		return nil, err
	}
	coroutines, err := env.Telemetry.Meter.Int64Counter("agenttrail.ebpf.python.coroutines",
		metric.WithDescription("Configured Python functions (python_functions) found to be coroutines (async def)."),
		metric.WithUnit("{function}"))
	if err != nil {
		return nil, err
	}
	coroEnds, err := env.Telemetry.Meter.Int64Counter("agenttrail.ebpf.python.coroutine.ends",
		metric.WithDescription("Calls of configured coroutines ended, by end: completed, abandoned (freed while suspended), unknown_state, not_observed (process exit), evicted (too many open), address_reused, no_span (an end whose call never showed on a stack)."),
		metric.WithUnit("{call}"))
	if err != nil {
		return nil, err
	}
	coroUnparented, err := env.Telemetry.Meter.Int64Counter("agenttrail.ebpf.python.coroutine.unparented",
		metric.WithDescription("Socket sends and receives of Python processes with coroutine calls open, none known to run on the thread (a socket call carries no Python stack): their spans have no parent, agenttrail.parent.missing says why; by reason."),
		metric.WithUnit("{call}"))
	if err != nil {
		return nil, err
	}
	coroUntracked, err := env.Telemetry.Meter.Int64Counter("agenttrail.ebpf.python.coroutine.untracked",
		metric.WithDescription("Configured coroutines whose end cannot be observed, by reason: their spans are one run between awaits each."),
		metric.WithUnit("{function}"))
	if err != nil {
		return nil, err
	}
	t := &Tracer{
		env: env, cfg: cfg, unreadables: unreadables, coroutines: coroutines,
		coroEnds: coroEnds, coroUntracked: coroUntracked, coroUnparented: coroUnparented, procs: map[uint32]*pyProc{},
		reader:   pyinfo.NewReader(env.ProcRoot),
		interps:  map[string]*pyInterp{},
		warned:   map[string]bool{},
		patterns: map[string][]pyPattern{},
		funcs:    map[pyFuncKey]*spans.Probe{},
		pending:  map[uint32]*pendingStack{},
	}
	for _, tg := range targets {
		for _, f := range tg.PythonFunctions {
			module, qualname, _ := tracer.ParsePythonPattern(f.Pattern) // validated
			t.patterns[tg.Name] = append(t.patterns[tg.Name], pyPattern{module: module, qualname: qualname, cfg: f})
		}
	}
	return t, nil
}

var (
	headPyStack = int(unsafe.Offsetof(probes.PythonStackEvent{}.Frames))
	sizePyStack = tracer.SizeOf[probes.PythonStackEvent]()
	headPyAudit = int(unsafe.Offsetof(probes.PythonAuditEvent{}.Values))
	sizePyAudit = tracer.SizeOf[probes.PythonAuditEvent]()
)

func (t *Tracer) Name() string { return "python" }

// Kinds: stacks and audit records are sent only as far as they were filled.
func (t *Tracer) Kinds() []tracer.Kind {
	return []tracer.Kind{
		{Kind: probes.KindPythonStack, Name: "python_stack", Min: headPyStack, Full: sizePyStack, Handle: t.onStackRecord},
		{Kind: probes.KindPythonAudit, Name: "python_audit", Min: headPyAudit, Full: sizePyAudit, Handle: t.onAudit},
		{Kind: probes.KindPythonCoroEnd, Name: "python_coro_end", Min: sizeCoroEnd, Full: sizeCoroEnd, Handle: t.onCoroEnd},
	}
}

// Start loads the CPython layouts the kernel programs read frames with.
func (t *Tracer) Start() {
	for id, l := range pyinfo.Layouts {
		if err := t.env.Kernel.SetPythonLayout(l.ID, l.Kernel); err != nil {
			t.env.Logger.Warn("cannot load a CPython layout into the kernel", zap.String("version", id), zap.Error(err))
		}
	}
}

// AttachBinary registers an executable target's interpreter and attaches its audit probe before
// any of its processes starts. A process's program is set up in SetupProcess.
func (t *Tracer) AttachBinary(b tracer.Binary) error {
	if b.PID == 0 {
		t.setupBinary(b.Path, tracer.InodeString(b.Inode))
	}
	return nil
}

// SetupProcess finds the process's interpreter and says whether its Python stacks can be read
// (agenttrail.capture.python).
func (t *Tracer) SetupProcess(p *tracer.Process) {
	var pi *pyInterp
	if !p.IsGo {
		pi = t.setupProcess(p.ProcInfo)
	}
	if pi != nil && pi.in != nil && pi.in.Layout != nil && !pi.failed {
		t.forgetProc(p.PID) // an exec: the old image's probe and code objects are gone
		if len(t.procs) < maxPyProcs {
			t.procs[p.PID] = &pyProc{interp: pi, codes: map[uint64]uint64{}}
		}
	}
	value, missing := capture(p.ProcInfo, p.IsGo, pi)
	if c := p.Capture; c != nil {
		c.Python = value
		if missing != "" {
			c.Missing = append(c.Missing, missing)
		}
	}
}

// capture says whether the Python stacks of a process can be read: the version of its CPython
// with a known layout, "unknown" (a CPython the receiver has no layout for, with why in
// missing) or "n/a" (no CPython found). pi is the interpreter the process was set up with
// (nil: none).
func capture(info tracer.ProcInfo, isGo bool, pi *pyInterp) (value, missing string) {
	if isGo || info.ExeFile == "" || pi == nil || pi.in == nil {
		return tracer.CaptureNA, ""
	}
	version := tracer.CmpOr(pi.in.Version, "of an unreadable version")
	switch {
	case pi.in.Layout == nil:
		return tracer.CaptureUnknown, "python: CPython " + version + " has no known layout: native frames only, audit events without arguments"
	case pi.failed:
		return tracer.CaptureUnknown, "python: the CPython " + version + " interpreter could not be registered in the kernel: no Python stacks"
	}
	return pi.in.Version, ""
}

// Class keeps a capture.python value to a few values for metric attributes: a version is
// "known".
func Class(v string) string {
	switch v {
	case tracer.CaptureUnknown, tracer.CaptureNA, tracer.CaptureDisabled:
		return v
	}
	return "known"
}

// ProcessGone forgets the process's memory reader and its threads' pending stacks.
func (t *Tracer) ProcessGone(pid uint32) { t.forget(pid) }

// Waiting: reconstructed spans end after span_idle_timeout without a sample.
func (t *Tracer) Waiting() bool { return t.env.Builder.OpenSpans() > 0 }

// Housekeeping ends the reconstructed spans of threads not sampled for span_idle_timeout
// (suspended coroutine calls stay open), the coroutine calls found finished, and counts those
// ended unseen.
func (t *Tracer) Housekeeping(now time.Time) {
	t.env.Builder.ExpireObserved(now, t.cfg.SpanIdleTimeout)
	t.pollCoroutines(now)
	t.reportCoroutineEnds()
}

// Close releases the memory readers of the processes and their coroutine probes.
func (t *Tracer) Close() error {
	t.reader.Close()
	for pid := range t.procs {
		t.forgetProc(pid)
	}
	return nil
}

// Take returns the frames of the Python stack sent just before the record at h (nil when none)
// and tells the span builder which reconstructed functions it shows alive.
func (t *Tracer) Take(h spans.Header) []spans.Frame {
	st := t.take(h, tracer.TargetName(t.env.Processes, h.PID))
	if st == nil {
		return nil
	}
	t.env.Builder.ObserveStack(h, st.funcs, st.truncated)
	t.checkFresh(h, st.fresh)
	return st.frames
}

func (t *Tracer) onStackRecord(hdr spans.Header, rec []byte) string {
	if !t.onStack(hdr, rec) {
		return "short_record"
	}
	if tracer.As[probes.EventHeader](rec).ProbeId == probes.PythonSampleWait {
		// A sample of its own: the functions on the stack are alive, those gone ended.
		t.Take(hdr)
	}
	return ""
}

// setupBinary inspects an executable or library that may be a CPython interpreter and, the first
// time, registers it in the kernel and attaches its audit probe. path must open the file from
// here; key identifies the file.
func (t *Tracer) setupBinary(path, key string) *pyInterp {
	if pi, ok := t.interps[key]; ok {
		return pi
	}
	pi := &pyInterp{}
	if len(t.interps) >= maxInterps {
		// Forget the binaries found not to be interpreters (they are inspected again if seen).
		for k, other := range t.interps {
			if other.in == nil {
				delete(t.interps, k)
			}
		}
	}
	if len(t.interps) < maxInterps {
		t.interps[key] = pi
	}
	in, err := pyinfo.Inspect(path)
	if err != nil {
		if errors.Is(err, pyinfo.ErrTooLarge) {
			t.unreadable(nil, "interpreter", pyinfo.ReasonTooLong)
		}
		if !errors.Is(err, pyinfo.ErrNotPython) {
			t.env.Logger.Debug("cannot inspect a possible Python interpreter", zap.String("path", path), zap.Error(err))
		}
		return pi
	}
	pi.in = in
	if in.Layout == nil && !t.warned[in.Version] && len(t.warned) < maxWarnedVersions {
		t.warned[in.Version] = true
		t.env.Telemetry.AttachFailures.Add(tracer.Ctx, 1)
		t.env.Problems.Add(0, fmt.Sprintf("Python stacks of CPython %s in %s: no known frame layout", tracer.CmpOr(in.Version, "unknown"), path))
		t.env.Logger.Warn("this CPython version has no known frame layout: its processes are traced with native frames only (no Python stacks, audit events without arguments)",
			zap.String("version", tracer.CmpOr(in.Version, "unknown")), zap.String("interpreter", path))
	}
	if len(t.bins) >= probes.MaxPythonBinaries {
		t.env.Problems.Add(0, fmt.Sprintf("Python interpreter %s: more than %d interpreter binaries", path, probes.MaxPythonBinaries))
		t.env.Logger.Warn("too many Python interpreter binaries; this one is not probed", zap.String("interpreter", path))
		pi.failed = true
		return pi
	}
	pi.idx = uint32(len(t.bins))
	t.bins = append(t.bins, pi)
	bin := probes.PythonBinary{RuntimeVaddr: in.RuntimeAddr}
	if in.Layout != nil {
		bin.Layout = in.Layout.ID
	}
	if in.Audit != nil {
		bin.ProbeVaddr = in.Audit.Address
		for i := 0; i < 2; i++ {
			a := in.Audit.Args[i]
			bin.Args[i] = probes.UsdtArg{Offset: a.Offset, Kind: uint8(a.Kind), Reg: uint8(a.Reg), Size: a.Size, IsSigned: tracer.B2U(a.Signed)}
		}
	}
	if err := t.env.Kernel.SetPythonBinary(pi.idx, bin); err != nil {
		t.env.Problems.Add(0, fmt.Sprintf("Python interpreter %s: %v", path, err))
		t.env.Logger.Warn("cannot register a Python interpreter in the kernel", zap.String("interpreter", path), zap.Error(err))
		pi.failed = true
		return pi
	}
	if !t.cfg.Audit || t.env.Kernel.PythonAudit() == nil {
		return pi
	}
	if in.Audit == nil {
		t.env.Logger.Info("the Python interpreter has no USDT probes (built without --with-dtrace): no audit events; Python stacks are still taken at syscalls and TLS calls",
			zap.String("interpreter", path), zap.String("version", in.Version))
		return pi
	}
	ex, err := link.OpenExecutable(path)
	if err == nil {
		var l link.Link
		l, err = ex.Uprobe("python:audit", t.env.Kernel.PythonAudit(), &link.UprobeOptions{
			Address: in.Audit.FileOffset, RefCtrOffset: in.Audit.SemaphoreOffset, Cookie: uint64(pi.idx),
		})
		if err == nil {
			t.env.Kernel.AddLink(l)
			pi.audit = true
		}
	}
	if err != nil {
		t.env.Telemetry.AttachFailures.Add(tracer.Ctx, 1)
		t.env.Problems.Add(0, fmt.Sprintf("Python audit probe in %s: %v", path, err))
		t.env.Logger.Warn("cannot attach the Python audit probe", zap.String("interpreter", path), zap.Error(err))
	}
	return pi
}

// setupProcess finds a traced process's interpreter, if it runs CPython, and tells the kernel
// where its runtime state is (the audit probe also does, at the first audit event). It returns
// the interpreter found (nil: none), for the process's capture attributes.
func (t *Tracer) setupProcess(info tracer.ProcInfo) *pyInterp {
	if info.ExeFile == "" {
		return nil
	}
	pi := t.setupBinary(info.ExeFile, tracer.InodeString(info.Inode))
	mapPath := info.Exe
	var cands []pyinfo.Mapping
	if pi.in == nil {
		// An embedding program: the interpreter is a mapped libpython.
		var err error
		if cands, err = t.candidates(info.PID); err != nil {
			return nil
		}
		found := false
		for _, m := range cands {
			if !strings.HasPrefix(filepath.Base(m.Path), "libpython") {
				continue
			}
			here := filepath.Join(t.env.ProcRoot, strconv.FormatUint(uint64(info.PID), 10), "root", m.Path)
			if lib := t.setupBinary(here, fmt.Sprintf("%d:%d", m.Dev, m.Inode)); lib.in != nil {
				pi, mapPath, found = lib, m.Path, true
				break
			}
		}
		if !found {
			return nil
		}
	}
	in := pi.in
	if in.Layout == nil || pi.failed {
		return pi
	}
	if cands == nil { // the program is the interpreter: its mappings are not read yet
		cands, _ = t.candidates(info.PID) // unreadable: no bias mapping
	}
	bias := uint64(0)
	if m, ok := firstMappingByPath(cands, mapPath); ok {
		bias = in.Bias(m)
	} else if in.Shared {
		return pi // not mapped yet: the audit probe registers the process at its first event
	}
	if err := t.env.Kernel.SetPythonProcess(info.PID, probes.PythonProc{Runtime: in.RuntimeAddr + bias, Layout: in.Layout.ID}); err != nil {
		t.env.Logger.Debug("cannot register a Python process in the kernel", zap.Uint32("pid", info.PID), zap.Error(err))
	}
	return pi
}

// candidates lists a process's possible interpreter files; past pyinfo's bound, the first
// ones (the count says it).
func (t *Tracer) candidates(pid uint32) ([]pyinfo.Mapping, error) {
	cands, err := pyinfo.Candidates(t.env.ProcRoot, pid)
	if errors.Is(err, pyinfo.ErrTooManyCandidates) {
		t.unreadable(nil, "interpreter", "too_many_candidates")
		return cands, nil
	}
	return cands, err
}

// firstMappingByPath is the first of a process's interpreter candidates mapped from path.
func firstMappingByPath(cands []pyinfo.Mapping, path string) (pyinfo.Mapping, bool) {
	for _, m := range cands {
		if m.Path == path {
			return m, true
		}
	}
	return pyinfo.Mapping{}, false
}

func (t *Tracer) forget(pid uint32) {
	t.reader.Forget(pid)
	t.forgetProc(pid)
	for tid, ps := range t.pending {
		if ps.pid == pid {
			delete(t.pending, tid)
		}
	}
}

// onStack keeps a Python stack record until the record it belongs to arrives.
func (t *Tracer) onStack(h spans.Header, raw []byte) bool {
	const head = int(unsafe.Offsetof(probes.PythonStackEvent{}.Frames))
	if len(raw) < head {
		return false
	}
	e := (*probes.PythonStackEvent)(unsafe.Pointer(&raw[0]))
	n := min(int(e.Depth), (len(raw)-head)/int(unsafe.Sizeof(probes.PyFrame{})), probes.PyStackDepth)
	ps := &pendingStack{pid: h.PID, mono: h.Mono, status: e.Status, layout: e.Layout, frames: make([]probes.PyFrame, n)}
	copy(ps.frames, e.Frames[:n])
	if _, ok := t.pending[h.TID]; !ok && len(t.pending) >= maxPendingStacks {
		t.evictPending(h.Mono)
	}
	t.pending[h.TID] = ps
	return true
}

// evictPending makes room among the pending stacks: those too old to be taken go first, all
// of them if none is (each counted).
func (t *Tracer) evictPending(now uint64) {
	n := len(t.pending)
	for tid, ps := range t.pending {
		if now < ps.mono || now-ps.mono > maxStackLag {
			delete(t.pending, tid)
		}
	}
	if len(t.pending) >= maxPendingStacks {
		clear(t.pending)
	}
	for range n - len(t.pending) {
		t.unreadable(nil, "stack", "pending_limit")
	}
}

// maxStackLag: a stack record older than this is not the one of the record at hand (its own
// record was lost).
const maxStackLag = 50_000_000 // ns

// take returns the resolved Python stack sent just before the record at h, or nil.
func (t *Tracer) take(h spans.Header, targetName string) *pyStack {
	ps := t.pending[h.TID]
	if ps == nil {
		return nil
	}
	delete(t.pending, h.TID)
	if h.Mono < ps.mono || h.Mono-ps.mono > maxStackLag || ps.status == probes.PyStackNoThread {
		return nil
	}
	l := pyinfo.LayoutByID(uint32(ps.layout))
	if l == nil || len(ps.frames) == 0 {
		return nil
	}
	st := &pyStack{truncated: ps.status != probes.PyStackOK}
	patterns := t.patterns[targetName]
	// What one stack may read of the process's memory beyond the cache: the process chooses
	// its code objects (and how large their tables are).
	budget := int64(pyinfo.StackReadBudget)
	for i := range ps.frames {
		f := &ps.frames[i]
		if f.Code == 0 {
			continue
		}
		code, err := t.reader.Code(h.PID, l, f.Code, &budget)
		if err != nil {
			// Most often a module body that finished (and was freed) before it could be read.
			field, reason := pyinfo.FieldCode, pyinfo.ReasonUnreadable
			var re *pyinfo.ReadError
			if errors.As(err, &re) {
				field, reason = re.Field, re.Reason
			}
			t.unreadable(st, field, reason)
			st.frames = append(st.frames, spans.Frame{Function: fmt.Sprintf("<unresolved code object %#x: %s>", f.Code, reason), Module: "python"})
			continue
		}
		frame := spans.Frame{Function: code.Qualname, File: code.Filename, Line: code.Line(f.Lasti), Module: "python"}
		named := true
		for _, re := range code.Unreadable {
			t.unreadable(st, re.Field, re.Reason)
			switch re.Field {
			case pyinfo.FieldQualname:
				frame.Function, named = "<unreadable name: "+re.Reason+">", false
			case pyinfo.FieldFilename:
				frame.File, named = "<unreadable file: "+re.Reason+">", false
			}
		}
		st.frames = append(st.frames, frame)
		if len(patterns) == 0 || !named {
			continue // a function is matched by its name and its file, both read
		}
		if probe := t.match(targetName, patterns, code); probe != nil {
			sf := spans.StackFunc{Key: [2]uint64{f.Frame, f.Code}, Probe: probe}
			if probe.Coroutine {
				var fresh bool
				sf.Tracked, fresh = t.tracked(h.PID, l, f.Code, h.Mono)
				if fresh {
					st.fresh = append(st.fresh, sf.Key)
				}
			}
			st.funcs = append(st.funcs, sf)
		}
	}
	// funcs were collected innermost first.
	for i, j := 0, len(st.funcs)-1; i < j; i, j = i+1, j-1 {
		st.funcs[i], st.funcs[j] = st.funcs[j], st.funcs[i]
	}
	return st
}

// match returns the probe of the first pattern that matches the code object's function.
func (t *Tracer) match(target string, patterns []pyPattern, code *pyinfo.Code) *spans.Probe {
	module := code.Module()
	for i, pat := range patterns {
		if !globMatch(pat.qualname, code.Qualname) || !moduleMatch(pat.module, module, code.Filename) {
			continue
		}
		key := pyFuncKey{target: target, pattern: i, qualname: code.Qualname, file: code.Filename}
		if probe := t.funcs[key]; probe != nil {
			return probe
		}
		if len(t.funcs) >= maxPyFuncs {
			clear(t.funcs)
			t.unreadable(nil, "function", "probe_limit")
		}
		probe := &spans.Probe{
			Target: target, Symbol: module + ":" + code.Qualname, Role: spans.Role(pat.cfg.Role),
			ToolName: pat.cfg.ToolName, Model: pat.cfg.Model, File: code.Filename, Line: code.FirstLine,
			Coroutine: code.Coroutine(),
		}
		if probe.Coroutine && t.coroutines != nil {
			t.coroutines.Add(context.Background(), 1)
		}
		if probe.Role == "" {
			probe.Role = spans.RoleFunction
		}
		if probe.Role == spans.RoleTool && probe.ToolName == "" {
			probe.ToolName = tracer.ShortName(code.Qualname)
		}
		t.funcs[key] = probe
		return probe
	}
	return nil
}

func globMatch(pattern, s string) bool {
	ok, _ := path.Match(pattern, s)
	return ok
}

// moduleMatch: the pattern names the module (customer_agent) or a dotted path to it
// (agents.bank.customer_agent), matched against the file's path.
func moduleMatch(pattern, module, filename string) bool {
	if pattern == "*" || globMatch(pattern, module) {
		return true
	}
	if !strings.Contains(pattern, ".") {
		return false
	}
	file := strings.TrimSuffix(strings.TrimSuffix(filename, ".py"), "/__init__")
	return strings.HasSuffix(file, "/"+strings.ReplaceAll(pattern, ".", "/"))
}

// auditEnabled reports whether an audit event becomes a span event.
func (t *Tracer) auditEnabled(name string) bool {
	for _, g := range t.cfg.AuditEvents {
		if globMatch(g, name) {
			return true
		}
	}
	return false
}

// pyVal is a decoded audit argument.
type pyVal struct {
	v        *probes.PyValue
	children []*pyVal
}

// decodeAudit renders an audit record's arguments (redacted) and the attributes they imply.
func (t *Tracer) decodeAudit(e *probes.PythonAuditEvent, nvalues int) (name string, args []any, attrs func(pcommon.Map)) {
	name = auditName(e)
	var top []*pyVal
	nodes := make([]*pyVal, nvalues)
	for i := 0; i < nvalues; i++ {
		nodes[i] = &pyVal{v: &e.Values[i]}
		par := e.Values[i].Parent
		switch {
		case par == probes.PyTopLevel:
			top = append(top, nodes[i])
		case int(par) < i:
			nodes[par].children = append(nodes[par].children, nodes[i])
		default:
			// The kernel only makes values of containers decoded before them.
			t.unreadable(nil, "audit_value", "bad_parent")
		}
	}
	for _, n := range top {
		args = append(args, t.render(n))
	}
	if e.Nargs > uint32(len(top)) {
		args = append(args, fmt.Sprintf("... %d more", int(e.Nargs)-len(top)))
	}
	return name, args, func(m pcommon.Map) { auditAttributes(m, name, args) }
}

// render turns a value into JSON-ready Go values; strings are redacted.
func (t *Tracer) render(n *pyVal) any {
	v := n.v
	if v.Flags&probes.PyValueReadFailed != 0 {
		t.unreadable(nil, "audit_value", pyinfo.ReasonUnreadable)
		return "<unreadable>"
	}
	data := v.Data[:min(int(v.Captured), len(v.Data))]
	trunc := v.Flags&probes.PyValueTruncated != 0
	switch v.Type {
	case probes.PyNone:
		return nil
	case probes.PyBool:
		return v.Num != 0
	case probes.PyInt:
		if v.Flags&probes.PyValueUnsupported != 0 {
			return "<int too large>"
		}
		return v.Num
	case probes.PyStr:
		if v.Flags&probes.PyValueUnsupported != 0 {
			t.unreadable(nil, "audit_value", pyinfo.ReasonRepresentation)
			return "<str>"
		}
		if v.Kind != 1 && v.Kind != 2 && v.Kind != 4 {
			t.unreadable(nil, "audit_value", pyinfo.ReasonRepresentation)
			return "<str>"
		}
		s := pyinfo.DecodeUnicode(data, int(v.Kind), v.Ascii != 0)
		out, _, _ := t.env.Redactor.Value(redact.PolicyRedacted, []byte(s), trunc)
		return out
	case probes.PyBytes:
		// Bytes are payloads (request bodies, socket data): only their size is exported.
		return fmt.Sprintf("<bytes: %d>", v.Len)
	case probes.PyTuple, probes.PyList:
		items := make([]any, 0, len(n.children))
		for _, c := range n.children {
			items = append(items, t.render(c))
		}
		if trunc || uint32(len(n.children)) < v.Len {
			items = append(items, fmt.Sprintf("... %d items", v.Len))
		}
		return items
	case probes.PyDict:
		obj := map[string]any{}
		for i := 0; i+1 < len(n.children); i += 2 {
			k := t.render(n.children[i])
			obj[fmt.Sprint(k)] = t.render(n.children[i+1])
		}
		if trunc {
			obj["..."] = fmt.Sprintf("%d items", v.Len)
		}
		return obj
	}
	// Another type: the kernel copied its type name, any bytes the process put there.
	return "<" + strings.ToValidUTF8(string(data), "\uFFFD") + ">"
}

// auditAttributes maps the arguments of the audit events that matter to semantic attributes.
func auditAttributes(m pcommon.Map, name string, args []any) {
	m.PutStr("agenttrail.python.audit.event", name)
	if b, err := json.Marshal(args); err == nil && len(args) > 0 {
		s := string(b)
		if len(s) > 4096 {
			s = strings.ToValidUTF8(s[:4096], "") + "…" // not in the middle of a character
		}
		m.PutStr("agenttrail.python.audit.args", s)
	}
	arg := func(i int) any {
		if i < len(args) {
			return args[i]
		}
		return nil
	}
	str := func(v any) (string, bool) { s, ok := v.(string); return s, ok }
	switch name {
	case "socket.connect", "socket.bind", "socket.sendto":
		switch a := arg(1).(type) { // (socket, address)
		case []any:
			if host, ok := str(arg0(a)); ok {
				m.PutStr("network.peer.address", host)
			}
			if len(a) > 1 {
				if port, ok := a[1].(int64); ok {
					m.PutInt("network.peer.port", port)
				}
			}
		case string:
			m.PutStr("network.peer.address", a)
			m.PutStr("network.transport", "unix")
		}
	case "socket.getaddrinfo", "http.client.connect", "ftplib.connect", "smtplib.connect":
		i := 0
		if name != "socket.getaddrinfo" {
			i = 1 // (self, host, port)
		}
		if host, ok := str(arg(i)); ok {
			m.PutStr("server.address", host)
		}
		if port, ok := arg(i + 1).(int64); ok {
			m.PutInt("server.port", port)
		}
	case "urllib.Request":
		if u, ok := str(arg(0)); ok {
			m.PutStr("url.full", u)
		}
		if method, ok := str(arg(3)); ok {
			m.PutStr("http.request.method", method)
		} else if arg(1) != nil {
			m.PutStr("http.request.method", "POST")
		} else {
			m.PutStr("http.request.method", "GET")
		}
		if h, ok := arg(2).(map[string]any); ok {
			for k, v := range h {
				if s, ok := v.(string); ok && k != "..." {
					m.PutStr("http.request.header."+strings.ToLower(k), s)
				}
			}
		}
	case "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn":
		exe, argv := arg(0), arg(1)
		if name == "os.spawn" {
			exe, argv = arg(1), arg(2)
		}
		var parts []string
		switch a := argv.(type) {
		case []any:
			for _, x := range a {
				parts = append(parts, fmt.Sprint(x))
			}
		case string:
			parts = []string{a}
		}
		if s, ok := str(exe); ok {
			m.PutStr("process.executable.path", s)
		} else if len(parts) > 0 {
			m.PutStr("process.executable.path", parts[0])
		}
		if len(parts) > 0 {
			m.PutStr("process.command_line", strings.Join(parts, " "))
		}
	case "os.system":
		if s, ok := str(arg(0)); ok {
			m.PutStr("process.command_line", s)
		}
	case "open", "os.remove", "os.rename", "os.rmdir", "os.chmod", "os.chown", "os.truncate",
		"shutil.rmtree", "shutil.copyfile", "shutil.move", "ctypes.dlopen":
		if s, ok := str(arg(0)); ok {
			m.PutStr("file.path", s)
		}
		if name == "open" {
			if mode, ok := str(arg(1)); ok {
				m.PutStr("agenttrail.open.mode", mode)
			}
		}
	case "webbrowser.open":
		if s, ok := str(arg(0)); ok {
			m.PutStr("url.full", s)
		}
	}
}

// auditName is the event name of an audit record: the interpreter's C string (any bytes a
// program passes to sys.audit), as valid UTF-8.
func auditName(e *probes.PythonAuditEvent) string {
	return strings.ToValidUTF8(string(e.Name[:min(int(e.NameLen), len(e.Name))]), "\uFFFD")
}

func arg0(a []any) any {
	if len(a) > 0 {
		return a[0]
	}
	return nil
}

// onAudit turns an audit record into an observation of the Python stack and, for the events
// configured, an event of the innermost open span with its arguments and stack.
func (t *Tracer) onAudit(h spans.Header, rec []byte) string {
	e := tracer.As[probes.PythonAuditEvent](rec)
	nvalues := min(int(e.Nvalues), (len(rec)-headPyAudit)/tracer.SizeOf[probes.PyValue](), probes.PyValues)
	stack := t.take(h, tracer.TargetName(t.env.Processes, h.PID))
	if stack != nil {
		t.env.Builder.ObserveStack(h, stack.funcs, stack.truncated)
		t.checkFresh(h, stack.fresh)
	}
	name := auditName(e)
	if !t.auditEnabled(name) {
		return ""
	}
	_, _, attrs := t.decodeAudit(e, nvalues)
	t.env.Builder.Event(h, name, ptrace.SpanKindInternal, func(m pcommon.Map) {
		attrs(m)
		m.PutInt("thread.id", int64(h.TID))
		if stack != nil && len(stack.frames) > 0 {
			m.PutStr("code.stacktrace", spans.FormatStack(stack.frames))
			stack.putUnreadable(m)
		}
	})
	return ""
}
