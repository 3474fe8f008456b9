package pyinfo

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/usdt"
)

// ErrNotPython: the binary is not a CPython interpreter (no _PyRuntime symbol).
var ErrNotPython = errors.New("not a CPython interpreter")

// ErrTooLarge: the binary's symbol tables are larger than maxSymbolTableBytes; it is not
// inspected.
var ErrTooLarge = errors.New("symbol table too large")

// maxSymbolTableBytes bounds a symbol table, or its string table, that Inspect reads: the
// whole table is read and parsed (into about 3 times its size), and any traced program, or a
// file it names python3.X, is inspected. CPython's are under 400 KB.
const maxSymbolTableBytes = 16 << 20

// Interpreter is a CPython binary: an executable with the interpreter linked in, or libpython.
type Interpreter struct {
	Path    string
	Version string  // "3.11", "" when it could not be read
	Layout  *Layout // nil: a version without a layout (native frames only)
	// RuntimeAddr is the link-time address of _PyRuntime.
	RuntimeAddr uint64
	// Audit is the `python:audit` USDT probe; nil when the binary was built without probes.
	Audit *usdt.Probe
	// LoadSegment: the first loadable segment's address and offset, to turn a mapping of the
	// file in a process into the load bias.
	FirstLoadVaddr, FirstLoadOffset uint64
	Shared                          bool // a shared library (libpython)
	// GenDealloc is gen_dealloc, PyCoro_Type's tp_dealloc: its link-time address and file
	// offset (0: not found, with why in GenDeallocErr). Coroutine calls end there.
	GenDealloc, GenDeallocOffset uint64
	GenDeallocErr                error
}

var (
	pythonName    = regexp.MustCompile(`(?:^|/)python(\d)\.(\d+)([a-z]*)$`)
	libpythonName = regexp.MustCompile(`(?:^|/)libpython(\d)\.(\d+)([a-z]*)\.so`)
)

// Inspect reads an interpreter binary. The binary is the traced process's: debug/elf's own
// panics on a crafted file come back as an error wrapping elfinfo.ErrMalformed.
func Inspect(path string) (in *Interpreter, err error) {
	err = elfinfo.Guard(func() error {
		f, err := elf.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		in, err = inspectELF(f, path)
		return err
	})
	return in, err
}

// inspectELF reads an interpreter from an opened ELF file; path is the name it goes by (the
// version and the free-threaded suffix may come from it). Both are the traced process's.
func inspectELF(f *elf.File, path string) (*Interpreter, error) {
	if err := checkSymbolTable(f, elf.SHT_DYNSYM); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	in := &Interpreter{Path: path, Shared: f.Type == elf.ET_DYN && libpythonName.MatchString(path)}
	// An interpreter exports _PyRuntime for extension modules; the full symbol table (large in
	// big native programs) is read, and so checked, only for files named like an interpreter.
	syms, _ := f.DynamicSymbols()
	if !hasSymbol(syms, "_PyRuntime") && (pythonName.MatchString(path) || libpythonName.MatchString(path)) {
		if err := checkSymbolTable(f, elf.SHT_SYMTAB); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if more, err := f.Symbols(); err == nil {
			syms = append(syms, more...)
		}
	}
	var version, coroType uint64
	freeThreaded := false
	for _, s := range syms {
		switch s.Name {
		case "_Py_MergeZeroLocalRefcount": // only in free-threaded (no GIL) builds
			freeThreaded = true
		case "_PyRuntime":
			in.RuntimeAddr = s.Value
		case "PyCoro_Type":
			coroType = s.Value
		case "Py_Version":
			if v, err := readUint32(f, s.Value); err == nil {
				version = uint64(v)
			}
		}
	}
	if in.RuntimeAddr == 0 {
		return nil, fmt.Errorf("%s: %w", path, ErrNotPython)
	}
	var name []string // python3.X[abi] or libpython3.X[abi].so, when the file is named so
	for _, re := range []*regexp.Regexp{pythonName, libpythonName} {
		if m := re.FindStringSubmatch(path); m != nil {
			name = m
		}
	}
	switch {
	case version != 0:
		in.Version = fmt.Sprintf("%d.%d", version>>24&0xff, version>>16&0xff)
	case name != nil:
		in.Version = name[1] + "." + name[2] // before 3.11 there is no Py_Version
	}
	if name != nil && strings.Contains(name[3], "t") {
		freeThreaded = true
	}
	if freeThreaded && in.Version != "" {
		in.Version += "t" // another object layout: no layout of ours, native frames only
	}
	in.Layout = Layouts[in.Version]
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			in.FirstLoadVaddr, in.FirstLoadOffset = p.Vaddr, p.Off
			break
		}
	}
	if coroType == 0 {
		in.GenDeallocErr = fmt.Errorf("%w: no PyCoro_Type symbol", ErrNoGenDealloc)
	} else {
		in.GenDealloc, in.GenDeallocOffset, in.GenDeallocErr = genDealloc(f, coroType)
	}
	if probes, err := usdt.Read(f); err == nil {
		if p, err := usdt.Find(probes, "python", "audit"); err == nil && len(p.Args) >= 2 {
			in.Audit = &p
		}
	}
	return in, nil
}

