package archive

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// BundleReportFile is the human-readable rendering that ExportTrace writes next to the signed
// data. It is not signed and not evidence on its own: it is a deterministic rendering of the
// records in proof.json (the same records as story.json and findings.json), and VerifyBundle
// checks that it is byte for byte what this version renders from them.
const BundleReportFile = "report.html"

// ReportFormat names the rendering. It is written into report.html (meta agenttrail-report)
// and must change whenever the rendering of the same records changes, so that VerifyBundle can
// tell a report of another version from a doctored one.
const ReportFormat = "agenttrail.evidence.report.v1"

// renderReport renders report.html from a bundle's records: the story payloads (OTLP JSON), the
// finding payloads (OTLP JSON logs) and the proof. It depends on nothing else (no clock, no
// locale, no map order), so the same records always give the same bytes. Every value from the
// records is attacker-influenced (prompts, arguments, paths): html/template escapes it for its
// context, and controls that could disguise text (bidi overrides, zero-width characters) are
// shown as visible code points.
func renderReport(stories, findings []json.RawMessage, proof *Proof) ([]byte, error) {
	merged, err := mergeStories(stories)
	if err != nil {
		return nil, err
	}
	var um ptrace.JSONUnmarshaler
	td, err := um.UnmarshalTraces(merged)
	if err != nil {
		return nil, fmt.Errorf("story: %w", err)
	}
	v := buildReportView(td, findings, proof)
	var buf bytes.Buffer
	if err := reportTemplate.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", BundleReportFile, err)
	}
	return buf.Bytes(), nil
}

var reportFormatPattern = regexp.MustCompile(`<meta name="agenttrail-report" content="([^"]*)">`)

// reportFormatOf returns the report format named in a report.html, or "".
func reportFormatOf(html []byte) string {
	if m := reportFormatPattern.FindSubmatch(html); m != nil {
		return string(m[1])
	}
	return ""
}

// ---- view model ----

type reportView struct {
	Format     string
	TraceID    string
	Date       string
	Start, End string
	Duration   string
	Verdict    verdictView

	SpanCount, EventCount, ProcessCount, LaneCount, FindingCount, ErrorCount int

	Workloads []workloadView
	Findings  []findingView
	NoFinding bool
	Orphan    bool // the story carries finding attributes but the bundle has no finding record
	Ticks     []tickView
	Lanes     []laneView
	Steps     []stepView
	Segments  []segmentView
	Records   []recordView
	Keys      []string
	Command   string
	Unsigned  bool
}

type verdictView struct {
	Class, Label, Text string
}

type kv struct{ K, V string }

type workloadView struct {
	Title  string
	Groups []factGroup
	Hidden int
}

type factGroup struct {
	Title string
	Note  string
	Facts []kv
}

type findingView struct {
	Title, Severity, SevClass, Message, Narrative, UID, Time, Source string
	Rules                                                            []kv
	Atlas                                                            []atlasView
	TableNames                                                       bool // some ATLAS names come from atlasNames
}

type atlasView struct {
	ID, Name, Tactic string
	FromTable        bool // the name comes from atlasNames, not from the finding
}

type tickView struct {
	Left, Label string
}

type laneView struct {
	ID, Label, Sub string
	Color          int
	Rows           []rowView
}

type rowView struct {
	Event               bool
	IndentPx            int
	Name, Detail, Title string
	Class               string
	Error               string
	Left, Width         string
	Duration            string
	DurLeft, DurRight   string // where the duration label goes: after the bar, or before it near the right edge
	DurInside           bool   // or inside a wide bar
	From                string
	Finding             bool
}

type stepView struct {
	No                              int
	Time, Offset, Lane, Step, Class string
	Event                           bool
	Facts                           []kv
	Attributes                      []kv
	Stack                           string
	Duration, Status                string
	Error                           bool
}

type segmentView struct {
	Segment, Status, StatusClass, Range, Included, Closed string
	Key, LastHash, FileSHA256                             hexPair
}

type recordView struct {
	Seq                 uint64
	Segment, Kind, Time string
	Hash, Prev          hexPair
}

// hexPair is a long hex string in two halves, so that it wraps in the middle.
type hexPair struct{ A, B string }

func split(h string) hexPair {
	h = clean(h)
	if len(h) < 32 || !isLowerHex(h, len(h)) {
		return hexPair{A: h}
	}
	return hexPair{A: h[:len(h)/2], B: h[len(h)/2:]}
}

// ---- story model ----

type rspan struct {
	idx            int
	res            *rresource
	span           ptrace.Span
	id, parent     string
	start, end     uint64
	parentSpan     *rspan // the span named by parent_span_id, if it is in the story
	inLaneParent   *rspan // nearest ancestor in the same lane
	laneKey        string
	lane           *rlane
	kids           []*rspan
	name, class    string
	detail         string
	errText        string
	finding        bool
	resolvingLane  bool
	laneResolved   bool
	laneFromParent bool
	visited        bool
}

type rresource struct {
	attrs pcommon.Map
	key   string
	view  *workloadView
}

type rlane struct {
	key, label, sub string
	thread          string // "goroutine 17", "thread 4243" or "the process"
	spans           []*rspan
	idx             int
}

func buildReportView(td ptrace.Traces, findingPayloads []json.RawMessage, proof *Proof) reportView {
	v := reportView{Format: ReportFormat, TraceID: proof.TraceID}
	spans, resources, byID := collectSpans(td)
	t0, t1 := timeRange(spans)
	total := t1 - t0
	v.Date = fmtDate(t0)
	v.Start, v.End, v.Duration = fmtClock(t0), fmtClock(t1), fmtDur(total)
	if len(spans) == 0 {
		v.Date, v.Start, v.End, v.Duration = "", "", "", ""
	}
	classifySpans(spans, byID)
	laneList := buildLanes(spans)
	addWorkloads(&v, resources, laneList)
	v.SpanCount = len(spans)
	v.LaneCount = len(laneList)
	tl := timeline{v: &v, t0: t0, total: total}
	tl.build(laneList)
	v.Ticks = axisTicks(total)
	addFindings(&v, findingPayloads, spans, proof)
	proofViews(&v, proof)
	return v
}

