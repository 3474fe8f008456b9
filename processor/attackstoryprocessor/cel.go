package attackstoryprocessor

import (
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// celCostLimit bounds the work of one rule on one story (CEL's cost units: roughly one per
// element visited), so that a rule cannot stall the processor on a huge story.
const celCostLimit = 1_000_000

// customRule is a compiled custom rule.
type customRule struct {
	def        *ruleDef
	expression string
	prg        cel.Program
	allModes   bool
	failures   int // evaluation errors so far (logged by the processor)
	lastErr    error
}

func newCELEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.VariableWithDoc("story", cel.MapType(cel.StringType, cel.DynType),
			"the story: tools, executables, files, destinations, workload, prompt, spans, mode, incomplete, connects, bytes_sent, trace_id"),
		ext.Strings(),
	)
}

// compileCustomRules checks and compiles the custom rules. Its errors name the rule and quote
// the CEL compiler's message.
func compileCustomRules(cfgs []CustomRuleConfig) ([]*customRule, error) {
	if len(cfgs) == 0 {
		return nil, nil
	}
	env, err := newCELEnv()
	if err != nil {
		return nil, fmt.Errorf("custom_rules: CEL environment: %w", err)
	}
	seen := map[string]bool{}
	out := make([]*customRule, 0, len(cfgs))
	for i, rc := range cfgs {
		key := fmt.Sprintf(`"custom_rules[%d]`, i)
		if !ruleIDPattern.MatchString(rc.ID) {
			return nil, fmt.Errorf(`%s.id": %q must be lower case letters, digits, "_", "-" or "." (starting with a letter, at most 64)`, key, rc.ID)
		}
		if builtinRule(rc.ID) != nil {
			return nil, fmt.Errorf(`%s.id": %q is the id of a built-in rule`, key, rc.ID)
		}
		if seen[rc.ID] {
			return nil, fmt.Errorf(`%s.id": %q is used by another custom rule`, key, rc.ID)
		}
		seen[rc.ID] = true
		sev := story.SevMedium
		if rc.Severity != "" {
			if sev, err = parseSeverity(rc.Severity); err != nil {
				return nil, fmt.Errorf(`%s.severity": %w`, key, err)
			}
		}
		for j, a := range rc.Atlas {
			if !atlasIDPattern.MatchString(a) {
				return nil, fmt.Errorf(`%s.atlas[%d]": %q is not an ATLAS technique id like AML.T0051 or AML.T0051.000`, key, j, a)
			}
		}
		if strings.TrimSpace(rc.Expression) == "" {
			return nil, fmt.Errorf(`%s.expression" is required`, key)
		}
		ast, iss := env.Compile(rc.Expression)
		if iss != nil && iss.Err() != nil {
			return nil, fmt.Errorf(`%s.expression" (rule %s) does not compile: %w`, key, rc.ID, iss.Err())
		}
		if !ast.OutputType().IsExactType(cel.BoolType) && !ast.OutputType().IsExactType(cel.DynType) {
			return nil, fmt.Errorf(`%s.expression" (rule %s) must evaluate to a bool, not %s`, key, rc.ID, ast.OutputType())
		}
		prg, err := env.Program(ast, cel.CostLimit(celCostLimit), cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			return nil, fmt.Errorf(`%s.expression" (rule %s): %w`, key, rc.ID, err)
		}
		title := rc.Title
		if title == "" {
			title = rc.ID
		}
		explanation := rc.Description
		if explanation == "" {
			explanation = "Custom rule: " + rc.Expression
		}
		out = append(out, &customRule{
			def:        &ruleDef{id: rc.ID, title: title, explanation: explanation, severity: sev, atlas: append([]string(nil), rc.Atlas...), order: len(builtinRules) + i},
			expression: rc.Expression,
			prg:        prg,
			allModes:   rc.AllModes,
		})
	}
	return out, nil
}

// eval runs the rule; an error (a missing key, the cost limit) counts as no match.
func (r *customRule) eval(vars map[string]any) bool {
	out, _, err := r.prg.Eval(vars)
	if err != nil {
		r.failures++
		r.lastErr = err
		return false
	}
	b, ok := out.Value().(bool)
	if !ok {
		r.failures++
		r.lastErr = fmt.Errorf("the expression returned %T, not a bool", out.Value())
		return false
	}
	return b
}

// storyVariables is the "story" variable of custom rules.
func storyVariables(c *evalContext) map[string]any {
	f := c.f
	tools := make([]string, 0, len(f.Tools))
	for _, t := range f.Tools {
		tools = append(tools, t.Name)
	}
	execs := make([]string, 0, len(f.Execs))
	for _, e := range f.Execs {
		execs = append(execs, e.Path)
	}
	files := make([]string, 0, len(f.Files))
	for _, fa := range f.Files {
		files = append(files, fa.Path)
	}
	dests := make([]any, 0, len(f.Egress))
	for _, e := range f.Egress {
		dests = append(dests, map[string]any{
			"address": e.Address, "port": int64(e.Port), "host": e.Host, "kind": e.Kind,
			"bytes_sent": e.Bytes, "failed": e.Failed != "",
		})
	}
	workload := map[string]any{}
	for k, v := range f.HeadResource().All() {
		if v.Type() == pcommon.ValueTypeStr {
			workload[k] = v.Str()
		}
	}
	workload["key"] = profile.WorkloadOf(f.HeadResource()).Key
	spans := make([]any, 0, len(f.Spans))
	for _, sp := range f.Spans {
		spans = append(spans, map[string]any{"name": sp.Span.Name(), "attributes": sp.Span.Attributes().AsRaw()})
	}
	inputs := make([]any, 0, len(f.Inputs))
	for _, in := range f.Inputs {
		text, _ := story.Redactor.String(in.Text)
		inputs = append(inputs, map[string]any{"kind": in.Kind.String(), "span": f.Spans[in.Span].Span.Name(), "text": text})
	}
	return map[string]any{"story": map[string]any{
		"trace_id":     f.Story.ID.String(),
		"mode":         string(c.mode),
		"incomplete":   f.Story.Reason != "",
		"tools":        tools,
		"executables":  execs,
		"files":        files,
		"destinations": dests,
		"workload":     workload,
		"prompt":       f.Prompt,
		"model_inputs": inputs,
		"spans":        spans,
		"connects":     int64(f.Connects),
		"bytes_sent":   f.BytesSent,
	}}
}
