package probes

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// How the syscall programs are attached (bpf/syscalls/syscalls.c has both forms of each).
//
// Per-syscall tracepoints (syscalls:sys_enter_openat, ...) cost a syscall no program needs
// nothing beyond the kernel's check of one bit per syscall number; the sys_enter and sys_exit
// raw tracepoints are run at every syscall of every process on the node (the node-wide tax,
// see the receiver README). The per-syscall ones need tracefs for their ids; the raw ones need
// nothing. The rule is all or nothing: either every needed syscall has its tracepoints, or
// the raw tracepoints carry them all. A mix would need the raw programs to know which numbers
// the others cover, for no gain on a kernel that has tracefs (where every syscall has its
// tracepoint, unless built without CONFIG_FTRACE_SYSCALLS, where none has).
const (
	// AttachAuto: the per-syscall tracepoints when tracefs is there (mounted here at
	// /sys/kernel/tracing when nothing is) and every one needed could be attached; the raw
	// tracepoints otherwise.
	AttachAuto = "auto"
	// AttachTracepoint: the per-syscall tracepoints, or Load fails.
	AttachTracepoint = "tracepoint"
	// AttachRaw: the sys_enter and sys_exit raw tracepoints.
	AttachRaw = "raw"
)

// Why AttachAuto fell back to the raw tracepoints.
const (
	FallbackNoTracefs = "no_tracefs" // none mounted, and mounting one failed
	FallbackLoad      = "load"       // the kernel refused the tracepoint programs
	FallbackAttach    = "attach"     // a needed tracepoint is missing or could not be attached
)

// AttachModes are the values of Options.SyscallAttach ("" is AttachAuto).
var AttachModes = []string{AttachAuto, AttachTracepoint, AttachRaw}

// SyscallHooks says how the syscall programs were attached.
type SyscallHooks struct {
	// Path is AttachTracepoint or AttachRaw.
	Path string
	// Hooks is the number of tracepoints the syscall programs are on (2 on the raw path).
	Hooks int
	// Fallback says why AttachAuto fell back to the raw tracepoints ("" when it did not):
	// FallbackNoTracefs, FallbackLoad or FallbackAttach; Detail is the error.
	Fallback, Detail string
	// MountedTracefs: tracefs was mounted at /sys/kernel/tracing by Load.
	MountedTracefs bool
}

// SyscallHooks says how the syscall programs were attached.
func (s *Set) SyscallHooks() SyscallHooks { return s.hooks }

// tracefsName is a syscall's name in tracefs (events/syscalls/sys_enter_<name>), for every
// number syscallFilter may ask for.
var tracefsName = map[syscallsSyscallNr]string{
	syscallsSyscallNrNR_OPEN_AT: "openat", syscallsSyscallNrNR_CONNECT: "connect", syscallsSyscallNrNR_ACCEPT: "accept",
	syscallsSyscallNrNR_ACCEPT4: "accept4", syscallsSyscallNrNR_SENDTO: "sendto", syscallsSyscallNrNR_EXECVE: "execve",
	syscallsSyscallNrNR_EXECVEAT: "execveat", syscallsSyscallNrNR_CLONE: "clone", syscallsSyscallNrNR_CLONE3: "clone3",
	syscallsSyscallNrNR_FORK: "fork", syscallsSyscallNrNR_VFORK: "vfork",
	syscallsSyscallNrNR_POLL: "poll", syscallsSyscallNrNR_SELECT: "select", syscallsSyscallNrNR_RECVFROM: "recvfrom",
	syscallsSyscallNrNR_RECVMSG: "recvmsg", syscallsSyscallNrNR_EPOLL_WAIT: "epoll_wait", syscallsSyscallNrNR_PSELECT6: "pselect6",
	syscallsSyscallNrNR_PPOLL: "ppoll", syscallsSyscallNrNR_EPOLL_PWAIT: "epoll_pwait", syscallsSyscallNrNR_EPOLL_PWAIT2: "epoll_pwait2",
	syscallsSyscallNrNR_FUTEX: "futex",
	syscallsSyscallNrNR_READ:  "read", syscallsSyscallNrNR_WRITE: "write", syscallsSyscallNrNR_READV: "readv",
	syscallsSyscallNrNR_WRITEV: "writev", syscallsSyscallNrNR_SENDFILE: "sendfile64", syscallsSyscallNrNR_SENDMSG: "sendmsg",
	syscallsSyscallNrNR_SPLICE: "splice", syscallsSyscallNrNR_RECVMMSG: "recvmmsg", syscallsSyscallNrNR_SENDMMSG: "sendmmsg",
}

