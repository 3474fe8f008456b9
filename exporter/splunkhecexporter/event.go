package splunkhecexporter

import (
	"encoding/hex"
	"encoding/json"
	"iter"
	"math"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// The JSON shapes below follow contrib's splunkhecexporter (internal/splunk.Event and
// tracedata_to_splunk.go) field for field, so searches written for contrib keep working.

const (
	// unknownHostName is the HEC host when no host attribute is present (contrib's value).
	unknownHostName = "unknown"
	// traceIDFieldKey and spanIDFieldKey carry a log record's trace context (contrib's keys).
	traceIDFieldKey = "trace_id"
	spanIDFieldKey  = "span_id"
)

// hecEvent is one event of the HEC /services/collector JSON protocol.
type hecEvent struct {
	Time       float64 `json:"time,omitempty"`
	Host       string  `json:"host"`
	Source     string  `json:"source,omitempty"`
	SourceType string  `json:"sourcetype,omitempty"`
	Index      string  `json:"index,omitempty"`
	Event      any     `json:"event"`
	// Fields is nil (omitted), a map[string]any, or a json.RawMessage encoded once per resource.
	Fields any `json:"fields,omitempty"`
}

// hecSpan is the "event" of a span.
type hecSpan struct {
	TraceID    string            `json:"trace_id"`
	SpanID     string            `json:"span_id"`
	ParentSpan string            `json:"parent_span_id"`
	Name       string            `json:"name"`
	Attributes map[string]any    `json:"attributes,omitempty"`
	EndTime    pcommon.Timestamp `json:"end_time"`
	Kind       string            `json:"kind"`
	Status     hecSpanStatus     `json:"status,omitempty"`
	StartTime  pcommon.Timestamp `json:"start_time"`
	Events     []hecSpanEvent    `json:"events,omitempty"`
	Links      []hecLink         `json:"links,omitempty"`
}

type hecSpanEvent struct {
	Attributes map[string]any    `json:"attributes,omitempty"`
	Name       string            `json:"name"`
	Timestamp  pcommon.Timestamp `json:"timestamp"`
}

type hecLink struct {
	Attributes map[string]any `json:"attributes,omitempty"`
	TraceID    string         `json:"trace_id"`
	SpanID     string         `json:"span_id"`
	TraceState string         `json:"trace_state"`
}

type hecSpanStatus struct {
	Message string `json:"message"`
	Code    string `json:"code"`
}

// eventMapper turns pdata into HEC events for one exporter instance.
type eventMapper struct {
	attrs          HecToOtelAttrs
	source         string
	sourcetype     string
	index          string
	severityText   string
	severityNumber string
}

func newEventMapper(cfg *Config, sig signal) eventMapper {
	st := cfg.SourceType
	if sig == signalLogs && cfg.LogsSourceType != "" {
		st = cfg.LogsSourceType
	}
	return eventMapper{
		attrs:          cfg.effectiveAttrs(),
		source:         cfg.Source,
		sourcetype:     st,
		index:          cfg.Index,
		severityText:   cfg.HecFields.SeverityText,
		severityNumber: cfg.HecFields.SeverityNumber,
	}
}

// spanEvents yields one HEC event per span with its position in td (depth-first order).
// The yielded event is reused: consume it before the next iteration.
func (m eventMapper) spanEvents(td ptrace.Traces) iter.Seq2[int, *hecEvent] {
	return func(yield func(int, *hecEvent) bool) {
		idx := 0
		ev := &hecEvent{}
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			rs := rss.At(i)
			meta := m.defaults()
			fields := map[string]any{}
			for k, v := range rs.Resource().Attributes().All() {
				if !m.metadata(&meta, k, v) {
					fields[k] = v.AsString()
				}
			}
			// Every span of a resource shares its fields: encode them once.
			var encodedFields any
			if len(fields) > 0 {
				if b, err := json.Marshal(fields); err == nil {
					encodedFields = json.RawMessage(b)
				}
			}
			sss := rs.ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				spans := sss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					span := spans.At(k)
					*ev = meta
					ev.Time = secondsWithMillis(span.StartTimestamp())
					ev.Event = toHecSpan(span)
					ev.Fields = encodedFields
					if !yield(idx, ev) {
						return
					}
					idx++
				}
			}
		}
	}
}

