// Package spans turns the kernel's function, goroutine, syscall and process events into
// OpenTelemetry spans: one span per function call with its exact parent, syscalls as child spans
// or events of the function that caused them, and one trace per outermost call.
//
// The Builder is fed by a single goroutine (the ring-buffer reader) and is not safe for
// concurrent use. Events of one goroutine or thread arrive in the order they happened, because
// the kernel reserves ring-buffer space in program order; that is all the Builder relies on.
package spans

import (
	"net/netip"
	"time"
)

// Role of a configured function, from the receiver config.
type Role string

const (
	RolePrompt    Role = "prompt"
	RoleInference Role = "inference"
	RoleTool      Role = "tool"
	RoleEgress    Role = "egress"
	RoleFunction  Role = "function"
)

// Probe is one instrumented function, as the receiver resolved it.
type Probe struct {
	ID       uint32
	Target   string // target name: the agent or service name
	Symbol   string
	Role     Role
	ToolName string // role tool
	Model    string // role inference
	File     string // source file of the function, when known
	Line     int
	// Coroutine: a Python coroutine (async def) reconstructed from stack samples: each of its
	// spans is one run between awaits (agenttrail.python.coroutine).
	Coroutine bool
	Args      []ArgSpec // captured arguments, in the kernel's slot order
}

// ArgSpec names a captured argument slot.
type ArgSpec struct {
	Name string
}

// ArgValue is one captured argument, already redacted by the receiver.
type ArgValue struct {
	Name      string
	Value     string // string form (numbers and bools formatted)
	Length    uint64 // full length of strings and byte slices
	Truncated bool
	Omitted   bool // policy none: only the length is exported
	ReadError bool // the kernel could not read the value
	Redacted  int  // matches masked by redaction
}

// Header is what every event carries.
type Header struct {
	Mono     uint64    // kernel CLOCK_MONOTONIC ns
	Time     time.Time // wall clock of Mono
	PID      uint32
	TID      uint32
	Routine  uint64 // Go: g address; native: 0
	CgroupID uint64
}

// Frame is one symbolized frame of a user call stack.
type Frame struct {
	Function string
	File     string
	Line     int
	Module   string
	Address  uint64
}

// Syscall describes a traced syscall at its entry.
type Syscall struct {
	Name      string // connect, accept, sendto, execve, openat
	FD        int64
	Flags     uint64
	Peer      netip.AddrPort // connect/sendto
	Path      string         // openat path, execve executable (already redacted where needed)
	Argv      []string       // execve (already redacted)
	Truncated bool
	Stack     []Frame
	// NativeStack: the native frames, when Stack holds the interpreter's (Python) frames.
	NativeStack []Frame
}

// Process identifies a traced process; resource attributes of its spans come from here.
type Process struct {
	PID         uint32
	ParentPID   uint32
	Target      string // service name
	Executable  string
	CommandLine string // redacted
	ContainerID string
	IsGo        bool
	// Capture is what the receiver could instrument in the process (nil: not said). The
	// receiver may update it while the process runs; each flush writes it as it is then.
	Capture *Capture
}

// Capture is what the receiver could and could not instrument in a process, written as
// agenttrail.capture.* resource attributes so that an empty trace is never taken for a quiet one.
type Capture struct {
	Functions string   // "3/5": the target's configured functions instrumented in its program; "" when not applicable
	TLS       string   // how TLS plaintext is read: "openssl", "go", "go,openssl", "none" (no TLS library found), "disabled"
	Python    string   // the CPython version whose stacks are read ("3.11"), "unknown" (a CPython without a known layout), "n/a", "disabled"
	Syscalls  []string // the syscalls traced
	Missing   []string // what could not be instrumented, one phrase each; empty when the capture is complete
}
