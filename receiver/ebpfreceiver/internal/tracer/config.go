package tracer

import (
	"fmt"
	"path"
	"strings"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/k8sselect"
)

// The target configuration lives here, not in the receiver's root, because the tracers read it
// (functions, Python functions); the root's Config refers to these types under their old names.

// TargetConfig names one program and what to record of it. Processes are selected by exactly
// one of executable, process_name, pid, container_id or kubernetes.
type TargetConfig struct {
	// Name of the workload; becomes service.name and gen_ai.agent.name.
	Name string `mapstructure:"name"`
	// Executable path: every process running this file, including ones started later.
	Executable string `mapstructure:"executable"`
	// ProcessName matches the process's command name (comm, 15 characters) or executable base name.
	ProcessName string `mapstructure:"process_name"`
	// PID of one running process.
	PID int `mapstructure:"pid"`
	// ContainerID: every process of the container (64 hex characters).
	ContainerID string `mapstructure:"container_id"`
	// Kubernetes: every process of the node's pods (and containers) that the selector names,
	// resolved from the k8s_inventory extension (the receiver's kubernetes_inventory).
	Kubernetes *k8sselect.Config `mapstructure:"kubernetes"`
	// Functions to instrument.
	Functions []FunctionConfig `mapstructure:"functions"`
	// PythonFunctions: Python functions whose spans are reconstructed from Python stacks.
	PythonFunctions []PythonFunctionConfig `mapstructure:"python_functions"`
}

// PythonFunctionConfig is one Python function (or a glob of them) that becomes spans.
type PythonFunctionConfig struct {
	// Pattern is "module:qualname"; either part may use * globs, e.g. "*:Agent.handle_prompt".
	Pattern string `mapstructure:"pattern"`
	// Role, ToolName, Model: as for functions.
	Role     string `mapstructure:"role"`
	ToolName string `mapstructure:"tool_name"`
	Model    string `mapstructure:"model"`
}

// FunctionConfig is one instrumented function.
type FunctionConfig struct {
	// Symbol as it appears in the binary's symbol table, e.g. main.(*Agent).HandlePrompt.
	Symbol string `mapstructure:"symbol"`
	// Library: a shared library (path, or file name looked up in the process's mappings) that
	// holds the symbol, for native targets such as libssl.so.3.
	Library string `mapstructure:"library"`
	// Role: prompt | inference | tool | egress | function (default).
	Role string `mapstructure:"role"`
	// ToolName (role tool): gen_ai.tool.name; defaults to the function's name.
	ToolName string `mapstructure:"tool_name"`
	// Model (role inference): gen_ai.request.model.
	Model string `mapstructure:"model"`
	// Args to capture by parameter name, each optionally "name:policy" with policy
	// none | redacted (default) | full.
	Args []string `mapstructure:"args"`
}

// ParsePythonPattern splits "module:qualname" and checks both globs.
func ParsePythonPattern(p string) (module, qualname string, err error) {
	module, qualname, ok := strings.Cut(p, ":")
	if !ok || module == "" || qualname == "" {
		return "", "", fmt.Errorf(`%q must be "module:qualname" (e.g. "customer_agent:Tools.export_customer_data" or "*:Agent.handle_prompt")`, p)
	}
	for _, g := range []string{module, qualname} {
		if _, err := path.Match(g, ""); err != nil {
			return "", "", fmt.Errorf("%q: bad glob %q: %w", p, g, err)
		}
	}
	return module, qualname, nil
}

// ParseArg splits "name" or "name:policy".
func ParseArg(s string) (string, redact.Policy, error) {
	name, pol, _ := strings.Cut(s, ":")
	if name == "" {
		return "", "", fmt.Errorf("argument %q has no name", s)
	}
	p, err := redact.ParsePolicy(pol)
	if err != nil {
		return "", "", fmt.Errorf("argument %q: %w", name, err)
	}
	return name, p, nil
}