func toHecSpan(span ptrace.Span) hecSpan {
	var events []hecSpanEvent
	if n := span.Events().Len(); n > 0 {
		events = make([]hecSpanEvent, n)
		for i := range n {
			e := span.Events().At(i)
			events[i] = hecSpanEvent{Attributes: e.Attributes().AsRaw(), Name: e.Name(), Timestamp: e.Timestamp()}
		}
	}
	var links []hecLink
	if n := span.Links().Len(); n > 0 {
		links = make([]hecLink, n)
		for i := range n {
			l := span.Links().At(i)
			links[i] = hecLink{
				Attributes: l.Attributes().AsRaw(),
				TraceID:    traceIDHex(l.TraceID()),
				SpanID:     spanIDHex(l.SpanID()),
				TraceState: l.TraceState().AsRaw(),
			}
		}
	}
	var attrs map[string]any
	if span.Attributes().Len() > 0 {
		attrs = span.Attributes().AsRaw()
	}
	return hecSpan{
		TraceID:    traceIDHex(span.TraceID()),
		SpanID:     spanIDHex(span.SpanID()),
		ParentSpan: spanIDHex(span.ParentSpanID()),
		Name:       span.Name(),
		Attributes: attrs,
		StartTime:  span.StartTimestamp(),
		EndTime:    span.EndTimestamp(),
		Kind:       spanKindStr(span.Kind()),
		Status:     hecSpanStatus{Message: span.Status().Message(), Code: statusCodeStr(span.Status().Code())},
		Events:     events,
		Links:      links,
	}
}

// logEvents yields one HEC event per log record with its position in ld. A record whose body is
// empty yields a nil event: Splunk rejects blank events, so the caller drops it.
func (m eventMapper) logEvents(ld plog.Logs) iter.Seq2[int, *hecEvent] {
	return func(yield func(int, *hecEvent) bool) {
		idx := 0
		rls := ld.ResourceLogs()
		for i := 0; i < rls.Len(); i++ {
			rl := rls.At(i)
			sls := rl.ScopeLogs()
			for j := 0; j < sls.Len(); j++ {
				lrs := sls.At(j).LogRecords()
				for k := 0; k < lrs.Len(); k++ {
					if !yield(idx, m.logRecordEvent(rl.Resource(), lrs.At(k))) {
						return
					}
					idx++
				}
			}
		}
	}
}

func (m eventMapper) logRecordEvent(res pcommon.Resource, lr plog.LogRecord) *hecEvent {
	body, ok := logBody(lr.Body())
	if !ok {
		return nil
	}
	ev := m.defaults()
	fields := map[string]any{}
	if id := lr.SpanID(); !id.IsEmpty() {
		fields[spanIDFieldKey] = hex.EncodeToString(id[:])
	}
	if id := lr.TraceID(); !id.IsEmpty() {
		fields[traceIDFieldKey] = hex.EncodeToString(id[:])
	}
	if lr.SeverityText() != "" && m.severityText != "" {
		fields[m.severityText] = lr.SeverityText()
	}
	if lr.SeverityNumber() != plog.SeverityNumberUnspecified && m.severityNumber != "" {
		fields[m.severityNumber] = int32(lr.SeverityNumber())
	}
	// Resource attributes first, then record attributes, which win on conflicts (as contrib).
	for _, attrs := range []pcommon.Map{res.Attributes(), lr.Attributes()} {
		for k, v := range attrs.All() {
			if !m.metadata(&ev, k, v) {
				mergeValue(fields, k, v.AsRaw())
			}
		}
	}
	ts := lr.Timestamp()
	if ts == 0 {
		ts = lr.ObservedTimestamp()
	}
	ev.Time = secondsWithMillis(ts)
	ev.Event = body
	if len(fields) > 0 {
		ev.Fields = fields
	}
	return &ev
}

// defaults is an event with the configured HEC metadata, before attributes override it.
func (m eventMapper) defaults() hecEvent {
	return hecEvent{Host: unknownHostName, Source: m.source, SourceType: m.sourcetype, Index: m.index}
}

