package ebpfreceiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/pyinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
)

// python is the receiver's CPython support: it finds the interpreter of traced processes,
// attaches the audit probe once per interpreter binary, tells the kernel where each process's
// interpreter state is, turns the kernel's Python stacks into frames (and into the spans of
// configured Python functions) and audit records into span events. Reader goroutine only.
type python struct {
	cfg      *Config
	kernel   *probes.Set
	logger   *zap.Logger
	tel      *telemetry
	redactor *redact.Redactor
	reader   *pyinfo.Reader
	problems *attachProblems // what could not be instrumented, for the component status

	interps  map[string]*pyInterp // by "dev:inode" of the binary
	bins     []*pyInterp          // by kernel index
	warned   map[string]bool      // interpreter versions warned about
	patterns map[string][]pyPattern
	funcs    map[pyFuncKey]*spans.Probe
	pending  map[uint32]*pendingStack // thread id → the stack sent before its next record
}

type pyInterp struct {
	in     *pyinfo.Interpreter // nil: not an interpreter
	idx    uint32
	audit  bool // the audit probe is attached
	failed bool
}

type pyPattern struct {
	module, qualname string
	cfg              PythonFunctionConfig
}

type pyFuncKey struct {
	target   string
	pattern  int
	qualname string
	file     string
}

type pendingStack struct {
	pid    uint32
	mono   uint64
	status uint16
	layout uint16
	frames []probes.PyFrame
}

// pyStack is a resolved Python stack.
type pyStack struct {
	frames    []spans.Frame     // innermost first
	funcs     []spans.StackFunc // configured functions, outermost first
	truncated bool
	// unreadable lists what could not be read of its code objects, as "field:reason" (see
	// pyinfo's Field and Reason constants), each once.
	unreadable []string
}

// putUnreadable says, on the span or event that carries the stack, what its frames lack.
func (st *pyStack) putUnreadable(m pcommon.Map) {
	if len(st.unreadable) > 0 {
		m.PutStr("agenttrail.python.stack.unreadable", strings.Join(st.unreadable, ","))
	}
}

// Bounds of what the receiver keeps of Python processes.
const (
	// maxPendingStacks bounds the stacks waiting for their thread's next record (one per
	// thread; a thread whose next record never comes leaves one behind).
	maxPendingStacks = 4096
	// maxInterps bounds the binaries remembered as interpreters or not (a process can exec
	// or map any number of files).
	maxInterps = 4096
	// maxPyFuncs bounds the probes of configured Python functions, one per qualified name and
	// file that matched: a process can make any number of functions whose names match a glob.
	// Past it they start over (spans of functions open then may be split).
	maxPyFuncs = 16384
	// maxWarnedVersions bounds the interpreter versions warned about (a version can come
	// from a file name).
	maxWarnedVersions = 64
)

// unreadable counts a value of a Python process that failed a check, and notes it on the
// stack it belongs to (st may be nil).
func (p *python) unreadable(st *pyStack, field, reason string) {
	if p.tel != nil {
		p.tel.pythonUnreadable.Add(ctxBackground, 1, metric.WithAttributes(attribute.String("field", field), attribute.String("reason", reason)))
	}
	if st != nil && !slices.Contains(st.unreadable, field+":"+reason) {
		st.unreadable = append(st.unreadable, field+":"+reason)
	}
}

func newPython(cfg *Config, kernel *probes.Set, logger *zap.Logger, tel *telemetry, red *redact.Redactor) *python {
	p := &python{
		cfg: cfg, kernel: kernel, logger: logger, tel: tel, redactor: red,
		reader:   pyinfo.NewReader(cfg.ProcRoot),
		interps:  map[string]*pyInterp{},
		warned:   map[string]bool{},
		patterns: map[string][]pyPattern{},
		funcs:    map[pyFuncKey]*spans.Probe{},
		pending:  map[uint32]*pendingStack{},
	}
	for _, t := range cfg.Targets {
		for _, f := range t.PythonFunctions {
			module, qualname, _ := parsePythonPattern(f.Pattern) // validated
			p.patterns[t.Name] = append(p.patterns[t.Name], pyPattern{module: module, qualname: qualname, cfg: f})
		}
	}
	for id, l := range pyinfo.Layouts {
		if err := kernel.SetPythonLayout(l.ID, l.Kernel); err != nil {
			logger.Warn("cannot load a CPython layout into the kernel", zap.String("version", id), zap.Error(err))
		}
	}
	return p
}

