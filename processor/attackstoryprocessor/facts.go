package attackstoryprocessor

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
)

// facts is what the rules, the profile and the narrative need from a story, extracted once.
type facts struct {
	st       *story
	spans    []*sspan // narrative order
	timeline []item   // spans and openat events, narrative order
	parent   []int    // index in spans of each span's parent, -1 for none
	toolOf   []int    // index of the nearest tool span (the span itself or an ancestor), -1
	head     int      // index of the root span, or of the first span when the root is missing

	tools     []toolCall
	functions map[string][]string // by agenttrail.role
	execs     []execCall
	files     []fileAccess
	egress    []egressCall
	prompt    string // redacted
	promptIdx int    // span carrying the prompt, -1
	inputs    []modelInput
	// texts not scanned for markers, past maxInputTexts or maxInputBytes
	inputsPastCount, inputsPastBytes int
	inputBytes                       int
	connects                         int
	bytesSent                        int64
	hasBytes                         bool
	bytesByDest                      map[string]int64 // bytes sent per egress destination
}

// item is one step of the timeline: a span (event -1) or one of its openat events.
type item struct {
	span  int
	event int
	time  uint64
}

// modelInput is text other than the user's prompt that a tool handled or the model was given:
// a tool's arguments and result, a model call's input. Indirect prompt injection arrives this
// way (a document or web page read by a tool, then passed to the model).
type modelInput struct {
	kind inputKind
	span int
	text string // as on the span: already through the receiver's redaction policy
}

type inputKind int

const (
	inputToolArgs   inputKind = iota // the arguments of a tool call
	inputToolResult                  // what a tool returned
	inputModel                       // the input of a model call
)

func (k inputKind) String() string {
	switch k {
	case inputToolArgs:
		return "tool_arguments"
	case inputToolResult:
		return "tool_result"
	}
	return "model_input"
}

// Bounds of the text of one story scanned for injection markers: every value comes from a
// traced process (arguments are at most 256 bytes, message content 64 KiB, but other
// instrumentation may put more on a span).
const (
	maxInputTexts     = 512
	maxInputTextBytes = 64 << 10
	maxInputBytes     = 1 << 20
)

// Attributes that carry content entering or leaving the model besides the prompt.
const (
	attrGenAIToolArgs   = "gen_ai.tool.call.arguments"
	attrGenAIToolResult = "gen_ai.tool.call.result"
)

type toolCall struct {
	name string
	span int
	args [][2]string // sorted by name
}

type execCall struct {
	path, cmdline string
	span, tool    int
	failed        string
	seq           int
}

type fileAccess struct {
	path, flags string
	read        bool
	failed      string
	span, event int
	tool        int
	seq         int // position in the timeline
}

type egressCall struct {
	kind    string // connect or sendto
	dest    string // address:port ([v6]:port)
	address string
	addr    netip.Addr
	port    int
	host    string
	bytes   int64
	failed  string
	span    int
	tool    int
	seq     int
}

func (e egressCall) endpoint() string { return e.dest }

var redactor = redact.New()