// collectSpans reads the resources (one per process) and their spans, sorted by start; byID
// finds a span by its id (the first of duplicates).
func collectSpans(td ptrace.Traces) (spans []*rspan, resources []*rresource, byID map[string]*rspan) {
	resByKey := map[string]*rresource{}
	byID = map[string]*rspan{}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		key := attrKey(rs.Resource().Attributes())
		r := resByKey[key]
		if r == nil {
			r = &rresource{attrs: rs.Resource().Attributes(), key: key}
			resByKey[key] = r
			resources = append(resources, r)
		}
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < ss.Len(); k++ {
				sp := ss.At(k)
				s := &rspan{idx: len(spans), res: r, span: sp, id: sp.SpanID().String(), parent: sp.ParentSpanID().String(),
					start: uint64(sp.StartTimestamp()), end: uint64(sp.EndTimestamp())}
				if s.end < s.start {
					s.end = s.start
				}
				spans = append(spans, s)
				if _, dup := byID[s.id]; !dup && s.id != "" {
					byID[s.id] = s
				}
			}
		}
	}
	sort.SliceStable(spans, func(i, j int) bool { return spanLess(spans[i], spans[j]) })
	return spans, resources, byID
}

// timeRange is the first and last time of the spans and their events.
func timeRange(spans []*rspan) (t0, t1 uint64) {
	for i, s := range spans {
		if i == 0 || s.start < t0 {
			t0 = s.start
		}
		if s.end > t1 {
			t1 = s.end
		}
		for e := 0; e < s.span.Events().Len(); e++ {
			ts := uint64(s.span.Events().At(e).Timestamp())
			if ts != 0 && ts < t0 {
				t0 = ts
			}
			if ts > t1 {
				t1 = ts
			}
		}
	}
	if t1 < t0 {
		t1 = t0
	}
	return t0, t1
}

// classifySpans links each span to its parent and says what it is.
func classifySpans(spans []*rspan, byID map[string]*rspan) {
	for _, s := range spans {
		if p := byID[s.parent]; p != nil && s.parent != "" && p != s {
			s.parentSpan = p
		}
		s.name = clean(s.span.Name())
		s.class, s.detail = classify(s.span)
		if s.span.Status().Code() == ptrace.StatusCodeError {
			s.errText = clean(errorText(s.span))
		}
		if _, ok := s.span.Attributes().Get("agenttrail.finding.rule_ids"); ok {
			s.finding = true
		}
	}
}

// buildLanes puts the spans into lanes (a process's goroutine or thread) and links each span
// to its nearest ancestor in the same lane.
func buildLanes(spans []*rspan) []*rlane {
	lanes := map[string]*rlane{}
	var laneList []*rlane
	for _, s := range spans {
		resolveLane(s)
	}
	for _, s := range spans {
		l := lanes[s.laneKey]
		if l == nil {
			l = &rlane{key: s.laneKey, idx: len(laneList)}
			l.label, l.sub, l.thread = laneLabel(s)
			lanes[s.laneKey] = l
			laneList = append(laneList, l)
		}
		s.lane = l
		l.spans = append(l.spans, s)
	}
	for _, s := range spans {
		// nearest ancestor in the same lane (bounded: hostile data may hold a parent cycle)
		for p, n := s.parentSpan, 0; p != nil && n < len(spans); p, n = p.parentSpan, n+1 {
			if p == s {
				break
			}
			if p.lane == s.lane {
				s.inLaneParent = p
				p.kids = append(p.kids, s)
				break
			}
		}
	}
	return laneList
}

// addWorkloads describes each resource, with the lanes of its threads, and counts the
// processes.
func addWorkloads(v *reportView, resources []*rresource, laneList []*rlane) {
	for _, r := range resources {
		wv := workloadFor(r.attrs)
		r.view = &wv
	}
	for _, r := range resources {
		g := factGroup{Title: "Traced threads (timeline lanes)"}
		for _, l := range laneList {
			if l.spans[0].res == r {
				g.Facts = append(g.Facts, kv{"lane " + strconv.Itoa(l.idx+1), l.thread})
			}
		}
		if len(g.Facts) > 0 {
			r.view.Groups = append(r.view.Groups, g)
		}
	}
	for _, r := range resources {
		v.Workloads = append(v.Workloads, *r.view)
	}
	pids := map[string]bool{}
	for _, r := range resources {
		pids[attrStr(r.attrs, "process.pid")+"|"+attrStr(r.attrs, "service.name")] = true
	}
	v.ProcessCount = len(pids)
}

// timeline builds the timeline rows (one per span or event, in tree order within a lane) and
// the steps (all of them in time order).
type timeline struct {
	v         *reportView
	t0, total uint64
	steps     []stepItem
}

type stepItem struct {
	at    uint64
	order int
	step  stepView
}

func (tl *timeline) build(laneList []*rlane) {
	v := tl.v
	for _, l := range laneList {
		lv := laneView{ID: fmt.Sprintf("lane-%d", l.idx+1), Label: l.label, Sub: l.sub, Color: l.idx % 6}
		for _, s := range l.spans {
			if s.inLaneParent == nil {
				tl.walk(l, &lv, s, 0)
			}
		}
		for _, s := range l.spans { // spans whose parents form a cycle (hostile data)
			tl.walk(l, &lv, s, 0)
		}
		v.Lanes = append(v.Lanes, lv)
	}
	steps := tl.steps
	sort.SliceStable(steps, func(i, j int) bool {
		if steps[i].at != steps[j].at {
			return steps[i].at < steps[j].at
		}
		return steps[i].order < steps[j].order
	})
	for i := range steps {
		steps[i].step.No = i + 1
		v.Steps = append(v.Steps, steps[i].step)
	}
}

// pct is where ns falls on the time axis, in percent.
func (tl *timeline) pct(ns uint64) float64 {
	if tl.total == 0 || ns <= tl.t0 {
		return 0
	}
	return float64(ns-tl.t0) / float64(tl.total) * 100
}

