package probes

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// Record types shared with the kernel programs (generated from bpf/common/events.h).
type (
	EventHeader      = uprobeEventHeader
	FuncEvent        = uprobeFuncEvent
	FuncArgsEvent    = uprobeFuncArgsEvent
	FuncArg          = uprobeFuncArg
	GoroutineEvent   = uprobeGoroutineEvent
	SyscallEvent     = syscallsSyscallEvent
	SyscallExitEvent = syscallsSyscallExitEvent
	ProcessEvent     = syscallsProcessEvent
	ProbeSpec        = uprobeProbeSpec
	ArgSpec          = uprobeArgSpec
	TracedProcess    = uprobeTracedProcess
	InodeKey         = syscallsInodeKey
	PythonStackEvent = pythonPythonStackEvent
	PyFrame          = pythonPyFrame
	PythonAuditEvent = pythonPythonAuditEvent
	PyValue          = pythonPyValue
	PythonLayout     = pythonPythonLayout
	PythonBinary     = pythonPythonBinary
	UsdtArg          = pythonUsdtArg
	PythonProc       = pythonPythonProc
	TLSEvent         = tlsTlsEvent
)

// Event kinds (enum event_kind).
const (
	KindFuncEntry       = 1
	KindFuncReturn      = 2
	KindGoroutineCreate = 3
	KindSyscallEnter    = 4
	KindSyscallExit     = 5
	KindProcessExec     = 6
	KindProcessExit     = 7
	KindProcessFork     = 8
	KindPythonStack     = 9
	KindPythonAudit     = 10
	KindTLSData         = 11
	KindThreadExit      = 12
)

// Python stack status (enum py_stack_status).
const (
	PyStackOK         = 0
	PyStackTruncated  = 1
	PyStackNoThread   = 2
	PyStackReadFailed = 3
)

// Python value types (enum py_type) and flags (enum py_value_flags).
const (
	PyOther     = 0
	PyNone      = 1
	PyBool      = 2
	PyInt       = 3
	PyStr       = 4
	PyBytes     = 5
	PyTuple     = 6
	PyList      = 7
	PyDict      = 8
	PyByteArray = 9

	PyValueTruncated   = 1
	PyValueReadFailed  = 2
	PyValueUnsupported = 4
	PyTopLevel         = 0xff
)

// USDT argument kinds (enum usdt_arg_kind).
const (
	USDTArgConst = 1
	USDTArgReg   = 2
	USDTArgMem   = 3
)

// TLS record fields (enum tls_direction, tls_source, tls_flags) and the OpenSSL attach cookies.
const (
	TLSWrite = 1
	TLSRead  = 2
	TLSClose = 3 // no data: the connection object was freed (SSL_free) or closed (Go)

	TLSOpenSSL = 1
	TLSGo      = 2

	// Python stack records' probe id: PythonSampleForNext belongs to the record after it on the
	// thread, PythonSampleWait stands alone (taken where the thread starts to wait).
	PythonSampleForNext = 0
	PythonSampleWait    = 1

	TLSTruncated  = 1
	TLSReadFailed = 2
	TLSUnseen     = 4

	SSLCookieRead = 1
	SSLCookieEx   = 2
)

// PyNoneOffset marks a PythonLayout field that the version does not have.
const PyNoneOffset = 0xffffffff

// Argument kinds (enum arg_kind) and flags.
const (
	ArgInt     = 1
	ArgUint    = 2
	ArgBool    = 3
	ArgString  = 4
	ArgBytes   = 5
	ArgCString = 6

	ArgFlagTruncated  = 1
	ArgFlagReadFailed = 2
)

// Bounds compiled into the kernel programs.
const (
	MaxArgs         = 4
	ArgCaptureBytes = 256
	MaxProbes       = 4096
	StackDepth      = 48
	PyStackDepth    = 96
	PyValues        = 20
	PyValueBytes    = 128
	// TLSMaxCaptureBytes bounds Options.TLSCaptureBytes (TLS_MAX_CAPTURE).
	TLSMaxCaptureBytes = 65536
	MaxPythonLayouts   = 16
	MaxPythonBinaries  = 256
)

