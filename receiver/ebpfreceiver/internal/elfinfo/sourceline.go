package elfinfo

import (
	"debug/dwarf"
	"errors"
	"io"
)

// SourceLine returns the source file and line of a code address (a function's entry, for the
// code.file.path and code.line.number of its spans): from the Go pclntab for Go binaries, from
// the DWARF line table otherwise. It returns "", 0 when the binary does not say.
func (b *Binary) SourceLine(addr uint64) (file string, line int) {
	var err error
	defer func() {
		if err != nil { // a crafted binary made debug/dwarf panic: not known
			file, line = "", 0
		}
	}()
	defer b.recoverMalformed(&err, "source line")
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.IsGo {
		if tab := b.pclntab(); tab != nil {
			file, line, fn := tab.PCToLine(addr)
			if fn != nil {
				return file, line
			}
		}
	}
	d, err := b.loadDWARF()
	if err != nil {
		return "", 0
	}
	cu, err := d.Reader().SeekPC(addr)
	if err != nil || cu == nil {
		return "", 0
	}
	lr, err := d.LineReader(cu)
	if err != nil || lr == nil {
		return "", 0
	}
	var entry dwarf.LineEntry
	if err := lr.SeekPC(addr, &entry); err != nil && !errors.Is(err, io.EOF) {
		return "", 0
	}
	if entry.File == nil {
		return "", 0
	}
	return entry.File.Name, entry.Line
}
