package pyinfo

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type lineTables struct {
	Version string `json:"version"`
	Codes   []struct {
		Qualname    string  `json:"qualname"`
		FirstLineNo int     `json:"firstlineno"`
		LineTable   string  `json:"linetable"`
		Lines       [][]int `json:"lines"`
	} `json:"codes"`
}

// TestLineTable decodes CPython 3.11 location tables recorded in testdata (and, when
// /usr/bin/python3.11 is installed, tables it produces now) and compares every instruction's
// line with what CPython's own co_lines() reported.
func TestLineTable(t *testing.T) {
	sources := map[string][]byte{}
	rec, err := os.ReadFile(filepath.Join("testdata", "linetables-3.11.json"))
	if err != nil {
		t.Fatal(err)
	}
	sources["recorded"] = rec
	if _, err := os.Stat("/usr/bin/python3.11"); err == nil {
		live, err := exec.Command("/usr/bin/python3.11", filepath.Join("testdata", "linetables.py")).Output()
		if err != nil {
			t.Fatalf("python3.11 linetables.py: %v", err)
		}
		sources["live"] = live
	}
	for name, raw := range sources {
		var lt lineTables
		if err := json.Unmarshal(raw, &lt); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if lt.Version != "3.11" {
			t.Fatalf("%s: version %s", name, lt.Version)
		}
		for _, c := range lt.Codes {
			table, err := hex.DecodeString(c.LineTable)
			if err != nil {
				t.Fatal(err)
			}
			code := &Code{Qualname: c.Qualname, FirstLine: c.FirstLineNo, lineTable: table}
			bad := 0
			for _, pair := range c.Lines {
				if got := code.Line(int32(pair[0])); got != pair[1] {
					if bad++; bad < 5 {
						t.Errorf("%s %s: instruction %d: line %d, want %d", name, c.Qualname, pair[0], got, pair[1])
					}
				}
			}
			if got := code.Line(-1); got != c.FirstLineNo {
				t.Errorf("%s %s: before the first instruction: line %d, want the first line %d", name, c.Qualname, got, c.FirstLineNo)
			}
		}
	}
}

func TestLineTableCorrupt(t *testing.T) {
	for _, table := range [][]byte{nil, {0x00}, {0xf0}, {0xe8}, {0xe8, 0xff, 0xff}, {0x7f, 0x80, 0x81}} {
		c := &Code{FirstLine: 10, lineTable: table}
		for _, lasti := range []int32{-1, 0, 1, 1000} {
			_ = c.Line(lasti) // must not panic
		}
	}
}