func (tl *timeline) addEvent(l *rlane, lv *laneView, s *rspan, ev ptrace.SpanEvent, depth int) {
	ts := uint64(ev.Timestamp())
	if ts == 0 {
		ts = s.start
	}
	name := clean(ev.Name())
	class, detail := classifyEvent(ev)
	lv.Rows = append(lv.Rows, rowView{Event: true, IndentPx: indentPx(depth), Name: name, Detail: shorten(detail, 160),
		Title: name + " " + detail, Class: class, Left: fmtPct(tl.pct(ts)), Finding: ev.Name() == "finding"})
	st := stepView{Time: fmtClock(ts), Offset: "+" + fmtDur(ts-min(ts, tl.t0)), Lane: l.label, Step: name, Class: class, Event: true,
		Facts: eventFacts(ev, s), Attributes: attrList(ev.Attributes()), Status: eventStatus(ev), Duration: "—"}
	st.Error = st.Status != "ok"
	tl.steps = append(tl.steps, stepItem{at: ts, order: len(tl.steps), step: st})
	tl.v.EventCount++
}

// walk adds the row and step of s, then its children and events interleaved by time.
func (tl *timeline) walk(l *rlane, lv *laneView, s *rspan, depth int) {
	if s.visited {
		return
	}
	s.visited = true
	left := tl.pct(s.start)
	width := tl.pct(s.end) - left
	row := rowView{IndentPx: indentPx(depth), Name: s.name, Detail: shorten(s.detail, 160), Title: s.name + " " + s.detail,
		Class: s.class, Error: s.errText, Left: fmtPct(left), Width: fmtPct(width), Duration: fmtDur(s.end - s.start),
		Finding: s.finding}
	switch {
	case width >= 15:
		row.DurInside = true
	case left+width > 85:
		row.DurRight = fmtPct(100 - left)
	default:
		row.DurLeft = fmtPct(left + width)
	}
	if p := s.parentSpan; p != nil && p.lane != s.lane {
		row.From = "called from " + p.name + " in " + p.lane.thread
		if p.res != s.res {
			row.From = "called from " + p.name + " in " + p.lane.label
		}
	}
	lv.Rows = append(lv.Rows, row)
	st := stepView{Time: fmtClock(s.start), Offset: "+" + fmtDur(s.start-tl.t0), Lane: l.label, Step: s.name, Class: s.class,
		Facts: spanFacts(s), Attributes: attrList(s.span.Attributes()),
		Stack: clean(attrStr(s.span.Attributes(), "code.stacktrace")), Duration: fmtDur(s.end - s.start), Status: "ok"}
	if s.errText != "" {
		st.Status, st.Error = "error: "+s.errText, true
		tl.v.ErrorCount++
	}
	tl.steps = append(tl.steps, stepItem{at: s.start, order: len(tl.steps), step: st})
	// children and events, interleaved by time
	kids := append([]*rspan(nil), s.kids...)
	sort.SliceStable(kids, func(i, j int) bool { return spanLess(kids[i], kids[j]) })
	evs := s.span.Events()
	evIdx := make([]int, evs.Len())
	for i := range evIdx {
		evIdx[i] = i
	}
	sort.SliceStable(evIdx, func(a, b int) bool { return evs.At(evIdx[a]).Timestamp() < evs.At(evIdx[b]).Timestamp() })
	ei := 0
	for _, k := range kids {
		for ei < len(evIdx) && uint64(evs.At(evIdx[ei]).Timestamp()) <= k.start {
			tl.addEvent(l, lv, s, evs.At(evIdx[ei]), depth+1)
			ei++
		}
		tl.walk(l, lv, k, depth+1)
	}
	for ; ei < len(evIdx); ei++ {
		tl.addEvent(l, lv, s, evs.At(evIdx[ei]), depth+1)
	}
}

// addFindings lists the findings (records of the bundle and notes on the story's spans) and
// the verdict they make.
func addFindings(v *reportView, findingPayloads []json.RawMessage, spans []*rspan, proof *Proof) {
	storyFindings := storyFindingNotes(spans)
	v.Findings = findingViews(findingPayloads, storyFindings, proof)
	v.FindingCount = 0
	for _, f := range v.Findings {
		if f.Source == "record" {
			v.FindingCount++
		}
	}
	v.NoFinding = len(v.Findings) == 0
	v.Orphan = v.FindingCount == 0 && len(v.Findings) > 0
	v.Verdict = verdictFor(*v)
}

func spanLess(a, b *rspan) bool {
	if a.start != b.start {
		return a.start < b.start
	}
	if a.end != b.end {
		return a.end > b.end // the enclosing span first
	}
	return a.idx < b.idx
}

// resolveLane puts a span into the lane of its process and goroutine (or thread); a span that
// names neither (the connect/execve child spans) inherits the lane of its parent in the same
// process.
func resolveLane(s *rspan) string {
	if s.laneResolved {
		return s.laneKey
	}
	if s.resolvingLane { // a parent cycle in hostile data
		return s.res.key + "\x00"
	}
	s.resolvingLane = true
	defer func() { s.resolvingLane = false }()
	a := s.span.Attributes()
	switch {
	case attrStr(a, "agenttrail.goroutine") != "":
		s.laneKey = s.res.key + "\x00g" + attrStr(a, "agenttrail.goroutine")
	case attrStr(a, "thread.id") != "":
		s.laneKey = s.res.key + "\x00t" + attrStr(a, "thread.id")
	case s.parentSpan != nil && s.parentSpan.res == s.res:
		s.laneKey = resolveLane(s.parentSpan)
		s.laneFromParent = true
	default:
		s.laneKey = s.res.key + "\x00"
	}
	s.laneResolved = true
	return s.laneKey
}

func laneLabel(s *rspan) (label, sub, thread string) {
	r := s.res.attrs
	parts := []string{firstNonEmpty(attrStr(r, "service.name"), "unknown service")}
	if pid := attrStr(r, "process.pid"); pid != "" {
		parts = append(parts, "pid "+pid)
	}
	// the lane's own goroutine/thread: from the span that defined it
	a := s.span.Attributes()
	switch {
	case s.laneFromParent:
		p := s.parentSpan
		for n := 0; p != nil && p.laneFromParent && n < 10000; n++ {
			p = p.parentSpan
		}
		if p != nil {
			a = p.span.Attributes()
		}
	}
	n := len(parts)
	if g := attrStr(a, "agenttrail.goroutine"); g != "" {
		parts = append(parts, "goroutine "+g)
		if t := attrStr(a, "thread.id"); t != "" {
			parts = append(parts, "thread "+t)
		}
	} else if t := attrStr(a, "thread.id"); t != "" {
		parts = append(parts, "thread "+t)
	}
	thread = "the process"
	if len(parts) > n {
		thread = strings.Join(parts[n:], " · ")
	}
	sub = attrStr(r, "process.executable.path")
	if pod := attrStr(r, "k8s.pod.name"); pod != "" {
		sub = joinNonEmptyStr(" · ", sub, "pod "+firstNonEmpty(attrStr(r, "k8s.namespace.name")+"/", "")+pod)
	}
	return clean(strings.Join(parts, " · ")), clean(sub), clean(thread)
}

