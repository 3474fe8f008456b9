package outage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// Pipelines TestKillDuringOutage can run (OUTAGE_PIPELINE).
const (
	// pipelineDurable is the documented durable pipeline: no batch processor, each exporter
	// batches in its own persistent queue (sending_queue::batch), file_storage with fsync.
	pipelineDurable = "durable"
	// pipelineBatchProcessor is the configuration the README used to suggest: the batch
	// processor ahead of the persistent queues. It acknowledges spans to the sender before they
	// are on disk, so a SIGKILL loses what it holds: the test fails with it.
	pipelineBatchProcessor = "batch-processor"
)

// killParams are the knobs of one run; the defaults are the CI tier (about a minute),
// `make soak` sets larger ones through the environment.
type killParams struct {
	kills    int           // SIGKILLs of the collector (OUTAGE_KILLS)
	rate     int           // spans per second the sender offers (OUTAGE_RATE)
	perReq   int           // spans per OTLP request
	maxUp    time.Duration // the collector runs between 0.2 s and this long before a kill (OUTAGE_MAX_UP)
	drain    time.Duration // how long the SIEMs get to receive everything once they are back (OUTAGE_DRAIN)
	pipeline string        // OUTAGE_PIPELINE
	seed     uint64        // OUTAGE_SEED; 0 picks one from the clock (logged, to replay a run)
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

func loadKillParams(t *testing.T) killParams {
	p := killParams{
		kills:    envInt(t, "OUTAGE_KILLS", 20),
		rate:     envInt(t, "OUTAGE_RATE", 200),
		perReq:   10,
		maxUp:    envDuration(t, "OUTAGE_MAX_UP", 1500*time.Millisecond),
		drain:    envDuration(t, "OUTAGE_DRAIN", 90*time.Second),
		pipeline: os.Getenv("OUTAGE_PIPELINE"),
		seed:     uint64(envInt(t, "OUTAGE_SEED", 0)),
	}
	if p.pipeline == "" {
		p.pipeline = pipelineDurable
	}
	if p.pipeline != pipelineDurable && p.pipeline != pipelineBatchProcessor {
		t.Fatalf("OUTAGE_PIPELINE=%q: want %q or %q", p.pipeline, pipelineDurable, pipelineBatchProcessor)
	}
	if p.rate < p.perReq {
		p.rate = p.perReq
	}
	if p.seed == 0 {
		p.seed = uint64(time.Now().UnixNano())
	}
	return p
}

// killConfig is the collector configuration under test: one OTLP receiver, the persistent
// queues of four exporters (Splunk HEC, Splunk HEC with indexer acknowledgement, Sentinel, the
// evidence archive) on one file_storage.
func killConfig(p killParams, dir string, otlpPort int, hecURL, hecAckURL, azureURL, keyFile string) string {
	queue := `    sending_queue:
      storage: file_storage
      batch:
        flush_timeout: 200ms
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 1s
      max_elapsed_time: 0`
	processors, pipelineProcessors := "", ""
	if p.pipeline == pipelineBatchProcessor {
		queue = `    sending_queue:
      storage: file_storage
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 1s
      max_elapsed_time: 0`
		processors = "processors:\n  batch:\n    timeout: 200ms\n"
		pipelineProcessors = "      processors: [batch]\n"
	}
	return fmt.Sprintf(`extensions:
  file_storage:
    directory: %[1]s/queue
    create_directory: true
    fsync: true
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%[2]d
%[8]sexporters:
  splunk_hec:
    endpoint: %[3]s
    token: test-token
%[7]s
  splunk_hec/ack:
    endpoint: %[4]s
    token: test-token
    ack:
      enabled: true
      poll_interval: 100ms
      timeout: 2s
%[7]s
  sentinel:
    endpoint: %[5]s
    dcr_immutable_id: %[9]s
    auth:
      type: client_secret
      tenant_id: %[10]s
      client_id: %[11]s
      client_secret: %[12]s
      authority_host: %[5]s/
%[7]s
  evidence:
    directory: %[1]s/evidence
    signing_key_file: %[6]s
    fsync: true
%[7]s
%[14]s%[13]s      exporters: [splunk_hec, splunk_hec/ack, sentinel, evidence]
`, dir, otlpPort, hecURL, hecAckURL, azureURL, keyFile, queue, processors, dcr, tenant, client, secret, pipelineProcessors, agentService)
}

// spanID numbers the spans of a run: 8 bytes, big-endian, high byte 0xa.
func spanID(n int) pcommon.SpanID {
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], uint64(n)|0x0a<<56)
	return id
}

