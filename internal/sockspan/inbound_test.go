package sockspan

import (
	"testing"
	"time"
)

func TestInbound(t *testing.T) {
	t0 := time.Unix(1000, 0)
	in := NewInbound[string](2)
	if in.Put("a", t0) || in.Put("b", t0.Add(time.Second)) {
		t.Fatal("evicted below the bound")
	}
	// a put again: its first queue entry is stale, so the bound forgets b, the oldest current.
	if in.Put("a", t0.Add(2*time.Second)) {
		t.Fatal("a known key evicted another")
	}
	if !in.Put("c", t0.Add(3*time.Second)) {
		t.Fatal("a new key at the bound evicted nothing")
	}
	if _, ok := in.Seen("b"); ok {
		t.Error("b, the oldest, is still remembered")
	}
	if at, ok := in.Seen("a"); !ok || !at.Equal(t0.Add(2*time.Second)) {
		t.Errorf("a: %v %v, want its last put", at, ok)
	}
	if in.Len() != 2 {
		t.Errorf("%d keys, want 2", in.Len())
	}
	in.ForgetBefore(t0.Add(3 * time.Second))
	if _, ok := in.Seen("a"); ok {
		t.Error("a, last put before the limit, is still remembered")
	}
	if _, ok := in.Seen("c"); !ok || in.Len() != 1 || in.QueueLen() != 1 {
		t.Errorf("after ForgetBefore: c %v, %d keys, %d queued", ok, in.Len(), in.QueueLen())
	}
}
