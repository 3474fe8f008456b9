package symbolize

import (
	"bytes"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const deletedSuffix = " (deleted)"

// mapping is one line of /proc/<pid>/maps. The address range and
// file identity are immutable; the binary resolution state is guarded by mu
// (and ref may be read lock-free).
type mapping struct {
	start, end uint64 // [start, end)
	offset     uint64 // file offset of start
	dev        string // "major:minor" as printed by the kernel
	inode      uint64
	module     string // path column exactly as printed (incl. " (deleted)")
	path       string // module without the " (deleted)" suffix
	deleted    bool
	// exec: the mapping is executable. Only executable mappings are symbolized; the others are
	// kept so that an address inside one (stack garbage met by frame-pointer unwinding) is known
	// not to be code, instead of looking like a library mapped since the last read.
	exec bool

	ref atomic.Pointer[binary] // resolved, possibly evicted, binary

	mu       sync.Mutex // serializes resolution
	key      string     // identity key of the mapped file, once known
	failedAt time.Time  // last failed resolution (zero: none)
}

// sameAs reports whether m describes the same mapping as o (used to carry
// resolution state over when maps are re-read).
func (m *mapping) sameAs(o *mapping) bool {
	return m.start == o.start && m.end == o.end && m.offset == o.offset && m.exec == o.exec &&
		m.dev == o.dev && m.inode == o.inode && m.module == o.module
}

// special reports whether the mapping is a kernel-provided pseudo file such as
// [vdso], [vsyscall] or an anonymous region (no file to open).
func (m *mapping) special() bool {
	return !strings.HasPrefix(m.path, "/")
}

// A process controls how many mappings it has (vm.max_map_count, 65530 by default) and
// their paths (up to 4 KiB each): the maps file is bounded before it is read.
const (
	maxMapsSize = 8 << 20 // bytes of /proc/<pid>/maps read
	maxMappings = 1 << 16 // lines of it parsed
)

// ReadMaps reads at most maxMapsSize bytes of the maps file at path, cut after the last whole
// line; cut reports that there was more. The receiver reads every traced process's maps file
// through it (its TLS library scan too), so one bound holds for all of them.
func ReadMaps(path string) (data []byte, cut bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, maxMapsSize+1))
	if err != nil {
		return nil, false, err
	}
	if len(data) > maxMapsSize {
		data = data[:bytes.LastIndexByte(data[:maxMapsSize], '\n')+1]
		cut = true
	}
	return data, cut, nil
}

// parseMaps parses the content of /proc/<pid>/maps and returns the
// mappings sorted by start address. Malformed lines are skipped; lines past
// maxMappings are dropped (more reports it).
func parseMaps(data []byte) (maps []*mapping, more bool) {
	var out []*mapping
	for len(data) > 0 {
		if len(out) == maxMappings {
			return sortMaps(out), true
		}
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if m, ok := parseMapsLine(string(line)); ok {
			out = append(out, m)
		}
	}
	return sortMaps(out), false
}

// sortMaps sorts maps by start address and drops overlapping entries.
func sortMaps(out []*mapping) []*mapping {
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	// Drop overlapping entries (never produced by the kernel) so that the
	// binary search in find stays correct.
	w := 0
	for i, m := range out {
		if i > 0 && w > 0 && m.start < out[w-1].end {
			continue
		}
		out[w] = m
		w++
	}
	return out[:w]
}

// nextField returns the next space-separated token of s and the rest.
func nextField(s string) (string, string) {
	s = strings.TrimLeft(s, " \t")
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

// parseMapsLine parses "start-end perms offset dev inode [path]" and returns
// ok only for well-formed lines.
func parseMapsLine(line string) (*mapping, bool) {
	rng, rest := nextField(line)
	perms, rest := nextField(rest)
	off, rest := nextField(rest)
	dev, rest := nextField(rest)
	ino, rest := nextField(rest)
	if rng == "" || ino == "" || len(perms) < 3 {
		return nil, false
	}
	dash := strings.IndexByte(rng, '-')
	if dash <= 0 {
		return nil, false
	}
	start, err1 := strconv.ParseUint(rng[:dash], 16, 64)
	end, err2 := strconv.ParseUint(rng[dash+1:], 16, 64)
	offset, err3 := strconv.ParseUint(off, 16, 64)
	inode, err4 := strconv.ParseUint(ino, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || end <= start {
		return nil, false
	}
	// The path is the rest of the line after the padding; it may contain
	// spaces.
	module := strings.TrimLeft(rest, " \t")
	m := &mapping{
		start:  start,
		end:    end,
		offset: offset,
		dev:    dev,
		inode:  inode,
		module: module,
		path:   module,
		exec:   perms[2] == 'x',
	}
	if strings.HasPrefix(module, "/") && strings.HasSuffix(module, deletedSuffix) {
		m.deleted = true
		m.path = strings.TrimSuffix(module, deletedSuffix)
	}
	return m, true
}

// findMapping returns the mapping containing addr, or nil.
func findMapping(maps []*mapping, addr uint64) *mapping {
	i := sort.Search(len(maps), func(i int) bool { return maps[i].end > addr })
	if i < len(maps) && maps[i].start <= addr {
		return maps[i]
	}
	return nil
}

// procState is the cached view of one process.
type procState struct {
	pid  uint32
	maps atomic.Pointer[[]*mapping] // immutable snapshot; nil until loaded

	mu       sync.Mutex // serializes (re)loads
	lastLoad time.Time  // time of the last load attempt (guarded by mu)
	everOK   bool       // a load has succeeded once (guarded by mu)
	// reloadTokens: re-reads a miss may still make now (guarded by mu); see loadMaps.
	reloadTokens float64
}

func (p *procState) snapshot() []*mapping {
	if mp := p.maps.Load(); mp != nil {
		return *mp
	}
	return nil
}

// install replaces the mapping snapshot, carrying resolution state of
// unchanged mappings over.
func (p *procState) install(fresh []*mapping) {
	old := p.snapshot()
	j := 0
	for i, m := range fresh {
		for j < len(old) && old[j].start < m.start {
			j++
		}
		if j < len(old) && old[j].sameAs(m) {
			fresh[i] = old[j]
		}
	}
	p.maps.Store(&fresh)
}
