package elfinfo

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo/elfinfotest"
)

// A traced process chooses its binaries: every parser here must survive any bytes. The
// targets are seeded with the test fixtures (built from testdata, as the other tests do) and
// with copies of the C fixture whose section headers lie (a huge size or offset, a compressed
// flag), after the standard library's debug/elf fuzz test. They run under StrictPanics: a
// panic of debug/* is recovered as in production, one of ours fails the target.

// bytesFile is a binary held in memory.
type bytesFile struct{ *bytes.Reader }

func (bytesFile) Close() error { return nil }

// fuzzNames are functions of the fixtures, looked up in every input.
var fuzzNames = []string{
	"main.(*Agent).HandlePrompt", "main.WriteBytes", "main.Scale", "main.Many", "main.Kinds",
	"main.Pair[go.shape.int]", "main.(*Box[go.shape.int]).Put", "main.Classify", "main.main",
	"process", "flags", "after_float", "seven", "with_struct", "make_big", "with_mixed",
	"classify", "skip_first", "main",
}

// fuzzing reports whether the test runs with -fuzz.
func fuzzing() bool {
	fl := flag.Lookup("test.fuzz")
	return fl != nil && fl.Value.String() != ""
}

// fixtureBytes builds the fixtures and returns their contents, C ones first; none when the
// compilers are missing. The Go program (2 MB, its DWARF all of the runtime's) is a seed for
// plain test runs only: mutating it makes an execution take seconds, so fuzzing starts from
// the C programs (the Go ABI code runs on their DWARF too, see FuzzDWARF).
func fixtureBytes(f *testing.F, withGo bool) [][]byte {
	f.Helper()
	if runtime.GOOS != "linux" {
		return nil
	}
	withGo = withGo && !fuzzing()
	dir := f.TempDir()
	var paths []string
	if tool(f, "gcc") {
		paths = append(paths, buildC(f, dir, "cprog", "-g", "-O1"), buildC(f, dir, "cprog-O2", "-g", "-O2"),
			buildC(f, dir, "cprog-nodebug", "-O1"))
	}
	if withGo && tool(f, "go") {
		paths = append(paths, buildGo(f, dir, "goprog", goEnv()))
	}
	return elfinfotest.ReadFiles(f, paths)
}

func tool(f *testing.F, name string) bool {
	f.Helper()
	if _, err := exec.LookPath(name); err != nil {
		f.Logf("%s not installed: seeds without its fixtures", name)
		return false
	}
	return true
}

// FuzzBinary: Open's parse of a binary and every lookup the receiver makes on it (symbols,
// the Go pclntab, RET offsets, parameters from DWARF and location lists, source lines).
func FuzzBinary(f *testing.F) {
	StrictPanics(true)
	for _, bin := range fixtureBytes(f, true) {
		f.Add(bin)
	}
	if bins := fixtureBytes(f, false); len(bins) > 0 {
		for _, bin := range elfinfotest.LyingSections(bins[0]) {
			f.Add(bin)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := newBinary("fuzz", bytesFile{bytes.NewReader(data)}, int64(len(data)))
		if err != nil {
			return
		}
		defer b.Close()
		for _, name := range fuzzNames {
			fn, err := b.Function(name)
			if err != nil {
				continue
			}
			_, _ = b.FileOffset(fn.Address)
			_, _ = b.ReturnOffsets(fn)
			_, _ = b.EntryOffset(fn)
			_, _, _ = b.Parameters(name)
			_, _ = b.SourceLine(fn.Address)
		}
		_, _ = b.Function("main.HandlePromt") // not found: suggestions over every name
	})
}

// dwarfSections are the sections FuzzDWARF feeds to debug/dwarf, in order.
var dwarfSections = []string{".debug_abbrev", ".debug_info", ".debug_str", ".debug_line_str", ".debug_str_offsets", ".debug_addr", ".debug_loclists", ".debug_loc"}

