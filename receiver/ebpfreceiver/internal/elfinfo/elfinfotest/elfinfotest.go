// Package elfinfotest holds what the fuzz tests of the packages that read ELF files of traced
// programs (elfinfo, symbolize) share: fixtures read as seeds, and seeds made from a real
// binary whose section headers lie.
package elfinfotest

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
)

// ReadFiles returns the contents of the fixtures at paths, to be seeds.
func ReadFiles(tb testing.TB, paths []string) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// LyingSections returns copies of the 64-bit little-endian ELF file bin in which one section
// header each declares a huge size, a huge offset, compressed contents or the whole file as its
// size: what a crafted binary says to make a reader allocate, seek or inflate without bound.
func LyingSections(bin []byte) [][]byte {
	if len(bin) < 64 {
		return nil
	}
	shoff := binary.LittleEndian.Uint64(bin[0x28:])
	shentsize := uint64(binary.LittleEndian.Uint16(bin[0x3a:]))
	shnum := uint64(binary.LittleEndian.Uint16(bin[0x3c:]))
	var out [][]byte
	for i := uint64(1); i < shnum; i++ {
		h := shoff + i*shentsize
		if h+64 > uint64(len(bin)) || h+64 < h {
			break
		}
		for _, m := range []struct {
			field uint64
			value uint64
		}{
			{0x20, 1 << 40},          // sh_size
			{0x18, 1 << 40},          // sh_offset
			{0x08, 0x800},            // sh_flags = SHF_COMPRESSED
			{0x20, uint64(len(bin))}, // sh_size: the whole file
		} {
			c := bytes.Clone(bin)
			binary.LittleEndian.PutUint64(c[h+m.field:], m.value)
			out = append(out, c)
		}
	}
	return out
}
