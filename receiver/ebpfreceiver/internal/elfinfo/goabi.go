package elfinfo

import (
	"debug/dwarf"
	"fmt"
	"strings"
)

// Go reflect.Kind values, as recorded in DW_AT_go_kind.
const (
	goBool          = 1
	goInt           = 2
	goInt64         = 6
	goUint          = 7
	goUint8         = 8
	goUintptr       = 12
	goFloat32       = 13
	goFloat64       = 14
	goComplex64     = 15
	goComplex128    = 16
	goArray         = 17
	goChan          = 18
	goFunc          = 19
	goInterface     = 20
	goMap           = 21
	goPointer       = 22
	goSlice         = 23
	goString        = 24
	goStruct        = 25
	goUnsafePointer = 26
)

var goKindNames = map[int64]string{
	goBool: "bool", 2: "int", 3: "int8", 4: "int16", 5: "int32", 6: "int64",
	7: "uint", 8: "uint8", 9: "uint16", 10: "uint32", 11: "uint64", 12: "uintptr",
	13: "float32", 14: "float64", 15: "complex64", 16: "complex128",
	goArray: "array", goChan: "chan", goFunc: "func", goInterface: "interface",
	goMap: "map", goPointer: "pointer", goSlice: "slice", goString: "string",
	goStruct: "struct", goUnsafePointer: "unsafe.Pointer",
}

// Go's ABIInternal on amd64: integer argument registers in assignment order,
// and the number of floating-point argument registers (X0-X14).
var goIntRegs = [...]Reg{RegRAX, RegRBX, RegRCX, RegRDI, RegRSI, RegR8, RegR9, RegR10, RegR11}

const goNumFloatRegs = 15

// goShape is a Go type as the register ABI sees it.
type goShape struct {
	name      string
	kind      int64 // reflect.Kind
	size      int64
	ints      int  // integer registers needed
	floats    int  // floating-point registers needed
	regOK     bool // false if it contains an array of length > 1
	byteSlice bool // slice whose element kind is uint8
}

// goShapeOf classifies the Go type at off, following Go's
// cmd/compile/abi-internal.md.
func (t *typeReader) goShapeOf(off dwarf.Offset, depth int) (goShape, error) {
	if depth > 64 {
		return goShape{}, fmt.Errorf("type nesting too deep at DWARF offset %#x", off)
	}
	if err := t.spend(); err != nil {
		return goShape{}, err
	}
	n, err := t.node(off)
	if err != nil {
		return goShape{}, err
	}
	kind := n.goKind
	if kind <= 0 {
		switch n.tag {
		case dwarf.TagTypedef, dwarf.TagConstType, dwarf.TagVolatileType:
			if !n.hasTyp {
				return goShape{}, fmt.Errorf("typedef %q has no underlying type", n.name)
			}
			s, err := t.goShapeOf(n.typ, depth+1)
			if err == nil && n.name != "" && !strings.HasPrefix(n.name, ".param") {
				s.name = n.name
			}
			return s, err
		case dwarf.TagBaseType:
			kind = goKindOfBase(n)
		case dwarf.TagPointerType:
			kind = goPointer
		case dwarf.TagSubroutineType:
			kind = goFunc
		case dwarf.TagArrayType:
			kind = goArray
		case dwarf.TagStructType:
			switch {
			case n.name == "string":
				kind = goString
			case strings.HasPrefix(n.name, "[]"):
				kind = goSlice
			default:
				kind = goStruct
			}
		}
		if kind <= 0 {
			return goShape{}, fmt.Errorf("cannot classify DWARF type %q (%v)", n.name, n.tag)
		}
	}
	s := goShape{name: n.name, kind: kind, size: n.size, regOK: true}
	switch {
	case kind >= goBool && kind <= goUintptr:
		s.ints = 1
		if s.size <= 0 {
			s.size = 8
			if kind == goBool || kind == goUint8 || kind == 3 {
				s.size = 1
			}
		}
	case kind == goFloat32 || kind == goFloat64:
		s.floats = 1
	case kind == goComplex64 || kind == goComplex128:
		s.floats = 2
	case kind == goChan || kind == goFunc || kind == goMap || kind == goPointer || kind == goUnsafePointer:
		s.ints, s.size = 1, 8
	case kind == goString || kind == goInterface:
		s.ints, s.size = 2, 16
	case kind == goSlice:
		s.ints, s.size = 3, 24
		s.byteSlice = t.goSliceOfBytes(n, depth)
	case kind == goArray:
		if !n.hasTyp {
			return goShape{}, fmt.Errorf("array type %q has no element type", n.name)
		}
		elem, err := t.goShapeOf(n.typ, depth+1)
		if err != nil {
			return goShape{}, err
		}
		if s.size < 0 && n.count >= 0 {
			s.size = n.count * elem.size
		}
		switch {
		case s.size == 0 || n.count == 0:
			// No registers: zero-sized (and a zero-sized parameter is
			// stack-assigned, see goParams).
		case n.count == 1:
			s.ints, s.floats, s.regOK = elem.ints, elem.floats, elem.regOK
		default:
			s.regOK = false
		}
	case kind == goStruct:
		for _, m := range n.members {
			ms, err := t.goShapeOf(m.typ, depth+1)
			if err != nil {
				return goShape{}, fmt.Errorf("field %s: %w", m.name, err)
			}
			if ms.size == 0 {
				continue // zero-width fields receive no registers
			}
			s.ints += ms.ints
			s.floats += ms.floats
			s.regOK = s.regOK && ms.regOK
		}
	default:
		return goShape{}, fmt.Errorf("unknown Go kind %d of type %q", kind, n.name)
	}
	if s.size < 0 {
		return goShape{}, fmt.Errorf("type %q has no size", n.name)
	}
	return s, nil
}

