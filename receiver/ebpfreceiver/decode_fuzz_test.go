package ebpfreceiver

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// FuzzDecodeRecords feeds arbitrary bytes as records of every kind through the decoder into the
// span builder, the TLS tracker and the Python support (over an empty /proc). An input is a
// sequence of records, each a kind byte (it overrides the record header's kind, so mutations stay
// on known kinds), a mode byte, a little-endian uint16 length and that many bytes. Mode bit 0
// sends the bytes as they are (records shorter than their kind); otherwise they are padded with
// zeros to the kind's size (bit 1: its whole struct, else the part every record holds), which
// keeps inputs small. No record may panic (the decoder recovers panics, so the target checks the
// count).
func FuzzDecodeRecords(f *testing.F) {
	// One empty /proc and one meter for every input: each input still gets a receiver of its own.
	procRoot := f.TempDir()
	tel := componenttest.NewTelemetry()
	f.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	kinds := newOfflineWith(f, consumertest.NewNop(), procRoot, tel).r.decoder.kinds
	var all []byte
	for _, rec := range seedRecords() {
		in := encodeFuzzRecord(kinds, rec)
		f.Add(in)
		all = append(all, in...)
	}
	f.Add(all)
	f.Fuzz(func(t *testing.T, in []byte) {
		o := newOfflineWith(t, consumertest.NewNop(), procRoot, tel)
		for _, rec := range decodeFuzzRecords(o.r.decoder.kinds, in) {
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

// fuzzNumKinds bounds the kind a fuzz input's first byte names (modulo fuzzNumKinds+1, so that
// one unknown kind is reached too). It stays what it was when the committed inputs were found,
// so that they keep their meaning as kinds are added.
const fuzzNumKinds = probes.KindThreadExit + 1

// decodeFuzzRecords splits a FuzzDecodeRecords input into records, sized by the decoder's
// table of kinds.
func decodeFuzzRecords(kinds []tracer.Kind, in []byte) [][]byte {
	var out [][]byte
	for len(in) >= 4 {
		kind, mode := uint32(in[0])%(fuzzNumKinds+1), in[1]
		n := min(int(binary.LittleEndian.Uint16(in[2:4])), len(in)-4)
		data := in[4 : 4+n]
		in = in[4+n:]
		size := n
		if mode&1 == 0 && kind < uint32(len(kinds)) && kinds[kind].Handle != nil {
			k := kinds[kind]
			size = max(n, k.Min)
			if mode&2 != 0 {
				size = max(n, k.Full)
			}
		}
		rec := make([]byte, size)
		copy(rec, data)
		if size >= sizeHeader {
			binary.LittleEndian.PutUint32(rec[offsetKind:], kind)
		}
		out = append(out, rec)
	}
	return out
}

// TestFuzzRecordEncoding: the seeds of FuzzDecodeRecords decode to the records they encode.
func TestFuzzRecordEncoding(t *testing.T) {
	kinds := newOffline(t, consumertest.NewNop()).r.decoder.kinds
	var all []byte
	want := seedRecords()
	for _, rec := range want {
		all = append(all, encodeFuzzRecord(kinds, rec)...)
	}
	got := decodeFuzzRecords(kinds, all)
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("record %d (kind %d) differs after encoding", i, want[i][offsetKind])
		}
	}
	if len(all) > 8<<10 {
		t.Errorf("the seeds take %d bytes; keep them small (the fuzzer minimizes inputs it finds)", len(all))
	}
}

// encodeFuzzRecord encodes a record for FuzzDecodeRecords without its trailing zeros, padded
// back to its length by the mode.
func encodeFuzzRecord(kinds []tracer.Kind, rec []byte) []byte {
	kind := binary.LittleEndian.Uint32(rec[offsetKind:])
	data := bytes.TrimRight(rec, "\x00")
	mode := byte(0)
	switch {
	case len(rec) == kinds[kind].Full:
		mode = 2
	case len(rec) != max(len(data), kinds[kind].Min):
		mode, data = 1, rec
	}
	out := []byte{byte(kind), mode, 0, 0}
	binary.LittleEndian.PutUint16(out[2:], uint16(len(data)))
	return append(out, data...)
}
