package ebpfreceiver

import (
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ringWaiter parks the read loop in the Go runtime's network poller until the ring buffer
// signals records (the kernel wakes waiters once wakeup_bytes are waiting) or a deadline passes.
//
// ringbuf.Reader can wait by itself, in a blocking epoll_wait. A thread held in a system call
// for more than 10 ms makes the runtime's sysmon take its P back and poll every 20 µs for a
// while, at every flush interval: measured under the bank agent at 20 requests/s, that was
// about a quarter of the collector's CPU. Parked in the netpoller, the loop holds no thread.
type ringWaiter struct {
	file *os.File
	raw  syscall.RawConn
	// woken: wake was called since the last wait began; a wake between a wait's deadline and
	// its parking is not lost.
	woken atomic.Bool
}

// newRingWaiter watches the ring buffer map through its own duplicate of the map's descriptor.
func newRingWaiter(m *ebpf.Map) (*ringWaiter, error) {
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate the ring buffer descriptor: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("make the ring buffer descriptor non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ebpf-ringbuf")
	// A descriptor the netpoller could not register takes no deadline.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("the ring buffer cannot be polled by the Go runtime: %w", err)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &ringWaiter{file: f, raw: raw}, nil
}

// wait returns when the ring buffer signals records, the deadline passes, or close was called.
func (w *ringWaiter) wait(deadline time.Time) {
	_ = w.file.SetReadDeadline(deadline)
	if w.woken.Swap(false) {
		return
	}
	parked := false
	_ = w.raw.Read(func(uintptr) bool {
		if parked {
			return true
		}
		parked = true
		return false // wait for readiness once
	})
}

// wake ends a wait in progress, or the next one, from another goroutine: something other
// than a record (a Kubernetes selection that changed) needs the read loop.
func (w *ringWaiter) wake() {
	w.woken.Store(true)
	_ = w.file.SetReadDeadline(time.Now())
}

// close wakes a wait in progress; later waits return at once.
func (w *ringWaiter) close() error { return w.file.Close() }
