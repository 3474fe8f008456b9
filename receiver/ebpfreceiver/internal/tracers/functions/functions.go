// Package functions is the tracer of configured Go and native functions: it attaches an entry
// probe and return probes (uprobes on each RET of Go code, uretprobes of native code) to each
// function a target names, follows goroutine creation in Go programs (runtime.newproc1), and
// turns the kernel's records into the spans of those calls with their captured, redacted
// arguments.
package functions

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// Tracer attaches the targets' functions. Reader goroutine (and Start) only.
type Tracer struct {
	env        tracer.Env
	probes     []*probeInfo // index: probe id
	binaries   map[binaryKey]*attachedBinary
	goRuntimes map[probes.InodeKey]bool // Go binaries whose runtime.newproc1 is probed
	// Go programs of processes matched as they ran (not executable targets) whose
	// runtime.newproc1 is probed at the process's SetupProcess, not at AttachBinary: its offsets
	// come from the program's DWARF (0.4 s and more of CPU for a 15 MB .debug_info), and the
	// TLS probes, set up before it there, must not wait for them while the process opens its
	// first connection (issue #18).
	laterRuntimes map[probes.InodeKey]string
}

var _ tracer.Tracer = (*Tracer)(nil)

type binaryKey struct {
	target uint32
	inode  probes.InodeKey
}

type attachedBinary struct {
	probes  int      // configured functions instrumented
	missing []string // "symbol: why" of those that could not be
	err     error    // the file could not be read as a program: nothing is instrumented
}

// probeInfo is what user space needs to turn a probe's events into spans.
type probeInfo struct {
	probe    *spans.Probe
	policies []redact.Policy
}

// New returns the functions tracer.
func New(env tracer.Env) *Tracer {
	return &Tracer{
		env:        env,
		probes:     []*probeInfo{nil}, // probe id 0 is never used
		binaries:   map[binaryKey]*attachedBinary{},
		goRuntimes: map[probes.InodeKey]bool{},

		laterRuntimes: map[probes.InodeKey]string{},
	}
}

// Record sizes (bpf/common/events.h): an entry carries the arguments only when the probe
// captures some.
var (
	sizeFunc      = tracer.SizeOf[probes.FuncEvent]()
	sizeFuncArgs  = tracer.SizeOf[probes.FuncArgsEvent]()
	sizeGoroutine = tracer.SizeOf[probes.GoroutineEvent]()
)

func (t *Tracer) Name() string { return "functions" }

func (t *Tracer) Kinds() []tracer.Kind {
	return []tracer.Kind{
		{Kind: probes.KindFuncEntry, Name: "func_entry", Min: sizeFunc, Full: sizeFuncArgs, Handle: t.onEntry},
		{Kind: probes.KindFuncReturn, Name: "func_return", Min: sizeFunc, Full: sizeFunc, Handle: t.onReturn},
		{Kind: probes.KindGoroutineCreate, Name: "goroutine_create", Min: sizeGoroutine, Full: sizeGoroutine, Handle: t.onGoroutineCreate},
	}
}

func (t *Tracer) Start()                 {}
func (t *Tracer) ProcessGone(uint32)     {}
func (t *Tracer) Housekeeping(time.Time) {}
func (t *Tracer) Waiting() bool          { return false }
func (t *Tracer) Close() error           { return nil }

// ProbeCount is the number of functions attached.
func (t *Tracer) ProbeCount() int { return len(t.probes) - 1 }

// AddProbe registers a probe's span description and its arguments' redaction policies, and
// returns its id (the cookie its kernel records carry).
func (t *Tracer) AddProbe(p *spans.Probe, policies []redact.Policy) uint32 {
	p.ID = uint32(len(t.probes))
	t.probes = append(t.probes, &probeInfo{probe: p, policies: policies})
	return p.ID
}

func (t *Tracer) probe(id uint32) *probeInfo {
	if int(id) < len(t.probes) {
		return t.probes[id]
	}
	return nil
}

