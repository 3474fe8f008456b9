package probes

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The syscall programs run at every syscall of every process on the node (the node-wide tax).
// They return at once for a syscall number no program of the configuration acts on (the
// enter_nrs and exit_nrs bitmaps, set here before load) and for a process whose bit in
// traced_tgids is clear (one bit per tgid, set and cleared here and by the programs), before
// any hash lookup; see bpf/syscalls/syscalls.c.

// nrFilterWords is the length of the syscall number bitmaps (NR_FILTERED numbers).
const nrFilterWords = int(syscallsSyscallNrNR_FILTERED) / 64

// tgidBits is the tgids traced_tgids covers (the kernel's PID_MAX_LIMIT on 64-bit); a process
// with a larger tgid always takes the hash lookup.
const tgidBits = 1 << 22

type nrSet [nrFilterWords]uint64

func (b *nrSet) add(nrs ...syscallsSyscallNr) {
	for _, nr := range nrs {
		b[nr/64] |= 1 << (nr % 64)
	}
}

// has reports whether nr is in the set (numbers past the bitmap always are).
func (b *nrSet) has(nr int) bool {
	return nr < 0 || nr >= len(b)*64 || b[nr/64]&(1<<(nr%64)) != 0
}

// tracedNrs are the syscall numbers of each traced syscall (enum traced_syscall), as
// syscall_bit in the C program maps them.
var tracedNrs = map[syscallsTracedSyscall][]syscallsSyscallNr{
	syscallsTracedSyscallTRACE_CONNECT: {syscallsSyscallNrNR_CONNECT},
	syscallsTracedSyscallTRACE_ACCEPT:  {syscallsSyscallNrNR_ACCEPT, syscallsSyscallNrNR_ACCEPT4},
	syscallsTracedSyscallTRACE_SENDTO:  {syscallsSyscallNrNR_SENDTO},
	syscallsTracedSyscallTRACE_EXECVE:  {syscallsSyscallNrNR_EXECVE, syscallsSyscallNrNR_EXECVEAT},
	syscallsTracedSyscallTRACE_OPENAT:  {syscallsSyscallNrNR_OPEN_AT},
}

// syscallFilter is the syscall numbers sys_enter and sys_exit act on under opts: the traced
// syscalls (both); clone and fork (sys_enter keeps a Go process's forking goroutine); the
// waits of Python wait samples (sys_enter); the socket I/O calls (sys_exit, receives with
// Inbound).
func syscallFilter(opts Options) (enter, exit nrSet) {
	for bit, nrs := range tracedNrs {
		if opts.SyscallMask&uint32(bit) != 0 {
			enter.add(nrs...)
			exit.add(nrs...)
		}
	}
	enter.add(syscallsSyscallNrNR_CLONE, syscallsSyscallNrNR_CLONE3, syscallsSyscallNrNR_FORK, syscallsSyscallNrNR_VFORK)
	if opts.PythonStacks && opts.PythonWaitSamples {
		enter.add(syscallsSyscallNrNR_POLL, syscallsSyscallNrNR_SELECT, syscallsSyscallNrNR_RECVFROM, syscallsSyscallNrNR_RECVMSG,
			syscallsSyscallNrNR_EPOLL_WAIT, syscallsSyscallNrNR_PSELECT6, syscallsSyscallNrNR_PPOLL, syscallsSyscallNrNR_EPOLL_PWAIT,
			syscallsSyscallNrNR_EPOLL_PWAIT2, syscallsSyscallNrNR_FUTEX)
	}
	if opts.Sockets.Enabled {
		exit.add(syscallsSyscallNrNR_WRITE, syscallsSyscallNrNR_SENDTO, syscallsSyscallNrNR_WRITEV, syscallsSyscallNrNR_SENDMSG,
			syscallsSyscallNrNR_SENDMMSG, syscallsSyscallNrNR_SENDFILE, syscallsSyscallNrNR_SPLICE)
		if opts.Sockets.Inbound {
			exit.add(syscallsSyscallNrNR_READ, syscallsSyscallNrNR_RECVFROM, syscallsSyscallNrNR_READV, syscallsSyscallNrNR_RECVMSG,
				syscallsSyscallNrNR_RECVMMSG)
		}
	}
	return enter, exit
}

// mapTgids maps traced_tgids into this process, so that marking a process is an atomic
// instruction on the word the programs read (a map update would rewrite the whole word and
// could undo a bit the kernel set in it meanwhile, at a traced process's fork).
func (s *Set) mapTgids() error {
	size := tgidBits / 8
	if got := int(s.sys.TracedTgids.MaxEntries()) * 8; got != size {
		return fmt.Errorf("traced_tgids holds %d bytes, want %d", got, size)
	}
	b, err := unix.Mmap(s.sys.TracedTgids.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map traced_tgids: %w", err)
	}
	s.tgids = b
	return nil
}

// tgidWord is the word of traced_tgids holding tgid's bit, and the bit; nil past the bitmap.
func (s *Set) tgidWord(tgid uint32) (*uint64, uint64) {
	if tgid >= tgidBits || s.tgids == nil {
		return nil, 0
	}
	return (*uint64)(unsafe.Pointer(&s.tgids[tgid/64*8])), 1 << (tgid % 64)
}

// setTgid sets (before the process is looked up in traced_processes: after its insertion) or
// clears (before its deletion) a process's bit, so that a traced process always has it.
func (s *Set) setTgid(tgid uint32, traced bool) {
	w, bit := s.tgidWord(tgid)
	if w == nil {
		return
	}
	if traced {
		atomic.OrUint64(w, bit)
	} else {
		atomic.AndUint64(w, ^bit)
	}
}

// tgidMarked reports whether a process's bit is set (tests).
func (s *Set) tgidMarked(tgid uint32) bool {
	w, bit := s.tgidWord(tgid)
	return w == nil || atomic.LoadUint64(w)&bit != 0
}

func (s *Set) unmapTgids() error {
	if s.tgids == nil {
		return nil
	}
	err := unix.Munmap(s.tgids)
	s.tgids = nil
	if err != nil {
		return fmt.Errorf("unmap traced_tgids: %w", err)
	}
	return nil
}
