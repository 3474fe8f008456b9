package pyinfo

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// memBase is where a fuzzed memory image starts in the fake process: addresses below it, like
// those past its end, cannot be read, as unmapped memory in /proc/<pid>/mem.
const memBase = 0x10000

// memImage is a process's memory for the readers: the fuzzer fills it.
type memImage []byte

func (m memImage) ReadAt(b []byte, off int64) (int, error) {
	if off < memBase || off-memBase >= int64(len(m)) {
		return 0, errors.New("input/output error")
	}
	n := copy(b, m[off-memBase:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (m memImage) Close() error { return nil }

// Offsets of the seed image's objects, from memBase.
const (
	seedQualname  = 256
	seedFilename  = 512
	seedLineTable = 1024
)

// seedImage lays out a 3.11 code object at memBase with its qualified name (an ASCII str), its
// file name (a compact str of kind strKind) and its location table, as the interpreter does.
func seedImage(l *Layout, qualname, filename string, strKind int, table []byte, firstLine int32) memImage {
	m := make(memImage, seedLineTable+int(l.BytesData)+len(table))
	put64 := func(off int, v uint64) { binary.LittleEndian.PutUint64(m[off:], v) }
	binary.LittleEndian.PutUint32(m[l.CodeFirstLine:], uint32(firstLine))
	put64(int(l.CodeQualname), memBase+seedQualname)
	put64(int(l.CodeFilename), memBase+seedFilename)
	put64(int(l.CodeLineTable), memBase+seedLineTable)
	str := func(off int, s string, kind int) {
		rs := []rune(s)
		ascii := kind == 1 && len(rs) == len(s)
		put64(off+int(l.UnicodeLength), uint64(len(rs)))
		state := uint32(kind)<<2 | 1<<5 | 1<<7
		data := off + int(l.UnicodeCompactData)
		if ascii {
			state |= 1 << 6
			data = off + int(l.UnicodeASCIIData)
		}
		binary.LittleEndian.PutUint32(m[l.UnicodeState+uint64(off):], state)
		for i, r := range rs {
			switch kind {
			case 1:
				m[data+i] = byte(r)
			case 2:
				binary.LittleEndian.PutUint16(m[data+2*i:], uint16(r))
			case 4:
				binary.LittleEndian.PutUint32(m[data+4*i:], uint32(r))
			}
		}
	}
	str(seedQualname, qualname, 1)
	str(seedFilename, filename, strKind)
	put64(seedLineTable+int(l.BytesSize), uint64(len(table)))
	copy(m[seedLineTable+int(l.BytesData):], table)
	return m
}

// recordedTables returns the location tables recorded in testdata (CPython 3.11's own).
func recordedTables(tb testing.TB) (tables [][]byte, firstLines []int32) {
	raw, err := os.ReadFile(filepath.Join("testdata", "linetables-3.11.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var lt lineTables
	if err := json.Unmarshal(raw, &lt); err != nil {
		tb.Fatal(err)
	}
	for _, c := range lt.Codes {
		b, err := hex.DecodeString(c.LineTable)
		if err != nil {
			tb.Fatal(err)
		}
		tables = append(tables, b)
		firstLines = append(firstLines, int32(c.FirstLineNo))
	}
	return tables, firstLines
}

// maxCodeRead is the most one code object may read: its header, two strings with their
// headers, and a line table with its size.
func maxCodeRead(l *Layout) int64 {
	return int64(l.CodeLineTable+8) + 2*int64(l.UnicodeState+4+maxStringBytes) + 8 + maxLineTableBytes
}

// checkCode checks what the readers promise of any code object they return.
func checkCode(t *testing.T, l *Layout, c *Code, n int64) {
	if n < 0 || n > maxCodeRead(l) {
		t.Fatalf("read %d bytes for one code object", n)
	}
	for _, s := range []string{c.Qualname, c.Filename} {
		// At most maxStringBytes of data, each byte at most 4 bytes once escaped or encoded.
		if !utf8.ValidString(s) || len(s) > 4*maxStringBytes {
			t.Fatalf("string of %d bytes, valid UTF-8 %v", len(s), utf8.ValidString(s))
		}
		for _, r := range s {
			if isControl(r) {
				t.Fatalf("control character %U in %q", r, s)
			}
		}
	}
	if len(c.lineTable) > maxLineTableBytes {
		t.Fatalf("line table of %d bytes", len(c.lineTable))
	}
	for _, re := range c.Unreadable {
		if re.Field == "" || re.Reason == "" {
			t.Fatalf("read error without field or reason: %v", re)
		}
	}
	for _, lasti := range []int32{-1, 0, 1, 7, 1 << 20} {
		_ = c.Line(lasti)
	}
}

// FuzzReadCode reads a code object, and what it points to, from a fuzzed memory image
// through the Reader (cache, budget) as the receiver does.
func FuzzReadCode(f *testing.F) {
	l := Layouts["3.11"]
	tables, firstLines := recordedTables(f)
	for i, table := range tables {
		kind := []int{1, 2, 4}[i%3]
		f.Add([]byte(seedImage(l, "Agent.handle_prompt", "/srv/agent/customer_agent.py", kind, table, firstLines[i])), uint8(3))
	}
	f.Add([]byte(seedImage(l, "café_ли", "/srv/ли/агент.py", 2, tables[0], 1)), uint8(0))
	f.Add([]byte(seedImage(l, "f\nforged (x.py:1)", "/x.py", 1, nil, 1)), uint8(1))
	f.Fuzz(func(t *testing.T, image []byte, version uint8) {
		l := Layouts[[]string{"3.11", "3.12", "3.13"}[version%3]]
		mem := memImage(image)
		c, n, err := readCode(mem, l, memBase)
		if err != nil {
			var re *ReadError
			if !errors.As(err, &re) || re.Field != FieldCode || c != nil {
				t.Fatalf("error %v (%T) with code %v", err, err, c)
			}
			return
		}
		checkCode(t, l, c, n)

		r := NewMemReader(func(uint32) (Mem, error) { return mem, nil })
		r.Timeout = 0
		budget := int64(StackReadBudget)
		c2, err := r.Code(1, l, memBase, &budget)
		if err != nil || c2.Qualname != c.Qualname || c2.Filename != c.Filename {
			t.Fatalf("through the Reader: %v, %+v; directly %+v", err, c2, c)
		}
		if again, _ := r.Code(1, l, memBase, &budget); (again == c2) != (len(c2.Unreadable) == 0) {
			t.Fatal("a complete code object is cached, an incomplete one is not")
		}
		if r.cacheBytes < 0 || r.cacheBytes > r.MaxCacheBytes {
			t.Fatalf("cache of %d bytes", r.cacheBytes)
		}
	})
}

// FuzzReadStr reads a str object from fuzzed memory: whatever its length and state, the
// reader allocates at most maxStringBytes and returns valid UTF-8 or a reason.
func FuzzReadStr(f *testing.F) {
	l := Layouts["3.11"]
	for _, kind := range []int{1, 2, 4} {
		img := seedImage(l, "q", "/srv/ünï/cödé_agent.py", kind, nil, 1)
		f.Add([]byte(img[seedFilename:]), uint8(0))
	}
	// The forgery of issue #14: a kind-4 str whose length times 4 overflows int64.
	forged := make([]byte, 128)
	binary.LittleEndian.PutUint64(forged[16:], 1<<61+1)
	binary.LittleEndian.PutUint32(forged[32:], 4<<2|1<<5|1<<7)
	f.Add(forged, uint8(0))
	f.Fuzz(func(t *testing.T, image []byte, version uint8) {
		l := Layouts[[]string{"3.11", "3.12", "3.13"}[version%3]]
		s, n, err := readStr(memImage(image), l, memBase)
		if err != nil {
			var re *ReadError
			if !errors.As(err, &re) || re.Reason == "" || s != "" {
				t.Fatalf("error %v (%T) with %q", err, err, s)
			}
			return
		}
		if !utf8.ValidString(s) || n > int64(l.UnicodeState+4+maxStringBytes) || len(s) > 3*maxStringBytes {
			t.Fatalf("%d bytes read, string of %d bytes", n, len(s))
		}
	})
}

// FuzzReadBytes reads a bytes object (a location table) from fuzzed memory.
func FuzzReadBytes(f *testing.F) {
	l := Layouts["3.11"]
	tables, _ := recordedTables(f)
	for _, table := range tables {
		img := seedImage(l, "q", "/f.py", 1, table, 1)
		f.Add([]byte(img[seedLineTable:]), int64(maxLineTableBytes))
	}
	neg := make([]byte, 40)
	binary.LittleEndian.PutUint64(neg[16:], uint64(1<<64-5))
	f.Add(neg, int64(maxLineTableBytes))
	f.Fuzz(func(t *testing.T, image []byte, limit int64) {
		limit = max(0, min(limit, maxLineTableBytes))
		b, n, err := readBytes(memImage(image), l, memBase, limit)
		if err != nil {
			var re *ReadError
			if !errors.As(err, &re) || re.Reason == "" || b != nil {
				t.Fatalf("error %v (%T) with %d bytes", err, err, len(b))
			}
			return
		}
		if int64(len(b)) > limit || n != 8+int64(len(b)) {
			t.Fatalf("%d bytes (limit %d), %d read", len(b), limit, n)
		}
	})
}

// FuzzAddr2Line walks fuzzed location tables (and varints) to any offset.
func FuzzAddr2Line(f *testing.F) {
	tables, firstLines := recordedTables(f)
	for i, table := range tables {
		f.Add(table, firstLines[i], int32(3))
	}
	f.Add([]byte{0xe8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f}, int32(1), int32(0))
	f.Fuzz(func(t *testing.T, table []byte, firstLine, lasti int32) {
		c := &Code{FirstLine: int(firstLine), lineTable: table}
		_ = c.Line(lasti)
		_ = c.Line(lasti) // memoized
		for i := range min(len(table), 64) {
			if v, next := varint(table, i); next <= i || next > len(table) {
				t.Fatalf("varint at %d: %d, next %d of %d", i, v, next, len(table))
			}
			_, _ = signedVarint(table, i)
		}
	})
}

// FuzzDecodeUnicode decodes fuzzed str data of any kind: always valid UTF-8, never more
// characters than the data holds.
func FuzzDecodeUnicode(f *testing.F) {
	f.Add([]byte("abc"), uint8(1), true)
	f.Add([]byte{0xe9, 0x74, 0xe9}, uint8(1), false)
	f.Add([]byte{0x3b, 0x04, 0x00, 0xd8}, uint8(2), false) // a lone surrogate
	f.Add([]byte{0x00, 0xf6, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff}, uint8(4), false)
	f.Fuzz(func(t *testing.T, raw []byte, kind uint8, ascii bool) {
		s := DecodeUnicode(raw, int(kind), ascii)
		if !utf8.ValidString(s) || utf8.RuneCountInString(s) > len(raw) {
			t.Fatalf("kind %d ascii %v: %q from %d bytes", kind, ascii, s, len(raw))
		}
	})
}

// FuzzInspect inspects fuzzed ELF files (seeded with a minimal interpreter: _PyRuntime,
// Py_Version and a python:audit USDT note, testdata/tinypython) under fuzzed names.
func FuzzInspect(f *testing.F) {
	tiny, err := os.ReadFile(filepath.Join("testdata", "tinypython", "python3.11"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tiny, "/usr/bin/python3.11")
	f.Add(tiny, "/opt/lib/libpython3.13t.so.1.0")
	f.Add(tiny, "/usr/bin/python3.99")
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		ef, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		in, err := inspectELF(ef, path)
		if err != nil {
			if !errors.Is(err, ErrNotPython) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if in.RuntimeAddr == 0 || in.Layout != Layouts[in.Version] {
			t.Fatalf("runtime %#x version %q layout %v", in.RuntimeAddr, in.Version, in.Layout)
		}
		if in.Audit != nil && len(in.Audit.Args) < 2 {
			t.Fatalf("audit probe with %d arguments", len(in.Audit.Args))
		}
	})
}

// TestInspectTiny: the fuzz seed is an interpreter as Inspect sees one.
func TestInspectTiny(t *testing.T) {
	in, err := Inspect(filepath.Join("testdata", "tinypython", "python3.11"))
	if err != nil {
		t.Fatal(err)
	}
	if in.Version != "3.11" || in.Layout != Layouts["3.11"] || in.Audit == nil || in.Audit.SemaphoreOffset == 0 {
		t.Errorf("version %q layout %v audit %+v", in.Version, in.Layout, in.Audit)
	}
}

// TestInspectLargeSymbolTable: a binary that says its symbol table is huge (a sparse file costs
// its owner nothing) is refused before the table is read.
func TestInspectLargeSymbolTable(t *testing.T) {
	tiny, err := os.ReadFile(filepath.Join("testdata", "tinypython", "python3.11"))
	if err != nil {
		t.Fatal(err)
	}
	shoff := binary.LittleEndian.Uint64(tiny[0x28:])
	shentsize, shnum := binary.LittleEndian.Uint16(tiny[0x3a:]), binary.LittleEndian.Uint16(tiny[0x3c:])
	patched := false
	for i := range uint64(shnum) {
		sh := tiny[shoff+i*uint64(shentsize):]
		if binary.LittleEndian.Uint32(sh[4:]) == uint32(elf.SHT_SYMTAB) {
			binary.LittleEndian.PutUint64(sh[0x20:], 1<<40) // sh_size
			patched = true
		}
	}
	if !patched {
		t.Fatal("the seed has no symbol table")
	}
	path := filepath.Join(t.TempDir(), "python3.11")
	if err := os.WriteFile(path, tiny, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Inspect(path); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Inspect: %v", err)
	}
}

// FuzzParseMapsLine parses fuzzed /proc/<pid>/maps lines.
func FuzzParseMapsLine(f *testing.F) {
	f.Add("00400000-00401000 r-xp 00000000 fe:01 1234 /usr/bin/python3.11")
	f.Add("7f0000000000-7f0000001000 r--p 00001000 00:2a 99 /opt/lib/libpython3.12.so.1.0 (deleted)")
	f.Add("7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]")
	f.Fuzz(func(t *testing.T, line string) {
		m, ok := parseMapsLine(line)
		if ok && (len(m.Path) == 0 || m.Path[0] != '/') {
			t.Fatalf("mapping %+v from %q", m, line)
		}
	})
}
