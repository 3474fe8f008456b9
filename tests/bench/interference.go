package main

// Other processes' probes: this machine is shared, and a uprobe on a file fires in every
// process that maps it. A collector or kernel test of someone else that probes the same file
// (python3.11, libssl, a binary named customer-agent) while a measurement runs makes its
// baseline wrong; the harness looks for such probes around each measurement and says so.

import (
	"fmt"
	"os"

	"github.com/cilium/ebpf/link"
)

// foreignUprobes counts the uprobes attached to file. Call it while the harness itself has
// none on that file: they are then someone else's.
func foreignUprobes(file string) (int, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return 0, err
	}
	n := 0
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue
		}
		pe := info.PerfEvent()
		if pe == nil {
			continue
		}
		up := pe.Uprobe()
		if up == nil {
			continue
		}
		if st, err := os.Stat(up.File); err == nil && os.SameFile(fi, st) {
			n++
		}
	}
	return n, it.Err()
}

// interference describes other processes' uprobes on the files, or "" when there are none.
func interference(files ...string) string {
	for _, f := range files {
		n, err := foreignUprobes(f)
		if err != nil || n == 0 {
			continue
		}
		return fmt.Sprintf("INVALID: %d uprobes of another process were on %s during this measurement (another collector or kernel test on this machine), so its baseline was probed too", n, f)
	}
	return ""
}