func (t *Tracer) onEntry(hdr spans.Header, rec []byte) string {
	h := tracer.As[probes.EventHeader](rec)
	pi := t.probe(h.ProbeId)
	if pi == nil {
		return "unknown_probe"
	}
	var args []spans.ArgValue
	if len(rec) >= sizeFuncArgs {
		args = decodeArgs(t.env.Redactor, pi, tracer.As[probes.FuncArgsEvent](rec))
	}
	t.env.Builder.FuncEntry(hdr, pi.probe, args)
	return ""
}

func (t *Tracer) onReturn(hdr spans.Header, rec []byte) string {
	h := tracer.As[probes.EventHeader](rec)
	if t.probe(h.ProbeId) == nil {
		return "unknown_probe"
	}
	t.env.Builder.FuncReturn(hdr, h.ProbeId)
	return ""
}

func (t *Tracer) onGoroutineCreate(hdr spans.Header, rec []byte) string {
	t.env.Builder.GoroutineCreate(hdr, tracer.As[probes.GoroutineEvent](rec).Child)
	return ""
}

// decodeArgs renders a function's captured arguments. The probe's argument list is ours (at
// most MaxArgs, checked in Config.Validate); the values are the kernel's, each bounded by its
// slot.
func decodeArgs(red *redact.Redactor, pi *probeInfo, e *probes.FuncArgsEvent) []spans.ArgValue {
	n := min(len(pi.probe.Args), len(e.Args), len(pi.policies))
	out := make([]spans.ArgValue, 0, n)
	for i, spec := range pi.probe.Args[:n] {
		a := &e.Args[i]
		v := spans.ArgValue{Name: spec.Name, Length: a.Num}
		if a.Flags&probes.ArgFlagReadFailed != 0 {
			v.ReadError = true
			out = append(out, v)
			continue
		}
		policy := pi.policies[i]
		switch a.Kind {
		case probes.ArgInt:
			v.Value = strconv.FormatInt(int64(a.Num), 10)
		case probes.ArgUint:
			v.Value = strconv.FormatUint(a.Num, 10)
		case probes.ArgBool:
			v.Value = strconv.FormatBool(a.Num&0xff != 0)
		case probes.ArgString, probes.ArgBytes, probes.ArgCString:
			n := min(int(a.Captured), len(a.Data))
			v.Truncated = a.Flags&probes.ArgFlagTruncated != 0
			value, counts, ok := red.Value(policy, a.Data[:n], v.Truncated)
			v.Value, v.Redacted, v.Omitted = value, counts.Total(), !ok
			out = append(out, v)
			continue
		default:
			// A kind the probe was not set up with: nothing of it can be trusted.
			v.Length, v.ReadError = 0, true
			out = append(out, v)
			continue
		}
		if policy == redact.PolicyNone {
			v.Value, v.Omitted = "", true
		}
		out = append(out, v)
	}
	return out
}

// AttachBinary attaches the target's functions to a program file, once per target and file
// (executable targets at Start, other targets' programs as their processes are matched).
func (t *Tracer) AttachBinary(b tracer.Binary) error {
	_, err := t.attachFile(b.Target, b.Path, b.Inode, b.PID != 0)
	return err
}

