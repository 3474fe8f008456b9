package tracer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
)

// Ctx is the context of counter updates outside a request.
var Ctx = context.Background()

// Capture values (agenttrail.capture.*) shared by the families.
const (
	CaptureNone     = "none"
	CaptureNA       = "n/a"
	CaptureUnknown  = "unknown"
	CaptureDisabled = "disabled"
)

// ShortError is an error's message, bounded: a capture attribute names why, the log has the rest.
func ShortError(err error) string {
	const limit = 200
	s := err.Error()
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}

// InodeKey encodes a file's device the way the kernel stores it in super_block.s_dev.
func InodeKey(st unix.Stat_t) probes.InodeKey {
	dev := uint64(unix.Major(st.Dev))<<20 | uint64(unix.Minor(st.Dev))
	return probes.InodeKey{Dev: dev, Ino: st.Ino}
}

// StatInode identifies the file at path as the kernel does.
func StatInode(path string) (probes.InodeKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return probes.InodeKey{}, fmt.Errorf("executable %s does not exist", path)
		}
		return probes.InodeKey{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return InodeKey(st), nil
}

// FileKey is "dev:inode" of a file, the key under which the families remember files they
// looked at; false when the file cannot be stat'ed.
func FileKey(path string) (string, bool) {
	k, err := StatInode(path)
	if err != nil {
		return "", false
	}
	return InodeString(k), true
}

// InodeString is "dev:inode".
func InodeString(k probes.InodeKey) string { return fmt.Sprintf("%d:%d", k.Dev, k.Ino) }

// LibraryDirs are the folders a library given by file name is looked up in.
var LibraryDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/usr/local/lib", "/usr/lib", "/lib"}

// FindLibrary resolves a library given as a path or a file name.
func FindLibrary(lib string) (string, error) {
	if filepath.IsAbs(lib) {
		if _, err := os.Stat(lib); err != nil {
			return "", fmt.Errorf("library %s: %w", lib, err)
		}
		return lib, nil
	}
	for _, dir := range LibraryDirs {
		p := filepath.Join(dir, lib)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("library %q not found in %s", lib, strings.Join(LibraryDirs, ", "))
}

// AttachProbes attaches an entry probe at the function and either uprobes at its RET offsets
// (Go: a uretprobe would crash it) or a uretprobe (native). On error it detaches what it
// attached, so a failed function leaves no probe behind that would report under another
// function's id.
func AttachProbes(path, symbol string, offset, cookie uint64, isGo bool, rets []uint64, entry, ret *ebpf.Program) (links []link.Link, err error) {
	defer func() {
		if err != nil {
			for _, l := range links {
				_ = l.Close()
			}
			links = nil
		}
	}()
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, err
	}
	l, err := ex.Uprobe(symbol, entry, &link.UprobeOptions{Address: offset, Cookie: cookie})
	if err != nil {
		return links, fmt.Errorf("attach entry probe: %w", err)
	}
	links = append(links, l)
	if !isGo {
		l, err := ex.Uretprobe(symbol, ret, &link.UprobeOptions{Address: offset, Cookie: cookie})
		if err != nil {
			return links, fmt.Errorf("attach return probe: %w", err)
		}
		return append(links, l), nil
	}
	for _, off := range rets {
		l, err := ex.Uprobe(symbol, ret, &link.UprobeOptions{Address: offset, Offset: off, Cookie: cookie})
		if err != nil {
			return links, fmt.Errorf("attach return probe at +%#x: %w", off, err)
		}
		links = append(links, l)
	}
	return links, nil
}

// ShortName is the last dot-separated part of a symbol: a tool's default name.
func ShortName(symbol string) string {
	if i := strings.LastIndexByte(symbol, '.'); i >= 0 && i < len(symbol)-1 {
		return symbol[i+1:]
	}
	return symbol
}

// ProbeRole fills a probe's role (function by default) and a tool's default name.
func ProbeRole(p *spans.Probe, role, toolName, name string) {
	p.Role, p.ToolName = spans.Role(role), toolName
	if p.Role == "" {
		p.Role = spans.RoleFunction
	}
	if p.Role == spans.RoleTool && p.ToolName == "" {
		p.ToolName = ShortName(name)
	}
}

// B2U is a kernel struct's boolean.
func B2U(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// CmpOr is s, or def when s is empty.
func CmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
