package elfinfo

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// Go's register ABI (amd64) reserves a spill slot for each register argument in the caller's
// frame, just above the return address: argument word i at 8+8*i(SP) at the callee's entry, and
// again at each of its RETs, where SP is back at the return address. A function whose
// arguments stay live across calls stores them there. When it does so in its straight-line
// prologue, before any branch or call, every RET can read the arguments from the stack, so one
// probe on the RETs replaces an entry probe plus a map of calls in flight.

// goArgRegs are the integer argument registers of Go's ABIInternal, in order.
var goArgRegs = []x86asm.Reg{x86asm.RAX, x86asm.RBX, x86asm.RCX, x86asm.RDI, x86asm.RSI, x86asm.R8, x86asm.R9, x86asm.R10, x86asm.R11}

// maxSpillPrologue bounds the instructions looked at after the stack bound check.
const maxSpillPrologue = 24

// SpillsArgsAtEntry reports whether the Go function fn stores its first n integer argument
// words to their ABI spill slots before its first branch, call or return, with the frame
// pointer push and frame allocation the toolchain emits (PUSHQ BP; MOVQ SP, BP; SUBQ $frame,
// SP). Then, at each of its RETs, argument word i is at 8+8*i(SP). false is no error: the
// caller keeps its entry probe.
func (b *Binary) SpillsArgsAtEntry(fn Function, n int) (_ bool, err error) {
	defer b.recoverMalformed(&err, "function "+fn.Name)
	if n <= 0 || n > len(goArgRegs) || fn.Size == 0 {
		return false, nil
	}
	if fn.Size > maxFunctionSize {
		return false, fmt.Errorf("elfinfo: %s: function %s: implausible size %d bytes", b.Path, fn.Name, fn.Size)
	}
	code, err := b.readAt(fn.Address, fn.Size)
	if err != nil {
		return false, fmt.Errorf("elfinfo: %s: function %s: %w", b.Path, fn.Name, err)
	}
	return spillsArgs(code, n), nil
}

// spillsArgs is SpillsArgsAtEntry on fn's machine code.
func spillsArgs(code []byte, n int) bool {
	start := entryOffset(code)
	if start == 0 {
		return false // no stack bound check: not laid out as the Go toolchain does
	}
	pc := int(start)
	pushed, frame := false, int64(-1)
	spilled := map[x86asm.Reg]int64{}
	for i := 0; i < maxSpillPrologue && pc < len(code); i++ {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil || inst.Len == 0 || inst.Op == 0 {
			return false
		}
		pc += inst.Len
		switch {
		case inst.Op == x86asm.PUSH && inst.Args[0] == x86asm.RBP && !pushed && frame < 0:
			pushed = true
			continue
		case inst.Op == x86asm.MOV && inst.Args[0] == x86asm.RBP && inst.Args[1] == x86asm.RSP:
			continue
		case inst.Op == x86asm.SUB && inst.Args[0] == x86asm.RSP && frame < 0:
			imm, ok := inst.Args[1].(x86asm.Imm)
			if !ok || imm <= 0 || imm > 1<<20 {
				return false
			}
			frame = int64(imm)
			continue
		case inst.Op == x86asm.RET || inst.Op == x86asm.CALL || isBranch(inst.Op):
			return spillsComplete(spilled, pushed, frame, n)
		}
		if inst.Op == x86asm.MOV && frame >= 0 {
			if m, ok := inst.Args[0].(x86asm.Mem); ok && m.Base == x86asm.RSP && m.Index == 0 && m.Segment == 0 {
				if r, ok := inst.Args[1].(x86asm.Reg); ok {
					if _, seen := spilled[r]; !seen {
						spilled[r] = m.Disp
					}
					continue
				}
			}
		}
		// Anything else writing an argument register before its spill would make the slot
		// hold another value: only the allocation's own instructions and stores pass.
		if len(inst.Args) > 0 {
			if r, ok := inst.Args[0].(x86asm.Reg); ok && isArgReg(r) {
				if _, seen := spilled[r]; !seen {
					return false
				}
			}
		}
	}
	return spillsComplete(spilled, pushed, frame, n)
}

// spillsComplete: the first n argument registers were stored to their slots above the frame
// (its size, the pushed frame pointer and the return address below them).
func spillsComplete(spilled map[x86asm.Reg]int64, pushed bool, frame int64, n int) bool {
	if frame < 0 {
		return false
	}
	base := frame + 8 // the return address
	if pushed {
		base += 8
	}
	for i := 0; i < n; i++ {
		if d, ok := spilled[goArgRegs[i]]; !ok || d != base+8*int64(i) {
			return false
		}
	}
	return true
}

func isArgReg(r x86asm.Reg) bool {
	for _, a := range goArgRegs {
		// x86asm names the 32-bit forms apart; a write to EAX clears RAX's top half too.
		if r == a || r == a-x86asm.RAX+x86asm.EAX {
			return true
		}
	}
	return false
}
