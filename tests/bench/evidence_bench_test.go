package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter"
	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
)

// benchStories is a batch of stories shaped like the bank demo's: a prompt span with its
// children (model calls, a tool, a connect with a call stack), one resource per process.
func benchStories(stories, spansPerStory int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	a := rs.Resource().Attributes()
	a.PutStr("service.name", "customer-agent")
	a.PutInt("process.pid", 4242)
	a.PutStr("process.executable.path", "/srv/agent/customer-agent")
	a.PutStr("process.command_line", "/srv/agent/customer-agent -listen 127.0.0.1:8080")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("github.com/agenttrail/agenttrail/receiver/ebpfreceiver")
	start := time.Date(2025, 11, 25, 12, 0, 0, 0, time.UTC)
	for s := 0; s < stories; s++ {
		var tid pcommon.TraceID
		binary.BigEndian.PutUint64(tid[8:], uint64(s+1))
		var root pcommon.SpanID
		for i := 0; i < spansPerStory; i++ {
			sp := ss.Spans().AppendEmpty()
			sp.SetTraceID(tid)
			var sid pcommon.SpanID
			binary.BigEndian.PutUint64(sid[:], uint64(s*spansPerStory+i+1))
			sp.SetSpanID(sid)
			t0 := start.Add(time.Duration(s)*time.Second + time.Duration(i)*time.Millisecond)
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(t0))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(t0.Add(5 * time.Millisecond)))
			attrs := sp.Attributes()
			switch {
			case i == 0:
				root = sid
				sp.SetName("invoke_agent customer-agent")
				attrs.PutStr("gen_ai.operation.name", "invoke_agent")
				attrs.PutStr("agenttrail.arg.prompt", "What is the balance summary for C1001? My card is [REDACTED:card].")
			case i%3 == 1:
				sp.SetName("chat model-x")
				attrs.PutStr("gen_ai.operation.name", "chat")
				attrs.PutStr("gen_ai.request.model", "model-x")
				attrs.PutInt("gen_ai.usage.input_tokens", 312)
			case i%3 == 2:
				sp.SetName("execute_tool accounts-summary")
				attrs.PutStr("gen_ai.tool.name", "accounts-summary")
				attrs.PutStr("agenttrail.arg.customerID", "C1001")
			default:
				sp.SetName("connect")
				sp.SetKind(ptrace.SpanKindClient)
				attrs.PutStr("network.peer.address", "127.0.0.1")
				attrs.PutInt("network.peer.port", 8443)
				attrs.PutStr("code.stacktrace", "net.(*sysDialer).doDialTCP\nnet/http.(*Transport).dialConn\nmain.(*ModelClient).Complete\nmain.(*Agent).HandlePrompt")
			}
			if i > 0 {
				sp.SetParentSpanID(root)
			}
			attrs.PutStr("code.function.name", "main.(*Agent).HandlePrompt")
			attrs.PutInt("thread.id", 4243)
		}
	}
	return td
}

// BenchmarkEvidenceExport exports batches of 100 stories × 8 spans through the evidence
// exporter component (no queue, no retry: each call returns when the batch is in the archive),
// with fsync after every batch (the default) and without. Reports spans/s.
func BenchmarkEvidenceExport(b *testing.B) {
	const stories, perStory = 100, 8
	for _, fsync := range []bool{true, false} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) {
			dir := b.TempDir()
			key := filepath.Join(dir, "evidence.key")
			if _, err := archive.GenerateSigningKey(key); err != nil {
				b.Fatal(err)
			}
			f := evidenceexporter.NewFactory()
			cfg := f.CreateDefaultConfig().(*evidenceexporter.Config)
			cfg.Directory = filepath.Join(dir, "evidence")
			cfg.SigningKeyFile = key
			cfg.Fsync = fsync
			cfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
			cfg.RetryConfig.Enabled = false
			ctx := context.Background()
			exp, err := f.CreateTraces(ctx, exportertest.NewNopSettings(f.Type()), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = exp.Shutdown(ctx) }()
			td := benchStories(stories, perStory)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := exp.ConsumeTraces(ctx, td); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(stories*perStory)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
		})
	}
}
