package probes

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// TestSyscallTracepoints: the per-syscall tracepoints follow the configuration (sockets off:
// no send or receive call; the waits only with Python wait samples), each with the program of
// its family, and every number syscallFilter can ask for has a tracefs name.
func TestSyscallTracepoints(t *testing.T) {
	mask := SyscallBits["connect"] | SyscallBits["accept"] | SyscallBits["execve"] | SyscallBits["openat"]
	names := func(opts Options) map[string]enterFamily {
		enter, exit := syscallFilter(opts)
		tps, err := syscallTracepoints(enter, exit)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]enterFamily{}
		for _, tp := range tps {
			if _, dup := out[tp.name]; dup {
				t.Errorf("%s twice", tp.name)
			}
			if tp.exit != (tp.name[:8] == "sys_exit") {
				t.Errorf("%s: exit %v", tp.name, tp.exit)
			}
			out[tp.name] = tp.family
		}
		return out
	}
	defaults := names(Options{SyscallMask: mask, PythonStacks: true, Sockets: SocketOptions{Enabled: true, Inbound: true}})
	for name, family := range map[string]enterFamily{
		"sys_enter_openat": enterRecord, "sys_exit_openat": 0, "sys_enter_accept4": enterRecord, "sys_enter_clone3": enterFork,
		"sys_enter_vfork": enterFork, "sys_exit_write": 0, "sys_exit_read": 0, "sys_exit_sendfile64": 0, "sys_exit_sendto": 0,
	} {
		got, ok := defaults[name]
		if !ok || got != family {
			t.Errorf("defaults: %s missing or in family %d, want %d", name, got, family)
		}
	}
	for _, name := range []string{"sys_enter_sendto", "sys_enter_write", "sys_exit_clone3", "sys_enter_futex", "sys_enter_getppid", "sys_exit_getppid"} {
		if _, ok := defaults[name]; ok {
			t.Errorf("defaults: %s attached, no program needs it", name)
		}
	}
	// 6 traced numbers (connect, accept, accept4, execve, execveat, openat) both ways, 4 forks'
	// entries, 7 sends' and 5 receives' exits.
	if len(defaults) != 12+4+7+5 {
		t.Errorf("defaults: %d tracepoints, want 28: %v", len(defaults), defaults)
	}
	noSockets := names(Options{SyscallMask: mask, PythonStacks: true})
	for name := range noSockets {
		if slices.Contains([]string{"sys_exit_write", "sys_exit_read", "sys_exit_sendto", "sys_exit_sendmsg", "sys_exit_recvfrom"}, name) {
			t.Errorf("sockets off: %s attached", name)
		}
	}
	if len(noSockets) != 6+6+4 { // openat, connect, accept, accept4, execve, execveat both ways; 4 forks
		t.Errorf("sockets off: %d tracepoints, want 16: %v", len(noSockets), noSockets)
	}
	wait := names(Options{PythonStacks: true, PythonWaitSamples: true})
	if wait["sys_enter_futex"] != enterWait || wait["sys_enter_epoll_pwait2"] != enterWait {
		t.Errorf("wait samples: futex and epoll_pwait2 not in the wait family: %v", wait)
	}
	if _, ok := wait["sys_enter_openat"]; ok {
		t.Error("no traced syscall: sys_enter_openat attached")
	}
	all := names(Options{SyscallMask: 0x1f, PythonStacks: true, PythonWaitSamples: true, Sockets: SocketOptions{Enabled: true, Inbound: true}})
	for nr, name := range tracefsName {
		if _, ok := all["sys_enter_"+name]; !ok {
			if _, ok := all["sys_exit_"+name]; !ok {
				t.Errorf("syscall %d (%s) has a name but no configuration attaches it", nr, name)
			}
		}
	}
	var unnamed nrSet
	unnamed.add(syscallsSyscallNr(110)) // getppid
	if _, err := syscallTracepoints(unnamed, nrSet{}); err == nil {
		t.Error("a number without a tracefs name was accepted")
	}
}

