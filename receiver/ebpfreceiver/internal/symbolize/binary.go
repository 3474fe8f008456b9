package symbolize

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"debug/gosym"
	encbin "encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
)

// Sanity limits so that a hostile or corrupt file cannot make us allocate
// unbounded memory. Sections are bounded by elfinfo's limits (MaxSectionSize,
// MaxSymbols, MaxGoFuncs, MaxDWARFSize).
const (
	maxLineRows  = 1 << 22  // rows kept from a binary's DWARF line table (96 MiB)
	maxVDSOSize  = 1 << 20  // largest [vdso] image we read from memory
	maxNoteSize  = 64 << 10 // largest note section/segment we scan
	goMemoSize   = 2048     // memoized Go lookups per binary
	dwarfRetry   = time.Second
	pageMask     = 4096 - 1
	elfTypeIFUNC = elf.SymType(10) // STT_GNU_IFUNC
)

// loadSeg is a PT_LOAD program header.
type loadSeg struct {
	off, filesz, vaddr, memsz uint64
	exec                      bool
}

// binary holds the symbol tables of one ELF file. All fields except the Go
// table (goMu) and the lazily loaded tables (lines, cfi) are immutable after
// load.
type binary struct {
	key  string
	segs []loadSeg

	// Go pclntab; gosym.Table is not safe for concurrent lookups (it caches
	// strings in unsynchronized maps), hence goMu, which also guards goMemo,
	// a bounded memo of recent lookups (decoding pc-value tables is linear
	// in the function's size; hot stacks repeat the same PCs).
	goMu   sync.Mutex
	goTab  *gosym.Table
	goMemo map[uint64]symbolResult

	// Native symbols, sorted by address, parallel slices.
	symAddr []uint64
	symEnd  []uint64
	symName []string

	// DWARF line table, loaded on first use.
	hasDebugLine bool
	lines        lazy[lineTable]

	// Call frame information (.eh_frame), loaded on first use (LeafCaller).
	cfi lazy[cfiTable]

	// problem: why a table of the binary was not read (it wraps elfinfo.ErrMalformed or
	// elfinfo.ErrTooLarge); nil if all were.
	problem error

	lastUsed atomic.Uint64 // logical clock of the last use (LRU)
	evicted  atomic.Bool
}

// fileToVaddr translates a file offset of an executable mapping into the
// ELF virtual address space using the PT_LOAD segments.
func (b *binary) fileToVaddr(off uint64) (uint64, bool) {
	for _, s := range b.segs {
		if off >= s.off && off-s.off < s.filesz {
			return off - s.off + s.vaddr, true
		}
	}
	// The offset may fall in the page-alignment slack before a segment's
	// first byte; the file offset/vaddr congruence still holds there.
	for _, s := range b.segs {
		lo := s.off &^ pageMask
		if s.exec && off >= lo && off < s.off+s.filesz+pageMask {
			return off - s.off + s.vaddr, true // may wrap; arithmetic is mod 2^64
		}
	}
	return 0, false
}

// execEnd returns the end vaddr of the executable segment containing v.
func (b *binary) execEnd(v uint64) uint64 {
	for _, s := range b.segs {
		if s.exec && v >= s.vaddr && v-s.vaddr < s.memsz {
			return s.vaddr + s.memsz
		}
	}
	return v + 1
}

func (b *binary) inExec(v uint64) bool {
	for _, s := range b.segs {
		if s.exec && v >= s.vaddr && v-s.vaddr < s.memsz {
			return true
		}
	}
	return false
}

// symbolResult is the outcome of one lookup.
type symbolResult struct {
	function string
	file     string
	line     int
}

