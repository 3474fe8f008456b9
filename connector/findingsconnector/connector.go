package findingsconnector

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/connector/findingsconnector/internal/metadata"
)

// Names the attackstory processor uses (processor/attackstoryprocessor/attributes.go).
const (
	findingEventName      = "finding"
	attrFindingOCSF       = "agenttrail.finding.ocsf"
	attrFindingSeverityID = "agenttrail.finding.severity_id"
	attrFindingTier       = "agenttrail.finding.tier"
	attrFindingUID        = "agenttrail.finding.uid"
	// EventName is the event name of the log records.
	EventName = "agenttrail.finding"
)

// Reasons of agenttrail.findings.skipped.
const (
	reasonTierNotListed = "tier_not_listed"
	reasonNoOCSF        = "no_ocsf"
)

// Reasons of agenttrail.findings.dropped: the findings pipeline did not take the records.
const (
	// The error was permanent (the sink will never take them, e.g. a backend without logs).
	reasonPermanent = "permanent"
	// Any other error: the exporter's queue was full, or, without a queue, sending failed.
	reasonRefused = "refused"
)

// maxLoggedUIDs bounds the finding uids named in the log line of a drop: enough to find them
// on the spans, and a line of bounded size when a whole batch is refused.
const maxLoggedUIDs = 16

// Tier labels of agenttrail.findings.skipped beyond the tier names themselves: the attribute
// comes over the network, so a value the processor could not have written is "invalid", and
// tiers past the first maxTierLabels seen are "other" (a bound on the metric's series).
const (
	tierInvalid   = "invalid"
	tierOther     = "other"
	maxTierLabels = 16
)

type findingsConnector struct {
	component.StartFunc
	component.ShutdownFunc
	next    consumer.Logs
	logger  *zap.Logger
	tiers   map[string]bool // nil: every tier
	skipped metric.Int64Counter
	dropped metric.Int64Counter

	mu     sync.Mutex
	labels map[string]bool // tier labels used in skipped so far
}

func newFindingsConnector(set connector.Settings, cfg *Config, next consumer.Logs) (*findingsConnector, error) {
	skipped, err := set.MeterProvider.Meter(metadata.ScopeName).Int64Counter("agenttrail.findings.skipped",
		metric.WithDescription("Finding events not made into log records, by reason and tier."), metric.WithUnit("{finding}"))
	if err != nil {
		return nil, err
	}
	dropped, err := set.MeterProvider.Meter(metadata.ScopeName).Int64Counter("agenttrail.findings.dropped",
		metric.WithDescription("Finding log records the findings pipeline did not take, by reason."), metric.WithUnit("{finding}"))
	if err != nil {
		return nil, err
	}
	c := &findingsConnector{next: next, logger: set.Logger, skipped: skipped, dropped: dropped, labels: map[string]bool{}}
	if len(cfg.Tiers) > 0 {
		c.tiers = map[string]bool{}
		for _, t := range cfg.Tiers {
			c.tiers[t] = true
		}
	}
	return c, nil
}

// tierOf is the tier of a finding event: its attribute, "agent" without one, and ok false for
// a value that is no tier (not a string, or not what the processor's tier key accepts).
func tierOf(ev ptrace.SpanEvent) (tier string, ok bool) {
	v, found := ev.Attributes().Get(attrFindingTier)
	if !found {
		return defaultTier, true
	}
	if v.Type() != pcommon.ValueTypeStr || !tierPattern.MatchString(v.Str()) {
		return tierInvalid, false
	}
	return v.Str(), true
}

// skip counts a finding event that makes no record.
func (c *findingsConnector) skip(ctx context.Context, reason, tier string, valid bool) {
	label := tierInvalid
	if valid {
		label = tier
		c.mu.Lock()
		if !c.labels[tier] {
			if len(c.labels) < maxTierLabels {
				c.labels[tier] = true
			} else {
				label = tierOther
			}
		}
		c.mu.Unlock()
	}
	c.skipped.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason), attribute.String("tier", label)))
}

func (*findingsConnector) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// ConsumeTraces emits one log record per finding span event of a listed tier; spans without
// findings produce nothing. It returns no error of the findings pipeline: see drop.
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
					tier, valid := tierOf(ev)
					if c.tiers != nil && (!valid || !c.tiers[tier]) {
						// Another tier's finding, on the spans it sent here: that tier's own
						// connector made its record.
						c.skip(ctx, reasonTierNotListed, tier, valid)
						continue
					}
					ocsf, ok := ev.Attributes().Get(attrFindingOCSF)
					if !ok || ocsf.Str() == "" {
						c.logger.Debug("Finding event without OCSF JSON: skipped", zap.Stringer("trace_id", span.TraceID()), zap.Stringer("span_id", span.SpanID()))
						c.skip(ctx, reasonNoOCSF, tier, valid)
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
	if err := c.next.ConsumeLogs(ctx, ld); err != nil {
		c.drop(ctx, ld, err)
	}
	return nil
}

// drop counts and logs the records the findings pipeline refused. The error is not returned:
// it would make the traces pipeline refuse the spans that carried the findings (a receiver
// answers its sender with it, which sends the spans again, duplicated), so a findings sink
// that is down would stop the traces too. The findings pipeline's exporters keep and retry
// what they accepted (sending_queue, retry_on_failure); what reaches here is what they
// refused (queue full, a permanent error), and the spans still carry each finding.
func (c *findingsConnector) drop(ctx context.Context, ld plog.Logs, err error) {
	n := ld.LogRecordCount()
	reason := reasonRefused
	if consumererror.IsPermanent(err) {
		reason = reasonPermanent
	}
	c.dropped.Add(ctx, int64(n), metric.WithAttributes(attribute.String("reason", reason)))
	uids := make([]string, 0, min(n, maxLoggedUIDs))
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				if len(uids) == maxLoggedUIDs {
					break
				}
				if v, ok := lr.Attributes().Get(attrFindingUID); ok {
					uids = append(uids, truncate(v.AsString(), maxUIDLen))
				}
			}
		}
	}
	c.logger.Error("Findings pipeline refused finding records: dropped (the findings stay on their spans)",
		zap.Int("dropped", n), zap.String("reason", reason), zap.Strings("finding_uids", uids), zap.Error(err))
}

// maxUIDLen bounds each uid in the log line: the attribute came over the network.
const maxUIDLen = 64

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
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
	if _, ok := attrs.Get(attrFindingTier); !ok {
		// A finding from before tier existed: the agent's, which a backend filters on too.
		attrs.PutStr(attrFindingTier, defaultTier)
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
