package finding

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

const (
	MaxNarrativeSteps = 40
)

// Narrative tells the story in one deterministic line, in time order (children never before
// their parents), in UTC, leaving out what is unknown:
//
//	10:02:03.120 customer-agent (customer-ai/agent-7f9c, sa agent-sa) accepted a prompt in
//	main.(*Agent).HandlePrompt → chat model-x → execute_tool customer-data-export(query=…) →
//	read /data/customers.db → connect 203.0.113.9:443, 2.1 MB sent
func Narrative(f *story.Facts, hints Hints) string {
	if len(f.Spans) == 0 {
		return ""
	}
	res := f.Spans[f.Head].Scope.Src.Resource.Attributes()
	var sb strings.Builder
	sb.WriteString(time.Unix(0, int64(f.Timeline[0].Time)).UTC().Format("15:04:05.000"))
	sb.WriteByte(' ')
	sb.WriteString(describeWorkload(res))
	// A story of several nodes (the gateway joined a service's work on another node to the
	// agent's tool call) names each workload with its node, the head's first. A story on one
	// node is told as before: a process the agent spawned there is in its exec step.
	if places := placesOf(f); places.joined() {
		for i, w := range places.workloads {
			if i > 0 {
				sb.WriteString(", with " + describeWorkload(w.res))
			}
			if w.node != "" {
				sb.WriteString(" on " + w.node)
			}
		}
		if places.workloadsOmitted > 0 {
			sb.WriteString(" and " + strconv.Itoa(places.workloadsOmitted) + " more workloads")
		}
		sb.WriteByte(':')
	}
	sb.WriteByte(' ')

	steps := steps(f, hints)
	if f.Story.Root == nil {
		sb.WriteString("(root span missing) ")
	}
	if len(steps) == 0 {
		sb.WriteString("did nothing recorded")
		return sb.String()
	}
	collapsed := boundSteps(foldFiles(collapseRepeats(steps)), MaxNarrativeSteps)
	sb.WriteString(strings.Join(collapsed, " → "))
	if f.Story.Reason != "" {
		sb.WriteString(" (story incomplete: " + f.Story.Reason + ")")
	}
	return sb.String()
}

// describeWorkload names a workload as the narrative does: its service (or executable) and,
// in parentheses, its pod and service account (or its pid). Values are bounded: they come from
// the agent collector's attribution of a traced process.
func describeWorkload(res pcommon.Map) string {
	attr := func(k string) string { return story.ShortenTo(story.AttrStr(res, k), maxNameRunes) }
	name := attr(story.AttrServiceName)
	if name == "" {
		name = attr(story.AttrProcessExecutable)
	}
	if name == "" {
		name = "unknown workload"
	}
	var who []string
	ns, pod := attr(story.AttrK8sNamespace), attr(story.AttrK8sPod)
	switch {
	case ns != "" && pod != "":
		who = append(who, ns+"/"+pod)
	case pod != "":
		who = append(who, pod)
	case ns != "":
		who = append(who, "namespace "+ns)
	}
	if sa := attr(story.AttrK8sServiceAccount); sa != "" {
		who = append(who, "sa "+sa)
	}
	if len(who) == 0 {
		if pid, ok := res.Get(story.AttrProcessPID); ok {
			who = append(who, "pid "+story.ShortenTo(pid.AsString(), maxNameRunes))
		}
	}
	if len(who) > 0 {
		name += " (" + strings.Join(who, ", ") + ")"
	}
	return name
}

// Hints are what the narrative cannot tell from the story alone: which reads are
// Sensitive, which spans the kernel blocked.
type Hints struct {
	Sensitive []match.Path
	blocked   []int // indexes in facts.spans
}

// Step is one step of the narrative. decisive steps (a prompt, a model call, a tool call, an
// exec, egress, a sensitive read, a blocked or denied attempt) are never left out; the others
// (ordinary file opens) may be folded or cut to keep the narrative within its bound.
type nstep struct {
	text     string
	decisive bool
	// file steps: verb ("read "/"open for writing "), path and failure, for folding
	verb, path, failed string
	n                  int // repeats (collapsed)
}

func (s nstep) String() string {
	if s.n > 1 {
		return s.text + " ×" + strconv.Itoa(s.n)
	}
	return s.text
}

