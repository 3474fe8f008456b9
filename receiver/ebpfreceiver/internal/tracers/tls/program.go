package tls

import (
	"container/list"
	"fmt"
	"os"

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

func statFile(path string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return fileID{inode: tracer.InodeKey(st), size: st.Size, mtime: st.Mtim, ctime: st.Ctim}, nil
}

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

// program returns what the file at path holds for TLS, read once per fileID: later processes
// of the same program cost a stat and a lookup. Counted in agenttrail.ebpf.tls.programs.
func (t *Tracer) program(path string, id fileID) *program {
	if p, ok := t.programs.get(id); ok {
		t.countProgram("hit")
		return p
	}
	t.countProgram("read")
	p := &program{}
	f, err := os.Open(path)
	if err != nil {
		p.sslErr = err
	} else {
		p.ssl, p.sslErr = opensslOffsets(f)
		_ = f.Close()
	}
	if t.programs.put(id, p) {
		t.countProgram("evicted")
	}
	return p
}

// staticOf is tlsident's answer for a program that exports no OpenSSL, read once per program.
func (t *Tracer) staticOf(path string, p *program) (tlsident.Result, error) {
	if p.staticRead {
		return p.static, p.staticErr
	}
	p.staticRead = true
	f, err := os.Open(path)
	if err != nil {
		p.staticErr = err
		return p.static, p.staticErr
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		p.staticErr = err
		return p.static, p.staticErr
	}
	p.static, err = tlsident.Identify(f, st.Size())
	if err != nil {
		p.staticErr = fmt.Errorf("cannot read the program for a static TLS library: %w", err)
	}
	return p.static, p.staticErr
}
