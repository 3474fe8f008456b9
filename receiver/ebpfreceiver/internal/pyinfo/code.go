package pyinfo

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Code is what the receiver needs of one code object. A field that could not be read is empty
// (FirstLine aside) and listed in Unreadable; such a Code is not cached.
type Code struct {
	Qualname  string
	Filename  string
	FirstLine int
	// Flags is co_flags: Coroutine reads it.
	Flags uint32
	// Unreadable says which fields failed a check and why (qualname, filename, linetable).
	Unreadable []*ReadError
	lineTable  []byte
	noLines    bool          // the line table was not read: every line is -1
	lines      map[int32]int // instruction offset → line, as decoded so far
}

// Code flags (Include/cpython/code.h) that make a function a coroutine: async def, a generator
// decorated with types.coroutine, an async generator.
const (
	coCoroutine         = 0x0080
	coIterableCoroutine = 0x0100
	coAsyncGenerator    = 0x0200
)

// Coroutine reports whether the code is a coroutine's (async def, async generator): its frame is
// left at every await and resumed later, maybe after other coroutines ran on the thread.
func (c *Code) Coroutine() bool {
	return c.Flags&(coCoroutine|coIterableCoroutine|coAsyncGenerator) != 0
}

// Module is the module name the file suggests: the file's base name without .py, or the
// package directory for __init__.py.
func (c *Code) Module() string { return ModuleOf(c.Filename) }

// ModuleOf returns the module name of a source file path.
func ModuleOf(filename string) string {
	base := filepath.Base(filename)
	if base == "__init__.py" {
		return filepath.Base(filepath.Dir(filename))
	}
	return strings.TrimSuffix(base, ".py")
}

// maxCachedLines bounds the lines memoized per code object (then the memo starts over: a line
// is found again by walking the table).
const maxCachedLines = 128

// Line returns the source line of the instruction at lasti (code units), as
// PyCode_Addr2Line does for CPython 3.11's location table; -1 when it is not known.
func (c *Code) Line(lasti int32) int {
	if c.noLines {
		return -1
	}
	if l, ok := c.lines[lasti]; ok {
		return l
	}
	l := addr2Line(c.lineTable, c.FirstLine, int(lasti)*2)
	if c.lines == nil || len(c.lines) >= maxCachedLines {
		c.lines = map[int32]int{}
	}
	c.lines[lasti] = l
	return l
}

// Fields of a code object named in ReadErrors (the receiver's metric label "field").
const (
	FieldCode      = "code" // the code object itself (its header)
	FieldQualname  = "qualname"
	FieldFilename  = "filename"
	FieldLineTable = "linetable"
)

// Reasons a value read from a process is refused (the receiver's metric label "reason").
const (
	ReasonUnreadable     = "unreadable"         // the memory could not be read: unmapped, freed, the process gone
	ReasonNull           = "null"               // a null pointer where an object must be
	ReasonNegative       = "negative_length"    // a negative length or size
	ReasonTooLong        = "too_long"           // a length beyond the bounds below
	ReasonRepresentation = "bad_representation" // a str representation CPython does not make (or we cannot read)
	ReasonBudget         = "read_budget"        // the stack's read budget was spent (StackReadBudget)
	ReasonTimeout        = "read_timeout"       // reading the process's memory took longer than Reader.Timeout
	ReasonStalled        = "process_stalled"    // an earlier read of the process has not returned yet
)

// ReadError is a value of a process that failed a check: which field, and why.
type ReadError struct {
	Field, Reason string
	Err           error
}

func (e *ReadError) Error() string {
	if e.Err == nil {
		return e.Field + ": " + e.Reason
	}
	return e.Field + ": " + e.Reason + ": " + e.Err.Error()
}

func (e *ReadError) Unwrap() error { return e.Err }

