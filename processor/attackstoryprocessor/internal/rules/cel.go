package rules

import (
	"fmt"
	"regexp"
	"strconv"
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

// customRuleConfig is a user rule: a CEL expression over the story that evaluates to a bool.
type CustomRuleConfig struct {
	ID          string   `mapstructure:"id"`
	Title       string   `mapstructure:"title"`
	Description string   `mapstructure:"description"`
	Severity    string   `mapstructure:"severity"`
	Atlas       []string `mapstructure:"atlas"`
	Expression  string   `mapstructure:"expression"`
	// AllModes makes the rule a declared boundary that fires in observe mode too.
	AllModes bool `mapstructure:"all_modes"`
}

var (
	ruleIDPattern  = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)
	atlasIDPattern = regexp.MustCompile(`^AML\.T\d{4}(\.\d{3})?$`)
)

// severityIDs are the OCSF severity_id values, by the names accepted in config.
var severityIDs = map[string]int{
	"unknown":       0,
	"informational": 1,
	"info":          1,
	"low":           2,
	"medium":        3,
	"high":          4,
	"critical":      5,
	"fatal":         6,
}

// severityNames are the OCSF captions of severity_id.
var SeverityNames = map[int]string{0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 6: "Fatal", 99: "Other"}

func ParseSeverity(s string) (int, error) {
	if id, ok := severityIDs[strings.ToLower(strings.TrimSpace(s))]; ok && id > 0 {
		return id, nil
	}
	if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n >= 1 && n <= 6 {
		return n, nil
	}
	return 0, fmt.Errorf("%q is not a severity (informational, low, medium, high, critical, fatal or 1-6)", s)
}

// customRule is a compiled custom rule.
type Custom struct {
	Def        *Def
	expression string
	prg        cel.Program
	allModes   bool
	Failures   int // evaluation errors so far (logged by the processor)
	LastErr    error
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
func CompileCustom(cfgs []CustomRuleConfig) ([]*Custom, error) {
	if len(cfgs) == 0 {
		return nil, nil
	}
	env, err := newCELEnv()
	if err != nil {
		return nil, fmt.Errorf("custom_rules: CEL environment: %w", err)
	}
	seen := map[string]bool{}
	out := make([]*Custom, 0, len(cfgs))
	for i, rc := range cfgs {
		key := fmt.Sprintf(`"custom_rules[%d]`, i)
		if !ruleIDPattern.MatchString(rc.ID) {
			return nil, fmt.Errorf(`%s.id": %q must be lower case letters, digits, "_", "-" or "." (starting with a letter, at most 64)`, key, rc.ID)
		}
		if Builtin(rc.ID) != nil {
			return nil, fmt.Errorf(`%s.id": %q is the id of a built-in rule`, key, rc.ID)
		}
		if seen[rc.ID] {
			return nil, fmt.Errorf(`%s.id": %q is used by another custom rule`, key, rc.ID)
		}
		seen[rc.ID] = true
		sev := story.SevMedium
		if rc.Severity != "" {
			if sev, err = ParseSeverity(rc.Severity); err != nil {
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
		out = append(out, &Custom{
			Def:        &Def{ID: rc.ID, Title: title, Explanation: explanation, severity: sev, Atlas: append([]string(nil), rc.Atlas...), order: len(Builtins) + i},
			expression: rc.Expression,
			prg:        prg,
			allModes:   rc.AllModes,
		})
	}
	return out, nil
}

// eval runs the rule; an error (a missing key, the cost limit) counts as no match.
func (r *Custom) eval(vars map[string]any) bool {
	out, _, err := r.prg.Eval(vars)
	if err != nil {
		r.Failures++
		r.LastErr = err
		return false
	}
	b, ok := out.Value().(bool)
	if !ok {
		r.Failures++
		r.LastErr = fmt.Errorf("the expression returned %T, not a bool", out.Value())
		return false
	}
	return b
}

// storyVariables is the "story" variable of custom rules.
func storyVariables(c *Context) map[string]any {
	f := c.Facts
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
		"mode":         string(c.Mode),
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
