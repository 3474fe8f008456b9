package elfinfo

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
)

// A traced process chooses its executable and libraries, so every binary is hostile input:
// a section header can declare 4 GiB, a compressed section can inflate a thousandfold, a
// pclntab header can claim billions of functions. These bounds are checked before anything
// is read; a binary over one is refused with an error wrapping ErrTooLarge.
const (
	// MaxSectionSize bounds one section read whole (symbol table, its string table,
	// .gopclntab), after decompression.
	MaxSectionSize = 256 << 20
	// MaxDWARFSize bounds the DWARF sections read together (debug/dwarf reads all of them),
	// after decompression, with the relocation sections applied to them.
	MaxDWARFSize = 512 << 20
	// MaxSymbols bounds the entries of one symbol table (.symtab or .dynsym).
	MaxSymbols = 1 << 21
	// MaxGoFuncs bounds the functions a Go pclntab may declare (debug/gosym allocates two
	// records per declared function before checking them).
	MaxGoFuncs = 1 << 20
	// MaxNoteSize bounds a note section or segment read for the build ID.
	MaxNoteSize = 1 << 20
	// maxTypeSteps bounds the DWARF type nodes visited for one function's parameters:
	// crafted types can nest (or refer to themselves) so that a walk is exponential.
	maxTypeSteps = 1 << 16
)

// ErrMalformed is wrapped by errors about a binary the debug/* parsers could not read without
// panicking: the file was crafted or is corrupt. Callers count it as a binary they could not
// instrument.
var ErrMalformed = errors.New("malformed binary")

// ErrTooLarge is wrapped by errors about a binary whose sections exceed a limit above.
var ErrTooLarge = errors.New("exceeds a size limit")

// SectionSize returns the number of bytes s.Data would return: its uncompressed size for
// SHF_COMPRESSED and GNU .zdebug sections (whose size is only known from the header that
// Open reads), 0 for SHT_NOBITS.
func SectionSize(s *elf.Section) uint64 {
	if s.Type == elf.SHT_NOBITS {
		return 0
	}
	if s.Flags&elf.SHF_COMPRESSED == 0 && strings.HasPrefix(s.Name, ".zdebug") {
		_ = s.Open() // reads the 12-byte "ZLIB" header and sets Size to the inflated size
	}
	return s.Size
}

// CheckSection refuses a section larger than MaxSectionSize.
func CheckSection(s *elf.Section) error {
	if n := SectionSize(s); n > MaxSectionSize {
		return fmt.Errorf("section %s of %d bytes: %w (%d)", s.Name, n, ErrTooLarge, MaxSectionSize)
	}
	return nil
}