// metadata sets the HEC metadata that attribute k maps to (hec_metadata_to_otel_attrs) on ev
// and reports whether k was metadata, or the token label, which is never forwarded: any
// other attribute is a field.
func (m eventMapper) metadata(ev *hecEvent, k string, v pcommon.Value) bool {
	switch k {
	case m.attrs.Host:
		ev.Host = v.AsString()
	case m.attrs.Source:
		ev.Source = v.AsString()
	case m.attrs.SourceType:
		ev.SourceType = v.AsString()
	case m.attrs.Index:
		ev.Index = v.AsString()
	case hecTokenLabel:
		// never forwarded
	default:
		return false
	}
	return true
}

// logBody returns the HEC "event" of a log body. A string that holds a JSON object or array
// (an OCSF finding serialized upstream) is embedded as JSON, not as a quoted string, so Splunk
// extracts its fields at search time. Other values are embedded as contrib does (AsRaw).
func logBody(v pcommon.Value) (any, bool) {
	switch v.Type() {
	case pcommon.ValueTypeEmpty:
		return nil, false
	case pcommon.ValueTypeStr:
		s := v.Str()
		if s == "" {
			return nil, false
		}
		if t := strings.TrimSpace(s); len(t) > 1 && (t[0] == '{' || t[0] == '[') && json.Valid([]byte(t)) {
			return json.RawMessage(t), true
		}
		return s, true
	case pcommon.ValueTypeMap:
		return v.Map().AsRaw(), true
	default:
		return v.AsRaw(), true
	}
}

// mergeValue stores v under k in HEC fields, which Splunk requires to be flat: maps are
// flattened into dotted keys and arrays holding maps or arrays become JSON strings (as contrib).
func mergeValue(dst map[string]any, k string, v any) {
	switch element := v.(type) {
	case []any:
		if isArrayFlat(element) {
			dst[k] = element
		} else {
			b, _ := json.Marshal(element)
			dst[k] = string(b)
		}
	case map[string]any:
		for mk, mv := range element {
			mergeValue(dst, k+"."+mk, mv)
		}
	default:
		dst[k] = v
	}
}

func isArrayFlat(array []any) bool {
	for _, v := range array {
		switch v.(type) {
		case []any, map[string]any:
			return false
		}
	}
	return true
}

// secondsWithMillis converts a timestamp to epoch seconds with millisecond precision; 0 stays 0
// so the "time" key is omitted and Splunk stamps the event at index time (as contrib).
func secondsWithMillis(ts pcommon.Timestamp) float64 {
	return math.Round(float64(ts)/1e6) / 1e3
}

func traceIDHex(id pcommon.TraceID) string {
	if id.IsEmpty() {
		return ""
	}
	return hex.EncodeToString(id[:])
}

func spanIDHex(id pcommon.SpanID) string {
	if id.IsEmpty() {
		return ""
	}
	return hex.EncodeToString(id[:])
}

// spanKindStr and statusCodeStr return the proto enum names, as contrib's traceutil does.
func spanKindStr(k ptrace.SpanKind) string {
	switch k {
	case ptrace.SpanKindUnspecified:
		return "SPAN_KIND_UNSPECIFIED"
	case ptrace.SpanKindInternal:
		return "SPAN_KIND_INTERNAL"
	case ptrace.SpanKindServer:
		return "SPAN_KIND_SERVER"
	case ptrace.SpanKindClient:
		return "SPAN_KIND_CLIENT"
	case ptrace.SpanKindProducer:
		return "SPAN_KIND_PRODUCER"
	case ptrace.SpanKindConsumer:
		return "SPAN_KIND_CONSUMER"
	}
	return ""
}

func statusCodeStr(c ptrace.StatusCode) string {
	switch c {
	case ptrace.StatusCodeUnset:
		return "STATUS_CODE_UNSET"
	case ptrace.StatusCodeOk:
		return "STATUS_CODE_OK"
	case ptrace.StatusCodeError:
		return "STATUS_CODE_ERROR"
	}
	return ""
}
