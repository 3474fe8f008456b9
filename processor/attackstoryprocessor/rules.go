package attackstoryprocessor

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/enforcement"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/policy"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// ruleDef describes a rule: built-in or custom.
type ruleDef struct {
	id          string
	title       string
	explanation string // one line: why this matters
	severity    int    // the rule's usual severity; a match may raise or lower it
	atlas       []string
	supporting  bool // evidence for other findings only (prompt_injection_markers)
	order       int  // position among the rules, for ties
}

var builtinRules = []*ruleDef{
	{id: story.RuleToolOutsideProfile, title: "Tool call outside the agent's profile or allowed tools", severity: story.SevMedium,
		atlas:       []string{"AML.T0053"},
		explanation: "The agent invoked a tool it is not allowed to or never used while its profile was learned: the model may have been steered into abusing a tool."},
	{id: story.RuleSensitiveReadEgress, title: "Sensitive data read, then sent out", severity: story.SevHigh,
		atlas:       []string{"AML.T0086", "AML.T0057"},
		explanation: "A sensitive file was read and an outbound connection followed in the same request: the pattern of data exfiltration through an agent tool."},
	{id: story.RuleEgressOutsideProfile, title: "Connection to a destination outside the profile or allowed destinations", severity: story.SevMedium,
		atlas:       []string{"AML.T0025"},
		explanation: "The agent connected to a destination it is not allowed to or never reached while its profile was learned."},
	{id: story.RuleUnexpectedExecutable, title: "Shell or unexpected program started by a tool", severity: story.SevMedium,
		atlas:       []string{"AML.T0050"},
		explanation: "A tool started a shell or a program outside the learned profile: the agent may be running commands chosen by an attacker."},
	{id: story.RulePromptInjection, title: "Prompt injection markers in the prompt", severity: story.SevLow, supporting: true,
		atlas:       []string{"AML.T0051"},
		explanation: "The prompt contains phrases used to override an agent's instructions."},
	{id: story.RuleIndirectInjection, title: "Prompt injection markers in content the model was given", severity: story.SevMedium,
		atlas:       []string{"AML.T0051.001"},
		explanation: "Text that did not come from the user's prompt (a tool's result, a document or page a tool read, the input of a model call) contains phrases used to override an agent's instructions: an indirect prompt injection."},
	{id: story.RuleDataVolumeAnomaly, title: "Data volume far above the profile", severity: story.SevMedium,
		atlas:       []string{"AML.T0025"},
		explanation: "The request sent far more data, or opened far more connections, than the workload usually does."},
}

func init() {
	for i, r := range builtinRules {
		r.order = i
	}
}

func builtinRule(id string) *ruleDef {
	for _, r := range builtinRules {
		if r.id == id {
			return r
		}
	}
	return nil
}

func builtinRuleIDs() []string {
	ids := make([]string, len(builtinRules))
	for i, r := range builtinRules {
		ids[i] = r.id
	}
	return ids
}

// evidence is one piece of a rule's match.
type evidence struct {
	text     string // one line, e.g. `tool "x" is not in allowed_tools`
	boundary bool   // a declared boundary was crossed (a finding in every mode)
	severity int
	span     int // index in facts.spans; -1 for none
	event    int // index of the span event (openat), -1 for the span itself
	file     string
	egress   *story.EgressCall
	exec     *story.ExecCall
}

// hit is a rule that matched a story, with its evidence.
type hit struct {
	rule     *ruleDef
	severity int
	evidence []evidence
}

func (h *hit) add(e evidence) {
	h.evidence = append(h.evidence, e)
	h.severity = max(h.severity, e.severity)
}

// evalContext is what a story is judged against.
type evalContext struct {
	f        *story.Facts
	pol      *policy.Policy
	prof     *profile.Profile // nil when not profiled
	mode     profile.Mode
	cfg      *Config
	markers  []string
	disabled map[string]bool
	custom   []*customRule

	blocked            []enforcement.BlockMatch // kernel decisions this story holds
	enforced           bool                     // the workload's programs are attached
	toolNotEnforceable bool                     // set by evaluate: a tool outside the profile ran in mode enforce
	toolSpans          []int                    // those tools' spans
}

func (c *evalContext) profileComplete() bool { return c.prof != nil && c.prof.Complete() }

