package symbolize

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
)

const (
	defaultProcRoot    = "/proc"
	defaultMaxBinaries = 256
	// mapsReloadInterval bounds how often a miss may re-read a process'
	// maps, so bogus addresses cannot make us re-read them in a loop.
	mapsReloadInterval = time.Second
	// mapsReloadBurst is how many misses may re-read the maps at once after Prepare.
	mapsReloadBurst = 4
	// resolveRetry bounds how often opening a mapped file that failed is
	// retried.
	resolveRetry = 5 * time.Second
	// pruneThreshold is the number of tracked pids above which entries for
	// pids whose maps could never be read are pruned.
	pruneThreshold = 4096
)

// Frame is one symbolized stack frame.
type Frame struct {
	Address  uint64
	Function string // "" when unknown
	File     string // source file when known (Go: pclntab; native: DWARF line table)
	Line     int    // 0 when unknown
	Module   string // mapped file as in /proc/<pid>/maps, "[vdso]" etc. for special mappings, "" if none
}

// String renders the frame as "function (file:line)" when the source
// position is known, "function (module)" when only the function is known and
// "0x<address> (module)" otherwise.
func (f Frame) String() string {
	switch {
	case f.Function != "" && f.File != "" && f.Line > 0:
		return f.Function + " (" + f.File + ":" + strconv.Itoa(f.Line) + ")"
	case f.Function != "" && f.File != "":
		return f.Function + " (" + f.File + ")"
	case f.Function != "" && f.Module != "":
		return f.Function + " (" + f.Module + ")"
	case f.Function != "":
		return f.Function
	case f.Module != "":
		return "0x" + strconv.FormatUint(f.Address, 16) + " (" + f.Module + ")"
	}
	return "0x" + strconv.FormatUint(f.Address, 16)
}

// Options configures a Symbolizer.
type Options struct {
	// ProcRoot is the procfs mount point. Default "/proc".
	ProcRoot string
	// MaxBinaries bounds the number of binaries whose symbol tables are
	// cached (least recently used are evicted). Default 256.
	MaxBinaries int
	// DeferLoad makes Prepare only read the process' maps; the mapped
	// binaries are then opened on the first Symbolize that needs them. By
	// default Prepare also opens every executable mapping and loads its
	// symbol tables (a no-op for binaries already cached), so that binaries
	// reachable only through the process (container mount namespaces,
	// deleted files) can be symbolized after the process has exited.
	DeferLoad bool
}

// Stats are counters for self-telemetry.
type Stats struct {
	Hits            uint64 // frames resolved to a function name
	Misses          uint64 // frames left without a function name
	BinariesCached  uint64 // binaries currently in the cache
	BinariesEvicted uint64 // binaries evicted from the cache so far
	MapReloads      uint64 // maps re-reads triggered by an address outside every cached mapping
	// BinariesMalformed counts tables of mapped binaries that were not read: a symbol table,
	// pclntab, DWARF line table or .eh_frame over a limit of elfinfo (a traced binary can
	// declare a 4 GiB section), or one the debug/* parsers failed on. Their frames go
	// without names, lines or leaf callers.
	BinariesMalformed uint64
	// MapsTruncated counts reads of /proc/<pid>/maps cut at maxMapsSize bytes or maxMappings
	// lines: addresses in the mappings beyond are not symbolized.
	MapsTruncated uint64
}

// Symbolizer resolves user-space addresses of processes. It is safe for
// concurrent use.
type Symbolizer struct {
	procRoot  string
	deferLoad bool
	cache     *binCache
	now       func() time.Time // overridable in tests

	mu        sync.RWMutex
	procs     map[uint32]*procState // nil once closed
	lastPrune time.Time

	clock      atomic.Uint64 // logical LRU clock
	hits       atomic.Uint64
	misses     atomic.Uint64
	mapReloads atomic.Uint64
	malformed  atomic.Uint64
	truncated  atomic.Uint64
}

// New returns a Symbolizer.
func New(opts Options) *Symbolizer {
	if opts.ProcRoot == "" {
		opts.ProcRoot = defaultProcRoot
	}
	if opts.MaxBinaries <= 0 {
		opts.MaxBinaries = defaultMaxBinaries
	}
	return &Symbolizer{
		procRoot:  opts.ProcRoot,
		deferLoad: opts.DeferLoad,
		cache:     newBinCache(opts.MaxBinaries),
		now:       time.Now,
		procs:     make(map[uint32]*procState),
	}
}

var errClosed = errors.New("symbolize: symbolizer is closed")

