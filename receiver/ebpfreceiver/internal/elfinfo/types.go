package elfinfo

import (
	"debug/dwarf"
	"fmt"
)

// DWARF attributes the Go linker adds (see cmd/internal/dwarf).
const (
	attrGoKind dwarf.Attr = 0x2900
	attrGoElem dwarf.Attr = 0x2902
)

// DWARF base type encodings (DW_ATE_*).
const (
	ateAddress      = 0x1
	ateBoolean      = 0x2
	ateComplexFloat = 0x3
	ateFloat        = 0x4
	ateSigned       = 0x5
	ateSignedChar   = 0x6
	ateUnsigned     = 0x7
	ateUnsignedChar = 0x8
	ateUTF          = 0x10
)

// typeNode is a DWARF type DIE with the attributes this package needs.
type typeNode struct {
	off      dwarf.Offset
	tag      dwarf.Tag
	name     string
	goKind   int64 // -1 if no DW_AT_go_kind
	size     int64 // -1 if no DW_AT_byte_size
	encoding int64
	typ      dwarf.Offset // DW_AT_type
	hasTyp   bool
	goElem   dwarf.Offset
	hasElem  bool
	callConv int64 // DW_AT_calling_convention, 0 if absent
	decl     bool  // DW_AT_declaration (incomplete type)
	variants bool  // has a DW_TAG_variant_part (Rust enums)

	members []member // structure, union and class members
	count   int64    // arrays: element count of the first dimension, -1 if unknown
	dims    int      // arrays: number of dimensions
}

type member struct {
	name    string
	typ     dwarf.Offset
	offset  int64 // byte offset
	bitSize int64 // > 0 for bit fields
}

type typeReader struct {
	cNames bool // spell aggregate type names the C way ("struct x")
	d      *dwarf.Data
	r      *dwarf.Reader
	cache  map[dwarf.Offset]*typeNode
	// steps left for the walks over types (see maxTypeSteps): types of a crafted binary can
	// share members so that a depth-bounded walk still visits exponentially many nodes.
	steps int
}

func newTypeReader(d *dwarf.Data) *typeReader {
	return &typeReader{d: d, r: d.Reader(), cache: map[dwarf.Offset]*typeNode{}, steps: maxTypeSteps}
}

// errTypeSteps: the parameters' types are too complex to walk within maxTypeSteps.
var errTypeSteps = fmt.Errorf("types too complex (more than %d DWARF type nodes visited): %w", maxTypeSteps, ErrTooLarge)

// spend takes one step of the type walks' budget.
func (t *typeReader) spend() error {
	if t.steps <= 0 {
		return errTypeSteps
	}
	t.steps--
	return nil
}

func intVal(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		return int64(x), true
	}
	return 0, false
}

// node reads the type DIE at off (and its member/subrange children).
func (t *typeReader) node(off dwarf.Offset) (*typeNode, error) {
	if n := t.cache[off]; n != nil {
		return n, nil
	}
	t.r.Seek(off)
	e, err := t.r.Next()
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, fmt.Errorf("no DWARF entry at offset %#x", off)
	}
	n := &typeNode{off: off, tag: e.Tag, goKind: -1, size: -1, count: -1}
	n.name, _ = e.Val(dwarf.AttrName).(string)
	if v, ok := intVal(e.Val(attrGoKind)); ok {
		n.goKind = v
	}
	if v, ok := intVal(e.Val(dwarf.AttrByteSize)); ok {
		n.size = v
	}
	n.encoding, _ = intVal(e.Val(dwarf.AttrEncoding))
	n.typ, n.hasTyp = e.Val(dwarf.AttrType).(dwarf.Offset)
	n.goElem, n.hasElem = e.Val(attrGoElem).(dwarf.Offset)
	n.callConv, _ = intVal(e.Val(dwarf.AttrCalling))
	n.decl, _ = e.Val(dwarf.AttrDeclaration).(bool)
	if e.Children {
		for {
			c, err := t.r.Next()
			if err != nil {
				return nil, err
			}
			if c == nil || c.Tag == 0 {
				break
			}
			switch c.Tag {
			case dwarf.TagMember:
				if isStatic, _ := c.Val(dwarf.AttrExternal).(bool); isStatic {
					break // C++ static data member (DWARF 4)
				}
				if isDecl, _ := c.Val(dwarf.AttrDeclaration).(bool); isDecl {
					break
				}
				m := member{}
				m.name, _ = c.Val(dwarf.AttrName).(string)
				m.typ, _ = c.Val(dwarf.AttrType).(dwarf.Offset)
				if v, ok := intVal(c.Val(dwarf.AttrDataMemberLoc)); ok {
					m.offset = v
				}
				if v, ok := intVal(c.Val(dwarf.AttrDataBitOffset)); ok {
					m.offset = v / 8
				}
				m.bitSize, _ = intVal(c.Val(dwarf.AttrBitSize))
				n.members = append(n.members, m)
			case dwarf.TagSubrangeType:
				n.dims++
				if n.dims == 1 {
					if v, ok := intVal(c.Val(dwarf.AttrCount)); ok {
						n.count = v
					} else if v, ok := intVal(c.Val(dwarf.AttrUpperBound)); ok {
						n.count = v + 1
					}
				}
			case dwarf.TagVariantPart:
				n.variants = true
			case dwarf.TagInheritance:
				// A base class is laid out like a member.
				m := member{name: "(base)"}
				m.typ, _ = c.Val(dwarf.AttrType).(dwarf.Offset)
				if v, ok := intVal(c.Val(dwarf.AttrDataMemberLoc)); ok {
					m.offset = v
				}
				n.members = append(n.members, m)
			}
			if c.Children {
				t.r.SkipChildren()
			}
		}
	}
	t.cache[off] = n
	return n, nil
}

// typeName returns the DWARF name of the type at off for messages.
func (t *typeReader) typeName(off dwarf.Offset) string {
	return t.typeNameDepth(off, 0)
}

// typeNameDepth is typeName inside depth pointer, reference and qualifier types: a crafted
// pointer type may point to itself.
func (t *typeReader) typeNameDepth(off dwarf.Offset, depth int) string {
	if depth > 16 || t.spend() != nil {
		return "?"
	}
	for hop := 0; hop < 8; hop++ {
		n, err := t.node(off)
		if err != nil {
			return "?"
		}
		if n.name != "" {
			if t.cNames {
				switch n.tag {
				case dwarf.TagStructType:
					return "struct " + n.name
				case dwarf.TagUnionType:
					return "union " + n.name
				case dwarf.TagEnumerationType:
					return "enum " + n.name
				}
			}
			return n.name
		}
		switch n.tag {
		case dwarf.TagPointerType:
			if !n.hasTyp {
				return "void *"
			}
			return t.typeNameDepth(n.typ, depth+1) + " *"
		case dwarf.TagReferenceType:
			return t.typeNameDepth(n.typ, depth+1) + " &"
		case dwarf.TagConstType:
			if !n.hasTyp {
				return "const void"
			}
			return "const " + t.typeNameDepth(n.typ, depth+1)
		case dwarf.TagVolatileType:
			return "volatile " + t.typeNameDepth(n.typ, depth+1)
		case dwarf.TagStructType:
			return "struct <anonymous>"
		case dwarf.TagUnionType:
			return "union <anonymous>"
		}
		if !n.hasTyp {
			return n.tag.String()
		}
		off = n.typ
	}
	return "?"
}