// Limits on what is read from a process. Every length read from a process is compared with
// them before anything is allocated or multiplied.
const (
	maxOpenProcesses = 256
	// maxStringBytes bounds a qualified name or a file name (bytes of the str's data: length
	// times kind). The longest in CPython 3.11's standard library and a large site-packages
	// are under 200 characters.
	maxStringBytes = 4096
	// maxLineTableBytes bounds a location table. The largest seen (sympy's generated
	// benchmarks) is 710 KB.
	maxLineTableBytes = 1 << 20
	// StackReadBudget bounds what resolving one stack reads from a process beyond its cache
	// (then the remaining frames are unresolved, ReasonBudget): 96 frames of new code objects
	// with the largest tables would otherwise read 96 MiB for one record. One code object
	// may overshoot it (at most maxLineTableBytes and two strings).
	StackReadBudget = 4 << 20
	// DefaultMaxCacheBytes bounds the code objects cached across all processes (names, files,
	// tables and a fixed overhead each, codeOverhead).
	DefaultMaxCacheBytes = 64 << 20
	codeOverhead         = 256 + maxCachedLines*32
	// DefaultTimeout bounds one code object's reads from /proc/<pid>/mem: a pointer into a
	// mapping whose page-in never completes (a FUSE file the process serves itself, a hung
	// network file system) would block the read, and with it the receiver, for good.
	DefaultTimeout = time.Second
	// maxStalledReads bounds the reads left blocked after their timeout (each holds a
	// goroutine until it returns); beyond it no process memory is read (ReasonStalled).
	maxStalledReads = 64
)

// Mem is a process's memory: /proc/<pid>/mem, or what a test stands in for it.
type Mem interface {
	io.ReaderAt
	io.Closer
}

// Reader resolves code objects of processes, reading /proc/<pid>/mem, with a cache per process
// keyed by code object address (code objects of functions live as long as their module). Not
// safe for concurrent use (the receiver's reader goroutine only).
type Reader struct {
	procs map[uint32]*procCodes
	// open opens a process's memory (/proc/<pid>/mem under the proc root).
	open func(pid uint32) (Mem, error)
	// MaxCodesPerProcess bounds a process's cache; when full it is emptied.
	MaxCodesPerProcess int
	// MaxCacheBytes bounds the cache across processes: past it, the process being read has its
	// cache emptied, and if that is not enough, every process has.
	MaxCacheBytes int64
	// Timeout bounds one code object's reads (0: no bound, the read is made in place).
	Timeout time.Duration

	cacheBytes int64
	stalled    atomic.Int32 // reads blocked past their timeout
}

type procCodes struct {
	mem     Mem
	codes   map[uint64]*Code
	bytes   int64
	stalled atomic.Bool // a read timed out and has not returned
}

// NewReader returns a Reader reading processes under procRoot.
func NewReader(procRoot string) *Reader {
	return NewMemReader(func(pid uint32) (Mem, error) {
		return os.Open(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "mem"))
	})
}

// NewMemReader returns a Reader reading processes' memory through open.
func NewMemReader(open func(pid uint32) (Mem, error)) *Reader {
	return &Reader{
		procs: map[uint32]*procCodes{}, open: open,
		MaxCodesPerProcess: 50000, MaxCacheBytes: DefaultMaxCacheBytes, Timeout: DefaultTimeout,
	}
}

// Forget drops what is cached of a process (it exited or exec'd).
func (r *Reader) Forget(pid uint32) {
	if p := r.procs[pid]; p != nil {
		if p.mem != nil {
			// A read still blocked in another goroutine keeps the descriptor open until it
			// returns (os.File reference counts it).
			p.mem.Close()
		}
		r.cacheBytes -= p.bytes
		delete(r.procs, pid)
	}
}

// Close releases every open process memory file.
func (r *Reader) Close() {
	for pid := range r.procs {
		r.Forget(pid)
	}
}

// Code returns the code object at addr of process pid. budget, when not nil, is what this
// stack may still read from the process: an uncached read is refused once it is spent, and
// what is read is subtracted. The error, when the code object itself could not be read, is a
// *ReadError; fields that could not be read are in the Code's Unreadable.
func (r *Reader) Code(pid uint32, l *Layout, addr uint64, budget *int64) (*Code, error) {
	p, err := r.proc(pid)
	if err != nil {
		return nil, &ReadError{Field: FieldCode, Reason: ReasonUnreadable, Err: err}
	}
	if c := p.codes[addr]; c != nil {
		return c, nil
	}
	if budget != nil && *budget <= 0 {
		return nil, &ReadError{Field: FieldCode, Reason: ReasonBudget}
	}
	c, n, err := r.read(p, l, addr)
	if budget != nil {
		*budget -= n
	}
	if err != nil {
		return nil, err
	}
	if len(c.Unreadable) > 0 {
		return c, nil // not cached: a code object being built or freed may read well later
	}
	r.cache(p, addr, c)
	return c, nil
}

