package ebpfreceiver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/internal/containerid"
	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/symbolize"
)

// attacher resolves targets to processes and binaries, attaches function probes and keeps
// the kernel's set of traced processes in step with process starts and exits.
// Only the reader goroutine uses it after Start.
type attacher struct {
	cfg        *Config
	kernel     *probes.Set
	logger     *zap.Logger
	tel        *telemetry
	builder    *spans.Builder
	symbolizer *symbolize.Symbolizer
	redactor   *redact.Redactor
	python     *python     // nil unless python.enabled
	tls        *tlsSupport // nil unless tls.enabled
	problems   *attachProblems

	targets    []*target
	probes     []*probeInfo // index: probe id
	binaries   map[binaryKey]*attachedBinary
	goRuntimes map[probes.InodeKey]bool // Go binaries whose runtime.newproc1 is probed
	isGo       map[probes.InodeKey]bool
	traced     map[uint32]*target
	captures   map[uint32]*spans.Capture // of traced processes
	byName     bool                      // some target selects by process name
	byCgroup   bool                      // some target selects by container
}

type target struct {
	id    uint32 // 1-based; 0 in the kernel means "not traced"
	cfg   TargetConfig
	inode probes.InodeKey // executable targets, once resolved
}

type binaryKey struct {
	target uint32
	inode  probes.InodeKey
}

type attachedBinary struct {
	isGo    bool
	probes  int      // configured functions instrumented
	missing []string // "symbol: why" of those that could not be
	err     error    // the file could not be read as a program: nothing is instrumented
}

// probeInfo is what user space needs to turn a probe's events into spans.
type probeInfo struct {
	probe    *spans.Probe
	policies []redact.Policy
}

func newAttacher(cfg *Config, kernel *probes.Set, logger *zap.Logger, tel *telemetry, builder *spans.Builder,
	sym *symbolize.Symbolizer, red *redact.Redactor,
) *attacher {
	a := &attacher{
		cfg: cfg, kernel: kernel, logger: logger, tel: tel, builder: builder, symbolizer: sym, redactor: red,
		probes:     []*probeInfo{nil}, // probe id 0 is never used
		binaries:   map[binaryKey]*attachedBinary{},
		goRuntimes: map[probes.InodeKey]bool{},
		isGo:       map[probes.InodeKey]bool{},
		traced:     map[uint32]*target{},
		captures:   map[uint32]*spans.Capture{},
	}
	for i, t := range cfg.Targets {
		a.targets = append(a.targets, &target{id: uint32(i + 1), cfg: t})
		a.byName = a.byName || t.ProcessName != ""
		a.byCgroup = a.byCgroup || t.ContainerID != ""
	}
	return a
}

func (a *attacher) probeCount() int  { return len(a.probes) - 1 }
func (a *attacher) tracedCount() int { return len(a.traced) }

func (a *attacher) probe(id uint32) *probeInfo {
	if int(id) < len(a.probes) {
		return a.probes[id]
	}
	return nil
}

// attachTargets attaches executable targets by file (so processes started later are traced from
// their first instruction) and then every matching running process.
func (a *attacher) attachTargets() {
	if a.tls != nil {
		a.tls.attachLibraries()
	}
	for _, t := range a.targets {
		if t.cfg.Executable == "" {
			continue
		}
		a.prepareExecutable(t.cfg.Executable)
		bin, inode, err := a.attachFile(t, t.cfg.Executable)
		if err != nil {
			a.warnTarget(t, 0, "cannot attach to the executable; its processes are not traced", err)
			continue
		}
		t.inode = inode
		if err := a.kernel.TraceExecutable(inode, probes.TracedProcess{TargetId: t.id, IsGo: b2u(bin.isGo)}); err != nil {
			a.warnTarget(t, 0, "cannot register the executable in the kernel", err)
		}
	}
	pids, err := listPIDs(a.cfg.ProcRoot)
	if err != nil {
		a.logger.Error("cannot list processes; only processes started from now on are traced", zap.Error(err))
		return
	}
	for _, pid := range pids {
		if uint32(os.Getpid()) == pid {
			continue // never trace the collector itself
		}
		info, err := readProc(a.cfg.ProcRoot, pid)
		if err != nil {
			continue // kernel threads have no executable; processes may exit while we scan
		}
		if t := a.match(info, ""); t != nil {
			a.trace(t, info, time.Now())
		}
	}
	for _, t := range a.targets {
		if t.cfg.PID != 0 && a.traced[uint32(t.cfg.PID)] == nil {
			a.warnTarget(t, 0, "the process does not exist (or could not be read); nothing is traced for this target", nil)
		}
	}
}

