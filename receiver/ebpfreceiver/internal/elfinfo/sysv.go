package elfinfo

import (
	"debug/dwarf"
	"fmt"
	"strings"
)

// System V AMD64: integer class arguments in RDI, RSI, RDX, RCX, R8, R9;
// SSE class arguments in XMM0-XMM7.
var sysvIntRegs = [...]Reg{RegRDI, RegRSI, RegRDX, RegRCX, RegR8, RegR9}

const sysvNumSSE = 8

const (
	tagAtomicType    dwarf.Tag = 0x47
	tagImmutableType dwarf.Tag = 0x4b
	ccPassByRef                = 0x4 // DW_CC_pass_by_reference
)

// cPass says how one native parameter is passed.
type cPass struct {
	gp, sse int    // registers consumed when passed in registers
	memory  bool   // passed in memory, consuming no registers
	unknown string // non-empty: the passing convention is not modelled
	kind    ArgKind
	size    int
	problem string // non-empty: the value cannot be captured
}

// stripQualifiers follows typedefs and cv/atomic qualifiers. It returns nil
// for void, and the names seen on the way.
func (t *typeReader) stripQualifiers(off dwarf.Offset) (*typeNode, []string, error) {
	var names []string
	for hop := 0; hop < 32; hop++ {
		n, err := t.node(off)
		if err != nil {
			return nil, names, err
		}
		switch n.tag {
		case dwarf.TagTypedef, dwarf.TagConstType, dwarf.TagVolatileType, dwarf.TagRestrictType, tagAtomicType, tagImmutableType:
			if n.name != "" {
				names = append(names, n.name)
			}
			if !n.hasTyp {
				return nil, names, nil // e.g. const void
			}
			off = n.typ
		default:
			return n, names, nil
		}
	}
	return nil, names, fmt.Errorf("typedef chain too long at DWARF offset %#x", off)
}

var charNames = map[string]bool{
	"char": true, "signed char": true, "unsigned char": true, "char8_t": true,
	"c_char": true, "c_schar": true, "c_uchar": true, "gchar": true, "guchar": true,
}

// isCharLike reports whether the type at off is a one-byte character type.
func (t *typeReader) isCharLike(off dwarf.Offset) bool {
	n, names, err := t.stripQualifiers(off)
	if err != nil || n == nil || n.tag != dwarf.TagBaseType || n.size != 1 {
		return false
	}
	if n.encoding == ateSignedChar || n.encoding == ateUnsignedChar || charNames[n.name] {
		return true
	}
	for _, name := range names {
		if charNames[name] {
			return true
		}
	}
	return false
}

// classifyNative classifies one parameter type for the System V ABI (or,
// with rust, for Rust's own ABI as far as it is modelled).
func (t *typeReader) classifyNative(off dwarf.Offset, rust bool) cPass {
	n, _, err := t.stripQualifiers(off)
	if err != nil {
		return cPass{unknown: "cannot decode its type: " + err.Error()}
	}
	if n == nil {
		return cPass{unknown: "it has type void"}
	}
	switch n.tag {
	case dwarf.TagBaseType:
		return classifyBase(n)
	case dwarf.TagEnumerationType:
		p := cPass{gp: 1, kind: ArgInt, size: int(n.size)}
		if n.hasTyp {
			if u, _, err := t.stripQualifiers(n.typ); err == nil && u != nil && u.tag == dwarf.TagBaseType {
				if b := classifyBase(u); b.kind == ArgUint {
					p.kind = ArgUint
				}
			}
		} else if n.encoding == ateUnsigned || n.encoding == ateUnsignedChar {
			p.kind = ArgUint
		}
		if n.size <= 0 || n.size > 8 {
			return cPass{unknown: fmt.Sprintf("enumeration of size %d", n.size)}
		}
		return p
	case dwarf.TagPointerType, dwarf.TagReferenceType, dwarf.TagRvalueReferenceType:
		p := cPass{gp: 1}
		if n.tag == dwarf.TagPointerType && n.hasTyp && t.isCharLike(n.typ) {
			p.kind = ArgCString
		} else {
			p.problem = "pointers other than char pointers (C strings) are not supported"
		}
		return p
	case dwarf.TagUnspecifiedType: // decltype(nullptr)
		return cPass{gp: 1, problem: "type is not supported"}
	case dwarf.TagStructType, dwarf.TagClassType, dwarf.TagUnionType, dwarf.TagArrayType:
		if rust {
			return t.classifyRustAggregate(n)
		}
		return t.classifyCAggregate(n)
	}
	return cPass{unknown: fmt.Sprintf("passing of %v types is not modelled", n.tag)}
}

