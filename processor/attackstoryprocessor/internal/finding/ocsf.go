package finding

import (
	"bytes"
	"encoding/json"
	"path"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/enforcement"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/rules"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// OCSF Detection Finding (schema 1.1.0), the class of every finding this processor emits.
const (
	ocsfSchemaVersion = "1.1.0"
	ocsfClassUID      = 2004
	ocsfCategoryUID   = 2
	ocsfActivityID    = 1 // Create
	ocsfTypeUID       = ocsfClassUID*100 + ocsfActivityID
	productName       = "AgentTrail"
)

type atlasTechnique struct {
	name, tacticUID, tacticName string
}

// atlasTechniques names the MITRE ATLAS techniques the built-in rules use, and a few more a
// custom rule is likely to cite; an id not listed here is reported with its id as name.
var atlasTechniques = map[string]atlasTechnique{
	"AML.T0024":     {"Exfiltration via AI Inference API", "AML.TA0010", "Exfiltration"},
	"AML.T0025":     {"Exfiltration via Cyber Means", "AML.TA0010", "Exfiltration"},
	"AML.T0050":     {"Command and Scripting Interpreter", "AML.TA0005", "Execution"},
	"AML.T0051":     {"LLM Prompt Injection", "AML.TA0005", "Execution"},
	"AML.T0051.000": {"LLM Prompt Injection: Direct", "AML.TA0005", "Execution"},
	"AML.T0051.001": {"LLM Prompt Injection: Indirect", "AML.TA0005", "Execution"},
	"AML.T0053":     {"AI Agent Tool Invocation", "AML.TA0005", "Execution"},
	"AML.T0057":     {"LLM Data Leakage", "AML.TA0010", "Exfiltration"},
	"AML.T0086":     {"Exfiltration via AI Agent Tool Invocation", "AML.TA0010", "Exfiltration"},
	// MITRE ATT&CK (Enterprise), for what ATLAS has no technique of its own.
	"T1048": {"Exfiltration Over Alternative Protocol", "TA0010", "Exfiltration"},
}

type ocsfFinding struct {
	ActivityID   int              `json:"activity_id"`
	ActivityName string           `json:"activity_name"`
	CategoryUID  int              `json:"category_uid"`
	CategoryName string           `json:"category_name"`
	ClassUID     int              `json:"class_uid"`
	ClassName    string           `json:"class_name"`
	TypeUID      int              `json:"type_uid"`
	TypeName     string           `json:"type_name"`
	SeverityID   int              `json:"severity_id"`
	Severity     string           `json:"severity"`
	StatusID     int              `json:"status_id"`
	Status       string           `json:"status"`
	Time         int64            `json:"time"`
	Message      string           `json:"message"`
	FindingInfo  ocsfFindingInfo  `json:"finding_info"`
	Resources    []ocsfResource   `json:"resources"`
	Evidences    []ocsfEvidence   `json:"evidences"`
	Observables  []ocsfObservable `json:"observables,omitempty"`
	Metadata     ocsfMetadata     `json:"metadata"`
	Unmapped     ocsfUnmapped     `json:"unmapped"`
}

type ocsfFindingInfo struct {
	UID              string         `json:"uid"`
	Title            string         `json:"title"`
	Desc             string         `json:"desc"`
	Types            []string       `json:"types"`
	CreatedTime      int64          `json:"created_time"`
	FirstSeenTime    int64          `json:"first_seen_time,omitempty"`
	LastSeenTime     int64          `json:"last_seen_time,omitempty"`
	Analytic         ocsfAnalytic   `json:"analytic"`
	RelatedAnalytics []ocsfAnalytic `json:"related_analytics,omitempty"`
	Attacks          []ocsfAttack   `json:"attacks,omitempty"`
	DataSources      []string       `json:"data_sources"`
}

type ocsfAnalytic struct {
	UID    string `json:"uid"`
	Name   string `json:"name"`
	Desc   string `json:"desc,omitempty"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
}

type ocsfAttack struct {
	Technique ocsfRef  `json:"technique"`
	Tactic    *ocsfRef `json:"tactic,omitempty"`
}

type ocsfRef struct {
	UID  string `json:"uid"`
	Name string `json:"name"`
}

type ocsfResource struct {
	UID    string         `json:"uid"`
	Name   string         `json:"name,omitempty"`
	Type   string         `json:"type"`
	Labels []string       `json:"labels,omitempty"`
	Data   map[string]any `json:"data"`
}

type ocsfEvidence struct {
	Name        string           `json:"name"`
	Data        ocsfEvidenceData `json:"data"`
	File        *ocsfFile        `json:"file,omitempty"`
	DstEndpoint *ocsfEndpoint    `json:"dst_endpoint,omitempty"`
	Process     *ocsfProcess     `json:"process,omitempty"`
}

// ocsfEvidenceData points an evidence at its span (and span event).
type ocsfEvidenceData struct {
	RuleID    string `json:"rule_id"`
	Detail    string `json:"detail"`
	TraceID   string `json:"trace_id"`
	SpanID    string `json:"span_id,omitempty"`
	SpanName  string `json:"span_name,omitempty"`
	SpanEvent string `json:"span_event,omitempty"`
}

type ocsfUnmapped struct {
	TraceID         string `json:"trace_id"`
	SpanID          string `json:"span_id"`
	Narrative       string `json:"narrative"`
	Mode            string `json:"mode"`
	Workload        string `json:"workload"`
	IncompleteStory string `json:"story_incomplete_reason,omitempty"`
	// Nodes are the nodes of a story the gateway joined across nodes (more than one), the
	// head's first; NodesOmitted and WorkloadsOmitted count what MaxStoryNodes and
	// MaxStoryWorkloads left out of it and of resources[].
	Nodes            []string         `json:"nodes,omitempty"`
	NodesOmitted     int              `json:"nodes_omitted,omitempty"`
	WorkloadsOmitted int              `json:"workloads_omitted,omitempty"`
	Rules            []ocsfRuleDetail `json:"rules"`
	// Enforcement lists what the kernel blocked in the story (mode enforce).
	Enforcement []ocsfBlocked `json:"enforcement,omitempty"`
	// ToolEnforcement is "not_enforceable" when a tool outside the profile ran in mode enforce.
	ToolEnforcement string `json:"tool_enforcement,omitempty"`
}

type ocsfBlocked struct {
	Time           int64  `json:"time"`
	Kind           string `json:"kind"`
	Rule           string `json:"rule"`
	Action         string `json:"action"`
	PID            uint32 `json:"pid"`
	Destination    string `json:"destination,omitempty"`
	Executable     string `json:"executable,omitempty"`
	ProfileVersion int    `json:"profile_version"`
}

type ocsfRuleDetail struct {
	RuleID      string   `json:"rule_id"`
	SeverityID  int      `json:"severity_id"`
	Atlas       []string `json:"atlas"`
	Explanation string   `json:"explanation"`
	Evidence    []string `json:"evidence"`
}

type ocsfFile struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
}

type ocsfEndpoint struct {
	IP       string `json:"ip,omitempty"`
	Port     int    `json:"port,omitempty"`
	Hostname string `json:"hostname,omitempty"`
}

type ocsfProcess struct {
	Name    string    `json:"name,omitempty"`
	CmdLine string    `json:"cmd_line,omitempty"`
	File    *ocsfFile `json:"file,omitempty"`
}

type ocsfObservable struct {
	Name   string `json:"name"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
	Value  string `json:"value"`
}

type ocsfMetadata struct {
	Product        ocsfProduct `json:"product"`
	Version        string      `json:"version"`
	CorrelationUID string      `json:"correlation_uid,omitempty"`
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
	Version    string `json:"version,omitempty"`
}

// Finding is what a story that matched becomes.
type Finding struct {
	UID       string
	hits      []*rules.Hit
	Severity  int
	RuleIDs   []string
	AtlasIDs  []string
	Title     string
	Narrative string
	Mode      profile.Mode
	OCSF      string

	ToolNotEnforceable bool
	ToolSpans          []int
	blocked            []enforcement.BlockMatch
}

func New(c *rules.Context, hits []*rules.Hit, now time.Time, productVersion string) *Finding {
	f := c.Facts
	head := f.Spans[f.Head]
	fd := &Finding{hits: hits, Mode: c.Mode, UID: f.Story.ID.String() + "-" + head.ID.String(),
		ToolNotEnforceable: c.ToolNotEnforceable, ToolSpans: c.ToolSpans, blocked: c.Blocked}
	for _, h := range hits {
		fd.Severity = max(fd.Severity, h.Severity)
		fd.RuleIDs = append(fd.RuleIDs, h.Rule.ID)
		for _, a := range h.Rule.Atlas {
			if !containsStr(fd.AtlasIDs, a) {
				fd.AtlasIDs = append(fd.AtlasIDs, a)
			}
		}
	}
	fd.Title = hits[0].Rule.Title
	hints := Hints{Sensitive: c.Policy.Sensitive}
	for _, m := range c.Blocked {
		hints.blocked = append(hints.blocked, m.Span)
	}
	fd.Narrative = Narrative(f, hints)
	fd.OCSF = fd.buildOCSF(c, now, productVersion)
	return fd
}

func (fd *Finding) buildOCSF(c *rules.Context, now time.Time, productVersion string) string {
	f := c.Facts
	head := f.Spans[f.Head]
	res := head.Scope.Src.Resource.Attributes()
	traceID := f.Story.ID.String()
	w := profile.WorkloadOf(res)

	out := fd.ocsfHeader(now, productVersion, traceID)
	out.FindingInfo = fd.ocsfInfo(f, now)
	out.Resources = []ocsfResource{ocsfResourceOf(res, w.Key, traceID, head.ID.String())}
	// In a story of several nodes (a service on another node the gateway joined to the agent's
	// tool call), every other workload whose spans are in it is an affected resource too, with
	// its node in its labels. A story on one node keeps its one resource, the agent's workload.
	places := placesOf(f)
	if places.joined() {
		for _, o := range places.workloads[1:] {
			r := ocsfResourceOf(o.res, o.key, traceID, f.Spans[o.span].ID.String())
			r.Type = "Workload"
			out.Resources = append(out.Resources, r)
		}
	}
	out.Evidences, out.Observables = fd.ocsfEvidences(f, traceID)
	out.Unmapped = fd.ocsfUnmapped(c, traceID, head.ID.String(), w.Key)
	if places.joined() {
		out.Unmapped.Nodes = places.nodes
		out.Unmapped.NodesOmitted = places.nodesOmitted
		out.Unmapped.WorkloadsOmitted = places.workloadsOmitted
	}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return "{}"
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// ocsfHeader: the class, the severity, the message (the primary rule's evidence) and the
// metadata.
func (fd *Finding) ocsfHeader(now time.Time, productVersion, traceID string) ocsfFinding {
	primary := fd.hits[0]
	var texts []string
	for _, e := range primary.Evidence {
		texts = append(texts, e.Text)
	}
	out := ocsfFinding{
		ActivityID: ocsfActivityID, ActivityName: "Create",
		CategoryUID: ocsfCategoryUID, CategoryName: "Findings",
		ClassUID: ocsfClassUID, ClassName: "Detection Finding",
		TypeUID: ocsfTypeUID, TypeName: "Detection Finding: Create",
		SeverityID: fd.Severity, Severity: rules.SeverityNames[fd.Severity],
		StatusID: 1, Status: "New",
		Time:    now.UnixMilli(),
		Message: primary.Rule.Title + ": " + strings.Join(texts, "; "),
		Metadata: ocsfMetadata{
			Product:        ocsfProduct{Name: productName, VendorName: productName, Version: productVersion},
			Version:        ocsfSchemaVersion,
			CorrelationUID: traceID,
		},
	}
	return out
}

// ocsfInfo: what was found (the rules as analytics, the ATLAS techniques as attacks) and when.
func (fd *Finding) ocsfInfo(f *story.Facts, now time.Time) ocsfFindingInfo {
	var out ocsfFindingInfo
	primary := fd.hits[0]
	info := &out
	info.UID = fd.UID
	info.Title = fd.Title
	info.Desc = primary.Rule.Explanation + "\n" + fd.Narrative
	info.Types = append([]string(nil), fd.RuleIDs...)
	info.CreatedTime = now.UnixMilli()
	info.FirstSeenTime = int64(f.Story.MinStart / 1e6)
	info.LastSeenTime = int64(f.Story.MaxEnd / 1e6)
	info.DataSources = []string{"eBPF"}
	for i, h := range fd.hits {
		a := ocsfAnalytic{UID: h.Rule.ID, Name: h.Rule.ID, Desc: h.Rule.Title, TypeID: 1, Type: "Rule"}
		if i == 0 {
			info.Analytic = a
		} else {
			info.RelatedAnalytics = append(info.RelatedAnalytics, a)
		}
	}
	for _, id := range fd.AtlasIDs {
		t, ok := atlasTechniques[id]
		att := ocsfAttack{Technique: ocsfRef{UID: id, Name: id}}
		if ok {
			att.Technique.Name = t.name
			att.Tactic = &ocsfRef{UID: t.tacticUID, Name: t.tacticName}
		}
		info.Attacks = append(info.Attacks, att)
	}

	return out
}

// ocsfResourceOf: the workload the story ran in, with its resource attributes.
func ocsfResourceOf(res pcommon.Map, workload, traceID, spanID string) ocsfResource {
	resource := ocsfResource{UID: workload, Name: story.AttrStr(res, story.AttrServiceName), Type: "AI agent workload",
		Data: map[string]any{"trace_id": traceID, "span_id": spanID}}
	for _, k := range []string{story.AttrServiceName, story.AttrProcessPID, story.AttrProcessExecutable, story.AttrContainerID, story.AttrHostName,
		story.AttrK8sNamespace, story.AttrK8sPod, story.AttrK8sDeployment, story.AttrK8sStatefulSet, story.AttrK8sDaemonSet, story.AttrK8sContainer, story.AttrK8sServiceAccount, story.AttrK8sNodeName} {
		if v, ok := res.Get(k); ok {
			resource.Labels = append(resource.Labels, k+"="+v.AsString())
			resource.Data[k] = v.AsRaw()
		}
	}
	return resource
}

// ocsfEvidences: each piece of evidence with its span, file, destination and process, and the
// observables they name (once each).
func (fd *Finding) ocsfEvidences(f *story.Facts, traceID string) (evidences []ocsfEvidence, observables []ocsfObservable) {
	seenObs := map[string]bool{}
	observe := func(name string, typeID int, typ, value string) {
		key := typ + "\x00" + value
		if value == "" || seenObs[key] {
			return
		}
		seenObs[key] = true
		observables = append(observables, ocsfObservable{Name: name, TypeID: typeID, Type: typ, Value: value})
	}
	for _, h := range fd.hits {
		for _, e := range h.Evidence {
			ev := ocsfEvidence{Name: h.Rule.ID, Data: ocsfEvidenceData{RuleID: h.Rule.ID, Detail: e.Text, TraceID: traceID}}
			if e.Span >= 0 {
				sp := f.Spans[e.Span]
				ev.Data.SpanID = sp.ID.String()
				ev.Data.SpanName = sp.Span.Name()
				if e.Event >= 0 {
					ev.Data.SpanEvent = sp.Span.Events().At(e.Event).Name()
				}
			}
			i := len(evidences)
			prefix := "evidences[" + story.Itoa(i) + "]"
			if e.File != "" {
				ev.File = &ocsfFile{Name: path.Base(e.File), Path: e.File, TypeID: 1, Type: "Regular File"}
				observe(prefix+".file.path", 7, "File Name", e.File)
			}
			if e.Egress != nil {
				ev.DstEndpoint = &ocsfEndpoint{IP: e.Egress.Address, Port: e.Egress.Port, Hostname: e.Egress.Host}
				if e.Egress.Addr.IsValid() {
					observe(prefix+".dst_endpoint.ip", 2, "IP Address", e.Egress.Address)
				}
				observe(prefix+".dst_endpoint.port", 11, "Port", story.Itoa(e.Egress.Port))
				observe(prefix+".dst_endpoint.hostname", 1, "Hostname", e.Egress.Host)
			}
			if e.Exec != nil {
				ev.Process = &ocsfProcess{Name: path.Base(e.Exec.Path), CmdLine: e.Exec.Cmdline,
					File: &ocsfFile{Name: path.Base(e.Exec.Path), Path: e.Exec.Path, TypeID: 1, Type: "Regular File"}}
				observe(prefix+".process.cmd_line", 13, "Command Line", e.Exec.Cmdline)
			}
			evidences = append(evidences, ev)
		}
	}

	return evidences, observables
}

// ocsfUnmapped: what OCSF has no field for: the narrative, the mode, the rules with their
// evidence, the kernel's decisions.
func (fd *Finding) ocsfUnmapped(c *rules.Context, traceID, spanID, workload string) ocsfUnmapped {
	out := ocsfUnmapped{TraceID: traceID, SpanID: spanID, Narrative: fd.Narrative,
		Mode: string(fd.Mode), Workload: workload, IncompleteStory: c.Facts.Story.Reason}
	for _, h := range fd.hits {
		d := ocsfRuleDetail{RuleID: h.Rule.ID, SeverityID: h.Severity, Atlas: h.Rule.Atlas, Explanation: h.Rule.Explanation}
		for _, e := range h.Evidence {
			d.Evidence = append(d.Evidence, e.Text)
		}
		out.Rules = append(out.Rules, d)
	}
	for _, m := range c.Blocked {
		b := ocsfBlocked{Time: m.D.Time.UnixMilli(), Kind: string(m.D.Kind), Rule: m.Rule, Action: m.Action, PID: m.D.PID,
			Executable: m.D.Executable, ProfileVersion: m.D.ProfileVersion}
		if m.D.Destination.IsValid() {
			b.Destination = m.D.Destination.String()
		}
		out.Enforcement = append(out.Enforcement, b)
	}
	if c.ToolNotEnforceable {
		out.ToolEnforcement = enforcement.ToolNotEnforceable
	}
	return out
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
