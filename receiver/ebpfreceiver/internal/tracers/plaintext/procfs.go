package plaintext

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// An MCP client writes requests on one pipe (its server's stdin) and reads responses from
// another (the server's stdout); the kernel's records name each pipe alone. The two are paired
// through /proc: the server is the client's descendant whose fd 0 and fd 1 are those pipes (a
// server spawned through npx or a shell inherits them). A process reading requests on its own
// fd 0 is a server; its partner pipe is its fd 1.

// link is what /proc says about a pipe (or unix socket) of a process.
type link struct {
	// wire is the inode the process on the other end reads and writes: the pipe's own, or the
	// peer socket's of a socketpair.
	wire    uint64
	partner uint64 // the other pipe of the session; 0 when none was found
	server  uint32 // the server process (the deepest descendant with both pipes); 0 when the process is the server or none was found
	command string // the server's command line, bounded and redacted
	tried   time.Time
}

// Bounds on the /proc walk for one pipe.
const (
	maxDescendants = 64
	maxDepth       = 4
	maxCommandLine = 4096
	maxChildList   = 16 << 10
)

// pipeIno returns the inode of the pipe or socket at fd of pid, or 0.
func pipeIno(procRoot string, pid uint32, fd int) uint64 {
	target, err := os.Readlink(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "fd", strconv.Itoa(fd)))
	if err != nil {
		return 0
	}
	s, ok := strings.CutPrefix(target, "pipe:[")
	if !ok {
		if s, ok = strings.CutPrefix(target, "socket:["); !ok {
			return 0
		}
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0
	}
	ino, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return ino
}

// children lists the children of every thread of pid (bounded).
func children(procRoot string, pid uint32) []uint32 {
	dir := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []uint32
	for i, t := range tasks {
		if i >= maxDescendants {
			break
		}
		b, err := readBounded(filepath.Join(dir, t.Name(), "children"), maxChildList)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.ParseUint(f, 10, 32); err == nil {
				out = append(out, uint32(c))
			}
		}
	}
	return out
}

func readBounded(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	m, err := f.Read(buf)
	if m > 0 {
		return buf[:m], nil
	}
	return nil, err
}

// commandLine reads a process's command line, bounded, with its NULs as spaces.
func commandLine(procRoot string, pid uint32) string {
	b, err := readBounded(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "cmdline"), maxCommandLine)
	if err != nil {
		return ""
	}
	b = bytes.TrimRight(b, "\x00")
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// findLink pairs pipe (or unix socket, sock) ino, used by pid on fd, with its partner.
// peerIno is the socket's peer as the kernel named it at the call (0: not known): sock_diag,
// asked now, no longer knows a socket closed since.
func findLink(procRoot string, pid uint32, fd int32, ino uint64, sock bool, peerIno uint64) link {
	peer := func(i uint64) uint64 {
		switch {
		case !sock || i == 0:
			return i
		case i == ino && peerIno != 0:
			return peerIno
		}
		return unixPeer(i)
	}
	if fd == 0 || fd == 1 {
		// A server's own stdio: its records name the inodes its fds do.
		in, out := pipeIno(procRoot, pid, 0), pipeIno(procRoot, pid, 1)
		switch {
		case fd == 0 && in == ino && out != 0:
			return link{wire: peer(ino), partner: out}
		case fd == 1 && out == ino && in != 0:
			return link{wire: peer(ino), partner: in}
		}
	}
	wire := peer(ino)
	found := link{wire: wire}
	if wire == 0 {
		return found
	}
	level := []uint32{pid}
	seen := 0
	for depth := 0; depth < maxDepth && len(level) > 0 && seen < maxDescendants; depth++ {
		var next []uint32
		for _, p := range level {
			for _, c := range children(procRoot, p) {
				if seen >= maxDescendants {
					break
				}
				seen++
				in, out := pipeIno(procRoot, c, 0), pipeIno(procRoot, c, 1)
				switch {
				case in == wire && out != 0:
					found.partner, found.server = peer(out), c
				case out == wire && in != 0:
					found.partner, found.server = peer(in), c
				default:
					continue // a descendant without the pipe: its children do not have it either
				}
				next = append(next, c)
			}
		}
		level = next
	}
	if found.server != 0 {
		found.command = commandLine(procRoot, found.server)
	}
	return found
}
