package elfinfo

import (
	"bytes"
	"debug/elf"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestOpen(t *testing.T) {
	fx := buildFixtures(t)
	goBuildID := func(path string) string {
		t.Helper()
		out, err := exec.Command("go", "tool", "buildid", path).Output()
		if err != nil {
			t.Fatalf("go tool buildid: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	gnuHex := regexp.MustCompile(`^[0-9a-f]{16,}$`)
	noGNU := buildGo(t, t.TempDir(), "goprog-nognu", goEnv(), "-ldflags=-B none")
	if gnuBuildID(t, noGNU) != "" {
		t.Fatal("-ldflags=-B none left a GNU build ID")
	}

	tests := []struct {
		name      string
		path      string
		isGo      bool
		goVersion string
		hasDWARF  bool
		buildID   func(string) bool
	}{
		{
			// The Go linker derives a GNU build ID note from the Go build ID.
			name: "go binary", path: fx.goBin, isGo: true, goVersion: runtime.Version(), hasDWARF: true,
			buildID: func(id string) bool { return id == gnuBuildID(t, fx.goBin) && gnuHex.MatchString(id) },
		},
		{
			name: "stripped go binary", path: fx.goStripped, isGo: true, goVersion: runtime.Version(), hasDWARF: false,
			buildID: func(id string) bool { return id == gnuBuildID(t, fx.goStripped) && gnuHex.MatchString(id) },
		},
		{
			name: "go binary without GNU build ID", path: noGNU, isGo: true, goVersion: runtime.Version(), hasDWARF: true,
			buildID: func(id string) bool { return id == goBuildID(noGNU) && strings.Contains(id, "/") },
		},
		{
			name: "c binary with debug info", path: fx.cBin, hasDWARF: true,
			buildID: func(id string) bool { return id == gnuBuildID(t, fx.cBin) && gnuHex.MatchString(id) },
		},
		{
			name: "c binary without debug info", path: fx.cStrippedDW, hasDWARF: false,
			buildID: func(id string) bool { return id == gnuBuildID(t, fx.cStrippedDW) },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := openBinary(t, tc.path)
			if b.Path != tc.path {
				t.Errorf("Path = %q, want %q", b.Path, tc.path)
			}
			if b.IsGo != tc.isGo {
				t.Errorf("IsGo = %v, want %v", b.IsGo, tc.isGo)
			}
			if b.GoVersion != tc.goVersion {
				t.Errorf("GoVersion = %q, want %q", b.GoVersion, tc.goVersion)
			}
			if b.HasDWARF != tc.hasDWARF {
				t.Errorf("HasDWARF = %v, want %v", b.HasDWARF, tc.hasDWARF)
			}
			if !tc.buildID(b.BuildID) {
				t.Errorf("unexpected BuildID %q", b.BuildID)
			}
		})
	}
}

// gnuBuildID reads the GNU build ID independently, from the
// .note.gnu.build-id section.
func gnuBuildID(t *testing.T, path string) string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := f.Section(".note.gnu.build-id")
	if s == nil {
		return ""
	}
	data, err := s.Data()
	if err != nil || len(data) < 16 {
		t.Fatalf("bad build-id note: %v", err)
	}
	// namesz(4) descsz(4) type(4) "GNU\0" desc
	descsz := int(data[4]) | int(data[5])<<8
	return hex.EncodeToString(data[16 : 16+descsz])
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	textFile := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(textFile, []byte("this is not an ELF file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated")
	if err := os.WriteFile(truncated, []byte("\x7fELF\x02\x01\x01"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "does-not-exist")
	arm64 := buildGo(t, dir, "goprog-arm64", goEnv("GOOS=linux", "GOARCH=arm64"))

	tests := []struct {
		name     string
		path     string
		wantIs   error
		contains []string
	}{
		{name: "missing file", path: missing, wantIs: fs.ErrNotExist, contains: []string{missing}},
		{name: "not an ELF file", path: textFile, contains: []string{textFile, "not a valid ELF file"}},
		{name: "truncated ELF", path: truncated, contains: []string{truncated, "not a valid ELF file"}},
		{name: "directory", path: dir, contains: []string{dir, "is a directory"}},
		{name: "arm64 binary", path: arm64, contains: []string{arm64, "only x86-64", "EM_AARCH64"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Open(tc.path)
			if err == nil {
				_ = b.Close()
				t.Fatalf("Open(%s) succeeded, want error", tc.path)
			}
			checkError(t, err, tc.wantIs, tc.contains)
		})
	}
}

func TestFunction(t *testing.T) {
	fx := buildFixtures(t)
	full := openBinary(t, fx.goBin)
	stripped := openBinary(t, fx.goStripped)
	cbin := openBinary(t, fx.cBin)
	cnodebug := openBinary(t, fx.cStrippedDW)

	tests := []struct {
		name string
		bin  *Binary
		fn   string
	}{
		{name: "go method", bin: full, fn: "main.(*Agent).HandlePrompt"},
		{name: "go function", bin: full, fn: "main.WriteBytes"},
		{name: "go generic shape instance", bin: full, fn: "main.Pair[go.shape.int]"},
		{name: "go runtime function", bin: full, fn: "runtime.mallocgc"},
		{name: "stripped go method via pclntab", bin: stripped, fn: "main.(*Agent).HandlePrompt"},
		{name: "stripped go function via pclntab", bin: stripped, fn: "main.Classify"},
		{name: "c function", bin: cbin, fn: "process"},
		{name: "c function without debug info", bin: cnodebug, fn: "make_big"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fn := mustFunction(t, tc.bin, tc.fn)
			if fn.Name != tc.fn {
				t.Errorf("Name = %q, want %q", fn.Name, tc.fn)
			}
			if fn.Size == 0 {
				t.Errorf("Size = 0")
			}
			text := tc.bin.elf.Section(".text")
			if fn.Address < text.Addr || fn.Address+fn.Size > text.Addr+text.Size {
				t.Errorf("function [%#x,%#x) outside .text [%#x,%#x)", fn.Address, fn.Address+fn.Size, text.Addr, text.Addr+text.Size)
			}
		})
	}

	// The pclntab fallback must agree with the symbol table.
	for _, name := range []string{"main.(*Agent).HandlePrompt", "main.Classify", "main.Fail"} {
		want := mustFunction(t, full, name)
		st := stripped.symbols()
		if len(st.symtab) != 0 {
			t.Fatalf("stripped binary still has %d symbols", len(st.symtab))
		}
		stripped.mu.Lock()
		f := stripped.pclnFunc(name)
		stripped.mu.Unlock()
		if f == nil {
			t.Fatalf("%s not in pclntab", name)
		}
		// pclntab sizes run to the next function, so they include the
		// alignment padding the symbol size leaves out.
		if f.Entry != want.Address || f.End-f.Entry < want.Size || f.End-f.Entry > want.Size+64 {
			t.Errorf("pclntab %s = [%#x,%#x), symtab = %+v", name, f.Entry, f.End, want)
		}
		if got := mustFunction(t, stripped, name); got.Address != want.Address || got.Size != f.End-f.Entry {
			t.Errorf("stripped Function(%s) = %+v", name, got)
		}
	}
}

func TestFunctionNotFound(t *testing.T) {
	fx := buildFixtures(t)
	gobin := openBinary(t, fx.goBin)
	stripped := openBinary(t, fx.goStripped)
	cbin := openBinary(t, fx.cBin)

	tests := []struct {
		name    string
		bin     *Binary
		fn      string
		suggest string // expected among the suggestions, "" for none
	}{
		{name: "value instead of pointer receiver", bin: gobin, fn: "main.Agent.HandlePrompt", suggest: "main.(*Agent).HandlePrompt"},
		{name: "missing package", bin: gobin, fn: "HandlePrompt", suggest: "main.(*Agent).HandlePrompt"},
		{name: "typo", bin: gobin, fn: "main.Clasify", suggest: "main.Classify"},
		{name: "wrong case", bin: gobin, fn: "main.writebytes", suggest: "main.WriteBytes"},
		{name: "stripped binary", bin: stripped, fn: "main.Agent.HandlePrompt", suggest: "main.(*Agent).HandlePrompt"},
		{name: "c typo", bin: cbin, fn: "proces", suggest: "process"}, //nolint:misspell // the typo is the test
		{name: "nothing close", bin: cbin, fn: "zzzzqqqqxxxxwwww"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.bin.Function(tc.fn)
			if !errors.Is(err, ErrSymbolNotFound) {
				t.Fatalf("Function(%q) error = %v, want ErrSymbolNotFound", tc.fn, err)
			}
			var snf *SymbolNotFoundError
			if !errors.As(err, &snf) {
				t.Fatalf("error %T is not a *SymbolNotFoundError", err)
			}
			msg := err.Error()
			for _, s := range []string{tc.fn, tc.bin.Path} {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not mention %q", msg, s)
				}
			}
			if len(snf.Suggestions) > 3 {
				t.Errorf("%d suggestions, want at most 3", len(snf.Suggestions))
			}
			if tc.suggest == "" {
				if len(snf.Suggestions) != 0 {
					t.Errorf("unexpected suggestions %q", snf.Suggestions)
				}
				return
			}
			if !slices.Contains(snf.Suggestions, tc.suggest) {
				t.Errorf("suggestions %q do not include %q", snf.Suggestions, tc.suggest)
			}
			if !strings.Contains(msg, "did you mean") || !strings.Contains(msg, tc.suggest) {
				t.Errorf("error %q does not suggest %q", msg, tc.suggest)
			}
		})
	}
}

func TestReturnOffsets(t *testing.T) {
	fx := buildFixtures(t)
	gobin := openBinary(t, fx.goBin)
	stripped := openBinary(t, fx.goStripped)
	cbin := openBinary(t, fx.cBin)

	tests := []struct {
		name    string
		bin     *Binary
		fn      string
		min     int
		noRet   bool
		matchOf *Binary // if set, the offsets must equal those found in this binary
	}{
		{name: "go method", bin: gobin, fn: "main.(*Agent).HandlePrompt", min: 1},
		{name: "go leaf function", bin: gobin, fn: "main.WriteBytes", min: 1},
		{name: "go two return paths", bin: gobin, fn: "main.Classify", min: 2},
		{name: "go stripped binary", bin: stripped, fn: "main.Classify", min: 2, matchOf: gobin},
		{name: "go function that always panics", bin: gobin, fn: "main.Fail", noRet: true},
		{name: "c function", bin: cbin, fn: "process", min: 1},
		{name: "c two return paths", bin: cbin, fn: "classify", min: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fn := mustFunction(t, tc.bin, tc.fn)
			offs, err := tc.bin.ReturnOffsets(fn)
			if tc.noRet {
				if !errors.Is(err, ErrNoReturn) || !strings.Contains(err.Error(), tc.fn) {
					t.Fatalf("ReturnOffsets error = %v, want ErrNoReturn naming %s", err, tc.fn)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReturnOffsets: %v", err)
			}
			if len(offs) < tc.min {
				t.Fatalf("got %d RETs %v, want at least %d", len(offs), offs, tc.min)
			}
			code := readFileBytes(t, tc.bin, fn.Address, fn.Size)
			for _, off := range offs {
				if off >= fn.Size {
					t.Errorf("offset %#x beyond function size %#x", off, fn.Size)
					continue
				}
				if c := code[off]; c != 0xc3 && c != 0xc2 && !(c == 0xf3 && code[off+1] == 0xc3) {
					t.Errorf("byte at offset %#x is %#x, not a RET", off, c)
				}
			}
			if !slices.IsSorted(offs) {
				t.Errorf("offsets not sorted: %v", offs)
			}
			if tc.matchOf != nil {
				want, err := tc.matchOf.ReturnOffsets(mustFunction(t, tc.matchOf, tc.fn))
				if err != nil || !slices.Equal(offs, want) {
					t.Errorf("offsets %v, want %v (err %v)", offs, want, err)
				}
			}
		})
	}

	t.Run("unknown size", func(t *testing.T) {
		_, err := gobin.ReturnOffsets(Function{Name: "x", Address: 0x401000})
		if err == nil || !strings.Contains(err.Error(), "size unknown") {
			t.Errorf("error = %v", err)
		}
	})
}

// readFileBytes reads n bytes of the binary's file at the file offset of
// virtual address addr, independently of ReturnOffsets.
func readFileBytes(t *testing.T, b *Binary, addr, n uint64) []byte {
	t.Helper()
	off, err := b.FileOffset(addr)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	if off+n > uint64(len(data)) {
		t.Fatalf("range beyond end of file")
	}
	return data[off : off+n]
}

func TestReturnOffsetsDecoding(t *testing.T) {
	tests := []struct {
		name string
		code []byte
		want []uint64
		bad  []uint64
	}{
		{name: "plain ret", code: []byte{0x90, 0xc3}, want: []uint64{1}},
		{name: "ret imm16", code: []byte{0xc2, 0x08, 0x00, 0xc3}, want: []uint64{0, 3}},
		{name: "c3 inside an instruction is not a ret", code: []byte{0x48, 0x89, 0xc3, 0xc3}, want: []uint64{3}}, // mov rbx,rax; ret
		{name: "c3 inside an immediate", code: []byte{0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3}, want: []uint64{5}},    // mov eax,imm32; ret
		{name: "jump only", code: []byte{0xe9, 0x00, 0x00, 0x00, 0x00}, want: nil},                               // jmp
		{name: "undecodable byte skipped", code: []byte{0x06, 0xc3}, want: []uint64{1}, bad: []uint64{0}},        // push es is invalid in 64-bit mode; ret
		{name: "epilogue", code: []byte{0x48, 0x83, 0xc4, 0x18, 0x5d, 0xc3, 0xcc, 0xcc}, want: []uint64{5}},      // add rsp,0x18; pop rbp; ret; int3
		{name: "rep ret", code: []byte{0xf3, 0xc3}, want: []uint64{0}},                                           // rep ret
		{name: "empty", code: nil, want: nil},
		// Opcodes x86asm does not know, whose bytes contain 0xc3.
		{name: "adcx", code: []byte{0x66, 0x4c, 0x0f, 0x38, 0xf6, 0xc3, 0xc3}, want: []uint64{6}},
		{name: "adox with displacement", code: []byte{0xf3, 0x4c, 0x0f, 0x38, 0xf6, 0x40, 0xc3, 0xc3}, want: []uint64{7}},
		{name: "endbr64", code: []byte{0xf3, 0x0f, 0x1e, 0xfa, 0xc3}, want: []uint64{4}},
		{name: "sha256rnds2", code: []byte{0x0f, 0x38, 0xcb, 0xc3, 0xc3}, want: []uint64{4}},
		{name: "sha1rnds4 with imm8", code: []byte{0x0f, 0x3a, 0xcc, 0xc1, 0xc3, 0xc3}, want: []uint64{5}},
		{name: "vex mulx", code: []byte{0xc4, 0xe2, 0xbb, 0xf6, 0x79, 0x70, 0xc3}, want: []uint64{6}},
		{name: "vzeroupper", code: []byte{0xc5, 0xf8, 0x77, 0xc3}, want: []uint64{3}},
		{name: "vzeroall three-byte vex", code: []byte{0xc4, 0xe1, 0x7c, 0x77, 0xc3}, want: []uint64{4}},
		{name: "evex", code: []byte{0x62, 0xf1, 0xfe, 0x48, 0x6f, 0x06, 0xc3}, want: []uint64{6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, bad := returnOffsets(tc.code)
			if !slices.Equal(got, tc.want) || !slices.Equal(bad, tc.bad) {
				t.Errorf("returnOffsets(% x) = %v, bad %v; want %v, bad %v", tc.code, got, bad, tc.want, tc.bad)
			}
		})
	}
}

func TestFileOffset(t *testing.T) {
	fx := buildFixtures(t)
	for _, path := range []string{fx.goBin, fx.cBin} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			b := openBinary(t, path)
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			text := f.Section(".text")
			want, err := text.Data()
			if err != nil {
				t.Fatal(err)
			}
			name := "main"
			if path == fx.goBin {
				name = "main.WriteBytes"
			}
			fn := mustFunction(t, b, name)
			got := readFileBytes(t, b, fn.Address, fn.Size)
			start := fn.Address - text.Addr
			if !bytes.Equal(got, want[start:start+fn.Size]) {
				t.Errorf("bytes at FileOffset(%#x) differ from .text contents", fn.Address)
			}
			var end uint64
			for _, p := range f.Progs {
				end = max(end, p.Vaddr+p.Memsz)
			}
			for _, addr := range []uint64{end + 0x1000, 1 << 62} {
				if _, err := b.FileOffset(addr); err == nil || !strings.Contains(err.Error(), path) {
					t.Errorf("FileOffset(%#x) error = %v, want one naming the path", addr, err)
				}
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	candidates := []string{"main.(*Agent).HandlePrompt", "main.(*Agent).Close", "main.handle", "main.main", "runtime.main", "fmt.Println"}
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "pointer receiver", in: "main.Agent.HandlePrompt", want: []string{"main.(*Agent).HandlePrompt"}},
		{name: "suffix", in: "Agent.Close", want: []string{"main.(*Agent).Close"}},
		{name: "same last component ranks by distance", in: "pkg.main", want: []string{"main.main", "runtime.main"}},
		{name: "typo", in: "fmt.Printn", want: []string{"fmt.Println"}},
		{name: "none", in: "completely.Different", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := suggest(tc.in, candidates, 3); !slices.Equal(got, tc.want) {
				t.Errorf("suggest(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseNotes(t *testing.T) {
	// Two notes with 4-byte alignment: GNU build ID then a Go build ID.
	data := []byte{
		4, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 'G', 'N', 'U', 0, 0xde, 0xad, 0xbe, 0, // desc padded
		3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 'G', 'o', 0, 0, 'i', 'd', 0, 0,
	}
	notes := parseNotes(data, 4)
	if len(notes) != 2 {
		t.Fatalf("got %d notes, want 2", len(notes))
	}
	if notes[0].name != "GNU" || notes[0].typ != 3 || !bytes.Equal(notes[0].desc, []byte{0xde, 0xad, 0xbe}) {
		t.Errorf("note 0 = %+v", notes[0])
	}
	if notes[1].name != "Go" || notes[1].typ != 4 || string(notes[1].desc) != "id" {
		t.Errorf("note 1 = %+v", notes[1])
	}
	if got := parseNotes(data[:10], 4); len(got) != 0 {
		t.Errorf("truncated data gave %d notes", len(got))
	}
}
