package rules

import (
	"fmt"
	"slices"
	"strings"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// unexpectedExecutableDef is the definition of unexpected_executable.
var unexpectedExecutableDef = &Def{ID: story.RuleUnexpectedExecutable, Title: "Shell or unexpected program started by a tool", severity: story.SevMedium,
	Atlas:       []string{"AML.T0050"},
	Explanation: "A tool started a shell or a program outside the learned profile: the agent may be running commands chosen by an attacker."}

// unexpectedExecutable is the built-in rule unexpected_executable (the README's Rules table says when it fires).
type unexpectedExecutable struct{}

func (unexpectedExecutable) Def() *Def { return unexpectedExecutableDef }

func (unexpectedExecutable) Evaluate(c *Context) *Hit {
	r := unexpectedExecutableDef
	h := &Hit{Rule: r}
	for i := range c.Facts.Execs {
		e := &c.Facts.Execs[i]
		if e.Tool < 0 || e.Path == "" {
			continue
		}
		tool := c.Facts.ToolName(e.Tool)
		base := e.Path[strings.LastIndexByte(e.Path, '/')+1:]
		known := c.profileComplete() && c.Profile.HasExecutable(e.Path)
		switch {
		case slices.Contains(shells, base) && !known:
			h.add(Evidence{Text: fmt.Sprintf("tool %s started the shell %s", tool, e.Path), severity: story.SevHigh, Span: e.Span, Event: -1, Exec: e})
		case c.profileComplete() && !known:
			h.add(Evidence{Text: fmt.Sprintf("tool %s started %s, which is not in the profile", tool, e.Path), severity: story.SevMedium, Span: e.Span, Event: -1, Exec: e})
		}
	}
	return nonEmpty(h)
}

var shells = []string{"sh", "bash", "dash", "zsh", "ash", "ksh", "csh", "tcsh", "fish", "busybox"}
