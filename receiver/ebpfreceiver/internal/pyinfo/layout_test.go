package pyinfo

import "testing"

// TestLayouts checks what the kernel's frame walker assumes of every layout: one read of
// FrameWindowSize bytes (at most PY_FRAME_WINDOW, 128) at FrameWindow covers f_code, previous and
// prev_instr, 8-byte aligned, and the owner byte where there is one.
func TestLayouts(t *testing.T) {
	for v, l := range Layouts {
		k := l.Kernel
		if k.FrameWindowSize == 0 || k.FrameWindowSize > 128 {
			t.Errorf("%s: frame window of %d bytes", v, k.FrameWindowSize)
		}
		for name, off := range map[string]uint32{"f_code": k.FrameCode, "previous": k.FramePrevious, "prev_instr": k.FramePrevInstr} {
			if off < k.FrameWindow || off+8 > k.FrameWindow+uint32(k.FrameWindowSize) || (off-k.FrameWindow)%8 != 0 {
				t.Errorf("%s: %s at %d is not in the frame window [%d, +%d)", v, name, off, k.FrameWindow, k.FrameWindowSize)
			}
		}
		if k.FrameOwner != none && (k.FrameOwner < k.FrameWindow || k.FrameOwner >= k.FrameWindow+uint32(k.FrameWindowSize)) {
			t.Errorf("%s: owner at %d is not in the frame window", v, k.FrameOwner)
		}
		if LayoutByID(l.ID) != l || l.ID == 0 {
			t.Errorf("%s: id %d", v, l.ID)
		}
		if l.Version != v {
			t.Errorf("layout %s says it is %s", v, l.Version)
		}
	}
}