// classify returns a span's category (a CSS class) and its key detail.
func classify(sp ptrace.Span) (string, string) {
	a := sp.Attributes()
	name := sp.Name()
	op := attrStr(a, "gen_ai.operation.name")
	role := attrStr(a, "agenttrail.role")
	// The span name comes from the traced workload or any OTLP sender: it may be empty or
	// blank, and then has no first word.
	first := ""
	if f := strings.Fields(name); len(f) > 0 {
		first = f[0]
	}
	var class, detail string
	switch {
	case op == "invoke_agent" || role == "prompt" || first == "invoke_agent":
		class = "agent"
		detail = quoteText(firstNonEmpty(attrStr(a, "agenttrail.arg.prompt"), attrStr(a, "gen_ai.prompt"), attrStr(a, "gen_ai.input.messages"), argSummary(a)))
	case op == "chat" || role == "inference" || first == "chat":
		class = "chat"
		detail = joinNonEmptyStr(" ", prefixed("model ", attrStr(a, "gen_ai.request.model")), argSummary(a))
	case op == "execute_tool" || role == "tool" || first == "execute_tool":
		class = "tool"
		args := firstNonEmpty(attrStr(a, "gen_ai.tool.call.arguments"), argSummary(a))
		detail = joinNonEmptyStr(" ", attrStr(a, "gen_ai.tool.name"), args)
	case name == "connect" || name == "sendto" || name == "accept" || attrStr(a, "network.peer.address") != "":
		class = "net"
		arrow := "→ "
		if name == "accept" {
			arrow = "← "
		}
		detail = arrow + peer(a)
	case name == "execve":
		class = "exec"
		detail = firstNonEmpty(attrStr(a, "process.command_line"), attrStr(a, "process.executable.path"))
	case name == "openat":
		class = "file"
		detail = attrStr(a, "file.path")
	default:
		class = "fn"
		detail = firstNonEmpty(attrStr(a, "code.function.name"), argSummary(a))
	}
	return class, clean(detail)
}

func classifyEvent(ev ptrace.SpanEvent) (string, string) {
	a := ev.Attributes()
	switch ev.Name() {
	case "openat":
		d := attrStr(a, "file.path")
		if r := attrStr(a, "agenttrail.syscall.result"); strings.HasPrefix(r, "-") || attrStr(a, "error.type") != "" {
			d = joinNonEmptyStr(" ", d, "(failed: "+firstNonEmpty(attrStr(a, "error.type"), r)+")")
		}
		return "file", clean(d)
	case "finding":
		return "finding", clean(firstNonEmpty(attrStr(a, "agenttrail.finding.title"), attrStr(a, "agenttrail.finding.rule_ids"), "detection"))
	case "exception":
		return "fn", clean(joinNonEmptyStr(": ", attrStr(a, "exception.type"), attrStr(a, "exception.message")))
	}
	if p := attrStr(a, "file.path"); p != "" {
		return "file", clean(p)
	}
	if attrStr(a, "network.peer.address") != "" {
		return "net", clean(peer(a))
	}
	return "fn", clean(argSummary(a))
}

// errorText names a failed span's error: its error.type (ECONNREFUSED, ...) and the status
// message when that says more.
func errorText(sp ptrace.Span) string {
	et, msg := attrStr(sp.Attributes(), "error.type"), sp.Status().Message()
	switch {
	case et == "":
		return firstNonEmpty(msg, "error")
	case msg == "" || strings.Contains(msg, et):
		return et
	}
	return et + ": " + msg
}

func eventStatus(ev ptrace.SpanEvent) string {
	a := ev.Attributes()
	if et := attrStr(a, "error.type"); et != "" {
		return "error: " + clean(et)
	}
	if r := attrStr(a, "agenttrail.syscall.result"); strings.HasPrefix(r, "-") {
		return "error: " + clean(r)
	}
	return "ok"
}

func peer(a pcommon.Map) string {
	addr := firstNonEmpty(attrStr(a, "network.peer.address"), attrStr(a, "server.address"))
	port := attrStr(a, "network.peer.port")
	if strings.Contains(addr, ":") {
		addr = "[" + addr + "]"
	}
	if port != "" {
		return addr + ":" + port
	}
	return addr
}

// argSummary joins the captured arguments agenttrail.arg.NAME as NAME=value.
func argSummary(a pcommon.Map) string {
	var parts []string
	for _, kv := range args(a) {
		parts = append(parts, kv.K+"="+kv.V)
	}
	return strings.Join(parts, " ")
}

// args lists the captured arguments with their truncation notes.
func args(a pcommon.Map) []kv {
	var out []kv
	a.Range(func(k string, v pcommon.Value) bool {
		name, ok := strings.CutPrefix(k, "agenttrail.arg.")
		if !ok || strings.HasSuffix(name, ".truncated") || strings.HasSuffix(name, ".length") {
			return true
		}
		val := v.AsString()
		if t, ok := a.Get(k + ".truncated"); ok && t.Bool() {
			val += "… (truncated"
			if l := attrStr(a, k+".length"); l != "" {
				val += " from " + l + " bytes"
			}
			val += ")"
		}
		out = append(out, kv{name, val})
		return true
	})
	return out
}

