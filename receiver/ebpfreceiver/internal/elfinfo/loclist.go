package elfinfo

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
)

// This file evaluates a parameter's DWARF location (list) at a function's
// entry pc: the compiler's own statement of where the parameter is. Native
// functions use it to detect calling conventions the optimiser changed, and
// the tests use it to verify the ABI register assignment.

// unitInfo is what a compile unit contributes to location list decoding.
type unitInfo struct {
	offset       dwarf.Offset // of the compile unit DIE
	base         uint64       // DW_AT_low_pc
	addrBase     uint64       // DW_AT_addr_base
	loclistsBase uint64       // DW_AT_loclists_base
}

func newUnitInfo(e *dwarf.Entry) *unitInfo {
	u := &unitInfo{offset: e.Offset}
	u.base, _ = e.Val(dwarf.AttrLowpc).(uint64)
	if v, ok := e.Val(dwarf.AttrAddrBase).(int64); ok {
		u.addrBase = uint64(v)
	}
	if v, ok := e.Val(dwarf.AttrLoclistsBase).(int64); ok {
		u.loclistsBase = uint64(v)
	}
	return u
}

// locReader holds the raw sections location lists need.
type locReader struct {
	loclists []byte // .debug_loclists (DWARF 5)
	loc      []byte // .debug_loc (DWARF 4)
	addr     []byte // .debug_addr
	units    []unitSpan
}

// unitSpan is a unit's extent in .debug_info and its DWARF version.
type unitSpan struct {
	start, end uint64
	version    int
}

func sectionData(f *elf.File, names ...string) ([]byte, error) {
	for _, name := range names {
		if s := f.Section(name); s != nil {
			if err := CheckSection(s); err != nil {
				return nil, err
			}
			return s.Data()
		}
	}
	return nil, nil
}

func newLocReader(f *elf.File) (*locReader, error) {
	lr := &locReader{}
	var err error
	if lr.loclists, err = sectionData(f, ".debug_loclists", ".zdebug_loclists"); err != nil {
		return nil, err
	}
	if lr.loc, err = sectionData(f, ".debug_loc", ".zdebug_loc"); err != nil {
		return nil, err
	}
	if lr.addr, err = sectionData(f, ".debug_addr", ".zdebug_addr"); err != nil {
		return nil, err
	}
	info, err := sectionData(f, ".debug_info", ".zdebug_info")
	if err != nil {
		return nil, err
	}
	lr.units = parseUnits(info)
	return lr, nil
}

// parseUnits lists the units of .debug_info from their headers, up to the first one whose
// length does not fit.
func parseUnits(info []byte) []unitSpan {
	var units []unitSpan
	for off := uint64(0); off+6 < uint64(len(info)); {
		length, hdr := uint64(binary.LittleEndian.Uint32(info[off:])), uint64(4)
		if length == 0xffffffff {
			if off+14 > uint64(len(info)) {
				break
			}
			length, hdr = binary.LittleEndian.Uint64(info[off+4:]), 12
		}
		// Overflow-safe (off+hdr <= len): a 64-bit length near 2^64 must not wrap the sum
		// and send off back to the start, looping forever.
		if length == 0 || length > uint64(len(info))-off-hdr {
			break
		}
		version := int(binary.LittleEndian.Uint16(info[off+hdr:]))
		units = append(units, unitSpan{start: off, end: off + hdr + length, version: version})
		off += hdr + length
	}
	return units
}

// version returns the DWARF version of the unit containing off, or 0.
func (lr *locReader) version(off dwarf.Offset) int {
	i := sort.Search(len(lr.units), func(i int) bool { return lr.units[i].end > uint64(off) })
	if i < len(lr.units) && lr.units[i].start <= uint64(off) {
		return lr.units[i].version
	}
	return 0
}

// entryExpr returns the location expression of the DW_AT_location field f
// that holds at pc, for a DIE of unit u; ok is false if none does.
func (lr *locReader) entryExpr(u *unitInfo, f *dwarf.Field, pc uint64) (expr []byte, ok bool, err error) {
	if f == nil {
		return nil, false, nil
	}
	switch f.Class {
	case dwarf.ClassExprLoc:
		e, _ := f.Val.([]byte)
		return e, true, nil
	case dwarf.ClassLocList: // DW_FORM_loclistx: an index
		idx, _ := intVal(f.Val) // uint64 from debug/dwarf
		off, err := lr.loclistx(*u, idx)
		if err != nil {
			return nil, false, err
		}
		return lr.exprAt(*u, off, pc)
	case dwarf.ClassLocListPtr:
		off, _ := intVal(f.Val)
		if lr.version(u.offset) < 5 {
			return lr.exprAtV4(*u, off, pc)
		}
		return lr.exprAt(*u, off, pc)
	}
	return nil, false, nil
}

