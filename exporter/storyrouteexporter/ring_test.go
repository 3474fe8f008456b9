package storyrouteexporter

import (
	"fmt"
	"math"
	"testing"
)

func clientKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	return keys
}

func replicas(n int) []string {
	var eps []string
	for i := range n {
		eps = append(eps, fmt.Sprintf("10.244.%d.7:4317", i))
	}
	return sortedDistinct(eps)
}

// TestRingBalance: pod addresses of one subnet spread evenly over the replicas.
func TestRingBalance(t *testing.T) {
	const keys = 30000
	for _, n := range []int{2, 3, 5} {
		r := newRing(replicas(n))
		count := make([]int, n)
		for _, k := range clientKeys(keys) {
			count[r.pick(k)]++
		}
		want := float64(keys) / float64(n)
		for i, c := range count {
			if math.Abs(float64(c)-want) > 0.05*want {
				t.Errorf("%d replicas: replica %d has %d keys, want %.0f ±5%%", n, i, c, want)
			}
		}
	}
}

// TestRingStability: a replica added takes about 1/n of the keys, all from the others and
// nothing moves between the others; a replica removed gives away only its own keys.
func TestRingStability(t *testing.T) {
	keys := clientKeys(20000)
	three := replicas(3)
	four := replicas(4)
	r3, r4 := newRing(three), newRing(four)
	moved := 0
	for _, k := range keys {
		a, b := three[r3.pick(k)], four[r4.pick(k)]
		if a == b {
			continue
		}
		moved++
		if b != four[3] {
			t.Fatalf("key %s moved from %s to %s, not to the new replica %s", k, a, b, four[3])
		}
	}
	if f := float64(moved) / float64(len(keys)); f < 0.22 || f > 0.28 {
		t.Errorf("adding a 4th replica moved %.3f of the keys, want about 0.25", f)
	}

	// Removing replica 1 of 3: only its keys move.
	two := []string{three[0], three[2]}
	r2 := newRing(two)
	for _, k := range keys {
		a, b := three[r3.pick(k)], two[r2.pick(k)]
		if a != b && a != three[1] {
			t.Fatalf("key %s moved from %s to %s though its replica stayed", k, a, b)
		}
	}
}

// TestRingGolden pins the placement: agents of two versions (a rolling upgrade) must place a
// key alike, so a change of the hash is a change every agent must get at once. This fails
// when the hash or the mixing changes.
func TestRingGolden(t *testing.T) {
	r := newRing(sortedDistinct([]string{"10.244.1.7:4317", "10.244.2.9:4317", "10.244.3.4:4317"}))
	got := ""
	for _, k := range []string{"10.0.0.5", "10.0.0.6", "10.0.1.200", "fd00::5", "node-a/4026531840|127.0.0.1", "trace:ab000000000000000000000000000001"} {
		got += r.endpoints[r.pick(k)] + " "
	}
	const want = "10.244.1.7:4317 10.244.3.4:4317 10.244.3.4:4317 10.244.1.7:4317 10.244.1.7:4317 10.244.3.4:4317 "
	if got != want {
		t.Errorf("placement changed:\n got %q\nwant %q", got, want)
	}
}

func TestRingEmptyAndOne(t *testing.T) {
	if i := newRing(nil).pick("10.0.0.5"); i != -1 {
		t.Errorf("empty ring picked %d", i)
	}
	if i := newRing([]string{"a:1"}).pick("10.0.0.5"); i != 0 {
		t.Errorf("one replica: picked %d", i)
	}
}