// Syscalls the programs can trace (enum traced_syscall), by the names used in the config.
var SyscallBits = map[string]uint32{
	"connect": 1 << 0,
	"accept":  1 << 1,
	"sendto":  1 << 2,
	"execve":  1 << 3,
	"openat":  1 << 4,
}

// Drop reasons (enum drop_reason), by the names used in metrics.
var DropReasons = []string{"ring_buffer_full", "stack_unavailable", "goroutine_create_unpaired", "python_stack_unavailable"}

// Options set before the programs are loaded.
type Options struct {
	RingBufferBytes uint32 // power of two, multiple of the page size
	SyscallMask     uint32 // OR of SyscallBits
	CaptureStacks   bool
	// WakeupBytes: the reader is woken once this much data waits (default: a 32nd of the ring
	// buffer); below that it reads at its own polling interval.
	WakeupBytes uint64
	// Python loads the audit USDT program; PythonStacks walks Python stacks (audit events,
	// syscalls and TLS calls of Python processes).
	Python       bool
	PythonStacks bool
	// PythonWaitSamples also walks a traced Python thread's stack where it starts to wait for
	// input (recvfrom, recvmsg, poll, select, epoll), as a sample of its own
	// (PythonSampleWait): configured Python functions need it to see a thread between two
	// requests it serves.
	PythonWaitSamples bool
	// TLS loads the TLS plaintext programs; TLSCaptureBytes bounds the bytes sent per call.
	TLS             bool
	TLSCaptureBytes uint32
}

// Set is the loaded kernel side: the programs, their shared maps and the links attached so far.
type Set struct {
	sys    syscallsObjects
	up     uprobeObjects
	py     pythonObjects
	tls    tlsObjects
	hasPy  bool
	hasTLS bool
	links  []link.Link
	closed bool
}