func classifyBase(n *typeNode) cPass {
	size := int(n.size)
	if size == 0 { // Rust's ()
		return cPass{problem: "it is zero-sized and takes no register"}
	}
	switch n.encoding {
	case ateBoolean:
		return cPass{gp: 1, kind: ArgBool, size: size}
	case ateSigned, ateSignedChar, ateUnsigned, ateUnsignedChar, ateUTF:
		kind := ArgUint
		if n.encoding == ateSigned || n.encoding == ateSignedChar {
			kind = ArgInt
		}
		switch {
		case size == 16:
			return cPass{gp: 2, problem: "128-bit integers are not supported"}
		case size >= 1 && size <= 8:
			return cPass{gp: 1, kind: kind, size: size}
		}
	case ateFloat:
		switch {
		case size <= 8:
			return cPass{sse: 1, problem: "floating-point arguments (passed in XMM registers) are not supported"}
		case size == 16 && strings.Contains(n.name, "long double"):
			return cPass{memory: true, problem: "long double is passed in memory"}
		case size == 16:
			return cPass{sse: 1, problem: "floating-point arguments (passed in XMM registers) are not supported"}
		}
	case ateComplexFloat:
		switch size {
		case 8:
			return cPass{sse: 1, problem: "complex arguments are not supported"}
		case 16:
			return cPass{sse: 2, problem: "complex arguments are not supported"}
		case 32:
			return cPass{memory: true, problem: "complex long double is passed in memory"}
		}
	}
	return cPass{unknown: fmt.Sprintf("base type %q (encoding %#x, %d bytes) is not modelled", n.name, n.encoding, size)}
}

// leaf is a scalar inside an aggregate.
type leaf struct {
	off, size int64
	sse       bool
	x87       bool
	bitfield  bool
}

// leaves flattens the type at off, placed at byte offset base, into scalars.
func (t *typeReader) leaves(off dwarf.Offset, base int64, depth int, out *[]leaf) error {
	if depth > 32 || len(*out) > 256 {
		return fmt.Errorf("aggregate too deep or too large")
	}
	if err := t.spend(); err != nil {
		return err
	}
	n, _, err := t.stripQualifiers(off)
	if err != nil {
		return err
	}
	if n == nil {
		return fmt.Errorf("void member")
	}
	switch n.tag {
	case dwarf.TagBaseType:
		l := leaf{off: base, size: n.size}
		switch n.encoding {
		case ateFloat, ateComplexFloat:
			l.sse = true
			if strings.Contains(n.name, "long double") {
				l.sse, l.x87 = false, true
			}
		}
		if n.size <= 0 {
			return fmt.Errorf("base type %q without size", n.name)
		}
		*out = append(*out, l)
	case dwarf.TagEnumerationType, dwarf.TagPointerType, dwarf.TagReferenceType, dwarf.TagRvalueReferenceType:
		size := n.size
		if size <= 0 {
			size = 8
		}
		*out = append(*out, leaf{off: base, size: size})
	case dwarf.TagStructType, dwarf.TagClassType, dwarf.TagUnionType:
		if n.decl {
			return fmt.Errorf("incomplete type %q", n.name)
		}
		if n.variants {
			return fmt.Errorf("enum-like type %q with variants", n.name)
		}
		for _, m := range n.members {
			if m.bitSize > 0 {
				*out = append(*out, leaf{off: base + m.offset, size: 1, bitfield: true})
				continue
			}
			if err := t.leaves(m.typ, base+m.offset, depth+1, out); err != nil {
				return err
			}
		}
	case dwarf.TagArrayType:
		if !n.hasTyp || n.count < 0 || n.dims != 1 {
			if n.size == 0 {
				return nil
			}
			return fmt.Errorf("array type %q of unknown shape", n.name)
		}
		var elem []leaf
		if err := t.leaves(n.typ, 0, depth+1, &elem); err != nil {
			return err
		}
		var esize int64
		if n.count > 0 && n.size > 0 {
			esize = n.size / n.count
		} else if en, _, err := t.stripQualifiers(n.typ); err == nil && en != nil {
			esize = en.size
		}
		for i := int64(0); i < n.count && len(elem) > 0 && len(*out) <= 256; i++ {
			for _, l := range elem {
				l.off += base + i*esize
				*out = append(*out, l)
			}
		}
	default:
		return fmt.Errorf("member of %v type", n.tag)
	}
	return nil
}

