package symbolize

import (
	"bytes"
	"debug/elf"
	"os"
	"testing"
)

// TestReturnAddressSlotLibc reads this machine's C library: its connect() wrapper has no frame
// pointer; at its first syscall (the single-threaded path, nothing pushed) the return address
// is at the stack pointer, at its second (the cancellable path) further up.
func TestReturnAddressSlotLibc(t *testing.T) {
	const libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
	f, err := os.Open(libc)
	if err != nil {
		t.Skipf("no %s: %v", libc, err)
	}
	defer f.Close()
	tab, err := loadCFI(f)
	if err != nil {
		t.Fatal(err)
	}
	if tab == nil {
		t.Fatal("no call frame information in the C library")
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		t.Fatal(err)
	}
	syms, err := ef.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	var fn elf.Symbol
	for _, s := range syms {
		if s.Name == "connect" && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			fn = s
		}
	}
	text := ef.Section(".text")
	if fn.Value == 0 || text == nil {
		t.Fatal("no connect in the C library")
	}
	code := make([]byte, fn.Size)
	if _, err := text.ReadAt(code, int64(fn.Value-text.Addr)); err != nil {
		t.Fatal(err)
	}
	var slots []int64
	for i := 0; i+1 < len(code); {
		j := bytes.Index(code[i:], []byte{0x0f, 0x05})
		if j < 0 {
			break
		}
		after := fn.Value + uint64(i+j+2) // where a syscall tracepoint sees the user pc
		off, ok := tab.returnAddressSlot(after)
		if !ok {
			t.Fatalf("no stack-pointer frame rule after the syscall at %#x", after-2)
		}
		slots = append(slots, off)
		i += j + 2
	}
	t.Logf("return address slots after connect's syscalls: %v", slots)
	if len(slots) == 0 || slots[0] != 0 {
		t.Fatalf("slots %v, want the first at the stack pointer", slots)
	}
	for _, s := range slots[1:] {
		if s <= 0 || s%8 != 0 {
			t.Errorf("slot %d", s)
		}
	}
	if _, ok := tab.returnAddressSlot(1); ok {
		t.Error("an address no FDE covers has a slot")
	}
}
