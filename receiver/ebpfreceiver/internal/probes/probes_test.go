package probes

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// requireKernel skips a test that needs to load BPF programs where that cannot work.
func requireKernel(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("the kernel has no BTF (/sys/kernel/btf/vmlinux); CO-RE programs cannot load")
	}
}

// TestRecordLayout checks the Go/C contract: every record type has the same size and field
// offsets in Go as in the compiled object's BTF.
func TestRecordLayout(t *testing.T) {
	upSpec, err := loadUprobe()
	if err != nil {
		t.Fatal(err)
	}
	sysSpec, err := loadSyscalls()
	if err != nil {
		t.Fatal(err)
	}
	pySpec, err := loadPython()
	if err != nil {
		t.Fatal(err)
	}
	tlsSpec, err := loadTls()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		spec *ebpf.CollectionSpec
		goT  any
	}{
		{"event_header", upSpec, EventHeader{}},
		{"func_event", upSpec, FuncEvent{}},
		{"func_args_event", upSpec, FuncArgsEvent{}},
		{"func_arg", upSpec, FuncArg{}},
		{"goroutine_event", upSpec, GoroutineEvent{}},
		{"probe_spec", upSpec, ProbeSpec{}},
		{"traced_process", upSpec, TracedProcess{}},
		{"syscall_event", sysSpec, SyscallEvent{}},
		{"syscall_exit_event", sysSpec, SyscallExitEvent{}},
		{"process_event", sysSpec, ProcessEvent{}},
		{"inode_key", sysSpec, InodeKey{}},
		{"fd_io_event", sysSpec, FDIOEvent{}},
		{"python_stack_event", pySpec, PythonStackEvent{}},
		{"py_frame", pySpec, PyFrame{}},
		{"python_audit_event", pySpec, PythonAuditEvent{}},
		{"py_value", pySpec, PyValue{}},
		{"python_layout", pySpec, PythonLayout{}},
		{"python_binary", pySpec, PythonBinary{}},
		{"usdt_arg", pySpec, UsdtArg{}},
		{"python_proc", pySpec, PythonProc{}},
		{"tls_event", tlsSpec, TLSEvent{}},
		// The syscalls object owns the shared Python maps: its view of the values must agree.
		{"python_layout", sysSpec, PythonLayout{}},
		{"python_proc", sysSpec, PythonProc{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var st *btf.Struct
			if err := tc.spec.Types.TypeByName(tc.name, &st); err != nil {
				t.Fatalf("BTF type %s: %v", tc.name, err)
			}
			gt := reflect.TypeOf(tc.goT)
			if uintptr(st.Size) != gt.Size() {
				t.Fatalf("size: C %d, Go %d", st.Size, gt.Size())
			}
			var goFields []reflect.StructField
			for i := 0; i < gt.NumField(); i++ {
				if f := gt.Field(i); f.Name != "_" {
					goFields = append(goFields, f)
				}
			}
			if len(goFields) != len(st.Members) {
				t.Fatalf("fields: C %d, Go %d", len(st.Members), len(goFields))
			}
			for i, m := range st.Members {
				if uintptr(m.Offset.Bytes()) != goFields[i].Offset {
					t.Errorf("field %s: C offset %d, Go %s offset %d", m.Name, m.Offset.Bytes(), goFields[i].Name, goFields[i].Offset)
				}
			}
		})
	}
}

func TestLoadAndClose(t *testing.T) {
	requireKernel(t)
	s, err := Load(Options{RingBufferBytes: 1 << 20, SyscallMask: 0x1f, CaptureStacks: true,
		Python: true, PythonStacks: true, TLS: true, TLSCaptureBytes: TLSMaxCaptureBytes,
		Sockets: SocketOptions{Enabled: true, Inbound: true, CaptureBytes: FDIOMaxCaptureBytes}})
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel lacks a feature the programs need: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*ebpf.Program{s.PythonAudit(), s.SSLEntry(), s.SSLReturn(), s.GoTLSWrite(), s.GoTLSRead(), s.GoTLSReadRet(), s.SSLFree(), s.GoTLSClose()} {
		if p == nil {
			t.Fatal("a Python or TLS program is not loaded")
		}
	}
	if err := s.TraceProcess(uint32(os.Getpid()), TracedProcess{TargetId: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPlain(42, true); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPlain(42, false); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPlain(42, false); err != nil {
		t.Fatalf("unmarking twice: %v", err)
	}
	if !s.IsTraced(uint32(os.Getpid())) {
		t.Fatal("process not traced after TraceProcess")
	}
	if err := s.UntraceProcess(uint32(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	if err := s.UntraceProcess(uint32(os.Getpid())); err != nil {
		t.Fatalf("untracing twice: %v", err)
	}
	drops, err := s.Drops()
	if err != nil {
		t.Fatal(err)
	}
	if len(drops) != len(DropReasons) {
		t.Fatalf("drops: %v", drops)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// TestVerifierBudget loads every program with the settings that make the verifier walk the most
// code (all syscalls, Python stacks, the largest TLS capture) and keeps each well under the
// kernel's limit of a million instructions: loops over Python frames, audit values and TLS data
// are bounded, and a change that makes their verification explode fails here first.
func TestVerifierBudget(t *testing.T) {
	requireKernel(t)
	for _, load := range []func() (*ebpf.CollectionSpec, error){loadSyscalls, loadUprobe, loadPython, loadTls} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		for name, value := range map[string]any{"syscall_mask": uint32(0x1f), "python_stacks": uint8(1), "python_wait_samples": uint8(1), "capture_stacks": uint8(1), "tls_capture_bytes": uint32(TLSMaxCaptureBytes),
			"sockets_enabled": uint8(1), "sockets_inbound": uint8(1), "fd_capture_bytes": uint32(FDIOMaxCaptureBytes)} {
			if v, ok := spec.Variables[name]; ok {
				if err := v.Set(value); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, scratch := range []string{"tls_scratch", "fd_scratch"} {
			if m, ok := spec.Maps[scratch]; ok {
				m.MaxEntries = 4
			}
		}
		coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
		if err != nil {
			t.Fatal(verifierDetail(err))
		}
		for name, p := range coll.Programs {
			log := p.VerifierLog
			i := strings.Index(log, "processed ")
			if i < 0 {
				continue
			}
			var n int
			if _, err := fmt.Sscanf(log[i:], "processed %d insns", &n); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			t.Logf("%s: %d instructions verified", name, n)
			if n > 250000 {
				t.Errorf("%s: the verifier walked %d instructions (limit 1000000, budget 250000)", name, n)
			}
		}
		coll.Close()
	}
}
