package attackstoryprocessor

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

const (
	maxNarrativeSteps = 40
	maxArgRunes       = 32
)

// narrative tells the story in one deterministic line, in time order (children never before
// their parents), in UTC, leaving out what is unknown:
//
//	10:02:03.120 customer-agent (customer-ai/agent-7f9c, sa agent-sa) accepted a prompt in
//	main.(*Agent).HandlePrompt → chat model-x → execute_tool customer-data-export(query=…) →
//	read /data/customers.db → connect 203.0.113.9:443, 2.1 MB sent
func narrative(f *facts) string {
	if len(f.spans) == 0 {
		return ""
	}
	head := f.spans[f.head]
	res := head.scope.src.resource.Attributes()
	var sb strings.Builder
	sb.WriteString(time.Unix(0, int64(f.timeline[0].time)).UTC().Format("15:04:05.000"))
	sb.WriteByte(' ')
	name := attrStr(res, attrServiceName)
	if name == "" {
		name = attrStr(res, attrProcessExecutable)
	}
	if name == "" {
		name = "unknown workload"
	}
	sb.WriteString(name)
	var who []string
	ns, pod := attrStr(res, attrK8sNamespace), attrStr(res, attrK8sPod)
	switch {
	case ns != "" && pod != "":
		who = append(who, ns+"/"+pod)
	case pod != "":
		who = append(who, pod)
	case ns != "":
		who = append(who, "namespace "+ns)
	}
	if sa := attrStr(res, attrK8sServiceAccount); sa != "" {
		who = append(who, "sa "+sa)
	}
	if len(who) == 0 {
		if pid, ok := res.Get(attrProcessPID); ok {
			who = append(who, "pid "+pid.AsString())
		}
	}
	if len(who) > 0 {
		sb.WriteString(" (" + strings.Join(who, ", ") + ")")
	}
	sb.WriteByte(' ')

	var steps []string
	sentTo := map[string]bool{}
	for _, it := range f.timeline {
		step := f.step(it, sentTo)
		if step == "" {
			continue
		}
		steps = append(steps, step)
	}
	if f.st.root == nil {
		sb.WriteString("(root span missing) ")
	}
	if len(steps) == 0 {
		sb.WriteString("did nothing recorded")
		return sb.String()
	}
	// collapse repeats: "chat model-x ×3"
	var collapsed []string
	for i := 0; i < len(steps); {
		j := i + 1
		for j < len(steps) && steps[j] == steps[i] {
			j++
		}
		if n := j - i; n > 1 {
			collapsed = append(collapsed, steps[i]+" ×"+strconv.Itoa(n))
		} else {
			collapsed = append(collapsed, steps[i])
		}
		i = j
	}
	if len(collapsed) > maxNarrativeSteps {
		more := len(collapsed) - maxNarrativeSteps
		collapsed = append(collapsed[:maxNarrativeSteps], "… "+strconv.Itoa(more)+" more steps")
	}
	sb.WriteString(strings.Join(collapsed, " → "))
	if f.st.reason != "" {
		sb.WriteString(" (story incomplete: " + f.st.reason + ")")
	}
	return sb.String()
}

// step describes one timeline item, or "" when it is not worth telling.
func (f *facts) step(it item, sentTo map[string]bool) string {
	sp := f.spans[it.span]
	if it.event >= 0 {
		return fileStep(sp.span.Events().At(it.event).Attributes())
	}
	attrs := sp.span.Attributes()
	role := attrStr(attrs, attrRole)
	op := attrStr(attrs, attrGenAIOperation)
	switch {
	case op == "invoke_agent" || role == "prompt":
		fn := attrStr(attrs, attrCodeFunction)
		if fn == "" {
			return "accepted a prompt (" + sp.span.Name() + ")"
		}
		return "accepted a prompt in " + fn
	case op == "chat" || role == "inference":
		if p := f.parent[it.span]; p >= 0 && isInference(f.spans[p].span.Attributes()) {
			return "" // the wire-level call (decrypted TLS) of the configured function above it
		}
		return sp.span.Name()
	case op == "execute_tool" || role == "tool":
		name := attrStr(attrs, attrGenAIToolName)
		if name == "" {
			name = strings.TrimPrefix(sp.span.Name(), "execute_tool ")
		}
		var args []string
		for _, a := range spanArgs(attrs) {
			args = append(args, a[0]+"="+shorten(a[1]))
		}
		return "execute_tool " + name + "(" + strings.Join(args, ", ") + ")"
	}
	switch syscallName(sp.span) {
	case "connect", "sendto":
		for _, e := range f.egress {
			if e.span != it.span {
				continue
			}
			s := e.kind + " " + e.endpoint()
			if e.host != "" {
				s += " (" + e.host + ")"
			}
			if e.failed != "" {
				s += " failed (" + e.failed + ")"
			}
			if key := e.endpoint(); !sentTo[key] {
				if n := f.bytesTo(e); n > 0 {
					sentTo[key] = true
					s += ", " + formatBytes(n) + " sent"
				}
			}
			return s
		}
	case "execve":
		path := attrStr(attrs, attrProcessExecutable)
		s := "exec " + path
		if e := failure(attrs); e != "" {
			s += " failed (" + e + ")"
		}
		return s
	case "openat":
		return fileStep(attrs)
	}
	if sp == f.spans[f.head] {
		return "ran " + sp.span.Name()
	}
	return ""
}

func isInference(attrs pcommon.Map) bool {
	return attrStr(attrs, attrGenAIOperation) == "chat" || attrStr(attrs, attrRole) == "inference"
}

func fileStep(attrs pcommon.Map) string {
	str := func(k string) string { return attrStr(attrs, k) }
	path := str(attrFilePath)
	if path == "" {
		return ""
	}
	verb := "read "
	if strings.Contains(str(attrOpenFlags), "O_WRONLY") || strings.Contains(str(attrOpenFlags), "O_RDWR") {
		verb = "open for writing "
	}
	s := verb + path
	if e := failure(attrs); e != "" {
		s += " failed (" + e + ")"
	}
	return s
}

func shorten(s string) string { return shortenTo(s, maxArgRunes) }

// shortenTo keeps the first n runes (spaces normalised) and marks the cut with "…".
func shortenTo(s string, n int) string {
	s = normalizeSpace(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// formatBytes: decimal units with one decimal, "2.1 MB".
func formatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("kMGTP"[exp]) + "B"
}

func itoa(n int) string { return strconv.Itoa(n) }