// evaluate runs every rule and keeps what the mode allows: boundary evidence always,
// everything else in alert and enforce modes only. prompt_injection_markers is kept only next
// to another rule's hit unless rules.prompt_injection_standalone.
func (c *evalContext) evaluate() []*hit {
	var hits []*hit
	keep := func(h *hit) {
		if h == nil {
			return
		}
		var ev []evidence
		h.severity = 0
		for _, e := range h.evidence {
			if e.boundary || h.rule.supporting || c.mode.Alerting() {
				ev = append(ev, e)
				h.severity = max(h.severity, e.severity)
			}
		}
		if len(ev) > 0 {
			h.evidence = ev
			hits = append(hits, h)
		}
	}
	for _, r := range builtinRules {
		if c.disabled[r.id] {
			continue
		}
		switch r.id {
		case story.RuleToolOutsideProfile:
			keep(c.toolOutsideProfile(r))
		case story.RuleSensitiveReadEgress:
			keep(c.sensitiveReadThenEgress(r))
		case story.RuleEgressOutsideProfile:
			keep(c.egressOutsideProfile(r))
		case story.RuleUnexpectedExecutable:
			keep(c.unexpectedExecutable(r))
		case story.RulePromptInjection:
			keep(c.promptInjection(r))
		case story.RuleIndirectInjection:
			keep(c.indirectInjection(r))
		case story.RuleDataVolumeAnomaly:
			keep(c.dataVolume(r))
		}
	}
	if len(c.custom) > 0 {
		var vars map[string]any
		for _, cr := range c.custom {
			if !cr.allModes && !c.mode.Alerting() {
				continue
			}
			if vars == nil {
				vars = storyVariables(c)
			}
			if cr.eval(vars) {
				h := &hit{rule: cr.def}
				h.add(evidence{text: "the expression is true: " + story.ShortenTo(cr.expression, 200), boundary: cr.allModes, severity: cr.def.severity, span: c.f.Head, event: -1})
				keep(h)
			}
		}
	}
	c.addEnforcement(&hits)
	standalone := c.cfg.Rules.PromptInjectionStandalone
	primary := 0
	for _, h := range hits {
		if !h.rule.supporting {
			primary++
		}
	}
	if primary == 0 && !(standalone && c.mode.Alerting()) {
		return nil
	}
	slices.SortStableFunc(hits, func(a, b *hit) int {
		if a.severity != b.severity {
			return b.severity - a.severity
		}
		return a.rule.order - b.rule.order
	})
	return hits
}

// addEnforcement adds the kernel's decisions to the hits of their rules (a blocked attempt is
// always part of the finding), and, in mode enforce, raises a tool outside the profile or the
// allowed tools to Critical: the kernel cannot stop a tool call.
func (c *evalContext) addEnforcement(hits *[]*hit) {
	for _, m := range c.blocked {
		r := builtinRule(m.Rule)
		var h *hit
		for _, x := range *hits {
			if x.rule == r {
				h = x
			}
		}
		if h == nil {
			h = &hit{rule: r}
			*hits = append(*hits, h)
		}
		ev := evidence{text: "blocked: " + enforcement.BlockedText(m.D, m.Action), boundary: true, severity: story.SevHigh, span: m.Span, event: -1}
		if !m.OnHead {
			for i := range c.f.Egress {
				if c.f.Egress[i].Span == m.Span {
					ev.egress = &c.f.Egress[i]
				}
			}
			for i := range c.f.Execs {
				if c.f.Execs[i].Span == m.Span {
					ev.exec = &c.f.Execs[i]
				}
			}
		}
		h.add(ev)
	}
	if !c.enforced {
		return
	}
	for _, h := range *hits {
		if h.rule.id != story.RuleToolOutsideProfile {
			continue
		}
		c.toolNotEnforceable = true
		for _, e := range h.evidence {
			if e.span >= 0 && !slices.Contains(c.toolSpans, e.span) {
				c.toolSpans = append(c.toolSpans, e.span)
			}
		}
		h.add(evidence{text: "the tool call was " + enforcement.ToolNotEnforceableText, severity: story.SevCritical, span: c.f.Head, event: -1})
	}
}

