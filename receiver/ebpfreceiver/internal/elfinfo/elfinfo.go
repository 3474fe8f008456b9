// Package elfinfo inspects x86-64 ELF executables and shared libraries so
// that the eBPF receiver can attach uprobes to their functions and read the
// functions' arguments from registers.
//
// It answers four questions about a binary:
//
//   - what it is: build ID, whether it is a Go program and which Go
//     version built it, whether it carries DWARF ([Open]);
//   - where a function is: its virtual address and size from the symbol
//     tables, or from the Go pclntab when the symbol table was stripped
//     ([Binary.Function]), and the file offset a uprobe needs
//     ([Binary.FileOffset]);
//   - where the function returns: the offsets of its RET instructions, used
//     instead of uretprobes, which must never be put on Go functions because
//     Go moves goroutine stacks ([Binary.ReturnOffsets]), and where a Go
//     function's entry probe sees each call once: after its stack bound
//     check, which runtime.morestack restarts ([Binary.EntryOffset]);
//   - where its arguments are at entry: which registers hold which
//     parameter, following Go's register ABI (ABIInternal) for Go functions
//     and the System V AMD64 ABI for C, C++ and Rust ([Binary.Args]).
//
// Only x86-64 (EM_X86_64, ELFCLASS64) binaries are supported.
//
// A traced process chooses its executable and libraries, so every binary is
// hostile input. Sizes are checked before anything is read: one section at
// most 256 MiB after decompression ([MaxSectionSize]), a symbol table at most
// 2Mi entries ([MaxSymbols]), the DWARF sections at most 512 MiB together
// ([MaxDWARFSize]), a Go pclntab at most 1Mi functions ([MaxGoFuncs]), a
// build ID note at most 1 MiB ([MaxNoteSize]), a function disassembled at
// most 64 MiB, and at most 65536 DWARF type nodes are visited for one
// function's parameters. A binary over a limit gives errors wrapping
// [ErrTooLarge]. debug/elf, debug/dwarf and debug/gosym may panic on crafted
// input: their panics are recovered where this package calls them and become
// errors wrapping [ErrMalformed] (a lookup that cannot fail, SourceLine, then
// says nothing). Callers count both as binaries they could not instrument.
package elfinfo

import (
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Binary is an opened ELF executable or shared library. Its methods are safe
// for concurrent use. Close it when done.
type Binary struct {
	// Path is the path the binary was opened from.
	Path string
	// BuildID is the hex encoding of the NT_GNU_BUILD_ID note, or, when
	// there is none, the Go build ID string from the .note.go.buildid note
	// (e.g. "aBc.../dEf..."); "" if the binary has neither.
	BuildID string
	// IsGo reports whether the binary was built by the Go toolchain (it has
	// a .go.buildinfo or .gopclntab section).
	IsGo bool
	// GoVersion is the Go toolchain version recorded in the binary, e.g.
	// "go1.26.8", when IsGo; "" if unknown.
	GoVersion string
	// HasDWARF reports whether the binary has a .debug_info section
	// (plain or compressed).
	HasDWARF bool

	file fileReader
	size int64 // of the file, to refuse reads beyond it
	elf  *elf.File

	mu       sync.Mutex
	syms     *symbolTables // loaded lazily by Function
	dwarf    *dwarf.Data   // loaded lazily by Args
	dwarfErr error
	subIndex *subprogramIndex // built lazily by Args
	locs     *locReader       // loaded lazily by Args for native functions
	locsErr  error
}

// Open opens the ELF file at path and reads its identity. Errors name the
// path; a missing file gives an error wrapping fs.ErrNotExist.
func Open(path string) (*Binary, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("elfinfo: %w", err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("elfinfo: open %s: is a directory, not an ELF file", path)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("elfinfo: open %s: not a regular file (mode %v)", path, fi.Mode())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("elfinfo: %w", err)
	}
	b, err := newBinary(path, f, fi.Size())
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return b, nil
}

// fileReader is the opened file: an *os.File, or bytes in the fuzz tests.
type fileReader interface {
	io.ReaderAt
	io.Closer
}

// newBinary reads the identity of the ELF file f of size bytes. debug/elf and debug/buildinfo
// run under Guard: a crafted file is an error wrapping ErrMalformed, never a panic.
func newBinary(path string, f fileReader, size int64) (*Binary, error) {
	var ef *elf.File
	if err := Guard(func() (err error) { ef, err = elf.NewFile(f); return err }); err != nil {
		return nil, fmt.Errorf("elfinfo: open %s: not a valid ELF file: %w", path, err)
	}
	if ef.Class != elf.ELFCLASS64 || ef.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("elfinfo: open %s: unsupported architecture %v/%v: only x86-64 (EM_X86_64, 64-bit) binaries are supported", path, ef.Machine, ef.Class)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return nil, fmt.Errorf("elfinfo: open %s: unsupported ELF type %v: need an executable or shared library", path, ef.Type)
	}

	b := &Binary{Path: path, file: f, size: size, elf: ef}
	b.IsGo = ef.Section(".go.buildinfo") != nil || ef.Section(".gopclntab") != nil
	b.HasDWARF = ef.Section(".debug_info") != nil || ef.Section(".zdebug_info") != nil
	if err := Guard(func() error { b.BuildID = readBuildID(ef); return nil }); err != nil {
		return nil, fmt.Errorf("elfinfo: open %s: reading its build ID: %w", path, err)
	}
	if b.IsGo {
		_ = Guard(func() error { // the Go version is informative only
			if bi, err := buildinfo.Read(f); err == nil {
				b.GoVersion = bi.GoVersion
			}
			return nil
		})
	}
	return b, nil
}

