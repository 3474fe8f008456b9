package story

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/internal/redact"
)

// Facts is what the rules, the profile and the narrative need from a story, extracted once.
type Facts struct {
	Story    *Story
	Spans    []*Span // narrative order
	Timeline []Item  // spans and openat events, narrative order
	Parent   []int   // index in spans of each span's parent, -1 for none
	toolOf   []int   // index of the nearest tool span (the span itself or an ancestor), -1
	Head     int     // index of the root span, or of the first span when the root is missing

	Tools     []ToolCall
	Functions map[string][]string // by agenttrail.role
	Execs     []ExecCall
	Files     []FileAccess
	Egress    []EgressCall
	Prompt    string // redacted
	PromptIdx int    // span carrying the prompt, -1
	Inputs    []ModelInput
	// texts not scanned for markers, past maxInputTexts or maxInputBytes
	InputsPastCount, InputsPastBytes int
	InputBytes                       int
	Connects                         int
	BytesSent                        int64
	HasBytes                         bool
	// MCPServers: the MCP servers the agent spoke to, in the order first seen (at most 64).
	MCPServers []MCPServer
	// bytes sent per destination: from the receiver's send aggregates where the story has any
	// for the destination (they count every send on the socket), else from the connect and
	// sendto spans (bytes the receiver or an instrumentation put on them). Never both: a
	// sendto is also counted in its socket's aggregate.
	bytesByDest, sysBytesByDest map[string]int64
	hasSend                     map[string]bool
	inbound                     *Inbound
	Replies                     int // sends to peers that connected to the process: not egress
}

// Item is one step of the timeline: a span (event -1) or one of its openat events.
type Item struct {
	Span  int
	Event int
	Time  uint64
}

// ModelInput is text other than the user's prompt that a tool handled or the model was given:
// a tool's arguments and result, a model call's input. Indirect prompt injection arrives this
// way (a document or web page read by a tool, then passed to the model).
type ModelInput struct {
	Kind InputKind
	Span int
	Text string // as on the span: already through the receiver's redaction policy
	Tool string // InputToolDescription: the tool described ("server:tool")
}

type InputKind int

const (
	InputToolArgs   InputKind = iota // the arguments of a tool call
	InputToolResult                  // what a tool returned
	InputModel                       // the input of a model call
	// InputToolDescription: a tool's description in an MCP server's tools/list response, which
	// the agent hands the model.
	InputToolDescription
)

func (k InputKind) String() string {
	switch k {
	case InputToolArgs:
		return "tool_arguments"
	case InputToolResult:
		return "tool_result"
	case InputToolDescription:
		return "tool_description"
	}
	return "model_input"
}

// Bounds of the text of one story scanned for injection markers: every value comes from a
// traced process (arguments are at most 256 bytes, message content 64 KiB, but other
// instrumentation may put more on a span).
const (
	maxInputTexts     = 512
	MaxInputTextBytes = 64 << 10
	MaxInputBytes     = 1 << 20
)

// Attributes that carry content entering or leaving the model besides the prompt.
const (
	attrGenAIToolArgs   = "gen_ai.tool.call.arguments"
	AttrGenAIToolResult = "gen_ai.tool.call.result"
	// attrToolInferredReceived: what an inferred tool span's tool received over HTTP (the
	// receiver's agenttrail.tool.inferred.received).
	attrToolInferredReceived = "agenttrail.tool.inferred.received"
)

type ToolCall struct {
	Name string
	Span int
	Args [][2]string // sorted by name
}

type ExecCall struct {
	Path, Cmdline string
	Span, Tool    int
	Failed        string
	seq           int
}

type FileAccess struct {
	Path, flags string
	// Content: the detectors that matched the file's beginning (agenttrail.file.sensitive_content).
	Content     []string
	Read        bool
	Failed      string
	Span, Event int
	Tool        int
	Seq         int // position in the timeline
}