func extractFacts(st *story) *facts {
	f := &facts{st: st, functions: map[string][]string{}, promptIdx: -1, head: -1}
	f.buildTimeline()
	for i, sp := range f.spans {
		if sp == st.root {
			f.head = i
		}
	}
	if f.head < 0 && len(f.spans) > 0 {
		f.head = 0
	}
	var prompts []string
	for pos, it := range f.timeline {
		sp := f.spans[it.span]
		attrs := sp.span.Attributes()
		if it.event >= 0 {
			ev := sp.span.Events().At(it.event)
			f.addFile(ev.Attributes(), it.span, it.event, pos)
			continue
		}
		role := attrStr(attrs, attrRole)
		op := attrStr(attrs, attrGenAIOperation)
		if fn := attrStr(attrs, attrCodeFunction); fn != "" && role != "" {
			if !slices.Contains(f.functions[role], fn) {
				f.functions[role] = append(f.functions[role], fn)
			}
		}
		switch {
		case op == "execute_tool" || role == "tool":
			name := attrStr(attrs, attrGenAIToolName)
			if name == "" {
				name = strings.TrimPrefix(sp.span.Name(), "execute_tool ")
			}
			args := spanArgs(attrs)
			f.tools = append(f.tools, toolCall{name: name, span: it.span, args: args})
			for _, a := range args {
				f.addInput(inputToolArgs, it.span, a[1])
			}
			// gen_ai.tool.call.arguments repeats the captured arguments as JSON: not scanned twice.
			if len(args) == 0 {
				f.addInput(inputToolArgs, it.span, attrStr(attrs, attrGenAIToolArgs))
			}
			f.addInput(inputToolResult, it.span, attrStr(attrs, attrGenAIToolResult))
		case op == "invoke_agent" || role == "prompt":
			var parts []string
			for _, a := range spanArgs(attrs) {
				parts = append(parts, a[1])
			}
			for _, k := range []string{attrGenAIPrompt, attrGenAIInput} {
				if v := attrStr(attrs, k); v != "" {
					parts = append(parts, v)
				}
			}
			if len(parts) > 0 {
				prompts = append(prompts, strings.Join(parts, "\n"))
				if f.promptIdx < 0 {
					f.promptIdx = it.span
				}
			}
		case op == "chat" || role == "inference":
			// The model's input: the configured function's arguments, or the request's
			// messages decoded from TLS (gen_ai.input.messages, when the receiver exports them).
			for _, a := range spanArgs(attrs) {
				f.addInput(inputModel, it.span, a[1])
			}
			for _, k := range []string{attrGenAIPrompt, attrGenAIInput} {
				f.addInput(inputModel, it.span, attrStr(attrs, k))
			}
		}
		switch syscallName(sp.span) {
		case "connect", "sendto":
			f.addEgress(sp.span, it.span, pos)
		case "execve":
			f.execs = append(f.execs, execCall{
				path: attrStr(attrs, attrProcessExecutable), cmdline: attrStr(attrs, attrProcessCommand),
				span: it.span, tool: f.toolOf[it.span], failed: failure(attrs), seq: pos,
			})
		case "openat":
			f.addFile(attrs, it.span, -1, pos)
		}
	}
	if len(prompts) > 0 {
		f.prompt, _ = redactor.String(strings.Join(prompts, "\n"))
	}
	return f
}

// addInput keeps a text to scan, within the story's bounds; what is past them is counted.
func (f *facts) addInput(kind inputKind, span int, text string) {
	if text == "" {
		return
	}
	if len(f.inputs) >= maxInputTexts {
		f.inputsPastCount++
		return
	}
	if len(text) > maxInputTextBytes {
		text = text[:maxInputTextBytes]
	}
	if f.inputBytes+len(text) > maxInputBytes {
		f.inputsPastBytes++
		return
	}
	f.inputBytes += len(text)
	f.inputs = append(f.inputs, modelInput{kind: kind, span: span, text: text})
}

// buildTimeline orders spans and their openat events (see topoTimeOrder) and records the
// parent and nearest tool span of every span.
func (f *facts) buildTimeline() {
	st := f.st
	for i, sp := range st.spans {
		sp.ord = i
	}
	nodes := make([]orderNode, 0, len(st.spans)+4)
	refs := make([]item, 0, len(st.spans)+4)
	for i, sp := range st.spans {
		p := -1
		if !sp.parent.IsEmpty() {
			if ps := st.byID[sp.parent]; ps != nil {
				p = ps.ord
			}
		}
		nodes = append(nodes, orderNode{time: sp.start, tie: sp.id[:], parent: p})
		refs = append(refs, item{span: i, event: -1, time: sp.start})
	}
	for i, sp := range st.spans {
		evs := sp.span.Events()
		for e := 0; e < evs.Len(); e++ {
			if evs.At(e).Name() != "openat" {
				continue
			}
			tie := make([]byte, 12)
			copy(tie, sp.id[:])
			binary.BigEndian.PutUint32(tie[8:], uint32(e))
			ts := uint64(evs.At(e).Timestamp())
			nodes = append(nodes, orderNode{time: ts, tie: tie, parent: i})
			refs = append(refs, item{span: i, event: e, time: ts})
		}
	}
	order := topoTimeOrder(nodes)
	// renumber spans in narrative order
	spanPos := make([]int, len(st.spans))
	f.spans = make([]*sspan, 0, len(st.spans))
	for _, n := range order {
		if r := refs[n]; r.event < 0 {
			spanPos[r.span] = len(f.spans)
			f.spans = append(f.spans, st.spans[r.span])
		}
	}
	f.timeline = make([]item, len(order))
	for i, n := range order {
		r := refs[n]
		f.timeline[i] = item{span: spanPos[r.span], event: r.event, time: r.time}
	}
	f.parent = make([]int, len(f.spans))
	f.toolOf = make([]int, len(f.spans))
	for i := range st.spans {
		f.parent[spanPos[i]] = -1
		if p := nodes[i].parent; p >= 0 && p != i {
			f.parent[spanPos[i]] = spanPos[p]
		}
	}
	for i, sp := range f.spans {
		f.toolOf[i] = -1
		if isToolSpan(sp.span) {
			f.toolOf[i] = i
		} else if p := f.parent[i]; p >= 0 && p < i {
			f.toolOf[i] = f.toolOf[p] // parents come first in narrative order
		}
	}
}