// SetupProcess says how many of the target's functions are instrumented in the process's
// program (agenttrail.capture.functions) and why the others are not.
func (t *Tracer) SetupProcess(p *tracer.Process) {
	if path, ok := t.laterRuntimes[p.Inode]; ok {
		delete(t.laterRuntimes, p.Inode)
		bin, err := elfinfo.Open(path)
		if err != nil {
			t.runtimeFailed(p.Target, path, err)
		} else {
			t.goRuntime(p.Target, path, bin, p.Inode)
			_ = bin.Close()
		}
	}
	n := len(p.Target.Config.Functions)
	if n == 0 || p.Capture == nil {
		return
	}
	// Only a process running a program the target's functions were looked up in: a child's
	// exec of another program (a shell) is not expected to have them.
	ab := t.binaries[binaryKey{p.Target.ID, p.Inode}]
	if ab == nil || p.Inode == (probes.InodeKey{}) {
		return
	}
	c := p.Capture
	c.Functions = fmt.Sprintf("%d/%d", ab.probes, n)
	switch {
	case ab.err != nil:
		c.Missing = append(c.Missing, "functions: the program could not be read: "+tracer.ShortError(ab.err))
	case ab.probes < n:
		c.Missing = append(c.Missing, fmt.Sprintf("functions: %d of %d not instrumented (%s)", n-ab.probes, n, strings.Join(ab.missing, "; ")))
	}
}

// attachFile attaches the target's functions to one executable file, once per target and file.
// later: the file is a running process's program (see laterRuntimes).
func (t *Tracer) attachFile(tg *tracer.Target, path string, inode probes.InodeKey, later bool) (*attachedBinary, error) {
	key := binaryKey{tg.ID, inode}
	if b := t.binaries[key]; b != nil {
		return b, b.err
	}
	bin, err := elfinfo.Open(path)
	if err != nil {
		// Kept, so a program that cannot be read is not parsed again at each of its execs.
		t.binaries[key] = &attachedBinary{err: err}
		return nil, err
	}
	defer bin.Close()
	ab := &attachedBinary{}
	t.binaries[key] = ab
	for _, f := range tg.Config.Functions {
		if err := t.attachFunction(tg, path, bin, f); err != nil {
			t.env.Telemetry.AttachFailures.Add(tracer.Ctx, 1)
			t.env.Logger.Warn("cannot instrument function; the rest of the target is traced",
				zap.String("target", tg.Config.Name), zap.String("symbol", f.Symbol), zap.String("executable", path), zap.Error(err))
			t.env.Problems.Add(0, fmt.Sprintf("function %s of target %s in %s: %v", f.Symbol, tg.Config.Name, path, err))
			ab.missing = append(ab.missing, f.Symbol+": "+tracer.ShortError(err))
			continue
		}
		ab.probes++
	}
	if bin.IsGo && !t.goRuntimes[inode] {
		if later {
			t.laterRuntimes[inode] = path
		} else {
			t.goRuntime(tg, path, bin, inode)
		}
	}
	return ab, nil
}

// goRuntime probes a Go program's goroutine creation, once per file.
func (t *Tracer) goRuntime(tg *tracer.Target, path string, bin *elfinfo.Binary, inode probes.InodeKey) {
	if t.goRuntimes[inode] {
		return
	}
	if err := t.attachGoRuntime(path, bin); err != nil {
		t.runtimeFailed(tg, path, err)
		return
	}
	t.goRuntimes[inode] = true
}

func (t *Tracer) runtimeFailed(tg *tracer.Target, path string, err error) {
	t.env.Logger.Warn("cannot follow goroutine creation; work a goroutine does for its creator becomes its own trace",
		zap.String("target", tg.Config.Name), zap.String("executable", path), zap.Error(err))
	t.env.Problems.Add(0, fmt.Sprintf("goroutine creation (runtime.newproc1) in %s: %v", path, err))
}