// Load loads both probe families into the kernel, sharing one set of maps, and attaches the
// syscall and process-lifecycle raw tracepoints. Function probes are attached later, per target.
func Load(opts Options) (*Set, error) {
	// Kernels since 5.11 account BPF memory to the cgroup; older ones need the rlimit raised.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise memlock rlimit: %w", err)
	}
	if opts.TLSCaptureBytes > TLSMaxCaptureBytes {
		return nil, fmt.Errorf("TLS capture of %d bytes per call is over the limit of %d", opts.TLSCaptureBytes, TLSMaxCaptureBytes)
	}
	sysSpec, err := loadSyscalls()
	if err != nil {
		return nil, fmt.Errorf("parse syscall programs: %w", err)
	}
	upSpec, err := loadUprobe()
	if err != nil {
		return nil, fmt.Errorf("parse function programs: %w", err)
	}
	specs := []*ebpf.CollectionSpec{sysSpec, upSpec}
	var pySpec, tlsSpec *ebpf.CollectionSpec
	if opts.Python {
		if pySpec, err = loadPython(); err != nil {
			return nil, fmt.Errorf("parse Python programs: %w", err)
		}
		specs = append(specs, pySpec)
	}
	if opts.TLS {
		if tlsSpec, err = loadTls(); err != nil {
			return nil, fmt.Errorf("parse TLS programs: %w", err)
		}
		cpus, err := ebpf.PossibleCPU()
		if err != nil {
			return nil, fmt.Errorf("count CPUs: %w", err)
		}
		tlsSpec.Maps["tls_scratch"].MaxEntries = uint32(cpus)
		specs = append(specs, tlsSpec)
	}
	stacks := uint8(0)
	if opts.CaptureStacks {
		stacks = 1
	}
	pyStacks, pyWait := uint8(0), uint8(0)
	if opts.PythonStacks {
		pyStacks = 1
	}
	if opts.PythonStacks && opts.PythonWaitSamples {
		pyWait = 1
	}
	for _, spec := range specs {
		if opts.RingBufferBytes != 0 {
			spec.Maps["events"].MaxEntries = opts.RingBufferBytes
		}
		wakeup := opts.WakeupBytes
		if wakeup == 0 {
			wakeup = uint64(spec.Maps["events"].MaxEntries) / 32
		}
		for name, value := range map[string]any{
			"syscall_mask": opts.SyscallMask, "capture_stacks": stacks, "wakeup_bytes": wakeup,
			"python_stacks": pyStacks, "python_wait_samples": pyWait, "tls_capture_bytes": opts.TLSCaptureBytes,
		} {
			v, ok := spec.Variables[name]
			if !ok {
				continue
			}
			if err := v.Set(value); err != nil {
				return nil, fmt.Errorf("set %s: %w", name, err)
			}
		}
	}

	s := &Set{}
	if err := sysSpec.LoadAndAssign(&s.sys, nil); err != nil {
		return nil, fmt.Errorf("load syscall programs: %w", verifierDetail(err))
	}
	shared := map[string]*ebpf.Map{
		"events":             s.sys.Events,
		"traced_processes":   s.sys.TracedProcesses,
		"traced_executables": s.sys.TracedExecutables,
		"probe_specs":        s.sys.ProbeSpecs,
		"drops":              s.sys.Drops,
		"reader_idle":        s.sys.ReaderIdle,
		"python_layouts":     s.sys.PythonLayouts,
		"python_binaries":    s.sys.PythonBinaries,
		"python_procs":       s.sys.PythonProcs,
		"python_threads":     s.sys.PythonThreads,
	}
	sharedWith := func(spec *ebpf.CollectionSpec) *ebpf.CollectionOptions {
		m := map[string]*ebpf.Map{}
		for name, mp := range shared {
			if _, ok := spec.Maps[name]; ok {
				m[name] = mp
			}
		}
		return &ebpf.CollectionOptions{MapReplacements: m}
	}
	if err := upSpec.LoadAndAssign(&s.up, sharedWith(upSpec)); err != nil {
		s.sys.Close()
		return nil, fmt.Errorf("load function programs: %w", verifierDetail(err))
	}
	if pySpec != nil {
		if err := pySpec.LoadAndAssign(&s.py, sharedWith(pySpec)); err != nil {
			s.Close()
			return nil, fmt.Errorf("load Python programs: %w", verifierDetail(err))
		}
		s.hasPy = true
	}
	if tlsSpec != nil {
		if err := tlsSpec.LoadAndAssign(&s.tls, sharedWith(tlsSpec)); err != nil {
			s.Close()
			return nil, fmt.Errorf("load TLS programs: %w", verifierDetail(err))
		}
		s.hasTLS = true
	}

	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sys_enter", s.sys.SysEnter},
		{"sys_exit", s.sys.SysExit},
		{"sched_process_exec", s.sys.ProcessExec},
		{"sched_process_fork", s.sys.ProcessFork},
		{"sched_process_exit", s.sys.ProcessExit},
	} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: tp.prog})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("attach raw tracepoint %s: %w", tp.name, err)
		}
		s.links = append(s.links, l)
	}
	return s, nil
}

func verifierDetail(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%+v", ve)
	}
	return err
}

// Events is the ring buffer every record arrives through.
func (s *Set) Events() *ebpf.Map { return s.sys.Events }

// Function probe programs, for attaching uprobes.
func (s *Set) FuncEntry() *ebpf.Program        { return s.up.FuncEntry }
func (s *Set) FuncReturn() *ebpf.Program       { return s.up.FuncReturn }
func (s *Set) GoNewproc1() *ebpf.Program       { return s.up.GoNewproc1 }
func (s *Set) GoNewproc1Return() *ebpf.Program { return s.up.GoNewproc1Return }

// PythonAudit is the audit USDT program (nil unless Options.Python).
func (s *Set) PythonAudit() *ebpf.Program { return s.py.PythonAudit }

// TLS programs (nil unless Options.TLS).
func (s *Set) SSLEntry() *ebpf.Program     { return s.tls.SslEntry }
func (s *Set) SSLReturn() *ebpf.Program    { return s.tls.SslReturn }
func (s *Set) GoTLSWrite() *ebpf.Program   { return s.tls.GoTlsWrite }
func (s *Set) GoTLSRead() *ebpf.Program    { return s.tls.GoTlsRead }
func (s *Set) GoTLSReadRet() *ebpf.Program { return s.tls.GoTlsReadRet }
func (s *Set) SSLFree() *ebpf.Program      { return s.tls.SslFree }
func (s *Set) GoTLSClose() *ebpf.Program   { return s.tls.GoTlsClose }