// match returns the target a process belongs to. filename is the exec'd path when known.
func (a *attacher) match(info procInfo, filename string) *target {
	var cid string
	cidRead := false
	for _, t := range a.targets {
		switch {
		case t.cfg.Executable != "":
			if t.inode != (probes.InodeKey{}) && info.inode == t.inode {
				return t
			}
		case t.cfg.PID != 0:
			if uint32(t.cfg.PID) == info.pid {
				return t
			}
		case t.cfg.ProcessName != "":
			if info.comm == t.cfg.ProcessName || filepath.Base(info.exe) == t.cfg.ProcessName ||
				(filename != "" && filepath.Base(filename) == t.cfg.ProcessName) {
				return t
			}
		case t.cfg.ContainerID != "":
			if !cidRead {
				if ci, err := containerid.FromPID(a.cfg.ProcRoot, info.pid); err == nil {
					cid = ci.ID
				}
				cidRead = true
			}
			if cid == t.cfg.ContainerID {
				return t
			}
		}
	}
	return nil
}

// trace attaches the process's executable (for targets not attached by file) and marks the
// process as traced in the kernel and the span builder.
func (a *attacher) trace(t *target, info procInfo, at time.Time) {
	isGo := false
	if t.cfg.Executable != "" {
		isGo = a.binaries[binaryKey{t.id, t.inode}] != nil && a.binaries[binaryKey{t.id, t.inode}].isGo
	} else {
		bin, _, err := a.attachFile(t, info.exeFile)
		if err != nil {
			a.warnTarget(t, info.pid, fmt.Sprintf("cannot attach to process %d (%s); its syscalls are still traced", info.pid, info.exe), err)
			isGo = a.goBinary(info.exeFile, info.inode)
		} else {
			isGo = bin.isGo
		}
	}
	a.logger.Debug("tracing process", zap.String("target", t.cfg.Name), zap.Uint32("pid", info.pid), zap.String("executable", info.exe))
	if err := a.kernel.TraceProcess(info.pid, probes.TracedProcess{TargetId: t.id, IsGo: b2u(isGo)}); err != nil {
		a.warnTarget(t, info.pid, fmt.Sprintf("cannot trace process %d", info.pid), err)
		return
	}
	a.register(t, info, isGo)
	a.started(info.pid, at)
}

// started records that a process of a target (not a descendant) is traced from now on: a span
// process.start, which lets enforcement attach to a new pod before its first story. at is the
// exec's time from the kernel (when tracing starts at an exec), not when user space saw it.
func (a *attacher) started(pid uint32, at time.Time) {
	a.builder.AddSpan(spans.Parent{PID: pid}, spans.SpanData{
		Name: "process.start", Kind: ptrace.SpanKindInternal, Start: at, End: at,
		Attributes: func(m pcommon.Map) { m.PutStr(attrProcessEvent, "start") },
	})
}

// attrProcessEvent marks the span of a target's process starting to be traced.
const attrProcessEvent = "agenttrail.process.event"

// register tells the span builder and symbolizer about a traced process.
func (a *attacher) register(t *target, info procInfo, isGo bool) {
	a.traced[info.pid] = t
	cmd, _ := a.redactor.String(strings.Join(info.cmdline, " "))
	cid := ""
	if ci, err := containerid.FromPID(a.cfg.ProcRoot, info.pid); err == nil {
		cid = ci.ID
	}
	capture := &spans.Capture{}
	a.captures[info.pid] = capture
	a.builder.AddProcess(spans.Process{
		PID: info.pid, ParentPID: info.ppid, Target: t.cfg.Name, Executable: info.exe,
		CommandLine: cmd, ContainerID: cid, IsGo: isGo, Capture: capture,
	})
	if err := a.symbolizer.Prepare(info.pid); err != nil {
		a.logger.Debug("cannot read the process's mappings for call stacks", zap.Uint32("pid", info.pid), zap.Error(err))
	}
	var py *pyInterp
	if a.python != nil && !isGo {
		py = a.python.setupProcess(info)
	}
	tlsCapture, tlsMissing := "disabled", []string(nil)
	if a.tls != nil {
		tlsCapture, tlsMissing = a.tls.setupProcess(info, isGo)
	}
	a.setCapture(t, info, isGo, py, tlsCapture, tlsMissing)
}

