package elfinfo

import (
	"debug/dwarf"
	"fmt"
	"slices"
	"strings"
)

// Reg is a general-purpose x86-64 register that holds (part of) an argument
// at function entry.
type Reg uint8

// The registers arguments can be read from; the numbering is enum reg_id of bpf/common/events.h.
// Function arguments (Go's register ABI, System V) use RAX..R11; USDT probes' argument
// specifications may name any of them.
const (
	RegNone Reg = iota
	RegRAX
	RegRBX
	RegRCX
	RegRDX
	RegRSI
	RegRDI
	RegR8
	RegR9
	RegR10
	RegR11
	RegR12
	RegR13
	RegR14
	RegR15
	RegRBP
	RegRSP
)

var regNames = [...]string{"none", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
	"r12", "r13", "r14", "r15", "rbp", "rsp"}

func (r Reg) String() string {
	if int(r) < len(regNames) {
		return regNames[r]
	}
	return fmt.Sprintf("Reg(%d)", uint8(r))
}

// ArgKind says how the eBPF program should decode an argument.
type ArgKind uint8

// The kinds of argument that can be captured.
const (
	// ArgInt is a signed integer of Size bytes; Regs = [value].
	ArgInt ArgKind = iota + 1
	// ArgUint is an unsigned integer of Size bytes; Regs = [value].
	ArgUint
	// ArgBool is a boolean of Size bytes; Regs = [value].
	ArgBool
	// ArgString is a Go string; Regs = [data pointer, length].
	ArgString
	// ArgBytes is a Go []byte; Regs = [data pointer, length] (the capacity
	// is not read).
	ArgBytes
	// ArgCString is a C char pointer to a NUL-terminated string;
	// Regs = [pointer].
	ArgCString
)

var argKindNames = [...]string{"invalid", "int", "uint", "bool", "string", "bytes", "cstring"}

func (k ArgKind) String() string {
	if int(k) < len(argKindNames) {
		return argKindNames[k]
	}
	return fmt.Sprintf("ArgKind(%d)", uint8(k))
}

// Arg is where a captured argument is at function entry.
type Arg struct {
	Name string
	Kind ArgKind
	// Size is the value's width in bytes for ArgInt, ArgUint and ArgBool
	// (1, 2, 4 or 8); 0 for the pointer-based kinds.
	Size int
	// Regs are the registers holding the value: [ptr, len] for ArgString
	// and ArgBytes, [ptr] for ArgCString, [value] otherwise.
	Regs []Reg
	// Index is the argument's position among the function's formal
	// parameters (0-based; a Go method's receiver and C++'s this count, a
	// Go generic dictionary and a hidden struct-return pointer do not).
	Index int
}

// ABI names a calling convention.
type ABI string

// The calling conventions Args understands.
const (
	ABIGoInternal ABI = "go-abiinternal" // Go's register ABI (ABIInternal)
	ABIGo0        ABI = "go-abi0"        // Go's stack ABI (assembly, //go:cgo_unsafe_args)
	ABISystemV    ABI = "sysv-amd64"     // System V AMD64 (C, C++)
	ABIRust       ABI = "rust"           // Rust's unstable ABI, modelled on System V
)

// Param describes one formal parameter of a function and where it is at
// entry. It is returned by Parameters for every parameter, whether or not it
// can be captured.
type Param struct {
	Name string
	// Type is the parameter's type name as DWARF spells it.
	Type string
	// Index is the position among the formal parameters (see Arg.Index).
	Index int
	// Kind and Size are set when the type can be captured.
	Kind ArgKind
	Size int
	// Regs are the integer registers holding the whole parameter, in
	// order, when it is passed in registers. FloatRegs are the indexes of
	// the X (XMM) registers it uses.
	Regs      []Reg
	FloatRegs []int
	// OnStack is true when the parameter is passed in memory.
	OnStack bool
	// Problem, when not empty, says why the parameter cannot be captured.
	Problem string
}

