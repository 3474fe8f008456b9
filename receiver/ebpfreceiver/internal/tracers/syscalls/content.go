package syscalls

import (
	"errors"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// Bounds of the content sampler's tables: a thread has at most one openat in flight, and a
// file is sampled once per (device, inode, mtime, size) while it stays in the cache.
const (
	maxPendingOpens = 4096
	maxCachedFiles  = 8192
)

type threadID struct{ pid, tid uint32 }

// pendingOpen is an openat entered and not yet returned: its path as the process gave it
// (unredacted: it is only used to find the file, never exported from here).
type pendingOpen struct {
	path  string
	flags uint64
}

type fileKey struct {
	dev, ino   uint64
	mtimeNanos int64
	size       int64
}

// sampler reads the beginning of regular files traced processes opened for reading and names
// the sensitive data in it (redact.Detect). The bytes read never leave this type: only the
// detector names do. Reader goroutine only.
type sampler struct {
	cfg      ContentConfig
	procRoot string
	red      *redact.Redactor
	now      func() time.Time

	pending map[threadID]pendingOpen
	cache   map[fileKey][]string
	buf     []byte

	// Fixed one-minute windows: the global count and each process's.
	window    time.Time
	total     int
	perProc   map[uint32]int
	procLimit int

	sampled metric.Int64Counter
	skipped metric.Int64Counter
}

func newSampler(env tracer.Env, cfg ContentConfig, now func() time.Time) (*sampler, error) {
	s := &sampler{
		cfg: cfg, procRoot: env.ProcRoot, red: env.Redactor, now: now,
		pending: map[threadID]pendingOpen{}, cache: map[fileKey][]string{}, perProc: map[uint32]int{},
		procLimit: max(1, cfg.MaxFilesPerMinute/4),
	}
	if s.procRoot == "" {
		s.procRoot = "/proc"
	}
	if env.Telemetry == nil || env.Telemetry.Meter == nil {
		return s, nil
	}
	var err error
	m := env.Telemetry.Meter
	if s.sampled, err = m.Int64Counter("agenttrail.ebpf.content.sampled",
		metric.WithDescription("Files traced processes opened for reading whose beginning was checked for sensitive data, by result (sensitive, clean, cached: a file already checked)."),
		metric.WithUnit("{file}")); err != nil {
		return nil, err
	}
	if s.skipped, err = m.Int64Counter("agenttrail.ebpf.content.skipped",
		metric.WithDescription("Files opened for reading that were not checked for sensitive data, by reason (rate_limited, process_limited, gone, not_regular, empty, unreadable, pending_full)."),
		metric.WithUnit("{file}")); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sampler) count(c metric.Int64Counter, key, value string) {
	if c != nil {
		c.Add(tracer.Ctx, 1, metric.WithAttributes(attribute.String(key, value)))
	}
}

func (s *sampler) skip(reason string) []string {
	s.count(s.skipped, "reason", reason)
	return nil
}

// reads reports whether openat flags open a file for reading that can be sampled: read-only or
// read-write, not a directory, not O_PATH (which reads nothing).
func reads(flags uint64) bool {
	acc := flags & unix.O_ACCMODE
	return (acc == unix.O_RDONLY || acc == unix.O_RDWR) && flags&(unix.O_DIRECTORY|unix.O_PATH) == 0
}

// enter remembers an openat that may be sampled at its exit.
func (s *sampler) enter(pid, tid uint32, raw string, flags uint64) {
	if !reads(flags) || raw == "" {
		return
	}
	k := threadID{pid, tid}
	if _, ok := s.pending[k]; !ok && len(s.pending) >= maxPendingOpens {
		s.skip("pending_full")
		return
	}
	s.pending[k] = pendingOpen{path: raw, flags: flags}
}

// forget drops the thread's pending openat (another syscall entered, or the thread exited).
func (s *sampler) forget(pid, tid uint32) { delete(s.pending, threadID{pid, tid}) }

// exit samples the file of the thread's openat that returned ret, if it is one to sample, and
// returns the detectors that matched.
func (s *sampler) exit(pid, tid uint32, ret int64) []string {
	k := threadID{pid, tid}
	op, ok := s.pending[k]
	if !ok {
		return nil
	}
	delete(s.pending, k)
	if ret < 0 {
		return nil // the open failed: nothing was read
	}
	fd, err := s.openPath(pid, ret, op.path)
	if err != nil {
		return s.skip("gone")
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return s.skip("gone")
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return s.skip("not_regular")
	}
	if st.Size <= 0 {
		return s.skip("empty")
	}
	key := fileKey{dev: st.Dev, ino: st.Ino, mtimeNanos: st.Mtim.Nano(), size: st.Size}
	if d, ok := s.cache[key]; ok {
		s.count(s.sampled, "result", "cached")
		return d
	}
	if reason := s.admit(pid); reason != "" {
		return s.skip(reason)
	}
	d, err := s.sample(fd)
	if err != nil {
		return s.skip("unreadable")
	}
	if len(s.cache) >= maxCachedFiles {
		clear(s.cache) // a new generation; files are sampled again as they are opened
	}
	s.cache[key] = d
	if len(d) > 0 {
		s.count(s.sampled, "result", "sensitive")
	} else {
		s.count(s.sampled, "result", "clean")
	}
	return d
}

// admit takes one file from the minute's budgets, or says which is spent.
func (s *sampler) admit(pid uint32) string {
	now := s.now()
	if now.Sub(s.window) >= time.Minute || now.Before(s.window) {
		s.window, s.total = now, 0
		clear(s.perProc)
	}
	switch {
	case s.total >= s.cfg.MaxFilesPerMinute:
		return "rate_limited"
	case s.perProc[pid] >= s.procLimit:
		return "process_limited"
	}
	s.total++
	s.perProc[pid]++
	return ""
}

// openPath opens the file the process opened as an O_PATH descriptor: nothing is opened for
// reading yet (opening a device or a FIFO can block or have effects), and its type is checked
// on the descriptor itself, so the check and the read are of the same file. The process's
// descriptor is used while it still names the path it opened; when the process already closed
// it (or reused the number), an absolute path is resolved again inside the process's root
// (RESOLVE_IN_ROOT: a symlink in a container cannot point the collector at a host file).
func (s *sampler) openPath(pid uint32, fd int64, p string) (int, error) {
	proc := s.procRoot + "/" + strconv.FormatUint(uint64(pid), 10)
	fdPath := proc + "/fd/" + strconv.FormatInt(fd, 10)
	if link, err := os.Readlink(fdPath); err == nil && sameFile(link, p) {
		if f, err := unix.Open(fdPath, unix.O_PATH|unix.O_CLOEXEC, 0); err == nil {
			return f, nil
		}
	}
	if !strings.HasPrefix(p, "/") {
		return -1, errors.New("relative path and descriptor closed")
	}
	root, err := unix.Open(proc+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(root)
	return unix.Openat2(root, p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// sameFile reports whether the target of a /proc/<pid>/fd link is the path given to openat:
// equal when absolute, ending in it when relative (to a directory descriptor or the cwd).
func sameFile(link, p string) bool {
	p = path.Clean(p)
	if strings.HasPrefix(p, "/") {
		return link == p
	}
	return !strings.HasPrefix(p, "../") && p != ".." && strings.HasSuffix(link, "/"+p)
}

// sample reads the first max_bytes of the file behind an O_PATH descriptor and names what the
// detectors find. The file is reopened through the descriptor (same inode) read-only and
// non-blocking, and read with pread, so the traced process's own offset is untouched.
func (s *sampler) sample(opath int) ([]string, error) {
	// O_NOATIME: the collector's read is not the process's, and must not change the file's
	// access time (evidence); the kernel refuses it (EPERM) for a file the caller does not own
	// without CAP_FOWNER, and then the file is read without it.
	self := "/proc/self/fd/" + strconv.Itoa(opath)
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
	fd, err := unix.Open(self, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Open(self, flags, 0)
	}
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if s.buf == nil {
		s.buf = make([]byte, s.cfg.MaxBytes)
	}
	n := 0
	for n < len(s.buf) {
		m, err := unix.Pread(fd, s.buf[n:], int64(n))
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	d := s.red.Detect(s.buf[:n])
	clear(s.buf[:n]) // the content is not kept beyond its scan
	return d, nil
}
