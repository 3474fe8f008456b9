package syscalls

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

const clientsCSV = "id,name,card,ssn\nC1001,Jane Roe,4111 1111 1111 1111,123-45-6789\nC1002,John Doe,5500-0000-0000-0004,219-09-9999\n"

// contentRig is the syscalls tracer with content sampling over this test process's own /proc:
// the "traced process" is the test, which opens the files itself, so no root is needed.
type contentRig struct {
	t      *testing.T
	tr     *Tracer
	b      *spans.Builder
	reader *sdkmetric.ManualReader
	pid    uint32
	tid    uint32
	now    time.Time
}

func newContentRig(t *testing.T, cfg ContentConfig) *contentRig {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	b := spans.NewBuilder(spans.Options{MaxOpenSpans: 100})
	pid := uint32(os.Getpid())
	b.AddProcess(spans.Process{PID: pid, Target: "agent"})
	env := tracer.Env{Redactor: redact.New(), Builder: b, ProcRoot: "/proc", Telemetry: &tracer.Telemetry{Meter: mp.Meter("test")}}
	tr, err := New(env, []string{"openat"}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &contentRig{t: t, tr: tr, b: b, reader: reader, pid: pid, tid: uint32(unix.Gettid()), now: time.Unix(1700000000, 0)}
	tr.content.now = func() time.Time { return r.now }
	return r
}

// open runs one openat of path through the tracer: the entry record, then the exit with ret
// (the descriptor the test opened, or an error). It returns the detectors the span carries.
func (r *contentRig) open(path string, flags uint64, ret int64) []string {
	r.t.Helper()
	var e probes.SyscallEvent
	e.Hdr.ProbeId = 257
	e.Flags = flags
	e.PathLen = uint32(copy(e.Path[:], path))
	rec := make([]byte, sizeSyscall)
	*tracer.As[probes.SyscallEvent](rec) = e
	hdr := spans.Header{PID: r.pid, TID: r.tid, Time: r.now}
	if got := r.tr.onEnter(hdr, rec); got != "" {
		r.t.Fatalf("enter dropped: %s", got)
	}
	exit := make([]byte, sizeSyscallExit)
	tracer.As[probes.SyscallExitEvent](exit).Ret = ret
	r.tr.onExit(hdr, exit)
	td := r.b.Flush()
	var got []string
	for i := range td.ResourceSpans().Len() {
		ss := td.ResourceSpans().At(i).ScopeSpans()
		for j := range ss.Len() {
			sp := ss.At(j).Spans()
			for k := range sp.Len() {
				got = append(got, detectors(sp.At(k))...)
			}
		}
	}
	return got
}

func detectors(s ptrace.Span) []string {
	v, ok := s.Attributes().Get(spans.AttrSensitiveContent)
	if !ok {
		return nil
	}
	var out []string
	for i := range v.Slice().Len() {
		out = append(out, v.Slice().At(i).Str())
	}
	return out
}

// counts reads the content counters: "sampled/<result>" and "skipped/<reason>".
func (r *contentRig) counts() map[string]int64 {
	r.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		r.t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				for _, kv := range dp.Attributes.ToSlice() {
					out[filepath.Ext(m.Name)[1:]+"/"+kv.Value.AsString()] += dp.Value
				}
			}
		}
	}
	return out
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func openFD(t *testing.T, p string, flags int) int64 {
	t.Helper()
	fd, err := unix.Open(p, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	return int64(fd)
}

// TestContentSampling: a CSV of cards and SSNs under an innocuous name is named sensitive by
// content; reading it again is answered from the cache; a clean file, a write-only open, a failed
// open, an empty file and a FIFO are not; the process's and the global budgets are applied.
func TestContentSampling(t *testing.T) {
	r := newContentRig(t, ContentConfig{Enabled: true, MaxBytes: 8192, MaxFilesPerMinute: 8})
	clients := writeFile(t, "report.txt", clientsCSV)
	want := []string{redact.DetectCard, redact.DetectSSN}
	if got := r.open(clients, unix.O_RDONLY, openFD(t, clients, unix.O_RDONLY)); !slices.Equal(got, want) {
		t.Fatalf("clients: %q, want %q", got, want)
	}
	if got := r.open(clients, unix.O_RDONLY, openFD(t, clients, unix.O_RDONLY)); !slices.Equal(got, want) {
		t.Errorf("clients again: %q, want %q", got, want)
	}
	clean := writeFile(t, "notes.txt", "nothing to see here, password=hunter2, mail root@example.com\n")
	if got := r.open(clean, unix.O_RDONLY, openFD(t, clean, unix.O_RDONLY)); got != nil {
		t.Errorf("clean: %q", got)
	}
	if got := r.open(clients, unix.O_WRONLY|unix.O_APPEND, openFD(t, clients, unix.O_WRONLY|unix.O_APPEND)); got != nil {
		t.Errorf("write-only: %q", got)
	}
	if got := r.open(clients, unix.O_RDONLY, -int64(unix.ENOENT)); got != nil {
		t.Errorf("failed open: %q", got)
	}
	empty := writeFile(t, "empty.csv", "")
	r.open(empty, unix.O_RDONLY, openFD(t, empty, unix.O_RDONLY))
	fifo := filepath.Join(t.TempDir(), "pipe")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Opened non-blocking by the "process"; the sampler must not open it for reading at all.
	r.open(fifo, unix.O_RDONLY|unix.O_NONBLOCK, openFD(t, fifo, unix.O_RDONLY|unix.O_NONBLOCK))

	// The process's budget is a quarter of 8: clients and notes took both.
	other := writeFile(t, "other.csv", clientsCSV+"x")
	if got := r.open(other, unix.O_RDONLY, openFD(t, other, unix.O_RDONLY)); got != nil {
		t.Errorf("over the process budget: %q", got)
	}
	r.now = r.now.Add(time.Minute)
	if got := r.open(other, unix.O_RDONLY, openFD(t, other, unix.O_RDONLY)); !slices.Equal(got, want) {
		t.Errorf("next minute: %q, want %q", got, want)
	}
	wantCounts := map[string]int64{
		"sampled/sensitive": 2, "sampled/cached": 1, "sampled/clean": 1,
		"skipped/empty": 1, "skipped/not_regular": 1, "skipped/process_limited": 1,
	}
	if got := r.counts(); !mapsEqual(got, wantCounts) {
		t.Errorf("counts %v, want %v", got, wantCounts)
	}
}

// TestContentSamplingGlobalBudget: other processes' files count against the global budget.
func TestContentSamplingGlobalBudget(t *testing.T) {
	r := newContentRig(t, ContentConfig{Enabled: true, MaxBytes: 64, MaxFilesPerMinute: 1})
	a, b := writeFile(t, "a", clientsCSV), writeFile(t, "b", clientsCSV+"\n")
	r.open(a, unix.O_RDONLY, openFD(t, a, unix.O_RDONLY))
	r.tr.content.perProc = map[uint32]int{} // as if b were opened by another process
	if got := r.open(b, unix.O_RDONLY, openFD(t, b, unix.O_RDONLY)); got != nil {
		t.Errorf("over the global budget: %q", got)
	}
	if got := r.counts()["skipped/rate_limited"]; got != 1 {
		t.Errorf("rate_limited %d", got)
	}
}

// TestContentSamplingClosedDescriptor: when the process closed its descriptor before the exit
// record is handled, an absolute path is opened again inside the process's root; a relative one
// is given up (the descriptor number may name another file by then).
func TestContentSamplingClosedDescriptor(t *testing.T) {
	r := newContentRig(t, DefaultContentConfig())
	clients := writeFile(t, "export.dat", clientsCSV)
	fd, err := unix.Open(clients, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if got := r.open(clients, unix.O_RDONLY, int64(fd)); !slices.Equal(got, []string{redact.DetectCard, redact.DetectSSN}) {
		t.Errorf("closed descriptor, absolute path: %q", got)
	}
	other := writeFile(t, "other.dat", clientsCSV+"\n")
	if got := r.open(filepath.Base(other), unix.O_RDONLY, int64(fd)); got != nil {
		t.Errorf("closed descriptor, relative path: %q", got)
	}
	// A descriptor reused for another file is not taken for the path's.
	decoy := writeFile(t, "decoy.txt", "clean\n")
	if got := r.open(filepath.Join(filepath.Dir(other), "gone.dat"), unix.O_RDONLY, openFD(t, decoy, unix.O_RDONLY)); got != nil {
		t.Errorf("reused descriptor: %q", got)
	}
	if got := r.counts()["skipped/gone"]; got != 2 {
		t.Errorf("gone %d, want 2", got)
	}
}

// TestContentSamplingBounded: only max_bytes are read, so data past them is not seen.
func TestContentSamplingBounded(t *testing.T) {
	r := newContentRig(t, ContentConfig{Enabled: true, MaxBytes: 1024, MaxFilesPerMinute: 60})
	late := writeFile(t, "late.csv", string(make([]byte, 2048))+clientsCSV)
	if got := r.open(late, unix.O_RDONLY, openFD(t, late, unix.O_RDONLY)); got != nil {
		t.Errorf("past max_bytes: %q", got)
	}
}

func TestContentConfigValidate(t *testing.T) {
	for _, c := range []ContentConfig{
		{Enabled: true, MaxBytes: 0, MaxFilesPerMinute: 1},
		{Enabled: true, MaxBytes: MaxContentBytes + 1, MaxFilesPerMinute: 1},
		{Enabled: true, MaxBytes: 1, MaxFilesPerMinute: 0},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (ContentConfig{}).Validate(); err != nil {
		t.Errorf("disabled: %v", err)
	}
	if err := DefaultContentConfig().Validate(); err != nil {
		t.Errorf("default: %v", err)
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
