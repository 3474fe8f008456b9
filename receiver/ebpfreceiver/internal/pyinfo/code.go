package pyinfo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Code is what the receiver needs of one code object.
type Code struct {
	Qualname  string
	Filename  string
	FirstLine int
	lineTable []byte
	lines     map[int32]int // instruction offset → line, as decoded so far
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

// Line returns the source line of the instruction at lasti (code units), as
// PyCode_Addr2Line does for CPython 3.11's location table.
func (c *Code) Line(lasti int32) int {
	if l, ok := c.lines[lasti]; ok {
		return l
	}
	l := addr2Line(c.lineTable, c.FirstLine, int(lasti)*2)
	if c.lines == nil || len(c.lines) >= 1024 {
		c.lines = map[int32]int{}
	}
	c.lines[lasti] = l
	return l
}

// Limits on what is read from a process for one code object, and on processes kept open.
const (
	maxOpenProcesses  = 256
	maxStringBytes    = 4096
	maxLineTableBytes = 1 << 20
)

// Reader resolves code objects of processes, reading /proc/<pid>/mem, with a cache per process
// keyed by code object address (code objects of functions live as long as their module).
type Reader struct {
	procRoot string
	procs    map[uint32]*procCodes
	// MaxCodesPerProcess bounds the cache; when full it is emptied.
	MaxCodesPerProcess int
}

type procCodes struct {
	mem   *os.File
	codes map[uint64]*Code
}

// NewReader returns a Reader reading processes under procRoot.
func NewReader(procRoot string) *Reader {
	return &Reader{procRoot: procRoot, procs: map[uint32]*procCodes{}, MaxCodesPerProcess: 50000}
}

// Forget drops what is cached of a process (it exited or exec'd).
func (r *Reader) Forget(pid uint32) {
	if p := r.procs[pid]; p != nil {
		if p.mem != nil {
			p.mem.Close()
		}
		delete(r.procs, pid)
	}
}

// Close releases every open process memory file.
func (r *Reader) Close() {
	for pid := range r.procs {
		r.Forget(pid)
	}
}

// Code returns the code object at addr of process pid.
func (r *Reader) Code(pid uint32, l *Layout, addr uint64) (*Code, error) {
	p := r.procs[pid]
	if p == nil {
		if len(r.procs) >= maxOpenProcesses {
			// Bound the open files: drop another process's (its codes are read again later).
			for other := range r.procs {
				r.Forget(other)
				break
			}
		}
		mem, err := os.Open(filepath.Join(r.procRoot, strconv.FormatUint(uint64(pid), 10), "mem"))
		if err != nil {
			return nil, err
		}
		p = &procCodes{mem: mem, codes: map[uint64]*Code{}}
		r.procs[pid] = p
	}
	if c := p.codes[addr]; c != nil {
		return c, nil
	}
	c, err := readCode(p.mem, l, addr)
	if err != nil {
		return nil, err
	}
	if len(p.codes) >= r.MaxCodesPerProcess {
		clear(p.codes)
	}
	p.codes[addr] = c
	return c, nil
}

func readCode(mem *os.File, l *Layout, addr uint64) (*Code, error) {
	hdr := make([]byte, l.CodeLineTable+8)
	if _, err := mem.ReadAt(hdr, int64(addr)); err != nil {
		return nil, fmt.Errorf("code object %#x: %w", addr, err)
	}
	ptr := func(off uint64) uint64 { return binary.LittleEndian.Uint64(hdr[off:]) }
	c := &Code{FirstLine: int(int32(binary.LittleEndian.Uint32(hdr[l.CodeFirstLine:])))}
	var err error
	if c.Qualname, err = readStr(mem, l, ptr(l.CodeQualname)); err != nil {
		return nil, fmt.Errorf("code object %#x: qualified name: %w", addr, err)
	}
	if c.Filename, err = readStr(mem, l, ptr(l.CodeFilename)); err != nil {
		return nil, fmt.Errorf("code object %#x: file name: %w", addr, err)
	}
	if c.lineTable, err = readBytes(mem, l, ptr(l.CodeLineTable)); err != nil {
		return nil, fmt.Errorf("code object %#x: line table: %w", addr, err)
	}
	return c, nil
}

// readStr reads a compact str object.
func readStr(mem *os.File, l *Layout, addr uint64) (string, error) {
	if addr == 0 {
		return "", errors.New("null string")
	}
	hdr := make([]byte, l.UnicodeState+4)
	if _, err := mem.ReadAt(hdr, int64(addr)); err != nil {
		return "", err
	}
	length := int64(binary.LittleEndian.Uint64(hdr[l.UnicodeLength:]))
	state := binary.LittleEndian.Uint32(hdr[l.UnicodeState:])
	kind, compact, ascii := int(state>>2&7), state>>5&1 == 1, state>>6&1 == 1
	if !compact || (kind != 1 && kind != 2 && kind != 4) {
		return "", fmt.Errorf("string representation (state %#x) not supported", state)
	}
	if length < 0 || length*int64(kind) > maxStringBytes {
		return "", fmt.Errorf("string of %d characters is too long", length)
	}
	data := addr + l.UnicodeCompactData
	if ascii {
		data = addr + l.UnicodeASCIIData
	}
	raw := make([]byte, length*int64(kind))
	if _, err := mem.ReadAt(raw, int64(data)); err != nil {
		return "", err
	}
	return DecodeUnicode(raw, kind, ascii), nil
}

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

func readBytes(mem *os.File, l *Layout, addr uint64) ([]byte, error) {
	if addr == 0 {
		return nil, errors.New("null bytes object")
	}
	hdr := make([]byte, 8)
	if _, err := mem.ReadAt(hdr, int64(addr+l.BytesSize)); err != nil {
		return nil, err
	}
	n := int64(binary.LittleEndian.Uint64(hdr))
	if n < 0 || n > maxLineTableBytes {
		return nil, fmt.Errorf("bytes object of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := mem.ReadAt(b, int64(addr+l.BytesData)); err != nil {
		return nil, err
	}
	return b, nil
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
