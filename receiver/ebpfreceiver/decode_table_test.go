package ebpfreceiver

import (
	"strings"
	"testing"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// TestDecoderRefusesBadKinds: a kind table that would let a handler read past a record, or two
// tracers claim one kind, is a wiring error at Start, not a record misread later.
func TestDecoderRefusesBadKinds(t *testing.T) {
	ok := func(spans.Header, []byte) string { return "" }
	good := tracer.Kind{Kind: probes.KindThreadExit, Name: "thread_exit", Min: sizeHeader, Full: sizeProcess, Handle: ok}
	if _, err := newDecoder(good); err != nil {
		t.Fatalf("a good table: %v", err)
	}
	for _, c := range []struct {
		name  string
		kinds []tracer.Kind
		want  string
	}{
		{"claimed twice", []tracer.Kind{good, good}, "claimed by"},
		{"kind zero", []tracer.Kind{{Kind: 0, Name: "zero", Min: sizeHeader, Full: sizeHeader, Handle: ok}}, "out of range"},
		{"kind too large", []tracer.Kind{{Kind: maxKinds, Name: "big", Min: sizeHeader, Full: sizeHeader, Handle: ok}}, "out of range"},
		{"no handler", []tracer.Kind{{Kind: 1, Name: "x", Min: sizeHeader, Full: sizeHeader}}, "no handler"},
		{"shorter than a header", []tracer.Kind{{Kind: 1, Name: "x", Min: sizeHeader - 1, Full: sizeHeader, Handle: ok}}, "do not hold a header"},
		{"full below min", []tracer.Kind{{Kind: 1, Name: "x", Min: sizeProcess, Full: sizeHeader, Handle: ok}}, "do not hold a header"},
	} {
		if _, err := newDecoder(c.kinds...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
}

// TestWiringClaimsEveryKind: the receiver's own kinds and its tracers' cover every record kind
// the kernel programs always load (sockets' fd_io only with sockets.enabled), each once.
func TestWiringClaimsEveryKind(t *testing.T) {
	o := newOffline(t, nil)
	for kind := uint32(probes.KindFuncEntry); kind <= probes.KindThreadExit; kind++ {
		if o.r.decoder.kind(kind) == nil {
			t.Errorf("kind %d has no handler", kind)
		}
	}
	if o.r.decoder.kind(0) != nil || o.r.decoder.kind(maxKinds+1) != nil {
		t.Error("kind 0 or one past the table has a handler")
	}
}