// Close releases the file.
func (b *Binary) Close() error {
	if b == nil || b.file == nil {
		return nil
	}
	err := b.file.Close()
	b.file = nil
	if err != nil {
		return fmt.Errorf("elfinfo: close %s: %w", b.Path, err)
	}
	return nil
}

// FileOffset translates a virtual address of the binary (such as
// Function.Address) to the offset in the file where its bytes are stored,
// which is what the kernel's uprobe API wants. It uses the PT_LOAD segment
// containing the address, or failing that the allocated section containing
// it.
func (b *Binary) FileOffset(addr uint64) (uint64, error) {
	for _, p := range b.elf.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr-p.Vaddr < p.Filesz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	for _, s := range b.elf.Sections {
		if s.Type != elf.SHT_NOBITS && s.Flags&elf.SHF_ALLOC != 0 && addr >= s.Addr && addr-s.Addr < s.Size {
			return addr - s.Addr + s.Offset, nil
		}
	}
	return 0, fmt.Errorf("elfinfo: %s: address %#x is not inside any loadable segment or section stored in the file", b.Path, addr)
}

// readAt reads n bytes at virtual address addr, which must all lie in one
// segment stored in the file.
func (b *Binary) readAt(addr, n uint64) ([]byte, error) {
	off, err := b.FileOffset(addr)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		end, err := b.FileOffset(addr + n - 1)
		if err != nil || end != off+n-1 {
			return nil, fmt.Errorf("elfinfo: %s: range [%#x, %#x) is not stored contiguously in the file", b.Path, addr, addr+n)
		}
	}
	if b.file == nil {
		return nil, fmt.Errorf("elfinfo: %s: binary is closed", b.Path)
	}
	if off > uint64(b.size) || n > uint64(b.size)-off {
		return nil, fmt.Errorf("elfinfo: %s: range [%#x, %#x) lies beyond the end of the file", b.Path, addr, addr+n)
	}
	buf := make([]byte, n)
	if _, err := b.file.ReadAt(buf, int64(off)); err != nil {
		return nil, fmt.Errorf("elfinfo: %s: read %d bytes at file offset %#x: %w", b.Path, n, off, err)
	}
	return buf, nil
}

const (
	ntGNUBuildID = 3 // NT_GNU_BUILD_ID, name "GNU"
	ntGoBuildID  = 4 // Go's build ID note type, name "Go"
)

