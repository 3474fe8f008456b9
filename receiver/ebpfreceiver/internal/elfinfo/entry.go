package elfinfo

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// A Go function (amd64) begins with its stack bound check: it compares SP (or SP minus its
// frame, in R12) with g.stackguard0 at 0x10(R14) and, when the stack is too small or the
// runtime asked the goroutine to stop (preemption, a GC stack scan), calls runtime.morestack
// and jumps back to its first instruction. A uprobe on that first instruction therefore fires
// once more for every such restart: one call seen as two nested entries with a single return,
// the outer span never ending and every later call of the goroutine placed under it. The probe
// goes after the check instead, which every call passes exactly once.

// maxPrologue bounds the instructions looked at before the check's CMP (the largest frames
// use MOVQ SP, R12; SUBQ $n, R12; JCS; then CMPQ R12, 0x10(R14)).
const maxPrologue = 5

// stackGuardDisp is the offset of g.stackguard0 in the runtime's g (stable since Go 1.0).
const stackGuardDisp = 0x10

// EntryOffset returns the offset, relative to fn.Address, where an entry uprobe sees each call
// of a Go function once: just after its stack bound check (see above), or 0 when the function
// has none (NOSPLIT code, or code not laid out by the Go toolchain) or when a branch of the
// function leads to that instruction (a loop head there would be counted as entries).
func (b *Binary) EntryOffset(fn Function) (_ uint64, err error) {
	defer b.recoverMalformed(&err, "function "+fn.Name)
	if fn.Size == 0 {
		return 0, nil // size unknown: the symbol's address, as before
	}
	if fn.Size > maxFunctionSize {
		return 0, fmt.Errorf("elfinfo: %s: function %s: implausible size %d bytes", b.Path, fn.Name, fn.Size)
	}
	code, err := b.readAt(fn.Address, fn.Size)
	if err != nil {
		return 0, fmt.Errorf("elfinfo: %s: function %s: %w", b.Path, fn.Name, err)
	}
	return entryOffset(code), nil
}

// entryOffset finds the end of a Go stack bound check at the start of code (0 when there is
// none, or when a branch within code targets it).
func entryOffset(code []byte) uint64 {
	pc := 0
	for i := 0; i < maxPrologue && pc < len(code); i++ {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil || inst.Len == 0 {
			return 0
		}
		pc += inst.Len
		if inst.Op == x86asm.CMP && isStackGuard(inst.Args[1]) && (inst.Args[0] == x86asm.RSP || inst.Args[0] == x86asm.R12) {
			jbe, err := x86asm.Decode(code[pc:], 64)
			if err != nil || jbe.Op != x86asm.JBE {
				return 0
			}
			end := pc + jbe.Len
			if branchesTo(code, end) {
				return 0
			}
			return uint64(end)
		}
		if !prologueStep(inst) {
			return 0
		}
	}
	return 0
}

// isStackGuard: the operand is g.stackguard0, 0x10(R14).
func isStackGuard(a x86asm.Arg) bool {
	m, ok := a.(x86asm.Mem)
	return ok && m.Base == x86asm.R14 && m.Index == 0 && m.Disp == stackGuardDisp && m.Segment == 0
}

// prologueStep: an instruction the toolchain puts before the check's CMP for a large frame
// (R12 = SP - frame, with a jump to morestack when that wraps).
func prologueStep(inst x86asm.Inst) bool {
	switch inst.Op {
	case x86asm.LEA, x86asm.MOV, x86asm.SUB:
		return inst.Args[0] == x86asm.R12
	case x86asm.JB:
		return true
	}
	return false
}

// branchesTo reports whether a direct jump of code targets offset at. Decoding follows
// returnOffsets; an undecodable byte counts as a branch there (no certainty, no move).
func branchesTo(code []byte, at int) bool {
	for pc := 0; pc < len(code); {
		if n := vzeroLen(code[pc:]); n > 0 {
			pc += n
			continue
		}
		inst, err := x86asm.Decode(code[pc:], 64)
		n := 0
		if err == nil && inst.Op != 0 && inst.Len > 0 {
			n = inst.Len
			if rel, ok := inst.Args[0].(x86asm.Rel); ok && isBranch(inst.Op) && pc+n+int(rel) == at {
				return true
			}
		} else {
			n = instLen(code[pc:])
		}
		if n == 0 {
			return true
		}
		pc += n
	}
	return false
}

func isBranch(op x86asm.Op) bool {
	switch op {
	case x86asm.JMP, x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE,
		x86asm.JL, x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO, x86asm.JP,
		x86asm.JS, x86asm.JCXZ, x86asm.JECXZ, x86asm.JRCXZ, x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE:
		return true
	}
	return false
}
