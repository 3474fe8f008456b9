package symbolize

import (
	"debug/elf"
	encbin "encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"

	"github.com/go-delve/delve/pkg/dwarf/frame"
)

// Leaf callers. The kernel walks user stacks by frame pointers. A leaf built without them (the
// C library's syscall wrappers) has not pushed one, so the walk goes from the leaf's address
// straight to its caller's caller: the function that called connect() is missing, which is
// the one that matters. The leaf's call frame information (.eh_frame) says where its return
// address is relative to the stack pointer, and the kernel program copies the top of the stack.

// dwarfRSP is the stack pointer's DWARF register number (x86-64).
const dwarfRSP = 7

// cfiTable is a binary's .eh_frame.
type cfiTable struct {
	fdes frame.FrameDescriptionEntries // sorted by address
	// memo: the slots of the addresses asked already (a process's syscalls come from a few
	// wrappers), bounded by maxSlotMemo; running an FDE's program allocates.
	mu   sync.Mutex
	memo map[uint64]slot
}

type slot struct {
	off int64
	ok  bool
}

const maxSlotMemo = 4096

// loadCFI reads the .eh_frame of the ELF file r: nil without one, an error wrapping
// elfinfo.ErrMalformed or elfinfo.ErrTooLarge for one that cannot be read.
func loadCFI(r io.ReaderAt) (t *cfiTable, err error) {
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, elfinfo.Recovered(p)
		}
	}()
	ef, err := elf.NewFile(r)
	if err != nil || ef.Machine != elf.EM_X86_64 {
		return nil, nil
	}
	sec := ef.Section(".eh_frame")
	if sec == nil || sec.Type == elf.SHT_NOBITS {
		return nil, nil
	}
	if err := elfinfo.CheckSection(sec); err != nil {
		return nil, err
	}
	data, err := sec.Data()
	if err != nil {
		return nil, nil
	}
	return parseCFI(data, sec.Addr)
}

// parseCFI parses an .eh_frame section loaded at file address addr.
func parseCFI(data []byte, addr uint64) (t *cfiTable, err error) {
	defer func() {
		if p := recover(); p != nil { // a malformed section: no leaf callers from this binary
			t, err = nil, fmt.Errorf(".eh_frame: %w", elfinfo.Recovered(p))
		}
	}()
	fdes, err := frame.Parse(data, encbin.LittleEndian, 0, 8, addr)
	if err != nil {
		return nil, fmt.Errorf(".eh_frame: %w: %w", elfinfo.ErrMalformed, err)
	}
	if len(fdes) == 0 {
		return nil, nil
	}
	sort.Slice(fdes, func(i, j int) bool { return fdes[i].Begin() < fdes[j].Begin() })
	return &cfiTable{fdes: fdes, memo: map[uint64]slot{}}, nil
}

// returnAddressSlot says where the return address of the function at file address v is,
// as a byte offset from the stack pointer, when the frame is addressed from the stack
// pointer there (a function without a frame pointer); ok is false otherwise, or when the
// binary does not describe v.
func (t *cfiTable) returnAddressSlot(v uint64) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, found := t.memo[v]; found {
		return r.off, r.ok
	}
	if len(t.memo) >= maxSlotMemo {
		clear(t.memo)
	}
	off, ok := t.slotOf(v)
	t.memo[v] = slot{off, ok}
	return off, ok
}

func (t *cfiTable) slotOf(v uint64) (off int64, ok bool) {
	defer func() {
		if p := recover(); p != nil { // the parser panics on truncated instructions: a malformed binary
			_ = elfinfo.Recovered(p) // (StrictPanics raises ours)
			off, ok = 0, false
		}
	}()
	fde, err := t.fdes.FDEForPC(v)
	if err != nil {
		return 0, false
	}
	fc, err := fde.EstablishFrame(v)
	if err != nil || fc.CFA.Rule != frame.RuleCFA || fc.CFA.Reg != dwarfRSP {
		return 0, false
	}
	ra, found := fc.Regs[fc.RetAddrReg]
	if !found || ra.Rule != frame.RuleOffset {
		return 0, false
	}
	return fc.CFA.Offset + ra.Offset, true
}

// LeafCaller returns the return address of the leaf frame of a stack of process pid that
// stopped at pc with stack pointer sp, read from top (the stack's first words from sp), when
// the leaf's binary describes its frame as addressed from the stack pointer. A frame-pointer
// walk misses that caller.
func (s *Symbolizer) LeafCaller(pid uint32, pc, sp uint64, top []uint64) (uint64, bool) {
	if sp == 0 {
		return 0, false
	}
	p := s.procLoaded(pid)
	if p == nil {
		return 0, false
	}
	m := findMapping(p.snapshot(), pc)
	if m == nil && mayBeCode(pc) {
		m = findMapping(s.reloadFor(p), pc) // a library mapped since the maps were read
	}
	if m == nil || !m.exec {
		return 0, false
	}
	b := s.resolve(pid, m, s.clock.Add(1))
	if b == nil {
		return 0, false
	}
	v, ok := b.fileToVaddr(pc - m.start + m.offset)
	if !ok {
		return 0, false
	}
	t := b.cfi.get(reopener{s: s, pid: pid, m: m, key: b.key}, loadCFI)
	if t == nil {
		return 0, false
	}
	off, ok := t.returnAddressSlot(v)
	if !ok || off < 0 || off%8 != 0 || off/8 >= int64(len(top)) {
		return 0, false
	}
	ret := top[off/8]
	if !mayBeCode(ret) {
		return 0, false
	}
	return ret, true
}