// FuzzDWARF: the walks over DWARF this package does itself (subprogram index, parameters,
// their types for the Go and System V ABIs, location lists at entry), fed the debug sections
// directly so that mutations reach them.
func FuzzDWARF(f *testing.F) {
	StrictPanics(true)
	for _, bin := range fixtureBytes(f, true) {
		ef, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			f.Fatal(err)
		}
		secs := make([][]byte, len(dwarfSections))
		for i, name := range dwarfSections {
			if s := ef.Section(name); s != nil {
				secs[i], _ = s.Data()
			}
		}
		f.Add(secs[0], secs[1], secs[2], secs[3], secs[4], secs[5], secs[6], secs[7])
	}
	for _, dies := range [][]die{
		{{abCU, []any{uint8(0x16)}}, {abSub, []any{"f", uint64(0x1000)}}, {abParam, []any{"p", ref(4)}}, {0, nil},
			{abPtr, []any{ref(4), uint8(8)}}, {0, nil}},
		{{abCU, []any{uint8(0x0c)}}, {abSub, []any{"f", uint64(0x1000)}}, {abParam, []any{"s", ref(4)}}, {0, nil},
			{abStruct, []any{"s", uint8(16)}}, {abMember, []any{"a", ref(7), int64(0)}}, {0, nil},
			{abArray, []any{ref(10), uint8(16)}}, {abRange, []any{uint64(2)}}, {0, nil},
			{abPtr, []any{ref(4), uint8(8)}}, {0, nil}},
	} {
		f.Add(craftedAbbrev, craftInfo(f, dies), []byte{}, []byte{}, []byte{}, []byte{}, []byte{}, []byte{})
	}
	f.Fuzz(func(t *testing.T, abbrev, info, str, lineStr, strOffsets, addr, loclists, loc []byte) {
		var d *dwarf.Data
		if err := Guard(func() (err error) {
			d, err = dwarf.New(abbrev, nil, nil, info, nil, nil, nil, str)
			if err != nil {
				return err
			}
			for i, s := range [][]byte{lineStr, strOffsets, addr, loclists} {
				if err := d.AddSection(dwarfSections[3+i], s); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return
		}
		// The struct lookup of StructFieldOffsets, over every unit and over units by name
		// (a Go binary's runtime unit first): bounded, and an error rather than a panic.
		_, _, _ = findStruct(d, "s", len(info)+1, nil)
		_, _, _ = findStruct(d, "s", len(info)+1, func(u string) bool { return u == "runtime" })
		var idx *subprogramIndex
		if Guard(func() (err error) { idx, err = buildSubprogramIndex(d, len(info)+1); return err }) != nil {
			return
		}
		lr := &locReader{loclists: loclists, loc: loc, addr: addr}
		n := 0
		for name := range idx.byName {
			if n++; n > 32 {
				break
			}
			sp := idx.lookup(name, 0)
			if sp == nil {
				continue
			}
			_ = Guard(func() error {
				tr := newTypeReader(d)
				formals, ret, err := tr.formals(sp)
				if err != nil {
					return err
				}
				tr.goParams(name, formals, false)
				tr.sysvParams(formals, ret, false)
				tr.sysvParams(formals, ret, true)
				if sp.unit != nil {
					for _, fm := range formals {
						if e, ok, err := lr.entryExpr(sp.unit, fm.location, sp.lowPC); err == nil && ok {
							parseLocExpr(e)
						}
					}
				}
				return nil
			})
		}
	})
}

// FuzzLocList: DWARF 4 and 5 location lists and the location expressions in them.
func FuzzLocList(f *testing.F) {
	f.Add([]byte{0x04, 0x00, 0x10, 0x01, 0x55, 0x00}, []byte{}, uint64(0), uint64(0), uint64(0), uint64(4))
	f.Add([]byte{0x07, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0x02, 0x54, 0x93, 0x08, 0}, []byte{0, 0x10, 0, 0, 0, 0, 0, 0}, uint64(0), uint64(0), uint64(0), uint64(0x1000))
	f.Add([]byte{0x02, 0x00, 0x01, 0x01, 0x50, 0x03, 0x00, 0x04, 0x01, 0x91, 0x78, 0x01, 0x00}, []byte{0, 0x10, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0}, uint64(0), uint64(0), uint64(1<<63), uint64(0x1000))
	f.Fuzz(func(t *testing.T, list, addr []byte, base, addrBase, loclistsBase, pc uint64) {
		lr := &locReader{loclists: list, loc: list, addr: addr}
		u := unitInfo{base: base, addrBase: addrBase, loclistsBase: loclistsBase}
		for _, get := range []func() ([]byte, bool, error){
			func() ([]byte, bool, error) { return lr.exprAt(u, 0, pc) },
			func() ([]byte, bool, error) { return lr.exprAtV4(u, 0, pc) },
			func() ([]byte, bool, error) {
				off, err := lr.loclistx(u, int64(pc))
				if err != nil {
					return nil, false, err
				}
				return lr.exprAt(u, off, pc)
			},
		} {
			if e, ok, err := get(); err == nil && ok {
				parseLocExpr(e)
			}
		}
		_, _ = lr.addrx(u, pc)
		parseLocExpr(list)
	})
}

// FuzzReturnOffsets: the disassembly of a function's bytes for its RET instructions.
func FuzzReturnOffsets(f *testing.F) {
	f.Add([]byte{0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3})                               // push rbp; mov rbp,rsp; pop rbp; ret
	f.Add([]byte{0xf3, 0x0f, 0x1e, 0xfa, 0xc5, 0xf8, 0x77, 0xc3})                   // endbr64; vzeroupper; ret
	f.Add([]byte{0x62, 0xf1, 0x7c, 0x48, 0x10, 0x07, 0xc2, 0x08, 0x00, 0x0f, 0x0b}) // EVEX; ret 8; ud2
	f.Add([]byte{0x66, 0x0f, 0x38, 0xf6, 0xc1, 0xc4, 0xe2, 0x79, 0x18, 0x00, 0xc3})
	f.Fuzz(func(t *testing.T, code []byte) {
		rets, bad := returnOffsets(code)
		last := -1
		for _, r := range rets {
			if int(r) <= last || int(r) >= len(code) || (code[r] != 0xc3 && code[r] != 0xc2 && !isLegacyPrefix(code[r]) && code[r]&0xf0 != 0x40) {
				t.Fatalf("RET offset %d of %x out of order or not a RET", r, code)
			}
			last = int(r)
		}
		for _, o := range bad {
			if int(o) >= len(code) {
				t.Fatalf("undecodable offset %d beyond %d bytes", o, len(code))
			}
		}
	})
}

// FuzzParseNotes: the build ID notes.
func FuzzParseNotes(f *testing.F) {
	f.Add([]byte("\x04\x00\x00\x00\x14\x00\x00\x00\x03\x00\x00\x00GNU\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14"), uint64(4))
	f.Add([]byte("\x03\x00\x00\x00\x08\x00\x00\x00\x04\x00\x00\x00Go\x00\x00abcdefgh"), uint64(8))
	f.Fuzz(func(t *testing.T, data []byte, align uint64) {
		for _, n := range parseNotes(data, align) {
			if len(n.desc) > len(data) {
				t.Fatalf("note desc of %d bytes from %d", len(n.desc), len(data))
			}
		}
	})
}

// buildCELF builds testdata/cprog with gcc and flags and returns its bytes, to be altered,
// and their ELF headers, to find what to alter.
func buildCELF(t *testing.T, dir, name string, flags ...string) ([]byte, *elf.File) {
	t.Helper()
	requireTool(t, "gcc")
	bin := buildC(t, dir, name, flags...)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return data, ef
}

func TestLyingSectionsRefused(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("linux fixtures")
	}
	data, ef := buildCELF(t, t.TempDir(), "cprog", "-g", "-O1")
	// .symtab declaring a terabyte: refused before debug/elf reads it, the cause is said.
	s := ef.Section(".symtab")
	if s == nil {
		t.Fatal("no .symtab")
	}
	idx := -1
	for i, sec := range ef.Sections {
		if sec == s {
			idx = i
		}
	}
	c := bytes.Clone(data)
	h := binary.LittleEndian.Uint64(c[0x28:]) + uint64(idx)*uint64(binary.LittleEndian.Uint16(c[0x3a:]))
	binary.LittleEndian.PutUint64(c[h+0x20:], 1<<40)
	p := filepath.Join(t.TempDir(), "lying")
	if err := os.WriteFile(p, c, 0o755); err != nil {
		t.Fatal(err)
	}
	b := openBinary(t, p)
	_, err := b.Function("process")
	if err == nil {
		t.Fatal("function found in a symbol table of 1 TiB")
	}
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrSymbolNotFound) {
		t.Fatalf("error %v: want ErrTooLarge and ErrSymbolNotFound", err)
	}
}

