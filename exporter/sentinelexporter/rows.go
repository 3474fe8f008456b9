package sentinelexporter

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Column names of the two custom tables. distributions/agenttrail/sentinel/tables.json declares
// them with their types; a test checks that every key written here is declared there.
const (
	colTimeGenerated      = "TimeGenerated"
	colTraceID            = "TraceId"
	colSpanID             = "SpanId"
	colParentSpanID       = "ParentSpanId"
	colName               = "Name"
	colKind               = "Kind"
	colStartTime          = "StartTime"
	colEndTime            = "EndTime"
	colDurationMs         = "DurationMs"
	colStatusCode         = "StatusCode"
	colStatusMessage      = "StatusMessage"
	colServiceName        = "ServiceName"
	colProcessPid         = "ProcessPid"
	colScopeName          = "ScopeName"
	colAttributes         = "Attributes"
	colResourceAttributes = "ResourceAttributes"
	colEvents             = "Events"
	colLinks              = "Links"

	colFindingUID      = "FindingUid"
	colClassUID        = "ClassUid"
	colTitle           = "Title"
	colMessage         = "Message"
	colSeverity        = "Severity"
	colSeverityID      = "SeverityId"
	colRuleIDs         = "RuleIds"
	colAtlasTechniques = "AtlasTechniques"
	colK8sNamespace    = "K8sNamespace"
	colK8sPod          = "K8sPod"
	colK8sDeployment   = "K8sDeployment"
	colServiceAccount  = "ServiceAccount"
	colContainerID     = "ContainerId"
	colHostName        = "HostName"
	colOcsf            = "Ocsf"
)

// Attribute keys read for the workload columns, first match wins; record attributes are looked
// up before resource attributes.
var (
	keysServiceName    = []string{"service.name"}
	keysProcessPid     = []string{"process.pid"}
	keysK8sNamespace   = []string{"k8s.namespace.name"}
	keysK8sPod         = []string{"k8s.pod.name"}
	keysK8sDeployment  = []string{"k8s.deployment.name"}
	keysServiceAccount = []string{"k8s.serviceaccount.name", "k8s.pod.service_account.name"}
	keysContainerID    = []string{"container.id"}
	keysHostName       = []string{"host.name", "k8s.node.name"}
	keysRuleIDs        = []string{"agenttrail.rule.ids", "agenttrail.rule.id"}
)

// now is replaced in tests.
var now = time.Now

// resourceCtx holds what every row of one resource shares, encoded once.
type resourceCtx struct {
	attrs       pcommon.Map
	attrsJSON   []byte // nil when the resource has no attributes
	serviceName string
	pid         int64
	hasPid      bool
}

func newResourceCtx(res pcommon.Resource, buf []byte) resourceCtx {
	rc := resourceCtx{attrs: res.Attributes()}
	if rc.attrs.Len() > 0 {
		rc.attrsJSON = appendMap(buf[:0], rc.attrs)
	}
	rc.serviceName = lookupStr(rc.attrs, keysServiceName)
	rc.pid, rc.hasPid = lookupInt(rc.attrs, keysProcessPid)
	return rc
}

func lookupStr(m pcommon.Map, keys []string) string {
	for _, k := range keys {
		if v, ok := m.Get(k); ok {
			if s := v.AsString(); s != "" {
				return s
			}
		}
	}
	return ""
}

func lookupInt(m pcommon.Map, keys []string) (int64, bool) {
	for _, k := range keys {
		v, ok := m.Get(k)
		if !ok {
			continue
		}
		switch v.Type() {
		case pcommon.ValueTypeInt:
			return v.Int(), true
		case pcommon.ValueTypeDouble:
			return int64(v.Double()), true
		case pcommon.ValueTypeStr:
			if n, err := strconv.ParseInt(strings.TrimSpace(v.Str()), 10, 64); err == nil {
				return n, true
			}
		}
	}
	return 0, false
}

// firstStr returns the first non-empty value of keys in the record, then the resource.
func firstStr(record, resource pcommon.Map, keys []string) string {
	if s := lookupStr(record, keys); s != "" {
		return s
	}
	return lookupStr(resource, keys)
}

func spanKindName(k ptrace.SpanKind) string {
	switch k {
	case ptrace.SpanKindInternal:
		return "Internal"
	case ptrace.SpanKindServer:
		return "Server"
	case ptrace.SpanKindClient:
		return "Client"
	case ptrace.SpanKindProducer:
		return "Producer"
	case ptrace.SpanKindConsumer:
		return "Consumer"
	}
	return "Unspecified"
}

func statusCodeName(c ptrace.StatusCode) string {
	switch c {
	case ptrace.StatusCodeOk:
		return "Ok"
	case ptrace.StatusCodeError:
		return "Error"
	}
	return "Unset"
}

