package ebpfreceiver

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
)

// Config of the ebpf receiver. Every key is documented in README.md.
type Config struct {
	// Targets are the programs to trace.
	Targets []TargetConfig `mapstructure:"targets"`
	// Syscalls recorded for traced processes: connect, accept, sendto, execve, openat.
	Syscalls []string `mapstructure:"syscalls"`
	// CallStacks captures the user call stack at every syscall event (code.stacktrace).
	CallStacks bool `mapstructure:"call_stacks"`
	// RingBufferSize is the kernel→user ring buffer in bytes (power of two, at least 64 KiB).
	RingBufferSize int `mapstructure:"ring_buffer_size"`
	// FlushInterval bounds how long a finished span waits before it is sent on.
	FlushInterval time.Duration `mapstructure:"flush_interval"`
	// MaxOpenSpans bounds calls and syscalls in flight across all processes.
	MaxOpenSpans int `mapstructure:"max_open_spans"`
	// ProcRoot is where the host's /proc is mounted (/host/proc in the DaemonSet).
	ProcRoot string `mapstructure:"proc_root"`
}

// TargetConfig names one program and what to record of it. Processes are selected by exactly
// one of executable, process_name, pid or container_id.
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
	// Functions to instrument.
	Functions []FunctionConfig `mapstructure:"functions"`
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

var _ component.Config = (*Config)(nil)

var containerIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

var validRoles = map[string]bool{"": true, "prompt": true, "inference": true, "tool": true, "egress": true, "function": true}

// Validate checks the config without touching the system; it stops at the first problem.
func (cfg *Config) Validate() error {
	if len(cfg.Targets) == 0 {
		return errors.New(`"targets" must name at least one program to trace`)
	}
	names := map[string]bool{}
	for i, t := range cfg.Targets {
		where := fmt.Sprintf("targets[%d]", i)
		if t.Name == "" {
			return fmt.Errorf(`%s: "name" must not be empty`, where)
		}
		where = fmt.Sprintf("targets[%d] (%s)", i, t.Name)
		if names[t.Name] {
			return fmt.Errorf(`%s: "name" is used by another target`, where)
		}
		names[t.Name] = true
		selectors := 0
		for _, set := range []bool{t.Executable != "", t.ProcessName != "", t.PID != 0, t.ContainerID != ""} {
			if set {
				selectors++
			}
		}
		if selectors != 1 {
			return fmt.Errorf(`%s: set exactly one of "executable", "process_name", "pid", "container_id"`, where)
		}
		if t.Executable != "" && !strings.HasPrefix(t.Executable, "/") {
			return fmt.Errorf(`%s: "executable" must be an absolute path, got %q`, where, t.Executable)
		}
		if t.PID < 0 {
			return fmt.Errorf(`%s: "pid" must be positive, got %d`, where, t.PID)
		}
		if t.ContainerID != "" && !containerIDPattern.MatchString(t.ContainerID) {
			return fmt.Errorf(`%s: "container_id" must be 64 lowercase hex characters, got %q`, where, t.ContainerID)
		}
		for j, f := range t.Functions {
			fwhere := fmt.Sprintf("%s functions[%d]", where, j)
			if f.Symbol == "" {
				return fmt.Errorf(`%s: "symbol" must not be empty`, fwhere)
			}
			if !validRoles[f.Role] {
				return fmt.Errorf(`%s (%s): "role" must be one of prompt, inference, tool, egress, function; got %q`, fwhere, f.Symbol, f.Role)
			}
			if len(f.Args) > probes.MaxArgs {
				return fmt.Errorf(`%s (%s): "args" may capture at most %d arguments, got %d`, fwhere, f.Symbol, probes.MaxArgs, len(f.Args))
			}
			for _, a := range f.Args {
				if _, _, err := parseArg(a); err != nil {
					return fmt.Errorf(`%s (%s): "args": %w`, fwhere, f.Symbol, err)
				}
			}
		}
	}
	for _, s := range cfg.Syscalls {
		if _, ok := probes.SyscallBits[s]; !ok {
			return fmt.Errorf(`"syscalls": unknown syscall %q (known: accept, connect, execve, openat, sendto)`, s)
		}
	}
	if cfg.RingBufferSize < 64<<10 || cfg.RingBufferSize&(cfg.RingBufferSize-1) != 0 {
		return fmt.Errorf(`"ring_buffer_size" must be a power of two of at least 65536 bytes, got %d`, cfg.RingBufferSize)
	}
	if cfg.FlushInterval <= 0 {
		return fmt.Errorf(`"flush_interval" must be positive, got %v`, cfg.FlushInterval)
	}
	if cfg.MaxOpenSpans <= 0 {
		return fmt.Errorf(`"max_open_spans" must be positive, got %d`, cfg.MaxOpenSpans)
	}
	if !strings.HasPrefix(cfg.ProcRoot, "/") {
		return fmt.Errorf(`"proc_root" must be an absolute path, got %q`, cfg.ProcRoot)
	}
	return nil
}

// parseArg splits "name" or "name:policy".
func parseArg(s string) (string, redact.Policy, error) {
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

func (cfg *Config) syscallMask() uint32 {
	var m uint32
	for _, s := range cfg.Syscalls {
		m |= probes.SyscallBits[s]
	}
	return m
}