// Args locates the named parameters of function (its symbol name, e.g.
// "main.(*Agent).HandlePrompt", or for C++/Rust also its DWARF name) at
// function entry. The result has one Arg per name, in the order of names.
//
// It needs DWARF (errors wrap ErrNoDWARF without it). The ABI is chosen by
// the DW_AT_language of the function's compile unit, so the C functions of a
// cgo binary are handled too: Go functions follow Go's register ABI
// (ABIInternal; ABI0 functions have all arguments on the stack); C and C++
// follow System V AMD64; Rust is modelled on it for scalars, scalar pairs and
// by-reference aggregates. For native code the result is cross-checked with
// the compiler's DWARF location at entry, and refused if an optimiser changed
// the calling convention. An unknown name gives an
// error listing the function's parameters; a parameter of a type that cannot
// be captured, or that is passed on the stack, gives an error naming the
// parameter, its type and the function.
func (b *Binary) Args(function string, names []string) ([]Arg, error) {
	params, abi, err := b.parameters(function)
	if err != nil {
		return nil, err
	}
	out := make([]Arg, 0, len(names))
	for _, name := range names {
		p := findParam(params, name)
		if p == nil {
			return nil, fmt.Errorf("elfinfo: %s: function %s has no parameter %q (its parameters are: %s)", b.Path, function, name, paramList(params))
		}
		if p.Problem != "" {
			return nil, fmt.Errorf("elfinfo: %s: function %s (%s ABI): cannot capture parameter %q of type %s: %s", b.Path, function, abi, p.Name, p.Type, p.Problem)
		}
		a := Arg{Name: p.Name, Kind: p.Kind, Size: p.Size, Index: p.Index}
		switch p.Kind {
		case ArgString, ArgBytes:
			a.Regs = []Reg{p.Regs[0], p.Regs[1]}
		default:
			a.Regs = []Reg{p.Regs[0]}
		}
		out = append(out, a)
	}
	return out, nil
}

// Parameters describes every formal parameter of function (results
// excluded) and where it is at entry, and the ABI it was resolved with.
func (b *Binary) Parameters(function string) ([]Param, ABI, error) {
	return b.parameters(function)
}

func findParam(params []Param, name string) *Param {
	for i := range params {
		if params[i].Name == name {
			return &params[i]
		}
	}
	return nil
}

func paramList(params []Param) string {
	if len(params) == 0 {
		return "none"
	}
	parts := make([]string, len(params))
	for i, p := range params {
		parts[i] = p.Name + " " + p.Type
	}
	return strings.Join(parts, ", ")
}

const (
	langGo   = 0x16
	langRust = 0x1c
)

func (b *Binary) parameters(function string) (_ []Param, _ ABI, err error) {
	defer b.recoverMalformed(&err, "function "+function)
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.loadDWARF()
	if err != nil {
		return nil, "", err
	}
	if b.subIndex == nil {
		var idx *subprogramIndex
		err := Guard(func() (err error) { idx, err = buildSubprogramIndex(d, b.infoBytes()); return err })
		if err != nil {
			return nil, "", fmt.Errorf("elfinfo: %s: reading DWARF: %w", b.Path, err)
		}
		b.subIndex = idx
	}
	var addr uint64
	if fn, err := b.functionLocked(function); err == nil {
		addr = fn.Address
	}
	sp := b.subIndex.lookup(function, addr)
	if sp == nil {
		return nil, "", fmt.Errorf("elfinfo: %s: function %q: %w in DWARF (no DW_TAG_subprogram has that name)", b.Path, function, ErrSymbolNotFound)
	}
	tr := newTypeReader(d)
	formals, ret, err := tr.formals(sp)
	if err != nil {
		return nil, "", fmt.Errorf("elfinfo: %s: function %s: reading DWARF parameters: %w", b.Path, function, err)
	}
	lang := sp.lang
	if lang < 0 && b.IsGo {
		lang = langGo
	}
	switch lang {
	case langGo:
		if b.isGoABI0(function, sp.lowPC) {
			return tr.goParams(function, formals, true), ABIGo0, nil
		}
		return tr.goParams(function, formals, false), ABIGoInternal, nil
	case langRust:
		params := tr.sysvParams(formals, ret, true)
		b.checkEntryLocations(sp, formals, params, ABIRust)
		return params, ABIRust, nil
	default:
		params := tr.sysvParams(formals, ret, false)
		b.checkEntryLocations(sp, formals, params, ABISystemV)
		return params, ABISystemV, nil
	}
}

