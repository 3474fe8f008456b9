package probes

import (
	"errors"
	"fmt"

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
)

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
var DropReasons = []string{"ring_buffer_full", "stack_unavailable", "goroutine_create_unpaired"}

// Options set before the programs are loaded.
type Options struct {
	RingBufferBytes uint32 // power of two, multiple of the page size
	SyscallMask     uint32 // OR of SyscallBits
	CaptureStacks   bool
	// WakeupBytes: the reader is woken once this much data waits (default: a 32nd of the ring
	// buffer); below that it reads at its own polling interval.
	WakeupBytes uint64
}

// Set is the loaded kernel side: the programs, their shared maps and the links attached so far.
type Set struct {
	sys    syscallsObjects
	up     uprobeObjects
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
	sysSpec, err := loadSyscalls()
	if err != nil {
		return nil, fmt.Errorf("parse syscall programs: %w", err)
	}
	upSpec, err := loadUprobe()
	if err != nil {
		return nil, fmt.Errorf("parse function programs: %w", err)
	}
	for _, spec := range []*ebpf.CollectionSpec{sysSpec, upSpec} {
		if opts.RingBufferBytes != 0 {
			spec.Maps["events"].MaxEntries = opts.RingBufferBytes
		}
		if err := spec.Variables["syscall_mask"].Set(opts.SyscallMask); err != nil {
			return nil, fmt.Errorf("set syscall mask: %w", err)
		}
		stacks := uint8(0)
		if opts.CaptureStacks {
			stacks = 1
		}
		if err := spec.Variables["capture_stacks"].Set(stacks); err != nil {
			return nil, fmt.Errorf("set capture_stacks: %w", err)
		}
		wakeup := opts.WakeupBytes
		if wakeup == 0 {
			wakeup = uint64(spec.Maps["events"].MaxEntries) / 32
		}
		if err := spec.Variables["wakeup_bytes"].Set(wakeup); err != nil {
			return nil, fmt.Errorf("set wakeup_bytes: %w", err)
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
	}
	if err := upSpec.LoadAndAssign(&s.up, &ebpf.CollectionOptions{MapReplacements: shared}); err != nil {
		s.sys.Close()
		return nil, fmt.Errorf("load function programs: %w", verifierDetail(err))
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
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	s.links = nil
	errs = append(errs, s.up.Close(), s.sys.Close())
	return errors.Join(errs...)
}
