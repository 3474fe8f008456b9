package rules

import (
	"strconv"
	"strings"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// indirectInjectionDef is the definition of indirect_prompt_injection.
var indirectInjectionDef = &Def{ID: story.RuleIndirectInjection, Title: "Prompt injection markers in content the model was given", severity: story.SevMedium,
	Atlas:       []string{"AML.T0051.001"},
	Explanation: "Text that did not come from the user's prompt (a tool's result, a document or page a tool read, the input of a model call) contains phrases used to override an agent's instructions: an indirect prompt injection."}

// indirectInjection is the built-in rule indirect_prompt_injection (the README's Rules table says when it fires).
type indirectInjection struct{}

func (indirectInjection) Def() *Def { return indirectInjectionDef }

// Evaluate looks for the markers in what the model was given besides the user's
// prompt. A marker that is in the prompt, or in a model call's input before any tool ran (the
// agent's own system prompt), is not indirect. Each marker is reported once, at its first
// source.
func (indirectInjection) Evaluate(c *Context) *Hit {
	r := indirectInjectionDef
	f := c.Facts
	if len(f.Inputs) == 0 || len(c.Markers) == 0 {
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
	h := &Hit{Rule: r}
	reported := map[string]bool{}
	for _, in := range f.Inputs {
		if in.Kind == story.InputModel && in.Span < firstTool {
			continue
		}
		text := story.NormalizeSpace(strings.ToLower(in.Text))
		var found []string
		for _, m := range c.Markers {
			if !reported[m] && strings.Contains(text, m) && !inBaseline(m) {
				reported[m] = true
				found = append(found, strconv.Quote(m))
			}
		}
		if len(found) == 0 {
			continue
		}
		src, file := inputSource(f, in)
		h.add(Evidence{Text: src + " contains " + strings.Join(found, ", ") + ", which the prompt does not" + inputOrigin(f, in),
			severity: story.SevMedium, Span: in.Span, Event: -1, File: file})
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
	case story.InputToolDescription:
		// Tool poisoning: the server's own description of a tool, which the model reads.
		return "the description of MCP tool " + in.Tool + " (tools/list)", ""
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
	case story.InputToolArgs, story.InputToolDescription:
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