// checkSymbolTable refuses symbol tables of type typ (found by type, as debug/elf does) and
// their string tables larger than maxSymbolTableBytes, before anything reads them.
func checkSymbolTable(f *elf.File, typ elf.SectionType) error {
	for _, s := range f.Sections {
		if s.Type != typ {
			continue
		}
		size := s.Size
		if int(s.Link) < len(f.Sections) {
			size = max(size, f.Sections[s.Link].Size)
		}
		if size > maxSymbolTableBytes {
			return fmt.Errorf("%w: %s (or its strings) of %d bytes", ErrTooLarge, s.Name, size)
		}
	}
	return nil
}

func hasSymbol(syms []elf.Symbol, name string) bool {
	for _, s := range syms {
		if s.Name == name {
			return true
		}
	}
	return false
}

// readUint32 reads a 4-byte value at a virtual address of the file. The bounds are compared
// without adding to addresses the file chose (a sum could wrap).
func readUint32(f *elf.File, addr uint64) (uint32, error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && p.Filesz >= 4 && addr-p.Vaddr <= p.Filesz-4 {
			var b [4]byte
			if _, err := p.ReadAt(b[:], int64(addr-p.Vaddr)); err != nil {
				return 0, err
			}
			return f.ByteOrder.Uint32(b[:]), nil
		}
	}
	return 0, fmt.Errorf("address %#x not in the file", addr)
}

// Mapping is one file mapped into a process.
type Mapping struct {
	Start, Offset uint64
	Path          string // as the process sees it
	Dev           uint64 // kernel encoding (major<<20 | minor)
	Inode         uint64
}

// maxCandidates bounds the files of one process taken for possible interpreters: each is
// opened and its symbols read, and a process can map thousands of files named libpython*.
const maxCandidates = 16

// ErrTooManyCandidates: the process maps more than maxCandidates files named like an
// interpreter; the first ones are returned with it.
var ErrTooManyCandidates = errors.New("too many files named like a Python interpreter")

// Candidates lists the files of a process that may be its interpreter: the executable first,
// then mapped libpython libraries. Paths are as the process sees them.
func Candidates(procRoot string, pid uint32) ([]Mapping, error) {
	f, err := os.Open(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "maps"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mapping
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m, ok := parseMapsLine(sc.Text())
		if !ok || seen[m.Path] {
			continue
		}
		base := filepath.Base(m.Path)
		if strings.HasPrefix(base, "libpython") || strings.HasPrefix(base, "python") {
			if len(out) == maxCandidates {
				return out, fmt.Errorf("%w (more than %d)", ErrTooManyCandidates, maxCandidates)
			}
			seen[m.Path] = true
			out = append(out, m)
		}
	}
	return out, sc.Err()
}

// FirstMapping returns the lowest mapping of path (by inode) in the process's maps.
func FirstMapping(procRoot string, pid uint32, dev, inode uint64) (Mapping, bool) {
	f, err := os.Open(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "maps"))
	if err != nil {
		return Mapping{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m, ok := parseMapsLine(sc.Text())
		if ok && m.Inode == inode && m.Dev == dev {
			return m, true
		}
	}
	return Mapping{}, false
}

// parseMapsLine parses "start-end perms offset maj:min inode path".
func parseMapsLine(line string) (Mapping, bool) {
	fields := strings.Fields(line)
	if len(fields) < 6 || !strings.HasPrefix(fields[5], "/") {
		return Mapping{}, false
	}
	addr, _, _ := strings.Cut(fields[0], "-")
	start, err1 := strconv.ParseUint(addr, 16, 64)
	off, err2 := strconv.ParseUint(fields[2], 16, 64)
	maj, min, _ := strings.Cut(fields[3], ":")
	ma, err3 := strconv.ParseUint(maj, 16, 32)
	mi, err4 := strconv.ParseUint(min, 16, 32)
	ino, err5 := strconv.ParseUint(fields[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil {
		return Mapping{}, false
	}
	return Mapping{Start: start, Offset: off, Path: strings.Join(fields[5:], " "), Dev: ma<<20 | mi, Inode: ino}, true
}

// Bias returns the load bias of the interpreter in a process where m is its first mapping.
func (in *Interpreter) Bias(m Mapping) uint64 {
	return m.Start - m.Offset - (in.FirstLoadVaddr - in.FirstLoadOffset)
}
