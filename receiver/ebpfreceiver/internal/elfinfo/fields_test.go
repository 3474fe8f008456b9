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