func spanFacts(s *rspan) []kv {
	a := s.span.Attributes()
	var f []kv
	add := func(k, v string) {
		if v != "" {
			f = append(f, kv{k, clean(v)})
		}
	}
	switch s.class {
	case "agent":
		add("agent", attrStr(a, "gen_ai.agent.name"))
		add("prompt", firstNonEmpty(attrStr(a, "agenttrail.arg.prompt"), attrStr(a, "gen_ai.prompt"), attrStr(a, "gen_ai.input.messages")))
	case "chat":
		add("model", attrStr(a, "gen_ai.request.model"))
	case "tool":
		add("tool", attrStr(a, "gen_ai.tool.name"))
		add("arguments", attrStr(a, "gen_ai.tool.call.arguments"))
	case "net":
		add("peer", peer(a))
		add("network", attrStr(a, "network.type"))
		add("fd", attrStr(a, "agenttrail.fd"))
	case "exec":
		add("executable", attrStr(a, "process.executable.path"))
		add("command line", attrStr(a, "process.command_line"))
	case "file":
		add("file", attrStr(a, "file.path"))
	}
	for _, arg := range args(a) {
		if !(s.class == "agent" && arg.K == "prompt") {
			add("argument "+arg.K, arg.V)
		}
	}
	add("error", s.errText)
	add("function", attrStr(a, "code.function.name"))
	if fp := attrStr(a, "code.file.path"); fp != "" {
		add("source", joinNonEmptyStr(":", fp, attrStr(a, "code.line.number")))
	}
	if p := s.parentSpan; p != nil && p.lane != s.lane {
		add("called from", p.name+" ("+p.lane.label+")")
	}
	add("span id", s.id)
	add("status message", s.span.Status().Message())
	return f
}

func eventFacts(ev ptrace.SpanEvent, s *rspan) []kv {
	a := ev.Attributes()
	var f []kv
	add := func(k, v string) {
		if v != "" {
			f = append(f, kv{k, clean(v)})
		}
	}
	switch ev.Name() {
	case "openat":
		add("file", attrStr(a, "file.path"))
		add("flags", attrStr(a, "agenttrail.open.flags"))
		add("result", attrStr(a, "agenttrail.syscall.result"))
	case "finding":
		add("title", attrStr(a, "agenttrail.finding.title"))
		add("rules", attrStr(a, "agenttrail.finding.rule_ids"))
		add("ATLAS", attrStr(a, "agenttrail.finding.atlas_ids"))
		add("severity", attrStr(a, "agenttrail.finding.severity"))
	}
	add("in span", s.name+" ("+s.id+")")
	return f
}

// attrList lists every attribute except the stack trace (shown on its own).
func attrList(a pcommon.Map) []kv {
	var out []kv
	a.Range(func(k string, v pcommon.Value) bool {
		if k != "code.stacktrace" {
			out = append(out, kv{clean(k), clean(v.AsString())})
		}
		return true
	})
	return out
}

func workloadFor(r pcommon.Map) workloadView {
	w := workloadView{Title: clean(firstNonEmpty(attrStr(r, "service.name"), "unknown service"))}
	shown := map[string]bool{"service.name": true}
	group := func(title string, pairs ...string) factGroup {
		g := factGroup{Title: title}
		for i := 0; i < len(pairs); i += 2 {
			for _, k := range strings.Split(pairs[i+1], "|") {
				shown[k] = true
				if v := attrStr(r, k); v != "" {
					g.Facts = append(g.Facts, kv{pairs[i], clean(v)})
					break
				}
			}
		}
		return g
	}
	k8s := group("Kubernetes", "namespace", "k8s.namespace.name", "pod", "k8s.pod.name", "deployment", "k8s.deployment.name",
		"statefulset", "k8s.statefulset.name", "daemonset", "k8s.daemonset.name",
		"service account", "k8s.pod.service_account.name|k8s.serviceaccount.name", "container", "k8s.container.name", "node", "k8s.node.name")
	if len(k8s.Facts) == 0 {
		k8s.Note = "No Kubernetes attribution on this process."
	}
	proc := group("Process", "pid", "process.pid", "parent pid", "process.parent_pid", "executable", "process.executable.path",
		"command line", "process.command_line", "container id", "container.id", "host", "host.name")
	w.Groups = []factGroup{k8s, proc}
	r.Range(func(k string, _ pcommon.Value) bool {
		if !shown[k] {
			w.Hidden++
		}
		return true
	})
	return w
}

// ---- findings ----

// storyNote is a finding as the story's own spans carry it: attributes agenttrail.finding.* on a
// span (the root) and "finding" span events with the narrative.
type storyNote struct {
	uid, title, severity, narrative string
	rules, atlas                    []string
	used                            bool
}

func storyFindingNotes(spans []*rspan) []*storyNote {
	var notes []*storyNote
	for _, s := range spans {
		a := s.span.Attributes()
		var spanNote *storyNote
		if _, ok := a.Get("agenttrail.finding.rule_ids"); ok {
			spanNote = &storyNote{uid: attrStr(a, "agenttrail.finding.uid"), title: attrStr(a, "agenttrail.finding.title"),
				severity: attrStr(a, "agenttrail.finding.severity"), narrative: attrStr(a, "agenttrail.finding.narrative"),
				rules: attrList1(a, "agenttrail.finding.rule_ids"), atlas: attrList1(a, "agenttrail.finding.atlas_ids")}
		}
		evNotes := 0
		for e := 0; e < s.span.Events().Len(); e++ {
			ev := s.span.Events().At(e)
			if ev.Name() != "finding" {
				continue
			}
			ea := ev.Attributes()
			n := &storyNote{uid: attrStr(ea, "agenttrail.finding.uid"), title: attrStr(ea, "agenttrail.finding.title"),
				severity:  attrStr(ea, "agenttrail.finding.severity"),
				narrative: firstNonEmpty(attrStr(ea, "agenttrail.finding.narrative"), attrStr(ea, "narrative"), attrStr(ea, "message")),
				rules:     attrList1(ea, "agenttrail.finding.rule_ids"), atlas: attrList1(ea, "agenttrail.finding.atlas_ids")}
			if spanNote != nil { // the span's attributes fill what the event leaves out
				n.title = firstNonEmpty(n.title, spanNote.title)
				n.severity = firstNonEmpty(n.severity, spanNote.severity)
				if len(n.rules) == 0 {
					n.rules = spanNote.rules
				}
				if len(n.atlas) == 0 {
					n.atlas = spanNote.atlas
				}
				n.uid = firstNonEmpty(n.uid, spanNote.uid)
			}
			notes = append(notes, n)
			evNotes++
		}
		if spanNote != nil && evNotes == 0 {
			notes = append(notes, spanNote)
		}
	}
	return notes
}