// checkEntryLocations compares the registers the ABI assigns to the
// parameters of a native function with the compiler's DWARF locations at
// the function's entry. Optimisers may change the calling convention of
// functions that are not exported (LLVM drops unused arguments of internal
// functions without renaming them; parts of a Rust &str may vanish), and
// then the ABI's registers are wrong. On any contradiction every parameter
// is marked as not capturable. Callers hold b.mu.
func (b *Binary) checkEntryLocations(sp *subprogram, formals []formal, params []Param, abi ABI) {
	if sp.unit == nil || sp.lowPC == 0 || len(formals) != len(params) {
		return
	}
	if b.locs == nil && b.locsErr == nil {
		b.locsErr = Guard(func() (err error) { b.locs, err = newLocReader(b.elf); return err })
	}
	if b.locsErr != nil {
		return
	}
	conflict := ""
	for i, f := range formals {
		if len(params[i].Regs)+len(params[i].FloatRegs) == 0 && !params[i].OnStack {
			continue // zero-sized, or its passing is not modelled
		}
		expr, ok, err := b.locs.entryExpr(sp.unit, f.location, sp.lowPC)
		if err != nil || !ok || len(expr) == 0 {
			continue
		}
		loc, ok := parseLocExpr(expr)
		if !ok {
			continue
		}
		if c := contradicts(params[i], loc); c != "" {
			conflict = fmt.Sprintf("DWARF places parameter %q %s at entry, but the %s ABI assigns it %s", params[i].Name, c, abi, describeRegs(params[i]))
			break
		}
	}
	if conflict == "" {
		return
	}
	for i := range params {
		params[i].Kind, params[i].Size = 0, 0
		params[i].Problem = "the optimiser changed this function's calling convention (" + conflict + "), so no register can be trusted; this happens to functions that are not exported"
	}
}

// contradicts returns how loc, a parameter's DWARF location at entry,
// disagrees with the registers the ABI assigned to p, or "".
func contradicts(p Param, loc entryLoc) string {
	var named []uint64
	for _, pc := range loc.pieces {
		if pc.isReg && (len(named) == 0 || named[len(named)-1] != pc.reg) {
			named = append(named, pc.reg)
		}
	}
	for _, r := range named {
		in := false
		if r >= 17 && r <= 32 {
			in = slices.Contains(p.FloatRegs, int(r-17))
		} else if reg, ok := dwarfRegs[r]; ok {
			in = slices.Contains(p.Regs, reg)
		}
		if !in {
			return fmt.Sprintf("in DWARF register %d (%s)", r, dwarfRegName(r))
		}
	}
	return ""
}

func dwarfRegName(r uint64) string {
	if reg, ok := dwarfRegs[r]; ok {
		return reg.String()
	}
	if r >= 17 && r <= 32 {
		return fmt.Sprintf("xmm%d", r-17)
	}
	names := map[uint64]string{3: "rbx", 6: "rbp", 7: "rsp", 12: "r12", 13: "r13", 14: "r14", 15: "r15"}
	if n, ok := names[r]; ok {
		return n
	}
	return "?"
}

func describeRegs(p Param) string {
	if p.OnStack {
		return "the stack"
	}
	var parts []string
	for _, r := range p.Regs {
		parts = append(parts, r.String())
	}
	for _, x := range p.FloatRegs {
		parts = append(parts, fmt.Sprintf("xmm%d", x))
	}
	if len(parts) == 0 {
		return "no register"
	}
	return strings.Join(parts, ", ")
}

// subprogram summarises a DW_TAG_subprogram DIE.
type subprogram struct {
	off       dwarf.Offset
	unit      *unitInfo
	lang      int64 // DW_AT_language of its unit, -1 if unknown
	hasCode   bool  // has DW_AT_low_pc or DW_AT_ranges
	lowPC     uint64
	decl      bool // DW_AT_declaration
	abstract  bool // DW_AT_inline: an abstract instance root
	origin    dwarf.Offset
	hasOrigin bool // DW_AT_abstract_origin or DW_AT_specification
}

type subprogramIndex struct {
	byName map[string][]dwarf.Offset
	refs   map[dwarf.Offset][]dwarf.Offset // origin -> subprograms referring to it
	subs   map[dwarf.Offset]*subprogram
}

const attrMIPSLinkageName dwarf.Attr = 0x2007

