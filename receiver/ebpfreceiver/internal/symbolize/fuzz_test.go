package symbolize

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo/elfinfotest"
)

// A traced process chooses the binaries it maps and what its maps file says. The targets
// run under elfinfo.StrictPanics: a panic of debug/* or of the .eh_frame parser is recovered
// as in production, one of ours fails the target.

// fixtureBytes builds the C fixtures (and the Go one when withGo) and returns their
// contents; none when the compilers are missing.
func fixtureBytes(f *testing.F, withGo bool) [][]byte {
	f.Helper()
	var paths []string
	if _, err := exec.LookPath("gcc"); err == nil {
		b := buildCProgs(f)
		paths = append(paths, b.pie, b.nopie, b.lib)
	}
	if _, err := exec.LookPath("go"); err == nil && withGo {
		paths = append(paths, buildGoProg(f))
	}
	return elfinfotest.ReadFiles(f, paths)
}

// FuzzLoadBinary: a mapped binary's symbol tables, Go pclntab, DWARF line table and
// .eh_frame, and lookups in them.
func FuzzLoadBinary(f *testing.F) {
	elfinfo.StrictPanics(true)
	bins := fixtureBytes(f, true)
	for _, bin := range bins {
		f.Add(bin)
	}
	if len(bins) > 0 {
		for _, bin := range elfinfotest.LyingSections(bins[0]) {
			f.Add(bin)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var ef *elf.File
		if elfinfo.Guard(func() (err error) { ef, err = elf.NewFile(r); return err }) != nil {
			return
		}
		identityKey(ef, int64(len(data)), nil, "fuzz")
		b := loadBinary(ef, "fuzz")
		addrs := []uint64{0, 1 << 63}
		for i := 0; i < len(b.symAddr) && i < 16; i++ {
			addrs = append(addrs, b.symAddr[i], b.symEnd[i]-1)
		}
		for _, s := range b.segs {
			addrs = append(addrs, s.vaddr, s.vaddr+s.filesz/2)
		}
		lt, _ := loadLineTable(r, b)
		cfi, _ := loadCFI(r)
		for _, v := range addrs {
			b.lookup(v, reopener{})
			_, _ = b.fileToVaddr(v)
			if lt != nil {
				lt.find(v)
			}
			if cfi != nil {
				cfi.returnAddressSlot(v)
			}
		}
		if lt != nil && len(lt.rows) > maxLineRows {
			t.Fatalf("%d line rows", len(lt.rows))
		}
	})
}

// FuzzParseCFI: a traced program's binary may hold any bytes in .eh_frame: no panic.
func FuzzParseCFI(f *testing.F) {
	elfinfo.StrictPanics(true)
	f.Add([]byte{0x14, 0, 0, 0, 0, 0, 0, 0, 1, 'z', 'R', 0, 1, 0x78, 0x10, 1, 0x1b, 0x0c, 7, 8, 0x90, 1}, uint64(0x1000), uint64(0x1000))
	for _, bin := range fixtureBytes(f, false) {
		ef, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			f.Fatal(err)
		}
		if s := ef.Section(".eh_frame"); s != nil {
			data, err := s.Data()
			if err != nil {
				f.Fatal(err)
			}
			pc := s.Addr
			if text := ef.Section(".text"); text != nil {
				pc = text.Addr + 8
			}
			f.Add(data, s.Addr, pc)
		}
	}
	f.Fuzz(func(t *testing.T, section []byte, addr, pc uint64) {
		if tab, _ := parseCFI(section, addr); tab != nil {
			tab.returnAddressSlot(pc)
			tab.returnAddressSlot(pc + 1)
		}
	})
}

// FuzzParseMaps: /proc/<pid>/maps. The mappings come out sorted, non-overlapping and
// non-empty, and at most maxMappings of them.
func FuzzParseMaps(f *testing.F) {
	f.Add([]byte("55d0c0a00000-55d0c0a28000 r--p 00000000 fd:01 1234 /usr/bin/python3.11\n" +
		"55d0c0a28000-55d0c0c00000 r-xp 00028000 fd:01 1234 /usr/bin/python3.11\n" +
		"7f1c2c000000-7f1c2c021000 rw-p 00000000 00:00 0 \n" +
		"7f1c2d000000-7f1c2d200000 r-xp 00000000 fd:01 99 /tmp/with space (deleted)\n" +
		"7ffd4a5f2000-7ffd4a5f4000 r-xp 00000000 00:00 0                          [vdso]\n"))
	if data, err := os.ReadFile("/proc/self/maps"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("ffffffffffffffff-0 r-xp 0 0:0 0 /a\n1000-2000 rwxp ffffffffffffffff 0:0 18446744073709551615 /b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		maps, _ := parseMaps(data)
		if len(maps) > maxMappings {
			t.Fatalf("%d mappings", len(maps))
		}
		for i, m := range maps {
			if m.end <= m.start || (i > 0 && m.start < maps[i-1].end) {
				t.Fatalf("mapping %d [%#x, %#x) after [%#x, %#x)", i, m.start, m.end, maps[max(i-1, 0)].start, maps[max(i-1, 0)].end)
			}
			if findMapping(maps, m.start) != m || findMapping(maps, m.end-1) != m {
				t.Fatalf("mapping %d not found by its addresses", i)
			}
		}
	})
}

func TestParseMapsBounded(t *testing.T) {
	var sb strings.Builder
	for i := 0; i < maxMappings+10; i++ {
		fmt.Fprintf(&sb, "%x-%x r-xp 0 0:0 0 /lib%d\n", 0x10000+i*0x1000, 0x10000+i*0x1000+0x1000, i)
	}
	maps, more := parseMaps([]byte(sb.String()))
	if len(maps) != maxMappings || !more {
		t.Fatalf("%d mappings (more %v), want %d and more", len(maps), more, maxMappings)
	}
	dir := t.TempDir()
	p := dir + "/maps"
	line := "10000-11000 r-xp 00000000 00:00 0 /" + strings.Repeat("x", 4000) + "\n"
	if err := os.WriteFile(p, []byte(strings.Repeat(line, maxMapsSize/len(line)+2)), 0o644); err != nil {
		t.Fatal(err)
	}
	data, cut, err := ReadMaps(p)
	if err != nil || !cut || len(data) > maxMapsSize || len(data)%len(line) != 0 {
		t.Fatalf("read %d bytes, cut %v, err %v: want at most %d whole lines", len(data), cut, err, maxMapsSize)
	}
}
