package syscalls

import (
	"net/netip"
	"testing"

	"go.uber.org/goleak"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/symbolize"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSockaddr(t *testing.T) {
	v6 := [16]uint8{0: 0x20, 1: 0x01, 2: 0x0d, 3: 0xb8, 15: 1}
	mapped := [16]uint8{10: 0xff, 11: 0xff, 12: 10, 13: 0, 14: 0, 15: 5}
	for _, c := range []struct {
		family uint16
		addr   [16]uint8
		want   string
	}{
		{2, [16]uint8{127, 0, 0, 1}, "127.0.0.1:443"},
		{10, v6, "[2001:db8::1]:443"},
		{10, mapped, "10.0.0.5:443"},
		{1, [16]uint8{1}, "invalid AddrPort"},
	} {
		if got := Sockaddr(c.family, c.addr, 443).String(); got != c.want {
			t.Errorf("family %d: %s, want %s", c.family, got, c.want)
		}
	}
}

// stacks is a tracer.Stacks that has one interpreter stack for every record.
type stacks []spans.Frame

func (s stacks) Take(spans.Header) []spans.Frame { return s }

// TestDecode: a syscall's path and arguments are redacted and bounded by the lengths the kernel
// sent; an interpreter's stack replaces the native one, which is kept beside it.
func TestDecode(t *testing.T) {
	sym := symbolize.New(symbolize.Options{ProcRoot: t.TempDir()})
	defer sym.Close()
	tr := mustNew(t, tracer.Env{Redactor: redact.New(), Symbolizer: sym}, []string{"execve"})
	var e probes.SyscallEvent
	e.Hdr.ProbeId = 59
	e.PathLen = 1 << 31 // more than the array: bounded
	copy(e.Path[:], "/usr/bin/curl")
	argv := "curl\x00-H\x00Authorization: Bearer sk-abcdefghijklmnopqrstuvwxyz123456\x00"
	e.ArgvLen = uint32(len(argv))
	copy(e.Argv[:], argv)
	e.Family, e.Port, e.Addr = 2, 80, [16]uint8{10, 0, 0, 1}
	e.StackLen, e.Stack[0] = 1, 0x401000
	sc := tr.decode(&e)
	if sc.Name != "execve" || sc.Peer != netip.MustParseAddrPort("10.0.0.1:80") || len(sc.Path) != len(e.Path) {
		t.Errorf("%+v", sc)
	}
	if len(sc.Argv) != 3 || sc.Argv[0] != "curl" || sc.Argv[2] == "Authorization: Bearer sk-abcdefghijklmnopqrstuvwxyz123456" {
		t.Errorf("argv %q", sc.Argv)
	}
	if len(sc.Stack) != 1 {
		t.Errorf("stack %+v", sc.Stack)
	}

	b := spans.NewBuilder(spans.Options{MaxOpenSpans: 10})
	tr = mustNew(t, tracer.Env{Redactor: redact.New(), Symbolizer: sym, Builder: b, Stacks: stacks{{Function: "agent.run", Module: "python"}}}, nil)
	rec := make([]byte, sizeSyscall)
	*tracer.As[probes.SyscallEvent](rec) = e
	if got := tr.onEnter(spans.Header{PID: 1, TID: 1}, rec); got != "" {
		t.Fatalf("dropped: %s", got)
	}
	tracer.As[probes.SyscallEvent](rec).Hdr.ProbeId = 1000
	if got := tr.onEnter(spans.Header{PID: 1, TID: 1}, rec); got != "unknown_syscall" {
		t.Errorf("unknown syscall: %q", got)
	}
	p := &tracer.Process{Capture: &spans.Capture{}}
	mustNew(t, tracer.Env{}, []string{"connect"}).SetupProcess(p)
	if len(p.Capture.Syscalls) != 1 {
		t.Errorf("capture %+v", p.Capture)
	}
}

func mustNew(t *testing.T, env tracer.Env, syscalls []string) *Tracer {
	t.Helper()
	tr, err := New(env, syscalls, DefaultContentConfig())
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