// EgressCall is data leaving the process, or a connection that may carry it: a connect or
// sendto syscall span, or a socket I/O aggregate of the receiver (kind "send": the bytes one
// call sent to one peer, over a connection of this story or an older one).
type EgressCall struct {
	Kind    string // connect, sendto or send
	Dest    string // address:port ([v6]:port)
	Address string
	Addr    netip.Addr
	Port    int
	Host    string
	Bytes   int64
	Failed  string
	Span    int
	Tool    int
	Seq     int

	// Of a send aggregate only.
	Calls     int64    // send calls added up
	Connected string   // agenttrail.socket.connected: this_trace, earlier, before_tracing, unknown
	AgeMs     int64    // connect seen → first send; -1 when not known
	DNS       []string // query names sent (first 16), when the peer is a DNS server
}

func (e EgressCall) Endpoint() string { return e.Dest }

var Redactor = redact.New()

// Extract reads the facts of a story.
func Extract(st *Story) *Facts { return ExtractWith(st, nil) }

// ExtractWith reads the facts of a story; a send to a peer that inbound says connected to the
// process is a reply on an inbound connection, not egress (inbound may be nil).
func ExtractWith(st *Story, inbound *Inbound) *Facts {
	f := &Facts{Story: st, Functions: map[string][]string{}, PromptIdx: -1, Head: -1, inbound: inbound}
	f.buildTimeline()
	for i, sp := range f.Spans {
		if sp == st.Root {
			f.Head = i
		}
	}
	if f.Head < 0 && len(f.Spans) > 0 {
		f.Head = 0
	}
	var prompts []string
	for pos, it := range f.Timeline {
		sp := f.Spans[it.Span]
		attrs := sp.Span.Attributes()
		if it.Event >= 0 {
			ev := sp.Span.Events().At(it.Event)
			f.addFile(ev.Attributes(), it.Span, it.Event, pos)
			continue
		}
		f.addMCP(sp.Span, it.Span)
		role := AttrStr(attrs, AttrRole)
		op := AttrStr(attrs, AttrGenAIOperation)
		if fn := AttrStr(attrs, AttrCodeFunction); fn != "" && role != "" {
			if !slices.Contains(f.Functions[role], fn) {
				f.Functions[role] = append(f.Functions[role], fn)
			}
		}
		switch {
		case op == "execute_tool" || role == "tool":
			name := AttrStr(attrs, AttrGenAIToolName)
			if name == "" {
				name = strings.TrimPrefix(sp.Span.Name(), "execute_tool ")
			}
			name = MCPToolName(attrs, name)
			args := SpanArgs(attrs)
			f.Tools = append(f.Tools, ToolCall{Name: name, Span: it.Span, Args: args})
			for _, a := range args {
				f.addInput(InputToolArgs, it.Span, a[1])
			}
			// gen_ai.tool.call.arguments repeats the captured arguments as JSON: not scanned twice.
			if len(args) == 0 {
				f.addInput(InputToolArgs, it.Span, AttrStr(attrs, attrGenAIToolArgs))
			}
			f.addInput(InputToolResult, it.Span, AttrStr(attrs, AttrGenAIToolResult))
			// A tool span the receiver inferred from the model's tool call (an agent whose
			// functions cannot be probed) carries what the tool received instead of its result.
			f.addInput(InputToolResult, it.Span, AttrStr(attrs, attrToolInferredReceived))
		case op == "invoke_agent" || role == "prompt":
			var parts []string
			for _, a := range SpanArgs(attrs) {
				parts = append(parts, a[1])
			}
			for _, k := range []string{attrGenAIPrompt, attrGenAIInput} {
				if v := AttrStr(attrs, k); v != "" {
					parts = append(parts, v)
				}
			}
			if len(parts) > 0 {
				prompts = append(prompts, strings.Join(parts, "\n"))
				if f.PromptIdx < 0 {
					f.PromptIdx = it.Span
				}
			}
		case op == "chat" || role == "inference":
			// The model's input: the configured function's arguments, or the request's
			// messages decoded from TLS (gen_ai.input.messages, when the receiver exports them).
			for _, a := range SpanArgs(attrs) {
				f.addInput(InputModel, it.Span, a[1])
			}
			for _, k := range []string{attrGenAIPrompt, attrGenAIInput} {
				f.addInput(InputModel, it.Span, AttrStr(attrs, k))
			}
		}
		switch SyscallName(sp.Span) {
		case "connect", "sendto", "send":
			f.addEgress(sp.Span, it.Span, pos)
		case "execve":
			f.Execs = append(f.Execs, ExecCall{
				Path: AttrStr(attrs, AttrProcessExecutable), Cmdline: AttrStr(attrs, attrProcessCommand),
				Span: it.Span, Tool: f.toolOf[it.Span], Failed: Failure(attrs), seq: pos,
			})
		case "openat":
			f.addFile(attrs, it.Span, -1, pos)
		}
	}
	if len(prompts) > 0 {
		f.Prompt, _ = Redactor.String(strings.Join(prompts, "\n"))
	}
	f.finishBytes()
	return f
}

