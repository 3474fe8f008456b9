package elfinfo

import (
	"slices"
	"strings"
	"testing"
)

func TestEntryOffsetDecoding(t *testing.T) {
	// Prologues as go1.26 lays them out (go tool objdump of the receiver's test programs).
	small := []byte{0x49, 0x3b, 0x66, 0x10, 0x76, 0x18} // CMPQ SP, 0x10(R14); JBE
	medium := []byte{
		0x4c, 0x8d, 0x64, 0x24, 0xd8, // LEAQ -0x28(SP), R12
		0x4d, 0x3b, 0x66, 0x10, // CMPQ R12, 0x10(R14)
		0x0f, 0x86, 0xeb, 0x03, 0x00, 0x00, // JBE rel32
	}
	huge := []byte{
		0x49, 0x89, 0xe4, // MOVQ SP, R12
		0x49, 0x81, 0xec, 0xa8, 0x1f, 0x00, 0x00, // SUBQ $0x1fa8, R12
		0x0f, 0x82, 0xb9, 0x00, 0x00, 0x00, // JB rel32
		0x4d, 0x3b, 0x66, 0x10, // CMPQ R12, 0x10(R14)
		0x0f, 0x86, 0xaf, 0x00, 0x00, 0x00, // JBE rel32
	}
	body := []byte{0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x18, 0xc3} // PUSHQ BP; MOVQ SP, BP; SUBQ $0x18, SP; RET
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	tests := []struct {
		name string
		code []byte
		want uint64
	}{
		{"small frame", cat(small, body), 6},
		{"medium frame", cat(medium, body), 15},
		{"huge frame", cat(huge, body), 26},
		{"no check (nosplit)", cat(body), 0},
		{"check not first", cat([]byte{0x55}, small, body), 0},                        // PUSHQ BP before it: not the toolchain's layout
		{"cmp of another field", []byte{0x49, 0x3b, 0x66, 0x18, 0x76, 0x18, 0xc3}, 0}, // 0x18(R14)
		{"cmp without jbe", []byte{0x49, 0x3b, 0x66, 0x10, 0x74, 0x18, 0xc3}, 0},      // JE
		{"cut after cmp", []byte{0x49, 0x3b, 0x66, 0x10}, 0},
		{"empty", nil, 0},
		// A frameless loop whose head is right after the check: the probe would fire on every
		// iteration there, so it stays at the start.
		{"loop head at the entry", cat(small, []byte{0xe8, 0, 0, 0, 0, 0xeb, 0xf9}), 0}, // CALL; JMP -7 (to 6)
		{"backward jump elsewhere", cat(small, []byte{0x90, 0xe8, 0, 0, 0, 0, 0xeb, 0xf9}), 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := entryOffset(tc.code); got != tc.want {
				t.Errorf("entryOffset(% x) = %d, want %d", tc.code, got, tc.want)
			}
		})
	}
}

// TestEntryOffset: in a real Go binary, the entry probe of (nearly) every function that checks
// its stack goes right after the check's JBE, so that a call restarted by morestack (stack
// growth, or a preemption request) is seen once, not as two nested calls.
func TestEntryOffset(t *testing.T) {
	fx := buildFixtures(t)
	bin := openBinary(t, fx.goBin)
	fn := mustFunction(t, bin, "main.(*Agent).HandlePrompt")
	off, err := bin.EntryOffset(fn)
	if err != nil {
		t.Fatal(err)
	}
	code := readFileBytes(t, bin, fn.Address, fn.Size)
	if off == 0 || !endsWithJBE(code[:off]) {
		t.Fatalf("HandlePrompt: entry offset %d after % x, want just after the stack check's JBE", off, code[:min(len(code), 32)])
	}

	var checked, moved int
	for _, name := range bin.functionNames() {
		if !strings.HasPrefix(name, "main.") && !strings.HasPrefix(name, "runtime.") && !strings.HasPrefix(name, "fmt.") {
			continue
		}
		fn, err := bin.Function(name)
		if err != nil || fn.Size == 0 {
			continue
		}
		code := readFileBytes(t, bin, fn.Address, fn.Size)
		off, err := bin.EntryOffset(fn)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if off > 0 {
			moved++
			if !endsWithJBE(code[:off]) {
				t.Errorf("%s: entry offset %d does not follow a JBE: % x", name, off, code[:off])
			}
		}
		if hasStackCheck(code) {
			checked++
		}
	}
	t.Logf("%d functions check their stack, %d entry probes moved after the check", checked, moved)
	// A few functions with a check keep the start (a loop head right after it).
	if checked == 0 || moved < checked*95/100 || moved > checked {
		t.Errorf("%d functions check their stack, %d entry probes moved after the check", checked, moved)
	}
}

func endsWithJBE(b []byte) bool {
	n := len(b)
	return n >= 2 && b[n-2] == 0x76 || n >= 6 && b[n-6] == 0x0f && b[n-5] == 0x86
}

// hasStackCheck: a CMP with 0x10(R14) among the first bytes (by bytes, not by the decoder
// under test).
func hasStackCheck(code []byte) bool {
	head := code[:min(len(code), 24)]
	return slices.ContainsFunc([][]byte{{0x49, 0x3b, 0x66, 0x10}, {0x4d, 0x3b, 0x66, 0x10}}, func(p []byte) bool {
		return strings.Contains(string(head), string(p))
	})
}

// FuzzEntryOffset: any machine code gives the start (0) or an offset within it that follows a
// JBE, never a panic.
func FuzzEntryOffset(f *testing.F) {
	f.Add([]byte{0x49, 0x3b, 0x66, 0x10, 0x76, 0x18, 0x55, 0xc3})
	f.Add([]byte{0x4c, 0x8d, 0x64, 0x24, 0xd8, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xeb, 0x03, 0x00, 0x00, 0xc3})
	f.Add([]byte{0x49, 0x89, 0xe4, 0x49, 0x81, 0xec, 0xa8, 0x1f, 0x00, 0x00, 0x0f, 0x82, 0xb9, 0x00, 0x00, 0x00, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xaf, 0x00, 0x00, 0x00})
	f.Add([]byte{0x49, 0x3b, 0x66, 0x10, 0x76, 0x18, 0xe8, 0, 0, 0, 0, 0xeb, 0xf9})
	f.Fuzz(func(t *testing.T, code []byte) {
		off := entryOffset(code)
		if off > uint64(len(code)) || off > 0 && !endsWithJBE(code[:off]) {
			t.Fatalf("entryOffset(% x) = %d", code, off)
		}
	})
}
