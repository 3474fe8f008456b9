package tracer

import (
	"errors"
	"strings"
	"testing"
	"unsafe"

	"go.uber.org/goleak"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestAsRefusesASmallView: a view whose capacity is below the struct's size is a bug of a kind
// table; As panics instead of reading past the record.
func TestAsRefusesASmallView(t *testing.T) {
	buf := make([]uint64, (SizeOf[probes.SyscallEvent]()+7)/8)
	full := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*8)
	if e := As[probes.SyscallEvent](full[:SizeHeader]); e == nil {
		t.Fatal("nil view")
	}
	defer func() {
		if recover() == nil {
			t.Error("As viewed a header-sized buffer as a syscall record")
		}
	}()
	As[probes.SyscallEvent](full[:SizeHeader:SizeHeader])
}

func TestBytesBounded(t *testing.T) {
	b := []byte("abc")
	if got := CString(b, 1<<31); got != "abc" {
		t.Errorf("CString = %q", got)
	}
	if got := CString(b, 2); got != "ab" {
		t.Errorf("CString = %q", got)
	}
}

func TestShortError(t *testing.T) {
	long := errors.New(strings.Repeat("x", 500))
	if got := ShortError(long); len(got) != 200+len("…") {
		t.Errorf("%d bytes", len(got))
	}
	if got := ShortError(errors.New("short")); got != "short" {
		t.Errorf("%q", got)
	}
}

func TestParseArg(t *testing.T) {
	cases := []struct {
		in     string
		name   string
		policy redact.Policy
		err    bool
	}{
		{"prompt", "prompt", redact.PolicyRedacted, false},
		{"q:full", "q", redact.PolicyFull, false},
		{"q:none", "q", redact.PolicyNone, false},
		{":full", "", "", true},
		{"q:bogus", "", "", true},
	}
	for _, c := range cases {
		name, pol, err := ParseArg(c.in)
		if (err != nil) != c.err || name != c.name || pol != c.policy {
			t.Errorf("%q: %q %q %v", c.in, name, pol, err)
		}
	}
}

func TestParsePythonPattern(t *testing.T) {
	if m, q, err := ParsePythonPattern("*:Agent.handle_prompt"); err != nil || m != "*" || q != "Agent.handle_prompt" {
		t.Errorf("%q %q %v", m, q, err)
	}
	for _, bad := range []string{"nocolon", ":q", "m:", "m:[", "[:q"} {
		if _, _, err := ParsePythonPattern(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestProbeRole(t *testing.T) {
	var p spans.Probe
	ProbeRole(&p, "", "", "main.f")
	if p.Role != spans.RoleFunction || p.ToolName != "" {
		t.Errorf("%+v", p)
	}
	ProbeRole(&p, "tool", "", "main.(*Tools).Export")
	if p.Role != spans.RoleTool || p.ToolName != "Export" {
		t.Errorf("%+v", p)
	}
	ProbeRole(&p, "tool", "export", "main.(*Tools).Export")
	if p.ToolName != "export" {
		t.Errorf("%+v", p)
	}
}

type registry map[uint32]*Process

func (r registry) Process(pid uint32) *Process { return r[pid] }

func TestTargetName(t *testing.T) {
	r := registry{1: {Target: &Target{Config: TargetConfig{Name: "agent"}}}, 2: {}}
	for pid, want := range map[uint32]string{1: "agent", 2: "", 3: ""} {
		if got := TargetName(r, pid); got != want {
			t.Errorf("%d: %q, want %q", pid, got, want)
		}
	}
	if TargetName(nil, 1) != "" {
		t.Error("nil registry")
	}
}
