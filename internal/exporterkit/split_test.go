package exporterkit

import (
	"errors"
	"fmt"
	"testing"
)

// limitSink accepts a range whose total size is at most limit, refuses a larger one as too
// large, and fails with errDown from request number failAt on (0: never).
type limitSink struct {
	sizes     []int
	limit     int
	failAt    int
	requests  int
	delivered []int
}

var errDown = errors.New("503")

func (s *limitSink) send(lo, hi int) error {
	s.requests++
	if s.failAt > 0 && s.requests >= s.failAt {
		return errDown
	}
	total := 0
	for _, n := range s.sizes[lo:hi] {
		total += n
	}
	if total > s.limit {
		return &TooLargeError{Err: fmt.Errorf("%d bytes over %d", total, s.limit)}
	}
	for i := lo; i < hi; i++ {
		s.delivered = append(s.delivered, i)
	}
	return nil
}

// checkBisect checks Bisect against its contract for one sink: every item that fits alone is
// delivered exactly once and in order, unless sending stopped at a non-413 error; the items
// dropped are exactly those larger than the limit alone; the request count stays within 2n-1.
func checkBisect(t *testing.T, s *limitSink) {
	t.Helper()
	n := len(s.sizes)
	var dropped []int
	err := Bisect(0, n, s.send, func(i int, err error) {
		if !IsTooLarge(err) {
			t.Fatalf("drop(%d) with %v, want a too-large error", i, err)
		}
		dropped = append(dropped, i)
	})
	if s.failAt == 0 && err != nil {
		t.Fatalf("Bisect: %v", err)
	}
	if err != nil && !errors.Is(err, errDown) {
		t.Fatalf("Bisect returned %v, want the sink's error", err)
	}
	seen := map[int]bool{}
	last := -1
	for _, i := range append(append([]int(nil), s.delivered...), dropped...) {
		if seen[i] {
			t.Fatalf("item %d delivered or dropped twice", i)
		}
		seen[i] = true
	}
	for _, i := range s.delivered {
		if i <= last {
			t.Fatalf("items out of order: %d after %d", i, last)
		}
		last = i
		if s.sizes[i] > s.limit {
			t.Fatalf("item %d of %d bytes delivered over the limit %d", i, s.sizes[i], s.limit)
		}
	}
	for _, i := range dropped {
		if s.sizes[i] <= s.limit {
			t.Fatalf("item %d of %d bytes dropped though it fits in %d", i, s.sizes[i], s.limit)
		}
	}
	if err == nil {
		for i := 0; i < n; i++ {
			if !seen[i] {
				t.Fatalf("item %d neither delivered nor dropped", i)
			}
		}
	}
	if n > 0 && s.requests > 2*n-1 {
		t.Fatalf("%d requests for %d items, want at most %d", s.requests, n, 2*n-1)
	}
}

func TestBisect(t *testing.T) {
	tests := []struct {
		name   string
		sizes  []int
		limit  int
		failAt int
	}{
		{"fits", []int{10, 10, 10}, 100, 0},
		{"split once", []int{40, 40, 40}, 100, 0},
		{"one too large alone", []int{10, 500, 10, 10, 10}, 100, 0},
		{"all too large", []int{200, 300}, 100, 0},
		{"outage in the middle of a split", []int{60, 60, 60, 60}, 100, 3},
		{"empty", nil, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkBisect(t, &limitSink{sizes: tt.sizes, limit: tt.limit, failAt: tt.failAt})
		})
	}
}

func FuzzBisect(f *testing.F) {
	f.Add([]byte{10, 200, 30, 30, 90}, uint8(100), uint8(0))
	f.Add([]byte{255, 255, 1}, uint8(50), uint8(2))
	f.Fuzz(func(t *testing.T, sizes []byte, limit, failAt uint8) {
		if len(sizes) > 512 {
			sizes = sizes[:512]
		}
		s := &limitSink{limit: int(limit), failAt: int(failAt)}
		for _, b := range sizes {
			s.sizes = append(s.sizes, int(b))
		}
		checkBisect(t, s)
	})
}
