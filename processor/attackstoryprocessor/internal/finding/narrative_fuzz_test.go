package finding

import (
	"testing"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// FuzzBoundSteps: whatever the steps, the narrative has at most its bound of steps, and, when
// the decisive steps fit even with a gap around each, every one of them in order.
func FuzzBoundSteps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, uint8(5))
	f.Add(make([]byte, 200), uint8(40))
	f.Add([]byte{1, 1, 1, 0, 0, 0, 0, 1, 0x81, 0x81, 0x41, 0x21}, uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, limit uint8) {
		if len(data) > 4096 || limit < 3 {
			return
		}
		var steps []nstep
		var decisive []string
		for i, b := range data {
			s := nstep{n: 1}
			if b&1 == 1 {
				s.decisive = true
				s.text = "connect " + story.Itoa(i)
				decisive = append(decisive, s.text)
			} else {
				s.verb = "read "
				s.path = "/d" + story.Itoa(int(b>>5)) + "/e" + story.Itoa(int(b>>3&3)) + "/f" + story.Itoa(i)
				s.text = s.verb + s.path
			}
			steps = append(steps, s)
		}
		out := boundSteps(foldFiles(collapseRepeats(steps)), int(limit))
		if len(out) > int(limit) {
			t.Fatalf("%d steps, bound %d", len(out), limit)
		}
		if 2*len(decisive)+1 > int(limit) {
			return
		}
		j := 0
		for _, s := range out {
			if j < len(decisive) && s == decisive[j] {
				j++
			}
		}
		if j != len(decisive) {
			t.Fatalf("decisive step %q missing from %q", decisive[j], out)
		}
	})
}