// steps are the story's steps in narrative order.
func steps(f *story.Facts, hints Hints) []nstep {
	var out []nstep
	sentTo := map[string]bool{}
	for _, it := range f.Timeline {
		text := step(f, it, sentTo)
		if text == "" {
			continue
		}
		st := nstep{text: text, n: 1, decisive: true}
		sp := f.Spans[it.Span]
		var attrs pcommon.Map
		if it.Event >= 0 {
			attrs = sp.Span.Events().At(it.Event).Attributes()
		} else {
			attrs = sp.Span.Attributes()
		}
		if it.Event >= 0 || story.SyscallName(sp.Span) == "openat" {
			st.verb, st.path, st.failed = fileVerb(attrs), story.AttrStr(attrs, story.AttrFilePath), story.Failure(attrs)
			_, sensitive := match.Any(hints.Sensitive, st.path)
			sensitive = sensitive || len(story.SensitiveContent(attrs)) > 0
			denied := st.failed == "EPERM" || st.failed == "EACCES"
			st.decisive = sensitive || denied || (it.Event < 0 && slices.Contains(hints.blocked, it.Span))
		}
		out = append(out, st)
	}
	return out
}

// CollapseRepeats: the same step several times in a row is one, "chat model-x ×3".
func collapseRepeats(steps []nstep) []nstep {
	var out []nstep
	for _, s := range steps {
		if n := len(out); n > 0 && out[n-1].text == s.text {
			out[n-1].n += s.n
			continue
		}
		out = append(out, s)
	}
	return out
}

// minFold is the shortest run of ordinary file opens folded into one step.
const minFold = 3

// FoldFiles folds runs of ordinary file opens of the same kind under one folder (two levels
// deep at least, so that a run that wanders over the whole file system is not folded into
// "under /") into one step: "read 31 files under /usr/share/locale".
func foldFiles(steps []nstep) []nstep {
	var out []nstep
	for i := 0; i < len(steps); {
		s := steps[i]
		if s.decisive || s.path == "" {
			out = append(out, s)
			i++
			continue
		}
		dir := parentDir(s.path)
		j, files, failed := i+1, s.n, 0
		if s.failed != "" {
			failed += s.n
		}
		for ; j < len(steps); j++ {
			o := steps[j]
			if o.decisive || o.path == "" || o.verb != s.verb {
				break
			}
			d := commonDir(dir, parentDir(o.path))
			if strings.Count(d, "/") < 2 {
				break
			}
			dir = d
			files += o.n
			if o.failed != "" {
				failed += o.n
			}
		}
		if files < minFold {
			out = append(out, steps[i:j]...)
			i = j
			continue
		}
		text := strings.TrimSpace(s.verb) + " " + strconv.Itoa(files) + " files under " + dir
		if s.verb != "read " {
			text = "opened " + strconv.Itoa(files) + " files for writing under " + dir
		}
		if failed > 0 {
			text += " (" + strconv.Itoa(failed) + " failed)"
		}
		out = append(out, nstep{text: text, n: 1})
		i = j
	}
	return out
}

func parentDir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "/"
}

// commonDir is the longest folder both a and b are in.
func commonDir(a, b string) string {
	for a != b {
		if len(a) > len(b) {
			a = parentDir(a)
		} else {
			b = parentDir(b)
		}
		if a == "/" || b == "/" {
			return "/"
		}
	}
	return a
}

// BoundSteps keeps at most limit steps, each gap counted as one ("… 12 more steps").
// Decisive steps come first: ordinary steps are kept in story order while there is room. When
// the decisive steps and the gaps between them alone exceed the bound (more than about half
// of it when every decisive step is between ordinary ones, up to all of it when they are
// together), decisive steps are left out from the middle: the first and the last are kept
// (the egress or the exec that ends an attack is at the end).
func boundSteps(steps []nstep, limit int) []string {
	keep := make([]bool, len(steps))
	var decisive []int
	for i, s := range steps {
		if s.decisive {
			keep[i] = true
			decisive = append(decisive, i)
		}
	}
	told := countKept(keep)
	// set changes keep[i] and the count: only positions i and i+1 count differently.
	set := func(i int, v bool) int {
		before := toldAt(keep, i) + toldAt(keep, i+1)
		keep[i] = v
		return told - before + toldAt(keep, i) + toldAt(keep, i+1)
	}
	for told > limit && len(decisive) > 1 {
		mid := len(decisive) / 2
		told = set(decisive[mid], false)
		decisive = slices.Delete(decisive, mid, mid+1)
	}
	for i, s := range steps {
		if s.decisive || told >= limit {
			continue
		}
		if n := set(i, true); n > limit {
			keep[i] = false
			break
		} else {
			told = n
		}
	}
	return renderKept(steps, keep)
}