// appendSpanRow appends the AgentTrailSpans_CL row of one span.
func appendSpanRow(b []byte, rc *resourceCtx, scope pcommon.InstrumentationScope, span ptrace.Span) []byte {
	start, end := span.StartTimestamp(), span.EndTimestamp()
	b = append(b, '{')
	b = appendKey(b, true, colTimeGenerated)
	if start != 0 {
		b = appendTimestamp(b, start)
	} else {
		b = appendTime(b, now())
	}
	tid, sid := span.TraceID(), span.SpanID()
	b = appendKey(b, false, colTraceID)
	b = appendHexID(b, tid[:])
	b = appendKey(b, false, colSpanID)
	b = appendHexID(b, sid[:])
	if p := span.ParentSpanID(); !p.IsEmpty() {
		b = appendKey(b, false, colParentSpanID)
		b = appendHexID(b, p[:])
	}
	b = appendKey(b, false, colName)
	b = appendString(b, span.Name())
	b = appendKey(b, false, colKind)
	b = appendString(b, spanKindName(span.Kind()))
	if start != 0 {
		b = appendKey(b, false, colStartTime)
		b = appendTimestamp(b, start)
	}
	if end != 0 {
		b = appendKey(b, false, colEndTime)
		b = appendTimestamp(b, end)
	}
	if start != 0 && end >= start {
		b = appendKey(b, false, colDurationMs)
		b = appendFloat(b, float64(end-start)/1e6)
	}
	b = appendKey(b, false, colStatusCode)
	b = appendString(b, statusCodeName(span.Status().Code()))
	if msg := span.Status().Message(); msg != "" {
		b = appendKey(b, false, colStatusMessage)
		b = appendString(b, msg)
	}
	if rc.serviceName != "" {
		b = appendKey(b, false, colServiceName)
		b = appendString(b, rc.serviceName)
	}
	if pid, ok := lookupInt(span.Attributes(), keysProcessPid); ok {
		b = appendKey(b, false, colProcessPid)
		b = strconv.AppendInt(b, pid, 10)
	} else if rc.hasPid {
		b = appendKey(b, false, colProcessPid)
		b = strconv.AppendInt(b, rc.pid, 10)
	}
	if name := scope.Name(); name != "" {
		b = appendKey(b, false, colScopeName)
		b = appendString(b, name)
	}
	if span.Attributes().Len() > 0 {
		b = appendKey(b, false, colAttributes)
		b = appendMap(b, span.Attributes())
	}
	if rc.attrsJSON != nil {
		b = appendKey(b, false, colResourceAttributes)
		b = append(b, rc.attrsJSON...)
	}
	if evs := span.Events(); evs.Len() > 0 {
		b = appendKey(b, false, colEvents)
		b = append(b, '[')
		for i := 0; i < evs.Len(); i++ {
			ev := evs.At(i)
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			b = appendKey(b, true, "Name")
			b = appendString(b, ev.Name())
			b = appendKey(b, false, "Time")
			b = appendTimestamp(b, ev.Timestamp())
			if ev.Attributes().Len() > 0 {
				b = appendKey(b, false, "Attributes")
				b = appendMap(b, ev.Attributes())
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if links := span.Links(); links.Len() > 0 {
		b = appendKey(b, false, colLinks)
		b = append(b, '[')
		for i := 0; i < links.Len(); i++ {
			l := links.At(i)
			if i > 0 {
				b = append(b, ',')
			}
			ltid, lsid := l.TraceID(), l.SpanID()
			b = append(b, '{')
			b = appendKey(b, true, "TraceId")
			b = appendHexID(b, ltid[:])
			b = appendKey(b, false, "SpanId")
			b = appendHexID(b, lsid[:])
			if ts := l.TraceState().AsRaw(); ts != "" {
				b = appendKey(b, false, "TraceState")
				b = appendString(b, ts)
			}
			if l.Attributes().Len() > 0 {
				b = appendKey(b, false, "Attributes")
				b = appendMap(b, l.Attributes())
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// ocsfFinding holds the OCSF Detection Finding (class_uid 2004) fields that become columns.
// Fields of an unexpected JSON type are skipped, the rest is still read.
type ocsfFinding struct {
	ClassUID    ocsfInt      `json:"class_uid"`
	Time        ocsfInt      `json:"time"`
	Message     string       `json:"message"`
	Severity    string       `json:"severity"`
	SeverityID  ocsfInt      `json:"severity_id"`
	Attacks     []ocsfAttack `json:"attacks"`
	FindingInfo struct {
		UID      string       `json:"uid"`
		Title    string       `json:"title"`
		Desc     string       `json:"desc"`
		Attacks  []ocsfAttack `json:"attacks"`
		Analytic *struct {
			UID              string    `json:"uid"`
			RelatedAnalytics []ocsfUID `json:"related_analytics"`
		} `json:"analytic"`
	} `json:"finding_info"`
	Metadata  ocsfUID `json:"metadata"`
	Container ocsfUID `json:"container"`
	Device    struct {
		Hostname string `json:"hostname"`
	} `json:"device"`
	Actor struct {
		Process struct {
			PID ocsfInt `json:"pid"`
		} `json:"process"`
	} `json:"actor"`
}

type ocsfAttack struct {
	Technique    *ocsfUID `json:"technique"`
	SubTechnique *ocsfUID `json:"sub_technique"`
}

type ocsfUID struct {
	UID string `json:"uid"`
}

// ocsfInt is an integer field read leniently: a JSON number (integral or not) is kept, any
// other JSON value is ignored without failing the rest of the object.
type ocsfInt struct {
	v  int64
	ok bool
}

func (n *ocsfInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		n.v, n.ok = i, true
	} else if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) {
		n.v, n.ok = int64(f), true
	}
	return nil
}

func numberInt(n ocsfInt) (int64, bool) { return n.v, n.ok }

// parseOCSF reads the columns of an OCSF JSON object. ok is false when src is not a JSON object.
func parseOCSF(src []byte) (f ocsfFinding, ok bool) {
	if err := json.Unmarshal(src, &f); err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return ocsfFinding{}, false
		}
	}
	return f, true
}

func (f *ocsfFinding) ruleIDs() []string {
	var ids []string
	if a := f.FindingInfo.Analytic; a != nil {
		if a.UID != "" {
			ids = append(ids, a.UID)
		}
		for _, r := range a.RelatedAnalytics {
			if r.UID != "" {
				ids = appendUnique(ids, r.UID)
			}
		}
	}
	return ids
}

func (f *ocsfFinding) techniques() []string {
	var ids []string
	for _, list := range [][]ocsfAttack{f.FindingInfo.Attacks, f.Attacks} {
		for _, a := range list {
			if a.Technique != nil && a.Technique.UID != "" {
				ids = appendUnique(ids, a.Technique.UID)
			}
			if a.SubTechnique != nil && a.SubTechnique.UID != "" {
				ids = appendUnique(ids, a.SubTechnique.UID)
			}
		}
	}
	return ids
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// findingBody classifies a log body: the OCSF object as compact JSON (ocsf) with its parsed
// fields, or, for a body that is not a JSON object, its text (message) and JSON value (ocsf is
// then the value itself: a string, number, array...). empty is true for an empty body.
type findingBody struct {
	empty   bool
	isOCSF  bool
	fields  ocsfFinding
	ocsf    []byte // JSON value for the Ocsf column
	message string // text of a non-OCSF body
}

func classifyBody(v pcommon.Value, scratch *bytes.Buffer) findingBody {
	switch v.Type() {
	case pcommon.ValueTypeEmpty:
		return findingBody{empty: true}
	case pcommon.ValueTypeStr:
		s := v.Str()
		t := strings.TrimSpace(s)
		if t == "" {
			return findingBody{empty: true}
		}
		if t[0] == '{' {
			if !utf8.ValidString(t) {
				t = strings.ToValidUTF8(t, "\uFFFD")
			}
			if f, ok := parseOCSF([]byte(t)); ok {
				scratch.Reset()
				if json.Compact(scratch, []byte(t)) == nil {
					return findingBody{isOCSF: true, fields: f, ocsf: append([]byte(nil), scratch.Bytes()...)}
				}
			}
		}
		return findingBody{message: s, ocsf: appendString(nil, s)}
	case pcommon.ValueTypeMap:
		raw := appendMap(nil, v.Map())
		f, _ := parseOCSF(raw)
		return findingBody{isOCSF: true, fields: f, ocsf: raw}
	default:
		return findingBody{message: v.AsString(), ocsf: appendValue(nil, v)}
	}
}

// appendFindingRow appends the AgentTrailFindings_CL row of one log record; ok is false for a
// record with an empty body (nothing to report).
func appendFindingRow(b []byte, rc *resourceCtx, lr plog.LogRecord, scratch *bytes.Buffer) ([]byte, bool) {
	body := classifyBody(lr.Body(), scratch)
	if body.empty {
		return b, false
	}
	f := &body.fields
	attrs := lr.Attributes()

	b = append(b, '{')
	b = appendKey(b, true, colTimeGenerated)
	switch {
	case lr.Timestamp() != 0:
		b = appendTimestamp(b, lr.Timestamp())
	case lr.ObservedTimestamp() != 0:
		b = appendTimestamp(b, lr.ObservedTimestamp())
	default:
		if ms, ok := numberInt(f.Time); ok && ms > 0 {
			b = appendTime(b, time.UnixMilli(ms))
		} else {
			b = appendTime(b, now())
		}
	}
	uid := f.FindingInfo.UID
	if uid == "" {
		uid = f.Metadata.UID
	}
	b = appendOptString(b, colFindingUID, uid)
	if n, ok := numberInt(f.ClassUID); ok {
		b = appendKey(b, false, colClassUID)
		b = strconv.AppendInt(b, n, 10)
	}
	b = appendOptString(b, colTitle, f.FindingInfo.Title)
	msg := f.Message
	if msg == "" {
		msg = f.FindingInfo.Desc
	}
	if msg == "" {
		msg = body.message
	}
	b = appendOptString(b, colMessage, msg)
	sev := f.Severity
	if sev == "" {
		sev = lr.SeverityText()
	}
	b = appendOptString(b, colSeverity, sev)
	if n, ok := numberInt(f.SeverityID); ok {
		b = appendKey(b, false, colSeverityID)
		b = strconv.AppendInt(b, n, 10)
	}
	rules := f.ruleIDs()
	if len(rules) == 0 {
		rules = attrStrings(attrs, rc.attrs, keysRuleIDs)
	}
	b = appendOptStrings(b, colRuleIDs, rules)
	b = appendOptStrings(b, colAtlasTechniques, f.techniques())
	if tid := lr.TraceID(); !tid.IsEmpty() {
		b = appendKey(b, false, colTraceID)
		b = appendHexID(b, tid[:])
	}
	if sid := lr.SpanID(); !sid.IsEmpty() {
		b = appendKey(b, false, colSpanID)
		b = appendHexID(b, sid[:])
	}
	b = appendOptString(b, colK8sNamespace, firstStr(attrs, rc.attrs, keysK8sNamespace))
	b = appendOptString(b, colK8sPod, firstStr(attrs, rc.attrs, keysK8sPod))
	b = appendOptString(b, colK8sDeployment, firstStr(attrs, rc.attrs, keysK8sDeployment))
	b = appendOptString(b, colServiceAccount, firstStr(attrs, rc.attrs, keysServiceAccount))
	cid := firstStr(attrs, rc.attrs, keysContainerID)
	if cid == "" {
		cid = f.Container.UID
	}
	b = appendOptString(b, colContainerID, cid)
	svc := lookupStr(attrs, keysServiceName)
	if svc == "" {
		svc = rc.serviceName
	}
	b = appendOptString(b, colServiceName, svc)
	host := firstStr(attrs, rc.attrs, keysHostName)
	if host == "" {
		host = f.Device.Hostname
	}
	b = appendOptString(b, colHostName, host)
	pid, hasPid := lookupInt(attrs, keysProcessPid)
	if !hasPid {
		pid, hasPid = rc.pid, rc.hasPid
	}
	if !hasPid {
		pid, hasPid = numberInt(f.Actor.Process.PID)
	}
	if hasPid {
		b = appendKey(b, false, colProcessPid)
		b = strconv.AppendInt(b, pid, 10)
	}
	if attrs.Len() > 0 {
		b = appendKey(b, false, colAttributes)
		b = appendMap(b, attrs)
	}
	if rc.attrsJSON != nil {
		b = appendKey(b, false, colResourceAttributes)
		b = append(b, rc.attrsJSON...)
	}
	b = appendKey(b, false, colOcsf)
	b = append(b, body.ocsf...)
	return append(b, '}'), true
}

func appendOptString(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	b = appendKey(b, false, key)
	return appendString(b, value)
}

func appendOptStrings(b []byte, key string, values []string) []byte {
	if len(values) == 0 {
		return b
	}
	b = appendKey(b, false, key)
	b = append(b, '[')
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v)
	}
	return append(b, ']')
}

// attrStrings reads a string or a slice of strings from the first key present.
func attrStrings(record, resource pcommon.Map, keys []string) []string {
	for _, m := range []pcommon.Map{record, resource} {
		for _, k := range keys {
			v, ok := m.Get(k)
			if !ok {
				continue
			}
			if v.Type() == pcommon.ValueTypeSlice {
				var out []string
				for i := 0; i < v.Slice().Len(); i++ {
					if s := v.Slice().At(i).AsString(); s != "" {
						out = appendUnique(out, s)
					}
				}
				if len(out) > 0 {
					return out
				}
				continue
			}
			if s := v.AsString(); s != "" {
				return []string{s}
			}
		}
	}
	return nil
}
