package pyinfo

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// typeDeallocOffset is tp_dealloc's offset in PyTypeObject: PyObject_VAR_HEAD (24 bytes),
// tp_name, tp_basicsize, tp_itemsize. The same in 3.11 to 3.13.
const typeDeallocOffset = 48

// maxRelaBytes bounds the relocation table read to find tp_dealloc's value in a position
// independent binary (libpython3.12's is under 1 MiB).
const maxRelaBytes = 16 << 20

// ErrNoGenDealloc: the binary's PyCoro_Type does not say where its tp_dealloc is.
var ErrNoGenDealloc = errors.New("no coroutine dealloc function")

// genDealloc finds gen_dealloc, the coroutine type's tp_dealloc: a static function (stripped
// from Debian's binaries), so it is read from the slot of the exported PyCoro_Type at typeAddr.
// In a position-independent binary the slot holds 0 in the file and an R_X86_64_RELATIVE
// relocation's addend says the value; otherwise the file holds it. It returns the function's
// link-time address and its file offset (where a uprobe goes); the address must be in an
// executable segment of the file.
func genDealloc(f *elf.File, typeAddr uint64) (addr, fileOffset uint64, err error) {
	if typeAddr > ^uint64(0)-typeDeallocOffset {
		return 0, 0, fmt.Errorf("%w: PyCoro_Type at %#x", ErrNoGenDealloc, typeAddr)
	}
	slot := typeAddr + typeDeallocOffset
	addr, err = relativeAddend(f, slot)
	if err != nil {
		return 0, 0, err
	}
	if addr == 0 {
		v, err := readUint64(f, slot)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: %w", ErrNoGenDealloc, err)
		}
		addr = v
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && addr >= p.Vaddr && addr-p.Vaddr < p.Filesz {
			return addr, addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: tp_dealloc %#x is not in an executable segment", ErrNoGenDealloc, addr)
}

// relativeAddend returns the addend of the R_X86_64_RELATIVE relocation of the 8 bytes at
// addr, 0 when there is none.
func relativeAddend(f *elf.File, addr uint64) (uint64, error) {
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return 0, nil
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_RELA {
			continue
		}
		if s.Size > maxRelaBytes {
			return 0, fmt.Errorf("%w: %s of %d bytes", ErrTooLarge, s.Name, s.Size)
		}
		r := io.NewSectionReader(s, 0, int64(s.Size))
		var ent [24]byte // Elf64_Rela: r_offset, r_info, r_addend
		for {
			if _, err := io.ReadFull(r, ent[:]); err != nil {
				break // the end, or a section cut short: the relocations read so far are all
			}
			off := f.ByteOrder.Uint64(ent[0:])
			info := f.ByteOrder.Uint64(ent[8:])
			if off == addr && elf.R_X86_64(info&0xffffffff) == elf.R_X86_64_RELATIVE {
				return f.ByteOrder.Uint64(ent[16:]), nil
			}
		}
	}
	return 0, nil
}

// readUint64 reads an 8-byte value at a virtual address of the file (as readUint32).
func readUint64(f *elf.File, addr uint64) (uint64, error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && p.Filesz >= 8 && addr-p.Vaddr <= p.Filesz-8 {
			var b [8]byte
			if _, err := p.ReadAt(b[:], int64(addr-p.Vaddr)); err != nil {
				return 0, err
			}
			return binary.LittleEndian.Uint64(b[:]), nil
		}
	}
	return 0, fmt.Errorf("address %#x not in the file", addr)
}
