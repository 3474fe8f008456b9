package tls

import (
	"container/list"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tlsident"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// fileID identifies a file's contents without reading them: the inode (what uprobes attach to)
// and its size, modification and change times. A file rewritten in place keeps its inode but
// not its ctime (which, unlike mtime, a process cannot set back), so it is read again.
type fileID struct {
	inode        probes.InodeKey
	size         int64
	mtime, ctime unix.Timespec
}

// file is a program or library opened to be set up: it is read and attached to through the
// open file, so that a process exiting meanwhile (its /proc/<pid>/exe or root gone: node -e
// runs for 40 ms) does not make the attach fail, which was remembered for the inode: no later
// process of the file would have been probed.
type file struct {
	*os.File
	path string // as given, for messages
	id   fileID
}

func openFile(path string) (*file, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	id := fileID{inode: tracer.InodeKey(st), size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
	return &file{File: f, path: path, id: id}, nil
}

// attachPath names the open file for the kernel, which puts a uprobe on the inode a path
// resolves to when the probe is created: this one resolves as long as the file is open.
func (f *file) attachPath() string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

func (id fileID) key() string { return tracer.InodeString(id.inode) }

// program is what the tracer learned by reading one file: the OpenSSL functions it defines (a
// library, or a program that exports OpenSSL as Node does) and, for a program that exports
// none, the TLS library linked into it (tlsident). Reading it is the expensive part of setting
// up a process; attaching at the offsets found is not.
type program struct {
	ssl    sslOffsets
	sslErr error // the dynamic symbols could not be read
	// static: tlsident's answer, read only for a program that exports no OpenSSL.
	static     tlsident.Result
	staticErr  error
	staticRead bool
}

// maxPrograms bounds the programs remembered: a host that runs more distinct programs (or a
// traced process that writes new ones) reads the least recently used ones again.
const maxPrograms = 1024

// programCache is an LRU of programs by fileID.
type programCache struct {
	max   int
	order *list.List // of *programEntry, most recently used first
	byID  map[fileID]*list.Element
}

type programEntry struct {
	id fileID
	p  *program
}

func newProgramCache(max int) *programCache {
	return &programCache{max: max, order: list.New(), byID: map[fileID]*list.Element{}}
}

func (c *programCache) get(id fileID) (*program, bool) {
	e, ok := c.byID[id]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*programEntry).p, true
}

// put remembers p; it reports whether the least recently used program was forgotten for it.
func (c *programCache) put(id fileID, p *program) (evicted bool) {
	if e, ok := c.byID[id]; ok {
		e.Value.(*programEntry).p = p
		c.order.MoveToFront(e)
		return false
	}
	if c.order.Len() >= c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.byID, old.Value.(*programEntry).id)
		evicted = true
	}
	c.byID[id] = c.order.PushFront(&programEntry{id: id, p: p})
	return evicted
}

func (c *programCache) len() int { return c.order.Len() }

// program returns what the file holds for TLS, read once per fileID: later processes of the
// same program cost an open, a stat and a lookup. Counted in agenttrail.ebpf.tls.programs.
func (t *Tracer) program(f *file) *program {
	if p, ok := t.programs.get(f.id); ok {
		t.countProgram("hit")
		return p
	}
	t.countProgram("read")
	p := &program{}
	p.ssl, p.sslErr = opensslOffsets(f)
	if t.programs.put(f.id, p) {
		t.countProgram("evicted")
	}
	return p
}

// staticOf is tlsident's answer for a program that exports no OpenSSL, read once per program.
func (t *Tracer) staticOf(f *file, p *program) (tlsident.Result, error) {
	if !p.staticRead {
		p.staticRead = true
		var err error
		if p.static, err = tlsident.Identify(f, f.id.size); err != nil {
			p.staticErr = fmt.Errorf("cannot read the program for a static TLS library: %w", err)
		}
	}
	return p.static, p.staticErr
}
