package httpspans

import (
	"sync"
	"time"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
)

// ToolCalls remembers, per process, the tool calls the model asked for in the process's latest
// inference, so that the MCP call that runs one (tracers/plaintext) can carry the model's
// tool-call id. A process's window is from the end of an inference to the start of its next
// one: a newer inference of the process replaces it, one that asked for no tools empties it.
// Safe for the TLS tracer's and the plaintext consumer's goroutines.
type ToolCalls struct {
	mu      sync.Mutex
	byPID   map[uint32]*modelTurn
	evicted int64
}

type modelTurn struct {
	end   time.Time
	calls []llm.ToolCall // bounded by internal/llm (at most maxListed per inference)
	used  []bool
}

// Bounds: processes remembered (the oldest turn goes first, counted by Evicted), and how long
// after its inference a tool call is still linked (the MCP consumer's wait for a response).
const (
	maxToolCallPIDs = 4096
	toolCallWindow  = 10 * time.Minute
)

// NewToolCalls makes an empty table.
func NewToolCalls() *ToolCalls { return &ToolCalls{byPID: map[uint32]*modelTurn{}} }

// Record notes the tool calls of an inference of pid that ended at end (none: the window ends).
func (t *ToolCalls) Record(pid uint32, end time.Time, calls []llm.ToolCall) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(calls) == 0 {
		delete(t.byPID, pid)
		return
	}
	if _, ok := t.byPID[pid]; !ok && len(t.byPID) >= maxToolCallPIDs {
		var oldest uint32
		var at time.Time
		for p, turn := range t.byPID {
			if at.IsZero() || turn.end.Before(at) {
				oldest, at = p, turn.end
			}
		}
		delete(t.byPID, oldest)
		t.evicted++
	}
	t.byPID[pid] = &modelTurn{end: end, calls: append([]llm.ToolCall(nil), calls...), used: make([]bool, len(calls))}
}

// Match returns the model's id for a call of tool name that pid started at at: when pid's
// latest inference ended before at (within toolCallWindow) and asked for exactly one call of
// name, not yet matched. A second call of the same tool in the window, a tool the model asked
// for twice, or a name the agent changed (a prefix of its own) is not matched.
func (t *ToolCalls) Match(pid uint32, at time.Time, name string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	turn := t.byPID[pid]
	if turn == nil || at.Before(turn.end) || at.Sub(turn.end) > toolCallWindow {
		return "", false
	}
	found := -1
	for i, c := range turn.calls {
		if c.Name != name {
			continue
		}
		if found >= 0 {
			return "", false // asked for twice: which is which is not known
		}
		found = i
	}
	if found < 0 || turn.used[found] || turn.calls[found].ID == "" {
		return "", false
	}
	turn.used[found] = true
	return turn.calls[found].ID, true
}

// Forget drops what pid's inferences asked for (the process exited).
func (t *ToolCalls) Forget(pid uint32) {
	t.mu.Lock()
	delete(t.byPID, pid)
	t.mu.Unlock()
}

// Evicted is how many processes' turns were dropped for the bound so far.
func (t *ToolCalls) Evicted() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.evicted
}
