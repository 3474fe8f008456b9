package ebpfreceiver

import (
	"os/exec"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// wakeups reads agenttrail.ebpf.reader.wakeups{wake}.
func wakeups(t *testing.T, tel *componenttest.Telemetry, wake string) int64 {
	t.Helper()
	m, err := tel.GetMetric("agenttrail.ebpf.reader.wakeups")
	if err != nil {
		return 0
	}
	var n int64
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		if v, _ := dp.Attributes.Value("wake"); v.AsString() == wake {
			n += dp.Value
		}
	}
	return n
}

// TestIdleChurnStaysIdle: processes that start and end on the node, none of them a target,
// wake an idle reader (an exec may be a target's) but do not make it poll the ring buffer at
// the flush interval afterwards: it waits idle again at once (idleAgain). Without, every wake
// with a record was followed by at least one read at the next flush interval.
func TestIdleChurnStaysIdle(t *testing.T) {
	requireKernel(t)
	cfg := testConfig(TargetConfig{Name: "absent", ProcessName: "agenttrail-no-such-process"})
	_, tel := startReceiverTelemetry(t, cfg)
	time.Sleep(time.Second) // start-up's reads
	idle0, interval0 := wakeups(t, tel, "idle"), wakeups(t, tel, "interval")
	for range 20 {
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * cfg.FlushInterval) // the reader idle again before the next
	}
	idle, interval := wakeups(t, tel, "idle")-idle0, wakeups(t, tel, "interval")-interval0
	t.Logf("20 execs (and the node's own): %d reads woken from idle, %d at the flush interval", idle, interval)
	if idle < 20 {
		t.Errorf("%d reads woken from idle for 20 execs", idle)
	}
	// Other processes on the node may be in flight at a wake (a lone read of more than
	// maxLoneRecords records): a few interval reads are theirs.
	if interval*4 > idle {
		t.Errorf("%d reads at the flush interval after %d idle wakes: the reader polls after lone records", interval, idle)
	}
}