// FuzzParseUnits: the unit headers of .debug_info, read to find a DIE's DWARF version.
func FuzzParseUnits(f *testing.F) {
	f.Add([]byte{0x07, 0, 0, 0, 0x05, 0, 0x01, 0x08, 0, 0, 0, 0x07, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0x08})
	// A 64-bit unit length of 2^64-12: off+12+length wraps to 0.
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xf4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x05, 0, 0, 0})
	f.Fuzz(func(t *testing.T, info []byte) {
		units := parseUnits(info)
		var end uint64
		for _, u := range units {
			if u.start != end || u.end <= u.start || u.end > uint64(len(info)) {
				t.Fatalf("unit [%d, %d) after %d in %d bytes", u.start, u.end, end, len(info))
			}
			end = u.end
		}
	})
}

// TestSuggestSkipsHugeNames: a crafted binary's megabyte-long names are not compared (each
// edit distance would cost a megabyte times the name asked for).
func TestSuggestSkipsHugeNames(t *testing.T) {
	huge := strings.Repeat("x", 1<<20) + ".HandlePrompt"
	got := suggest("main.HandlePrompt", []string{huge, "main.(*Agent).HandlePrompt"}, 3)
	if len(got) != 1 || got[0] != "main.(*Agent).HandlePrompt" {
		t.Fatalf("suggestions %.80q", got)
	}
}