// lookup symbolizes an ELF virtual address. ro reopens the file (verified to
// be the same binary) when the DWARF line table must be loaded lazily.
func (b *binary) lookup(v uint64, ro reopener) (r symbolResult) {
	defer func() {
		if p := recover(); p != nil {
			_ = elfinfo.Recovered(p) // a crafted table: not known (StrictPanics raises ours)
			r = symbolResult{}
		}
	}()
	if b.goTab != nil {
		if r, ok := b.goLookup(v); ok {
			return r
		}
	}
	if i := sort.Search(len(b.symAddr), func(i int) bool { return b.symAddr[i] > v }) - 1; i >= 0 && v < b.symEnd[i] {
		r.function = b.symName[i]
	}
	if b.hasDebugLine {
		if lt := b.lines.get(ro, func(f io.ReaderAt) (*lineTable, error) { return loadLineTable(f, b) }); lt != nil {
			r.file, r.line = lt.find(v)
		}
	}
	return r
}

// goLookup resolves v through the Go pclntab.
func (b *binary) goLookup(v uint64) (symbolResult, bool) {
	b.goMu.Lock()
	defer b.goMu.Unlock()
	if r, ok := b.goMemo[v]; ok {
		return r, r.function != ""
	}
	var r symbolResult
	if file, line, fn := b.goTab.PCToLine(v); fn != nil {
		r = symbolResult{function: fn.Name, file: file, line: max(line, 0)}
	}
	if b.goMemo == nil || len(b.goMemo) >= goMemoSize {
		b.goMemo = make(map[uint64]symbolResult)
	}
	b.goMemo[v] = r
	return r, r.function != ""
}

// lazy is a table read from a binary's file on first use: kept once loaded, or once found
// missing; after a failed open (the process gone, the file replaced) retried at most every
// dwarfRetry.
type lazy[T any] struct {
	val   atomic.Pointer[T]
	gone  atomic.Bool // permanently unavailable (lock-free fast path)
	mu    sync.Mutex
	done  bool      // loaded or permanently unavailable (guarded by mu)
	tried time.Time // last attempt that could not open the file (guarded by mu)
}