func TestModuleOf(t *testing.T) {
	for in, want := range map[string]string{
		"/srv/agent/customer_agent.py":          "customer_agent",
		"/usr/lib/python3.11/urllib/request.py": "request",
		"/usr/lib/python3.11/json/__init__.py":  "json",
		"<frozen importlib._bootstrap>":         "<frozen importlib._bootstrap>",
		"/srv/agent/tools.pyc":                  "tools.pyc",
	} {
		if got := ModuleOf(in); got != want {
			t.Errorf("ModuleOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeUnicode(t *testing.T) {
	if got := DecodeUnicode([]byte("abc"), 1, true); got != "abc" {
		t.Errorf("ascii: %q", got)
	}
	if got := DecodeUnicode([]byte{0xe9, 0x74, 0xe9}, 1, false); got != "été" {
		t.Errorf("latin-1: %q", got)
	}
	if got := DecodeUnicode([]byte{0x3b, 0x04, 0x38, 0x04}, 2, false); got != "ли" {
		t.Errorf("ucs-2: %q", got)
	}
	if got := DecodeUnicode([]byte{0x00, 0xf6, 0x01, 0x00}, 4, false); got != "😀" {
		t.Errorf("ucs-4: %q", got)
	}
}

// TestReadStrBounds: lengths and states a process can forge are refused with their reason
// before anything is allocated; the first is issue #14's crash (length × kind overflowed the
// bound check and reached makeslice).
func TestReadStrBounds(t *testing.T) {
	l := Layouts["3.11"]
	str := func(length int64, state uint32) memImage {
		m := make(memImage, 128)
		binary.LittleEndian.PutUint64(m[l.UnicodeLength:], uint64(length))
		binary.LittleEndian.PutUint32(m[l.UnicodeState:], state)
		copy(m[l.UnicodeASCIIData:], "abcd")
		return m
	}
	const compact, ascii, ready = 1 << 5, 1 << 6, 1 << 7
	for _, c := range []struct {
		name   string
		mem    memImage
		addr   uint64
		reason string
	}{
		{"overflowing length", str(1<<61+1, 4<<2|compact|ready), memBase, ReasonTooLong},
		{"overflowing length, kind 2", str(1<<62+1, 2<<2|compact|ready), memBase, ReasonTooLong},
		{"huge length", str(1<<40, 1<<2|compact|ascii|ready), memBase, ReasonTooLong},
		{"just too long", str(maxStringBytes/4+1, 4<<2|compact|ready), memBase, ReasonTooLong},
		{"negative length", str(-1, 1<<2|compact|ascii|ready), memBase, ReasonNegative},
		{"kind 3", str(4, 3<<2|compact|ready), memBase, ReasonRepresentation},
		{"not compact", str(4, 1<<2|ready), memBase, ReasonRepresentation},
		{"ascii of kind 2", str(4, 2<<2|compact|ascii|ready), memBase, ReasonRepresentation},
		{"null", str(4, 1<<2|compact|ascii|ready), 0, ReasonNull},
		{"unmapped", str(4, 1<<2|compact|ascii|ready), 0x1000, ReasonUnreadable},
		{"kernel address", str(4, 1<<2|compact|ascii|ready), 1<<64 - 4096, ReasonUnreadable},
		{"data past the end", str(100, 1<<2|compact|ascii|ready), memBase, ReasonUnreadable},
	} {
		s, _, err := readStr(c.mem, l, c.addr)
		var re *ReadError
		if !errors.As(err, &re) || re.Reason != c.reason || s != "" {
			t.Errorf("%s: %q, %v; want reason %s", c.name, s, err, c.reason)
		}
	}
	if s, n, err := readStr(str(4, 1<<2|compact|ascii|ready), l, memBase); err != nil || s != "abcd" || n != 36+4 {
		t.Errorf("a good str: %q %d %v", s, n, err)
	}
}

// TestReadCodePartial: a code object whose name cannot be read still has its file and lines;
// the Reader says what is missing and does not cache it.
func TestReadCodePartial(t *testing.T) {
	l := Layouts["3.11"]
	tables, firstLines := recordedTables(t)
	img := seedImage(l, "Agent.handle_prompt", "/srv/a.py", 1, tables[0], firstLines[0])
	binary.LittleEndian.PutUint64(img[seedQualname+int(l.UnicodeLength):], 1<<61+1) // length × 4 overflows
	binary.LittleEndian.PutUint32(img[seedQualname+int(l.UnicodeState):], 4<<2|1<<5|1<<7)
	r := NewMemReader(func(uint32) (Mem, error) { return img, nil })
	c, err := r.Code(1, l, memBase, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Qualname != "" || c.Filename != "/srv/a.py" || c.Line(0) != int(firstLines[0]) || len(c.Unreadable) != 1 ||
		c.Unreadable[0].Field != FieldQualname || c.Unreadable[0].Reason != ReasonTooLong {
		t.Errorf("code %+v, unreadable %v", c, c.Unreadable)
	}
	if again, _ := r.Code(1, l, memBase, nil); again == c {
		t.Error("an incomplete code object was cached")
	}
	binary.LittleEndian.PutUint64(img[l.CodeLineTable:], 0)
	if c, _ := r.Code(1, l, memBase, nil); c.Line(0) != -1 || c.Unreadable[len(c.Unreadable)-1].Field != FieldLineTable {
		t.Errorf("without a line table: line %d, unreadable %v", c.Line(0), c.Unreadable)
	}
}

// TestReaderBudget: a stack's reads stop at the budget (then ReasonBudget), cached code objects
// cost nothing.
func TestReaderBudget(t *testing.T) {
	l := Layouts["3.11"]
	img := seedImage(l, "f", "/f.py", 1, make([]byte, 1000), 1)
	r := NewMemReader(func(uint32) (Mem, error) { return img, nil })
	budget := int64(100)
	if _, err := r.Code(1, l, memBase, &budget); err != nil || budget >= 0 {
		t.Fatalf("first read: %v, budget left %d", err, budget)
	}
	if _, err := r.Code(1, l, memBase, &budget); err != nil {
		t.Errorf("a cached code object is refused: %v", err)
	}
	var re *ReadError
	if _, err := r.Code(1, l, memBase+8, &budget); !errors.As(err, &re) || re.Reason != ReasonBudget {
		t.Errorf("past the budget: %v", err)
	}
}

// TestReaderCacheBound: the cache stays under MaxCacheBytes across processes.
func TestReaderCacheBound(t *testing.T) {
	l := Layouts["3.11"]
	img := seedImage(l, "f", "/f.py", 1, make([]byte, 10000), 1)
	r := NewMemReader(func(uint32) (Mem, error) { return img, nil })
	r.MaxCacheBytes = 50000
	for pid := uint32(1); pid <= 20; pid++ {
		if _, err := r.Code(pid, l, memBase, nil); err != nil {
			t.Fatal(err)
		}
		if r.cacheBytes > r.MaxCacheBytes {
			t.Fatalf("%d processes: cache of %d bytes", pid, r.cacheBytes)
		}
	}
	total := int64(0)
	for _, p := range r.procs {
		total += p.bytes
	}
	if total != r.cacheBytes || total == 0 {
		t.Errorf("cache bytes %d, per process %d", r.cacheBytes, total)
	}
	r.Close()
	if r.cacheBytes != 0 {
		t.Errorf("%d bytes after Close", r.cacheBytes)
	}
}

// blockingMem is memory whose reads do not return until released, as a page of a FUSE file
// that its own process serves and never answers.
type blockingMem struct {
	memImage
	release chan struct{}
}

func (m blockingMem) ReadAt(b []byte, off int64) (int, error) {
	<-m.release
	return m.memImage.ReadAt(b, off)
}

// TestReaderTimeout: a read that does not return is given up after the timeout, the process
// is not read again until it returns, and then it is.
func TestReaderTimeout(t *testing.T) {
	l := Layouts["3.11"]
	mem := blockingMem{seedImage(l, "f", "/f.py", 1, nil, 1), make(chan struct{})}
	r := NewMemReader(func(uint32) (Mem, error) { return mem, nil })
	r.Timeout = 20 * time.Millisecond
	var re *ReadError
	if _, err := r.Code(1, l, memBase, nil); !errors.As(err, &re) || re.Reason != ReasonTimeout {
		t.Fatalf("blocked read: %v", err)
	}
	if _, err := r.Code(1, l, memBase, nil); !errors.As(err, &re) || re.Reason != ReasonStalled {
		t.Fatalf("while the read is blocked: %v", err)
	}
	close(mem.release)
	deadline := time.Now().Add(5 * time.Second)
	for r.stalled.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if c, err := r.Code(1, l, memBase, nil); err != nil || c.Qualname != "f" {
		t.Errorf("after the read returned: %v", err)
	}
}

func TestEscapeControl(t *testing.T) {
	for in, want := range map[string]string{
		"Agent.handle_prompt":        "Agent.handle_prompt",
		"f\n  forged (x.py:1)":       `f\x0a  forged (x.py:1)`,
		"a\x1b[31mb\u0085c\x7f":      `a\x1b[31mb\x85c\x7f`,
		"café_ли/агент.py":           "café_ли/агент.py",
		"tab\there":                  `tab\x09here`,
		"<frozen importlib._bootst>": "<frozen importlib._bootst>",
	} {
		if got := escapeControl(in); got != want {
			t.Errorf("escapeControl(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCandidatesBound: a process that maps many files named like an interpreter yields the
// first maxCandidates, and says so.
func TestCandidatesBound(t *testing.T) {
	root := t.TempDir()
	var maps strings.Builder
	for i := range 100 {
		fmt.Fprintf(&maps, "%x-%x r-xp 00000000 fe:01 %d /tmp/x/libpython3.%d.so\n", 0x10000*(i+1), 0x10000*(i+1)+0x1000, 1000+i, i)
	}
	if err := os.MkdirAll(filepath.Join(root, "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "7", "maps"), []byte(maps.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ms, err := Candidates(root, 7)
	if !errors.Is(err, ErrTooManyCandidates) || len(ms) != maxCandidates || ms[0].Path != "/tmp/x/libpython3.0.so" {
		t.Errorf("%d candidates, %v", len(ms), err)
	}
}
