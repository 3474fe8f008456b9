package probes

import (
	"testing"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
)

// elfinfo numbers registers and argument kinds for the probe specs it builds without importing
// the kernel programs (it is a pure ELF/DWARF package); this holds its numbering to the C enums.
func TestElfinfoNumberingIsTheKernels(t *testing.T) {
	regs := map[elfinfo.Reg]uprobeRegId{
		elfinfo.RegNone: uprobeRegIdREG_NONE,
		elfinfo.RegRAX:  uprobeRegIdREG_RAX,
		elfinfo.RegRBX:  uprobeRegIdREG_RBX,
		elfinfo.RegRCX:  uprobeRegIdREG_RCX,
		elfinfo.RegRDX:  uprobeRegIdREG_RDX,
		elfinfo.RegRSI:  uprobeRegIdREG_RSI,
		elfinfo.RegRDI:  uprobeRegIdREG_RDI,
		elfinfo.RegR8:   uprobeRegIdREG_R8,
		elfinfo.RegR9:   uprobeRegIdREG_R9,
		elfinfo.RegR10:  uprobeRegIdREG_R10,
		elfinfo.RegR11:  uprobeRegIdREG_R11,
		elfinfo.RegR12:  uprobeRegIdREG_R12,
		elfinfo.RegR13:  uprobeRegIdREG_R13,
		elfinfo.RegR14:  uprobeRegIdREG_R14,
		elfinfo.RegR15:  uprobeRegIdREG_R15,
		elfinfo.RegRBP:  uprobeRegIdREG_RBP,
		elfinfo.RegRSP:  uprobeRegIdREG_RSP,
	}
	if len(regs) != int(uprobeRegIdREG_COUNT) {
		t.Errorf("elfinfo names %d registers, enum reg_id %d", len(regs), uprobeRegIdREG_COUNT)
	}
	for r, c := range regs {
		if uint32(r) != uint32(c) {
			t.Errorf("elfinfo.%v = %d, enum reg_id says %d", r, r, c)
		}
	}
	kinds := map[elfinfo.ArgKind]uprobeArgKind{
		elfinfo.ArgInt:     uprobeArgKindARG_INT,
		elfinfo.ArgUint:    uprobeArgKindARG_UINT,
		elfinfo.ArgBool:    uprobeArgKindARG_BOOL,
		elfinfo.ArgString:  uprobeArgKindARG_STRING,
		elfinfo.ArgBytes:   uprobeArgKindARG_BYTES_,
		elfinfo.ArgCString: uprobeArgKindARG_CSTRING,
	}
	for k, c := range kinds {
		if uint32(k) != uint32(c) {
			t.Errorf("elfinfo.ArgKind %d, enum arg_kind says %d", k, c)
		}
	}
}
