package rules

import (
	"fmt"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// sensitiveReadThenEgressDef is the definition of sensitive_read_then_egress.
var sensitiveReadThenEgressDef = &Def{ID: story.RuleSensitiveReadEgress, Title: "Sensitive data read, then sent out", severity: story.SevHigh,
	Atlas:       []string{"AML.T0086", "AML.T0057"},
	Explanation: "A sensitive file was read and an outbound connection followed in the same request: the pattern of data exfiltration through an agent tool."}

// sensitiveReadThenEgress is the built-in rule sensitive_read_then_egress (the README's Rules table says when it fires).
type sensitiveReadThenEgress struct{}

func (sensitiveReadThenEgress) Def() *Def { return sensitiveReadThenEgressDef }

func (sensitiveReadThenEgress) Evaluate(c *Context) *Hit {
	r := sensitiveReadThenEgressDef
	h := &Hit{Rule: r}
	for i := range c.Facts.Files {
		fa := &c.Facts.Files[i]
		if !fa.Read || fa.Failed != "" {
			continue
		}
		pattern, ok := fa.SensitivePattern(c.Policy.Sensitive)
		if !ok {
			continue
		}
		var first, outside *story.EgressCall
		var firstNote, outsideNote string
		for j := range c.Facts.Egress {
			e := &c.Facts.Egress[j]
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
		h.add(Evidence{Text: fmt.Sprintf("read %s (sensitive: %s)", fa.Path, pattern), severity: sev, Span: fa.Span, Event: fa.Event, File: fa.Path})
		text := fmt.Sprintf("then %s %s", dest.Kind, dest.Endpoint())
		if dest.Kind == "send" {
			// The bytes left over a connection of this story or an older one: say which.
			text = "then sent " + story.FormatBytes(c.Facts.BytesTo(*dest)) + " to " + dest.Endpoint()
			if ct := story.ConnectionText(*dest); ct != "" {
				text += " (" + ct + ")"
			}
		}
		if outside != nil {
			text += " (neither allowed nor in the profile)"
		}
		if n := c.Facts.BytesTo(*dest); n > 0 && dest.Kind != "send" {
			text += ", " + story.FormatBytes(n) + " sent"
		}
		h.add(Evidence{Text: text + note, severity: sev, Span: dest.Span, Event: -1, Egress: dest})
		break // one read and its egress tell the story; the narrative has the rest
	}
	return nonEmpty(h)
}

// knownFlow reports whether the read of a file (of the sensitive pattern) followed by egress
// e is a flow declared in allowed_flows or learned by the complete profile, within its
// volume. When the flow is known but its volume is not, note says so.
func (c *Context) knownFlow(fa *story.FileAccess, pattern string, e *story.EgressCall) (bool, string) {
	f := c.Facts
	tool := f.FlowTool(fa, e)
	n := f.BytesTo(*e)
	covered, over := c.Policy.DeclaredFlow(tool, fa.Path, *e, n)
	if covered {
		return true, ""
	}
	var note string
	if over >= 0 {
		note = fmt.Sprintf(": more than workloads allowed_flows[%d].max_bytes (%s)", over, story.FormatBytes(c.Policy.Flows[over].MaxBytes))
	}
	if !c.profileComplete() {
		return false, note
	}
	factor := c.VolumeFactor
	known, learned := c.Profile.KnownFlow(profile.FlowOf(tool, pattern, *e), n, factor)
	if known {
		return true, ""
	}
	if learned != nil {
		note = fmt.Sprintf(": a learned flow, but more than %g × its largest volume (%s)", factor, story.FormatBytes(learned.BytesMax))
	}
	return false, note
}

// knownDestination: allowed, or in the complete profile.
func (c *Context) knownDestination(e story.EgressCall) bool {
	if c.Policy.AllowedDests != nil && c.Policy.DestinationAllowed(e) {
		return true
	}
	return c.profileComplete() && c.Profile.KnowsDestination(e)
}