func (c *evalContext) toolOutsideProfile(r *ruleDef) *hit {
	h := &hit{rule: r}
	seen := map[string]bool{}
	for _, t := range c.f.Tools {
		if seen[t.Name] {
			continue
		}
		seen[t.Name] = true
		switch {
		case c.pol.AllowedTools != nil && !hasKey(c.pol.AllowedTools, t.Name):
			h.add(evidence{text: fmt.Sprintf("tool %s is not in allowed_tools (%s)", t.Name, strings.Join(story.SortedKeys(c.pol.AllowedTools), ", ")),
				boundary: true, severity: story.SevHigh, span: t.Span, event: -1})
		case c.profileComplete() && !c.prof.HasTool(t.Name):
			h.add(evidence{text: fmt.Sprintf("tool %s was never called while the profile was learned (profile version %d)", t.Name, c.prof.Data.Version),
				severity: story.SevMedium, span: t.Span, event: -1})
		}
	}
	return nonEmpty(h)
}

func (c *evalContext) sensitiveReadThenEgress(r *ruleDef) *hit {
	h := &hit{rule: r}
	for i := range c.f.Files {
		fa := &c.f.Files[i]
		if !fa.Read || fa.Failed != "" {
			continue
		}
		pattern, ok := match.Any(c.pol.Sensitive, fa.Path)
		if !ok {
			continue
		}
		var first, outside *story.EgressCall
		var firstNote, outsideNote string
		for j := range c.f.Egress {
			e := &c.f.Egress[j]
			if e.Seq < fa.Seq {
				continue
			}
			known, note := c.knownFlow(fa, pattern, e)
			if known {
				continue // a declared or learned flow: the data is expected to go there
			}
			if first == nil {
				first, firstNote = e, note
			}
			if outside == nil && !c.knownDestination(*e) {
				outside, outsideNote = e, note
			}
		}
		if first == nil {
			continue
		}
		// High; Critical when the data went to a destination neither allowed nor learned.
		dest, note, sev := first, firstNote, story.SevHigh
		if outside != nil {
			dest, note, sev = outside, outsideNote, story.SevCritical
		}
		h.add(evidence{text: fmt.Sprintf("read %s (sensitive: %s)", fa.Path, pattern), severity: sev, span: fa.Span, event: fa.Event, file: fa.Path})
		text := fmt.Sprintf("then %s %s", dest.Kind, dest.Endpoint())
		if outside != nil {
			text += " (neither allowed nor in the profile)"
		}
		if n := c.f.BytesTo(*dest); n > 0 {
			text += ", " + story.FormatBytes(n) + " sent"
		}
		h.add(evidence{text: text + note, severity: sev, span: dest.Span, event: -1, egress: dest})
		break // one read and its egress tell the story; the narrative has the rest
	}
	return nonEmpty(h)
}

// knownFlow reports whether the read of a file (of the sensitive pattern) followed by egress
// e is a flow declared in allowed_flows or learned by the complete profile, within its
// volume. When the flow is known but its volume is not, note says so.
func (c *evalContext) knownFlow(fa *story.FileAccess, pattern string, e *story.EgressCall) (bool, string) {
	f := c.f
	tool := f.FlowTool(fa, e)
	n := f.BytesTo(*e)
	covered, over := c.pol.DeclaredFlow(tool, fa.Path, *e, n)
	if covered {
		return true, ""
	}
	var note string
	if over >= 0 {
		note = fmt.Sprintf(": more than workloads allowed_flows[%d].max_bytes (%s)", over, story.FormatBytes(c.pol.Flows[over].MaxBytes))
	}
	if !c.profileComplete() {
		return false, note
	}
	factor := c.cfg.Rules.DataVolumeFactor
	known, learned := c.prof.KnownFlow(profile.FlowOf(tool, pattern, *e), n, factor)
	if known {
		return true, ""
	}
	if learned != nil {
		note = fmt.Sprintf(": a learned flow, but more than %g × its largest volume (%s)", factor, story.FormatBytes(learned.BytesMax))
	}
	return false, note
}

// knownDestination: allowed, or in the complete profile.
func (c *evalContext) knownDestination(e story.EgressCall) bool {
	if c.pol.AllowedDests != nil && c.pol.DestinationAllowed(e) {
		return true
	}
	return c.profileComplete() && c.prof.KnowsDestination(e)
}

