package symbolize

import (
	"debug/elf"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestGoProgram(t *testing.T) {
	src := filepath.Join("testdata", "goprog", "main.go")
	want := []wantFrame{
		{function: "main.inner", fileSfx: "main.go"}, // leaf: exact lookup of a return address
		{function: "main.middle", fileSfx: "main.go", line: markerLine(t, src, "middle")},
		{function: "main.outer", fileSfx: "main.go", line: markerLine(t, src, "outer")},
		{function: "main.main", fileSfx: "main.go", line: markerLine(t, src, "main")},
		{function: "runtime.main", fileSfx: "proc.go"},
	}
	tests := []struct {
		name  string
		flags []string
	}{
		{name: "default"},
		{name: "pie", flags: []string{"-buildmode=pie"}},
		{name: "stripped", flags: []string{"-ldflags=-s -w"}},
		{name: "external_linking", flags: []string{"-ldflags=-linkmode=external"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bin := buildGoProg(t, tc.flags...)
			c := startChild(t, bin, 1)
			pcs := goPCs(t, c.lines[0])

			eager := New(Options{})
			defer eager.Close()
			deferred := New(Options{DeferLoad: true})
			defer deferred.Close()
			for _, s := range []*Symbolizer{eager, deferred} {
				if err := s.Prepare(c.pid); err != nil {
					t.Fatal(err)
				}
			}
			check := func(t *testing.T, s *Symbolizer) {
				t.Helper()
				frames := s.Symbolize(c.pid, pcs)
				if len(frames) != len(pcs) {
					t.Fatalf("got %d frames for %d addresses", len(frames), len(pcs))
				}
				for i, w := range want {
					w.module = bin
					checkFrame(t, frames[i], w)
					if frames[i].Address != pcs[i] {
						t.Errorf("frame %d: Address = %#x, want %#x (unadjusted)", i, frames[i].Address, pcs[i])
					}
				}
				if t.Failed() {
					for i, f := range frames {
						t.Logf("frame %d: %v", i, f)
					}
				}
			}
			t.Run("running", func(t *testing.T) { check(t, eager) })
			c.exit(t)
			t.Run("exited", func(t *testing.T) { check(t, eager) })
			// The deferred symbolizer loads the binary only now, through
			// the plain path (the process' /proc entries are gone).
			t.Run("exited_deferred_load", func(t *testing.T) { check(t, deferred) })
		})
	}
}

func TestCProgram(t *testing.T) {
	b := buildCProgs(t)
	tests := []struct {
		name     string
		bin      string
		wantType elf.Type
	}{
		{name: "pie", bin: b.pie, wantType: elf.ET_DYN},
		{name: "nopie", bin: b.nopie, wantType: elf.ET_EXEC},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := elfType(t, tc.bin); got != tc.wantType {
				t.Fatalf("%s: ELF type %v, want %v", tc.bin, got, tc.wantType)
			}
			c := startChild(t, tc.bin, 2)
			kv := keyValues(t, c.lines...)
			s := New(Options{})
			defer s.Close()
			if err := s.Prepare(c.pid); err != nil {
				t.Fatal(err)
			}
			const leaf = 0 // placeholder leaf so return addresses sit at index 1
			cases := []struct {
				name  string
				addrs []uint64
				idx   int
				want  wantFrame
			}{
				{name: "exe_function", addrs: []uint64{kv["prog_inner"]},
					want: wantFrame{function: "prog_inner", fileSfx: "prog.c", line: markerLine(t, b.progC, "def_prog_inner"), module: tc.bin}},
				{name: "exe_function_2", addrs: []uint64{kv["prog_outer"]},
					want: wantFrame{function: "prog_outer", fileSfx: "prog.c", line: markerLine(t, b.progC, "def_prog_outer"), module: tc.bin}},
				{name: "exe_return_address", addrs: []uint64{leaf, kv["ret_in_outer"]}, idx: 1,
					want: wantFrame{function: "prog_outer", fileSfx: "prog.c", line: markerLine(t, b.progC, "call_inner"), module: tc.bin}},
				{name: "lib_function", addrs: []uint64{kv["libx_fn"]},
					want: wantFrame{function: "libx_fn", fileSfx: "libx.c", line: markerLine(t, b.libxC, "def_libx_fn"), module: b.lib}},
				{name: "lib_static_function", addrs: []uint64{kv["libx_static"]},
					want: wantFrame{function: "libx_static", fileSfx: "libx.c", line: markerLine(t, b.libxC, "def_libx_static"), module: b.lib}},
				{name: "lib_return_address", addrs: []uint64{leaf, kv["ret_in_lib"]}, idx: 1,
					want: wantFrame{function: "libx_fn", fileSfx: "libx.c", line: markerLine(t, b.libxC, "call_cb"), module: b.lib}},
			}
			if tc.wantType == elf.ET_DYN {
				// In a PIE &puts is libc's own address (in a non-PIE
				// executable it is the executable's canonical PLT slot).
				cases = append(cases, struct {
					name  string
					addrs []uint64
					idx   int
					want  wantFrame
				}{name: "libc_dynsym", addrs: []uint64{kv["puts"]},
					want: wantFrame{functions: []string{"puts", "_IO_puts"}, moduleSfx: "libc.so.6"}})
			}
			// afterExit is prepared now but used only after the process
			// exited, so its DWARF line tables are loaded from disk then.
			afterExit := New(Options{})
			defer afterExit.Close()
			if err := afterExit.Prepare(c.pid); err != nil {
				t.Fatal(err)
			}
			for _, cc := range cases {
				t.Run(cc.name, func(t *testing.T) {
					frames := s.Symbolize(c.pid, cc.addrs)
					checkFrame(t, frames[cc.idx], cc.want)
				})
			}
			c.exit(t)
			for _, cc := range cases {
				t.Run("exited_"+cc.name, func(t *testing.T) {
					frames := afterExit.Symbolize(c.pid, cc.addrs)
					checkFrame(t, frames[cc.idx], cc.want)
				})
			}
		})
	}
}

