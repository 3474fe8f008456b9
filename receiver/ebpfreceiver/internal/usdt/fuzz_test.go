package usdt

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
)

// probeProg has a probe with a semaphore, its note written the way <sys/sdt.h> writes it (the
// header is not needed to build it).
const probeProg = `unsigned short test_hit_semaphore __attribute__((section(".probes")));
int main(int argc, char **argv) {
	long x = argc * 3;
	if (test_hit_semaphore)
		__asm__ __volatile__(
			"990: nop\n"
			".pushsection .note.stapsdt,\"\",\"note\"\n"
			".balign 4\n"
			".4byte 992f-991f, 994f-993f, 3\n"
			"991: .asciz \"stapsdt\"\n"
			"992: .balign 4\n"
			"993: .8byte 990b\n"
			".8byte _.stapsdt.base\n"
			".8byte test_hit_semaphore\n"
			".asciz \"test\"\n"
			".asciz \"hit\"\n"
			".asciz \"-8@%0 8@%1 -4@$-1 8@-8(%%rbp)\"\n"
			"994: .balign 4\n"
			".popsection\n"
			".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n"
			".weak _.stapsdt.base\n"
			".hidden _.stapsdt.base\n"
			"_.stapsdt.base: .space 1\n"
			".size _.stapsdt.base, 1\n"
			".popsection\n"
			:: "r"(x), "r"(argv[0]));
	return 0;
}
`

// buildProbeProg compiles probeProg; "" when gcc is missing.
func buildProbeProg(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		return ""
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "p.c")
	if err := os.WriteFile(src, []byte(probeProg), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "p")
	if out, err := exec.Command("gcc", "-O2", "-o", exe, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return exe
}

func TestHandWrittenNote(t *testing.T) {
	exe := buildProbeProg(t)
	if exe == "" {
		t.Skip("gcc is not installed")
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	probes, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Find(probes, "test", "hit")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Args) != 4 || p.Args[2].Kind != ArgConst || p.Args[2].Offset != -1 || p.Args[3].Kind != ArgMemory {
		t.Errorf("args %q parsed as %+v", p.RawArgs, p.Args)
	}
	checkOffsets(t, f, p)
}

// FuzzRead: the probes of any ELF file, seeded with a program that has one and with copies of
// it whose note section lies about its size or whose note fields are corrupted.
func FuzzRead(f *testing.F) {
	elfinfo.StrictPanics(true)
	if exe := buildProbeProg(f); exe != "" {
		bin, err := os.ReadFile(exe)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(bin)
		ef, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			f.Fatal(err)
		}
		if s := ef.Section(".note.stapsdt"); s != nil {
			for _, at := range []uint64{0, 4, 20, 28, 36} { // namesz, descsz, address, base, semaphore
				c := bytes.Clone(bin)
				binary.LittleEndian.PutUint32(c[s.Offset+at:], 0xfffffff0)
				f.Add(c)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ef, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		probes, err := Read(ef)
		if err != nil && !errors.Is(err, ErrNoProbes) && !errors.Is(err, ErrBadNote) {
			if _, ok := err.(*elf.FormatError); !ok && !errors.Is(err, errors.ErrUnsupported) {
				t.Logf("error: %v", err) // read errors of debug/elf: fine, but say them
			}
		}
		if len(probes) > maxProbes {
			t.Fatalf("%d probes", len(probes))
		}
		for _, p := range probes {
			if len(p.Args) > maxArgs {
				t.Fatalf("probe %s:%s with %d arguments", p.Provider, p.Name, len(p.Args))
			}
		}
	})
}

// FuzzParseArgs: a probe's argument string.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{"-8@%rax 8@%rdx", "4@-20(%rbp)", "8@(%rdi)", "-4@$-1", "8@$0x10", "1@%al 2@%r8w", "8@%r16", "@", "8@(", "8@)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := ParseArgs(s)
		if err != nil {
			return
		}
		for _, a := range args {
			if a.Size != 1 && a.Size != 2 && a.Size != 4 && a.Size != 8 {
				t.Fatalf("%q: size %d", s, a.Size)
			}
			if a.Kind < ArgConst || a.Kind > ArgMemory {
				t.Fatalf("%q: kind %d", s, a.Kind)
			}
		}
	})
}
