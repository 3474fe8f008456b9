package elfinfo

import (
	"bytes"
	"testing"
)

// Go 1.26's crypto/tls.(*Conn).Read prologue (go tool objdump), up to its first call.
var (
	readCheck  = []byte{0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x40, 0x00, 0x00, 0x00} // CMPQ SP, 0x10(R14); JBE morestack
	readFrame  = []byte{0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x58}             // PUSHQ BP; MOVQ SP, BP; SUBQ $0x58, SP
	storeX15   = []byte{0x66, 0x44, 0x0f, 0xd6, 0x7c, 0x24, 0x50}                   // MOVQ X15, 0x50(SP)
	spillAX    = []byte{0x48, 0x89, 0x44, 0x24, 0x68}                               // MOVQ AX, 0x68(SP)
	spillCX    = []byte{0x48, 0x89, 0x4c, 0x24, 0x78}                               // MOVQ CX, 0x78(SP)
	spillBX    = []byte{0x48, 0x89, 0x5c, 0x24, 0x70}                               // MOVQ BX, 0x70(SP)
	spillBXOff = []byte{0x48, 0x89, 0x5c, 0x24, 0x60}                               // MOVQ BX, 0x60(SP): a local, not the slot
	leaBX      = []byte{0x48, 0x8d, 0x1d, 0x00, 0x00, 0x00, 0x00}                   // LEAQ 0(IP), BX
	call       = []byte{0xe8, 0x00, 0x00, 0x00, 0x00}                               // CALL
	jne        = []byte{0x75, 0x00}                                                 // JNE
	tail       = bytes.Repeat([]byte{0xcc}, 0x40)                                   // the morestack path's stand-in
)

func TestSpillsArgs(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		code []byte
		n    int
		want bool
	}{
		{"crypto/tls Read: c and b's pointer", cat(readCheck, readFrame, storeX15, spillAX, spillCX, spillBX, leaBX, call, tail), 2, true},
		{"and b's length", cat(readCheck, readFrame, storeX15, spillAX, spillCX, spillBX, leaBX, call, tail), 3, true},
		{"a fourth word never stored", cat(readCheck, readFrame, spillAX, spillCX, spillBX, call, tail), 4, false},
		{"BX stored after a branch", cat(readCheck, readFrame, spillAX, jne, spillBX, call, tail), 2, false},
		{"BX overwritten before its store", cat(readCheck, readFrame, spillAX, leaBX, spillBX, call, tail), 2, false},
		{"BX stored to a local", cat(readCheck, readFrame, spillAX, spillBXOff, call, tail), 2, false},
		{"no stack bound check", cat(readFrame, spillAX, spillBX, call, tail), 2, false},
		{"no frame allocation", cat(readCheck, spillAX, spillBX, call, tail), 2, false},
		{"undecodable", cat(readCheck, readFrame, []byte{0x0f, 0xff}, tail), 2, false},
		{"empty", nil, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := spillsArgs(tc.code, tc.n); got != tc.want {
				t.Errorf("spillsArgs = %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzSpillsArgs: arbitrary machine code is decoded without panicking and within the bound.
func FuzzSpillsArgs(f *testing.F) {
	f.Add(bytes.Join([][]byte{readCheck, readFrame, storeX15, spillAX, spillCX, spillBX, leaBX, call, tail}, nil), 2)
	f.Add([]byte{0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0, 0, 0, 0, 0x55}, 9)
	f.Fuzz(func(t *testing.T, code []byte, n int) {
		_ = spillsArgs(code, min(max(n, 0), len(goArgRegs)))
	})
}
