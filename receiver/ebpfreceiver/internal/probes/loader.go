package probes

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// specs are the parsed program families Load loads: syscalls and function probes always,
// Python and TLS when the options ask for them (nil otherwise).
type specs struct {
	sys, up, py, tls *ebpf.CollectionSpec
}

// all lists the families present, syscalls first.
func (sp *specs) all() []*ebpf.CollectionSpec {
	out := []*ebpf.CollectionSpec{sp.sys, sp.up}
	for _, s := range []*ebpf.CollectionSpec{sp.py, sp.tls} {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// Load loads both probe families into the kernel, sharing one set of maps, and attaches the
// process-lifecycle raw tracepoints and the syscall programs (per-syscall tracepoints or the
// raw ones, as opts.SyscallAttach says: attach.go). Function probes are attached later, per target.
func Load(opts Options) (*Set, error) {
	// Kernels since 5.11 account BPF memory to the cgroup; older ones need the rlimit raised.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise memlock rlimit: %w", err)
	}
	if opts.TLSCaptureBytes > TLSMaxCaptureBytes {
		return nil, fmt.Errorf("TLS capture of %d bytes per call is over the limit of %d", opts.TLSCaptureBytes, TLSMaxCaptureBytes)
	}
	mode := opts.SyscallAttach
	if mode == "" {
		mode = AttachAuto
	}
	if !validMode(mode) {
		return nil, fmt.Errorf("syscall attach mode %q is not one of %s", mode, strings.Join(AttachModes, ", "))
	}
	sp, err := parseSpecs(opts)
	if err != nil {
		return nil, err
	}
	if err := sp.setConstants(opts); err != nil {
		return nil, err
	}
	// tracefs first: the tracepoint attach looks for it once per process.
	var hooks SyscallHooks
	raw := mode == AttachRaw
	if !raw {
		mounted, err := ensureTracefs()
		switch {
		case err != nil && mode == AttachTracepoint:
			return nil, err
		case err != nil:
			raw = true
			hooks.Fallback, hooks.Detail = FallbackNoTracefs, err.Error()
		}
		hooks.MountedTracefs = mounted
	}
	s, tpErr, err := sp.load(raw, mode == AttachAuto)
	if err != nil {
		return nil, err
	}
	s.hooks = hooks
	if tpErr != nil {
		s.hooks.Fallback, s.hooks.Detail = FallbackLoad, tpErr.Error()
	}
	enter, exit := syscallFilter(opts)
	if err := s.attachTracepoints(mode, enter, exit, !raw && tpErr == nil); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// parseSpecs parses the embedded objects of the families the options ask for and sizes the
// per-CPU maps and the socket settings.
func parseSpecs(opts Options) (*specs, error) {
	var sp specs
	var err error
	if sp.sys, err = loadSyscalls(); err != nil {
		return nil, fmt.Errorf("parse syscall programs: %w", err)
	}
	if sp.up, err = loadUprobe(); err != nil {
		return nil, fmt.Errorf("parse function programs: %w", err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count CPUs: %w", err)
	}
	if err := opts.Sockets.apply(sp.sys, cpus); err != nil {
		return nil, err
	}
	if opts.Python {
		if sp.py, err = loadPython(); err != nil {
			return nil, fmt.Errorf("parse Python programs: %w", err)
		}
	}
	if opts.TLS {
		if sp.tls, err = loadTls(); err != nil {
			return nil, fmt.Errorf("parse TLS programs: %w", err)
		}
		sp.tls.Maps["tls_scratch"].MaxEntries = uint32(cpus)
	}
	return &sp, nil
}

// setConstants sizes the ring buffer and sets the programs' read-only variables in every
// family that declares them (each family's object has its own copy).
func (sp *specs) setConstants(opts Options) error {
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
	enter, exit := syscallFilter(opts)
	for _, spec := range sp.all() {
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
			"enter_nrs": enter, "exit_nrs": exit,
		} {
			v, ok := spec.Variables[name]
			if !ok {
				continue
			}
			if err := v.Set(value); err != nil {
				return fmt.Errorf("set %s: %w", name, err)
			}
		}
	}
	return nil
}

// load loads the syscall family first, then the others with its maps in place of their own,
// so that every program shares one ring buffer and one set of traced processes. raw leaves the
// syscall family's tracepoint programs out; with fallback, they are left out when the kernel
// refuses them, and tpErr says why.
func (sp *specs) load(raw, fallback bool) (s *Set, tpErr error, err error) {
	s = &Set{}
	if tpErr, err = s.loadSyscallFamily(sp.sys, raw, fallback); err != nil {
		return nil, nil, fmt.Errorf("load syscall programs: %w", verifierDetail(err))
	}
	if err := s.mapTgids(); err != nil {
		s.sys.Close()
		return nil, nil, err
	}
	if err := sp.up.LoadAndAssign(&s.up, s.sharedWith(sp.up)); err != nil {
		_ = s.unmapTgids()
		s.sys.Close()
		return nil, nil, fmt.Errorf("load function programs: %w", verifierDetail(err))
	}
	if sp.py != nil {
		if err := sp.py.LoadAndAssign(&s.py, s.sharedWith(sp.py)); err != nil {
			s.Close()
			return nil, nil, fmt.Errorf("load Python programs: %w", verifierDetail(err))
		}
		s.hasPy = true
	}
	if sp.tls != nil {
		if err := sp.tls.LoadAndAssign(&s.tls, s.sharedWith(sp.tls)); err != nil {
			s.Close()
			return nil, nil, fmt.Errorf("load TLS programs: %w", verifierDetail(err))
		}
		s.hasTLS = true
	}
	return s, tpErr, nil
}

// sharedWith replaces the maps of spec that the syscall family owns with the loaded ones.
func (s *Set) sharedWith(spec *ebpf.CollectionSpec) *ebpf.CollectionOptions {
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
	m := map[string]*ebpf.Map{}
	for name, mp := range shared {
		if _, ok := spec.Maps[name]; ok {
			m[name] = mp
		}
	}
	return &ebpf.CollectionOptions{MapReplacements: m}
}

// attachTracepoints attaches the process-lifecycle raw tracepoints and the syscall programs
// (attach.go); on an error the links attached so far stay in s.links for Close.
func (s *Set) attachTracepoints(mode string, enter, exit nrSet, tpLoaded bool) error {
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sched_process_exec", s.sys.ProcessExec},
		{"sched_process_fork", s.sys.ProcessFork},
		{"sched_process_exit", s.sys.ProcessExit},
	} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: tp.prog})
		if err != nil {
			return fmt.Errorf("attach raw tracepoint %s: %w", tp.name, err)
		}
		s.links = append(s.links, l)
	}
	return s.attachSyscalls(mode, enter, exit, tpLoaded)
}

func verifierDetail(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%+v", ve)
	}
	return err
}
