package pyinfo

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
)

// gendeallocSeed is a minimal x86-64 ELF executable: one executable PT_LOAD segment at 0x400000
// covering the file, which holds a "PyCoro_Type" at 0x400100 whose tp_dealloc slot points at
// 0x400080, and a SHT_RELA section whose one R_X86_64_RELATIVE relocation is of that slot.
func gendeallocSeed() []byte {
	const base, size = 0x400000, 0x200
	b := make([]byte, size)
	le := binary.LittleEndian
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(b[16:], uint16(elf.ET_EXEC))
	le.PutUint16(b[18:], uint16(elf.EM_X86_64))
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], 64)    // e_phoff
	le.PutUint64(b[40:], 0x180) // e_shoff
	le.PutUint16(b[52:], 64)    // e_ehsize
	le.PutUint16(b[54:], 56)    // e_phentsize
	le.PutUint16(b[56:], 1)     // e_phnum
	le.PutUint16(b[58:], 64)    // e_shentsize
	le.PutUint16(b[60:], 2)     // e_shnum: null, .rela.dyn
	ph := b[64:]
	le.PutUint32(ph[0:], uint32(elf.PT_LOAD))
	le.PutUint32(ph[4:], uint32(elf.PF_R|elf.PF_X))
	le.PutUint64(ph[16:], base)
	le.PutUint64(ph[24:], base)
	le.PutUint64(ph[32:], size)
	le.PutUint64(ph[40:], size)
	le.PutUint64(b[0x100+typeDeallocOffset:], base+0x80) // the slot, as in a non-PIE binary
	rela := b[0x140:]                                    // one Elf64_Rela
	le.PutUint64(rela[0:], base+0x100+typeDeallocOffset)
	le.PutUint64(rela[8:], uint64(elf.R_X86_64_RELATIVE))
	le.PutUint64(rela[16:], base+0x90)
	sh := b[0x180+64:] // section 1
	le.PutUint32(sh[4:], uint32(elf.SHT_RELA))
	le.PutUint64(sh[24:], 0x140) // sh_offset
	le.PutUint64(sh[32:], 24)    // sh_size
	le.PutUint64(sh[56:], 24)    // sh_entsize
	return b
}

// FuzzGenDealloc: whatever the file and the type's address, gen_dealloc is either refused with
// ErrNoGenDealloc or ErrTooLarge, or found inside an executable segment with its file offset.
func FuzzGenDealloc(f *testing.F) {
	f.Add(gendeallocSeed(), uint64(0x400100))
	f.Add(gendeallocSeed(), uint64(0x400000))
	f.Add(gendeallocSeed(), ^uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, typeAddr uint64) {
		ef, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		var addr, off uint64
		err = elfinfo.Guard(func() error {
			var err error
			addr, off, err = genDealloc(ef, typeAddr)
			return err
		})
		if err != nil {
			if !errors.Is(err, ErrNoGenDealloc) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, elfinfo.ErrMalformed) {
				t.Fatalf("error %v", err)
			}
			return
		}
		for _, p := range ef.Progs {
			if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && addr >= p.Vaddr && addr-p.Vaddr < p.Filesz && off == addr-p.Vaddr+p.Off {
				return
			}
		}
		t.Fatalf("gen_dealloc %#x (offset %#x) is in no executable segment", addr, off)
	})
}

// TestGenDeallocSeed: the relocation's addend is the answer where there is one.
func TestGenDeallocSeed(t *testing.T) {
	ef, err := elf.NewFile(bytes.NewReader(gendeallocSeed()))
	if err != nil {
		t.Fatal(err)
	}
	addr, off, err := genDealloc(ef, 0x400100)
	if err != nil || addr != 0x400090 || off != 0x90 {
		t.Fatalf("gen_dealloc %#x offset %#x: %v", addr, off, err)
	}
}
