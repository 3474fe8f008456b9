package story

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"sort"
)

// stitchIndex answers stitching's two questions during one TakeReady pass without visiting
// every story of a busy process for each ready story: which stories of a process contain a
// time span (stitchTarget), and which candidates of a process start inside a story's envelope
// (stitch's second loop). A linear scan costs the process's stories in flight per question,
// and a pass asks about as many questions as stories are ready: at a few hundred requests a
// second with completion_grace 300ms, both are in the hundreds, and that product was the
// processor's largest cost at saturation (BENCHMARKS.md section 4). Sorted once per pass and
// process, a question costs a binary search and the stories that overlap in time.
//
// Within a pass only merge changes stories: it grows its target's envelope (earlier MinStart,
// later MaxEnd, more procs) and marks the candidate merged; no root arrives or leaves. So a
// sorted view stays right for every story but the targets of this pass's merges, which are
// flagged grown and looked at one by one.
type stitchIndex struct {
	// force: 0 builds an index once questions pay for it; tests set forceScan or forceIndex to
	// compare both answers.
	force int
	procs map[string]*procIndex
	grown []*Story // merge targets of this pass (Story.grown set)
}

const (
	forceScan = 1 + iota
	forceIndex
)

type procIndex struct {
	questions int // asked so far in this pass, before the index was built
	built     bool
	// stories of the process by MinStart; endMax[i] is the largest envelope end among
	// stories[:i+1] (math.MaxUint64 for one without a root yet), so that a backward scan stops
	// where no earlier story can reach the end asked for.
	stories []*Story
	endMax  []uint64
	// cands: the process's stitching candidates by Root.Start.
	cands []*Story
}

// envelopeEnd is the latest time st's envelope reaches (EnvelopeContains' end bound).
func (s *Story) envelopeEnd() uint64 {
	if s.Root == nil {
		return math.MaxUint64
	}
	return max(s.Root.End, s.MaxEnd)
}

// proc returns the index of p, built once asking has cost about what building does: a pass
// with few questions (a quiet process) keeps the plain scan and allocates nothing.
func (x *stitchIndex) proc(b *Buffer, p string) *procIndex {
	pi := x.procs[p]
	if pi == nil {
		pi = &procIndex{}
		x.procs[p] = pi
	}
	if pi.built {
		return pi
	}
	pi.questions++
	n := len(b.ByProc[p]) + len(b.candidates[p])
	if x.force == forceScan || x.force == 0 && pi.questions <= bits.Len(uint(n))+1 {
		return pi // not yet: the caller scans
	}
	pi.built = true
	pi.stories = make([]*Story, 0, len(b.ByProc[p]))
	for s := range b.ByProc[p] {
		pi.stories = append(pi.stories, s)
	}
	slices.SortFunc(pi.stories, func(a, c *Story) int { return cmp.Compare(a.MinStart, c.MinStart) })
	pi.endMax = make([]uint64, len(pi.stories))
	var m uint64
	for i, s := range pi.stories {
		m = max(m, s.envelopeEnd())
		pi.endMax[i] = m
	}
	pi.cands = make([]*Story, 0, len(b.candidates[p]))
	for c := range b.candidates[p] {
		pi.cands = append(pi.cands, c)
	}
	slices.SortFunc(pi.cands, func(a, c *Story) int { return cmp.Compare(a.Root.Start, c.Root.Start) })
	return pi
}

// containing calls f for every story of process p in the buffer whose envelope contains
// [start, end] (merged ones and c excluded), until f returns false.
func (x *stitchIndex) containing(b *Buffer, p string, c *Story, start, end uint64, f func(*Story) bool) {
	pi := x.proc(b, p)
	if !pi.built {
		for s := range b.ByProc[p] {
			if s == c || s.merged || !s.EnvelopeContains(start, end) {
				continue
			}
			if !f(s) {
				return
			}
		}
		return
	}
	// Stories indexed with MinStart <= start, latest first, while one of them can still end
	// at or after end.
	i := sort.Search(len(pi.stories), func(i int) bool { return pi.stories[i].MinStart > start }) - 1
	for ; i >= 0 && pi.endMax[i] >= end; i-- {
		s := pi.stories[i]
		if s == c || s.merged || s.grown || !s.EnvelopeContains(start, end) {
			continue
		}
		if !f(s) {
			return
		}
	}
	for _, s := range x.grown {
		if s == c || s.merged || !s.hasProc(p) || !s.EnvelopeContains(start, end) {
			continue
		}
		if !f(s) {
			return
		}
	}
}

// candidatesIn calls f for every stitching candidate of process p whose root starts inside
// [start, end] (a superset of those whose root lies inside it).
func (x *stitchIndex) candidatesIn(b *Buffer, p string, start, end uint64, f func(*Story)) {
	pi := x.proc(b, p)
	if !pi.built {
		for c := range b.candidates[p] {
			f(c)
		}
		return
	}
	i := sort.Search(len(pi.cands), func(i int) bool { return pi.cands[i].Root.Start >= start })
	for ; i < len(pi.cands) && pi.cands[i].Root.Start <= end; i++ {
		// Merged (or otherwise no longer p's) candidates left the set after the index was built.
		if c := pi.cands[i]; c.candidateProc == p {
			f(c)
		}
	}
}

// grew records that st's envelope may have grown in this pass (it took a merge).
func (x *stitchIndex) grew(st *Story) {
	if !st.grown {
		st.grown = true
		x.grown = append(x.grown, st)
	}
}

// done clears the pass's flags.
func (x *stitchIndex) done() {
	for _, s := range x.grown {
		s.grown = false
	}
	x.grown = x.grown[:0]
	clear(x.procs)
}
