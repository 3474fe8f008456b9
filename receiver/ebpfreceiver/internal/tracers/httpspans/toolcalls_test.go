package httpspans

import (
	"testing"
	"time"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
)

func TestToolCallsMatch(t *testing.T) {
	t0 := time.Unix(100, 0)
	tc := NewToolCalls()
	tc.Record(7, t0, []llm.ToolCall{{Name: "read_file", ID: "call_1"}, {Name: "fetch", ID: "call_2"}, {Name: "grep", ID: "a"}, {Name: "grep", ID: "b"}})
	for _, c := range []struct {
		pid  uint32
		at   time.Time
		name string
		want string
	}{
		{7, t0.Add(-time.Millisecond), "read_file", ""}, // started before the model answered
		{8, t0.Add(time.Millisecond), "read_file", ""},  // another process
		{7, t0.Add(time.Millisecond), "read_file", "call_1"},
		{7, t0.Add(2 * time.Millisecond), "read_file", ""}, // the model asked for one: a second call is not it
		{7, t0.Add(time.Millisecond), "grep", ""},          // asked for twice: ambiguous
		{7, t0.Add(time.Millisecond), "list_dir", ""},      // not asked for
		{7, t0.Add(11 * time.Minute), "fetch", ""},         // after the window
		{7, t0.Add(time.Second), "fetch", "call_2"},
	} {
		if got, ok := tc.Match(c.pid, c.at, c.name); got != c.want || ok != (c.want != "") {
			t.Errorf("Match(%d, %v, %s) = %q, %v; want %q", c.pid, c.at.Sub(t0), c.name, got, ok, c.want)
		}
	}
	// A newer inference replaces the turn; one without tool calls ends it.
	tc.Record(7, t0.Add(time.Minute), []llm.ToolCall{{Name: "fetch", ID: "call_3"}})
	tc.Record(7, t0.Add(2*time.Minute), nil)
	if id, ok := tc.Match(7, t0.Add(3*time.Minute), "fetch"); ok {
		t.Errorf("a call after an inference without tool calls matched %q", id)
	}
	tc.Record(7, t0, []llm.ToolCall{{Name: "fetch", ID: "call_4"}})
	tc.Forget(7)
	if _, ok := tc.Match(7, t0.Add(time.Second), "fetch"); ok {
		t.Errorf("a forgotten process matched")
	}
}

func TestToolCallsBounded(t *testing.T) {
	tc := NewToolCalls()
	t0 := time.Unix(100, 0)
	for pid := range uint32(maxToolCallPIDs + 3) {
		tc.Record(pid, t0.Add(time.Duration(pid)*time.Millisecond), []llm.ToolCall{{Name: "x", ID: "id"}})
	}
	if n := len(tc.byPID); n != maxToolCallPIDs || tc.Evicted() != 3 {
		t.Fatalf("%d processes kept, %d evicted", n, tc.Evicted())
	}
	if _, ok := tc.Match(0, t0.Add(time.Hour/100), "x"); ok {
		t.Errorf("the oldest turn was not the one evicted")
	}
	if _, ok := tc.Match(maxToolCallPIDs+2, t0.Add(time.Hour/100), "x"); !ok {
		t.Errorf("the newest turn was evicted")
	}
}