// TestSyscallAttachPaths loads the programs on each path and checks what a traced openat
// records there: its path and flags read from the user registers (a raw tracepoint has them as
// its argument, a per-syscall tracepoint's program takes the task's), the user stack, and the
// exit's return value; and that the tracepoint path leaves sys_enter and sys_exit alone.
func TestSyscallAttachPaths(t *testing.T) {
	requireKernel(t)
	if _, err := os.Stat("/sys/kernel/tracing/events/syscalls"); err != nil {
		if _, err := ensureTracefs(); err != nil {
			t.Skipf("no tracefs: %v", err)
		}
	}
	for _, tc := range []struct {
		mode, path string
	}{{AttachAuto, AttachTracepoint}, {AttachTracepoint, AttachTracepoint}, {AttachRaw, AttachRaw}} {
		t.Run(tc.mode, func(t *testing.T) {
			s, err := Load(Options{RingBufferBytes: 1 << 20, SyscallMask: SyscallBits["openat"], CaptureStacks: true, SyscallAttach: tc.mode})
			if errors.Is(err, ebpf.ErrNotSupported) {
				t.Skipf("kernel lacks a feature the programs need: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			h := s.SyscallHooks()
			enter, exit := syscallFilter(Options{SyscallMask: SyscallBits["openat"]})
			tps, _ := syscallTracepoints(enter, exit)
			wantHooks := 2
			if tc.path == AttachTracepoint {
				wantHooks = len(tps) // openat both ways, the 4 forks' entries
			}
			if h.Path != tc.path || h.Hooks != wantHooks || h.Fallback != "" {
				t.Fatalf("hooks %+v, want path %s on %d", h, tc.path, wantHooks)
			}
			if got, want := rawSyscallLinks(t, s), map[string]int{AttachRaw: 2, AttachTracepoint: 0}[tc.path]; got != want {
				t.Errorf("%d links on sys_enter/sys_exit, want %d", got, want)
			}
			rd, err := ringbuf.NewReader(s.Events())
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			pid := uint32(os.Getpid())
			if err := s.TraceProcess(pid, TracedProcess{TargetId: 1, IsGo: 1}); err != nil {
				t.Fatal(err)
			}
			defer s.UntraceProcess(pid)
			name := filepath.Join(t.TempDir(), "attach-"+tc.mode)
			fd, err := unix.Open(name, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(fd)
			var entered bool
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				rd.SetDeadline(deadline)
				rec, err := rd.Read()
				if err != nil {
					break
				}
				if len(rec.RawSample) < int(unsafe.Sizeof(EventHeader{})) {
					continue
				}
				hdr := *(*EventHeader)(unsafe.Pointer(&rec.RawSample[0]))
				if hdr.Tgid != pid || hdr.ProbeId != uint32(syscallsSyscallNrNR_OPEN_AT) {
					continue
				}
				switch {
				case hdr.Kind == KindSyscallEnter && len(rec.RawSample) >= int(unsafe.Sizeof(SyscallEvent{})):
					e := *(*SyscallEvent)(unsafe.Pointer(&rec.RawSample[0]))
					if !bytes.Equal(e.Path[:e.PathLen], []byte(name)) {
						continue
					}
					if e.Flags&unix.O_CREAT == 0 || e.Fd != unix.AT_FDCWD {
						t.Errorf("openat read as dirfd %d flags %#x", e.Fd, e.Flags)
					}
					if e.StackLen == 0 {
						t.Error("openat without a user stack")
					}
					entered = true
				case hdr.Kind == KindSyscallExit && entered && len(rec.RawSample) >= int(unsafe.Sizeof(SyscallExitEvent{})):
					e := *(*SyscallExitEvent)(unsafe.Pointer(&rec.RawSample[0]))
					if e.Ret != int64(fd) {
						t.Errorf("openat exit returned %d, want %d", e.Ret, fd)
					}
					return
				}
			}
			t.Fatalf("no openat enter and exit of %s (entered %v)", name, entered)
		})
	}
}

// rawSyscallLinks counts s's links on the sys_enter and sys_exit raw tracepoints.
func rawSyscallLinks(t *testing.T, s *Set) int {
	t.Helper()
	n := 0
	for _, l := range s.links {
		info, err := l.Info()
		if err != nil || info.Type != link.RawTracepointType {
			continue
		}
		if rt := info.RawTracepoint(); rt != nil && (rt.Name == "sys_enter" || rt.Name == "sys_exit") {
			n++
		}
	}
	return n
}

// TestSyscallAttachFallback: a needed tracepoint missing (a name tracefs does not have) makes
// auto fall back to the raw tracepoints, none of the per-syscall ones left attached, and
// tracepoint fail.
func TestSyscallAttachFallback(t *testing.T) {
	requireKernel(t)
	if _, err := ensureTracefs(); err != nil {
		t.Skipf("no tracefs: %v", err)
	}
	saved := tracefsName[syscallsSyscallNrNR_OPEN_AT]
	tracefsName[syscallsSyscallNrNR_OPEN_AT] = "openat_not_in_tracefs"
	defer func() { tracefsName[syscallsSyscallNrNR_OPEN_AT] = saved }()
	opts := Options{RingBufferBytes: 1 << 20, SyscallMask: SyscallBits["openat"] | SyscallBits["connect"]}
	s, err := Load(opts)
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel lacks a feature the programs need: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	h := s.SyscallHooks()
	perf := 0
	for _, l := range s.links {
		if info, err := l.Info(); err == nil && info.Type == link.PerfEventType {
			perf++
		}
	}
	s.Close()
	if h.Path != AttachRaw || h.Hooks != 2 || h.Fallback != FallbackAttach || h.Detail == "" {
		t.Errorf("auto with a tracepoint missing: %+v", h)
	}
	if perf != 0 {
		t.Errorf("%d per-syscall tracepoints left attached beside the raw ones", perf)
	}
	opts.SyscallAttach = AttachTracepoint
	if s, err := Load(opts); err == nil {
		s.Close()
		t.Error("tracepoint with a tracepoint missing loaded")
	}
}
