package elfinfo

import (
	"debug/dwarf"
	"fmt"
	"strings"
)

// MaxFieldOffset bounds an offset StructFieldOffsets returns: the kernel programs add it to a
// pointer they read from the traced process, so a crafted DWARF must not move that read far.
const MaxFieldOffset = 1 << 16

// StructFieldOffsets returns the byte offsets of fields in the structure type named typeName
// (Go's DWARF spells runtime types "runtime.g", "runtime.m"), from the first definition of
// that name. Only the compile units' top-level entries are looked at, which is where Go and C
// compilers put named types; the walk is bounded by the size of .debug_info.
func (b *Binary) StructFieldOffsets(typeName string, fields ...string) (_ []uint64, err error) {
	defer b.recoverMalformed(&err, "type "+typeName)
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.loadDWARF()
	if err != nil {
		return nil, err
	}
	bound := b.infoBytes()
	var off dwarf.Offset
	found := false
	if b.IsGo {
		// Go's linker puts every type in the unit of package runtime (and the unit of a
		// type's own package is the other likely place): looking there first skips the other
		// units whole (their children are not decoded), about 0.2 s of a Go agent's exec with
		// a 15 MB .debug_info, on the way to its probes. Not found there: every unit, below.
		pkg := goPackage(typeName)
		off, found, err = findStruct(d, typeName, bound, func(unit string) bool { return unit == "runtime" || unit == pkg })
		if err != nil {
			return nil, fmt.Errorf("elfinfo: %s: reading DWARF: %w", b.Path, err)
		}
	}
	if !found {
		off, found, err = findStruct(d, typeName, bound, nil)
		if err != nil {
			return nil, fmt.Errorf("elfinfo: %s: reading DWARF: %w", b.Path, err)
		}
	}
	if !found {
		return nil, fmt.Errorf("elfinfo: %s: type %q: %w in DWARF", b.Path, typeName, ErrSymbolNotFound)
	}
	var node *typeNode
	if err := Guard(func() (err error) { node, err = newTypeReader(d).node(off); return err }); err != nil {
		return nil, fmt.Errorf("elfinfo: %s: type %s: reading DWARF: %w", b.Path, typeName, err)
	}
	out := make([]uint64, len(fields))
	for i, f := range fields {
		ok := false
		for _, m := range node.members {
			if m.name == f && m.bitSize == 0 {
				if m.offset < 0 || m.offset >= MaxFieldOffset || (node.size >= 0 && m.offset >= node.size) {
					return nil, fmt.Errorf("elfinfo: %s: field %s.%s at offset %d: %w", b.Path, typeName, f, m.offset, ErrMalformed)
				}
				out[i], ok = uint64(m.offset), true
				break
			}
		}
		if !ok {
			return nil, fmt.Errorf("elfinfo: %s: field %s.%s: %w in DWARF", b.Path, typeName, f, ErrSymbolNotFound)
		}
	}
	return out, nil
}

// findStruct returns the offset of the first definition of the structure type typeName among
// the top-level entries of the compile units that unit accepts by name (nil: every unit); the
// walk reads at most bound entries.
func findStruct(d *dwarf.Data, typeName string, bound int, unit func(name string) bool) (off dwarf.Offset, found bool, err error) {
	err = Guard(func() error {
		r := d.Reader()
		for n := 0; ; n++ {
			if n > bound {
				return fmt.Errorf("%w: more DWARF entries than .debug_info has bytes (%d)", ErrMalformed, bound)
			}
			e, err := r.Next()
			if err != nil {
				return err
			}
			if e == nil {
				return nil
			}
			if e.Tag == dwarf.TagCompileUnit || e.Tag == dwarf.TagPartialUnit {
				if name, _ := e.Val(dwarf.AttrName).(string); unit != nil && !unit(name) {
					r.SkipChildren() // on a unit: a jump to the next unit, nothing decoded
				}
				continue // else descend into the unit
			}
			if e.Tag == dwarf.TagStructType {
				name, _ := e.Val(dwarf.AttrName).(string)
				decl, _ := e.Val(dwarf.AttrDeclaration).(bool)
				if name == typeName && !decl {
					off, found = e.Offset, true
					return nil
				}
			}
			if e.Children {
				r.SkipChildren()
			}
		}
	})
	return off, found, err
}

// goPackage is the import path of a Go type name ("net/http.Client" → "net/http"): what is
// before the first dot after the last slash.
func goPackage(typeName string) string {
	slash := strings.LastIndexByte(typeName, '/') + 1
	dot := strings.IndexByte(typeName[slash:], '.')
	if dot < 0 {
		return ""
	}
	return typeName[:slash+dot]
}