// setupBinary inspects an executable or library that may be a CPython interpreter and, the first
// time, registers it in the kernel and attaches its audit probe. path must open the file from
// here; key identifies the file.
func (p *python) setupBinary(path, key string) *pyInterp {
	if pi, ok := p.interps[key]; ok {
		return pi
	}
	pi := &pyInterp{}
	if len(p.interps) >= maxInterps {
		// Forget the binaries found not to be interpreters (they are inspected again if seen).
		for k, other := range p.interps {
			if other.in == nil {
				delete(p.interps, k)
			}
		}
	}
	if len(p.interps) < maxInterps {
		p.interps[key] = pi
	}
	in, err := pyinfo.Inspect(path)
	if err != nil {
		if errors.Is(err, pyinfo.ErrTooLarge) {
			p.unreadable(nil, "interpreter", pyinfo.ReasonTooLong)
		}
		if !errors.Is(err, pyinfo.ErrNotPython) {
			p.logger.Debug("cannot inspect a possible Python interpreter", zap.String("path", path), zap.Error(err))
		}
		return pi
	}
	pi.in = in
	if in.Layout == nil && !p.warned[in.Version] && len(p.warned) < maxWarnedVersions {
		p.warned[in.Version] = true
		p.tel.attachFailures.Add(ctxBackground, 1)
		p.problems.add(0, fmt.Sprintf("Python stacks of CPython %s in %s: no known frame layout", cmpOr(in.Version, "unknown"), path))
		p.logger.Warn("this CPython version has no known frame layout: its processes are traced with native frames only (no Python stacks, audit events without arguments)",
			zap.String("version", cmpOr(in.Version, "unknown")), zap.String("interpreter", path))
	}
	if len(p.bins) >= probes.MaxPythonBinaries {
		p.problems.add(0, fmt.Sprintf("Python interpreter %s: more than %d interpreter binaries", path, probes.MaxPythonBinaries))
		p.logger.Warn("too many Python interpreter binaries; this one is not probed", zap.String("interpreter", path))
		pi.failed = true
		return pi
	}
	pi.idx = uint32(len(p.bins))
	p.bins = append(p.bins, pi)
	bin := probes.PythonBinary{RuntimeVaddr: in.RuntimeAddr}
	if in.Layout != nil {
		bin.Layout = in.Layout.ID
	}
	if in.Audit != nil {
		bin.ProbeVaddr = in.Audit.Address
		for i := 0; i < 2; i++ {
			a := in.Audit.Args[i]
			bin.Args[i] = probes.UsdtArg{Offset: a.Offset, Kind: uint8(a.Kind), Reg: uint8(a.Reg), Size: a.Size, IsSigned: b2u(a.Signed)}
		}
	}
	if err := p.kernel.SetPythonBinary(pi.idx, bin); err != nil {
		p.problems.add(0, fmt.Sprintf("Python interpreter %s: %v", path, err))
		p.logger.Warn("cannot register a Python interpreter in the kernel", zap.String("interpreter", path), zap.Error(err))
		pi.failed = true
		return pi
	}
	if !p.cfg.Python.Audit || p.kernel.PythonAudit() == nil {
		return pi
	}
	if in.Audit == nil {
		p.logger.Info("the Python interpreter has no USDT probes (built without --with-dtrace): no audit events; Python stacks are still taken at syscalls and TLS calls",
			zap.String("interpreter", path), zap.String("version", in.Version))
		return pi
	}
	ex, err := link.OpenExecutable(path)
	if err == nil {
		var l link.Link
		l, err = ex.Uprobe("python:audit", p.kernel.PythonAudit(), &link.UprobeOptions{
			Address: in.Audit.FileOffset, RefCtrOffset: in.Audit.SemaphoreOffset, Cookie: uint64(pi.idx),
		})
		if err == nil {
			p.kernel.AddLink(l)
			pi.audit = true
		}
	}
	if err != nil {
		p.tel.attachFailures.Add(ctxBackground, 1)
		p.problems.add(0, fmt.Sprintf("Python audit probe in %s: %v", path, err))
		p.logger.Warn("cannot attach the Python audit probe", zap.String("interpreter", path), zap.Error(err))
	}
	return pi
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// setupProcess finds a traced process's interpreter, if it runs CPython, and tells the kernel
// where its runtime state is (the audit probe also does, at the first audit event). It returns
// the interpreter found (nil: none), for the process's capture attributes.
func (p *python) setupProcess(info procInfo) *pyInterp {
	if info.exeFile == "" {
		return nil
	}
	pi := p.setupBinary(info.exeFile, fmt.Sprintf("%d:%d", info.inode.Dev, info.inode.Ino))
	mapPath := info.exe
	var cands []pyinfo.Mapping
	if pi.in == nil {
		// An embedding program: the interpreter is a mapped libpython.
		var err error
		if cands, err = p.candidates(info.pid); err != nil {
			return nil
		}
		found := false
		for _, m := range cands {
			if !strings.HasPrefix(filepath.Base(m.Path), "libpython") {
				continue
			}
			here := filepath.Join(p.cfg.ProcRoot, strconv.FormatUint(uint64(info.pid), 10), "root", m.Path)
			if lib := p.setupBinary(here, fmt.Sprintf("%d:%d", m.Dev, m.Inode)); lib.in != nil {
				pi, mapPath, found = lib, m.Path, true
				break
			}
		}
		if !found {
			return nil
		}
	}
	in := pi.in
	if in.Layout == nil || pi.failed {
		return pi
	}
	if cands == nil { // the program is the interpreter: its mappings are not read yet
		cands, _ = p.candidates(info.pid) // unreadable: no bias mapping
	}
	bias := uint64(0)
	if m, ok := firstMappingByPath(cands, mapPath); ok {
		bias = in.Bias(m)
	} else if in.Shared {
		return pi // not mapped yet: the audit probe registers the process at its first event
	}
	if err := p.kernel.SetPythonProcess(info.pid, probes.PythonProc{Runtime: in.RuntimeAddr + bias, Layout: in.Layout.ID}); err != nil {
		p.logger.Debug("cannot register a Python process in the kernel", zap.Uint32("pid", info.pid), zap.Error(err))
	}
	return pi
}

// candidates lists a process's possible interpreter files; past pyinfo's bound, the first
// ones (the count says it).
func (p *python) candidates(pid uint32) ([]pyinfo.Mapping, error) {
	cands, err := pyinfo.Candidates(p.cfg.ProcRoot, pid)
	if errors.Is(err, pyinfo.ErrTooManyCandidates) {
		p.unreadable(nil, "interpreter", "too_many_candidates")
		return cands, nil
	}
	return cands, err
}

// firstMappingByPath is the first of a process's interpreter candidates mapped from path.
func firstMappingByPath(cands []pyinfo.Mapping, path string) (pyinfo.Mapping, bool) {
	for _, m := range cands {
		if m.Path == path {
			return m, true
		}
	}
	return pyinfo.Mapping{}, false
}

func (p *python) forget(pid uint32) {
	p.reader.Forget(pid)
	for tid, ps := range p.pending {
		if ps.pid == pid {
			delete(p.pending, tid)
		}
	}
}

// onStack keeps a Python stack record until the record it belongs to arrives.
func (p *python) onStack(h spans.Header, raw []byte) bool {
	const head = int(unsafe.Offsetof(probes.PythonStackEvent{}.Frames))
	if len(raw) < head {
		return false
	}
	e := (*probes.PythonStackEvent)(unsafe.Pointer(&raw[0]))
	n := min(int(e.Depth), (len(raw)-head)/int(unsafe.Sizeof(probes.PyFrame{})), probes.PyStackDepth)
	ps := &pendingStack{pid: h.PID, mono: h.Mono, status: e.Status, layout: e.Layout, frames: make([]probes.PyFrame, n)}
	copy(ps.frames, e.Frames[:n])
	if _, ok := p.pending[h.TID]; !ok && len(p.pending) >= maxPendingStacks {
		p.evictPending(h.Mono)
	}
	p.pending[h.TID] = ps
	return true
}

// evictPending makes room among the pending stacks: those too old to be taken go first, all
// of them if none is (each counted).
func (p *python) evictPending(now uint64) {
	n := len(p.pending)
	for tid, ps := range p.pending {
		if now < ps.mono || now-ps.mono > maxStackLag {
			delete(p.pending, tid)
		}
	}
	if len(p.pending) >= maxPendingStacks {
		clear(p.pending)
	}
	for range n - len(p.pending) {
		p.unreadable(nil, "stack", "pending_limit")
	}
}

// maxStackLag: a stack record older than this is not the one of the record at hand (its own
// record was lost).
const maxStackLag = 50_000_000 // ns

// take returns the resolved Python stack sent just before the record at h, or nil.
func (p *python) take(h spans.Header, targetName string) *pyStack {
	ps := p.pending[h.TID]
	if ps == nil {
		return nil
	}
	delete(p.pending, h.TID)
	if h.Mono < ps.mono || h.Mono-ps.mono > maxStackLag || ps.status == probes.PyStackNoThread {
		return nil
	}
	l := pyinfo.LayoutByID(uint32(ps.layout))
	if l == nil || len(ps.frames) == 0 {
		return nil
	}
	st := &pyStack{truncated: ps.status != probes.PyStackOK}
	patterns := p.patterns[targetName]
	// What one stack may read of the process's memory beyond the cache: the process chooses
	// its code objects (and how large their tables are).
	budget := int64(pyinfo.StackReadBudget)
	for i := range ps.frames {
		f := &ps.frames[i]
		if f.Code == 0 {
			continue
		}
		code, err := p.reader.Code(h.PID, l, f.Code, &budget)
		if err != nil {
			// Most often a module body that finished (and was freed) before it could be read.
			field, reason := pyinfo.FieldCode, pyinfo.ReasonUnreadable
			var re *pyinfo.ReadError
			if errors.As(err, &re) {
				field, reason = re.Field, re.Reason
			}
			p.unreadable(st, field, reason)
			st.frames = append(st.frames, spans.Frame{Function: fmt.Sprintf("<unresolved code object %#x: %s>", f.Code, reason), Module: "python"})
			continue
		}
		frame := spans.Frame{Function: code.Qualname, File: code.Filename, Line: code.Line(f.Lasti), Module: "python"}
		named := true
		for _, re := range code.Unreadable {
			p.unreadable(st, re.Field, re.Reason)
			switch re.Field {
			case pyinfo.FieldQualname:
				frame.Function, named = "<unreadable name: "+re.Reason+">", false
			case pyinfo.FieldFilename:
				frame.File, named = "<unreadable file: "+re.Reason+">", false
			}
		}
		st.frames = append(st.frames, frame)
		if len(patterns) == 0 || !named {
			continue // a function is matched by its name and its file, both read
		}
		if probe := p.match(targetName, patterns, code); probe != nil {
			st.funcs = append(st.funcs, spans.StackFunc{Key: [2]uint64{f.Frame, f.Code}, Probe: probe})
		}
	}
	// funcs were collected innermost first.
	for i, j := 0, len(st.funcs)-1; i < j; i, j = i+1, j-1 {
		st.funcs[i], st.funcs[j] = st.funcs[j], st.funcs[i]
	}
	return st
}

// match returns the probe of the first pattern that matches the code object's function.
func (p *python) match(target string, patterns []pyPattern, code *pyinfo.Code) *spans.Probe {
	module := code.Module()
	for i, pat := range patterns {
		if !globMatch(pat.qualname, code.Qualname) || !moduleMatch(pat.module, module, code.Filename) {
			continue
		}
		key := pyFuncKey{target: target, pattern: i, qualname: code.Qualname, file: code.Filename}
		if probe := p.funcs[key]; probe != nil {
			return probe
		}
		if len(p.funcs) >= maxPyFuncs {
			clear(p.funcs)
			p.unreadable(nil, "function", "probe_limit")
		}
		probe := &spans.Probe{
			Target: target, Symbol: module + ":" + code.Qualname, Role: spans.Role(pat.cfg.Role),
			ToolName: pat.cfg.ToolName, Model: pat.cfg.Model, File: code.Filename, Line: code.FirstLine,
		}
		if probe.Role == "" {
			probe.Role = spans.RoleFunction
		}
		if probe.Role == spans.RoleTool && probe.ToolName == "" {
			probe.ToolName = shortName(code.Qualname)
		}
		p.funcs[key] = probe
		return probe
	}
	return nil
}

func globMatch(pattern, s string) bool {
	ok, _ := path.Match(pattern, s)
	return ok
}

// moduleMatch: the pattern names the module (customer_agent) or a dotted path to it
// (agents.bank.customer_agent), matched against the file's path.
func moduleMatch(pattern, module, filename string) bool {
	if pattern == "*" || globMatch(pattern, module) {
		return true
	}
	if !strings.Contains(pattern, ".") {
		return false
	}
	file := strings.TrimSuffix(strings.TrimSuffix(filename, ".py"), "/__init__")
	return strings.HasSuffix(file, "/"+strings.ReplaceAll(pattern, ".", "/"))
}

// auditEnabled reports whether an audit event becomes a span event.
func (p *python) auditEnabled(name string) bool {
	for _, g := range p.cfg.Python.AuditEvents {
		if globMatch(g, name) {
			return true
		}
	}
	return false
}

// pyVal is a decoded audit argument.
type pyVal struct {
	v        *probes.PyValue
	children []*pyVal
}

// decodeAudit renders an audit record's arguments (redacted) and the attributes they imply.
func (p *python) decodeAudit(e *probes.PythonAuditEvent, nvalues int) (name string, args []any, attrs func(pcommon.Map)) {
	name = auditName(e)
	var top []*pyVal
	nodes := make([]*pyVal, nvalues)
	for i := 0; i < nvalues; i++ {
		nodes[i] = &pyVal{v: &e.Values[i]}
		par := e.Values[i].Parent
		switch {
		case par == probes.PyTopLevel:
			top = append(top, nodes[i])
		case int(par) < i:
			nodes[par].children = append(nodes[par].children, nodes[i])
		default:
			// The kernel only makes values of containers decoded before them.
			p.unreadable(nil, "audit_value", "bad_parent")
		}
	}
	for _, n := range top {
		args = append(args, p.render(n))
	}
	if e.Nargs > uint32(len(top)) {
		args = append(args, fmt.Sprintf("... %d more", int(e.Nargs)-len(top)))
	}
	return name, args, func(m pcommon.Map) { auditAttributes(m, name, args) }
}

// render turns a value into JSON-ready Go values; strings are redacted.
func (p *python) render(n *pyVal) any {
	v := n.v
	if v.Flags&probes.PyValueReadFailed != 0 {
		p.unreadable(nil, "audit_value", pyinfo.ReasonUnreadable)
		return "<unreadable>"
	}
	data := v.Data[:min(int(v.Captured), len(v.Data))]
	trunc := v.Flags&probes.PyValueTruncated != 0
	switch v.Type {
	case probes.PyNone:
		return nil
	case probes.PyBool:
		return v.Num != 0
	case probes.PyInt:
		if v.Flags&probes.PyValueUnsupported != 0 {
			return "<int too large>"
		}
		return v.Num
	case probes.PyStr:
		if v.Flags&probes.PyValueUnsupported != 0 {
			p.unreadable(nil, "audit_value", pyinfo.ReasonRepresentation)
			return "<str>"
		}
		if v.Kind != 1 && v.Kind != 2 && v.Kind != 4 {
			p.unreadable(nil, "audit_value", pyinfo.ReasonRepresentation)
			return "<str>"
		}
		s := pyinfo.DecodeUnicode(data, int(v.Kind), v.Ascii != 0)
		out, _, _ := p.redactor.Value(redact.PolicyRedacted, []byte(s), trunc)
		return out
	case probes.PyBytes:
		// Bytes are payloads (request bodies, socket data): only their size is exported.
		return fmt.Sprintf("<bytes: %d>", v.Len)
	case probes.PyTuple, probes.PyList:
		items := make([]any, 0, len(n.children))
		for _, c := range n.children {
			items = append(items, p.render(c))
		}
		if trunc || uint32(len(n.children)) < v.Len {
			items = append(items, fmt.Sprintf("... %d items", v.Len))
		}
		return items
	case probes.PyDict:
		obj := map[string]any{}
		for i := 0; i+1 < len(n.children); i += 2 {
			k := p.render(n.children[i])
			obj[fmt.Sprint(k)] = p.render(n.children[i+1])
		}
		if trunc {
			obj["..."] = fmt.Sprintf("%d items", v.Len)
		}
		return obj
	}
	// Another type: the kernel copied its type name, any bytes the process put there.
	return "<" + strings.ToValidUTF8(string(data), "\uFFFD") + ">"
}

// auditAttributes maps the arguments of the audit events that matter to semantic attributes.
func auditAttributes(m pcommon.Map, name string, args []any) {
	m.PutStr("agenttrail.python.audit.event", name)
	if b, err := json.Marshal(args); err == nil && len(args) > 0 {
		s := string(b)
		if len(s) > 4096 {
			s = strings.ToValidUTF8(s[:4096], "") + "…" // not in the middle of a character
		}
		m.PutStr("agenttrail.python.audit.args", s)
	}
	arg := func(i int) any {
		if i < len(args) {
			return args[i]
		}
		return nil
	}
	str := func(v any) (string, bool) { s, ok := v.(string); return s, ok }
	switch name {
	case "socket.connect", "socket.bind", "socket.sendto":
		switch a := arg(1).(type) { // (socket, address)
		case []any:
			if host, ok := str(arg0(a)); ok {
				m.PutStr("network.peer.address", host)
			}
			if len(a) > 1 {
				if port, ok := a[1].(int64); ok {
					m.PutInt("network.peer.port", port)
				}
			}
		case string:
			m.PutStr("network.peer.address", a)
			m.PutStr("network.transport", "unix")
		}
	case "socket.getaddrinfo", "http.client.connect", "ftplib.connect", "smtplib.connect":
		i := 0
		if name != "socket.getaddrinfo" {
			i = 1 // (self, host, port)
		}
		if host, ok := str(arg(i)); ok {
			m.PutStr("server.address", host)
		}
		if port, ok := arg(i + 1).(int64); ok {
			m.PutInt("server.port", port)
		}
	case "urllib.Request":
		if u, ok := str(arg(0)); ok {
			m.PutStr("url.full", u)
		}
		if method, ok := str(arg(3)); ok {
			m.PutStr("http.request.method", method)
		} else if arg(1) != nil {
			m.PutStr("http.request.method", "POST")
		} else {
			m.PutStr("http.request.method", "GET")
		}
		if h, ok := arg(2).(map[string]any); ok {
			for k, v := range h {
				if s, ok := v.(string); ok && k != "..." {
					m.PutStr("http.request.header."+strings.ToLower(k), s)
				}
			}
		}
	case "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn":
		exe, argv := arg(0), arg(1)
		if name == "os.spawn" {
			exe, argv = arg(1), arg(2)
		}
		var parts []string
		switch a := argv.(type) {
		case []any:
			for _, x := range a {
				parts = append(parts, fmt.Sprint(x))
			}
		case string:
			parts = []string{a}
		}
		if s, ok := str(exe); ok {
			m.PutStr("process.executable.path", s)
		} else if len(parts) > 0 {
			m.PutStr("process.executable.path", parts[0])
		}
		if len(parts) > 0 {
			m.PutStr("process.command_line", strings.Join(parts, " "))
		}
	case "os.system":
		if s, ok := str(arg(0)); ok {
			m.PutStr("process.command_line", s)
		}
	case "open", "os.remove", "os.rename", "os.rmdir", "os.chmod", "os.chown", "os.truncate",
		"shutil.rmtree", "shutil.copyfile", "shutil.move", "ctypes.dlopen":
		if s, ok := str(arg(0)); ok {
			m.PutStr("file.path", s)
		}
		if name == "open" {
			if mode, ok := str(arg(1)); ok {
				m.PutStr("agenttrail.open.mode", mode)
			}
		}
	case "webbrowser.open":
		if s, ok := str(arg(0)); ok {
			m.PutStr("url.full", s)
		}
	}
}

// auditName is the event name of an audit record: the interpreter's C string (any bytes a
// program passes to sys.audit), as valid UTF-8.
func auditName(e *probes.PythonAuditEvent) string {
	return strings.ToValidUTF8(string(e.Name[:min(int(e.NameLen), len(e.Name))]), "\uFFFD")
}

func arg0(a []any) any {
	if len(a) > 0 {
		return a[0]
	}
	return nil
}

// onAudit turns an audit record into an observation of the Python stack and, for the events
// configured, an event of the innermost open span with its arguments and stack.
func (r *ebpfReceiver) onAudit(h spans.Header, raw []byte) {
	const head = int(unsafe.Offsetof(probes.PythonAuditEvent{}.Values))
	if len(raw) < head {
		r.telemetry.eventsInvalid.Add(ctxBackground, 1)
		return
	}
	e := (*probes.PythonAuditEvent)(unsafe.Pointer(&raw[0]))
	nvalues := min(int(e.Nvalues), (len(raw)-head)/int(unsafe.Sizeof(probes.PyValue{})), probes.PyValues)
	t := r.attacher.traced[h.PID]
	targetName := ""
	if t != nil {
		targetName = t.cfg.Name
	}
	var stack *pyStack
	if r.python != nil {
		stack = r.python.take(h, targetName)
	}
	if stack != nil {
		r.builder.ObserveStack(h, stack.funcs, stack.truncated)
	}
	name := auditName(e)
	if r.python == nil || !r.python.auditEnabled(name) {
		return
	}
	_, _, attrs := r.python.decodeAudit(e, nvalues)
	r.builder.Event(h, name, ptrace.SpanKindInternal, func(m pcommon.Map) {
		attrs(m)
		m.PutInt("thread.id", int64(h.TID))
		if stack != nil && len(stack.frames) > 0 {
			m.PutStr("code.stacktrace", spans.FormatStack(stack.frames))
			stack.putUnreadable(m)
		}
	})
}
