package pyinfo

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
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