func goKindOfBase(n *typeNode) int64 {
	switch n.encoding {
	case ateBoolean:
		return goBool
	case ateFloat:
		if n.size == 4 {
			return goFloat32
		}
		return goFloat64
	case ateComplexFloat:
		if n.size == 8 {
			return goComplex64
		}
		return goComplex128
	case ateSigned, ateSignedChar:
		switch n.size {
		case 1:
			return 3
		case 2:
			return 4
		case 4:
			return 5
		}
		return goInt64
	case ateUnsigned, ateUnsignedChar:
		switch n.size {
		case 1:
			return goUint8
		case 2:
			return 9
		case 4:
			return 10
		}
		return 11
	}
	return 0
}

// goSliceOfBytes reports whether the slice type n has uint8 (byte) elements.
func (t *typeReader) goSliceOfBytes(n *typeNode, depth int) bool {
	elem, ok := n.goElem, n.hasElem
	if !ok { // use the pointer type of the "array" field
		for _, m := range n.members {
			if m.name != "array" {
				continue
			}
			p, err := t.node(m.typ)
			if err == nil && p.hasTyp {
				elem, ok = p.typ, true
			}
		}
	}
	if !ok {
		return false
	}
	es, err := t.goShapeOf(elem, depth+1)
	return err == nil && es.kind == goUint8
}

// goDictPosition reports where a generic (shape-instantiated) function takes
// its dictionary pointer: before formal parameter 0 for functions, before
// parameter 1 (right after the receiver) for methods of generic types, or -1
// when it takes none. The compiler's shapeSig puts the dictionary first
// among the non-receiver parameters; closures inside generic functions and
// method-value wrappers ("-fm") get it through the closure context instead.
func goDictPosition(name string) int {
	if strings.HasPrefix(name, "type:") {
		return -1 // a type's equality or hash function
	}
	// Find the last top-level bracket group holding shape types.
	depth, open, end := 0, -1, -1
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '[':
			if depth == 0 {
				open = i
			}
			depth++
		case ']':
			depth--
			if depth == 0 && open >= 0 && strings.Contains(name[open:i], "go.shape.") {
				end = i
			}
		}
	}
	if end < 0 {
		return -1
	}
	var method string
	switch tail := name[end+1:]; {
	case tail == "":
		return 0 // pkg.Func[shapes]
	case strings.HasPrefix(tail, ")."):
		method = tail[2:] // pkg.(*Type[shapes]).Method
	case strings.HasPrefix(tail, "."):
		method = tail[1:] // pkg.Type[shapes].Method, or a closure pkg.Func[shapes].func1
	default:
		return -1
	}
	if method == "" || strings.ContainsAny(method, ".[") || strings.HasSuffix(method, "-fm") || isClosureName(method) {
		return -1 // closure or wrapper inside a generic function or method
	}
	return 1
}

