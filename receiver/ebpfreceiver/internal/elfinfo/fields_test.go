package elfinfo

import (
	"errors"
	"testing"
)

func TestStructFieldOffsets(t *testing.T) {
	fx := buildFixtures(t)
	b := openBinary(t, fx.goBin)
	// g.m sits after stack (2 words), stackguard0, stackguard1, _panic and _defer in every Go
	// release the receiver supports; the goroutine probe reads g0.m.curg through these.
	offs, err := b.StructFieldOffsets("runtime.g", "m", "goid")
	if err != nil {
		t.Fatal(err)
	}
	if offs[0] != 48 {
		t.Errorf("runtime.g.m at %d, want 48", offs[0])
	}
	if offs[1] <= offs[0] {
		t.Errorf("runtime.g.goid at %d, want after m (%d)", offs[1], offs[0])
	}
	curg, err := b.StructFieldOffsets("runtime.m", "curg")
	if err != nil {
		t.Fatal(err)
	}
	if curg[0] == 0 || curg[0] >= MaxFieldOffset {
		t.Errorf("runtime.m.curg at %d", curg[0])
	}

	if _, err := b.StructFieldOffsets("runtime.g", "nosuchfield"); !errors.Is(err, ErrSymbolNotFound) {
		t.Errorf("unknown field: %v, want ErrSymbolNotFound", err)
	}
	if _, err := b.StructFieldOffsets("runtime.nosuchtype", "m"); !errors.Is(err, ErrSymbolNotFound) {
		t.Errorf("unknown type: %v, want ErrSymbolNotFound", err)
	}
	stripped := openBinary(t, fx.goStripped)
	if _, err := stripped.StructFieldOffsets("runtime.g", "m"); !errors.Is(err, ErrNoDWARF) {
		t.Errorf("stripped: %v, want ErrNoDWARF", err)
	}
}

// TestStructFieldUnits: in a Go binary the type is found in the runtime unit (or its package's)
// without the other units, and at the same offset as the walk over every unit finds it; a type
// in no such unit is still found by that walk.
func TestStructFieldUnits(t *testing.T) {
	fx := buildFixtures(t)
	b := openBinary(t, fx.goBin)
	d, err := b.loadDWARF()
	if err != nil {
		t.Fatal(err)
	}
	bound := b.infoBytes()
	for _, name := range []string{"runtime.g", "runtime.m", "sync.Mutex", "os.File"} {
		all, ok, err := findStruct(d, name, bound, nil)
		if err != nil || !ok {
			t.Fatalf("%s: every unit: found %v, %v", name, ok, err)
		}
		var units []string
		fast, ok, err := findStruct(d, name, bound, func(u string) bool {
			units = append(units, u)
			return u == "runtime" || u == goPackage(name)
		})
		if err != nil || !ok || fast != all {
			t.Errorf("%s: runtime unit first: %v %v %v, every unit: %v", name, fast, ok, err, all)
		}
		if len(units) < 2 {
			t.Errorf("%s: %d units looked at", name, len(units))
		}
	}
	if _, ok, _ := findStruct(d, "runtime.g", bound, func(string) bool { return false }); ok {
		t.Error("runtime.g found with every unit skipped")
	}
	for in, want := range map[string]string{"runtime.g": "runtime", "net/http.Client": "net/http",
		"golang.org/x/net/http2.Framer": "golang.org/x/net/http2", "int": "", "a/b": ""} {
		if got := goPackage(in); got != want {
			t.Errorf("goPackage(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkStructFieldOffsets is the one-time cost per Go binary of the goroutine probe's
// offsets (a walk over the top-level DWARF entries up to runtime.m).
func BenchmarkStructFieldOffsets(b *testing.B) {
	dir := b.TempDir()
	path := buildGo(b, dir, "goprog", goEnv())
	for b.Loop() {
		bin, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bin.StructFieldOffsets("runtime.m", "curg"); err != nil {
			b.Fatal(err)
		}
		_ = bin.Close()
	}
}