// prepareExecutable probes an executable target's interpreter or TLS code before any of its
// processes starts, so that they are seen from their first instruction.
func (a *attacher) prepareExecutable(path string) {
	inode, err := statInode(path)
	if err != nil {
		return
	}
	if a.python != nil {
		a.python.setupBinary(path, fmt.Sprintf("%d:%d", inode.Dev, inode.Ino))
	}
	if a.tls != nil && a.cfg.TLS.Go {
		a.tls.attachGo(path)
	}
	if a.tls != nil {
		_, _ = a.tls.attachEmbeddedOpenSSL(path) // Node: its own OpenSSL; a problem is told per process
	}
}

// onExec handles an exec anywhere on the host. targetID is non-zero when the kernel already
// traces the process (an executable target, or a child of a traced process).
func (a *attacher) onExec(h spans.Header, targetID uint32, filename string) {
	pid := h.PID
	if targetID != 0 {
		if int(targetID) > len(a.targets) {
			return
		}
		t := a.targets[targetID-1]
		// The new image's records follow this one in the ring buffer; what the old image did
		// keeps the old identity, and the new one is named after the kernel's filename and the
		// exec's arguments even if the process is gone before /proc can be read.
		a.builder.ProcessExec(h, filename)
		info, err := readProc(a.cfg.ProcRoot, pid)
		if err != nil {
			return // exited already (a short program); its exit event closes whatever it opened
		}
		isGo := a.goBinary(info.exeFile, info.inode)
		if isGo {
			// The kernel resets the goroutine flag on exec; a Go image keys by goroutine again.
			_ = a.kernel.TraceProcess(pid, probes.TracedProcess{TargetId: targetID, IsGo: 1})
		}
		fromExec, _ := a.builder.Process(pid)
		a.register(t, info, isGo)
		later := !sameFile(a.cfg.ProcRoot, pid, filename, info.inode)
		if later || len(info.cmdline) == 0 {
			// /proc already shows a later exec's program (whose own exec record follows this
			// one), or an exiting process's empty cmdline: this image keeps what the kernel said.
			if p, ok := a.builder.Process(pid); ok {
				p.CommandLine = fromExec.CommandLine
				if later {
					p.Executable = fromExec.Executable
				}
				a.builder.AddProcess(p)
			}
		}
		if t.cfg.Executable != "" && info.inode == t.inode {
			a.started(pid, h.Time) // the target's executable, not a child's exec of another program
		}
		return
	}
	if !a.byName && !a.byCgroup {
		return
	}
	if a.byName && !a.byCgroup && !a.nameCouldMatch(filename) {
		return // cheap filter: most execs on a host are of other programs
	}
	info, err := readProc(a.cfg.ProcRoot, pid)
	if err != nil {
		return
	}
	if t := a.match(info, filename); t != nil {
		a.trace(t, info, h.Time)
	}
}

func (a *attacher) nameCouldMatch(filename string) bool {
	base := filepath.Base(filename)
	for _, t := range a.targets {
		if t.cfg.ProcessName != "" && (base == t.cfg.ProcessName || strings.HasPrefix(base, t.cfg.ProcessName)) {
			return true
		}
	}
	return false
}

// onFork registers a child process that inherited tracing from its parent in the kernel; its
// work is parented under the call open in the forking goroutine or thread (h).
func (a *attacher) onFork(h spans.Header, child uint32, targetID uint32) {
	parent := h.PID
	t := a.traced[parent]
	if t == nil && targetID != 0 && int(targetID) <= len(a.targets) {
		t = a.targets[targetID-1]
	}
	if t == nil {
		return
	}
	info, err := readProc(a.cfg.ProcRoot, child)
	if err != nil {
		info = procInfo{pid: child} // exited or exec'ing already: still parent its events
	}
	a.register(t, info, a.goBinary(info.exeFile, info.inode))
	if pp, ok := a.builder.Process(parent); ok {
		// Until it execs, the child runs its parent's program; /proc, read after the fact, may
		// already show the program it exec'd, and the exec event renames it then.
		if cp, ok := a.builder.Process(child); ok {
			cp.Executable, cp.CommandLine, cp.ParentPID = pp.Executable, pp.CommandLine, parent
			a.builder.AddProcess(cp)
		}
	}
	a.builder.ProcessFork(h, child)
}

func (a *attacher) onExit(pid uint32) {
	delete(a.traced, pid)
	delete(a.captures, pid)
	a.symbolizer.Forget(pid)
	a.problems.processGone(pid)
}