// addInput keeps a text to scan, within the story's bounds; what is past them is counted.
func (f *Facts) addInput(kind InputKind, span int, text string) {
	if text == "" {
		return
	}
	if len(f.Inputs) >= maxInputTexts {
		f.InputsPastCount++
		return
	}
	if len(text) > MaxInputTextBytes {
		text = text[:MaxInputTextBytes]
	}
	if f.InputBytes+len(text) > MaxInputBytes {
		f.InputsPastBytes++
		return
	}
	f.InputBytes += len(text)
	f.Inputs = append(f.Inputs, ModelInput{Kind: kind, Span: span, Text: text})
}

// buildTimeline orders spans and their openat events (see topoTimeOrder) and records the
// Parent and nearest tool span of every span.
func (f *Facts) buildTimeline() {
	st := f.Story
	for i, sp := range st.spans {
		sp.Ord = i
	}
	nodes := make([]orderNode, 0, len(st.spans)+4)
	refs := make([]Item, 0, len(st.spans)+4)
	for i, sp := range st.spans {
		p := -1
		if !sp.parent.IsEmpty() {
			if ps := st.byID[sp.parent]; ps != nil {
				p = ps.Ord
			}
		}
		nodes = append(nodes, orderNode{time: sp.Start, tie: sp.ID[:], parent: p})
		refs = append(refs, Item{Span: i, Event: -1, Time: sp.Start})
	}
	for i, sp := range st.spans {
		evs := sp.Span.Events()
		for e := 0; e < evs.Len(); e++ {
			if evs.At(e).Name() != "openat" {
				continue
			}
			tie := make([]byte, 12)
			copy(tie, sp.ID[:])
			binary.BigEndian.PutUint32(tie[8:], uint32(e))
			ts := uint64(evs.At(e).Timestamp())
			nodes = append(nodes, orderNode{time: ts, tie: tie, parent: i})
			refs = append(refs, Item{Span: i, Event: e, Time: ts})
		}
	}
	order := topoTimeOrder(nodes)
	// renumber spans in narrative order
	spanPos := make([]int, len(st.spans))
	f.Spans = make([]*Span, 0, len(st.spans))
	for _, n := range order {
		if r := refs[n]; r.Event < 0 {
			spanPos[r.Span] = len(f.Spans)
			f.Spans = append(f.Spans, st.spans[r.Span])
		}
	}
	f.Timeline = make([]Item, len(order))
	for i, n := range order {
		r := refs[n]
		f.Timeline[i] = Item{Span: spanPos[r.Span], Event: r.Event, Time: r.Time}
	}
	f.Parent = make([]int, len(f.Spans))
	f.toolOf = make([]int, len(f.Spans))
	for i := range st.spans {
		f.Parent[spanPos[i]] = -1
		if p := nodes[i].parent; p >= 0 && p != i {
			f.Parent[spanPos[i]] = spanPos[p]
		}
	}
	for i, sp := range f.Spans {
		f.toolOf[i] = -1
		if isToolSpan(sp.Span) {
			f.toolOf[i] = i
		} else if p := f.Parent[i]; p >= 0 && p < i {
			f.toolOf[i] = f.toolOf[p] // parents come first in narrative order
		}
	}
}