// read reads a code object, within the Reader's timeout.
func (r *Reader) read(p *procCodes, l *Layout, addr uint64) (*Code, int64, error) {
	type result struct {
		c   *Code
		n   int64
		err error
	}
	res, err := timed(r, p, func() result {
		c, n, err := readCode(p.mem, l, addr)
		return result{c, n, err}
	})
	if err != nil {
		return nil, 0, err
	}
	return res.c, res.n, res.err
}

// proc is process pid's open memory and code cache, opened on first use; the open files are
// bounded: another process's is dropped first (its codes are read again later).
func (r *Reader) proc(pid uint32) (*procCodes, error) {
	if p := r.procs[pid]; p != nil {
		return p, nil
	}
	if len(r.procs) >= maxOpenProcesses {
		for other := range r.procs {
			r.Forget(other)
			break
		}
	}
	mem, err := r.open(pid)
	if err != nil {
		return nil, err
	}
	p := &procCodes{mem: mem, codes: map[uint64]*Code{}}
	r.procs[pid] = p
	return p, nil
}

// timed runs f, a read of process p's memory, within the Reader's timeout. The read cannot be
// interrupted: on a timeout it is left to finish on its own goroutine (f must not write to
// anything the caller keeps), nothing more of p is read until it returns, and it counts
// against maxStalledReads.
func timed[T any](r *Reader, p *procCodes, f func() T) (T, error) {
	var zero T
	if r.Timeout <= 0 {
		return f(), nil
	}
	if p.stalled.Load() || r.stalled.Load() >= maxStalledReads {
		return zero, &ReadError{Field: FieldCode, Reason: ReasonStalled}
	}
	done := make(chan T, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(r.Timeout)
	defer timer.Stop()
	select {
	case v := <-done:
		return v, nil
	case <-timer.C:
		p.stalled.Store(true)
		r.stalled.Add(1)
		go func() {
			<-done
			p.stalled.Store(false)
			r.stalled.Add(-1)
		}()
		return zero, &ReadError{Field: FieldCode, Reason: ReasonTimeout, Err: fmt.Errorf("no answer in %v", r.Timeout)}
	}
}

func (r *Reader) cache(p *procCodes, addr uint64, c *Code) {
	size := int64(len(c.Qualname)+len(c.Filename)+len(c.lineTable)) + codeOverhead
	if len(p.codes) >= r.MaxCodesPerProcess || r.cacheBytes+size > r.MaxCacheBytes {
		r.cacheBytes -= p.bytes
		p.bytes = 0
		clear(p.codes)
	}
	if r.cacheBytes+size > r.MaxCacheBytes {
		for _, other := range r.procs {
			r.cacheBytes -= other.bytes
			other.bytes = 0
			clear(other.codes)
		}
	}
	if r.cacheBytes+size > r.MaxCacheBytes {
		return // larger than the whole cache
	}
	p.codes[addr] = c
	p.bytes += size
	r.cacheBytes += size
}

// readCode reads a code object and what it points to; it returns how many bytes it read.
func readCode(mem io.ReaderAt, l *Layout, addr uint64) (*Code, int64, error) {
	hdr := make([]byte, l.CodeLineTable+8)
	if err := readAt(mem, hdr, addr); err != nil {
		return nil, 0, &ReadError{Field: FieldCode, Reason: ReasonUnreadable, Err: fmt.Errorf("code object %#x: %w", addr, err)}
	}
	total := int64(len(hdr))
	ptr := func(off uint64) uint64 { return binary.LittleEndian.Uint64(hdr[off:]) }
	c := &Code{FirstLine: int(int32(binary.LittleEndian.Uint32(hdr[l.CodeFirstLine:])))}
	if l.CodeFlags != 0 && l.CodeFlags+4 <= uint64(len(hdr)) {
		c.Flags = binary.LittleEndian.Uint32(hdr[l.CodeFlags:])
	}
	fail := func(field string, err error) {
		re, ok := err.(*ReadError)
		if !ok {
			re = &ReadError{Reason: ReasonUnreadable, Err: err}
		}
		re.Field = field
		c.Unreadable = append(c.Unreadable, re)
	}
	s, n, err := readStr(mem, l, ptr(l.CodeQualname))
	total += n
	if err != nil {
		fail(FieldQualname, err)
	}
	c.Qualname = escapeControl(s)
	s, n, err = readStr(mem, l, ptr(l.CodeFilename))
	total += n
	if err != nil {
		fail(FieldFilename, err)
	}
	c.Filename = escapeControl(s)
	b, n, err := readBytes(mem, l, ptr(l.CodeLineTable), maxLineTableBytes)
	total += n
	if err != nil {
		fail(FieldLineTable, err)
		c.noLines = true
	}
	c.lineTable = b
	return c, total, nil
}

// readAt reads len(b) bytes at a process address; an address past the int64 range (kernel
// space, or garbage) is refused before it becomes a negative offset.
func readAt(mem io.ReaderAt, b []byte, addr uint64) error {
	if addr > math.MaxInt64-uint64(len(b)) {
		return fmt.Errorf("address %#x out of range", addr)
	}
	n, err := mem.ReadAt(b, int64(addr))
	if n == len(b) {
		return nil // io.ReaderAt may return io.EOF with a full read
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func refused(reason, format string, args ...any) error {
	return &ReadError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// readStr reads a compact str object (the only kind the interpreter makes for names and
// file names). It returns how many bytes it read; errors are *ReadError without a field.
func readStr(mem io.ReaderAt, l *Layout, addr uint64) (string, int64, error) {
	if addr == 0 {
		return "", 0, refused(ReasonNull, "null str pointer")
	}
	hdr := make([]byte, max(l.UnicodeState+4, l.UnicodeLength+8))
	if err := readAt(mem, hdr, addr); err != nil {
		return "", 0, &ReadError{Reason: ReasonUnreadable, Err: err}
	}
	length := int64(binary.LittleEndian.Uint64(hdr[l.UnicodeLength:]))
	state := binary.LittleEndian.Uint32(hdr[l.UnicodeState:])
	kind, compact, ascii := int64(state>>2&7), state>>5&1 == 1, state>>6&1 == 1
	if !compact || (kind != 1 && kind != 2 && kind != 4) || (ascii && kind != 1) {
		return "", int64(len(hdr)), refused(ReasonRepresentation, "str representation (state %#x) not supported", state)
	}
	if length < 0 {
		return "", int64(len(hdr)), refused(ReasonNegative, "str of %d characters", length)
	}
	// Divide the bound rather than multiply the length: length*kind can overflow.
	if length > maxStringBytes/kind {
		return "", int64(len(hdr)), refused(ReasonTooLong, "str of %d characters of %d bytes", length, kind)
	}
	data := addr + l.UnicodeCompactData
	if ascii {
		data = addr + l.UnicodeASCIIData
	}
	raw := make([]byte, length*kind)
	if err := readAt(mem, raw, data); err != nil {
		return "", int64(len(hdr)), &ReadError{Reason: ReasonUnreadable, Err: err}
	}
	return DecodeUnicode(raw, int(kind), ascii), int64(len(hdr) + len(raw)), nil
}

// escapeControl writes control characters (C0, DEL, C1) as \xHH: names and files end up in
// newline-separated stack traces and logs, where a name with a newline could forge frames.
func escapeControl(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var sb strings.Builder
	for _, r := range s {
		if isControl(r) {
			fmt.Fprintf(&sb, "\\x%02x", r)
			continue
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }

// DecodeUnicode turns a str object's data (kind bytes per character) into UTF-8.
func DecodeUnicode(raw []byte, kind int, ascii bool) string {
	switch kind {
	case 1:
		if ascii {
			return strings.ToValidUTF8(string(raw), "\uFFFD")
		}
		rs := make([]rune, len(raw)) // latin-1
		for i, b := range raw {
			rs[i] = rune(b)
		}
		return string(rs)
	case 2:
		u := make([]uint16, len(raw)/2)
		for i := range u {
			u[i] = binary.LittleEndian.Uint16(raw[2*i:])
		}
		return string(utf16.Decode(u)) // UCS-2: no surrogate pairs in valid data
	case 4:
		var sb strings.Builder
		for i := 0; i+4 <= len(raw); i += 4 {
			r := rune(binary.LittleEndian.Uint32(raw[i:]))
			if !utf8.ValidRune(r) {
				r = utf8.RuneError
			}
			sb.WriteRune(r)
		}
		return sb.String()
	}
	return ""
}

// readBytes reads a bytes object of at most limit bytes. It returns how many bytes it read;
// errors are *ReadError without a field.
func readBytes(mem io.ReaderAt, l *Layout, addr uint64, limit int64) ([]byte, int64, error) {
	if addr == 0 {
		return nil, 0, refused(ReasonNull, "null bytes pointer")
	}
	var hdr [8]byte
	if err := readAt(mem, hdr[:], addr+l.BytesSize); err != nil {
		return nil, 0, &ReadError{Reason: ReasonUnreadable, Err: err}
	}
	n := int64(binary.LittleEndian.Uint64(hdr[:]))
	if n < 0 {
		return nil, 8, refused(ReasonNegative, "bytes object of %d bytes", n)
	}
	if n > limit {
		return nil, 8, refused(ReasonTooLong, "bytes object of %d bytes", n)
	}
	b := make([]byte, n)
	if err := readAt(mem, b, addr+l.BytesData); err != nil {
		return nil, 8, &ReadError{Reason: ReasonUnreadable, Err: err}
	}
	return b, 8 + n, nil
}

// addr2Line walks a CPython 3.11 location table (Objects/locations.md) to the entry that holds
// the byte offset addr. Each entry starts with a byte 1CCCCLLL: code C, length L+1 code units.
func addr2Line(table []byte, firstLine, addr int) int {
	if addr < 0 {
		return firstLine
	}
	line := firstLine
	end := 0
	i := 0
	for i < len(table) {
		first := table[i]
		if first&0x80 == 0 {
			i++ // not an entry start (corrupt table): resynchronise
			continue
		}
		code := int(first>>3) & 15
		start := end
		end += (int(first&7) + 1) * 2
		entryLine := -1
		j := i + 1
		switch {
		case code == 15: // no location
		case code == 14 || code == 13: // long form, no columns: signed line delta first
			d, _ := signedVarint(table, j)
			line += d
			entryLine = line
		case code >= 10: // one-line forms
			line += code - 10
			entryLine = line
		default: // short forms: same line
			entryLine = line
		}
		// Skip to the next entry start.
		i++
		for i < len(table) && table[i]&0x80 == 0 {
			i++
		}
		if addr >= start && addr < end {
			return entryLine
		}
	}
	return -1
}

func varint(b []byte, i int) (int, int) {
	if i >= len(b) {
		return 0, i
	}
	read := b[i]
	i++
	val := int(read & 63)
	shift := 0
	for read&64 != 0 && i < len(b) {
		read = b[i]
		i++
		shift += 6
		val |= int(read&63) << shift
	}
	return val, i
}

func signedVarint(b []byte, i int) (int, int) {
	u, i := varint(b, i)
	if u&1 != 0 {
		return -(u >> 1), i
	}
	return u >> 1, i
}

// ReadMem reads len(b) bytes at addr of process pid's memory, within the Reader's timeout (a
// process whose reads stall is not read again until the stalled read returns).
func (r *Reader) ReadMem(pid uint32, addr uint64, b []byte) error {
	p, err := r.proc(pid)
	if err != nil {
		return err
	}
	type result struct {
		buf []byte // the read goroutine may outlive this call: never b
		err error
	}
	res, err := timed(r, p, func() result {
		buf := make([]byte, len(b))
		return result{buf, readAt(p.mem, buf, addr)}
	})
	if err != nil {
		return err
	}
	copy(b, res.buf)
	return res.err
}
