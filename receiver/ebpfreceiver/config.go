package ebpfreceiver

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/sockets"
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
	// Python: CPython support (audit events, Python call stacks, reconstructed function spans).
	Python PythonConfig `mapstructure:"python"`
	// TLS: plaintext of TLS connections (OpenSSL, Go crypto/tls) and LLM API calls in it.
	TLS TLSConfig `mapstructure:"tls"`
	// Sockets: every send (and receive) on a socket of a traced process (egress evidence).
	Sockets sockets.Config `mapstructure:"sockets"`
}

// PythonConfig configures CPython support for traced processes that run CPython.
type PythonConfig struct {
	// Enabled: find CPython in traced processes and capture Python call stacks.
	Enabled bool `mapstructure:"enabled"`
	// Audit attaches CPython's `audit` USDT probe: audit events with their arguments.
	Audit bool `mapstructure:"audit"`
	// AuditEvents: audit event names (globs, e.g. "os.*", "*") recorded as span events.
	AuditEvents []string `mapstructure:"audit_events"`
	// SpanIdleTimeout ends the reconstructed spans of a thread with no stack sample for this long.
	SpanIdleTimeout time.Duration `mapstructure:"span_idle_timeout"`
}

// TLSConfig configures the TLS plaintext probes.
type TLSConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// Libraries: OpenSSL libraries (file names looked up in the usual folders and in traced
	// processes' mappings, or absolute paths) whose SSL_write/SSL_read are probed.
	Libraries []string `mapstructure:"libraries"`
	// Go probes crypto/tls.(*Conn).Write/Read in traced Go programs.
	Go bool `mapstructure:"go"`
	// CaptureBytes bounds the plaintext read per TLS call.
	CaptureBytes int `mapstructure:"capture_bytes"`
	// CaptureMessageContent exports the (redacted) messages sent to and received from models.
	CaptureMessageContent bool `mapstructure:"capture_message_content"`
	// MaxConnectionBuffer bounds the bytes buffered per connection and direction.
	MaxConnectionBuffer int `mapstructure:"max_connection_buffer"`
	// MaxTotalBuffer bounds the message bytes held across all connections.
	MaxTotalBuffer int `mapstructure:"max_total_buffer"`
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
	for i, t := range cfg.Targets {
		if len(t.PythonFunctions) > 0 && !cfg.Python.Enabled {
			return fmt.Errorf(`targets[%d] (%s): "python_functions" need "python.enabled: true"`, i, t.Name)
		}
		for j, f := range t.PythonFunctions {
			fwhere := fmt.Sprintf("targets[%d] (%s) python_functions[%d]", i, t.Name, j)
			if _, _, err := parsePythonPattern(f.Pattern); err != nil {
				return fmt.Errorf(`%s: "pattern": %w`, fwhere, err)
			}
			if !validRoles[f.Role] {
				return fmt.Errorf(`%s (%s): "role" must be one of prompt, inference, tool, egress, function; got %q`, fwhere, f.Pattern, f.Role)
			}
		}
	}
	for i, e := range cfg.Python.AuditEvents {
		if _, err := path.Match(e, ""); err != nil || e == "" {
			return fmt.Errorf(`"python.audit_events[%d]": %q is not a valid event name or glob`, i, e)
		}
	}
	if err := cfg.Sockets.Validate(); err != nil {
		return err
	}
	if cfg.Python.SpanIdleTimeout <= 0 {
		return fmt.Errorf(`"python.span_idle_timeout" must be positive, got %v`, cfg.Python.SpanIdleTimeout)
	}
	if cfg.TLS.Enabled {
		if cfg.TLS.CaptureBytes < 1 || cfg.TLS.CaptureBytes > probes.TLSMaxCaptureBytes {
			return fmt.Errorf(`"tls.capture_bytes" must be between 1 and %d, got %d`, probes.TLSMaxCaptureBytes, cfg.TLS.CaptureBytes)
		}
		for i, l := range cfg.TLS.Libraries {
			if l == "" || (strings.Contains(l, "/") && !strings.HasPrefix(l, "/")) {
				return fmt.Errorf(`"tls.libraries[%d]" must be a file name or an absolute path, got %q`, i, l)
			}
		}
		if cfg.TLS.MaxConnectionBuffer < 4096 {
			return fmt.Errorf(`"tls.max_connection_buffer" must be at least 4096 bytes, got %d`, cfg.TLS.MaxConnectionBuffer)
		}
		if cfg.TLS.MaxTotalBuffer < cfg.TLS.MaxConnectionBuffer {
			return fmt.Errorf(`"tls.max_total_buffer" (%d) must be at least "tls.max_connection_buffer" (%d)`, cfg.TLS.MaxTotalBuffer, cfg.TLS.MaxConnectionBuffer)
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

// parsePythonPattern splits "module:qualname" and checks both globs.
func parsePythonPattern(p string) (module, qualname string, err error) {
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

// socketOptions are the kernel's socket I/O settings (all off unless sockets.enabled).
func (cfg *Config) socketOptions() probes.SocketOptions {
	if !cfg.Sockets.Enabled {
		return probes.SocketOptions{}
	}
	return cfg.Sockets.ProbeOptions()
}

func (cfg *Config) syscallMask() uint32 {
	var m uint32
	for _, s := range cfg.Syscalls {
		m |= probes.SyscallBits[s]
	}
	return m
}

// hasPythonFunctions reports whether a target configures Python functions (spans reconstructed
// from Python stacks).
func (cfg *Config) hasPythonFunctions() bool {
	for _, t := range cfg.Targets {
		if len(t.PythonFunctions) > 0 {
			return true
		}
	}
	return false
}