func (c *evalContext) egressOutsideProfile(r *ruleDef) *hit {
	h := &hit{rule: r}
	seen := map[string]bool{}
	for i := range c.f.Egress {
		e := &c.f.Egress[i]
		key := e.Endpoint()
		if seen[key] {
			continue
		}
		seen[key] = true
		switch {
		case c.pol.AllowedDests != nil && !c.pol.DestinationAllowed(*e):
			h.add(evidence{text: fmt.Sprintf("%s %s is outside allowed_destinations (%s)", e.Kind, e.Endpoint(), strings.Join(c.pol.AllowedRaw, ", ")),
				boundary: true, severity: story.SevHigh, span: e.Span, event: -1, egress: e})
		case c.pol.AllowedDests == nil && c.profileComplete() && !c.prof.KnowsDestination(*e):
			h.add(evidence{text: fmt.Sprintf("%s %s was never seen while the profile was learned", e.Kind, e.Endpoint()),
				severity: story.SevMedium, span: e.Span, event: -1, egress: e})
		}
	}
	return nonEmpty(h)
}

var shells = []string{"sh", "bash", "dash", "zsh", "ash", "ksh", "csh", "tcsh", "fish", "busybox"}

func (c *evalContext) unexpectedExecutable(r *ruleDef) *hit {
	h := &hit{rule: r}
	for i := range c.f.Execs {
		e := &c.f.Execs[i]
		if e.Tool < 0 || e.Path == "" {
			continue
		}
		tool := c.f.ToolName(e.Tool)
		base := e.Path[strings.LastIndexByte(e.Path, '/')+1:]
		known := c.profileComplete() && c.prof.HasExecutable(e.Path)
		switch {
		case slices.Contains(shells, base) && !known:
			h.add(evidence{text: fmt.Sprintf("tool %s started the shell %s", tool, e.Path), severity: story.SevHigh, span: e.Span, event: -1, exec: e})
		case c.profileComplete() && !known:
			h.add(evidence{text: fmt.Sprintf("tool %s started %s, which is not in the profile", tool, e.Path), severity: story.SevMedium, span: e.Span, event: -1, exec: e})
		}
	}
	return nonEmpty(h)
}

func (c *evalContext) promptInjection(r *ruleDef) *hit {
	if c.f.Prompt == "" {
		return nil
	}
	text := story.NormalizeSpace(strings.ToLower(c.f.Prompt))
	var found []string
	for _, m := range c.markers {
		if strings.Contains(text, m) {
			found = append(found, strconv.Quote(m))
		}
	}
	if len(found) == 0 {
		return nil
	}
	h := &hit{rule: r}
	h.add(evidence{text: "the prompt contains " + strings.Join(found, ", "), severity: story.SevLow, span: c.f.PromptIdx, event: -1})
	return h
}

// indirectInjection looks for the markers in what the model was given besides the user's
// prompt. A marker that is in the prompt, or in a model call's input before any tool ran (the
// agent's own system prompt), is not indirect. Each marker is reported once, at its first
// source.
func (c *evalContext) indirectInjection(r *ruleDef) *hit {
	f := c.f
	if len(f.Inputs) == 0 || len(c.markers) == 0 {
		return nil
	}
	firstTool := len(f.Spans)
	if len(f.Tools) > 0 {
		firstTool = f.Tools[0].Span
	}
	baseline := []string{story.NormalizeSpace(strings.ToLower(f.Prompt))}
	for _, in := range f.Inputs {
		if in.Kind == story.InputModel && in.Span < firstTool {
			baseline = append(baseline, story.NormalizeSpace(strings.ToLower(in.Text)))
		}
	}
	inBaseline := func(m string) bool {
		for _, b := range baseline {
			if strings.Contains(b, m) {
				return true
			}
		}
		return false
	}
	h := &hit{rule: r}
	reported := map[string]bool{}
	for _, in := range f.Inputs {
		if in.Kind == story.InputModel && in.Span < firstTool {
			continue
		}
		text := story.NormalizeSpace(strings.ToLower(in.Text))
		var found []string
		for _, m := range c.markers {
			if !reported[m] && strings.Contains(text, m) && !inBaseline(m) {
				reported[m] = true
				found = append(found, strconv.Quote(m))
			}
		}
		if len(found) == 0 {
			continue
		}
		src, file := inputSource(f, in)
		h.add(evidence{text: src + " contains " + strings.Join(found, ", ") + ", which the prompt does not" + inputOrigin(f, in),
			severity: story.SevMedium, span: in.Span, event: -1, file: file})
	}
	return nonEmpty(h)
}

