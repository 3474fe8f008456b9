package elfinfo

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"slices"
	"testing"
)

// This file reads the compilers' own answer to "where is this parameter at
// function entry": the DWARF location (list) of each DW_TAG_formal_parameter,
// evaluated at the function's low_pc. The tests compare it with the register
// assignment Parameters computes from the ABI rules.

// compilerParam is a formal parameter with its location at entry.
type compilerParam struct {
	name     string
	loc      entryLoc
	hasLoc   bool   // a location covering the entry pc was found and decoded
	locError string // why not, when the location exists but was not understood
}

// compilerFunc is a function with code and its parameters as the compiler
// described them.
type compilerFunc struct {
	name   string
	lowPC  uint64
	params []compilerParam
}

// compilerLocations lists every function with code in the binary's DWARF
// (compile units whose DW_AT_language is in langs, or all if langs is nil)
// with each parameter's entry location.
func compilerLocations(t *testing.T, path string, langs map[int64]bool) []compilerFunc {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		t.Fatal(err)
	}
	lr, err := newLocReader(f)
	if err != nil {
		t.Fatal(err)
	}
	r := d.Reader()
	var out []compilerFunc
	var unit *unitInfo
	for {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			break
		}
		switch e.Tag {
		case dwarf.TagCompileUnit:
			lang, _ := e.Val(dwarf.AttrLanguage).(int64)
			if langs != nil && !langs[lang] {
				r.SkipChildren()
				continue
			}
			unit = newUnitInfo(e)
			continue
		case dwarf.TagSubprogram:
		case dwarf.TagNamespace, dwarf.TagStructType, dwarf.TagClassType:
			continue // C++ and Rust nest functions
		default:
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		lowPC, hasPC := e.Val(dwarf.AttrLowpc).(uint64)
		name, _ := e.Val(dwarf.AttrName).(string)
		if linkage, ok := e.Val(dwarf.AttrLinkageName).(string); ok {
			name = linkage // the symbol name
		}
		if !e.Children {
			continue
		}
		fn := compilerFunc{name: name, lowPC: lowPC}
		for {
			c, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if c == nil || c.Tag == 0 {
				break
			}
			if c.Children {
				r.SkipChildren()
			}
			if c.Tag != dwarf.TagFormalParameter {
				continue
			}
			if isResult, _ := c.Val(dwarf.AttrVarParam).(bool); isResult {
				continue
			}
			p := compilerParam{}
			p.name, _ = c.Val(dwarf.AttrName).(string)
			expr, found, err := lr.entryExpr(unit, c.AttrField(dwarf.AttrLocation), lowPC)
			if err != nil {
				p.locError = err.Error()
			}
			if found && len(expr) > 0 {
				p.loc, p.hasLoc = parseLocExpr(expr)
				if !p.hasLoc {
					p.locError = fmt.Sprintf("expression % x not understood", expr)
				}
			}
			fn.params = append(fn.params, p)
		}
		if hasPC && name != "" && len(fn.params) > 0 {
			out = append(out, fn)
		}
	}
	return out
}

// compareLocation checks a computed Param against the compiler's entry
// location. It returns "" if they agree (or the location says too little to
// tell), else a description of the mismatch.
//
// With perRegister, each DW_OP_piece is one register-sized component (Go);
// otherwise pieces follow the members of aggregates (C), so only the order
// of the registers named is compared.
//
// others maps the registers assigned to the function's other parameters to
// their names. Go's location lists are known to be imprecise for parameters
// the function reassigns (x, y = y, x; if c == nil { c = err }): the entry
// range then names the register of the parameter whose value it later
// receives. Such a mismatch is returned as alias (the other parameter's
// name) rather than as msg.
func compareLocation(p Param, cp compilerParam, perRegister bool, others map[Reg]string) (msg, alias string) {
	msg = compareLocationStrict(p, cp, perRegister)
	if msg == "" || p.OnStack {
		return msg, ""
	}
	for _, pc := range cp.loc.pieces {
		if !pc.isReg {
			continue
		}
		r, ok := dwarfRegs[pc.reg]
		if !ok || slices.Contains(p.Regs, r) {
			continue
		}
		if name, ok := others[r]; ok {
			return "", name
		}
	}
	return msg, ""
}

func compareLocationStrict(p Param, cp compilerParam, perRegister bool) string {
	if !cp.hasLoc {
		return ""
	}
	loc := cp.loc
	if !perRegister {
		var named []locPiece
		for _, pc := range loc.pieces {
			if pc.isReg && (len(named) == 0 || named[len(named)-1].reg != pc.reg) {
				named = append(named, pc)
			}
		}
		if len(named) == 0 {
			return compareLocationStrict(p, cp, true)
		}
		loc = entryLoc{pieces: named}
		if len(named) > len(p.Regs)+len(p.FloatRegs) {
			return fmt.Sprintf("compiler names registers %v, computed %v + X%v", named, p.Regs, p.FloatRegs)
		}
	}
	var regPieces int
	for _, pc := range loc.pieces {
		if pc.isReg {
			regPieces++
		}
	}
	if regPieces == 0 {
		if r, ok := dwarfRegs[loc.memBase-1]; ok && loc.memBase > 0 && slices.Equal(p.Regs, []Reg{r}) {
			return "" // passed by reference: the value is where the register points
		}
		if loc.memory && !p.OnStack && len(p.Regs)+len(p.FloatRegs) > 0 {
			return fmt.Sprintf("compiler says memory, computed registers %v/%v", p.Regs, p.FloatRegs)
		}
		return ""
	}
	if p.OnStack {
		return fmt.Sprintf("compiler says registers %v, computed stack", loc.pieces)
	}
	if len(loc.pieces) > len(p.Regs)+len(p.FloatRegs) {
		return fmt.Sprintf("compiler gives %d pieces %v, computed registers %v + X%v", len(loc.pieces), loc.pieces, p.Regs, p.FloatRegs)
	}
	ii, fi := 0, 0
	for _, pc := range loc.pieces {
		switch {
		case !pc.isReg:
			if len(p.FloatRegs) > 0 {
				return "" // an empty piece of a mixed int/float value: cannot align further
			}
			ii++
		case pc.reg >= 17 && pc.reg <= 32:
			if fi >= len(p.FloatRegs) || p.FloatRegs[fi] != int(pc.reg-17) {
				return fmt.Sprintf("compiler says X%d at float piece %d, computed X%v", pc.reg-17, fi, p.FloatRegs)
			}
			fi++
		default:
			r, known := dwarfRegs[pc.reg]
			if !known || ii >= len(p.Regs) || p.Regs[ii] != r {
				return fmt.Sprintf("compiler says DWARF reg %d (%v) at int piece %d, computed %v", pc.reg, r, ii, p.Regs)
			}
			ii++
		}
	}
	return ""
}
