package usdt

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
)

func TestParseArg(t *testing.T) {
	cases := []struct {
		in   string
		want Arg
	}{
		{"8@%rbx", Arg{Size: 8, Kind: ArgReg, Reg: elfinfo.RegRBX}},
		{"-8@%r15", Arg{Size: 8, Signed: true, Kind: ArgReg, Reg: elfinfo.RegR15}},
		{"-4@%eax", Arg{Size: 4, Signed: true, Kind: ArgReg, Reg: elfinfo.RegRAX}},
		{"-4@%r12d", Arg{Size: 4, Signed: true, Kind: ArgReg, Reg: elfinfo.RegR12}},
		{"-4@112(%rsp)", Arg{Size: 4, Signed: true, Kind: ArgMemory, Reg: elfinfo.RegRSP, Offset: 112}},
		{"8@-24(%rbp)", Arg{Size: 8, Kind: ArgMemory, Reg: elfinfo.RegRBP, Offset: -24}},
		{"8@(%rdi)", Arg{Size: 8, Kind: ArgMemory, Reg: elfinfo.RegRDI}},
		{"4@$5", Arg{Size: 4, Kind: ArgConst, Offset: 5}},
		{"-1@$-1", Arg{Size: 1, Signed: true, Kind: ArgConst, Offset: -1}},
		{"8@%sil", Arg{Size: 8, Kind: ArgReg, Reg: elfinfo.RegRSI}},
	}
	for _, c := range cases {
		got, err := ParseArg(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"%rax", "3@%rax", "8@%xmm0", "8@foo(%rip)", "8@8(%rax,%rbx,2)", "x@%rax", "8@$zz"} {
		if _, err := ParseArg(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	args, err := ParseArgs("8@%rbp 8@%r12 -4@%eax")
	if err != nil || len(args) != 3 || args[2].Reg != elfinfo.RegRAX {
		t.Errorf("ParseArgs: %+v %v", args, err)
	}
}

// TestPython311 reads Debian's python3.11, whose audit probe the receiver attaches to.
func TestPython311(t *testing.T) {
	const python = "/usr/bin/python3.11"
	f, err := elf.Open(python)
	if err != nil {
		t.Skipf("%s: %v", python, err)
	}
	defer f.Close()
	probes, err := Read(f)
	if errors.Is(err, ErrNoProbes) {
		t.Skipf("%s was built without USDT probes", python)
	}
	if err != nil {
		t.Fatal(err)
	}
	p, err := Find(probes, "python", "audit")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Args) != 2 || p.Args[0].Size != 8 || p.Args[1].Size != 8 {
		t.Errorf("audit args %q parsed as %+v", p.RawArgs, p.Args)
	}
	if p.Semaphore == 0 || p.SemaphoreOffset == 0 {
		t.Errorf("audit probe without semaphore: %+v", p)
	}
	checkOffsets(t, f, p)
	if _, err := Find(probes, "python", "no_such_probe"); err == nil {
		t.Error("Find of a missing probe succeeded")
	}
}

// TestCProgram builds a program with a probe and a semaphore through <sys/sdt.h>.
func TestCProgram(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc is not installed")
	}
	if _, err := os.Stat("/usr/include/x86_64-linux-gnu/sys/sdt.h"); err != nil {
		if _, err := os.Stat("/usr/include/sys/sdt.h"); err != nil {
			t.Skip("<sys/sdt.h> is not installed (systemtap-sdt-dev)")
		}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "p.c")
	prog := `#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
unsigned short test_hit_semaphore __attribute__((section(".probes")));
int main(int argc, char **argv) {
	long x = argc * 3;
	if (test_hit_semaphore)
		DTRACE_PROBE2(test, hit, x, argv[0]);
	return 0;
}
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, pie := range []string{"-pie", "-no-pie"} {
		exe := filepath.Join(dir, "p"+pie)
		if out, err := exec.Command("gcc", "-O2", pie, "-o", exe, src).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, out)
		}
		f, err := elf.Open(exe)
		if err != nil {
			t.Fatal(err)
		}
		probes, err := Read(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Find(probes, "test", "hit")
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Args) != 2 {
			t.Errorf("%s: args %q", pie, p.RawArgs)
		}
		syms, _ := f.Symbols()
		for _, s := range syms {
			if s.Name == "test_hit_semaphore" && s.Value != p.Semaphore {
				t.Errorf("%s: semaphore at %#x, symbol at %#x", pie, p.Semaphore, s.Value)
			}
		}
		checkOffsets(t, f, p)
		f.Close()
	}
}

// checkOffsets reads the file at the probe's offsets: a probe site is a NOP, and the semaphore
// is a zero counter.
func checkOffsets(t *testing.T, f *elf.File, p Probe) {
	t.Helper()
	text := f.Section(".text")
	if text == nil || p.Address < text.Addr || p.Address >= text.Addr+text.Size {
		t.Fatalf("probe address %#x outside .text", p.Address)
	}
	if want := p.Address - text.Addr + text.Offset; p.FileOffset != want {
		t.Errorf("file offset %#x, want %#x", p.FileOffset, want)
	}
	code := make([]byte, 1)
	if _, err := text.ReadAt(code, int64(p.Address-text.Addr)); err != nil || code[0] != 0x90 {
		t.Errorf("probe site byte %#x, want NOP (0x90)", code)
	}
	if p.SemaphoreOffset != 0 {
		sec := f.Section(".probes")
		if sec == nil {
			t.Fatal("no .probes section")
		}
		if want := p.Semaphore - sec.Addr + sec.Offset; p.SemaphoreOffset != want {
			t.Errorf("semaphore offset %#x, want %#x", p.SemaphoreOffset, want)
		}
	}
	if !reflect.DeepEqual(p.Args, mustArgs(t, p.RawArgs)) {
		t.Errorf("args mismatch")
	}
}

func mustArgs(t *testing.T, s string) []Arg {
	a, err := ParseArgs(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