// exprAtV4 finds the expression of the DWARF 4 location list at off in
// .debug_loc that covers pc.
func (lr *locReader) exprAtV4(u unitInfo, off int64, pc uint64) ([]byte, bool, error) {
	if off < 0 || off >= int64(len(lr.loc)) {
		return nil, false, fmt.Errorf("location list offset %#x out of range", off)
	}
	b := lr.loc[off:]
	base := u.base
	for len(b) >= 16 {
		lo, hi := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		b = b[16:]
		switch {
		case lo == 0 && hi == 0:
			return nil, false, nil
		case lo == ^uint64(0):
			base = hi
			continue
		}
		if len(b) < 2 {
			break
		}
		n := int(binary.LittleEndian.Uint16(b))
		if len(b) < 2+n {
			break
		}
		expr := b[2 : 2+n]
		b = b[2+n:]
		if base+lo <= pc && pc < base+hi {
			return expr, true, nil
		}
	}
	return nil, false, fmt.Errorf("truncated location list at %#x", off)
}

// dwarfRegs maps x86-64 DWARF register numbers to Reg; 17-32 are XMM0-15.
var dwarfRegs = map[uint64]Reg{0: RegRAX, 1: RegRDX, 2: RegRCX, 3: RegRBX, 4: RegRSI, 5: RegRDI, 8: RegR8, 9: RegR9, 10: RegR10, 11: RegR11}

// locPiece is one DW_OP_piece of a location: a register or nothing.
type locPiece struct {
	reg   uint64 // DWARF register number
	isReg bool
	size  uint64
}

// entryLoc is a parameter's location at function entry.
type entryLoc struct {
	pieces []locPiece
	memory bool // frame- or register-relative memory (the stack)
	// memBase is the DWARF number of the register a DW_OP_breg location
	// is relative to, plus one; 0 for frame-relative memory.
	memBase uint64
}

func uleb(b []byte) (uint64, []byte, error) {
	var v uint64
	for i, c := range b {
		if i > 9 {
			break
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, b[i+1:], nil
		}
	}
	return 0, nil, fmt.Errorf("bad uleb128")
}

func sleb(b []byte) (int64, []byte, error) {
	var v int64
	var shift uint
	for i, c := range b {
		if i > 9 {
			break
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, b[i+1:], nil
		}
	}
	return 0, nil, fmt.Errorf("bad sleb128")
}

// loclistx resolves a DW_FORM_loclistx index to a .debug_loclists offset.
func (lr *locReader) loclistx(u unitInfo, idx int64) (int64, error) {
	n := uint64(len(lr.loclists))
	if idx < 0 || u.loclistsBase > n || uint64(idx) > (n-u.loclistsBase)/4 {
		return 0, fmt.Errorf("location list index %d out of range", idx)
	}
	at := u.loclistsBase + uint64(idx)*4
	if at+4 > n {
		return 0, fmt.Errorf("location list index %d out of range", idx)
	}
	return int64(u.loclistsBase) + int64(binary.LittleEndian.Uint32(lr.loclists[at:])), nil
}

func (lr *locReader) addrx(u unitInfo, idx uint64) (uint64, error) {
	n := uint64(len(lr.addr))
	if u.addrBase > n || idx > (n-u.addrBase)/8 || u.addrBase+idx*8+8 > n {
		return 0, fmt.Errorf("address index %d out of range", idx)
	}
	off := u.addrBase + idx*8
	return binary.LittleEndian.Uint64(lr.addr[off:]), nil
}

