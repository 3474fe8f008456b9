package ebpfreceiver

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/internal/containerid"
	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/symbolize"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/python"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/tls"
)

// registry resolves targets to processes, keeps the kernel's set of traced processes in step
// with process starts, forks, execs and exits, and tells every tracer about the files and
// processes it must instrument. The tracers read it through tracer.Registry.
// Only the reader goroutine uses it after Start.
type registry struct {
	cfg        *Config
	kernel     *probes.Set
	logger     *zap.Logger
	tel        *telemetry
	builder    *spans.Builder
	symbolizer *symbolize.Symbolizer
	redactor   *redact.Redactor
	problems   *attachProblems
	tracers    []tracer.Tracer

	targets   []*tracer.Target
	isGo      map[probes.InodeKey]bool
	traced    map[uint32]*tracer.Process
	byName    bool               // some target selects by process name
	byCgroup  bool               // some target selects by container
	k8s       *kubernetesTargets // nil unless a target has a kubernetes selector (kubernetes.go)
	discovery *discovery         // nil unless discover.enabled (discovery.go)
}

var _ tracer.Registry = (*registry)(nil)

func newRegistry(cfg *Config, kernel *probes.Set, logger *zap.Logger, tel *telemetry, builder *spans.Builder,
	sym *symbolize.Symbolizer, red *redact.Redactor, problems *attachProblems,
) *registry {
	g := &registry{
		cfg: cfg, kernel: kernel, logger: logger, tel: tel, builder: builder, symbolizer: sym, redactor: red,
		problems: problems,
		isGo:     map[probes.InodeKey]bool{},
		traced:   map[uint32]*tracer.Process{},
	}
	for i, t := range cfg.Targets {
		g.targets = append(g.targets, &tracer.Target{ID: uint32(i + 1), Config: t})
		g.byName = g.byName || t.ProcessName != ""
		g.byCgroup = g.byCgroup || t.ContainerID != "" || t.Kubernetes != nil
	}
	return g
}

// Process returns a traced process, or nil.
func (g *registry) Process(pid uint32) *tracer.Process { return g.traced[pid] }

func (g *registry) tracedCount() int { return len(g.traced) }

// attachTargets starts the tracers, attaches executable targets by file (so processes started
// later are traced from their first instruction) and then every matching running process.
func (g *registry) attachTargets() {
	for _, tr := range g.tracers {
		tr.Start()
	}
	for _, t := range g.targets {
		if t.Config.Executable == "" {
			continue
		}
		path := t.Config.Executable
		inode, err := tracer.StatInode(path)
		if err != nil {
			g.warnTarget(t, 0, "cannot attach to the executable; its processes are not traced", err)
			continue
		}
		if err := g.attachBinary(tracer.Binary{Target: t, Path: path, Inode: inode}); err != nil {
			g.warnTarget(t, 0, "cannot attach to the executable; its processes are not traced", err)
			continue
		}
		t.Inode = inode
		if err := g.kernel.TraceExecutable(inode, probes.TracedProcess{TargetId: t.ID, IsGo: tracer.B2U(g.goBinary(path, inode))}); err != nil {
			g.warnTarget(t, 0, "cannot register the executable in the kernel", err)
		}
	}
	pids, err := listPIDs(g.cfg.ProcRoot)
	if err != nil {
		g.logger.Error("cannot list processes; only processes started from now on are traced", zap.Error(err))
		return
	}
	for _, pid := range pids {
		if uint32(os.Getpid()) == pid {
			continue // never trace the collector itself
		}
		info, err := readProc(g.cfg.ProcRoot, pid)
		if err != nil {
			continue // kernel threads have no executable; processes may exit while we scan
		}
		if t := g.match(info, ""); t != nil {
			g.trace(t, info, time.Now())
		}
	}
	for _, t := range g.targets {
		if t.Config.PID != 0 && g.traced[uint32(t.Config.PID)] == nil {
			g.warnTarget(t, 0, "the process does not exist (or could not be read); nothing is traced for this target", nil)
		}
	}
}

