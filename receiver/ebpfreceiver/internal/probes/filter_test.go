package probes

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// TestSyscallFilter: the syscall numbers the programs act on follow the options; every syscall
// the config can trace has its numbers (a traced syscall added to the C programs without them
// here would never reach its program).
func TestSyscallFilter(t *testing.T) {
	const getppid, write, read, openat, connect, accept4, sendto, clone3, futex, epollWait = 110, 1, 0, 257, 42, 288, 44, 435, 202, 232
	mask := SyscallBits["connect"] | SyscallBits["accept"] | SyscallBits["execve"] | SyscallBits["openat"]
	cases := []struct {
		name            string
		opts            Options
		enterIn, exitIn []int
		enterOut        []int
		exitOut         []int
	}{
		{"defaults", Options{SyscallMask: mask, PythonStacks: true, Sockets: SocketOptions{Enabled: true, Inbound: true}},
			[]int{openat, connect, accept4, clone3}, []int{openat, connect, accept4, write, read, sendto},
			[]int{getppid, write, read, sendto, futex, epollWait}, []int{getppid, clone3}},
		{"sends only", Options{SyscallMask: mask, Sockets: SocketOptions{Enabled: true}},
			nil, []int{write, sendto}, nil, []int{read}},
		{"no sockets", Options{SyscallMask: SyscallBits["openat"]},
			[]int{openat}, []int{openat}, []int{connect}, []int{write, read, connect}},
		{"python wait samples", Options{PythonStacks: true, PythonWaitSamples: true},
			[]int{futex, epollWait, clone3}, nil, []int{openat}, []int{futex}},
		{"numbers past the bitmap go to the full checks", Options{},
			[]int{512, 1000}, []int{512}, []int{getppid}, []int{getppid}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			enter, exit := syscallFilter(tc.opts)
			check := func(set nrSet, side string, nrs []int, want bool) {
				for _, nr := range nrs {
					if set.has(nr) != want {
						t.Errorf("%s: syscall %d wanted %v, got %v", side, nr, want, !want)
					}
				}
			}
			check(enter, "sys_enter", tc.enterIn, true)
			check(exit, "sys_exit", tc.exitIn, true)
			check(enter, "sys_enter", tc.enterOut, false)
			check(exit, "sys_exit", tc.exitOut, false)
		})
	}
	for name, bit := range SyscallBits {
		if len(tracedNrs[syscallsTracedSyscall(bit)]) == 0 {
			t.Errorf("traced syscall %s has no syscall numbers in tracedNrs", name)
		}
	}
}

// TestTracedTgids: a traced process has its bit in traced_tgids, the child it forks gets one
// from the kernel (its syscalls would be skipped otherwise), which the child's exit clears, and
// untracing clears it.
func TestTracedTgids(t *testing.T) {
	requireKernel(t)
	s, err := Load(Options{RingBufferBytes: 1 << 20, SyscallMask: SyscallBits["openat"]})
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel lacks a feature the programs need: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	self := uint32(os.Getpid())
	if s.tgidMarked(self) {
		t.Fatal("bit set before TraceProcess")
	}
	if err := s.TraceProcess(self, TracedProcess{TargetId: 1, IsGo: 1}); err != nil {
		t.Fatal(err)
	}
	if !s.tgidMarked(self) {
		t.Fatal("no bit after TraceProcess")
	}
	child := exec.Command("sleep", "5")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(child.Process.Pid)
	traced, marked := s.IsTraced(pid), s.tgidMarked(pid)
	_ = child.Process.Kill()
	_ = child.Wait()
	if !traced || !marked {
		t.Fatalf("forked child of a traced process: traced %v, bit %v; want both", traced, marked)
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.tgidMarked(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.tgidMarked(pid) || s.IsTraced(pid) {
		t.Fatalf("exited child: traced %v, bit %v; want neither", s.IsTraced(pid), s.tgidMarked(pid))
	}
	if err := s.UntraceProcess(self); err != nil {
		t.Fatal(err)
	}
	if s.tgidMarked(self) {
		t.Fatal("bit still set after UntraceProcess")
	}
}