func TestUnknownAddresses(t *testing.T) {
	bin := buildGoProg(t)
	c := startChild(t, bin, 1)
	s := New(Options{})
	defer s.Close()
	if err := s.Prepare(c.pid); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		addr uint64
	}{
		{name: "zero", addr: 0},
		{name: "one", addr: 1},
		{name: "low_unmapped", addr: 0x1000},
		{name: "kernel", addr: 0xffffffff81000000},
		{name: "max", addr: math.MaxUint64},
		{name: "noncanonical", addr: 0x0000900000000000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, addrs := range [][]uint64{{tc.addr}, {tc.addr, tc.addr}} {
				frames := s.Symbolize(c.pid, addrs)
				for i, f := range frames {
					if f.Address != tc.addr || f.Function != "" || f.File != "" || f.Line != 0 {
						t.Errorf("frame %d = %+v, want only Address %#x", i, f, tc.addr)
					}
					if !strings.HasPrefix(f.String(), "0x") {
						t.Errorf("String() = %q", f.String())
					}
				}
			}
		})
	}
	// All those misses may re-read the maps at most the burst after Prepare plus once a second.
	if got := s.Stats().MapReloads; got > mapsReloadBurst+2 {
		t.Errorf("MapReloads = %d after a burst of misses, want <= %d", got, mapsReloadBurst+2)
	}
}

func TestNonexistentPid(t *testing.T) {
	tests := []struct {
		name string
		pid  uint32
	}{
		{name: "zero", pid: 0},
		{name: "max", pid: math.MaxUint32},
		{name: "beyond_pid_max", pid: 1 << 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{})
			defer s.Close()
			err := s.Prepare(tc.pid)
			if err == nil {
				t.Fatalf("Prepare(%d) succeeded", tc.pid)
			}
			if !strings.Contains(err.Error(), fmt.Sprint(tc.pid)) {
				t.Errorf("error %q does not name pid %d", err, tc.pid)
			}
			addrs := []uint64{0x401000, 0x7f0000001000, 0}
			for range 3 {
				frames := s.Symbolize(tc.pid, addrs)
				if len(frames) != len(addrs) {
					t.Fatalf("got %d frames", len(frames))
				}
				for i, f := range frames {
					if (f != Frame{Address: addrs[i]}) {
						t.Errorf("frame %d = %+v, want Address only", i, f)
					}
				}
			}
			if got := s.Symbolize(tc.pid, nil); len(got) != 0 {
				t.Errorf("Symbolize(nil) = %v", got)
			}
			s.Forget(tc.pid)
		})
	}
}

