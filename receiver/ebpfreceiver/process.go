package ebpfreceiver

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// readProc reads a process's identity. The process may vanish at any point; the error says so.
func readProc(procRoot string, pid uint32) (tracer.ProcInfo, error) {
	dir := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10))
	p := tracer.ProcInfo{PID: pid, ExeFile: filepath.Join(dir, "exe")}
	exe, err := os.Readlink(p.ExeFile)
	if err != nil {
		return p, fmt.Errorf("process %d: %w", pid, err)
	}
	p.Exe = strings.TrimSuffix(exe, " (deleted)")
	var st unix.Stat_t
	if err := unix.Stat(p.ExeFile, &st); err != nil {
		return p, fmt.Errorf("process %d: stat executable: %w", pid, err)
	}
	p.Inode = tracer.InodeKey(st)
	comm, err := os.ReadFile(filepath.Join(dir, "comm"))
	if err != nil {
		return p, fmt.Errorf("process %d: %w", pid, err)
	}
	p.Comm = strings.TrimSpace(string(comm))
	if raw, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		raw = bytes.TrimRight(raw, "\x00")
		if len(raw) > 0 {
			p.Cmdline = strings.Split(string(raw), "\x00")
		}
	}
	if stat, err := os.ReadFile(filepath.Join(dir, "stat")); err == nil {
		// pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 {
			if f := strings.Fields(string(stat[i+1:])); len(f) > 1 {
				if v, err := strconv.ParseUint(f[1], 10, 32); err == nil {
					p.PPID = uint32(v)
				}
			}
		}
	}
	return p, nil
}

// listPIDs returns the pids under procRoot.
func listPIDs(procRoot string) ([]uint32, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	pids := make([]uint32, 0, len(entries))
	for _, e := range entries {
		if v, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			pids = append(pids, uint32(v))
		}
	}
	return pids, nil
}