// attrList1 reads an attribute that is a list of strings, or a comma-separated string.
func attrList1(a pcommon.Map, key string) []string {
	v, ok := a.Get(key)
	if !ok {
		return nil
	}
	var out []string
	if v.Type() == pcommon.ValueTypeSlice {
		for i := 0; i < v.Slice().Len(); i++ {
			if s := strings.TrimSpace(v.Slice().At(i).AsString()); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	for _, s := range strings.Split(v.AsString(), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func findingViews(payloads []json.RawMessage, notes []*storyNote, proof *Proof) []findingView {
	// seq of each finding record, in the order the payloads are (records sorted by seq)
	var seqs []uint64
	for _, pr := range sortedRecords(proof) {
		if rec, err := ParseLine([]byte(pr.Line)); err == nil && rec.Kind == KindFinding {
			seqs = append(seqs, rec.Seq)
		}
	}
	type rec struct {
		lr   plog.LogRecord
		ocsf map[string]any
		seq  uint64
	}
	var recs []rec
	var um plog.JSONUnmarshaler
	for i, p := range payloads {
		var seq uint64
		if i < len(seqs) {
			seq = seqs[i]
		}
		ld, err := um.UnmarshalLogs(p)
		if err != nil {
			continue
		}
		for a := 0; a < ld.ResourceLogs().Len(); a++ {
			sls := ld.ResourceLogs().At(a).ScopeLogs()
			for b := 0; b < sls.Len(); b++ {
				lrs := sls.At(b).LogRecords()
				for c := 0; c < lrs.Len(); c++ {
					recs = append(recs, rec{lr: lrs.At(c), ocsf: ocsfOf(lrs.At(c).Body()), seq: seq})
				}
			}
		}
	}
	var out []findingView
	for _, r := range recs {
		o := r.ocsf
		fi, _ := o["finding_info"].(map[string]any)
		uid := str(fi["uid"])
		var note *storyNote
		for _, n := range notes {
			if !n.used && uid != "" && n.uid == uid {
				note = n
				break
			}
		}
		if note == nil && len(recs) == 1 {
			for _, n := range notes {
				if !n.used {
					note = n
					break
				}
			}
		}
		if note == nil {
			note = &storyNote{}
		}
		note.used = true
		la := r.lr.Attributes()
		f := findingView{Source: "record", UID: clean(uid)}
		f.Title = clean(firstNonEmpty(str(fi["title"]), attrStr(la, "agenttrail.finding.title"), note.title, "Untitled finding"))
		sevID, hasSev := num(o["severity_id"])
		f.Severity, f.SevClass = severityOf(sevID, hasSev, firstNonEmpty(str(o["severity"]), attrStr(la, "agenttrail.finding.severity"), note.severity, r.lr.SeverityText()))
		f.Message = clean(str(o["message"]))
		f.Narrative = clean(firstNonEmpty(note.narrative, attrStr(la, "agenttrail.finding.narrative"), str(fi["desc"])))
		if f.Narrative == f.Message {
			f.Message = ""
		}
		if ms, ok := num(o["time"]); ok && ms > 0 {
			f.Time = fmtDate(uint64(ms)*1e6) + " " + fmtClock(uint64(ms)*1e6) + " UTC"
		} else if ts := uint64(r.lr.Timestamp()); ts != 0 {
			f.Time = fmtDate(ts) + " " + fmtClock(ts) + " UTC"
		}
		if r.seq != 0 {
			f.Time = joinNonEmptyStr(" · ", f.Time, "archive record seq "+strconv.FormatUint(r.seq, 10))
		}
		// rules: the rule ids, then the OCSF analytics
		seen := map[string]bool{}
		addRule := func(id, name string) {
			id, name = clean(strings.TrimSpace(id)), clean(strings.TrimSpace(name))
			if id == "" || seen[id] {
				return
			}
			seen[id] = true
			f.Rules = append(f.Rules, kv{id, name})
		}
		for _, id := range attrList1(la, "agenttrail.finding.rule_ids") {
			addRule(id, "")
		}
		for _, id := range note.rules {
			addRule(id, "")
		}
		if an, ok := fi["analytic"].(map[string]any); ok {
			addRule(str(an["uid"]), str(an["name"]))
			if rel, ok := an["related_analytics"].([]any); ok {
				for _, x := range rel {
					if m, ok := x.(map[string]any); ok {
						addRule(str(m["uid"]), str(m["name"]))
					}
				}
			}
		}
		// fill names of rules listed by id when an analytic names them
		for i := range f.Rules {
			if f.Rules[i].V == "" {
				f.Rules[i].V = analyticName(fi, f.Rules[i].K)
			}
		}
		f.Atlas = atlasOf(fi, append(attrList1(la, "agenttrail.finding.atlas_ids"), note.atlas...))
		f.TableNames = anyFromTable(f.Atlas)
		out = append(out, f)
	}
	for _, n := range notes {
		if n.used {
			continue
		}
		f := findingView{Source: "story", UID: clean(n.uid), Title: clean(firstNonEmpty(n.title, "Finding recorded on the story")), Narrative: clean(n.narrative)}
		f.Severity, f.SevClass = severityOf(0, false, n.severity)
		for _, id := range n.rules {
			f.Rules = append(f.Rules, kv{clean(id), ""})
		}
		f.Atlas = atlasOf(nil, n.atlas)
		f.TableNames = anyFromTable(f.Atlas)
		out = append(out, f)
	}
	return out
}

func anyFromTable(a []atlasView) bool {
	for _, x := range a {
		if x.FromTable {
			return true
		}
	}
	return false
}

func analyticName(fi map[string]any, id string) string {
	an, ok := fi["analytic"].(map[string]any)
	if !ok {
		return ""
	}
	if str(an["uid"]) == id {
		return str(an["name"])
	}
	if rel, ok := an["related_analytics"].([]any); ok {
		for _, x := range rel {
			if m, ok := x.(map[string]any); ok && str(m["uid"]) == id {
				return str(m["name"])
			}
		}
	}
	return ""
}

// atlasOf lists the ATLAS techniques of a finding: its OCSF attacks (technique and
// sub-technique), then ids named only by attribute.
func atlasOf(fi map[string]any, ids []string) []atlasView {
	var out []atlasView
	seen := map[string]bool{}
	add := func(id, name, tactic string) {
		id = strings.TrimSpace(id)
		if id == "" || seen[id] {
			return
		}
		seen[id] = true
		fromTable := false
		if name == "" {
			name, fromTable = atlasNames[id], true
			if name == "" {
				name, fromTable = "(name not in this report's table)", false
			}
		}
		out = append(out, atlasView{ID: clean(id), Name: clean(name), Tactic: clean(tactic), FromTable: fromTable})
	}
	if fi != nil {
		if attacks, ok := fi["attacks"].([]any); ok {
			for _, x := range attacks {
				m, ok := x.(map[string]any)
				if !ok {
					continue
				}
				tech, _ := m["technique"].(map[string]any)
				tac, _ := m["tactic"].(map[string]any)
				tactic := joinNonEmptyStr(" ", str(tac["uid"]), parenthesize(str(tac["name"])))
				add(str(tech["uid"]), str(tech["name"]), tactic)
				if sub, ok := m["sub_technique"].(map[string]any); ok {
					name := str(sub["name"])
					if name != "" && str(tech["name"]) != "" && !strings.Contains(name, ":") {
						name = str(tech["name"]) + ": " + name
					}
					add(str(sub["uid"]), name, tactic)
				}
			}
		}
	}
	for _, id := range ids {
		add(id, "", "")
	}
	return out
}

// atlasNames are MITRE ATLAS technique names for ids AgentTrail's rules use; a finding that
// names its techniques (OCSF technique.name) is shown with its own names.
var atlasNames = map[string]string{
	"AML.T0010":     "AI Supply Chain Compromise",
	"AML.T0025":     "Exfiltration via Cyber Means",
	"AML.T0051":     "LLM Prompt Injection",
	"AML.T0051.000": "LLM Prompt Injection: Direct",
	"AML.T0051.001": "LLM Prompt Injection: Indirect",
	"AML.T0053":     "AI Agent Tool Invocation",
	"AML.T0054":     "LLM Jailbreak",
	"AML.T0057":     "LLM Data Leakage",
	"AML.T0083":     "Credentials from AI Agent Configuration",
	"AML.T0084":     "Discover AI Agent Configuration",
	"AML.T0086":     "Exfiltration via AI Agent Tool Invocation",
}

func severityOf(id int64, hasID bool, caption string) (string, string) {
	names := map[int64]string{0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 6: "Fatal", 99: "Other"}
	if !hasID {
		for k, n := range names {
			if strings.EqualFold(n, strings.TrimSpace(caption)) {
				id, hasID = k, true
			}
		}
	}
	if !hasID {
		if caption == "" {
			return "Unknown", "sev0"
		}
		return clean(caption), "sev0"
	}
	n := names[id]
	if n == "" {
		n = firstNonEmpty(caption, "Other")
	}
	class := "sev" + strconv.FormatInt(min(max(id, 0), 6), 10)
	if id == 99 {
		class = "sev0"
	}
	return clean(n) + " (severity_id " + strconv.FormatInt(id, 10) + ")", class
}

func verdictFor(v reportView) verdictView {
	switch {
	case v.NoFinding:
		return verdictView{Class: "none", Label: "No finding",
			Text: "No detection rule reported a finding for this story. This report shows what the workload did; the absence of a finding is not proof that the activity was benign."}
	case v.Orphan:
		return verdictView{Class: v.Findings[0].SevClass, Label: "Finding on the story only",
			Text: "The story's spans carry finding attributes, but the archive holds no finding record for this trace."}
	}
	best := v.Findings[0]
	for _, f := range v.Findings {
		if f.Source == "record" && f.SevClass > best.SevClass {
			best = f
		}
	}
	label := strings.SplitN(best.Severity, " (", 2)[0] + " severity finding"
	if v.FindingCount > 1 {
		label = fmt.Sprintf("%d findings, highest %s", v.FindingCount, strings.SplitN(best.Severity, " (", 2)[0])
	}
	return verdictView{Class: best.SevClass, Label: label, Text: best.Title}
}

// ocsfOf returns the OCSF object of a log body: a JSON object in a string, or a map.
func ocsfOf(b pcommon.Value) map[string]any {
	switch b.Type() {
	case pcommon.ValueTypeMap:
		return b.Map().AsRaw()
	case pcommon.ValueTypeStr:
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(b.Str()))
		dec.UseNumber()
		if dec.Decode(&m) == nil {
			return m
		}
		return map[string]any{"message": b.Str()}
	}
	return map[string]any{}
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

func num(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, true
		}
		if f, err := x.Float64(); err == nil && !math.IsInf(f, 0) && math.Abs(f) < 1e18 {
			return int64(f), true
		}
	case int64:
		return x, true
	case float64:
		if math.Abs(x) < 1e18 {
			return int64(x), true
		}
	case string:
		if i, err := strconv.ParseInt(x, 10, 64); err == nil {
			return i, true
		}
	}
	return 0, false
}

// ---- proof ----

func sortedRecords(proof *Proof) []ProofRecord {
	recs := append([]ProofRecord(nil), proof.Records...)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Seq < recs[j].Seq })
	return recs
}