// inputSource names where a text was found, and the file it came from when a tool read one.
func inputSource(f *story.Facts, in story.ModelInput) (string, string) {
	name := f.Spans[in.Span].Span.Name()
	switch in.Kind {
	case story.InputToolArgs:
		return "the arguments of tool " + f.ToolName(in.Span), ""
	case story.InputToolResult:
		return "the result of tool " + f.ToolName(in.Span), f.ToolFile(in.Span)
	default:
		if fn := story.AttrStr(f.Spans[in.Span].Span.Attributes(), story.AttrCodeFunction); fn != "" {
			name += " (" + fn + ")"
		}
		return "the input of " + name, f.ToolFile(f.ToolBefore(in.Span))
	}
}

// inputOrigin says what the text most likely came from: for a model call, the last tool that
// ran before it and what that tool read or fetched; for a tool's result, what it read or fetched.
func inputOrigin(f *story.Facts, in story.ModelInput) string {
	tool := in.Span
	switch in.Kind {
	case story.InputToolArgs:
		return ""
	case story.InputModel:
		tool = f.ToolBefore(in.Span)
		if tool < 0 {
			return ""
		}
	}
	var what []string
	for _, fa := range f.Files {
		if fa.Tool == tool && fa.Read && fa.Failed == "" && len(what) < 3 {
			what = append(what, "read "+safeSource(fa.Path))
		}
	}
	for _, a := range f.ToolArgs(tool) {
		if v := strings.ToLower(a[1]); (strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://")) && len(what) < 4 {
			what = append(what, "fetched "+safeSource(a[1]))
		}
	}
	seen := map[string]bool{}
	for _, e := range f.Egress {
		if e.Tool == tool && !seen[e.Dest] && len(what) < 5 {
			seen[e.Dest] = true
			what = append(what, e.Kind+" "+e.Endpoint())
		}
	}
	s := "; it came"
	if in.Kind == story.InputModel {
		s += " after tool " + f.ToolName(tool)
	} else {
		s += " from tool " + f.ToolName(tool)
	}
	if len(what) > 0 {
		s += ", which " + strings.Join(what, ", ")
	}
	return s
}

// safeSource is a path or URL fit for a finding: redacted (a URL may carry a token) and short.
func safeSource(s string) string {
	s, _ = story.Redactor.String(s)
	return story.ShortenTo(s, 120)
}

func (c *evalContext) dataVolume(r *ruleDef) *hit {
	h := &hit{rule: r}
	f := c.f
	factor := c.cfg.Rules.DataVolumeFactor
	if c.pol.MaxBytes > 0 && f.BytesSent > c.pol.MaxBytes {
		h.add(evidence{text: fmt.Sprintf("%s sent in one request, above max_egress_bytes (%s)", story.FormatBytes(f.BytesSent), story.FormatBytes(c.pol.MaxBytes)), severity: story.SevMedium, span: f.Head, event: -1})
	}
	if c.pol.MaxConnects > 0 && f.Connects > c.pol.MaxConnects {
		h.add(evidence{text: fmt.Sprintf("%d connects in one request, above max_connects (%d)", f.Connects, c.pol.MaxConnects), severity: story.SevMedium, span: f.Head, event: -1})
	}
	if c.profileComplete() {
		c.prof.RefreshVolume()
		v := c.prof.Data.DataVolume
		if len(v.ConnectsSamples) > 0 || v.ConnectsMax > 0 {
			limit := factor * float64(max(v.ConnectsP95, 1))
			if float64(f.Connects) > limit {
				h.add(evidence{text: fmt.Sprintf("%d connects in one request; the learned p95 is %d (limit %.0f)", f.Connects, v.ConnectsP95, limit), severity: story.SevMedium, span: f.Head, event: -1})
			}
		}
		if v.BytesSentP95 > 0 && f.HasBytes {
			limit := factor * float64(v.BytesSentP95)
			if float64(f.BytesSent) > limit {
				h.add(evidence{text: fmt.Sprintf("%s sent in one request; the learned p95 is %s (limit %s)", story.FormatBytes(f.BytesSent), story.FormatBytes(v.BytesSentP95), story.FormatBytes(int64(limit))), severity: story.SevMedium, span: f.Head, event: -1})
			}
		}
	}
	return nonEmpty(h)
}

func nonEmpty(h *hit) *hit {
	if len(h.evidence) == 0 {
		return nil
	}
	return h
}

func hasKey(m map[string]struct{}, k string) bool {
	_, ok := m[k]
	return ok
}