func (f *facts) addFile(attrs pcommon.Map, span, event, seq int) {
	path := attrStr(attrs, attrFilePath)
	if path == "" {
		return
	}
	flags := attrStr(attrs, attrOpenFlags)
	f.files = append(f.files, fileAccess{
		path: path, flags: flags, read: flags == "" || !strings.Contains(flags, "O_WRONLY"),
		failed: failure(attrs), span: span, event: event, tool: f.toolOf[span], seq: seq,
	})
}

func (f *facts) addEgress(s ptrace.Span, span, seq int) {
	attrs := s.Attributes()
	address := attrStr(attrs, attrPeerAddress)
	if address == "" {
		return // a unix socket or an unknown peer
	}
	e := egressCall{kind: syscallName(s), address: address, span: span, tool: f.toolOf[span], seq: seq, failed: failure(attrs)}
	if a, err := netip.ParseAddr(address); err == nil {
		e.addr = a.Unmap()
		e.address = e.addr.String()
	}
	if v, ok := attrs.Get(attrPeerPort); ok {
		e.port = int(v.Int())
	}
	for _, k := range []string{attrServerAddress, attrPeerName} {
		if h := attrStr(attrs, k); h != "" {
			if _, err := netip.ParseAddr(h); err != nil {
				e.host = h
				break
			}
		}
	}
	for _, k := range []string{attrBytesSent, attrHTTPRequestBody, attrHTTPRequestTotal} {
		if v, ok := attrs.Get(k); ok && v.Int() > 0 {
			e.bytes = v.Int()
			break
		}
	}
	if e.addr.Is6() {
		e.dest = "[" + e.address + "]:" + itoa(e.port)
	} else {
		e.dest = e.address + ":" + itoa(e.port)
	}
	if e.kind == "sendto" && e.bytes == 0 {
		if v, ok := attrs.Get(attrSyscallResult); ok && v.Int() > 0 {
			e.bytes = v.Int()
		}
	}
	if e.kind == "connect" {
		f.connects++
	}
	if e.bytes > 0 {
		f.bytesSent += e.bytes
		f.hasBytes = true
	}
	if f.bytesByDest == nil {
		f.bytesByDest = map[string]int64{}
	}
	f.bytesByDest[e.dest] += e.bytes
	f.egress = append(f.egress, e)
}

// bytesTo is the bytes sent to the destination of e in the whole story (summed as the egress
// calls are collected: the rules ask once per sensitive read and destination).
func (f *facts) bytesTo(e egressCall) int64 { return f.bytesByDest[e.dest] }

func (f *facts) headResource() pcommon.Map {
	if f.head < 0 {
		return pcommon.NewMap()
	}
	return f.spans[f.head].scope.src.resource.Attributes()
}

// syscallName is the syscall a span records ("" for function spans).
func syscallName(s ptrace.Span) string {
	if v, ok := s.Attributes().Get(attrSyscall); ok {
		return v.Str()
	}
	if _, ok := s.Attributes().Get(attrRole); ok {
		return ""
	}
	switch n := s.Name(); n {
	case "connect", "sendto", "accept", "execve", "openat":
		return n
	}
	return ""
}

func isToolSpan(s ptrace.Span) bool {
	attrs := s.Attributes()
	return attrStr(attrs, attrGenAIOperation) == "execute_tool" || attrStr(attrs, attrRole) == "tool"
}

