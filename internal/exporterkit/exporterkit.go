// Package exporterkit holds what this project's exporters (splunk_hec, sentinel, evidence) share
// on top of the collector's exporterhelper: the exporterhelper wiring (Helper, NewTraces,
// NewLogs), the drop accounting (Drops, CallDrops), the split of a batch the backend finds too
// large (Bisect), the selection of what a partial failure hands back (SelectSpans, SelectLogs)
// and the one-line quoting of a backend's answer (OneLine).
package exporterkit

import (
	"context"
	"sync"

	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// OnceTraces makes Shutdown idempotent: exporterhelper's retry sender (v0.165.0) panics when it
// is shut down twice, and a component's Shutdown must be safe to call again.
func OnceTraces(e exporter.Traces) exporter.Traces { return &onceTraces{Traces: e} }

// OnceLogs is OnceTraces for logs.
func OnceLogs(e exporter.Logs) exporter.Logs { return &onceLogs{Logs: e} }

type onceTraces struct {
	exporter.Traces
	once onceErr
}

func (e *onceTraces) Shutdown(ctx context.Context) error {
	return e.once.do(func() error { return e.Traces.Shutdown(ctx) })
}

type onceLogs struct {
	exporter.Logs
	once onceErr
}

func (e *onceLogs) Shutdown(ctx context.Context) error {
	return e.once.do(func() error { return e.Logs.Shutdown(ctx) })
}

type onceErr struct {
	once sync.Once
	err  error
}

func (o *onceErr) do(f func() error) error {
	o.once.Do(func() { o.err = f() })
	return o.err
}

// SelectSpans copies the spans whose position (depth-first order over resources, scopes and
// spans) satisfies keep, with their resource and scope: what a partial failure hands back to
// the queue for retry.
func SelectSpans(td ptrace.Traces, keep func(int) bool) ptrace.Traces {
	out := ptrace.NewTraces()
	idx := 0
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		var outRS ptrace.ResourceSpans
		hasRS := false
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			var outSS ptrace.ScopeSpans
			hasSS := false
			spans := ss.Spans()
			for k := 0; k < spans.Len(); k++ {
				if keep(idx) {
					if !hasRS {
						outRS = out.ResourceSpans().AppendEmpty()
						rs.Resource().CopyTo(outRS.Resource())
						outRS.SetSchemaUrl(rs.SchemaUrl())
						hasRS = true
					}
					if !hasSS {
						outSS = outRS.ScopeSpans().AppendEmpty()
						ss.Scope().CopyTo(outSS.Scope())
						outSS.SetSchemaUrl(ss.SchemaUrl())
						hasSS = true
					}
					spans.At(k).CopyTo(outSS.Spans().AppendEmpty())
				}
				idx++
			}
		}
	}
	return out
}

// SelectLogs is SelectSpans for log records.
func SelectLogs(ld plog.Logs, keep func(int) bool) plog.Logs {
	out := plog.NewLogs()
	idx := 0
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		rl := rls.At(i)
		var outRL plog.ResourceLogs
		hasRL := false
		sls := rl.ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			sl := sls.At(j)
			var outSL plog.ScopeLogs
			hasSL := false
			lrs := sl.LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				if keep(idx) {
					if !hasRL {
						outRL = out.ResourceLogs().AppendEmpty()
						rl.Resource().CopyTo(outRL.Resource())
						outRL.SetSchemaUrl(rl.SchemaUrl())
						hasRL = true
					}
					if !hasSL {
						outSL = outRL.ScopeLogs().AppendEmpty()
						sl.Scope().CopyTo(outSL.Scope())
						outSL.SetSchemaUrl(sl.SchemaUrl())
						hasSL = true
					}
					lrs.At(k).CopyTo(outSL.LogRecords().AppendEmpty())
				}
				idx++
			}
		}
	}
	return out
}