// buildSubprogramIndex reads at most maxEntries DIEs: every DIE takes at least a byte of
// .debug_info, but debug/dwarf's Reader returns null entries forever without advancing at a
// unit that ends in a truncated ULEB128 (golang/go#79586), so the walk is bounded by the
// section's size.
func buildSubprogramIndex(d *dwarf.Data, maxEntries int) (*subprogramIndex, error) {
	idx := &subprogramIndex{
		byName: map[string][]dwarf.Offset{},
		refs:   map[dwarf.Offset][]dwarf.Offset{},
		subs:   map[dwarf.Offset]*subprogram{},
	}
	r := d.Reader()
	lang := int64(-1)
	var unit *unitInfo
	for n := 0; ; n++ {
		if n > maxEntries {
			return nil, fmt.Errorf("%w: more DWARF entries than .debug_info has bytes (%d)", ErrMalformed, maxEntries)
		}
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		switch e.Tag {
		case dwarf.TagCompileUnit, dwarf.TagPartialUnit:
			unit = newUnitInfo(e)
			lang = -1
			if v, ok := e.Val(dwarf.AttrLanguage).(int64); ok {
				lang = v
			}
		case dwarf.TagNamespace, dwarf.TagModule, dwarf.TagClassType, dwarf.TagStructType, dwarf.TagUnionType:
			// Descend: C++ and Rust nest functions and method declarations.
		case dwarf.TagSubprogram:
			sp := &subprogram{off: e.Offset, lang: lang, unit: unit}
			sp.lowPC, sp.hasCode = e.Val(dwarf.AttrLowpc).(uint64)
			sp.hasCode = sp.hasCode || e.Val(dwarf.AttrRanges) != nil
			sp.decl, _ = e.Val(dwarf.AttrDeclaration).(bool)
			sp.abstract = e.Val(dwarf.AttrInline) != nil
			for _, a := range []dwarf.Attr{dwarf.AttrAbstractOrigin, dwarf.AttrSpecification} {
				if o, ok := e.Val(a).(dwarf.Offset); ok {
					sp.origin, sp.hasOrigin = o, true
					idx.refs[o] = append(idx.refs[o], e.Offset)
					break
				}
			}
			idx.subs[e.Offset] = sp
			for _, a := range []dwarf.Attr{dwarf.AttrName, dwarf.AttrLinkageName, attrMIPSLinkageName} {
				if n, ok := e.Val(a).(string); ok && n != "" {
					idx.byName[n] = append(idx.byName[n], e.Offset)
				}
			}
			if e.Children {
				r.SkipChildren()
			}
		default:
			if e.Children {
				r.SkipChildren()
			}
		}
	}
	return idx, nil
}

// lookup picks the DIE describing function name best: a definition with
// code, else an abstract instance, else a declaration. When several
// definitions have code (Go describes an ABI0 wrapper under the same name as
// the function it wraps), the one starting at addr wins.
func (idx *subprogramIndex) lookup(name string, addr uint64) *subprogram {
	seen := map[dwarf.Offset]bool{}
	var cands []*subprogram
	var add func(off dwarf.Offset, depth int)
	add = func(off dwarf.Offset, depth int) {
		if seen[off] || depth > 3 {
			return
		}
		seen[off] = true
		if sp := idx.subs[off]; sp != nil {
			cands = append(cands, sp)
		}
		for _, r := range idx.refs[off] {
			add(r, depth+1)
		}
	}
	for _, off := range idx.byName[name] {
		add(off, 0)
	}
	rank := func(sp *subprogram) int {
		switch {
		case sp.hasCode && !sp.decl:
			return 0
		case sp.abstract:
			return 1
		case !sp.decl:
			return 2
		default:
			return 3
		}
	}
	var best *subprogram
	for _, sp := range cands {
		switch {
		case best == nil || rank(sp) < rank(best):
			best = sp
		case rank(sp) == 0 && rank(best) == 0 && addr != 0 && sp.lowPC == addr && best.lowPC != addr:
			best = sp
		}
	}
	if best != nil && best.lang < 0 {
		// Inherit the language from a related DIE in a unit that has one.
		for _, sp := range cands {
			if sp.lang >= 0 {
				best.lang = sp.lang
				break
			}
		}
	}
	return best
}