// TestCompressedDWARFTooLarge: a compressed .debug_info declaring a terabyte (a zlib bomb
// inflates a thousandfold) is refused before debug/dwarf inflates it.
func TestCompressedDWARFTooLarge(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("linux fixtures")
	}
	dir := t.TempDir()
	data, ef := buildCELF(t, dir, "cprog-gz", "-g", "-O1", "-gz=zlib")
	s := ef.Section(".debug_info")
	if s == nil || s.Flags&elf.SHF_COMPRESSED == 0 {
		t.Skip("gcc did not compress .debug_info")
	}
	binary.LittleEndian.PutUint64(data[s.Offset+8:], 1<<40) // Elf64_Chdr.ch_size
	p := filepath.Join(dir, "bomb")
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	b := openBinary(t, p)
	_, _, err := b.Parameters("process")
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Parameters: %v, want ErrTooLarge", err)
	}
	if file, line := b.SourceLine(mustFunction(t, b, "process").Address); file != "" || line != 0 {
		t.Fatalf("source line %s:%d from refused DWARF", file, line)
	}
}

// TestGuard: a panic becomes an error naming where it happened; under StrictPanics one of
// this module's own panics is raised again, one of the standard library's is not.
func TestGuard(t *testing.T) {
	defer StrictPanics(strictPanics.Load())
	StrictPanics(false)
	var idx []int
	err := Guard(func() error { _ = idx[len(fuzzNames)]; return nil })
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "elfinfo.TestGuard") {
		t.Fatalf("Guard: %v, want ErrMalformed naming elfinfo.TestGuard", err)
	}
	StrictPanics(true)
	if err := Guard(func() error { panicInStd(); return nil }); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Guard of a standard library panic under StrictPanics: %v", err)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "panicked in github.com/agenttrail/") {
			t.Fatalf("recovered %v, want our own panic raised again", r)
		}
	}()
	_ = Guard(func() error { _ = idx[len(fuzzNames)]; return nil })
}

// panicInStd makes the standard library panic: sort.Slice of a non-slice.
func panicInStd() { sort.Slice(42, func(i, j int) bool { return false }) }