func spanNumber(hexID string) (int, bool) {
	b, err := hex.DecodeString(hexID)
	if err != nil || len(b) != 8 || b[0] != 0x0a {
		return 0, false
	}
	return int(binary.BigEndian.Uint64(b) &^ (0xff << 56)), true
}

// ackLog records, per span number, when the collector acknowledged it to the sender.
type ackLog struct {
	mu    sync.Mutex
	acked map[int]time.Time
	sent  int // spans offered, acknowledged or not
}

func (a *ackLog) add(first, n int, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := first; i < first+n; i++ {
		if _, ok := a.acked[i]; !ok {
			a.acked[i] = at
		}
	}
}

func (a *ackLog) snapshot() map[int]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[int]time.Time, len(a.acked))
	for k, v := range a.acked {
		out[k] = v
	}
	return out
}

// sendLoop offers p.perReq numbered spans per request at p.rate spans per second until stop is
// closed. A request that fails (the collector is down or restarting) is offered again, as an
// OTLP exporter with retries would; only an HTTP 200 counts as acknowledged.
func sendLoop(p killParams, port int, log *ackLog, stop <-chan struct{}) {
	client := &http.Client{Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/traces", port)
	interval := time.Second * time.Duration(p.perReq) / time.Duration(p.rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	next := 0
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "outage-kill-test")
		ss := rs.ScopeSpans().AppendEmpty()
		var trace [16]byte
		binary.BigEndian.PutUint64(trace[8:], uint64(next/p.perReq)+1)
		now := time.Now()
		for i := next; i < next+p.perReq; i++ {
			s := ss.Spans().AppendEmpty()
			s.SetTraceID(trace)
			s.SetSpanID(spanID(i))
			s.SetName("span-" + strconv.Itoa(i))
			s.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
			s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
		}
		body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		if err != nil {
			panic(err) // a fixed, valid request: cannot fail
		}
		resp, err := client.Post(url, "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			log.add(next, p.perReq, time.Now())
			next += p.perReq
			log.mu.Lock()
			log.sent = next
			log.mu.Unlock()
		}
	}
}

// killCollector is the collector process of one life: started, SIGKILLed, started again.
type killCollector struct {
	bin, cfg, caFile, log string
	proc                  *harness.Proc
}

func (k *killCollector) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(k.bin, "--config="+k.cfg)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+k.caFile)
	k.proc = harness.MustStart(t, cmd, k.log)
}

func (k *killCollector) kill() {
	if k.proc != nil {
		k.proc.Signal(syscall.SIGKILL, 10*time.Second)
	}
}

func (k *killCollector) stop() {
	if k.proc != nil {
		k.proc.Stop(20 * time.Second)
	}
}

// waitPort waits until the collector's OTLP port accepts connections (or it exited).
func (k *killCollector) waitPort(port int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-k.proc.Done():
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// evidenceSpans counts the spans in the evidence archive's story records by span number.
func evidenceSpans(t *testing.T, dir string) map[int]int {
	t.Helper()
	out := map[int]int{}
	files, err := filepath.Glob(filepath.Join(dir, archive.SegmentsDir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var um ptrace.JSONUnmarshaler
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		for sc.Scan() {
			rec, err := archive.ParseLine(sc.Bytes())
			if err != nil || rec.Kind != archive.KindStory {
				continue // a partial last line, the segment-open record
			}
			td, err := um.UnmarshalTraces(rec.Payload)
			if err != nil {
				t.Fatalf("%s seq %d: story payload: %v", f, rec.Seq, err)
			}
			forEachSpanID(td, func(id string) {
				if n, ok := spanNumber(id); ok {
					out[n]++
				}
			})
		}
		fh.Close()
	}
	return out
}

func forEachSpanID(td ptrace.Traces, f func(string)) {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		sss := td.ResourceSpans().At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				f(spans.At(k).SpanID().String())
			}
		}
	}
}

