// Package outage checks, with the built collector, that spans survive a SIEM outage and a
// collector restart during it when the exporters use the persistent queue (file_storage).
package outage

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/internal/testutil"
	"github.com/agenttrail/agenttrail/tests/internal/harness"
	"github.com/agenttrail/agenttrail/tests/siem"
)

const (
	tenant = "00000000-0000-4000-8000-0000000007a6"
	client = "11111111-1111-4111-8111-1111111107a6"
	secret = "outage-secret"
	dcr    = "dcr-0123456789abcdef0123456789abcdef"
)

// startCollector starts the collector (trusting the Azure stand-in's certificate), its log
// appended to log; it is stopped at the end of the test if it still runs.
func startCollector(t *testing.T, bin, cfg, log, caFile string) *harness.Proc {
	t.Helper()
	cmd := exec.Command(bin, "--config="+cfg)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+caFile)
	p := harness.MustStart(t, cmd, log)
	t.Cleanup(func() { p.Stop(20 * time.Second) })
	return p
}

// send posts n spans over OTLP/HTTP, retrying until the collector accepts them.
func send(t *testing.T, port, n int) {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "outage-test")
	ss := rs.ScopeSpans().AppendEmpty()
	trace := pcommon.TraceID([16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	now := time.Now()
	for i := 0; i < n; i++ {
		s := ss.Spans().AppendEmpty()
		s.SetTraceID(trace)
		s.SetSpanID(pcommon.SpanID([8]byte{0xa, byte(i >> 16), byte(i >> 8), byte(i), 1, 2, 3, 4}))
		s.SetName(fmt.Sprintf("span-%d", i))
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	}
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/traces", port), "application/x-protobuf", bytes.NewReader(body))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector did not accept spans: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSIEMOutageAndRestart: the HEC and Sentinel endpoints are down, spans are accepted into
// the persistent queue, the collector is restarted during the outage, the endpoints come back:
// every span arrives at both (at least once), and the evidence archive (also queued) verifies.
func TestSIEMOutageAndRestart(t *testing.T) {
	bin := harness.Collector(t)
	dir := t.TempDir()
	otlpPort, hecPort, azurePort := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)
	// The Azure stand-in's certificate is fixed: write it now for SSL_CERT_FILE, from a
	// throwaway instance, before the real one comes up late.
	caFile := filepath.Join(dir, "azure-ca.pem")
	tmp := siem.StartAzure(tenant, client, secret, dcr)
	if err := tmp.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	keyFile := filepath.Join(dir, "evidence.key")
	if _, err := archive.GenerateSigningKey(keyFile); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	conf := fmt.Sprintf(`extensions:
  file_storage:
    directory: %[1]s/queue
    create_directory: true
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%[2]d
exporters:
  splunk_hec:
    endpoint: http://127.0.0.1:%[3]d/services/collector
    token: test-token
    sending_queue:
      storage: file_storage
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
      max_elapsed_time: 0
  sentinel:
    endpoint: https://127.0.0.1:%[5]d
    dcr_immutable_id: %[6]s
    auth:
      type: client_secret
      tenant_id: %[7]s
      client_id: %[8]s
      client_secret: %[9]s
      authority_host: https://127.0.0.1:%[5]d/
    sending_queue:
      storage: file_storage
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
      max_elapsed_time: 0
  evidence:
    directory: %[1]s/evidence
    signing_key_file: %[4]s
    fsync: false
    sending_queue:
      storage: file_storage
service:
  extensions: [file_storage]
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [splunk_hec, sentinel, evidence]
`, dir, otlpPort, hecPort, keyFile, azurePort, dcr, tenant, client, secret)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "collector.log")
	const n = 300

	first := startCollector(t, bin, cfg, log, caFile)
	send(t, otlpPort, n)
	time.Sleep(time.Second) // a few failed attempts against the dead endpoint
	first.Stop(20 * time.Second)
	// The shutdown interrupted the retries of requests the persistent queues keep: the lines
	// say so, and none says "Dropping data" (exporterkit.Drops.HelperLogger).
	firstLog, _ := os.ReadFile(log)
	if strings.Contains(string(firstLog), "Dropping data") {
		t.Errorf("a SIGTERM with persistent queues logged \"Dropping data\":\n%s", harness.LastLines(string(firstLog), 20))
	}
	for _, line := range strings.Split(string(firstLog), "\n") {
		if strings.Contains(line, "kept in the persistent queue") || strings.Contains(line, "Drop summary") {
			t.Logf("shutdown: %s", line)
		}
	}
	for _, id := range []string{"splunk_hec", "sentinel"} {
		if !strings.Contains(string(firstLog), "kept in the persistent queue") || !strings.Contains(string(firstLog), "Drop summary of exporter "+id) {
			t.Errorf("no \"kept in the persistent queue\" line or shutdown summary of %s after a SIGTERM during the outage:\n%s", id, harness.LastLines(string(firstLog), 20))
		}
	}

	second := startCollector(t, bin, cfg, log, caFile)
	defer second.Stop(20 * time.Second)
	time.Sleep(time.Second)
	hec, err := siem.StartHECAt(fmt.Sprintf("127.0.0.1:%d", hecPort), "test-token")
	if err != nil {
		t.Fatal(err)
	}
	defer hec.Close()
	azure, err := siem.StartAzureAt(fmt.Sprintf("127.0.0.1:%d", azurePort), tenant, client, secret, dcr)
	if err != nil {
		t.Fatal(err)
	}
	defer azure.Close()

	deadline := time.Now().Add(60 * time.Second)
	for {
		ids := hec.SpanIDs()
		unique, total := len(ids), 0
		for _, c := range ids {
			total += c
		}
		rows := map[string]bool{}
		for _, r := range azure.Rows("Custom-AgentTrailSpans_CL") {
			rows[fmt.Sprint(r["SpanId"])] = true
		}
		if unique == n && len(rows) == n {
			t.Logf("HEC received %d spans (%d events with retried duplicates); Sentinel %d", unique, total, len(rows))
			break
		}
		if time.Now().After(deadline) {
			logText, _ := os.ReadFile(log)
			t.Fatalf("after the outage HEC received %d and Sentinel %d of %d spans; collector log:\n%s", unique, len(rows), n, harness.LastLines(string(logText), 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	second.Stop(20 * time.Second)
	rep, err := archive.VerifyDir(filepath.Join(dir, "evidence"), archive.VerifyOptions{})
	if err != nil {
		t.Fatalf("evidence archive does not verify: %v", err)
	}
	if rep.Records == 0 {
		t.Fatalf("evidence archive is empty: %+v", rep)
	}

}