// enterFamily is which sys_enter_* tracepoint program handles a syscall number's entry (the
// families of sys_enter in the C program): the waits of Python wait samples, clone and fork, or
// the traced syscalls.
type enterFamily int

const (
	enterRecord enterFamily = iota
	enterFork
	enterWait
)

func familyOf(nr syscallsSyscallNr) enterFamily {
	switch nr {
	case syscallsSyscallNrNR_CLONE, syscallsSyscallNrNR_CLONE3, syscallsSyscallNrNR_FORK, syscallsSyscallNrNR_VFORK:
		return enterFork
	case syscallsSyscallNrNR_POLL, syscallsSyscallNrNR_SELECT, syscallsSyscallNrNR_RECVFROM, syscallsSyscallNrNR_RECVMSG,
		syscallsSyscallNrNR_EPOLL_WAIT, syscallsSyscallNrNR_PSELECT6, syscallsSyscallNrNR_PPOLL, syscallsSyscallNrNR_EPOLL_PWAIT,
		syscallsSyscallNrNR_EPOLL_PWAIT2, syscallsSyscallNrNR_FUTEX:
		return enterWait
	}
	return enterRecord
}

// syscallTracepoint is one per-syscall tracepoint and the family of its program.
type syscallTracepoint struct {
	name   string // sys_enter_openat
	exit   bool
	family enterFamily
}

// syscallTracepoints are the per-syscall tracepoints of the numbers in enter and exit, in
// number order (enter before exit); an error names a number without a tracefs name (a change
// to syscallFilter without one here).
func syscallTracepoints(enter, exit nrSet) ([]syscallTracepoint, error) {
	var out []syscallTracepoint
	for _, set := range []struct {
		nrs  *nrSet
		exit bool
	}{{&enter, false}, {&exit, true}} {
		for nr := range len(set.nrs) * 64 {
			if set.nrs[nr/64]&(1<<(nr%64)) == 0 {
				continue
			}
			name, ok := tracefsName[syscallsSyscallNr(nr)]
			if !ok {
				return nil, fmt.Errorf("syscall %d has no tracepoint name", nr)
			}
			tp := syscallTracepoint{name: "sys_enter_" + name, exit: set.exit, family: familyOf(syscallsSyscallNr(nr))}
			if set.exit {
				tp.name = "sys_exit_" + name
			}
			out = append(out, tp)
		}
	}
	return out, nil
}

// tracefsRoot is where tracefs is mounted when nothing is (the DaemonSet mounts the host's).
const tracefsRoot = "/sys/kernel/tracing"

// tracefsMounted reports whether tracefs (or debugfs with tracing in it) is where the attach
// looks for tracepoint ids.
func tracefsMounted() bool {
	for _, p := range []struct {
		path  string
		magic int64
	}{{tracefsRoot, unix.TRACEFS_MAGIC}, {"/sys/kernel/debug/tracing", unix.TRACEFS_MAGIC}, {"/sys/kernel/debug/tracing", unix.DEBUGFS_MAGIC}} {
		var st unix.Statfs_t
		if unix.Statfs(p.path, &st) == nil && st.Type == p.magic {
			return true
		}
	}
	// Mounted elsewhere (a container's bind mount at another path): the attach finds it in
	// /proc/self/mountinfo too.
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(info), "\n") {
		if _, after, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(after, "tracefs ") {
			return true
		}
	}
	return false
}

// ensureTracefs mounts tracefs at /sys/kernel/tracing when none is mounted (as systemd does on
// a first access there); mounted says whether it did. It must run before the first tracepoint
// attach of the process: cilium/ebpf looks for tracefs once and keeps the answer.
func ensureTracefs() (mounted bool, err error) {
	if tracefsMounted() {
		return false, nil
	}
	if err := unix.Mount("tracefs", tracefsRoot, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return false, fmt.Errorf("mount tracefs at %s: %w", tracefsRoot, err)
	}
	return true, nil
}