func TestForgetReloads(t *testing.T) {
	bin := buildGoProg(t)
	c := startChild(t, bin, 1)
	pcs := goPCs(t, c.lines[0])
	s := New(Options{})
	defer s.Close()
	if err := s.Prepare(c.pid); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		before func()
	}{
		{name: "prepared"},
		{name: "forgotten", before: func() { s.Forget(c.pid) }},
		{name: "forgotten_twice", before: func() { s.Forget(c.pid); s.Forget(c.pid) }},
		{name: "never_prepared", before: func() { s.Forget(c.pid) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			frames := s.Symbolize(c.pid, pcs[:2])
			checkFrame(t, frames[0], wantFrame{function: "main.inner", fileSfx: "main.go", module: bin})
			checkFrame(t, frames[1], wantFrame{function: "main.middle", fileSfx: "main.go", module: bin})
		})
	}
	if st := s.Stats(); st.BinariesCached == 0 || st.Hits == 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestConcurrent(t *testing.T) {
	bin := buildGoProg(t)
	c := startChild(t, bin, 1)
	pcs := goPCs(t, c.lines[0])
	s := New(Options{MaxBinaries: 1})
	defer s.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				switch {
				case g == 0 && i%50 == 0:
					s.Forget(c.pid)
				case g == 1 && i%50 == 0:
					_ = s.Prepare(c.pid)
				}
				frames := s.Symbolize(c.pid, pcs)
				if f := frames[1]; f.Function != "main.middle" {
					t.Errorf("frame = %v", f)
					return
				}
				_ = s.Stats()
			}
		}()
	}
	wg.Wait()
}