// CheckSymbols refuses a symbol table of type typ (SHT_SYMTAB or SHT_DYNSYM) that is larger
// than MaxSymbols entries, or whose string table is larger than MaxSectionSize, before
// debug/elf's Symbols or DynamicSymbols reads them. A missing table is not an error.
func CheckSymbols(f *elf.File, typ elf.SectionType) error {
	s := f.SectionByType(typ)
	if s == nil {
		return nil
	}
	if err := CheckSection(s); err != nil {
		return err
	}
	if n := SectionSize(s) / elf.Sym64Size; n > MaxSymbols {
		return fmt.Errorf("symbol table %s of %d entries: %w (%d)", s.Name, n, ErrTooLarge, MaxSymbols)
	}
	if int(s.Link) > 0 && int(s.Link) < len(f.Sections) {
		if err := CheckSection(f.Sections[s.Link]); err != nil {
			return err
		}
	}
	if typ == elf.SHT_DYNSYM { // DynamicSymbols reads the symbol versions too
		for _, vt := range []elf.SectionType{elf.SHT_GNU_VERSYM, elf.SHT_GNU_VERDEF, elf.SHT_GNU_VERNEED} {
			if v := f.SectionByType(vt); v != nil {
				if err := CheckSection(v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// DWARFSize returns the bytes debug/elf's DWARF method reads: every .debug_* and .zdebug_*
// section, uncompressed, and for relocatable objects the relocation sections applying to them.
func DWARFSize(f *elf.File) uint64 {
	var total uint64
	isDebug := func(s *elf.Section) bool {
		return strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_")
	}
	add := func(n uint64) {
		total = min(total+min(n, 1<<62), 1<<62) // saturating
	}
	for _, s := range f.Sections {
		switch {
		case isDebug(s):
			add(SectionSize(s))
		case f.Type != elf.ET_EXEC && (s.Type == elf.SHT_RELA || s.Type == elf.SHT_REL) &&
			int(s.Info) > 0 && int(s.Info) < len(f.Sections) && isDebug(f.Sections[s.Info]):
			add(SectionSize(s))
		}
	}
	return total
}

// DWARFEntryBound bounds the DIEs a walk over f's DWARF can meet: each takes at least a byte
// of .debug_info or .debug_types. Walks count against it because on some crafted input
// debug/dwarf's Reader returns null entries forever without advancing (golang/go#79586, Go 1.26).
func DWARFEntryBound(f *elf.File) int {
	var n uint64
	for _, name := range []string{".debug_info", ".zdebug_info", ".debug_types", ".zdebug_types"} {
		if s := f.Section(name); s != nil {
			n += min(SectionSize(s), MaxDWARFSize)
		}
	}
	return int(n) + 1
}

// CheckDWARF refuses DWARF larger than MaxDWARFSize before f.DWARF reads it.
func CheckDWARF(f *elf.File) error {
	if n := DWARFSize(f); n > MaxDWARFSize {
		return fmt.Errorf("DWARF of %d bytes: %w (%d)", n, ErrTooLarge, MaxDWARFSize)
	}
	return nil
}

// CheckPclntab refuses a Go pclntab (Go 1.2 and later) that declares more than MaxGoFuncs
// functions, before debug/gosym allocates for them.
func CheckPclntab(data []byte) error {
	if len(data) < 16 {
		return nil // debug/gosym rejects it
	}
	ptr := int(data[7])
	if ptr != 4 && ptr != 8 || len(data) < 8+ptr {
		return nil
	}
	var n uint64
	if ptr == 8 {
		n = binary.LittleEndian.Uint64(data[8:])
	} else {
		n = uint64(binary.LittleEndian.Uint32(data[8:]))
	}
	if n > MaxGoFuncs {
		return fmt.Errorf("pclntab of %d functions: %w (%d)", n, ErrTooLarge, MaxGoFuncs)
	}
	return nil
}

// Guard runs fn and turns a panic of the debug/* parsers on a crafted file into an error
// wrapping ErrMalformed, so that one binary cannot take the collector down.
func Guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Recovered(r)
		}
	}()
	return fn()
}

// Recovered turns r, a value recovered from a panic while parsing a binary, into an error
// wrapping ErrMalformed that names the function that panicked. Call it in the deferred
// function that recovered.
//
// Every panic is recovered, ours included (defence in depth: a binary chosen by a traced
// process must not stop the collector). Under StrictPanics, which the fuzz tests set, a panic
// in this module's own code is raised again instead, so that fuzzing finds our bugs while
// tolerating the standard library's (debug/elf, debug/dwarf, debug/gosym panic on some
// crafted input; that is what the recovery is for).
func Recovered(r any) error {
	site := panicSite()
	if strictPanics.Load() && strings.HasPrefix(site, modulePath) {
		panic(fmt.Sprintf("%v [panicked in %s]", r, site))
	}
	return fmt.Errorf("%w: %v (in %s)", ErrMalformed, r, site)
}

const modulePath = "github.com/agenttrail/"

var strictPanics atomic.Bool

// StrictPanics makes Recovered raise panics of this module's own code again; for fuzz tests.
func StrictPanics(on bool) { strictPanics.Store(on) }

// panicSite returns the function that panicked, seen from the deferred function that is
// recovering: the first frame below runtime.gopanic outside the runtime.
func panicSite() string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	seen := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			seen = true
		case seen && !strings.HasPrefix(f.Function, "runtime."):
			return f.Function
		}
		if !more {
			return "?"
		}
	}
}