// Prepare reads and caches /proc/<pid>/maps now and, unless
// Options.DeferLoad is set, loads the symbol tables of every executable
// mapping. Call it when a process is first seen so that it can still be
// symbolized after it exits. Calling it again re-reads the maps (e.g. after
// an exec). Failing to open an individual binary is not an error.
func (s *Symbolizer) Prepare(pid uint32) error {
	p, _ := s.proc(pid, true)
	if p == nil {
		return fmt.Errorf("symbolize: prepare pid %d: %w", pid, errClosed)
	}
	if _, err := s.loadMaps(p, 0, true); err != nil {
		s.dropIfNeverLoaded(pid, p)
		return fmt.Errorf("symbolize: read maps of pid %d: %w", pid, err)
	}
	if s.deferLoad {
		return nil
	}
	tick := s.clock.Add(1)
	for _, m := range p.snapshot() {
		if m.exec {
			s.resolve(pid, m, tick)
		}
	}
	return nil
}

// Symbolize resolves addrs, a user-space stack of process pid ordered from
// the innermost frame outwards (as returned by bpf_get_stackid with
// BPF_F_USER_STACK). It never fails: frames that cannot be resolved keep
// their Address and, when the address falls inside a known executable
// mapping, their Module.
//
// addrs[0] is taken as the exact instruction pointer of the leaf frame. Every
// other address is a return address, pointing at the instruction after a
// call; it is looked up as addr-1 so that the reported function and line are
// those of the call itself rather than of the statement following it (which
// may even belong to another function when the call is the last instruction).
// Frame.Address always holds the original, unadjusted address.
//
// If the pid has not been prepared its maps are read now. An address outside
// every cached mapping triggers one re-read of the maps per call (a library
// may have been dlopen'ed), rate-limited to once per second per pid. Addresses
// that cannot be code (inside a non-executable mapping, below the lowest
// mappable page, beyond user space) never trigger one: frame-pointer
// unwinding through code built without frame pointers (the dynamic loader at
// a process's start) yields such garbage, and it must not spend the re-reads
// that make a freshly loaded library known.
func (s *Symbolizer) Symbolize(pid uint32, addrs []uint64) []Frame {
	frames := make([]Frame, len(addrs))
	for i, a := range addrs {
		frames[i].Address = a
	}
	if len(addrs) == 0 {
		return frames
	}
	p := s.procLoaded(pid)
	if p == nil {
		s.misses.Add(uint64(len(addrs)))
		return frames
	}
	tick := s.clock.Add(1)
	maps := p.snapshot()
	retried := false
	var hits, misses uint64
	for i, a := range addrs {
		pc := a
		if i > 0 && pc > 0 {
			pc--
		}
		m := findMapping(maps, pc)
		if m == nil && !retried && mayBeCode(pc) {
			retried = true
			maps = s.reloadFor(p)
			m = findMapping(maps, pc)
		}
		if m == nil || !m.exec {
			misses++
			continue
		}
		f := &frames[i]
		f.Module = m.module
		b := s.resolve(pid, m, tick)
		if b == nil {
			misses++
			continue
		}
		v, ok := b.fileToVaddr(pc - m.start + m.offset)
		if !ok {
			misses++
			continue
		}
		r := b.lookup(v, reopener{s: s, pid: pid, m: m, key: b.key})
		f.Function, f.File, f.Line = r.function, r.file, r.line
		if r.function != "" {
			hits++
		} else {
			misses++
		}
	}
	s.hits.Add(hits)
	s.misses.Add(misses)
	return frames
}

// reloadFor re-reads p's maps after a miss (rate-limited, see loadMaps) and returns them.
func (s *Symbolizer) reloadFor(p *procState) []*mapping {
	if attempted, _ := s.loadMaps(p, mapsReloadInterval, false); attempted {
		s.mapReloads.Add(1)
	}
	return p.snapshot()
}

// procLoaded returns the state of pid, reading its maps if it is new (failures leave it
// unresolved), or nil once the Symbolizer is closed.
func (s *Symbolizer) procLoaded(pid uint32) *procState {
	p, created := s.proc(pid, true)
	if p != nil && created {
		_, _ = s.loadMaps(p, 0, false)
	}
	return p
}

// mayBeCode reports whether addr may lie in a mapping not yet seen: at or
// above the lowest address Linux maps by default (vm.mmap_min_addr, 64 KiB)
// and below the top of the largest user address space (57-bit, 5-level paging).
func mayBeCode(addr uint64) bool {
	return addr >= 0x10000 && addr < 1<<56
}

// Forget drops the cached mappings of pid (call it when the process exits).
// Binary symbol tables stay cached for other processes.
func (s *Symbolizer) Forget(pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.procs, pid)
}

