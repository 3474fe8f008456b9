package story

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

type countingTel struct{ evictions, duplicates, ambiguous, stitched int }

func (c *countingTel) Eviction(string) { c.evictions++ }
func (c *countingTel) Duplicate()      { c.duplicates++ }
func (c *countingTel) Ambiguous()      { c.ambiguous++ }
func (c *countingTel) Stitched()       { c.stitched++ }

// stitchRun feeds a busy process's requests, generated from seed, through a Buffer whose
// stitching index is forced as force says, and returns what left it: per emitted story its
// trace id, reason and each span's id, trace id and parent, in emission order, and the counters.
func stitchRun(t testing.TB, seed uint64, force int) []string {
	rng := rand.New(rand.NewPCG(seed, 0))
	tel := &countingTel{}
	b := NewBuffer(Limits{MaxStories: 400, MaxSpansPerStory: 64, CompletionGrace: 30 * time.Millisecond,
		OrphanTimeout: 200 * time.Millisecond, Stitching: true}, tel)
	b.idx.force = force
	base := time.Unix(1_700_000_000, 0)
	var out []string
	nextID := uint64(1)
	id := func() uint64 { nextID++; return nextID }
	for step := range 400 {
		now := base.Add(time.Duration(step) * time.Millisecond)
		td := ptrace.NewTraces()
		for range rng.IntN(4) {
			rs := td.ResourceSpans().AppendEmpty()
			// Two processes, one busier; now and then a story spans both (a child process).
			rs.Resource().Attributes().PutInt(AttrProcessPID, int64(100+rng.IntN(2)))
			ss := rs.ScopeSpans().AppendEmpty()
			trace := pcommon.TraceID{byte(id()), byte(nextID >> 8), 1}
			// Times in ns around now, overlapping: several requests in flight at once.
			at := uint64(now.UnixNano()) - uint64(rng.IntN(40))*uint64(time.Millisecond)
			root := ss.Spans().AppendEmpty()
			root.SetTraceID(trace)
			root.SetSpanID(pcommon.SpanID{byte(id()), byte(nextID >> 8), 2})
			root.SetStartTimestamp(pcommon.Timestamp(at))
			root.SetEndTimestamp(pcommon.Timestamp(at + uint64(rng.IntN(30)+1)*uint64(time.Millisecond)))
			switch rng.IntN(4) {
			case 0:
				root.Attributes().PutStr(AttrRole, "prompt") // a request: never a candidate
			case 1:
				root.SetKind(ptrace.SpanKindServer)
			}
			for range rng.IntN(3) {
				ch := ss.Spans().AppendEmpty()
				ch.SetTraceID(trace)
				ch.SetSpanID(pcommon.SpanID{byte(id()), byte(nextID >> 8), 3})
				ch.SetParentSpanID(root.SpanID())
				s := at + uint64(rng.IntN(10))*uint64(time.Millisecond)
				ch.SetStartTimestamp(pcommon.Timestamp(s))
				ch.SetEndTimestamp(pcommon.Timestamp(s + uint64(rng.IntN(5))*uint64(time.Millisecond)))
			}
			if rng.IntN(6) == 0 {
				// A root that has not arrived yet: the story stays open (an orphan).
				root.SetParentSpanID(pcommon.SpanID{9, byte(id()), byte(nextID >> 8)})
			}
		}
		b.AddBatch(td, now)
		if step%3 == 0 || step == 399 {
			for _, st := range b.TakeReady(now, step == 399) {
				line := fmt.Sprintf("%x %s:", st.ID[:3], st.Reason)
				spans := slices.Clone(st.spans)
				slices.SortFunc(spans, func(x, y *Span) int { return slices.Compare(x.ID[:], y.ID[:]) })
				for _, sp := range spans {
					line += fmt.Sprintf(" %x/%x<%x", sp.ID[:3], sp.Span.TraceID().String()[:6], sp.parent[:3])
				}
				out = append(out, line)
			}
		}
	}
	return append(out, fmt.Sprintf("%+v", *tel))
}

// TestStitchIndexSameAnswers: the sorted index must stitch exactly as the plain scan of every
// story of the process does, across evictions, orphans, ambiguity and merges that grow a story
// within one pass.
func TestStitchIndexSameAnswers(t *testing.T) {
	stitched, ambiguous := 0, 0
	for seed := range uint64(30) {
		scan := stitchRun(t, seed, forceScan)
		for _, force := range []int{forceIndex, 0} {
			if got := stitchRun(t, seed, force); !slices.Equal(got, scan) {
				for i := range min(len(got), len(scan)) {
					if got[i] != scan[i] {
						t.Fatalf("seed %d force %d: first difference at %d:\nindex %s\nscan  %s", seed, force, i, got[i], scan[i])
					}
				}
				t.Fatalf("seed %d force %d: %d stories against %d", seed, force, len(got), len(scan))
			}
		}
		var tel countingTel
		_, _ = fmt.Sscanf(scan[len(scan)-1], "{evictions:%d duplicates:%d ambiguous:%d stitched:%d}", &tel.evictions, &tel.duplicates, &tel.ambiguous, &tel.stitched)
		stitched += tel.stitched
		ambiguous += tel.ambiguous
	}
	if stitched == 0 || ambiguous == 0 {
		t.Fatalf("%d stitched, %d ambiguous: the runs do not test both", stitched, ambiguous)
	}
	t.Logf("%d stitched, %d ambiguous over the runs", stitched, ambiguous)
}