// readBuildID returns the GNU build ID in hex, else the Go build ID, else "".
func readBuildID(f *elf.File) string {
	var goID string
	visit := func(data []byte, align uint64) (gnu string) {
		for _, n := range parseNotes(data, align) {
			switch {
			case n.name == "GNU" && n.typ == ntGNUBuildID && len(n.desc) > 0:
				return hex.EncodeToString(n.desc)
			case n.name == "Go" && n.typ == ntGoBuildID && goID == "":
				goID = string(n.desc)
			}
		}
		return ""
	}
	sawSections := false
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE {
			continue
		}
		sawSections = true
		if SectionSize(s) > MaxNoteSize {
			continue
		}
		data, err := s.Data()
		if err != nil {
			continue
		}
		if id := visit(data, s.Addralign); id != "" {
			return id
		}
	}
	if !sawSections { // section headers stripped: use the program headers
		for _, p := range f.Progs {
			if p.Type != elf.PT_NOTE || p.Filesz > MaxNoteSize {
				continue
			}
			data := make([]byte, p.Filesz)
			if _, err := p.ReadAt(data, 0); err != nil {
				continue
			}
			if id := visit(data, p.Align); id != "" {
				return id
			}
		}
	}
	return goID
}

type note struct {
	name string
	typ  uint32
	desc []byte
}

// parseNotes splits an SHT_NOTE section or PT_NOTE segment into notes.
func parseNotes(data []byte, align uint64) []note {
	if align != 8 {
		align = 4
	}
	pad := func(n uint64) uint64 { return (n + align - 1) &^ (align - 1) }
	var out []note
	for len(data) >= 12 {
		namesz := uint64(binary.LittleEndian.Uint32(data[0:]))
		descsz := uint64(binary.LittleEndian.Uint32(data[4:]))
		typ := binary.LittleEndian.Uint32(data[8:])
		rest := data[12:]
		if pad(namesz) > uint64(len(rest)) {
			break
		}
		name := rest[:namesz]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		rest = rest[pad(namesz):]
		if descsz > uint64(len(rest)) {
			break
		}
		out = append(out, note{name: string(name), typ: typ, desc: rest[:descsz]})
		if pad(descsz) >= uint64(len(rest)) {
			break
		}
		data = rest[pad(descsz):]
	}
	return out
}

// loadDWARF returns the binary's DWARF, loading it once. Callers hold b.mu.
func (b *Binary) loadDWARF() (*dwarf.Data, error) {
	if b.dwarf != nil || b.dwarfErr != nil {
		return b.dwarf, b.dwarfErr
	}
	if !b.HasDWARF {
		b.dwarfErr = fmt.Errorf("elfinfo: %s: %w: the binary was built or stripped without debug info; build without -ldflags='-s -w' (Go) or with -g (C/C++/Rust) and do not strip it", b.Path, ErrNoDWARF)
		return nil, b.dwarfErr
	}
	if err := CheckDWARF(b.elf); err != nil {
		b.dwarfErr = fmt.Errorf("elfinfo: %s: reading DWARF: %w", b.Path, err)
		return nil, b.dwarfErr
	}
	var d *dwarf.Data
	err := Guard(func() (err error) { d, err = b.elf.DWARF(); return err })
	if err != nil {
		b.dwarfErr = fmt.Errorf("elfinfo: %s: reading DWARF: %w", b.Path, err)
		return nil, b.dwarfErr
	}
	b.dwarf = d
	return d, nil
}

// ErrNoDWARF is wrapped by errors from Args when the binary has no DWARF.
var ErrNoDWARF = errors.New("no DWARF debug info")

// recoverMalformed, deferred by the methods that run debug/dwarf and debug/gosym over the
// binary, turns a panic of theirs on a crafted file into an error wrapping ErrMalformed.
// Deferred before b.mu is locked, it runs after the unlock.
func (b *Binary) recoverMalformed(err *error, what string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("elfinfo: %s: %s: %w", b.Path, what, Recovered(r))
	}
}

// infoBytes is the size of .debug_info and .debug_types, uncompressed: a bound on the DIEs a
// walk over them can meet.
func (b *Binary) infoBytes() int {
	return DWARFEntryBound(b.elf)
}