func (f *Facts) addFile(attrs pcommon.Map, span, event, seq int) {
	path := AttrStr(attrs, AttrFilePath)
	if path == "" {
		return
	}
	flags := AttrStr(attrs, AttrOpenFlags)
	f.Files = append(f.Files, FileAccess{
		Path: path, flags: flags, Read: flags == "" || !strings.Contains(flags, "O_WRONLY"),
		Content: SensitiveContent(attrs), Failed: Failure(attrs), Span: span, Event: event, Tool: f.toolOf[span], Seq: seq,
	})
}

func (f *Facts) addEgress(s ptrace.Span, span, seq int) {
	attrs := s.Attributes()
	address := AttrStr(attrs, AttrPeerAddress)
	if address == "" {
		return // a unix socket or an unknown peer
	}
	e := EgressCall{Kind: SyscallName(s), Address: address, Span: span, Tool: f.toolOf[span], Seq: seq, Failed: Failure(attrs)}
	if a, err := netip.ParseAddr(address); err == nil {
		e.Addr = a.Unmap()
		e.Address = e.Addr.String()
	}
	if v, ok := attrs.Get(AttrPeerPort); ok {
		e.Port = int(v.Int())
	}
	for _, k := range []string{attrServerAddress, attrPeerName} {
		if h := AttrStr(attrs, k); h != "" {
			if _, err := netip.ParseAddr(h); err != nil {
				e.Host = h
				break
			}
		}
	}
	for _, k := range []string{attrBytesSent, attrHTTPRequestBody, attrHTTPRequestTotal} {
		if v, ok := attrs.Get(k); ok && v.Int() > 0 {
			e.Bytes = v.Int()
			break
		}
	}
	if e.Addr.Is6() {
		e.Dest = "[" + e.Address + "]:" + Itoa(e.Port)
	} else {
		e.Dest = e.Address + ":" + Itoa(e.Port)
	}
	if e.Kind == "sendto" && e.Bytes == 0 {
		if v, ok := attrs.Get(attrSyscallResult); ok && v.Int() > 0 {
			e.Bytes = v.Int()
		}
	}
	if e.Kind == "send" {
		if f.inbound.has(f.Spans[span].Scope.Src.proc, e.Dest) {
			f.Replies++
			return
		}
		f.addSend(attrs, &e)
	}
	if e.Kind == "connect" {
		f.Connects++
	}
	if f.bytesByDest == nil {
		f.bytesByDest, f.sysBytesByDest, f.hasSend = map[string]int64{}, map[string]int64{}, map[string]bool{}
	}
	if e.Kind == "send" {
		f.hasSend[e.Dest] = true
		f.bytesByDest[e.Dest] += e.Bytes
	} else {
		f.sysBytesByDest[e.Dest] += e.Bytes
	}
	f.Egress = append(f.Egress, e)
}

// Bounds of what a send aggregate may bring (the receiver writes at most 16 names of at most
// 255 bytes; other instrumentation could write more).
const (
	maxDNSNames   = 16
	maxDNSNameLen = 255
)