// A load that fails (a malformed or oversized table) counts in the Symbolizer's
// BinariesMalformed and is not retried.
func (l *lazy[T]) get(ro reopener, load func(io.ReaderAt) (*T, error)) *T {
	if v := l.val.Load(); v != nil || l.gone.Load() {
		return v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if v := l.val.Load(); v != nil || l.done {
		return v
	}
	if !l.tried.IsZero() && time.Since(l.tried) < dwarfRetry {
		return nil
	}
	f, err := ro.open()
	if err != nil {
		l.tried = time.Now()
		return nil
	}
	defer f.Close()
	l.done = true
	v, err := load(f)
	if err != nil && ro.s != nil {
		ro.s.malformed.Add(1)
	}
	if v != nil {
		l.val.Store(v)
	} else {
		l.gone.Store(true)
	}
	return v
}

// lineTable is a flattened DWARF line program: rows sorted by address.
type lineTable struct {
	rows  []lineRow
	files []string
}

type lineRow struct {
	addr uint64
	file uint32
	line uint32 // 0 for end-of-sequence rows
	end  bool
}

func (lt *lineTable) find(v uint64) (string, int) {
	i := sort.Search(len(lt.rows), func(i int) bool { return lt.rows[i].addr > v }) - 1
	if i < 0 || lt.rows[i].end {
		return "", 0
	}
	r := lt.rows[i]
	return lt.files[r.file], int(r.line)
}

// loadLineTable flattens the DWARF line table of the ELF file r, keeping at most maxLineRows
// rows (the rest of the addresses get no line). A table over elfinfo.MaxDWARFSize, or one
// debug/dwarf panics on, is an error.
func loadLineTable(r io.ReaderAt, b *binary) (lt *lineTable, err error) {
	defer func() {
		if p := recover(); p != nil {
			lt, err = nil, elfinfo.Recovered(p)
		}
	}()
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, nil
	}
	if err := elfinfo.CheckDWARF(ef); err != nil {
		return nil, err
	}
	d, err := ef.DWARF()
	if err != nil {
		return nil, nil
	}
	lt = &lineTable{}
	fileIdx := map[string]uint32{}
	intern := func(name string) uint32 {
		if i, ok := fileIdx[name]; ok {
			return i
		}
		i := uint32(len(lt.files))
		lt.files = append(lt.files, name)
		fileIdx[name] = i
		return i
	}
	var seq []lineRow
	var le dwarf.LineEntry
	rd := d.Reader()
	// On some crafted input debug/dwarf's Reader returns null entries forever without
	// advancing (golang/go#79586): the walk meets at most as many entries as .debug_info has
	// bytes.
	maxEntries := elfinfo.DWARFEntryBound(ef)
	for n := 0; len(lt.rows) < maxLineRows; n++ {
		if n > maxEntries {
			return nil, fmt.Errorf("%w: more DWARF entries than .debug_info has bytes (%d)", elfinfo.ErrMalformed, maxEntries)
		}
		e, err := rd.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag != dwarf.TagCompileUnit && e.Tag != dwarf.TagPartialUnit {
			rd.SkipChildren()
			continue
		}
		lr, err := d.LineReader(e)
		rd.SkipChildren()
		if err != nil || lr == nil {
			continue
		}
		seq = seq[:0]
		for len(lt.rows)+len(seq) < maxLineRows {
			if err := lr.Next(&le); err != nil {
				break // io.EOF or a corrupt program: keep what we have
			}
			row := lineRow{addr: le.Address, end: le.EndSequence}
			if !le.EndSequence {
				name := ""
				if le.File != nil {
					name = le.File.Name
				}
				row.file = intern(name)
				if le.Line > 0 {
					row.line = uint32(le.Line)
				}
			}
			seq = append(seq, row)
			if le.EndSequence {
				// Sequences of functions discarded by the linker are
				// relocated to 0 (or a -1/-2 tombstone); keep only those
				// that start in an executable segment.
				if b.inExec(seq[0].addr) {
					lt.rows = append(lt.rows, seq...)
				}
				seq = seq[:0]
			}
		}
	}
	// At equal addresses an end-of-sequence row must sort before the first
	// row of the next sequence.
	slices.SortStableFunc(lt.rows, func(a, b lineRow) int {
		switch {
		case a.addr < b.addr:
			return -1
		case a.addr > b.addr:
			return 1
		case a.end && !b.end:
			return -1
		case !a.end && b.end:
			return 1
		}
		return 0
	})
	lt.rows = slices.Clip(lt.rows)
	return lt, nil
}

// openRegular opens path read-only without blocking (a FIFO planted by a
// traced process must not hang us) and accepts only regular files.
func openRegular(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: not a regular file", path)
	}
	return f, fi, nil
}

// identityKey computes the cache key of an ELF file: GNU build id, else Go
// build id, else device+inode+size+mtime from fi (which may be nil for
// memory images, in which case fallback is used).
func identityKey(ef *elf.File, size int64, fi os.FileInfo, fallback string) string {
	gnu, gobid := buildIDs(ef)
	switch {
	case gnu != "":
		return fmt.Sprintf("gnu:%s:%d", gnu, size)
	case gobid != "":
		return fmt.Sprintf("go:%s:%d", gobid, size)
	}
	if fi != nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			return fmt.Sprintf("file:%d:%d:%d:%d", st.Dev, st.Ino, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return fallback
}

// buildIDs returns the hex GNU build id and the Go build id found in the
// file's notes (PT_NOTE segments and SHT_NOTE sections).
func buildIDs(ef *elf.File) (gnu, gobid string) {
	scan := func(r io.ReaderAt, size uint64) {
		if size == 0 || size > maxNoteSize {
			return
		}
		buf := make([]byte, size)
		if _, err := r.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
			return
		}
		g, o := parseNotes(buf, ef.ByteOrder)
		if gnu == "" {
			gnu = g
		}
		if gobid == "" {
			gobid = o
		}
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_NOTE {
			scan(p, p.Filesz)
		}
	}
	if gnu == "" || gobid == "" {
		for _, s := range ef.Sections {
			if s.Type == elf.SHT_NOTE {
				scan(s, s.Size)
			}
		}
	}
	return gnu, gobid
}