// spanArgs are the captured arguments (agenttrail.arg.NAME), sorted by name.
func spanArgs(attrs pcommon.Map) [][2]string {
	var out [][2]string
	for k, v := range attrs.All() {
		name, ok := strings.CutPrefix(k, attrArgPrefix)
		if !ok || strings.Contains(name, ".") || v.Type() != pcommon.ValueTypeStr {
			continue
		}
		out = append(out, [2]string{name, v.Str()})
	}
	slices.SortFunc(out, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return out
}

// Errnos that do not make a syscall a failure: a non-blocking call with nothing to do yet.
const (
	errnoEAGAIN      = 11 // also EWOULDBLOCK on Linux
	errnoEINPROGRESS = 115
)

// failure is the error of a failed syscall ("" when it succeeded, or would have blocked: a
// non-blocking accept or read with nothing pending, EAGAIN/EWOULDBLOCK, or a connect in
// progress, EINPROGRESS, are how event loops work, not failures).
func failure(attrs pcommon.Map) string {
	if wouldBlock(attrs) {
		return ""
	}
	if v := attrStr(attrs, attrErrorType); v != "" {
		return v
	}
	if v, ok := attrs.Get(attrSyscallResult); ok && v.Type() == pcommon.ValueTypeInt && v.Int() < 0 {
		return "error " + itoa(int(-v.Int()))
	}
	return ""
}

// wouldBlock: the syscall returned EAGAIN, EWOULDBLOCK or EINPROGRESS.
func wouldBlock(attrs pcommon.Map) bool {
	switch attrStr(attrs, attrErrorType) {
	case "EAGAIN", "EWOULDBLOCK", "EINPROGRESS":
		return true
	case "":
	default:
		return false
	}
	if v, ok := attrs.Get(attrSyscallResult); ok && v.Type() == pcommon.ValueTypeInt {
		return v.Int() == -errnoEAGAIN || v.Int() == -errnoEINPROGRESS
	}
	return false
}

// Why a story does not shape its workload's profile (learning).
const (
	notLearnedNoEntryPoint = "no_entry_point"
	notLearnedWouldBlock   = "would_block"
	notLearnedFinding      = "finding"
)

// notLearnable says why the story may not be learned, "" when it may: it must have a root the
// user configured — a prompt span anywhere in it, or a root span that is a configured function
// or a model call (the receiver sets agenttrail.role only on the functions listed in its
// configuration and on model calls it decodes from TLS) or one of learning.entry_points. Orphan syscall stories (an accept of the next
// request, an openat at start-up, a non-blocking accept that found nothing) are emitted and
// judged, but would fill min_stories with noise and teach the profile the process's start-up.
func (f *facts) notLearnable(entryPoints []string) string {
	allWouldBlock := len(f.spans) > 0
	for _, sp := range f.spans {
		if isPromptSpan(sp.span) {
			return ""
		}
		if allWouldBlock && (syscallName(sp.span) == "" || !wouldBlock(sp.span.Attributes())) {
			allWouldBlock = false
		}
	}
	if root := f.st.root; root != nil {
		attrs := root.span.Attributes()
		fn := attrStr(attrs, attrCodeFunction)
		// A root with a role is a configured function, or a model call the receiver found in
		// TLS traffic: the agent's own work either way (an agent traced without configured
		// functions still learns from its model calls).
		if attrStr(attrs, attrRole) != "" || attrStr(attrs, attrGenAIOperation) != "" {
			return ""
		}
		for _, e := range entryPoints {
			if e == root.span.Name() || (fn != "" && e == fn) {
				return ""
			}
		}
	}
	if allWouldBlock {
		return notLearnedWouldBlock
	}
	return notLearnedNoEntryPoint
}

func attrStr(m pcommon.Map, k string) string {
	if v, ok := m.Get(k); ok {
		if v.Type() == pcommon.ValueTypeStr {
			return v.Str()
		}
		return v.AsString()
	}
	return ""
}

// storyFlow is a flow of a story: a sensitive read, then egress, with the bytes sent to its
// destination in the story.
type storyFlow struct {
	flow  profileFlow
	bytes int64
	read  *fileAccess
	dest  *egressCall
}

// flows are the story's flows of sensitive data: each successful read of a sensitive file
// followed by a successful (or in progress) connect or sendto, once per tool, pattern and
// destination. The tool is the egress's (else the read's).
func (f *facts) flows(sensitive []match.Path) []storyFlow {
	var out []storyFlow
	seen := map[profileFlow]bool{}
	for i := range f.files {
		fa := &f.files[i]
		if !fa.read || fa.failed != "" {
			continue
		}
		pattern, ok := match.Any(sensitive, fa.path)
		if !ok {
			continue
		}
		for j := range f.egress {
			e := &f.egress[j]
			if e.seq < fa.seq || e.failed != "" {
				continue
			}
			fl := flowOf(f.flowTool(fa, e), pattern, *e)
			if seen[fl] {
				continue
			}
			seen[fl] = true
			out = append(out, storyFlow{flow: fl, bytes: f.bytesTo(*e), read: fa, dest: e})
		}
	}
	return out
}

func (f *facts) flowTool(fa *fileAccess, e *egressCall) string {
	switch {
	case e.tool >= 0:
		return f.toolName(e.tool)
	case fa.tool >= 0:
		return f.toolName(fa.tool)
	}
	return ""
}