// addSend reads the receiver's aggregate of the sends of one call to one peer.
func (f *Facts) addSend(attrs pcommon.Map, e *EgressCall) {
	e.Bytes = max(intAttr(attrs, AttrEgressBytes), 0)
	e.Calls = max(intAttr(attrs, AttrEgressCalls), 0)
	e.Connected = AttrStr(attrs, AttrSocketConnected)
	e.AgeMs = -1
	if v, ok := attrs.Get(AttrConnectionAge); ok && v.Type() == pcommon.ValueTypeInt && v.Int() >= 0 {
		e.AgeMs = v.Int()
	}
	if v, ok := attrs.Get(AttrDNSNames); ok && v.Type() == pcommon.ValueTypeSlice {
		for i := 0; i < v.Slice().Len() && len(e.DNS) < maxDNSNames; i++ {
			if n := v.Slice().At(i); n.Type() == pcommon.ValueTypeStr && n.Str() != "" && len(n.Str()) <= maxDNSNameLen {
				e.DNS = append(e.DNS, n.Str())
			}
		}
	}
	if n := AttrStr(attrs, AttrDNSName); len(e.DNS) == 0 && n != "" && len(n) <= maxDNSNameLen {
		e.DNS = []string{n}
	}
}

func intAttr(m pcommon.Map, k string) int64 {
	if v, ok := m.Get(k); ok && v.Type() == pcommon.ValueTypeInt {
		return v.Int()
	}
	return 0
}

// finishBytes settles the bytes per destination (see bytesByDest) and in the whole story.
func (f *Facts) finishBytes() {
	for d, n := range f.sysBytesByDest {
		if !f.hasSend[d] {
			f.bytesByDest[d] = n
		}
	}
	for _, n := range f.bytesByDest {
		f.BytesSent += n
	}
	f.HasBytes = f.BytesSent > 0
}

// HasSendTo: the story has a send aggregate to the destination of e (its bytes are told there).
func (f *Facts) HasSendTo(e EgressCall) bool { return f.hasSend[e.Dest] }

// BytesTo is the bytes sent to the destination of e in the whole story (summed as the egress
// calls are collected: the rules ask once per sensitive read and destination).
func (f *Facts) BytesTo(e EgressCall) int64 { return f.bytesByDest[e.Dest] }

func (f *Facts) HeadResource() pcommon.Map {
	if f.Head < 0 {
		return pcommon.NewMap()
	}
	return f.Spans[f.Head].Scope.Src.Resource.Attributes()
}

// SyscallName is the syscall a span records ("" for function spans).
func SyscallName(s ptrace.Span) string {
	if v, ok := s.Attributes().Get(attrSyscall); ok {
		return v.Str()
	}
	if _, ok := s.Attributes().Get(AttrRole); ok {
		return ""
	}
	switch n := s.Name(); n {
	case "connect", "sendto", "accept", "execve", "openat":
		return n
	}
	// The receiver's socket I/O aggregate ("send {peer}", "receive {peer}"): "send" when it
	// sent anything.
	if v, ok := s.Attributes().Get(AttrEgressCalls); ok && v.Type() == pcommon.ValueTypeInt {
		if v.Int() > 0 || intAttr(s.Attributes(), AttrEgressBytes) > 0 {
			return "send"
		}
		return "receive"
	}
	return ""
}

func isToolSpan(s ptrace.Span) bool {
	attrs := s.Attributes()
	return AttrStr(attrs, AttrGenAIOperation) == "execute_tool" || AttrStr(attrs, AttrRole) == "tool"
}