// countKept is the number of steps told: the kept ones and one per gap between them.
func countKept(keep []bool) int {
	n := 0
	for i := range keep {
		n += toldAt(keep, i)
	}
	return n
}

// toldAt is 1 when position i is told: kept, or the first step of a gap.
func toldAt(keep []bool, i int) int {
	if i >= len(keep) {
		return 0
	}
	if keep[i] || i == 0 || keep[i-1] {
		return 1
	}
	return 0
}

func renderKept(steps []nstep, keep []bool) []string {
	var out []string
	for i := 0; i < len(steps); {
		if keep[i] {
			out = append(out, steps[i].String())
			i++
			continue
		}
		j, n := i, 0
		for ; j < len(steps) && !keep[j]; j++ {
			n += steps[j].n
		}
		if j == i+1 {
			out = append(out, steps[i].String()) // a gap of one step costs the step itself
		} else {
			out = append(out, "… "+strconv.Itoa(n)+" more steps")
		}
		i = j
	}
	return out
}

// step describes one timeline item, or "" when it is not worth telling.
func step(f *story.Facts, it story.Item, sentTo map[string]bool) string {
	sp := f.Spans[it.Span]
	if it.Event >= 0 {
		return fileStep(sp.Span.Events().At(it.Event).Attributes())
	}
	attrs := sp.Span.Attributes()
	role := story.AttrStr(attrs, story.AttrRole)
	op := story.AttrStr(attrs, story.AttrGenAIOperation)
	switch {
	case op == "invoke_agent" || role == "prompt":
		fn := story.AttrStr(attrs, story.AttrCodeFunction)
		if fn == "" {
			return "accepted a prompt (" + sp.Span.Name() + ")"
		}
		return "accepted a prompt in " + fn
	case op == "chat" || role == "inference":
		if p := f.Parent[it.Span]; p >= 0 && isInference(f.Spans[p].Span.Attributes()) {
			return "" // the wire-level call (decrypted TLS) of the configured function above it
		}
		return sp.Span.Name()
	case op == "execute_tool" || role == "tool":
		name := story.AttrStr(attrs, story.AttrGenAIToolName)
		if name == "" {
			name = strings.TrimPrefix(sp.Span.Name(), "execute_tool ")
		}
		var args []string
		for _, a := range story.SpanArgs(attrs) {
			args = append(args, a[0]+"="+story.Shorten(a[1]))
		}
		return "execute_tool " + name + "(" + strings.Join(args, ", ") + ")"
	}
	switch story.SyscallName(sp.Span) {
	case "connect", "sendto":
		for _, e := range f.Egress {
			if e.Span != it.Span {
				continue
			}
			s := e.Kind + " " + e.Endpoint()
			if e.Host != "" {
				s += " (" + e.Host + ")"
			}
			if e.Failed != "" {
				s += " failed (" + e.Failed + ")"
			}
			// With a send aggregate to the destination, its step tells the bytes.
			if key := e.Endpoint(); !sentTo[key] && !f.HasSendTo(e) {
				if n := f.BytesTo(e); n > 0 {
					sentTo[key] = true
					s += ", " + story.FormatBytes(n) + " sent"
				}
			}
			return s
		}
	case "send":
		for _, e := range f.Egress {
			if e.Span == it.Span {
				return story.SendText(e)
			}
		}
	case "execve":
		path := story.AttrStr(attrs, story.AttrProcessExecutable)
		s := "exec " + path
		if e := story.Failure(attrs); e != "" {
			s += " failed (" + e + ")"
		}
		return s
	case "openat":
		return fileStep(attrs)
	}
	if sp == f.Spans[f.Head] {
		return "ran " + sp.Span.Name()
	}
	return ""
}

func isInference(attrs pcommon.Map) bool {
	return story.AttrStr(attrs, story.AttrGenAIOperation) == "chat" || story.AttrStr(attrs, story.AttrRole) == "inference"
}

func fileVerb(attrs pcommon.Map) string {
	if flags := story.AttrStr(attrs, story.AttrOpenFlags); strings.Contains(flags, "O_WRONLY") || strings.Contains(flags, "O_RDWR") {
		return "open for writing "
	}
	return "read "
}

func fileStep(attrs pcommon.Map) string {
	path := story.AttrStr(attrs, story.AttrFilePath)
	if path == "" {
		return ""
	}
	s := fileVerb(attrs) + path
	if e := story.Failure(attrs); e != "" {
		s += " failed (" + e + ")"
	}
	return s
}