// nonEmpty drops zero-sized leaves.
func nonEmpty(ls []leaf) []leaf {
	out := ls[:0:0]
	for _, l := range ls {
		if l.size > 0 {
			out = append(out, l)
		}
	}
	return out
}

// classifyCAggregate implements the System V AMD64 classification of
// structures, unions and classes passed by value.
func (t *typeReader) classifyCAggregate(n *typeNode) cPass {
	const problem = "structures, unions and classes passed by value are not supported"
	if n.callConv == ccPassByRef {
		return cPass{gp: 1, problem: "C++ objects passed by invisible reference are not supported"}
	}
	if n.decl || n.size < 0 {
		return cPass{unknown: fmt.Sprintf("incomplete type %q", n.name)}
	}
	if n.size == 0 {
		return cPass{problem: "it is an empty aggregate and takes no register"}
	}
	if n.size > 16 {
		return cPass{memory: true, problem: problem}
	}
	var ls []leaf
	if err := t.leaves(n.off, 0, 0, &ls); err != nil {
		return cPass{unknown: err.Error()}
	}
	ls = nonEmpty(ls)
	if len(ls) == 0 {
		return cPass{unknown: fmt.Sprintf("aggregate %q without data members", n.name)}
	}
	var class [2]int // per eightbyte: 0 none, 1 INTEGER, 2 SSE
	for _, l := range ls {
		if l.x87 {
			return cPass{memory: true, problem: problem}
		}
		if l.off < 0 {
			return cPass{unknown: fmt.Sprintf("aggregate %q with a member at negative offset %d", n.name, l.off)}
		}
		if !l.bitfield && l.size <= 8 && l.off%l.size != 0 {
			return cPass{memory: true, problem: problem} // unaligned (packed)
		}
		for eb := l.off / 8; eb <= (l.off+l.size-1)/8 && eb < 2; eb++ {
			if l.sse {
				if class[eb] == 0 {
					class[eb] = 2
				}
			} else {
				class[eb] = 1
			}
		}
	}
	p := cPass{problem: problem}
	for _, c := range class {
		switch c {
		case 1:
			p.gp++
		case 2:
			p.sse++
		}
	}
	return p
}