// SpanArgs are the captured arguments (agenttrail.arg.NAME), sorted by name.
func SpanArgs(attrs pcommon.Map) [][2]string {
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

// Failure is the error of a failed syscall ("" when it succeeded, or would have blocked: a
// non-blocking accept or read with nothing pending, EAGAIN/EWOULDBLOCK, or a connect in
// progress, EINPROGRESS, are how event loops work, not failures).
func Failure(attrs pcommon.Map) string {
	if wouldBlock(attrs) {
		return ""
	}
	if v := AttrStr(attrs, attrErrorType); v != "" {
		return v
	}
	if v, ok := attrs.Get(attrSyscallResult); ok && v.Type() == pcommon.ValueTypeInt && v.Int() < 0 {
		return "error " + Itoa(int(-v.Int()))
	}
	return ""
}

// wouldBlock: the syscall returned EAGAIN, EWOULDBLOCK or EINPROGRESS.
func wouldBlock(attrs pcommon.Map) bool {
	switch AttrStr(attrs, attrErrorType) {
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
	NotLearnedNoEntryPoint = "no_entry_point"
	NotLearnedWouldBlock   = "would_block"
	NotLearnedFinding      = "finding"
)

// NotLearnable says why the story may not be learned, "" when it may: it must have a root the
// user configured — a prompt span anywhere in it, or a root span that is a configured function
// or a model call (the receiver sets agenttrail.role only on the functions listed in its
// configuration and on model calls it decodes from TLS) or one of learning.entry_points. Orphan syscall stories (an accept of the next
// request, an openat at start-up, a non-blocking accept that found nothing) are emitted and
// judged, but would fill min_stories with noise and teach the profile the process's start-up.
func (f *Facts) NotLearnable(entryPoints []string) string {
	allWouldBlock := len(f.Spans) > 0
	for _, sp := range f.Spans {
		if isPromptSpan(sp.Span) {
			return ""
		}
		if allWouldBlock && (SyscallName(sp.Span) == "" || !wouldBlock(sp.Span.Attributes())) {
			allWouldBlock = false
		}
	}
	if root := f.Story.Root; root != nil {
		attrs := root.Span.Attributes()
		fn := AttrStr(attrs, AttrCodeFunction)
		// A root with a role is a configured function, or a model call the receiver found in
		// TLS traffic: the agent's own work either way (an agent traced without configured
		// Functions still learns from its model calls).
		if AttrStr(attrs, AttrRole) != "" || AttrStr(attrs, AttrGenAIOperation) != "" {
			return ""
		}
		for _, e := range entryPoints {
			if e == root.Span.Name() || (fn != "" && e == fn) {
				return ""
			}
		}
	}
	if allWouldBlock {
		return NotLearnedWouldBlock
	}
	return NotLearnedNoEntryPoint
}

func AttrStr(m pcommon.Map, k string) string {
	if v, ok := m.Get(k); ok {
		if v.Type() == pcommon.ValueTypeStr {
			return v.Str()
		}
		return v.AsString()
	}
	return ""
}

func (f *Facts) FlowTool(fa *FileAccess, e *EgressCall) string {
	switch {
	case e.Tool >= 0:
		return f.ToolName(e.Tool)
	case fa.Tool >= 0:
		return f.ToolName(fa.Tool)
	}
	return ""
}

// ToolBefore is the span of the last tool call that started before span i and is not one of
// its ancestors (-1 for none).
func (f *Facts) ToolBefore(i int) int {
	best := -1
	for _, t := range f.Tools {
		if t.Span >= i {
			break
		}
		if !f.IsAncestor(t.Span, i) {
			best = t.Span
		}
	}
	return best
}

func (f *Facts) IsAncestor(a, i int) bool {
	for cur := i; ; {
		p := f.Parent[cur]
		if p < 0 || p >= cur { // parents come first in narrative order
			return false
		}
		if p == a {
			return true
		}
		cur = p
	}
}

// ToolFile is the first file the tool at span read ("" for none, or no tool).
func (f *Facts) ToolFile(tool int) string {
	if tool < 0 {
		return ""
	}
	for _, fa := range f.Files {
		if fa.Tool == tool && fa.Read && fa.Failed == "" {
			return fa.Path
		}
	}
	return ""
}

func (f *Facts) ToolArgs(span int) [][2]string {
	for _, t := range f.Tools {
		if t.Span == span {
			return t.Args
		}
	}
	return nil
}

func (f *Facts) ToolName(span int) string {
	for _, t := range f.Tools {
		if t.Span == span {
			return t.Name
		}
	}
	return f.Spans[span].Span.Name()
}
