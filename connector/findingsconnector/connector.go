package findingsconnector

import (
	"context"
	"encoding/json"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/connector/findingsconnector/internal/metadata"
)

// Names the attackstory processor uses (processor/attackstoryprocessor/attributes.go).
const (
	findingEventName      = "finding"
	attrFindingOCSF       = "agenttrail.finding.ocsf"
	attrFindingSeverityID = "agenttrail.finding.severity_id"
	// EventName is the event name of the log records.
	EventName = "agenttrail.finding"
)

type findingsConnector struct {
	component.StartFunc
	component.ShutdownFunc
	next   consumer.Logs
	logger *zap.Logger
}

func (*findingsConnector) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// ConsumeTraces emits one log record per finding span event; spans without findings produce
// nothing.
func (c *findingsConnector) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	ld := plog.NewLogs()
	observed := pcommon.NewTimestampFromTime(time.Now())
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		var records plog.LogRecordSlice
		started := false
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				span := spans.At(k)
				events := span.Events()
				for e := 0; e < events.Len(); e++ {
					ev := events.At(e)
					if ev.Name() != findingEventName {
						continue
					}
					ocsf, ok := ev.Attributes().Get(attrFindingOCSF)
					if !ok || ocsf.Str() == "" {
						c.logger.Debug("Finding event without OCSF JSON: skipped", zap.Stringer("trace_id", span.TraceID()), zap.Stringer("span_id", span.SpanID()))
						continue
					}
					if !started {
						rl := ld.ResourceLogs().AppendEmpty()
						rs.Resource().CopyTo(rl.Resource())
						rl.SetSchemaUrl(rs.SchemaUrl())
						sl := rl.ScopeLogs().AppendEmpty()
						sl.Scope().SetName(metadata.ScopeName)
						records = sl.LogRecords()
						started = true
					}
					writeRecord(records.AppendEmpty(), span, ev, ocsf.Str(), observed)
				}
			}
		}
	}
	if ld.LogRecordCount() == 0 {
		return nil
	}
	return c.next.ConsumeLogs(ctx, ld)
}

func writeRecord(lr plog.LogRecord, span ptrace.Span, ev ptrace.SpanEvent, ocsf string, observed pcommon.Timestamp) {
	lr.SetTimestamp(ev.Timestamp())
	lr.SetObservedTimestamp(observed)
	lr.SetTraceID(span.TraceID())
	lr.SetSpanID(span.SpanID())
	lr.SetEventName(EventName)
	lr.Body().SetStr(ocsf)
	sev := int64(-1)
	if v, ok := ev.Attributes().Get(attrFindingSeverityID); ok && v.Type() == pcommon.ValueTypeInt {
		sev = v.Int()
	} else {
		var head struct {
			SeverityID *int64 `json:"severity_id"`
		}
		if json.Unmarshal([]byte(ocsf), &head) == nil && head.SeverityID != nil {
			sev = *head.SeverityID
		}
	}
	number, text := severity(sev)
	lr.SetSeverityNumber(number)
	lr.SetSeverityText(text)
	attrs := lr.Attributes()
	attrs.EnsureCapacity(ev.Attributes().Len() + 2)
	attrs.PutStr("trace_id", span.TraceID().String())
	attrs.PutStr("span_id", span.SpanID().String())
	for k, v := range ev.Attributes().All() {
		if k != attrFindingOCSF {
			v.CopyTo(attrs.PutEmpty(k))
		}
	}
}

// severity maps an OCSF severity_id to a log severity (number, text: the OCSF caption).
func severity(id int64) (plog.SeverityNumber, string) {
	switch id {
	case 1:
		return plog.SeverityNumberInfo, "Informational"
	case 2:
		return plog.SeverityNumberWarn, "Low"
	case 3:
		return plog.SeverityNumberError, "Medium"
	case 4:
		return plog.SeverityNumberError3, "High"
	case 5:
		return plog.SeverityNumberFatal, "Critical"
	case 6:
		return plog.SeverityNumberFatal4, "Fatal"
	case 99:
		return plog.SeverityNumberUnspecified, "Other"
	}
	return plog.SeverityNumberUnspecified, "Unknown"
}