// attachBinary hands a target's program file to every tracer; the error is the first
// tracer's that could not instrument it.
func (g *registry) attachBinary(b tracer.Binary) error {
	var first error
	for _, tr := range g.tracers {
		if err := tr.AttachBinary(b); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// match returns the target a process belongs to. filename is the exec'd path when known.
func (g *registry) match(info tracer.ProcInfo, filename string) *tracer.Target {
	var ci containerid.Info
	cidRead := false
	for _, t := range g.targets {
		switch c := &t.Config; {
		case c.Executable != "":
			if t.Inode != (probes.InodeKey{}) && info.Inode == t.Inode {
				return t
			}
		case c.PID != 0:
			if uint32(c.PID) == info.PID {
				return t
			}
		case c.ProcessName != "":
			if info.Comm == c.ProcessName || filepath.Base(info.Exe) == c.ProcessName ||
				(filename != "" && filepath.Base(filename) == c.ProcessName) {
				return t
			}
		case c.ContainerID != "", c.Kubernetes != nil:
			if !cidRead {
				ci, _ = containerid.FromPID(g.cfg.ProcRoot, info.PID)
				cidRead = true
			}
			if (c.ContainerID != "" && ci.ID == c.ContainerID) || (c.Kubernetes != nil && g.matchKubernetes(t, ci)) {
				return t
			}
		}
	}
	return nil
}

// trace attaches the process's program (for targets not attached by file) and marks the
// process as traced in the kernel and the span builder.
func (g *registry) trace(t *tracer.Target, info tracer.ProcInfo, at time.Time) {
	defer g.candidateScope(t, info.PID, candidateAttach)()
	if t.Config.Executable == "" {
		if err := g.attachBinary(tracer.Binary{Target: t, Path: info.ExeFile, Inode: info.Inode, PID: info.PID}); err != nil {
			g.warnTarget(t, info.PID, fmt.Sprintf("cannot attach to process %d (%s); its syscalls are still traced", info.PID, info.Exe), err)
		}
	}
	isGo := g.goBinary(info.ExeFile, info.Inode)
	g.logger.Debug("tracing process", zap.String("target", t.Config.Name), zap.Uint32("pid", info.PID), zap.String("executable", info.Exe))
	g.candidatePhase(candidateTraceProcess)
	if err := g.kernel.TraceProcess(info.PID, probes.TracedProcess{TargetId: t.ID, IsGo: tracer.B2U(isGo)}); err != nil {
		g.warnTarget(t, info.PID, fmt.Sprintf("cannot trace process %d", info.PID), err)
		return
	}
	g.register(t, info, isGo)
	g.started(info.PID, at)
}

// started records that a process of a target (not a descendant) is traced from now on: a span
// process.start, which lets enforcement attach to a new pod before its first story. at is the
// exec's time from the kernel (when tracing starts at an exec), not when user space saw it.
func (g *registry) started(pid uint32, at time.Time) {
	g.builder.AddSpan(spans.Parent{PID: pid}, spans.SpanData{
		Name: "process.start", Kind: ptrace.SpanKindInternal, Start: at, End: at,
		Attributes: func(m pcommon.Map) { m.PutStr(attrProcessEvent, "start") },
	})
}

// attrProcessEvent marks the span of a target's process starting to be traced.
const attrProcessEvent = "agenttrail.process.event"

// register tells the span builder, the symbolizer and every tracer about a traced process, and
// counts it in agenttrail.ebpf.capture.processes by what the tracers could instrument.
func (g *registry) register(t *tracer.Target, info tracer.ProcInfo, isGo bool) {
	defer g.candidateScope(t, info.PID, candidateSetup)()
	// A family that is not enabled leaves its part of the capture saying so.
	capture := &spans.Capture{TLS: tracer.CaptureDisabled, Python: tracer.CaptureDisabled}
	p := &tracer.Process{ProcInfo: info, Target: t, IsGo: isGo, Capture: capture}
	g.traced[info.PID] = p
	cmd, _ := g.redactor.String(strings.Join(info.Cmdline, " "))
	cid := ""
	if ci, err := containerid.FromPID(g.cfg.ProcRoot, info.PID); err == nil {
		cid = ci.ID
	}
	g.builder.AddProcess(spans.Process{
		PID: info.PID, ParentPID: info.PPID, Target: t.Config.Name, Executable: info.Exe,
		CommandLine: cmd, ContainerID: cid, IsGo: isGo, Capture: capture,
	})
	for _, tr := range g.tracers {
		tr.SetupProcess(p)
	}
	// The program's symbols for call stacks after the tracers' probes (0.1-0.4 s of a Go
	// agent's exec for its .symtab and line tables): the probes catch what the process does
	// from now on, while the stacks are only needed when its first records are read, after
	// this returns (issue #18: the first connection of a process matched at its exec).
	if err := g.symbolizer.Prepare(info.PID); err != nil {
		g.logger.Debug("cannot read the process's mappings for call stacks", zap.Uint32("pid", info.PID), zap.Error(err))
	}
	g.tel.captureProcesses.Add(ctxBackground, 1, metric.WithAttributes(
		attribute.String("tls", tls.Class(capture.TLS)), attribute.String("python", python.Class(capture.Python)),
		attribute.Bool("complete", len(capture.Missing) == 0)))
}

// onExec handles an exec anywhere on the host. targetID is non-zero when the kernel already
// traces the process (an executable target, or a child of a traced process).
func (g *registry) onExec(h spans.Header, targetID uint32, filename string) {
	pid := h.PID
	if targetID != 0 {
		if int(targetID) > len(g.targets) {
			return
		}
		t := g.targets[targetID-1]
		// The new image's records follow this one in the ring buffer; what the old image did
		// keeps the old identity, and the new one is named after the kernel's filename and the
		// exec's arguments even if the process is gone before /proc can be read.
		g.builder.ProcessExec(h, filename)
		info, err := readProc(g.cfg.ProcRoot, pid)
		if err != nil {
			return // exited already (a short program); its exit event closes whatever it opened
		}
		isGo := g.goBinary(info.ExeFile, info.Inode)
		if isGo {
			// The kernel resets the goroutine flag on exec; a Go image keys by goroutine again.
			_ = g.kernel.TraceProcess(pid, probes.TracedProcess{TargetId: targetID, IsGo: 1})
		}
		fromExec, _ := g.builder.Process(pid)
		g.register(t, info, isGo)
		later := !sameFile(g.cfg.ProcRoot, pid, filename, info.Inode)
		if later || len(info.Cmdline) == 0 {
			// /proc already shows a later exec's program (whose own exec record follows this
			// one), or an exiting process's empty cmdline: this image keeps what the kernel said.
			if p, ok := g.builder.Process(pid); ok {
				p.CommandLine = fromExec.CommandLine
				if later {
					p.Executable = fromExec.Executable
				}
				g.builder.AddProcess(p)
			}
		}
		if t.Config.Executable != "" && info.Inode == t.Inode {
			g.started(pid, h.Time) // the target's executable, not a child's exec of another program
		}
		return
	}
	if !g.byName && !g.byCgroup {
		return
	}
	if g.byName && !g.byCgroup && !g.nameCouldMatch(filename) {
		return // cheap filter: most execs on a host are of other programs
	}
	info, err := readProc(g.cfg.ProcRoot, pid)
	if err != nil {
		return
	}
	if t := g.match(info, filename); t != nil {
		g.trace(t, info, h.Time)
	}
}

func (g *registry) nameCouldMatch(filename string) bool {
	base := filepath.Base(filename)
	for _, t := range g.targets {
		if n := t.Config.ProcessName; n != "" && (base == n || strings.HasPrefix(base, n)) {
			return true
		}
	}
	return false
}

// onFork registers a child process that inherited tracing from its parent in the kernel; its
// work is parented under the call open in the forking goroutine or thread (h).
func (g *registry) onFork(h spans.Header, child uint32, targetID uint32) {
	parent := h.PID
	var t *tracer.Target
	if p := g.traced[parent]; p != nil {
		t = p.Target
	} else if targetID != 0 && int(targetID) <= len(g.targets) {
		t = g.targets[targetID-1]
	}
	if t == nil {
		return
	}
	info, err := readProc(g.cfg.ProcRoot, child)
	if err != nil {
		info = tracer.ProcInfo{PID: child} // exited or exec'ing already: still parent its events
	}
	g.register(t, info, g.goBinary(info.ExeFile, info.Inode))
	if pp, ok := g.builder.Process(parent); ok {
		// Until it execs, the child runs its parent's program; /proc, read after the fact, may
		// already show the program it exec'd, and the exec event renames it then.
		if cp, ok := g.builder.Process(child); ok {
			cp.Executable, cp.CommandLine, cp.ParentPID = pp.Executable, pp.CommandLine, parent
			g.builder.AddProcess(cp)
		}
	}
	g.builder.ProcessFork(h, child)
}

func (g *registry) onExit(pid uint32) {
	delete(g.traced, pid)
	g.symbolizer.Forget(pid)
	g.problems.processGone(pid)
}

// sameFile reports whether filename, the path an exec of pid named, is the file inode, as seen
// from the process's root; true when that cannot be told (a relative path, a file not there).
func sameFile(procRoot string, pid uint32, filename string, inode probes.InodeKey) bool {
	if !filepath.IsAbs(filename) {
		return true
	}
	var st unix.Stat_t
	root := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "root")
	if err := unix.Stat(filepath.Join(root, filename), &st); err != nil {
		return true
	}
	return tracer.InodeKey(st) == inode
}

// goBinary reports whether the file is a Go program, caching by inode.
func (g *registry) goBinary(path string, inode probes.InodeKey) bool {
	if path == "" {
		return false
	}
	if v, ok := g.isGo[inode]; ok {
		return v
	}
	bin, err := elfinfo.Open(path)
	if err != nil {
		return false
	}
	defer bin.Close()
	g.isGo[inode] = bin.IsGo
	return bin.IsGo
}

// warnTarget logs, counts and reports what could not be instrumented for a target; pid is the
// process concerned (0: the target itself).
func (g *registry) warnTarget(t *tracer.Target, pid uint32, msg string, err error) {
	g.tel.attachFailures.Add(ctxBackground, 1)
	fields := []zap.Field{zap.String("target", t.Config.Name)}
	what := "target " + t.Config.Name + ": " + msg
	if err != nil {
		fields = append(fields, zap.Error(err))
		what += ": " + err.Error()
	}
	if g.problems == nil || g.problems.candidate == nil {
		g.logger.Warn(msg, fields...) // else a discovery process's: candidateProblem logs it
	}
	g.problems.Add(pid, what)
}
