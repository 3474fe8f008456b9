package evidenceexporter

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/internal/metadata"
)

// smallFS mounts a tmpfs of size bytes on a fresh directory, unmounted at the end of the test.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small file system to fill needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file until the file system is full, then gives back leave bytes, and
// returns the file's path.
func fillDisk(t *testing.T, dir string, leave int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			if leave > 0 {
				fi, err := f.Stat()
				if err != nil {
					t.Fatal(err)
				}
				if err := f.Truncate(fi.Size() - leave); err != nil {
					t.Fatal(err)
				}
			}
			return p
		}
	}
}

func storyBatch(i int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "agent")
	span := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	span.SetTraceID(pcommon.TraceID{0xd1, byte(i >> 8), byte(i), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
	span.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, byte(i)})
	span.SetName("execute_tool")
	// Large enough that a few batches fill a segment and sealing also meets the full disk.
	span.Attributes().PutStr("pad", strings.Repeat("x", 8<<10))
	return td
}

// TestDiskFull fills the archive's file system while stories arrive: the writes fail with
// ENOSPC, which is retried through the queue (not dropped as permanent), the chain stays
// valid meanwhile, and once space returns every story lands, with a valid chain. With some
// room left, a batch is cut short mid-record and a segment is due to be sealed when the disk
// fills.
func TestDiskFull(t *testing.T) {
	for _, leave := range []int64{0, 20 << 10} {
		t.Run(fmt.Sprintf("%d bytes left", leave), func(t *testing.T) { testDiskFull(t, leave) })
	}
}

func testDiskFull(t *testing.T, leave int64) {
	mnt := smallFS(t, "2m")
	cfg := testConfig(t)
	cfg.Directory = filepath.Join(mnt, "evidence")
	cfg.SegmentMaxBytes = 32 << 10
	cfg.QueueConfig = configoptional.Some(exporterhelper.NewDefaultQueueConfig())
	cfg.RetryConfig.Enabled = true
	cfg.RetryConfig.InitialInterval = 20 * time.Millisecond
	cfg.RetryConfig.MaxInterval = 100 * time.Millisecond
	cfg.RetryConfig.RandomizationFactor = 0
	cfg.RetryConfig.MaxElapsedTime = 0 // retry until the disk has room again

	core, logs := observer.New(zapcore.InfoLevel)
	set := exportertest.NewNopSettings(metadata.Type)
	set.Logger = zap.New(core)
	te, err := NewFactory().CreateTraces(context.Background(), set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := te.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	shutdown := func() {
		if err := te.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}
	defer func() { shutdown() }()

	const before, during = 3, 20
	for i := 0; i < before; i++ {
		if err := te.ConsumeTraces(ctx, storyBatch(i)); err != nil {
			t.Fatal(err)
		}
	}
	key, err := archive.LoadSigningKey(cfg.SigningKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	stories := func() (int, archive.Report) {
		rep, err := archive.VerifyDir(cfg.Directory, archive.VerifyOptions{PublicKey: pub})
		if err != nil {
			t.Fatalf("the chain broke: %v", err)
		}
		n := 0
		for _, seg := range segmentFiles(t, cfg.Directory) {
			data, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			n += strings.Count(string(data), `"kind":"story"`)
		}
		return n, rep
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the first stories", func() bool { n, _ := stories(); return n == before })

	filler := fillDisk(t, mnt, leave)
	for i := before; i < before+during; i++ {
		if err := te.ConsumeTraces(ctx, storyBatch(i)); err != nil {
			t.Fatalf("enqueue %d: %v", i, err)
		}
	}
	retried := func() int {
		n := 0
		for _, e := range logs.FilterMessage("Exporting failed. Will retry the request after interval.").All() {
			if err, ok := e.ContextMap()["error"].(string); ok && strings.Contains(err, "no space left on device") {
				n++
			}
		}
		return n
	}
	waitFor("retries of ENOSPC", func() bool { return retried() >= 3 })
	if n := logs.FilterMessageSnippet("Dropping data").Len(); n != 0 {
		t.Fatalf("a full disk dropped data: %v", logs.FilterMessageSnippet("Dropping data").All())
	}
	n, rep := stories()
	t.Logf("disk full: %d stories in the archive (last seq %d), %d retries so far", n, rep.LastSeq, retried())
	if n >= before+during {
		t.Fatalf("all %d stories written to a full disk", n)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor("every story after space returned", func() bool { n, _ := stories(); return n == before+during })
	shutdown()
	shutdown = func() {}
	n, rep = stories()
	if n != before+during || rep.OpenSegment != "" || rep.PartialTail != nil {
		t.Fatalf("after space returned and shutdown: %d stories, %+v", n, rep)
	}
	if logs.FilterMessageSnippet("Dropping data").Len() != 0 {
		t.Fatalf("data dropped: %v", logs.FilterMessageSnippet("Dropping data").All())
	}
	t.Logf("%d retries; %d stories in %d segments, last seq %d", retried(), n, rep.Segments, rep.LastSeq)
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, archive.SegmentsDir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
