package probes

import (
	"errors"
	"os"
	"reflect"
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
	s, err := Load(Options{RingBufferBytes: 1 << 20, SyscallMask: 0x1f, CaptureStacks: true})
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel lacks a feature the programs need: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := s.TraceProcess(uint32(os.Getpid()), TracedProcess{TargetId: 1}); err != nil {
		t.Fatal(err)
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