// formal is a DW_TAG_formal_parameter with its attributes resolved through
// DW_AT_abstract_origin.
type formal struct {
	name       string
	typ        dwarf.Offset
	hasType    bool
	isResult   bool // Go: DW_AT_variable_parameter
	artificial bool
	location   *dwarf.Field // its own DW_AT_location
}

// attrs reads the entry at off and merges attributes of its
// abstract-origin/specification chain into it (own attributes win).
func (t *typeReader) attrs(off dwarf.Offset) (map[dwarf.Attr]any, *dwarf.Entry, error) {
	m := map[dwarf.Attr]any{}
	var first *dwarf.Entry
	for hop := 0; hop < 5; hop++ {
		t.r.Seek(off)
		e, err := t.r.Next()
		if err != nil {
			return nil, nil, err
		}
		if e == nil {
			return nil, nil, fmt.Errorf("no DWARF entry at offset %#x", off)
		}
		if first == nil {
			first = e
		}
		for _, f := range e.Field {
			if _, ok := m[f.Attr]; !ok {
				m[f.Attr] = f.Val
			}
		}
		next, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !ok {
			next, ok = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
		}
		if !ok {
			break
		}
		off = next
	}
	return m, first, nil
}

// children returns the offsets of the direct children of the entry at off
// with the given tag.
func (t *typeReader) children(off dwarf.Offset, tag dwarf.Tag) ([]dwarf.Offset, error) {
	t.r.Seek(off)
	e, err := t.r.Next()
	if err != nil || e == nil || !e.Children {
		return nil, err
	}
	var out []dwarf.Offset
	for {
		c, err := t.r.Next()
		if err != nil {
			return nil, err
		}
		if c == nil || c.Tag == 0 {
			return out, nil
		}
		if c.Tag == tag {
			out = append(out, c.Offset)
		}
		if c.Children {
			t.r.SkipChildren()
		}
	}
}

// formals returns the formal parameters of sp in declaration order and the
// offset of its return type (0 if void).
func (t *typeReader) formals(sp *subprogram) ([]formal, dwarf.Offset, error) {
	fnAttrs, _, err := t.attrs(sp.off)
	if err != nil {
		return nil, 0, err
	}
	ret, _ := fnAttrs[dwarf.AttrType].(dwarf.Offset)

	// Use the DIE's own parameter list; an out-of-line instance or a
	// definition without one borrows its origin's.
	off := sp.off
	var kids []dwarf.Offset
	for hop := 0; hop < 5; hop++ {
		kids, err = t.children(off, dwarf.TagFormalParameter)
		if err != nil {
			return nil, 0, err
		}
		if len(kids) > 0 {
			break
		}
		_, e, err := t.attrs(off)
		if err != nil {
			return nil, 0, err
		}
		next, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !ok {
			next, ok = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
		}
		if !ok {
			break
		}
		off = next
	}
	var out []formal
	for _, k := range kids {
		a, e, err := t.attrs(k)
		if err != nil {
			return nil, 0, err
		}
		var f formal
		f.location = e.AttrField(dwarf.AttrLocation)
		f.name, _ = a[dwarf.AttrName].(string)
		f.typ, f.hasType = a[dwarf.AttrType].(dwarf.Offset)
		f.isResult, _ = a[dwarf.AttrVarParam].(bool)
		f.artificial, _ = a[dwarf.AttrArtificial].(bool)
		if f.name == "" {
			f.name = fmt.Sprintf("~arg%d", len(out))
		}
		out = append(out, f)
	}
	return out, ret, nil
}

// isGoABI0 reports whether the Go function is defined with the stack-based
// ABI0 (assembly functions, and Go functions marked //go:cgo_unsafe_args such
// as cgo's _C2func_ stubs): the linker names ABI0 symbols "name.abi0", so
// the function's address then carries "name.abi0" and no "name". Without a
// symbol table (-ldflags=-s) this cannot be told and ABIInternal is assumed.
func (b *Binary) isGoABI0(function string, lowPC uint64) bool {
	st := b.symbols()
	var internal, abi0 bool
	for _, s := range st.symtab {
		switch s.Name {
		case function:
			internal = internal || lowPC == 0 || s.Value == lowPC
		case function + ".abi0":
			abi0 = abi0 || lowPC == 0 || s.Value == lowPC
		}
	}
	return abi0 && !internal
}