// classifyRustAggregate models how Rust's (unstable) ABI passes aggregates on
// x86-64: zero-sized ones are dropped, single-scalar and scalar-pair layouts
// are passed as one or two scalars, larger ones (> 16 bytes) by reference.
// Anything else is reported as not modelled.
func (t *typeReader) classifyRustAggregate(n *typeNode) cPass {
	const problem = "Rust aggregates are not supported"
	if n.size == 0 {
		return cPass{problem: "it is zero-sized and takes no register"}
	}
	if n.size > 16 {
		return cPass{gp: 1, problem: problem + " (passed by reference)"}
	}
	var ls []leaf
	if err := t.leaves(n.off, 0, 0, &ls); err != nil {
		return cPass{unknown: "Rust layout not modelled: " + err.Error()}
	}
	ls = nonEmpty(ls)
	if len(ls) == 0 || len(ls) > 2 {
		return cPass{unknown: fmt.Sprintf("Rust layout of %q (%d scalars in %d bytes) not modelled", n.name, len(ls), n.size)}
	}
	p := cPass{problem: problem}
	for _, l := range ls {
		switch {
		case l.x87 || l.bitfield || l.size > 8:
			return cPass{unknown: fmt.Sprintf("Rust layout of %q not modelled", n.name)}
		case l.sse:
			p.sse++
		default:
			p.gp++
		}
	}
	return p
}

// returnsInMemory reports whether a function returning the type at ret (0 for
// void) gets a hidden result pointer in RDI.
func (t *typeReader) returnsInMemory(ret dwarf.Offset, rust bool) (bool, string) {
	if ret == 0 {
		return false, ""
	}
	n, _, err := t.stripQualifiers(ret)
	if err != nil {
		return false, "cannot decode the return type: " + err.Error()
	}
	if n == nil {
		return false, ""
	}
	switch n.tag {
	case dwarf.TagStructType, dwarf.TagClassType, dwarf.TagUnionType, dwarf.TagArrayType:
	default:
		return false, ""
	}
	if rust {
		return n.size > 16, ""
	}
	c := t.classifyCAggregate(n)
	switch {
	case n.callConv == ccPassByRef:
		return true, ""
	case c.unknown != "":
		return false, "cannot classify the return type: " + c.unknown
	}
	return c.memory, ""
}

// sysvParams assigns registers to native parameters following the System V
// AMD64 calling convention.
func (t *typeReader) sysvParams(formals []formal, ret dwarf.Offset, rust bool) []Param {
	t.cNames = !rust
	gpUsed, sseUsed := 0, 0
	blocked := ""
	sret, why := t.returnsInMemory(ret, rust)
	if why != "" {
		blocked = why
	}
	if sret {
		gpUsed = 1 // hidden pointer to the result in RDI
	}
	params := make([]Param, 0, len(formals))
	for i, f := range formals {
		p := Param{Name: f.name, Index: i, Type: "?"}
		if f.hasType {
			p.Type = t.typeName(f.typ)
		}
		var c cPass
		if f.hasType {
			c = t.classifyNative(f.typ, rust)
		} else {
			c = cPass{unknown: "DWARF gives no type for it"}
		}
		switch {
		case blocked != "":
			p.Problem = "its register cannot be determined: " + blocked
		case c.unknown != "":
			p.Problem = "its passing convention is not modelled: " + c.unknown
			blocked = fmt.Sprintf("the passing of earlier parameter %q is not modelled (%s)", f.name, c.unknown)
		case c.memory || c.gp > len(sysvIntRegs)-gpUsed || c.sse > sysvNumSSE-sseUsed:
			p.OnStack = true
			if c.problem != "" {
				p.Problem = c.problem
			} else {
				p.Problem = "it is passed on the stack (only the first 6 integer arguments are in registers: RDI, RSI, RDX, RCX, R8, R9); stack arguments are not supported"
			}
		default:
			for k := 0; k < c.gp; k++ {
				p.Regs = append(p.Regs, sysvIntRegs[gpUsed+k])
			}
			for k := 0; k < c.sse; k++ {
				p.FloatRegs = append(p.FloatRegs, sseUsed+k)
			}
			gpUsed += c.gp
			sseUsed += c.sse
			p.Kind, p.Size = c.kind, c.size
			if c.problem != "" {
				p.Kind, p.Size = 0, 0
				p.Problem = c.problem
			} else if p.Kind == 0 || len(p.Regs) == 0 {
				p.Kind, p.Size = 0, 0
				p.Problem = "type is not supported"
			}
		}
		params = append(params, p)
	}
	return params
}