// parseNotes walks ELF notes (4-byte aligned as on every Linux target we
// care about).
func parseNotes(buf []byte, bo encbin.ByteOrder) (gnu, gobid string) {
	align := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for len(buf) >= 12 {
		namesz := uint64(bo.Uint32(buf[0:]))
		descsz := uint64(bo.Uint32(buf[4:]))
		typ := bo.Uint32(buf[8:])
		buf = buf[12:]
		if align(namesz) > uint64(len(buf)) {
			return
		}
		name := buf[:namesz]
		buf = buf[align(namesz):]
		if descsz > uint64(len(buf)) {
			return
		}
		desc := buf[:descsz]
		buf = buf[min(align(descsz), uint64(len(buf))):]
		name = bytes.TrimRight(name, "\x00")
		switch {
		case string(name) == "GNU" && typ == 3 && gnu == "": // NT_GNU_BUILD_ID
			gnu = hex.EncodeToString(desc)
		case string(name) == "Go" && typ == 4 && gobid == "": // Go build id note
			gobid = string(bytes.TrimRight(desc, "\x00"))
		}
	}
	return
}

// loadBinary builds the symbol tables of an already parsed ELF file. A table over a limit of
// elfinfo, or one the debug/* parsers panic on, is left out and said in b.problem.
func loadBinary(ef *elf.File, key string) (b *binary) {
	b = &binary{key: key}
	defer func() {
		// debug/* should not panic on corrupt input, but a symbolizer fed
		// with arbitrary files must not take the collector down.
		if r := recover(); r != nil {
			b = &binary{key: key, segs: b.segs, problem: elfinfo.Recovered(r)}
		}
	}()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			b.segs = append(b.segs, loadSeg{
				off: p.Off, filesz: p.Filesz, vaddr: p.Vaddr, memsz: p.Memsz,
				exec: p.Flags&elf.PF_X != 0,
			})
		}
	}
	note := func(err error) {
		if err != nil && b.problem == nil {
			b.problem = err
		}
	}
	var syms []elf.Symbol
	if err := elfinfo.CheckSymbols(ef, elf.SHT_SYMTAB); err != nil {
		note(err)
	} else {
		syms, _ = ef.Symbols()
	}
	if err := elfinfo.CheckSymbols(ef, elf.SHT_DYNSYM); err != nil {
		note(err)
	} else {
		dyn, _ := ef.DynamicSymbols()
		syms = append(syms, dyn...)
	}
	var err error
	b.goTab, err = loadGoTable(ef, syms)
	note(err)
	b.loadNativeSymbols(syms)
	if s := ef.Section(".debug_line"); s != nil && s.Type != elf.SHT_NOBITS && s.Size > 0 && b.goTab == nil {
		b.hasDebugLine = true
	}
	return b
}

// loadGoTable parses .gopclntab when present.
func loadGoTable(ef *elf.File, syms []elf.Symbol) (*gosym.Table, error) {
	sect := ef.Section(".gopclntab")
	if sect == nil {
		sect = ef.Section(".data.rel.ro.gopclntab") // PIE / external linking
	}
	if sect == nil || sect.Type == elf.SHT_NOBITS {
		return nil, nil
	}
	if err := elfinfo.CheckSection(sect); err != nil {
		return nil, err
	}
	data, err := sect.Data()
	if err != nil || len(data) < 16 {
		return nil, nil
	}
	if err := elfinfo.CheckPclntab(data); err != nil {
		return nil, err
	}
	textStart := goTextStart(ef, syms, data)
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, textStart))
	if err != nil || len(tab.Funcs) == 0 {
		return nil, nil
	}
	return tab, nil
}