// attachFile attaches the target's functions to one executable file, once per target and file.
func (a *attacher) attachFile(t *target, path string) (*attachedBinary, probes.InodeKey, error) {
	info, err := statInode(path)
	if err != nil {
		return nil, probes.InodeKey{}, err
	}
	key := binaryKey{t.id, info}
	if b := a.binaries[key]; b != nil {
		if b.err != nil {
			return nil, info, b.err
		}
		return b, info, nil
	}
	bin, err := elfinfo.Open(path)
	if err != nil {
		// Kept, so a program that cannot be read is not parsed again at each of its execs.
		a.binaries[key] = &attachedBinary{err: err}
		return nil, info, err
	}
	defer bin.Close()
	ab := &attachedBinary{isGo: bin.IsGo}
	a.isGo[info] = bin.IsGo
	a.binaries[key] = ab
	for _, f := range t.cfg.Functions {
		if err := a.attachFunction(t, path, bin, f); err != nil {
			a.tel.attachFailures.Add(ctxBackground, 1)
			a.logger.Warn("cannot instrument function; the rest of the target is traced",
				zap.String("target", t.cfg.Name), zap.String("symbol", f.Symbol), zap.String("executable", path), zap.Error(err))
			a.problems.add(0, fmt.Sprintf("function %s of target %s in %s: %v", f.Symbol, t.cfg.Name, path, err))
			ab.missing = append(ab.missing, f.Symbol+": "+shortError(err))
			continue
		}
		ab.probes++
	}
	if bin.IsGo && !a.goRuntimes[info] {
		if err := a.attachGoRuntime(path, bin); err != nil {
			a.logger.Warn("cannot follow goroutine creation; work a goroutine does for its creator becomes its own trace",
				zap.String("target", t.cfg.Name), zap.String("executable", path), zap.Error(err))
			a.problems.add(0, fmt.Sprintf("goroutine creation (runtime.newproc1) in %s: %v", path, err))
		} else {
			a.goRuntimes[info] = true
		}
	}
	return ab, info, nil
}

func statInode(path string) (probes.InodeKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return probes.InodeKey{}, fmt.Errorf("executable %s does not exist", path)
		}
		return probes.InodeKey{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return inodeKey(st), nil
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
	return inodeKey(st) == inode
}

// goBinary reports whether the file is a Go program, caching by inode.
func (a *attacher) goBinary(path string, inode probes.InodeKey) bool {
	if v, ok := a.isGo[inode]; ok {
		return v
	}
	bin, err := elfinfo.Open(path)
	if err != nil {
		return false
	}
	defer bin.Close()
	a.isGo[inode] = bin.IsGo
	return bin.IsGo
}

func (a *attacher) attachFunction(t *target, exePath string, exe *elfinfo.Binary, f FunctionConfig) error {
	bin, path := exe, exePath
	if f.Library != "" {
		libPath, err := findLibrary(f.Library)
		if err != nil {
			return err
		}
		lib, err := elfinfo.Open(libPath)
		if err != nil {
			return err
		}
		defer lib.Close()
		bin, path = lib, libPath
	}
	fn, err := bin.Function(f.Symbol)
	if err != nil {
		return err
	}
	var names []string
	var policies []redact.Policy
	for _, s := range f.Args {
		name, pol, _ := parseArg(s) // validated in Config.Validate
		names = append(names, name)
		policies = append(policies, pol)
	}
	var args []elfinfo.Arg
	if len(names) > 0 {
		if args, err = bin.Args(f.Symbol, names); err != nil {
			return fmt.Errorf("arguments: %w", err)
		}
	}
	id := uint32(len(a.probes))
	spec := probes.ProbeSpec{Nargs: uint8(len(args)), IsGo: b2u(bin.IsGo)}
	probe := &spans.Probe{
		ID: id, Target: t.cfg.Name, Symbol: fn.Name, Role: spans.Role(f.Role),
		ToolName: f.ToolName, Model: f.Model,
	}
	if probe.Role == "" {
		probe.Role = spans.RoleFunction
	}
	if probe.Role == spans.RoleTool && probe.ToolName == "" {
		probe.ToolName = shortName(fn.Name)
	}
	probe.File, probe.Line = bin.SourceLine(fn.Address)
	for i, arg := range args {
		spec.Args[i].Kind = uint8(arg.Kind)
		spec.Args[i].Size = uint8(arg.Size)
		if len(arg.Regs) > 0 {
			spec.Args[i].Reg0 = uint8(arg.Regs[0])
		}
		if len(arg.Regs) > 1 {
			spec.Args[i].Reg1 = uint8(arg.Regs[1])
		}
		probe.Args = append(probe.Args, spans.ArgSpec{Name: arg.Name})
	}
	offset, err := bin.FileOffset(fn.Address)
	if err != nil {
		return err
	}
	var rets []uint64
	if bin.IsGo {
		// Never a uretprobe on Go code: one probe on every RET instruction instead. A function
		// without RET (it only panics or blocks forever) gets its entry probe alone; its span
		// ends when a caller returns, the goroutine is reused or the process exits.
		rets, err = bin.ReturnOffsets(fn)
		if err != nil && !errors.Is(err, elfinfo.ErrNoReturn) {
			return err
		}
		if err != nil {
			a.logger.Info("function never returns normally; its calls end when a caller returns or the process exits",
				zap.String("target", t.cfg.Name), zap.String("symbol", fn.Name))
		}
	}
	if err := a.kernel.SetProbe(id, spec); err != nil {
		return err
	}
	links, err := attachProbes(path, fn.Name, offset, uint64(id), bin.IsGo, rets, a.kernel.FuncEntry(), a.kernel.FuncReturn())
	if err != nil {
		return err
	}
	for _, l := range links {
		a.kernel.AddLink(l)
	}
	a.probes = append(a.probes, &probeInfo{probe: probe, policies: policies})
	return nil
}

