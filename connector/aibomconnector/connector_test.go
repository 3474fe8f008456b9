package aibomconnector

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/connector/aibomconnector/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/aibom/aibomtest"
)

func TestConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"": "", "tuned": "", "too_often": `"min_interval" must be at least 1s`,
		"no_workloads": `"max_workloads" must be between`, "huge_entries": `"max_entries" must be between`,
	} {
		id := component.NewID(metadata.Type)
		if name != "" {
			id = component.NewIDWithName(metadata.Type, name)
		}
		sub, err := cm.Sub(id.String())
		if err != nil {
			t.Fatal(err)
		}
		cfg := NewFactory().CreateDefaultConfig()
		if err := sub.Unmarshal(cfg); err != nil {
			t.Fatal(err)
		}
		err = confmap.Validate(cfg)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: Validate() = %v, want %q", id, err, want)
		}
	}
}

// stories are internal/aibom's fixture stories (a bank's Go, Python and Node agents).
func stories(t *testing.T) []ptrace.Traces {
	t.Helper()
	out := aibomtest.Stories(t, aibomtest.FixtureDir(t))
	if len(out) != 4 {
		t.Fatalf("%d fixture stories", len(out))
	}
	return out
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTest(t *testing.T, next *consumertest.LogsSink) (*aibomConnector, *clock) {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	c, err := newConnector(nopSettings(), cfg, next)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)}
	c.now = clk.now
	return c, clk
}

func records(sink *consumertest.LogsSink) []plog.LogRecord {
	var out []plog.LogRecord
	for _, ld := range sink.AllLogs() {
		for i := 0; i < ld.ResourceLogs().Len(); i++ {
			rl := ld.ResourceLogs().At(i)
			for j := 0; j < rl.ScopeLogs().Len(); j++ {
				for k := 0; k < rl.ScopeLogs().At(j).LogRecords().Len(); k++ {
					out = append(out, rl.ScopeLogs().At(j).LogRecords().At(k))
				}
			}
		}
	}
	return out
}

func attr(lr plog.LogRecord, k string) string {
	v, _ := lr.Attributes().Get(k)
	return v.AsString()
}

