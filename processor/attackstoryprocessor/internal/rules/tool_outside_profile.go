package rules

import (
	"fmt"
	"strings"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// toolOutsideProfileDef is the definition of tool_outside_profile.
var toolOutsideProfileDef = &Def{ID: story.RuleToolOutsideProfile, Title: "Tool call outside the agent's profile or allowed tools", severity: story.SevMedium,
	Atlas:       []string{"AML.T0053"},
	Explanation: "The agent invoked a tool it is not allowed to or never used while its profile was learned: the model may have been steered into abusing a tool."}

// toolOutsideProfile is the built-in rule tool_outside_profile (the README's Rules table says when it fires).
type toolOutsideProfile struct{}

func (toolOutsideProfile) Def() *Def { return toolOutsideProfileDef }

func (toolOutsideProfile) Evaluate(c *Context) *Hit {
	r := toolOutsideProfileDef
	h := &Hit{Rule: r}
	seen := map[string]bool{}
	for _, t := range c.Facts.Tools {
		if seen[t.Name] {
			continue
		}
		seen[t.Name] = true
		switch {
		case c.Policy.AllowedTools != nil && !hasKey(c.Policy.AllowedTools, t.Name):
			h.add(Evidence{Text: fmt.Sprintf("tool %s is not in allowed_tools (%s)", t.Name, strings.Join(story.SortedKeys(c.Policy.AllowedTools), ", ")),
				boundary: true, severity: story.SevHigh, Span: t.Span, Event: -1})
		case c.profileComplete() && !c.Profile.HasTool(t.Name):
			h.add(Evidence{Text: fmt.Sprintf("tool %s was never called while the profile was learned (profile version %d)", t.Name, c.Profile.Data.Version),
				severity: story.SevMedium, Span: t.Span, Event: -1})
		}
	}
	return nonEmpty(h)
}
