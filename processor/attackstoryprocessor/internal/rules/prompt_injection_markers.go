package rules

import (
	"strconv"
	"strings"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// promptInjectionDef is the definition of prompt_injection_markers.
var promptInjectionDef = &Def{ID: story.RulePromptInjection, Title: "Prompt injection markers in the prompt", severity: story.SevLow, supporting: true,
	Atlas:       []string{"AML.T0051"},
	Explanation: "The prompt contains phrases used to override an agent's instructions."}

// promptInjection is the built-in rule prompt_injection_markers (the README's Rules table says when it fires).
type promptInjection struct{}

func (promptInjection) Def() *Def { return promptInjectionDef }

func (promptInjection) Evaluate(c *Context) *Hit {
	r := promptInjectionDef
	if c.Facts.Prompt == "" {
		return nil
	}
	text := story.NormalizeSpace(strings.ToLower(c.Facts.Prompt))
	var found []string
	for _, m := range c.Markers {
		if strings.Contains(text, m) {
			found = append(found, strconv.Quote(m))
		}
	}
	if len(found) == 0 {
		return nil
	}
	h := &Hit{Rule: r}
	h.add(Evidence{Text: "the prompt contains " + strings.Join(found, ", "), severity: story.SevLow, Span: c.Facts.PromptIdx, Event: -1})
	return h
}