// exprAt finds the expression of the DWARF 5 location list at off that
// covers pc; ok is false if none does.
func (lr *locReader) exprAt(u unitInfo, off int64, pc uint64) (expr []byte, ok bool, err error) {
	if off < 0 || off >= int64(len(lr.loclists)) {
		return nil, false, fmt.Errorf("location list offset %#x out of range", off)
	}
	b := lr.loclists[off:]
	base := u.base
	readExpr := func() ([]byte, error) {
		n, rest, err := uleb(b)
		if err != nil || n > uint64(len(rest)) {
			return nil, fmt.Errorf("bad expression length")
		}
		b = rest[n:]
		return rest[:n], nil
	}
	for len(b) > 0 {
		kind := b[0]
		b = b[1:]
		var lo, hi uint64
		switch kind {
		case 0x00: // DW_LLE_end_of_list
			return nil, false, nil
		case 0x01: // DW_LLE_base_addressx
			idx, rest, err := uleb(b)
			if err != nil {
				return nil, false, err
			}
			b = rest
			if base, err = lr.addrx(u, idx); err != nil {
				return nil, false, err
			}
			continue
		case 0x02, 0x03: // DW_LLE_startx_endx, DW_LLE_startx_length
			i1, rest, err := uleb(b)
			if err != nil {
				return nil, false, err
			}
			v2, rest, err := uleb(rest)
			if err != nil {
				return nil, false, err
			}
			b = rest
			if lo, err = lr.addrx(u, i1); err != nil {
				return nil, false, err
			}
			if kind == 0x02 {
				if hi, err = lr.addrx(u, v2); err != nil {
					return nil, false, err
				}
			} else {
				hi = lo + v2
			}
		case 0x04: // DW_LLE_offset_pair
			o1, rest, err := uleb(b)
			if err != nil {
				return nil, false, err
			}
			o2, rest, err := uleb(rest)
			if err != nil {
				return nil, false, err
			}
			b = rest
			lo, hi = base+o1, base+o2
		case 0x05: // DW_LLE_default_location
			e, err := readExpr()
			if err != nil {
				return nil, false, err
			}
			expr, ok = e, true
			continue
		case 0x06: // DW_LLE_base_address
			if len(b) < 8 {
				return nil, false, fmt.Errorf("truncated")
			}
			base = binary.LittleEndian.Uint64(b)
			b = b[8:]
			continue
		case 0x07: // DW_LLE_start_end
			if len(b) < 16 {
				return nil, false, fmt.Errorf("truncated")
			}
			lo, hi = binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
			b = b[16:]
		case 0x08: // DW_LLE_start_length
			if len(b) < 8 {
				return nil, false, fmt.Errorf("truncated")
			}
			lo = binary.LittleEndian.Uint64(b)
			n, rest, err := uleb(b[8:])
			if err != nil {
				return nil, false, err
			}
			hi, b = lo+n, rest
		case 0x09: // DW_LLE_GNU_view_pair: two view numbers, no expression
			_, rest, err := uleb(b)
			if err != nil {
				return nil, false, err
			}
			if _, b, err = uleb(rest); err != nil {
				return nil, false, err
			}
			continue
		default:
			return nil, false, fmt.Errorf("unknown location list entry kind %#x", kind)
		}
		e, err := readExpr()
		if err != nil {
			return nil, false, err
		}
		if lo <= pc && pc < hi {
			return e, true, nil
		}
	}
	return expr, ok, nil
}

// parseLocExpr decodes the subset of DWARF expressions compilers use for
// parameters at entry. ok is false for anything else (entry values,
// constants, computed values).
func parseLocExpr(e []byte) (loc entryLoc, ok bool) {
	var cur *locPiece
	for len(e) > 0 {
		op := e[0]
		e = e[1:]
		switch {
		case op >= 0x50 && op <= 0x6f: // DW_OP_reg0..31
			cur = &locPiece{reg: uint64(op - 0x50), isReg: true}
		case op == 0x90: // DW_OP_regx
			r, rest, err := uleb(e)
			if err != nil {
				return loc, false
			}
			e, cur = rest, &locPiece{reg: r, isReg: true}
		case op == 0x91: // DW_OP_fbreg
			_, rest, err := sleb(e)
			if err != nil {
				return loc, false
			}
			e, loc.memory = rest, true
			cur = &locPiece{}
		case op >= 0x70 && op <= 0x8f: // DW_OP_breg0..31
			_, rest, err := sleb(e)
			if err != nil {
				return loc, false
			}
			e, loc.memory, loc.memBase = rest, true, uint64(op-0x70)+1
			cur = &locPiece{}
		case op == 0x9c: // DW_OP_call_frame_cfa
			loc.memory = true
			cur = &locPiece{}
		case op == 0x23: // DW_OP_plus_uconst (after a frame base)
			_, rest, err := uleb(e)
			if err != nil {
				return loc, false
			}
			e = rest
		case op == 0x93: // DW_OP_piece
			n, rest, err := uleb(e)
			if err != nil {
				return loc, false
			}
			e = rest
			p := locPiece{size: n}
			if cur != nil {
				p.reg, p.isReg = cur.reg, cur.isReg
			}
			loc.pieces = append(loc.pieces, p)
			cur = nil
		default:
			return loc, false
		}
	}
	if cur != nil {
		if !cur.isReg && !loc.memory {
			return loc, false
		}
		loc.pieces = append(loc.pieces, *cur)
	}
	return loc, true
}
