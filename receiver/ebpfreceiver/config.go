package ebpfreceiver

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/python"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/sockets"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/syscalls"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/tls"
)

// Config of the ebpf receiver. Every key is documented in README.md.
type Config struct {
	// Targets are the programs to trace.
	Targets []TargetConfig `mapstructure:"targets"`
	// KubernetesInventory names the k8s_inventory extension whose pods the targets' kubernetes
	// selectors are resolved from; required when a target has one.
	KubernetesInventory *component.ID `mapstructure:"kubernetes_inventory"`
	// Syscalls recorded for traced processes: connect, accept, sendto, execve, openat.
	Syscalls []string `mapstructure:"syscalls"`
	// SyscallAttach: how the syscall programs hook the kernel: auto (per-syscall tracepoints
	// where tracefs is available, else the raw tracepoints), tracepoint, raw.
	SyscallAttach string `mapstructure:"syscall_attach"`
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
	// ContentSampling: the beginning of files traced processes open for reading is checked for
	// sensitive data; only the detectors' names are recorded.
	ContentSampling ContentSamplingConfig `mapstructure:"content_sampling"`
	// Discover: processes nobody listed that call LLM APIs become traced workloads (discovery.go).
	Discover DiscoverConfig `mapstructure:"discover"`
}

// The sections the tracers read are declared in their packages.
type (
	// PythonConfig configures CPython support for traced processes that run CPython.
	PythonConfig = python.Config
	// TLSConfig configures the TLS plaintext probes.
	TLSConfig = tls.Config
	// TargetConfig names one program and what to record of it.
	TargetConfig = tracer.TargetConfig
	// FunctionConfig is one instrumented function.
	FunctionConfig = tracer.FunctionConfig
	// PythonFunctionConfig is one Python function (or a glob of them) that becomes spans.
	PythonFunctionConfig = tracer.PythonFunctionConfig
	// ContentSamplingConfig bounds the sampling of files opened for reading.
	ContentSamplingConfig = syscalls.ContentConfig
)

var _ component.Config = (*Config)(nil)

var containerIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

var validRoles = map[string]bool{"": true, "prompt": true, "inference": true, "tool": true, "egress": true, "function": true}

// Validate checks the config without touching the system; it stops at the first problem.
func (cfg *Config) Validate() error {
	if len(cfg.Targets) == 0 && !cfg.Discover.Enabled {
		return errors.New(`"targets" must name at least one program to trace (or set "discover.enabled")`)
	}
	if err := cfg.Discover.Validate(); err != nil {
		return err
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
		for _, set := range []bool{t.Executable != "", t.ProcessName != "", t.PID != 0, t.ContainerID != "", t.Kubernetes != nil} {
			if set {
				selectors++
			}
		}
		if selectors != 1 {
			return fmt.Errorf(`%s: set exactly one of "executable", "process_name", "pid", "container_id", "kubernetes"`, where)
		}
		if t.Kubernetes != nil {
			if err := t.Kubernetes.Validate(); err != nil {
				return fmt.Errorf(`%s: %w`, where, err)
			}
			if cfg.KubernetesInventory == nil {
				return fmt.Errorf(`%s: a "kubernetes" target needs "kubernetes_inventory" (a k8s_inventory extension)`, where)
			}
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
				if _, _, err := tracer.ParseArg(a); err != nil {
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
			if _, _, err := tracer.ParsePythonPattern(f.Pattern); err != nil {
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
	if err := cfg.ContentSampling.Validate(); err != nil {
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
	if !slices.Contains(probes.AttachModes, cfg.SyscallAttach) {
		return fmt.Errorf(`"syscall_attach" must be one of %s, got %q`, strings.Join(probes.AttachModes, ", "), cfg.SyscallAttach)
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