func TestFrameString(t *testing.T) {
	tests := []struct {
		name  string
		frame Frame
		want  string
	}{
		{name: "go", frame: Frame{Address: 0x45, Function: "main.(*Agent).HandlePrompt", File: "/src/agent/main.go", Line: 42, Module: "/bin/agent"},
			want: "main.(*Agent).HandlePrompt (/src/agent/main.go:42)"},
		{name: "function_only", frame: Frame{Address: 0x45, Function: "malloc", Module: "/usr/lib/x86_64-linux-gnu/libc.so.6"},
			want: "malloc (/usr/lib/x86_64-linux-gnu/libc.so.6)"},
		{name: "file_without_line", frame: Frame{Function: "f", File: "a.c"}, want: "f (a.c)"},
		{name: "bare_function", frame: Frame{Function: "f"}, want: "f"},
		{name: "unknown_in_module", frame: Frame{Address: 0x7f1200001234, Module: "/usr/lib/x86_64-linux-gnu/libc.so.6"},
			want: "0x7f1200001234 (/usr/lib/x86_64-linux-gnu/libc.so.6)"},
		{name: "unknown", frame: Frame{Address: 0xdead}, want: "0xdead"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.frame.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

// mapFields are the parsed (comparable) fields of a mapping.
type mapFields struct {
	start, end, offset uint64
	dev                string
	inode              uint64
	module, path       string
	deleted, exec      bool
}

func TestParseMapsLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		ok   bool
		want mapFields
	}{
		{name: "exec_file", line: "55b737876000-55b73787b000 r-xp 00002000 fe:00 247026                     /usr/bin/cat", ok: true,
			want: mapFields{start: 0x55b737876000, end: 0x55b73787b000, offset: 0x2000, dev: "fe:00", inode: 247026, module: "/usr/bin/cat", path: "/usr/bin/cat", exec: true}},
		{name: "path_with_spaces", line: "1000-2000 r-xp 00000000 08:01 12 /opt/my app/lib x.so", ok: true,
			want: mapFields{start: 0x1000, end: 0x2000, dev: "08:01", inode: 12, module: "/opt/my app/lib x.so", path: "/opt/my app/lib x.so", exec: true}},
		{name: "deleted", line: "1000-2000 r-xp 00001000 08:01 12 /tmp/a.out (deleted)", ok: true,
			want: mapFields{start: 0x1000, end: 0x2000, offset: 0x1000, dev: "08:01", inode: 12, module: "/tmp/a.out (deleted)", path: "/tmp/a.out", deleted: true, exec: true}},
		{name: "vdso", line: "7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]", ok: true,
			want: mapFields{start: 0x7ffd1000, end: 0x7ffd3000, dev: "00:00", module: "[vdso]", path: "[vdso]", exec: true}},
		{name: "anonymous_exec", line: "1000-2000 rwxp 00000000 00:00 0 ", ok: true,
			want: mapFields{start: 0x1000, end: 0x2000, dev: "00:00", exec: true}},
		{name: "tabs", line: "1000-2000\tr-xp\t0\t08:01\t7\t/bin/x", ok: true,
			want: mapFields{start: 0x1000, end: 0x2000, dev: "08:01", inode: 7, module: "/bin/x", path: "/bin/x", exec: true}},
		{name: "not_executable", line: "1000-2000 r--p 00000000 08:01 12 /usr/bin/cat", ok: true,
			want: mapFields{start: 0x1000, end: 0x2000, dev: "08:01", inode: 12, module: "/usr/bin/cat", path: "/usr/bin/cat"}},
		{name: "empty", line: ""},
		{name: "garbage", line: "hello world"},
		{name: "short", line: "1000-2000 r-xp 0"},
		{name: "short_perms", line: "1000-2000 rx 0 08:01 12 /x"},
		{name: "bad_hex", line: "zz-2000 r-xp 00000000 08:01 12 /x"},
		{name: "no_dash", line: "10002000 r-xp 00000000 08:01 12 /x"},
		{name: "end_before_start", line: "2000-1000 r-xp 00000000 08:01 12 /x"},
		{name: "empty_range", line: "2000-2000 r-xp 00000000 08:01 12 /x"},
		{name: "bad_inode", line: "1000-2000 r-xp 00000000 08:01 -1 /x"},
		{name: "overflow", line: "1000-1ffffffffffffffff r-xp 00000000 08:01 1 /x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, ok := parseMapsLine(tc.line)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			got := mapFields{m.start, m.end, m.offset, m.dev, m.inode, m.module, m.path, m.deleted, m.exec}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseMapsSortsAndDropsOverlaps(t *testing.T) {
	maps, _ := parseMaps([]byte("3000-4000 r-xp 0 0:0 0 /c\n1000-2000 r-xp 0 0:0 0 /a\n1800-2800 r-xp 0 0:0 0 /b\nnonsense\n"))
	var got []string
	for _, m := range maps {
		got = append(got, m.path)
	}
	if strings.Join(got, ",") != "/a,/c" {
		t.Errorf("got %v", got)
	}
	tests := []struct {
		name string
		addr uint64
		want string
	}{
		{name: "before", addr: 0xfff},
		{name: "first_byte", addr: 0x1000, want: "/a"},
		{name: "last_byte", addr: 0x1fff, want: "/a"},
		{name: "gap", addr: 0x2000},
		{name: "second", addr: 0x3500, want: "/c"},
		{name: "after", addr: 0x4000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if m := findMapping(maps, tc.addr); m != nil {
				got = m.path
			}
			if got != tc.want {
				t.Errorf("findMapping(%#x) = %q, want %q", tc.addr, got, tc.want)
			}
		})
	}
}

// fakeProc builds a fake procfs root with one pid whose maps map the
// executable segment of bin at base, and returns the runtime address of
// symbol sym.
type fakeProc struct {
	root string
	pid  uint32
}

func newFakeProc(t *testing.T) *fakeProc {
	t.Helper()
	root := t.TempDir()
	p := &fakeProc{root: root, pid: 4242}
	if err := os.MkdirAll(filepath.Join(root, "4242"), 0o755); err != nil {
		t.Fatal(err)
	}
	p.setMaps(t, "")
	return p
}

func (p *fakeProc) setMaps(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(p.root, "4242", "maps"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mapsLine returns a maps line mapping bin's executable PT_LOAD at base
// (as the dynamic loader would for a shared object) and the runtime address
// of the function sym.
func mapsLine(t *testing.T, bin string, base uint64, sym, suffix string, inodeDelta uint64) (string, uint64) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var seg *elf.Prog
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 {
			seg = p
			break
		}
	}
	if seg == nil {
		t.Fatal("no executable segment")
	}
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var addr uint64
	for _, s := range syms {
		if s.Name == sym {
			addr = s.Value
		}
	}
	if addr == 0 {
		t.Fatalf("symbol %s not found", sym)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino + inodeDelta
	start := base + seg.Vaddr&^0xfff
	end := base + (seg.Vaddr+seg.Memsz+0xfff)&^0xfff
	line := fmt.Sprintf("%x-%x r-xp %08x 08:01 %d                %s%s\n", start, end, seg.Off&^0xfff, ino, bin, suffix)
	return line, base + addr
}

func TestFakeProcRoot(t *testing.T) {
	b := buildCProgs(t)
	const base = 0x7f0000000000
	tests := []struct {
		name       string
		suffix     string
		inodeDelta uint64
		inRoot     string // if set, the library exists only at <pid>/root/<inRoot>
		wantFunc   string
		wantModule string
	}{
		{name: "container_root_path", inRoot: "/opt/app dir/libx.so", wantFunc: "libx_fn", wantModule: "/opt/app dir/libx.so"},
		{name: "plain_path_fallback", wantFunc: "libx_fn", wantModule: b.lib},
		{name: "plain_path_other_inode_rejected", inodeDelta: 1, wantModule: b.lib},
		{name: "deleted_without_map_files", suffix: " (deleted)", wantModule: b.lib + " (deleted)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakeProc(t)
			line, addr := mapsLine(t, b.lib, base, "libx_fn", tc.suffix, tc.inodeDelta)
			if tc.inRoot != "" {
				dst := filepath.Join(p.root, "4242", "root", tc.inRoot)
				data, err := os.ReadFile(b.lib)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(dst, data, 0o644); err != nil {
					t.Fatal(err)
				}
				line = strings.Replace(line, b.lib, tc.inRoot, 1)
			}
			p.setMaps(t, line)
			s := New(Options{ProcRoot: p.root})
			defer s.Close()
			if err := s.Prepare(p.pid); err != nil {
				t.Fatal(err)
			}
			f := s.Symbolize(p.pid, []uint64{addr})[0]
			if f.Function != tc.wantFunc || f.Module != tc.wantModule {
				t.Errorf("got %+v, want Function %q Module %q", f, tc.wantFunc, tc.wantModule)
			}
			if tc.wantFunc != "" {
				checkFrame(t, f, wantFrame{fileSfx: "libx.c", line: markerLine(t, b.libxC, "def_libx_fn")})
			}
		})
	}
}

func TestMapsReloadRateLimit(t *testing.T) {
	b := buildCProgs(t)
	p := newFakeProc(t)
	const base = 0x7f0000000000
	line, addr := mapsLine(t, b.lib, base, "libx_fn", "", 0)
	s := New(Options{ProcRoot: p.root})
	defer s.Close()
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	if err := s.Prepare(p.pid); err != nil { // empty maps
		t.Fatal(err)
	}
	steps := []struct {
		name        string
		do          func()
		wantFunc    string
		wantReloads uint64
	}{
		// Prepare runs at exec, before the loader maps libraries: it grants a burst of re-reads
		// (each Symbolize call below is 5 calls with a miss), then one per second.
		{name: "misses_after_prepare_spend_the_burst", wantReloads: 4},
		{name: "burst_spent_no_reload", wantReloads: 4},
		{name: "miss_reloads_once_a_second", do: func() { advance(1100 * time.Millisecond) }, wantReloads: 5},
		{name: "library_appears_but_rate_limited", do: func() { p.setMaps(t, line) }, wantReloads: 5},
		{name: "after_a_second_reload_finds_library", do: func() { advance(1100 * time.Millisecond) }, wantFunc: "libx_fn", wantReloads: 6},
		{name: "hit_does_not_reload", wantFunc: "libx_fn", wantReloads: 6},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.do != nil {
				st.do()
			}
			for range 5 {
				f := s.Symbolize(p.pid, []uint64{addr, addr + 1, 0xdead})
				if f[0].Function != st.wantFunc {
					t.Errorf("Function = %q, want %q", f[0].Function, st.wantFunc)
				}
			}
			if got := s.Stats().MapReloads; got != st.wantReloads {
				t.Errorf("MapReloads = %d, want %d", got, st.wantReloads)
			}
		})
	}
}