// goTextStart finds the address the pclntab's function offsets are relative
// to (Go 1.18+): the runtime.text symbol, else the value recorded in the
// pclntab header, else the start of .text.
func goTextStart(ef *elf.File, syms []elf.Symbol, pcln []byte) uint64 {
	for _, s := range syms {
		if s.Name == "runtime.text" && s.Value != 0 {
			return s.Value
		}
	}
	var text *elf.Section
	if text = ef.Section(".text"); text != nil && text.Addr == 0 {
		text = nil
	}
	magic := ef.ByteOrder.Uint32(pcln)
	ptrSize := int(pcln[7])
	if (magic == 0xfffffff0 || magic == 0xfffffff1) && (ptrSize == 4 || ptrSize == 8) && len(pcln) >= 8+3*ptrSize {
		var v uint64
		if ptrSize == 8 {
			v = ef.ByteOrder.Uint64(pcln[8+2*ptrSize:])
		} else {
			v = uint64(ef.ByteOrder.Uint32(pcln[8+2*ptrSize:]))
		}
		if v != 0 && (text == nil || (v >= text.Addr && v < text.Addr+text.Size)) {
			return v
		}
	}
	if text != nil {
		return text.Addr
	}
	return 0
}

// loadNativeSymbols builds the sorted function symbol table from .symtab
// and .dynsym. Functions already covered by the Go table are skipped.
func (b *binary) loadNativeSymbols(syms []elf.Symbol) {
	type cand struct {
		addr, size uint64
		name       string
		rank       int
	}
	cands := make([]cand, 0, len(syms))
	for _, s := range syms {
		t := elf.ST_TYPE(s.Info)
		if (t != elf.STT_FUNC && t != elfTypeIFUNC) || s.Section == elf.SHN_UNDEF ||
			s.Section == elf.SHN_ABS || s.Value == 0 || s.Name == "" {
			continue
		}
		if b.goTab != nil && b.goTab.PCToFunc(s.Value) != nil {
			continue
		}
		rank := 0
		switch elf.ST_BIND(s.Info) {
		case elf.STB_GLOBAL:
		case elf.STB_WEAK:
			rank += 4
		default:
			rank += 8
		}
		if s.Size == 0 {
			rank += 2
		}
		if strings.HasPrefix(s.Name, "_") {
			rank++
		}
		cands = append(cands, cand{addr: s.Value, size: s.Size, name: s.Name, rank: rank})
	}
	// Prefer, among aliases at one address: global over weak over local,
	// sized over unsized, names without a leading underscore, then shorter
	// and lexically smaller names (deterministic).
	slices.SortFunc(cands, func(x, y cand) int {
		switch {
		case x.addr != y.addr:
			if x.addr < y.addr {
				return -1
			}
			return 1
		case x.rank != y.rank:
			return x.rank - y.rank
		case len(x.name) != len(y.name):
			return len(x.name) - len(y.name)
		}
		return strings.Compare(x.name, y.name)
	})
	n := 0
	for i := range cands {
		if i == 0 || cands[i].addr != cands[i-1].addr {
			n++
		}
	}
	b.symAddr = make([]uint64, 0, n)
	b.symEnd = make([]uint64, 0, n)
	b.symName = make([]string, 0, n)
	for i := 0; i < len(cands); {
		c := cands[i]
		size := c.size
		j := i + 1
		for ; j < len(cands) && cands[j].addr == c.addr; j++ {
			size = max(size, cands[j].size)
		}
		var end uint64
		switch {
		case size > 0:
			end = c.addr + size
		case j < len(cands):
			end = min(cands[j].addr, b.execEnd(c.addr))
		default:
			end = b.execEnd(c.addr)
		}
		if end <= c.addr {
			end = c.addr + 1
		}
		b.symAddr = append(b.symAddr, c.addr)
		b.symEnd = append(b.symEnd, end)
		b.symName = append(b.symName, c.name)
		i = j
	}
}
