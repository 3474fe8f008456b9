package elfinfo

import (
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// ErrNoReturn is wrapped by errors from ReturnOffsets when a function has no
// RET instruction.
var ErrNoReturn = errors.New("function has no RET instruction")

// ErrUndecodable is wrapped by errors from ReturnOffsets when part of a
// function could not be decoded, so that the RETs found after it cannot be
// trusted to be instruction boundaries.
var ErrUndecodable = errors.New("machine code could not be decoded")

// maxFunctionSize bounds how many bytes ReturnOffsets disassembles.
const maxFunctionSize = 64 << 20

// ReturnOffsets returns the offsets, relative to fn.Address, of every RET
// instruction of fn (both the plain and the immediate form), in increasing
// order. A uprobe on each of them observes every return of the function
// without a uretprobe, which must never be used on Go functions (Go copies
// goroutine stacks, so a hijacked return address crashes the program).
//
// The bytes are decoded sequentially from the function's start with x86asm,
// completed by a length decoder for the 0F, 0F38, 0F3A, VEX and EVEX opcodes
// x86asm does not know (ENDBR64, ADCX/ADOX, ...). Should a byte still not
// decode, one byte is skipped and decoding continues, but since a uprobe on
// a byte that is not an instruction boundary corrupts the traced program,
// the result is then refused with an error wrapping ErrUndecodable. A
// function without any RET (it only tail-jumps, or never returns, e.g. it
// always panics) gives an error wrapping ErrNoReturn.
func (b *Binary) ReturnOffsets(fn Function) (_ []uint64, err error) {
	defer b.recoverMalformed(&err, "function "+fn.Name)
	if fn.Size == 0 {
		return nil, fmt.Errorf("elfinfo: %s: function %s at %#x: size unknown (symbol size 0), cannot find its return instructions", b.Path, fn.Name, fn.Address)
	}
	if fn.Size > maxFunctionSize {
		return nil, fmt.Errorf("elfinfo: %s: function %s: implausible size %d bytes", b.Path, fn.Name, fn.Size)
	}
	code, err := b.readAt(fn.Address, fn.Size)
	if err != nil {
		return nil, fmt.Errorf("elfinfo: %s: function %s: %w", b.Path, fn.Name, err)
	}
	offsets, bad := returnOffsets(code)
	if len(bad) > 0 {
		return nil, fmt.Errorf("elfinfo: %s: function %s: %w at offset(s) %#x; its return instructions cannot be located safely", b.Path, fn.Name, ErrUndecodable, bad[:min(len(bad), 5)])
	}
	if len(offsets) == 0 {
		return nil, fmt.Errorf("elfinfo: %s: function %s (%d bytes at %#x): %w: it only tail-jumps or never returns, so no return probe can be placed", b.Path, fn.Name, fn.Size, fn.Address, ErrNoReturn)
	}
	return offsets, nil
}

// returnOffsets finds the RET instructions in x86-64 machine code. bad lists
// the offsets of bytes that could not be decoded and were skipped.
func returnOffsets(code []byte) (rets, bad []uint64) {
	for pc := 0; pc < len(code); {
		n := 0
		if n = vzeroLen(code[pc:]); n > 0 {
			pc += n
			continue
		}
		inst, err := x86asm.Decode(code[pc:], 64)
		switch {
		case err == nil && inst.Op != 0 && inst.Len > 0:
			n = inst.Len
			if inst.Op == x86asm.RET {
				rets = append(rets, uint64(pc))
			}
		default:
			// x86asm reports opcodes it does not know either as an error
			// or as a lone prefix (Op 0, length 1).
			n = instLen(code[pc:])
		}
		if n == 0 {
			bad = append(bad, uint64(pc))
			n = 1
		}
		pc += n
	}
	return rets, bad
}

// instLen returns the length of an instruction in the 0F, 0F38 or 0F3A
// opcode maps, or a VEX/EVEX-encoded one, or 0 if b does not start with one.
// It covers the encodings x86asm does not decode.
func instLen(b []byte) int {
	i := 0
	for i < len(b) && i < 14 && isLegacyPrefix(b[i]) {
		i++
	}
	if i >= len(b) {
		return 0
	}
	var op byte
	var opMap int // 1: 0F, 2: 0F38, 3: 0F3A
	switch c := b[i]; {
	case c == 0xc5: // two-byte VEX
		if i+3 > len(b) {
			return 0
		}
		opMap, op, i = 1, b[i+2], i+3
	case c == 0xc4: // three-byte VEX
		if i+4 > len(b) {
			return 0
		}
		opMap, op, i = int(b[i+1]&0x1f), b[i+3], i+4
	case c == 0x62: // EVEX
		if i+5 > len(b) {
			return 0
		}
		opMap, op, i = int(b[i+1]&0x07), b[i+4], i+5
	default:
		if c&0xf0 == 0x40 { // REX
			i++
		}
		if i+2 > len(b) || b[i] != 0x0f {
			return 0
		}
		switch b[i+1] {
		case 0x38, 0x3a:
			if i+3 > len(b) {
				return 0
			}
			opMap, op, i = 2+int(b[i+1]-0x38)/2, b[i+2], i+3
		default:
			opMap, op, i = 1, b[i+1], i+2
		}
	}
	hasModRM, imm := true, 0
	switch opMap {
	case 1:
		switch {
		case op == 0x77 || op == 0x05 || op == 0x06 || op == 0x07 || op == 0x08 || op == 0x09 || op == 0x0b ||
			op == 0x0e || (op >= 0x30 && op <= 0x37) || op == 0xa0 || op == 0xa1 || op == 0xa2 ||
			op == 0xa8 || op == 0xa9 || op == 0xaa || (op >= 0xc8 && op <= 0xcf):
			hasModRM = false
		case op >= 0x80 && op <= 0x8f: // Jcc rel32
			hasModRM, imm = false, 4
		case (op >= 0x70 && op <= 0x73) || op == 0xa4 || op == 0xac || op == 0xba || (op >= 0xc2 && op <= 0xc6) || op == 0x0f:
			imm = 1
		}
	case 2:
	case 3:
		imm = 1
	default:
		return 0
	}
	if hasModRM {
		n := modRMLen(b[i:])
		if n == 0 {
			return 0
		}
		i += n
	}
	i += imm
	if i > len(b) || i > 15 {
		return 0
	}
	return i
}

// vzeroLen returns the length of a VZEROUPPER or VZEROALL instruction (VEX
// 0F 77) at the start of b, or 0. x86asm v0.33 wrongly decodes them with a
// ModRM byte, swallowing the next byte, which is often the RET after them.
func vzeroLen(b []byte) int {
	switch {
	case len(b) >= 3 && b[0] == 0xc5 && b[2] == 0x77:
		return 3
	case len(b) >= 4 && b[0] == 0xc4 && b[1]&0x1f == 1 && b[3] == 0x77:
		return 4
	}
	return 0
}

func isLegacyPrefix(c byte) bool {
	switch c {
	case 0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65:
		return true
	}
	return false
}

// modRMLen returns the length of a ModRM byte with its SIB byte and
// displacement, or 0 if b is too short.
func modRMLen(b []byte) int {
	if len(b) < 1 {
		return 0
	}
	mod, rm := b[0]>>6, b[0]&7
	n := 1
	if mod != 3 && rm == 4 {
		if len(b) < 2 {
			return 0
		}
		if mod == 0 && b[1]&7 == 5 {
			n += 4 // SIB without base: disp32
		}
		n++
	}
	switch mod {
	case 0:
		if rm == 5 {
			n += 4 // RIP-relative disp32
		}
	case 1:
		n++
	case 2:
		n += 4
	}
	if n > len(b) {
		return 0
	}
	return n
}