// TestGarbageKeepsReloads: at a process's start, frame-pointer unwinding through the dynamic
// loader (no frame pointers) returns addresses inside data mappings and zeros. Those must not
// spend the maps re-reads, or the library mapped next (libc) stays unknown for a second and
// every stack through it loses its frames (seen in CI under load).
func TestGarbageKeepsReloads(t *testing.T) {
	b := buildCProgs(t)
	p := newFakeProc(t)
	const base = 0x7f0000000000
	const data = "7e0000000000-7e0000010000 rw-p 00000000 00:00 0 \n" +
		"7e0000010000-7e0000020000 r--p 00000000 08:01 99 /usr/lib/ld.so\n"
	p.setMaps(t, data)
	s := New(Options{ProcRoot: p.root})
	defer s.Close()
	if err := s.Prepare(p.pid); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		for _, f := range s.Symbolize(p.pid, []uint64{0x7e0000000100, 0x7e0000010200, 0, 0x10, 0xffffffff81000000}) {
			if f.Module != "" || f.Function != "" {
				t.Errorf("garbage address %#x symbolized as %+v", f.Address, f)
			}
		}
	}
	if got := s.Stats().MapReloads; got != 0 {
		t.Errorf("garbage addresses re-read the maps %d times", got)
	}
	line, addr := mapsLine(t, b.lib, base, "libx_fn", "", 0)
	p.setMaps(t, data+line)
	if f := s.Symbolize(p.pid, []uint64{addr}); f[0].Function != "libx_fn" {
		t.Errorf("library mapped after the garbage: %+v", f[0])
	}
}