// attachProbes attaches an entry probe at the function and either uprobes at its RET offsets
// (Go) or a uretprobe (native). On error it detaches what it attached, so a failed function
// leaves no probe behind that would report under another function's id.
func attachProbes(path, symbol string, offset, cookie uint64, isGo bool, rets []uint64, entry, ret *ebpf.Program) (links []link.Link, err error) {
	defer func() {
		if err != nil {
			for _, l := range links {
				_ = l.Close()
			}
			links = nil
		}
	}()
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, err
	}
	l, err := ex.Uprobe(symbol, entry, &link.UprobeOptions{Address: offset, Cookie: cookie})
	if err != nil {
		return links, fmt.Errorf("attach entry probe: %w", err)
	}
	links = append(links, l)
	if !isGo {
		l, err := ex.Uretprobe(symbol, ret, &link.UprobeOptions{Address: offset, Cookie: cookie})
		if err != nil {
			return links, fmt.Errorf("attach return probe: %w", err)
		}
		return append(links, l), nil
	}
	for _, off := range rets {
		l, err := ex.Uprobe(symbol, ret, &link.UprobeOptions{Address: offset, Offset: off, Cookie: cookie})
		if err != nil {
			return links, fmt.Errorf("attach return probe at +%#x: %w", off, err)
		}
		links = append(links, l)
	}
	return links, nil
}

// attachGoRuntime follows goroutine creation: runtime.newproc1 entry and its RETs.
func (a *attacher) attachGoRuntime(path string, bin *elfinfo.Binary) error {
	fn, err := bin.Function("runtime.newproc1")
	if err != nil {
		return err
	}
	offset, err := bin.FileOffset(fn.Address)
	if err != nil {
		return err
	}
	rets, err := bin.ReturnOffsets(fn)
	if err != nil {
		return err
	}
	links, err := attachProbes(path, fn.Name, offset, 0, true, rets, a.kernel.GoNewproc1(), a.kernel.GoNewproc1Return())
	if err != nil {
		return err
	}
	for _, l := range links {
		a.kernel.AddLink(l)
	}
	return nil
}

var libraryDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/usr/local/lib", "/usr/lib", "/lib"}

// findLibrary resolves a library given as a path or a file name.
func findLibrary(lib string) (string, error) {
	if filepath.IsAbs(lib) {
		if _, err := os.Stat(lib); err != nil {
			return "", fmt.Errorf("library %s: %w", lib, err)
		}
		return lib, nil
	}
	for _, dir := range libraryDirs {
		p := filepath.Join(dir, lib)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("library %q not found in %s", lib, strings.Join(libraryDirs, ", "))
}

func shortName(symbol string) string {
	if i := strings.LastIndexByte(symbol, '.'); i >= 0 && i < len(symbol)-1 {
		return symbol[i+1:]
	}
	return symbol
}

// warnTarget logs, counts and reports what could not be instrumented for a target; pid is the
// process concerned (0: the target itself).
func (a *attacher) warnTarget(t *target, pid uint32, msg string, err error) {
	a.tel.attachFailures.Add(ctxBackground, 1)
	fields := []zap.Field{zap.String("target", t.cfg.Name)}
	what := "target " + t.cfg.Name + ": " + msg
	if err != nil {
		fields = append(fields, zap.Error(err))
		what += ": " + err.Error()
	}
	a.logger.Warn(msg, fields...)
	a.problems.add(pid, what)
}

func (a *attacher) close() {}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
