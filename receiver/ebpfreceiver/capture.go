package ebpfreceiver

import (
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
)

// Capture values (agenttrail.capture.*).
const (
	captureNone     = "none"
	captureNA       = "n/a"
	captureUnknown  = "unknown"
	captureDisabled = "disabled"
)

// setCapture records what the receiver could instrument in a process it just set up: the
// target's functions in its program, how TLS plaintext is read, whether its Python stacks can be
// read, the syscalls. It fills the process's Capture (its spans' resource attributes) and counts
// the process in agenttrail.ebpf.capture.processes.
func (a *attacher) setCapture(t *target, info procInfo, isGo bool, py *pyInterp, tls string, tlsMissing []string) {
	c := a.captures[info.pid]
	if c == nil {
		return
	}
	*c = spans.Capture{TLS: tls, Syscalls: a.cfg.Syscalls, Missing: tlsMissing}
	if n := len(t.cfg.Functions); n > 0 {
		// Only a process running a program the target's functions were looked up in: a
		// child's exec of another program (a shell) is not expected to have them.
		if ab := a.binaries[binaryKey{t.id, info.inode}]; ab != nil && info.inode != (probes.InodeKey{}) {
			c.Functions = fmt.Sprintf("%d/%d", ab.probes, n)
			switch {
			case ab.err != nil:
				c.Missing = append(c.Missing, "functions: the program could not be read: "+shortError(ab.err))
			case ab.probes < n:
				c.Missing = append(c.Missing, fmt.Sprintf("functions: %d of %d not instrumented (%s)", n-ab.probes, n, strings.Join(ab.missing, "; ")))
			}
		}
	}
	var pyMissing string
	c.Python, pyMissing = a.pythonCapture(info, isGo, py)
	if pyMissing != "" {
		c.Missing = append(c.Missing, pyMissing)
	}
	a.tel.captureProcesses.Add(ctxBackground, 1, metric.WithAttributes(
		attribute.String("tls", tlsClass(c.TLS)), attribute.String("python", pythonClass(c.Python)),
		attribute.Bool("complete", len(c.Missing) == 0)))
}

// pythonClass keeps the metric's python attribute to a few values: a version is "known".
func pythonClass(v string) string {
	switch v {
	case captureUnknown, captureNA, captureDisabled:
		return v
	}
	return "known"
}

// pythonCapture says whether the Python stacks of a process can be read: the version of its
// CPython with a known layout, "unknown" (a CPython the receiver has no layout for, with why in
// missing), "n/a" (no CPython found) or "disabled". pi is the interpreter the process was set
// up with (nil: none).
func (a *attacher) pythonCapture(info procInfo, isGo bool, pi *pyInterp) (value, missing string) {
	switch {
	case a.python == nil:
		return captureDisabled, ""
	case isGo || info.exeFile == "" || pi == nil || pi.in == nil:
		return captureNA, ""
	}
	version := cmpOr(pi.in.Version, "of an unreadable version")
	switch {
	case pi.in.Layout == nil:
		return captureUnknown, "python: CPython " + version + " has no known layout: native frames only, audit events without arguments"
	case pi.failed:
		return captureUnknown, "python: the CPython " + version + " interpreter could not be registered in the kernel: no Python stacks"
	}
	return pi.in.Version, ""
}

// tlsSeen notes that TLS plaintext of a process was read although none of its libraries was
// found when it was set up (a library it loaded later, such as Python's ssl module's libssl).
func (a *attacher) tlsSeen(pid uint32, source uint8) {
	if c := a.captures[pid]; c != nil && c.TLS == captureNone {
		c.TLS = sourceName(source)
	}
}

// shortError is an error's message, bounded: a capture attribute names why, the log has the rest.
func shortError(err error) string {
	const limit = 200
	s := err.Error()
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}