func TestEviction(t *testing.T) {
	b := buildCProgs(t)
	p := newFakeProc(t)
	l1, a1 := mapsLine(t, b.lib, 0x7f0000000000, "libx_fn", "", 0)
	l2, a2 := mapsLine(t, b.pie, 0x550000000000, "prog_inner", "", 0)
	p.setMaps(t, l1+l2)
	s := New(Options{ProcRoot: p.root, MaxBinaries: 1})
	defer s.Close()
	if err := s.Prepare(p.pid); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		addr uint64
		want string
	}{
		{name: "lib", addr: a1, want: "libx_fn"},
		{name: "exe_evicts_lib", addr: a2, want: "prog_inner"},
		{name: "lib_reloaded", addr: a1, want: "libx_fn"},
		{name: "exe_reloaded", addr: a2, want: "prog_inner"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if f := s.Symbolize(p.pid, []uint64{tc.addr})[0]; f.Function != tc.want {
				t.Errorf("got %+v, want %q", f, tc.want)
			}
			if st := s.Stats(); st.BinariesCached != 1 {
				t.Errorf("BinariesCached = %d, want 1", st.BinariesCached)
			}
		})
	}
	if st := s.Stats(); st.BinariesEvicted < 3 {
		t.Errorf("BinariesEvicted = %d, want >= 3", st.BinariesEvicted)
	}
}

func TestHostileFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	notELF := filepath.Join(dir, "not elf")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated")
	if err := os.WriteFile(truncated, []byte("\x7fELF\x02\x01\x01\x00garbage"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
	}{
		{name: "fifo", path: fifo},
		{name: "not_elf", path: notELF},
		{name: "truncated_elf", path: truncated},
		{name: "directory", path: dir},
		{name: "missing", path: filepath.Join(dir, "missing")},
		{name: "relative", path: "relative/path"},
		{name: "dotdot", path: "/../../../etc/passwd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakeProc(t)
			p.setMaps(t, fmt.Sprintf("1000-2000 r-xp 00000000 08:01 0 %s\n", tc.path))
			s := New(Options{ProcRoot: p.root})
			defer s.Close()
			done := make(chan Frame, 1)
			go func() {
				_ = s.Prepare(p.pid)
				done <- s.Symbolize(p.pid, []uint64{0x1800})[0]
			}()
			select {
			case f := <-done:
				if f.Function != "" || f.Module != tc.path {
					t.Errorf("got %+v", f)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("symbolizer hung")
			}
		})
	}
}

