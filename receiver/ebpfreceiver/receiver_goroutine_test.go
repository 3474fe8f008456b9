package ebpfreceiver

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGoroutineParentWithoutDWARF: in a Go program built without DWARF the receiver cannot
// read the runtime's g.m and m.curg offsets, so goroutine creation falls back to an entry and
// a return probe on runtime.newproc1; the connect made on the tool's goroutine still lands
// under the tool. (TestGoProgramSpans covers the single-probe path on a binary with DWARF.)
func TestGoroutineParentWithoutDWARF(t *testing.T) {
	requireKernel(t)
	exe := filepath.Join(t.TempDir(), "goagent-nodwarf")
	if b, err := exec.Command("go", "build", "-ldflags=-w", "-o", exe, "./testdata/goagent").CombinedOutput(); err != nil {
		t.Fatalf("build goagent: %v\n%s", err, b)
	}
	peer := listen(t)
	// No arguments: capturing them needs the DWARF this binary lacks.
	sink := startReceiver(t, testConfig(TargetConfig{
		Name:       "customer-agent",
		Executable: exe,
		Functions: []FunctionConfig{
			{Symbol: "main.(*Agent).HandlePrompt", Role: "prompt"},
			{Symbol: "main.(*Tools).ExportCustomerData", Role: "tool", ToolName: "customer-data-export"},
		},
	}))
	p := startProgram(t, exe, peer)
	p.do(t, "prompt please export everything now", "ok prompt")

	c := waitSpans(t, sink, func(c collected) bool {
		return c.has("invoke_agent customer-agent", "execute_tool customer-data-export", "connect")
	})
	prompt, _ := c.one(t, "invoke_agent customer-agent")
	tool, _ := c.one(t, "execute_tool customer-data-export")
	conn, _ := c.one(t, "connect")
	requireParent(t, prompt, tool)
	requireParent(t, tool, conn)
}