// attachSyscalls attaches the syscall programs as mode says (enter and exit are the numbers
// the configuration needs, from syscallFilter); links go to s.links, the outcome to s.hooks.
// Without tpLoaded (raw mode, or AttachAuto after tracefs or the tracepoint programs failed:
// s.hooks.Fallback says which) the raw tracepoints carry them.
func (s *Set) attachSyscalls(mode string, enter, exit nrSet, tpLoaded bool) error {
	if !tpLoaded {
		return s.attachRawSyscalls()
	}
	err := s.attachSyscallTracepoints(enter, exit)
	if err == nil || mode == AttachTracepoint {
		return err
	}
	s.hooks.Fallback, s.hooks.Detail = FallbackAttach, err.Error()
	return s.attachRawSyscalls()
}

// attachSyscallTracepoints attaches a program to every needed per-syscall tracepoint; on an
// error it detaches those it attached.
func (s *Set) attachSyscallTracepoints(enter, exit nrSet) error {
	tps, err := syscallTracepoints(enter, exit)
	if err != nil {
		return err
	}
	progs := map[enterFamily]*ebpf.Program{enterRecord: s.sys.SysEnterRec, enterFork: s.sys.SysEnterFork, enterWait: s.sys.SysEnterWait}
	var links []link.Link
	for _, tp := range tps {
		prog := progs[tp.family]
		if tp.exit {
			prog = s.sys.SysExitTp
		}
		l, err := link.Tracepoint("syscalls", tp.name, prog, nil)
		if err != nil {
			for _, l := range links {
				_ = l.Close()
			}
			return fmt.Errorf("attach tracepoint syscalls:%s: %w", tp.name, err)
		}
		links = append(links, l)
	}
	s.links = append(s.links, links...)
	s.hooks.Path, s.hooks.Hooks = AttachTracepoint, len(links)
	return nil
}

func (s *Set) attachRawSyscalls() error {
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{{"sys_enter", s.sys.SysEnter}, {"sys_exit", s.sys.SysExit}} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: tp.prog})
		if err != nil {
			return fmt.Errorf("attach raw tracepoint %s: %w", tp.name, err)
		}
		s.links = append(s.links, l)
	}
	s.hooks.Path, s.hooks.Hooks = AttachRaw, 2
	return nil
}

// rawOnlyObjects is what the raw path loads of the syscall family: the tracepoint programs
// are left out (the verifier never sees them).
type rawOnlyObjects struct {
	syscallsMaps
	ProcessExec *ebpf.Program `ebpf:"process_exec"`
	ProcessExit *ebpf.Program `ebpf:"process_exit"`
	ProcessFork *ebpf.Program `ebpf:"process_fork"`
	SysEnter    *ebpf.Program `ebpf:"sys_enter"`
	SysExit     *ebpf.Program `ebpf:"sys_exit"`
}

// loadSyscallFamily loads the syscall family into s.sys: every program unless raw (then the
// tracepoint programs are left out). With fallback (AttachAuto), a load that fails with the
// tracepoint programs is retried without them, and tpErr says why.
func (s *Set) loadSyscallFamily(spec *ebpf.CollectionSpec, raw, fallback bool) (tpErr error, err error) {
	if !raw {
		err := spec.LoadAndAssign(&s.sys, nil)
		if err == nil {
			return nil, nil
		}
		if !fallback {
			return nil, err
		}
		tpErr = fmt.Errorf("load tracepoint programs: %w", firstLine(err))
	}
	var o rawOnlyObjects
	if err := spec.LoadAndAssign(&o, nil); err != nil {
		return tpErr, err
	}
	s.sys.syscallsMaps = o.syscallsMaps
	s.sys.ProcessExec, s.sys.ProcessExit, s.sys.ProcessFork = o.ProcessExec, o.ProcessExit, o.ProcessFork
	s.sys.SysEnter, s.sys.SysExit = o.SysEnter, o.SysExit
	return tpErr, nil
}

// firstLine keeps an error's first line (a verifier error's log is long; the fallback's reason
// is a log field and a metric attribute).
func firstLine(err error) error {
	msg, _, cut := strings.Cut(err.Error(), "\n")
	if !cut {
		return err
	}
	return errors.New(msg)
}

// validMode reports whether mode is one of AttachModes or "".
func validMode(mode string) bool { return mode == "" || slices.Contains(AttachModes, mode) }
