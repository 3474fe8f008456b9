package ebpfreceiver

import (
	"fmt"
	"path/filepath"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/pyinfo"
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
func (a *attacher) setCapture(t *target, info procInfo, isGo bool, tls string, tlsMissing []string) {
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
	c.Python, pyMissing = a.pythonCapture(info, isGo)
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
// missing), "n/a" (no CPython found) or "disabled".
func (a *attacher) pythonCapture(info procInfo, isGo bool) (value, missing string) {
	p := a.python
	switch {
	case p == nil:
		return captureDisabled, ""
	case isGo || info.exeFile == "":
		return captureNA, ""
	}
	pi := p.interps[fmt.Sprintf("%d:%d", info.inode.Dev, info.inode.Ino)]
	if pi == nil || pi.in == nil {
		pi = nil
		// An embedding program: the interpreter is a mapped libpython (set up just before).
		cands, err := pyinfo.Candidates(a.cfg.ProcRoot, info.pid)
		if err != nil && len(cands) == 0 {
			return captureNA, ""
		}
		for _, m := range cands {
			if !strings.HasPrefix(filepath.Base(m.Path), "libpython") {
				continue
			}
			if lib := p.interps[fmt.Sprintf("%d:%d", m.Dev, m.Inode)]; lib != nil && lib.in != nil {
				pi = lib
				break
			}
		}
		if pi == nil {
			return captureNA, ""
		}
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
