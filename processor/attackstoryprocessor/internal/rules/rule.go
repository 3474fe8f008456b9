package rules

import (
	"slices"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/enforcement"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/policy"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// Rule is a built-in rule: what it is, and its judgement of one story. Evaluate returns all
// its evidence (nil for none); Context.Evaluate keeps what the workload's mode allows.
type Rule interface {
	Def() *Def
	Evaluate(c *Context) *Hit
}

// Def describes a rule: built-in or custom.
type Def struct {
	ID          string
	Title       string
	Explanation string // one line: why this matters
	severity    int    // the rule's usual severity; a match may raise or lower it
	Atlas       []string
	supporting  bool // evidence for other findings only (prompt_injection_markers)
	order       int  // position among the rules, for ties
}

// builtinRules are the built-in rules, in the order findings list them on a severity tie.
var builtinRules = []Rule{
	toolOutsideProfile{},
	sensitiveReadThenEgress{},
	egressOutsideProfile{},
	unexpectedExecutable{},
	promptInjection{},
	indirectInjection{},
	dataVolume{},
	dnsTunneling{},
	mcpServerOutsideProfile{},
}

// Builtins are the definitions of the built-in rules, in order.
var Builtins []*Def

func init() {
	for i, r := range builtinRules {
		d := r.Def()
		d.order = i
		Builtins = append(Builtins, d)
	}
}

func Builtin(id string) *Def {
	for _, r := range Builtins {
		if r.ID == id {
			return r
		}
	}
	return nil
}

func BuiltinIDs() []string {
	ids := make([]string, len(Builtins))
	for i, r := range Builtins {
		ids[i] = r.ID
	}
	return ids
}

// evidence is one piece of a rule's match.
type Evidence struct {
	Text     string // one line, e.g. `tool "x" is not in allowed_tools`
	boundary bool   // a declared boundary was crossed (a finding in every mode)
	severity int
	Span     int // index in facts.spans; -1 for none
	Event    int // index of the span event (openat), -1 for the span itself
	File     string
	Egress   *story.EgressCall
	Exec     *story.ExecCall
}

// hit is a rule that matched a story, with its evidence.
type Hit struct {
	Rule     *Def
	Severity int
	Evidence []Evidence
}

func (h *Hit) add(e Evidence) {
	h.Evidence = append(h.Evidence, e)
	h.Severity = max(h.Severity, e.severity)
}

// evalContext is what a story is judged against.
type Context struct {
	Facts        *story.Facts
	Policy       *policy.Policy
	Profile      *profile.Profile // nil when not profiled
	Mode         profile.Mode
	VolumeFactor float64 // rules.data_volume_factor
	Standalone   bool    // rules.prompt_injection_standalone
	Markers      []string
	Disabled     map[string]bool
	Custom       []*Custom

	Blocked            []enforcement.BlockMatch // kernel decisions this story holds
	Enforced           bool                     // the workload's programs are attached
	ToolNotEnforceable bool                     // set by evaluate: a tool outside the profile ran in mode enforce
	ToolSpans          []int                    // those tools' spans
}

func (c *Context) profileComplete() bool { return c.Profile != nil && c.Profile.Complete() }

// Evaluate runs every rule and keeps what the mode allows: boundary evidence always,
// everything else in alert and enforce modes only. prompt_injection_markers is kept only next
// to another rule's hit unless rules.prompt_injection_standalone.
func (c *Context) Evaluate() []*Hit {
	var hits []*Hit
	keep := func(h *Hit) {
		if h == nil {
			return
		}
		var ev []Evidence
		h.Severity = 0
		for _, e := range h.Evidence {
			if e.boundary || h.Rule.supporting || c.Mode.Alerting() {
				ev = append(ev, e)
				h.Severity = max(h.Severity, e.severity)
			}
		}
		if len(ev) > 0 {
			h.Evidence = ev
			hits = append(hits, h)
		}
	}
	for _, r := range builtinRules {
		if c.Disabled[r.Def().ID] {
			continue
		}
		keep(r.Evaluate(c))
	}
	if len(c.Custom) > 0 {
		var vars map[string]any
		for _, cr := range c.Custom {
			if !cr.allModes && !c.Mode.Alerting() {
				continue
			}
			if vars == nil {
				vars = storyVariables(c)
			}
			if cr.eval(vars) {
				h := &Hit{Rule: cr.Def}
				h.add(Evidence{Text: "the expression is true: " + story.ShortenTo(cr.expression, 200), boundary: cr.allModes, severity: cr.Def.severity, Span: c.Facts.Head, Event: -1})
				keep(h)
			}
		}
	}
	c.addEnforcement(&hits)
	standalone := c.Standalone
	primary := 0
	for _, h := range hits {
		if !h.Rule.supporting {
			primary++
		}
	}
	if primary == 0 && !(standalone && c.Mode.Alerting()) {
		return nil
	}
	slices.SortStableFunc(hits, func(a, b *Hit) int {
		if a.Severity != b.Severity {
			return b.Severity - a.Severity
		}
		return a.Rule.order - b.Rule.order
	})
	return hits
}

// addEnforcement adds the kernel's decisions to the hits of their rules (a blocked attempt is
// always part of the finding), and, in mode enforce, raises a tool outside the profile or the
// allowed tools to Critical: the kernel cannot stop a tool call.
func (c *Context) addEnforcement(hits *[]*Hit) {
	for _, m := range c.Blocked {
		r := Builtin(m.Rule)
		var h *Hit
		for _, x := range *hits {
			if x.Rule == r {
				h = x
			}
		}
		if h == nil {
			h = &Hit{Rule: r}
			*hits = append(*hits, h)
		}
		ev := Evidence{Text: "blocked: " + enforcement.BlockedText(m.D, m.Action), boundary: true, severity: story.SevHigh, Span: m.Span, Event: -1}
		if !m.OnHead {
			for i := range c.Facts.Egress {
				if c.Facts.Egress[i].Span == m.Span {
					ev.Egress = &c.Facts.Egress[i]
				}
			}
			for i := range c.Facts.Execs {
				if c.Facts.Execs[i].Span == m.Span {
					ev.Exec = &c.Facts.Execs[i]
				}
			}
		}
		h.add(ev)
	}
	if !c.Enforced {
		return
	}
	for _, h := range *hits {
		if h.Rule.ID != story.RuleToolOutsideProfile {
			continue
		}
		c.ToolNotEnforceable = true
		for _, e := range h.Evidence {
			if e.Span >= 0 && !slices.Contains(c.ToolSpans, e.Span) {
				c.ToolSpans = append(c.ToolSpans, e.Span)
			}
		}
		h.add(Evidence{Text: "the tool call was " + enforcement.ToolNotEnforceableText, severity: story.SevCritical, Span: c.Facts.Head, Event: -1})
	}
}

func nonEmpty(h *Hit) *Hit {
	if len(h.Evidence) == 0 {
		return nil
	}
	return h
}

func hasKey(m map[string]struct{}, k string) bool {
	_, ok := m[k]
	return ok
}