func proofViews(v *reportView, proof *Proof) {
	keys := map[string]bool{}
	included := map[string][]string{}
	for _, pr := range sortedRecords(proof) {
		rec, err := ParseLine([]byte(pr.Line))
		if err != nil {
			v.Records = append(v.Records, recordView{Seq: pr.Seq, Segment: clean(pr.Segment), Kind: "unparsable record line"})
			continue
		}
		v.Records = append(v.Records, recordView{Seq: rec.Seq, Segment: clean(pr.Segment), Kind: rec.Kind, Time: rec.Time,
			Hash: split(rec.Hash), Prev: split(rec.Prev)})
		included[pr.Segment] = append(included[pr.Segment], strconv.FormatUint(rec.Seq, 10))
	}
	for _, ps := range proof.Segments {
		sv := segmentView{Segment: clean(ps.Segment), Included: strings.Join(included[ps.Segment], ", ")}
		if n := len(ps.Chain); n > 0 {
			sv.Range = fmt.Sprintf("seq %d … %d (%d headers)", ps.Chain[0].Seq, ps.Chain[n-1].Seq, n)
			sv.LastHash = split(ps.Chain[n-1].Hash)
		}
		if len(ps.Manifest) == 0 || string(ps.Manifest) == "null" {
			sv.Status, sv.StatusClass = "open at export: chained, not signed", "warn"
			v.Unsigned = true
		} else if m, err := ParseManifest(ps.Manifest); err != nil {
			sv.Status, sv.StatusClass = "malformed manifest: "+clean(err.Error()), "bad"
		} else {
			sv.Key, sv.FileSHA256, sv.Closed = split(m.PublicKey), split(m.FileSHA256), m.Closed
			if err := m.VerifySignature(); err != nil {
				sv.Status, sv.StatusClass = "signature INVALID", "bad"
			} else {
				sv.Status, sv.StatusClass = "sealed: Ed25519 signature valid for this key", "ok"
				keys[m.PublicKey] = true
			}
			if n := len(ps.Chain); n == 0 || m.LastHash != ps.Chain[n-1].Hash {
				sv.Status, sv.StatusClass = "manifest does not seal this chain (last_hash differs)", "bad"
			}
		}
		v.Segments = append(v.Segments, sv)
	}
	for k := range keys {
		v.Keys = append(v.Keys, k)
	}
	sort.Strings(v.Keys)
	v.Command = "agenttrail evidence verify-bundle BUNDLE_DIR"
	if len(v.Keys) == 1 {
		v.Command += " --public-key " + v.Keys[0]
	} else {
		v.Command += " --public-key YOUR_PINNED_KEY"
	}
	if v.Unsigned {
		v.Command += " --allow-unsigned"
	}
}

