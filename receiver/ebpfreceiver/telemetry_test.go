package ebpfreceiver

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/symbolize"
)

// TestObserveSymbolizer: a traced process's maps file cut at the symbolizer's bound shows in
// agenttrail.ebpf.symbolize.unreadable{reason=maps_truncated}.
func TestObserveSymbolizer(t *testing.T) {
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "4242"), 0o755); err != nil {
		t.Fatal(err)
	}
	// 70,000 mappings: more lines than the symbolizer parses (65,536).
	var b strings.Builder
	for i := range 70000 {
		fmt.Fprintf(&b, "%08x-%08x r-xp 00000000 08:01 %d /usr/lib/lib%d.so\n", 0x10000+i*0x2000, 0x11000+i*0x2000, i, i)
	}
	if err := os.WriteFile(filepath.Join(proc, "4242", "maps"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	tm, err := newTelemetry(tel.NewTelemetrySettings())
	if err != nil {
		t.Fatal(err)
	}
	s := symbolize.New(symbolize.Options{ProcRoot: proc})
	defer s.Close()
	tm.observeSymbolizer(s)
	_ = s.Prepare(4242)
	m, err := tel.GetMetric("agenttrail.ebpf.symbolize.unreadable")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		r, _ := dp.Attributes.Value("reason")
		got[r.AsString()] = dp.Value
	}
	if got["maps_truncated"] != 1 || got["binary_malformed"] != 0 {
		t.Errorf("symbolize.unreadable %v, want maps_truncated=1 binary_malformed=0", got)
	}
}

// TestRecordBuilderWouldBlock: would-block accepts the builder skipped reach
// agenttrail.ebpf.syscalls.skipped{syscall="accept",reason="would_block"} as their growth.
func TestRecordBuilderWouldBlock(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	tm, err := newTelemetry(tel.NewTelemetrySettings())
	if err != nil {
		t.Fatal(err)
	}
	tm.recordBuilder(t.Context(), spans.Counters{}, spans.Counters{WouldBlockAccepts: 3})
	tm.recordBuilder(t.Context(), spans.Counters{WouldBlockAccepts: 3}, spans.Counters{WouldBlockAccepts: 7})
	m, err := tel.GetMetric("agenttrail.ebpf.syscalls.skipped")
	if err != nil {
		t.Fatal(err)
	}
	dps := m.Data.(metricdata.Sum[int64]).DataPoints
	if len(dps) != 1 || dps[0].Value != 7 {
		t.Fatalf("data points %+v, want one of 7", dps)
	}
	sc, _ := dps[0].Attributes.Value("syscall")
	reason, _ := dps[0].Attributes.Value("reason")
	if sc.AsString() != "accept" || reason.AsString() != "would_block" {
		t.Errorf("attributes %v", dps[0].Attributes)
	}
}
