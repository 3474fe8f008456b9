package ebpfreceiver

import (
	"encoding/binary"
	"testing"
)

// TestRecordLag: a record's wait is now minus its kernel timestamp; a record too short to carry
// one, or stamped after now, says 0 rather than a huge or negative lag.
func TestRecordLag(t *testing.T) {
	rec := make([]byte, sizeHeader)
	binary.LittleEndian.PutUint64(rec[offsetTs:], 1_000)
	for _, c := range []struct {
		name string
		now  uint64
		raw  []byte
		want uint64
	}{
		{"waited", 1_500_000_000, rec, 1_500_000_000 - 1_000},
		{"read at once", 1_000, rec, 0},
		{"stamped later", 999, rec, 0},
		{"short", 1_500_000_000, rec[:sizeHeader-1], 0},
	} {
		if got := recordLag(c.now, c.raw); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