// ---- formatting helpers ----

func attrStr(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return ""
	}
	return v.AsString()
}

// attrKey is a canonical string of a resource's attributes (to merge equal resources).
func attrKey(m pcommon.Map) string {
	var parts []string
	m.Range(func(k string, v pcommon.Value) bool {
		parts = append(parts, strconv.Quote(k)+"="+strconv.Quote(v.AsString()))
		return true
	})
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func joinNonEmptyStr(sep string, s ...string) string {
	var out []string
	for _, x := range s {
		if x != "" {
			out = append(out, x)
		}
	}
	return strings.Join(out, sep)
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func parenthesize(s string) string {
	if s == "" {
		return ""
	}
	return "(" + s + ")"
}

func quoteText(s string) string {
	if s == "" {
		return ""
	}
	return "“" + s + "”"
}

// clean makes text safe to read: invalid UTF-8 is replaced, and control, format (bidi
// overrides, zero-width) and other invisible characters are shown as ⟨U+XXXX⟩, so that
// attacker-chosen text cannot hide or reorder what the page shows. HTML escaping is left to
// html/template.
func clean(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	ok := true
	for _, r := range s {
		if suspicious(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if suspicious(r) {
			fmt.Fprintf(&b, "⟨U+%04X⟩", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func suspicious(r rune) bool {
	switch r {
	case '\n', '\t':
		return false
	}
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Co, r) || r == '\u2028' || r == '\u2029'
}

// shorten cuts a string to n runes for a timeline label (the steps table has it whole).
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func fmtPct(p float64) string {
	if p < 0 || math.IsNaN(p) {
		p = 0
	}
	if p > 100 {
		p = 100
	}
	return strconv.FormatFloat(p, 'f', 3, 64)
}

func fmtDate(ns uint64) string {
	return time.Unix(0, int64(ns)).UTC().Format("2006-01-02")
}

func fmtClock(ns uint64) string {
	return time.Unix(0, int64(ns)).UTC().Format("15:04:05.000000")
}

func fmtDur(ns uint64) string {
	switch {
	case ns < 1_000:
		return strconv.FormatUint(ns, 10) + " ns"
	case ns < 1_000_000:
		return trimFloat(float64(ns)/1e3, 1) + " µs"
	case ns < 1_000_000_000:
		return trimFloat(float64(ns)/1e6, 1) + " ms"
	case ns < 120_000_000_000:
		return trimFloat(float64(ns)/1e9, 2) + " s"
	}
	return time.Duration(ns).Round(time.Second).String()
}

func trimFloat(f float64, prec int) string {
	s := strconv.FormatFloat(f, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// axisTicks returns about six ticks at 1, 2 or 5 × 10^k nanoseconds.
func axisTicks(total uint64) []tickView {
	if total == 0 {
		return []tickView{{Left: "0.000", Label: "0"}}
	}
	raw := float64(total) / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := uint64(mag)
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = uint64(m * mag)
			break
		}
	}
	if step == 0 {
		step = 1
	}
	var out []tickView
	for t := uint64(0); t <= total; t += step {
		label := fmtDur(t)
		if t == 0 {
			label = "0"
		}
		out = append(out, tickView{Left: fmtPct(float64(t) / float64(total) * 100), Label: "+" + label})
	}
	return out
}

func indentPx(depth int) int { return 12 + 18*min(depth, 12) }

// checkReport compares the bundle's report.html, if any, with a fresh rendering of the
// verified records.
func checkReport(fsys fs.FS, stories, findings []json.RawMessage, proof *Proof) (string, error) {
	got, err := readFSLimited(fsys, BundleReportFile, MaxBundleFileBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return "absent", nil
	}
	if err != nil {
		return "", err
	}
	want, err := renderReport(stories, findings, proof)
	if err != nil {
		return "", err
	}
	if bytes.Equal(got, want) {
		return "matches", nil
	}
	if f := reportFormatOf(got); f != ReportFormat {
		if f == "" {
			f = "none"
		}
		return "", fmt.Errorf("%s does not match the verified records: it names report format %q, this verifier renders %s "+
			"(story.json, findings.json and proof.json verify; the report is only a rendering: remove it or export again)", BundleReportFile, f, ReportFormat)
	}
	return "", fmt.Errorf("%s does not match a fresh rendering of the verified records: the page was edited "+
		"(story.json, findings.json and proof.json verify; the report is only a rendering: remove it or export again)", BundleReportFile)
}
