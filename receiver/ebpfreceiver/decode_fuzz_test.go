package ebpfreceiver

import (
	"context"
	"encoding/binary"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
)

// FuzzDecodeRecords feeds arbitrary bytes as records of every kind through the decoder into the
// span builder, the TLS tracker and the Python support (over an empty /proc). An input is a
// sequence of records, each a kind byte, a little-endian uint16 length and that many bytes (the
// kind byte overrides the record header's kind, so mutations stay on known kinds). No record may
// panic (a panic is recovered by the decoder, so the fuzz target checks the count).
func FuzzDecodeRecords(f *testing.F) {
	var all []byte
	for _, rec := range seedRecords() {
		in := encodeFuzzRecord(rec)
		f.Add(in)
		all = append(all, in...)
	}
	f.Add(all)
	// One empty /proc and one meter for every input: each input still gets a receiver of its own.
	procRoot := f.TempDir()
	tel := componenttest.NewTelemetry()
	f.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	f.Fuzz(func(t *testing.T, in []byte) {
		o := newOfflineWith(t, consumertest.NewNop(), procRoot, tel)
		for len(in) >= 3 {
			kind := uint32(in[0]) % (numKinds + 1)
			n := min(int(binary.LittleEndian.Uint16(in[1:3])), len(in)-3)
			rec := make([]byte, n)
			copy(rec, in[3:3+n])
			in = in[3+n:]
			if n >= sizeHeader {
				binary.LittleEndian.PutUint32(rec[offsetKind:], kind)
			}
			o.r.handle(rec)
			if o.r.panics.sinceCheck > 0 {
				t.Fatalf("%s", o.r.panics.last)
			}
		}
		o.r.flush(t.Context())
		o.r.builder.Abandon(o.r.clock.wall(0), "end of input")
		o.r.flush(t.Context())
		if o.r.panics.sinceCheck > 0 {
			t.Fatalf("%s", o.r.panics.last)
		}
	})
}

func encodeFuzzRecord(rec []byte) []byte {
	out := []byte{byte(binary.LittleEndian.Uint32(rec[offsetKind:])), 0, 0}
	binary.LittleEndian.PutUint16(out[1:], uint16(len(rec)))
	return append(out, rec...)
}