func byNumber(ids map[string]int) map[int]int {
	out := make(map[int]int, len(ids))
	for id, n := range ids {
		if num, ok := spanNumber(id); ok {
			out[num] += n
		}
	}
	return out
}

// delivery compares what one destination received with what the collector acknowledged.
type delivery struct {
	name             string
	lost             []int // acknowledged, never received
	unique, received int   // distinct acknowledged spans received; events in all (duplicates included)
}

func (d delivery) duplicates() int { return d.received - d.unique }

func compare(name string, acked map[int]time.Time, got map[int]int) delivery {
	d := delivery{name: name}
	for n := range acked {
		if c := got[n]; c > 0 {
			d.unique++
			d.received += c
		} else {
			d.lost = append(d.lost, n)
		}
	}
	sort.Ints(d.lost)
	return d
}

// TestKillDuringOutage: numbered spans go over OTLP at a steady rate into the collector while
// the SIEMs are down more often than up; the collector is SIGKILLed at random points and
// started again, p.kills times; then the SIEMs come back for good. Every span the collector
// acknowledged to the sender must reach Splunk HEC (with and without indexer acknowledgement,
// the latter losing one request's acks), Sentinel and the evidence archive (which must
// verify). Duplicates are expected (at-least-once) and reported.
func TestKillDuringOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the collector 20 times")
	}
	p := loadKillParams(t)
	bin := harness.Collector(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(p.seed, 0x5eed))
	t.Logf("pipeline %s, %d kills, %d spans/s, seed %d (OUTAGE_SEED replays the kill and outage schedule)", p.pipeline, p.kills, p.rate, p.seed)

	hec := siem.StartHEC("test-token")
	defer hec.Close()
	hecAck := siem.StartHEC("test-token")
	defer hecAck.Close()
	hecAck.EnableAck()
	hecAck.LoseAcks(1)
	azure := siem.StartAzure(tenant, client, secret, dcr)
	defer azure.Close()
	caFile := filepath.Join(dir, "azure-ca.pem")
	if err := azure.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	setDown := func(down bool) {
		hec.SetDown(down)
		hecAck.SetDown(down)
		azure.SetDown(down)
	}
	setDown(true)

	keyFile := filepath.Join(dir, "evidence.key")
	if _, err := archive.GenerateSigningKey(keyFile); err != nil {
		t.Fatal(err)
	}
	otlpPort := testutil.FreePort(t)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(killConfig(p, dir, otlpPort, hec.URL(), hecAck.URL(), azure.URL(), keyFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "collector.log")
	col := &killCollector{bin: bin, cfg: cfg, caFile: caFile, log: logPath}
	defer col.stop()
	fail := func(format string, args ...any) {
		t.Helper()
		logText, _ := os.ReadFile(logPath)
		t.Fatalf(format+"\ncollector log (tail):\n%s", append(args, harness.LastLines(string(logText), 40))...)
	}

	log := &ackLog{acked: map[int]time.Time{}}
	stopSend := make(chan struct{})
	var sendWG sync.WaitGroup
	sendWG.Add(1)
	go func() { defer sendWG.Done(); sendLoop(p, otlpPort, log, stopSend) }()

	var kills []time.Time
	col.start(t)
	for k := 0; k < p.kills; k++ {
		if !col.waitPort(otlpPort, 30*time.Second) {
			fail("the collector did not come up (start %d)", k+1)
		}
		// The SIEMs are down 60% of the time, so that a kill finds requests queued, in
		// the exporters' batches, in retry backoff and in flight.
		up := time.Duration(200+rng.Int64N(int64(p.maxUp/time.Millisecond)-200+1)) * time.Millisecond
		for elapsed := time.Duration(0); elapsed < up; {
			step := min(up-elapsed, time.Duration(100+rng.Int64N(400))*time.Millisecond)
			setDown(rng.IntN(10) < 6)
			time.Sleep(step)
			elapsed += step
		}
		col.kill()
		kills = append(kills, time.Now())
		col.start(t)
	}
	if !col.waitPort(otlpPort, 30*time.Second) {
		fail("the collector did not come up after the last kill")
	}
	time.Sleep(500 * time.Millisecond) // let the sender get a few requests into this life too
	close(stopSend)
	sendWG.Wait()
	setDown(false)
	acked := log.snapshot()
	if len(acked) == 0 {
		fail("the collector acknowledged no span")
	}

	// Wait until the SIEMs have every acknowledged span (or the drain time is up).
	deadline := time.Now().Add(p.drain)
	var res []delivery
	for {
		res = []delivery{
			compare("splunk_hec", acked, byNumber(hec.SpanIDs())),
			compare("splunk_hec/ack", acked, byNumber(hecAck.SpanIDs())),
			compare("sentinel", acked, sentinelSpans(azure)),
		}
		complete := true
		for _, d := range res {
			complete = complete && len(d.lost) == 0
		}
		if complete || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The archive is read once the collector has stopped: its queue drains into it by then.
	evDeadline := time.Now().Add(max(time.Until(deadline), 15*time.Second))
	for time.Now().Before(evDeadline) && len(compare("evidence", acked, evidenceSpans(t, filepath.Join(dir, "evidence"))).lost) > 0 {
		time.Sleep(250 * time.Millisecond)
	}
	col.stop()
	res = append(res, compare("evidence", acked, evidenceSpans(t, filepath.Join(dir, "evidence"))))
	rep, err := archive.VerifyDir(filepath.Join(dir, "evidence"), archive.VerifyOptions{})
	if err != nil {
		fail("the evidence archive does not verify after %d kills: %v", len(kills), err)
	}

	t.Logf("%d spans acknowledged of %d offered; %d kills; evidence archive verified (%d records)", len(acked), log.sent, len(kills), rep.Records)
	lost := false
	for _, d := range res {
		t.Logf("%-15s received %d of %d acknowledged spans, %d lost, %d duplicates (%d events)",
			d.name, d.unique, len(acked), len(d.lost), d.duplicates(), d.received)
		if len(d.lost) > 0 {
			lost = true
			t.Errorf("%s: %d acknowledged spans lost: %s", d.name, len(d.lost), describeLost(d.lost, acked, kills))
		}
	}
	if n := hecAck.LostRequests(); n != 1 {
		t.Errorf("the acknowledging HEC lost %d requests, want 1 (the test did not exercise a lost ack)", n)
	}
	if lost {
		logText, _ := os.ReadFile(logPath)
		t.Logf("collector log (tail):\n%s", harness.LastLines(string(logText), 40))
	}
}

func sentinelSpans(a *siem.Azure) map[int]int {
	out := map[int]int{}
	for _, r := range a.Rows("Custom-AgentTrailSpans_CL") {
		if id, ok := r["SpanId"].(string); ok {
			if n, ok := spanNumber(id); ok {
				out[n]++
			}
		}
	}
	return out
}

// describeLost says, for the first lost spans, when they were acknowledged relative to the
// next kill: the window in which the pipeline held acknowledged data only in memory.
func describeLost(lost []int, acked map[int]time.Time, kills []time.Time) string {
	var b strings.Builder
	for i, n := range lost {
		if i == 8 {
			fmt.Fprintf(&b, " ... (%d more)", len(lost)-i)
			break
		}
		at := acked[n]
		rel := "after the last kill"
		for k, kt := range kills {
			if kt.After(at) {
				rel = fmt.Sprintf("%s before kill %d", kt.Sub(at).Round(time.Millisecond), k+1)
				break
			}
		}
		fmt.Fprintf(&b, "span %d (acknowledged %s)", n, rel)
		if i < len(lost)-1 {
			b.WriteString("; ")
		}
	}
	return b.String()
}