func TestVDSO(t *testing.T) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	var vdso *mapping
	parsed, _ := parseMaps(maps)
	for _, m := range parsed {
		if m.module == "[vdso]" {
			vdso = m
		}
	}
	if vdso == nil {
		t.Skip("no [vdso] mapping")
	}
	s := New(Options{})
	defer s.Close()
	pid := uint32(os.Getpid())
	if err := s.Prepare(pid); err != nil {
		t.Fatal(err)
	}
	// Symbolize every 16th byte of the vdso; at least one must be a
	// __vdso_* / clock_gettime-like function.
	var addrs []uint64
	for a := vdso.start; a < vdso.end; a += 16 {
		addrs = append(addrs, a)
	}
	found := map[string]bool{}
	for i, a := range addrs {
		f := s.Symbolize(pid, []uint64{a})[0]
		if f.Module != "[vdso]" {
			t.Fatalf("frame %d: Module = %q", i, f.Module)
		}
		if f.Function != "" {
			found[f.Function] = true
		}
	}
	if len(found) == 0 {
		t.Fatal("no vdso function symbolized")
	}
	t.Logf("vdso functions: %v", found)
}

func TestClose(t *testing.T) {
	s := New(Options{})
	pid := uint32(os.Getpid())
	if err := s.Prepare(pid); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Prepare(pid); err == nil {
		t.Error("Prepare after Close succeeded")
	}
	if f := s.Symbolize(pid, []uint64{1}); len(f) != 1 || f[0] != (Frame{Address: 1}) {
		t.Errorf("Symbolize after Close = %v", f)
	}
	s.Forget(pid)
}

func BenchmarkSymbolizeWarm(b *testing.B) {
	tests := []struct {
		name  string
		addrs func(b *testing.B) (uint32, []uint64)
	}{
		{name: "go", addrs: func(b *testing.B) (uint32, []uint64) {
			c := startChild(b, buildGoProg(b), 1)
			return c.pid, goPCs(b, c.lines[0])
		}},
		{name: "native_dwarf", addrs: func(b *testing.B) (uint32, []uint64) {
			cb := buildCProgs(b)
			c := startChild(b, cb.pie, 2)
			kv := keyValues(b, c.lines...)
			return c.pid, []uint64{kv["prog_inner"], kv["ret_in_outer"], kv["ret_in_lib"], kv["libx_static"], kv["libx_fn"], kv["puts"]}
		}},
	}
	for _, tc := range tests {
		b.Run(tc.name, func(b *testing.B) {
			pid, pcs := tc.addrs(b)
			stack := make([]uint64, 10)
			for i := range stack {
				stack[i] = pcs[i%len(pcs)]
			}
			s := New(Options{})
			defer s.Close()
			if err := s.Prepare(pid); err != nil {
				b.Fatal(err)
			}
			s.Symbolize(pid, stack) // warm up (lazy DWARF)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				s.Symbolize(pid, stack)
			}
		})
	}
}

func TestBogusPidsArePruned(t *testing.T) {
	s := New(Options{ProcRoot: t.TempDir()}) // no pid exists there
	defer s.Close()
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	for pid := range uint32(pruneThreshold + 100) {
		s.Symbolize(pid, []uint64{0x1000})
	}
	now = now.Add(2 * time.Second)
	s.Symbolize(1<<31, []uint64{0x1000})
	s.mu.RLock()
	n := len(s.procs)
	s.mu.RUnlock()
	if n > 1 {
		t.Errorf("%d pids still tracked after pruning, want <= 1", n)
	}
}

func TestDeletedBinary(t *testing.T) {
	b := buildCProgs(t)
	c := startChild(t, b.pie, 2)
	kv := keyValues(t, c.lines...)
	// The binary and library are deleted while the process runs; only
	// /proc/<pid>/map_files can still reach them.
	for _, p := range []string{b.pie, b.lib} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	s := New(Options{DeferLoad: true})
	defer s.Close()
	if err := s.Prepare(c.pid); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		addrs []uint64
		want  wantFrame
	}{
		{name: "exe", addrs: []uint64{kv["prog_inner"]},
			want: wantFrame{function: "prog_inner", fileSfx: "prog.c", line: markerLine(t, b.progC, "def_prog_inner"), module: b.pie + " (deleted)"}},
		{name: "lib", addrs: []uint64{kv["libx_fn"]},
			want: wantFrame{function: "libx_fn", fileSfx: "libx.c", line: markerLine(t, b.libxC, "def_libx_fn"), module: b.lib + " (deleted)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkFrame(t, s.Symbolize(c.pid, tc.addrs)[0], tc.want)
		})
	}
}