func (t *Tracer) attachFunction(tg *tracer.Target, exePath string, exe *elfinfo.Binary, f tracer.FunctionConfig) error {
	bin, path := exe, exePath
	if f.Library != "" {
		libPath, err := tracer.FindLibrary(f.Library)
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
		name, pol, _ := tracer.ParseArg(s) // validated in Config.Validate
		names = append(names, name)
		policies = append(policies, pol)
	}
	var args []elfinfo.Arg
	if len(names) > 0 {
		if args, err = bin.Args(f.Symbol, names); err != nil {
			return fmt.Errorf("arguments: %w", err)
		}
	}
	id := uint32(len(t.probes))
	spec := probes.ProbeSpec{Nargs: uint8(len(args)), IsGo: tracer.B2U(bin.IsGo)}
	probe := &spans.Probe{ID: id, Target: tg.Config.Name, Symbol: fn.Name, Model: f.Model}
	tracer.ProbeRole(probe, f.Role, f.ToolName, fn.Name)
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
			t.env.Logger.Info("function never returns normally; its calls end when a caller returns or the process exits",
				zap.String("target", tg.Config.Name), zap.String("symbol", fn.Name))
		}
	}
	if bin.IsGo {
		// The entry probe goes after the function's stack bound check: a call that grows its
		// stack or stops for a preemption request restarts from the first instruction, and a
		// probe there saw it as two nested calls with one return (the outer span never ended,
		// and the goroutine's later calls all went under it). The RETs stay where they are.
		entry, err := bin.EntryOffset(fn)
		if err != nil {
			return err
		}
		if len(rets) == 0 || rets[0] >= entry { // sorted; a RET inside the check would be no check
			offset += entry
			for i := range rets {
				rets[i] -= entry // relative to the entry probe's address
			}
		}
	}
	k := t.env.Kernel
	if err := k.SetProbe(id, spec); err != nil {
		return err
	}
	links, err := tracer.AttachProbes(path, fn.Name, offset, uint64(id), bin.IsGo, rets, k.FuncEntry(), k.FuncReturn())
	if err != nil {
		return err
	}
	for _, l := range links {
		k.AddLink(l)
	}
	t.AddProbe(probe, policies)
	return nil
}

// attachGoRuntime follows goroutine creation in runtime.newproc1. With the runtime's structure
// offsets from the binary's DWARF, one probe on its RETs reads the creating goroutine through
// g0.m.curg (go_newproc1_ret): a uprobe hit is a trap that costs 10-20 times what the program
// does, and every goroutine the traced program starts takes it. Without DWARF (-ldflags=-w),
// the entry probe saves the creator for the RET probes, two hits per goroutine.
func (t *Tracer) attachGoRuntime(path string, bin *elfinfo.Binary) error {
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
	k := t.env.Kernel
	var links []link.Link
	if cookie, ok := goRuntimeCookie(bin); ok {
		links, err = attachAt(path, fn.Name, offset, cookie, rets, k.GoNewproc1Ret())
	} else {
		t.env.Logger.Debug("runtime offsets not in the binary's DWARF; goroutine creation takes an entry and a return probe",
			zap.String("executable", path))
		links, err = tracer.AttachProbes(path, fn.Name, offset, 0, true, rets, k.GoNewproc1(), k.GoNewproc1Return())
	}
	if err != nil {
		return err
	}
	for _, l := range links {
		k.AddLink(l)
	}
	return nil
}

// goRuntimeCookie is go_newproc1_ret's attach cookie for bin: the offsets of runtime.g.m and
// runtime.m.curg, or false when the binary's DWARF does not have them.
func goRuntimeCookie(bin *elfinfo.Binary) (uint64, bool) {
	gm, err := bin.StructFieldOffsets("runtime.g", "m")
	if err != nil {
		return 0, false
	}
	curg, err := bin.StructFieldOffsets("runtime.m", "curg")
	if err != nil {
		return 0, false
	}
	return probes.GoRuntimeCookie(gm[0], curg[0]), true // each below elfinfo.MaxFieldOffset
}

// attachAt attaches prog at each of rets (offsets from offset) of symbol in path.
func attachAt(path, symbol string, offset, cookie uint64, rets []uint64, prog *ebpf.Program) (links []link.Link, err error) {
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
	for _, off := range rets {
		l, err := ex.Uprobe(symbol, prog, &link.UprobeOptions{Address: offset, Offset: off, Cookie: cookie})
		if err != nil {
			return links, fmt.Errorf("attach return probe at +%#x: %w", off, err)
		}
		links = append(links, l)
	}
	return links, nil
}