// isClosureName matches the compiler's names for closures and wrappers
// inside a function: func1, gowrap2, deferwrap3, or a bare number.
func isClosureName(s string) bool {
	for _, p := range []string{"func", "gowrap", "deferwrap", ""} {
		if rest, ok := strings.CutPrefix(s, p); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			return true
		}
	}
	return false
}

// goParams assigns registers to the formal parameters of a Go function with
// the ABIInternal algorithm: each parameter goes entirely into the next free
// integer/floating-point registers if all of its components fit, otherwise
// (or if it is zero-sized or contains an array of length > 1) entirely on the
// stack, without consuming registers.
//
// With abi0, the function uses Go's stack-based ABI0 and every parameter is
// on the stack.
func (t *typeReader) goParams(function string, formals []formal, abi0 bool) []Param {
	var params []Param
	intUsed, floatUsed := 0, 0
	dictAt := goDictPosition(function)
	unknown := ""
	for _, f := range formals {
		if f.isResult {
			continue
		}
		idx := len(params)
		if idx == dictAt {
			intUsed++ // the generic dictionary pointer
		}
		p := Param{Name: f.name, Index: idx}
		if !f.hasType {
			p.Type = "?"
			p.Problem = "DWARF gives no type for it"
			if unknown == "" {
				unknown = f.name
			}
			params = append(params, p)
			continue
		}
		p.Type = t.typeName(f.typ)
		s, err := t.goShapeOf(f.typ, 0)
		switch {
		case err != nil:
			p.Problem = fmt.Sprintf("cannot decode its type: %v", err)
			if unknown == "" {
				unknown = f.name
			}
		case unknown != "":
			p.Problem = fmt.Sprintf("its register cannot be determined because the type of earlier parameter %q could not be decoded", unknown)
		case abi0 || s.size == 0 || !s.regOK || s.ints > len(goIntRegs)-intUsed || s.floats > goNumFloatRegs-floatUsed:
			p.OnStack = true
		default:
			for i := 0; i < s.ints; i++ {
				p.Regs = append(p.Regs, goIntRegs[intUsed+i])
			}
			for i := 0; i < s.floats; i++ {
				p.FloatRegs = append(p.FloatRegs, floatUsed+i)
			}
			intUsed += s.ints
			floatUsed += s.floats
		}
		if p.Problem == "" {
			p.Kind, p.Size = goCaptureKind(s)
			switch {
			case p.Kind == 0:
				kn := goKindNames[s.kind]
				if s.kind == goSlice {
					kn = "slice of non-byte elements"
				}
				p.Problem = fmt.Sprintf("Go type %s (kind %s) is not supported; supported are integers, bool, string and []byte", p.Type, kn)
			case p.OnStack && abi0:
				p.Problem = "it is passed on the stack: the function uses Go's stack-based ABI0 (it is written in assembly or marked //go:cgo_unsafe_args); only register arguments are supported"
			case p.OnStack:
				p.Problem = "it is passed on the stack, not in registers (all of its components did not fit in the remaining integer registers RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11); only register arguments are supported"
			}
		}
		params = append(params, p)
	}
	return params
}

func goCaptureKind(s goShape) (ArgKind, int) {
	switch {
	case s.kind == goBool:
		return ArgBool, int(s.size)
	case s.kind >= goInt && s.kind <= goInt64:
		return ArgInt, int(s.size)
	case s.kind >= goUint && s.kind <= goUintptr:
		return ArgUint, int(s.size)
	case s.kind == goString:
		return ArgString, 0
	case s.kind == goSlice && s.byteSlice:
		return ArgBytes, 0
	}
	return 0, 0
}