// SetPythonLayout stores one interpreter version's structure offsets under id (1-based).
func (s *Set) SetPythonLayout(id uint32, l PythonLayout) error {
	if id == 0 || id >= MaxPythonLayouts {
		return fmt.Errorf("Python layout id %d out of range", id)
	}
	return s.sys.PythonLayouts.Put(id, l)
}

// SetPythonBinary describes an interpreter binary; idx is its audit probe's attach cookie.
func (s *Set) SetPythonBinary(idx uint32, b PythonBinary) error {
	if idx >= MaxPythonBinaries {
		return fmt.Errorf("Python binary %d over the limit of %d interpreters", idx, MaxPythonBinaries)
	}
	return s.sys.PythonBinaries.Put(idx, b)
}

// SetPythonProcess tells the kernel that a traced process runs a known CPython.
func (s *Set) SetPythonProcess(tgid uint32, p PythonProc) error {
	return s.sys.PythonProcs.Put(tgid, p)
}

// SetProbe stores what a function probe captures; its id is the attach cookie.
func (s *Set) SetProbe(id uint32, spec ProbeSpec) error {
	if id >= MaxProbes {
		return fmt.Errorf("probe id %d over the limit of %d probes", id, MaxProbes)
	}
	return s.sys.ProbeSpecs.Put(id, spec)
}

// TraceProcess marks a process as traced.
func (s *Set) TraceProcess(tgid uint32, p TracedProcess) error {
	return s.sys.TracedProcesses.Put(tgid, p)
}

// UntraceProcess stops tracing a process; a process that is not traced is not an error.
func (s *Set) UntraceProcess(tgid uint32) error {
	err := s.sys.TracedProcesses.Delete(tgid)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// IsTraced reports whether the kernel already traces the process.
func (s *Set) IsTraced(tgid uint32) bool {
	var p TracedProcess
	return s.sys.TracedProcesses.Lookup(tgid, &p) == nil
}

// TraceExecutable makes every later exec of the file (device, inode) traced from its start.
// dev is the kernel's encoding (major<<20 | minor).
func (s *Set) TraceExecutable(key InodeKey, p TracedProcess) error {
	return s.sys.TracedExecutables.Put(key, p)
}

// Drops sums the per-CPU drop counters, by reason.
// SetReaderIdle tells the programs that the reader waits with nothing to do: the next record
// wakes it (and clears the flag).
func (s *Set) SetReaderIdle(idle bool) error {
	v := uint32(0)
	if idle {
		v = 1
	}
	return s.sys.ReaderIdle.Update(uint32(0), v, ebpf.UpdateAny)
}

func (s *Set) Drops() (map[string]uint64, error) {
	out := make(map[string]uint64, len(DropReasons))
	for i, reason := range DropReasons {
		var perCPU []uint64
		if err := s.sys.Drops.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read drop counter %s: %w", reason, err)
		}
		var sum uint64
		for _, n := range perCPU {
			sum += n
		}
		out[reason] = sum
	}
	return out, nil
}

// AddLink keeps a link so Close detaches it.
func (s *Set) AddLink(l link.Link) { s.links = append(s.links, l) }

// Close detaches every program and frees the maps. Safe to call twice.
func (s *Set) Close() error {
	if s == nil || s.closed {
		return nil
	}
	s.closed = true
	errs := closeLinks(s.links)
	s.links = nil
	if s.hasTLS {
		errs = append(errs, s.tls.Close())
	}
	if s.hasPy {
		errs = append(errs, s.py.Close())
	}
	errs = append(errs, s.up.Close(), s.sys.Close())
	return errors.Join(errs...)
}

// closeLinks detaches links concurrently. Removing a uprobe waits for an RCU grace period in the
// kernel; one after the other, a few dozen of them took over ten seconds of collector shutdown.
func closeLinks(links []link.Link) []error {
	errs := make([]error, len(links))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, l := range links {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = l.Close()
		}()
	}
	wg.Wait()
	return errs
}