// TestRecordOnChange: a workload's first spans give a record with its BOM; the same spans again
// give none; a new tool within min_interval waits for it, and the next record has it; Shutdown
// sends what is still pending.
func TestRecordOnChange(t *testing.T) {
	sink := new(consumertest.LogsSink)
	c, clk := newTest(t, sink)
	ctx := context.Background()
	st := stories(t)
	if err := c.ConsumeTraces(ctx, st[0]); err != nil {
		t.Fatal(err)
	}
	got := records(sink)
	if len(got) != 1 {
		t.Fatalf("%d records after the first story", len(got))
	}
	first := got[0]
	if attr(first, "agenttrail.workload.key") != "customer-ai/customer-agent/agent" || first.EventName() != EventName ||
		!strings.HasPrefix(attr(first, "agenttrail.aibom.serial_number"), "urn:uuid:") {
		t.Errorf("record attributes %v", first.Attributes().AsRaw())
	}
	var b cdx.BOM
	if err := cdx.NewBOMDecoder(strings.NewReader(first.Body().Str()), cdx.BOMFileFormatJSON).Decode(&b); err != nil {
		t.Fatal(err)
	}
	if b.SpecVersion != cdx.SpecVersion1_6 || len(*b.Components) < 2 || b.Metadata.Timestamp != "2026-11-20T09:00:00Z" {
		t.Errorf("BOM %+v", b)
	}
	validate(t, first.Body().Str())

	// The same story again, later: nothing changed, no record.
	clk.t = clk.t.Add(2 * time.Minute)
	if err := c.ConsumeTraces(ctx, st[0]); err != nil {
		t.Fatal(err)
	}
	if n := len(records(sink)); n != 1 {
		t.Errorf("%d records after the same story again", n)
	}
	// A new tool and destination: sent now (the last record is older than min_interval).
	if err := c.ConsumeTraces(ctx, st[1]); err != nil {
		t.Fatal(err)
	}
	got = records(sink)
	if len(got) != 2 || !strings.Contains(got[1].Body().Str(), "customer-data-export") ||
		attr(got[1], "agenttrail.aibom.serial_number") == attr(first, "agenttrail.aibom.serial_number") {
		t.Fatalf("after a new tool: %d records", len(got))
	}
	// Another workload's first story goes out at once; the first workload's next change waits
	// for min_interval, then the tick sends it.
	if err := c.ConsumeTraces(ctx, st[2]); err != nil {
		t.Fatal(err)
	}
	if n := len(records(sink)); n != 3 {
		t.Fatalf("%d records after a new workload", n)
	}
	changed := ptrace.NewTraces()
	st[1].CopyTo(changed)
	sp := changed.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(2)
	sp.Attributes().PutStr("gen_ai.tool.name", "transfers-low-value")
	if err := c.ConsumeTraces(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if n := len(records(sink)); n != 3 {
		t.Fatalf("a change within min_interval was sent at once (%d records)", n)
	}
	clk.t = clk.t.Add(time.Minute)
	if err := c.flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	got = records(sink)
	if len(got) != 4 || !strings.Contains(got[3].Body().Str(), "transfers-low-value") {
		t.Fatalf("the held change: %d records", len(got))
	}
	// Shutdown sends what is pending, without waiting for min_interval.
	if err := c.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := c.ConsumeTraces(ctx, st[3]); err != nil { // a new workload: sent at once
		t.Fatal(err)
	}
	sp.Attributes().PutStr("gen_ai.tool.name", "accounts-close")
	if err := c.ConsumeTraces(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got = records(sink)
	if len(got) != 6 || !strings.Contains(got[5].Body().Str(), "accounts-close") {
		t.Fatalf("after shutdown: %d records", len(got))
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestDeliveryFailure: a refusing logs pipeline does not fail the traces; the record is sent
// again once min_interval has passed (not at every batch while the pipeline is down).
func TestDeliveryFailure(t *testing.T) {
	sink := new(consumertest.LogsSink)
	c, clk := newTest(t, sink)
	failing := true
	c.next = consumerFunc(func(ctx context.Context, ld plog.Logs) error {
		if failing {
			return errors.New("queue full")
		}
		return sink.ConsumeLogs(ctx, ld)
	})
	if err := c.ConsumeTraces(context.Background(), stories(t)[0]); err != nil {
		t.Fatalf("traces failed with the logs pipeline: %v", err)
	}
	failing = false
	clk.t = clk.t.Add(30 * time.Second)
	if err := c.flush(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if n := len(records(sink)); n != 0 {
		t.Errorf("a failed record was sent again within min_interval (%d)", n)
	}
	clk.t = clk.t.Add(30 * time.Second)
	if err := c.flush(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if n := len(records(sink)); n != 1 {
		t.Errorf("%d records after the pipeline recovered", n)
	}
}

func TestBounds(t *testing.T) {
	sink := new(consumertest.LogsSink)
	cfg := createDefaultConfig().(*Config)
	cfg.MaxWorkloads = 1
	c2, err := newConnector(nopSettings(), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	for _, td := range stories(t) {
		if err := c2.ConsumeTraces(context.Background(), td); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(records(sink)); n != 1 || c2.dropSeen["workloads_full"] != 2 {
		t.Errorf("%d records, dropped %v", n, c2.dropSeen)
	}
}

type consumerFunc func(context.Context, plog.Logs) error

func (f consumerFunc) ConsumeLogs(ctx context.Context, ld plog.Logs) error { return f(ctx, ld) }
func (consumerFunc) Capabilities() consumer.Capabilities                   { return consumer.Capabilities{} }

// validate runs the CycloneDX project's validator (installed for internal/aibom's tests) on a
// record's body, when node and the validator are there.
func validate(t *testing.T, body string) {
	t.Helper()
	node, err := exec.LookPath("node")
	dir, _ := filepath.Abs("../../internal/aibom/testdata/cyclonedx")
	if err != nil {
		t.Log("node is not installed: the record's BOM is not run through the CycloneDX validator")
		return
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@cyclonedx", "cyclonedx-library")); err != nil {
		t.Log("the CycloneDX validator is not installed (scripts/prereqs.sh test-packages, or internal/aibom's tests, install it)")
		return
	}
	f := filepath.Join(t.TempDir(), "record.cdx.json")
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, filepath.Join(dir, "validate.mjs"), f).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("valid CycloneDX 1.6")) {
		t.Errorf("the record's BOM does not validate: %v\n%s", err, out)
	}
}

func nopSettings() connector.Settings {
	return connector.Settings{ID: component.NewID(metadata.Type), TelemetrySettings: componenttest.NewNopTelemetrySettings(), BuildInfo: component.NewDefaultBuildInfo()}
}