// Close releases all cached state. Symbolize keeps working afterwards but
// resolves nothing; Prepare fails.
func (s *Symbolizer) Close() error {
	s.mu.Lock()
	s.procs = nil
	s.mu.Unlock()
	s.cache.close()
	return nil
}

// Stats returns the current counters.
func (s *Symbolizer) Stats() Stats {
	return Stats{
		Hits:            s.hits.Load(),
		Misses:          s.misses.Load(),
		BinariesCached:  uint64(s.cache.len()),
		BinariesEvicted: s.cache.evicted.Load(),
		MapReloads:      s.mapReloads.Load(),

		BinariesMalformed: s.malformed.Load(),
		MapsTruncated:     s.truncated.Load(),
	}
}

// proc returns the state of pid, creating it when create is set. It returns
// nil once the Symbolizer is closed; created reports a new entry.
func (s *Symbolizer) proc(pid uint32, create bool) (p *procState, created bool) {
	s.mu.RLock()
	p = s.procs[pid]
	s.mu.RUnlock()
	if p != nil || !create {
		return p, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.procs == nil {
		return nil, false
	}
	if p = s.procs[pid]; p != nil {
		return p, false
	}
	if len(s.procs) >= pruneThreshold {
		s.pruneLocked()
	}
	p = &procState{pid: pid}
	s.procs[pid] = p
	return p, true
}

// dropIfNeverLoaded forgets p (the state of pid) if its maps were never read
// successfully, so failed Prepare calls leave nothing behind.
func (s *Symbolizer) dropIfNeverLoaded(pid uint32, p *procState) {
	p.mu.Lock()
	never := !p.everOK
	p.mu.Unlock()
	if !never {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.procs[pid] == p {
		delete(s.procs, pid)
	}
}

// pruneLocked drops pids whose maps could never be read (bogus or long gone
// pids seen only through Symbolize) so they cannot accumulate. s.mu must be
// held.
func (s *Symbolizer) pruneLocked() {
	now := s.now()
	if now.Sub(s.lastPrune) < mapsReloadInterval {
		return
	}
	s.lastPrune = now
	for pid, p := range s.procs {
		if !p.mu.TryLock() {
			continue
		}
		dead := !p.everOK && now.Sub(p.lastLoad) >= mapsReloadInterval
		p.mu.Unlock()
		if dead {
			delete(s.procs, pid)
		}
	}
}

// loadMaps (re-)reads the maps of p unless the last attempt is more recent
// than minInterval. It reports whether a read was attempted.
func (s *Symbolizer) loadMaps(p *procState, minInterval time.Duration, prepare bool) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := s.now()
	// Misses spend re-read tokens: one comes back per minInterval, up to mapsReloadBurst.
	// Prepare (run when a process is first seen, at exec, before the dynamic loader has mapped
	// its libraries) fills the bucket, so a starting process's first misses re-read at once,
	// while bogus addresses cannot make us re-read more than once per interval for long.
	if prepare {
		p.reloadTokens = mapsReloadBurst
	} else if minInterval > 0 && !p.lastLoad.IsZero() {
		p.reloadTokens = min(mapsReloadBurst, p.reloadTokens+float64(now.Sub(p.lastLoad))/float64(minInterval))
		if p.reloadTokens < 1 {
			return false, nil
		}
		p.reloadTokens--
	}
	p.lastLoad = now
	data, cut, err := ReadMaps(filepath.Join(s.procRoot, strconv.FormatUint(uint64(p.pid), 10), "maps"))
	if err != nil {
		return true, err
	}
	p.everOK = true
	maps, more := parseMaps(data)
	if cut || more {
		s.truncated.Add(1)
	}
	p.install(maps)
	return true, nil
}

// resolve returns the binary mapped by m, opening and loading it if needed.
func (s *Symbolizer) resolve(pid uint32, m *mapping, tick uint64) *binary {
	if b := m.ref.Load(); b != nil && !b.evicted.Load() {
		b.lastUsed.Store(tick)
		return b
	}
	if m.special() && m.path != "[vdso]" {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if b := m.ref.Load(); b != nil && !b.evicted.Load() {
		b.lastUsed.Store(tick)
		return b
	}
	if m.key != "" {
		if b := s.cache.get(m.key, tick); b != nil {
			m.ref.Store(b)
			return b
		}
	}
	now := s.now()
	if !m.failedAt.IsZero() && now.Sub(m.failedAt) < resolveRetry {
		return nil
	}
	var b *binary
	if m.path == "[vdso]" {
		b = s.loadVDSO(pid, m, tick)
	} else {
		b = s.loadMapped(pid, m, tick)
	}
	if b == nil {
		m.failedAt = now
		m.ref.Store(nil)
		return nil
	}
	m.failedAt = time.Time{}
	m.ref.Store(b)
	return b
}

// loadMapped opens the file of m and returns its (possibly cached) binary.
// m.mu must be held.
func (s *Symbolizer) loadMapped(pid uint32, m *mapping, tick uint64) *binary {
	f, ef, key, err := s.openMapped(pid, m, m.key)
	if err != nil {
		return nil
	}
	defer f.Close()
	m.key = key
	return s.cache.getOrLoad(key, tick, func() *binary { return s.load(ef, key) })
}

// load is loadBinary, counting a binary whose tables were not all read.
func (s *Symbolizer) load(ef *elf.File, key string) *binary {
	b := loadBinary(ef, key)
	if b.problem != nil {
		s.malformed.Add(1)
	}
	return b
}

// openMapped opens the file behind m, trying in order
// <ProcRoot>/<pid>/root/<path> (the process' mount namespace),
// <ProcRoot>/<pid>/map_files/<start>-<end> (also works for deleted files) and
// the plain path. When wantKey is set, only a file with that identity is
// accepted; otherwise the plain path must at least have the mapping's inode.
func (s *Symbolizer) openMapped(pid uint32, m *mapping, wantKey string) (*os.File, *elf.File, string, error) {
	type candidate struct {
		path       string
		checkInode bool
	}
	pidDir := filepath.Join(s.procRoot, strconv.FormatUint(uint64(pid), 10))
	clean := filepath.Clean(m.path) // kernel paths are absolute and clean; be defensive
	var cands [3]candidate
	n := 0
	if !m.deleted {
		cands[n] = candidate{path: filepath.Join(pidDir, "root", clean)}
		n++
	}
	cands[n] = candidate{path: filepath.Join(pidDir, "map_files",
		strconv.FormatUint(m.start, 16)+"-"+strconv.FormatUint(m.end, 16))}
	n++
	if !m.deleted {
		cands[n] = candidate{path: clean, checkInode: true}
		n++
	}
	lastErr := error(os.ErrNotExist)
	for _, c := range cands[:n] {
		f, fi, err := openRegular(c.path)
		if err != nil {
			lastErr = err
			continue
		}
		var ef *elf.File
		err = elfinfo.Guard(func() (err error) { ef, err = elf.NewFile(f); return err })
		if err != nil {
			f.Close()
			lastErr = err
			continue
		}
		key := identityKey(ef, fi.Size(), fi, "")
		switch {
		case wantKey != "" && key != wantKey:
			lastErr = fmt.Errorf("%s: different binary than mapped", c.path)
		case wantKey == "" && c.checkInode && m.inode != 0 && !sameInode(fi, m.inode):
			lastErr = fmt.Errorf("%s: different inode than mapped", c.path)
		case key == "":
			lastErr = fmt.Errorf("%s: no identity", c.path)
		default:
			return f, ef, key, nil
		}
		f.Close()
	}
	return nil, nil, "", lastErr
}

func sameInode(fi os.FileInfo, ino uint64) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Ino == ino
}

// loadVDSO reads the [vdso] image from the process' memory.
func (s *Symbolizer) loadVDSO(pid uint32, m *mapping, tick uint64) *binary {
	size := m.end - m.start
	if size == 0 || size > maxVDSOSize || m.start > math.MaxInt64 {
		return nil
	}
	f, err := os.Open(filepath.Join(s.procRoot, strconv.FormatUint(uint64(pid), 10), "mem"))
	if err != nil {
		return nil
	}
	defer f.Close()
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, int64(m.start)); err != nil {
		return nil
	}
	var ef *elf.File
	if elfinfo.Guard(func() (err error) { ef, err = elf.NewFile(bytes.NewReader(buf)); return err }) != nil {
		return nil
	}
	h := fnv.New64a()
	h.Write(buf)
	key := "vdso:" + identityKey(ef, int64(size), nil, strconv.FormatUint(h.Sum64(), 16))
	m.key = key
	return s.cache.getOrLoad(key, tick, func() *binary { return s.load(ef, key) })
}

// reopener reopens the file of a mapping for lazy DWARF loading, accepting
// only the binary with the given key.
type reopener struct {
	s   *Symbolizer
	pid uint32
	m   *mapping
	key string
}

func (r reopener) open() (*os.File, error) {
	if r.s == nil || r.m.special() {
		return nil, os.ErrNotExist
	}
	f, _, _, err := r.s.openMapped(r.pid, r.m, r.key)
	return f, err
}
