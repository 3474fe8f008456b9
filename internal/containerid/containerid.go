// Package containerid derives the container identity of a process (container
// id, container runtime, Kubernetes pod UID and QoS class) from its cgroup
// membership as listed in /proc/<pid>/cgroup.
//
// Both cgroup v1 lines ("N:ctrl,ctrl:/path"), the cgroup v2 line ("0::/path")
// and hybrid files carrying both are understood. Paths written by the kubelet
// with either the systemd or the cgroupfs cgroup driver are recognised, as are
// the paths used by docker, podman, CRI-O, containerd (including nerdctl),
// kind and k3s.
//
// A container names its own cgroups, so the files are read as hostile input:
// at most 256 lines of /proc/<pid>/cgroup (more is an error wrapping
// ErrTooLong) and 64 KiB a line, and mountinfo lines up to 1 MiB.
package containerid

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Runtime names reported in Info.Runtime.
const (
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimeDocker     = "docker"
	RuntimePodman     = "podman"
)

// QoS classes reported in Info.QoS.
const (
	QoSGuaranteed = "guaranteed"
	QoSBurstable  = "burstable"
	QoSBestEffort = "besteffort"
)

// ErrNoValidLine is returned (wrapped) by Parse when not a single line of the
// input is a well-formed /proc/<pid>/cgroup line.
var ErrNoValidLine = errors.New("containerid: no valid cgroup line")

// Info is the container identity of a process.
type Info struct {
	// ID is the 64 lowercase hex container id, "" when the process is not in
	// a container (or the container id cannot be told from the cgroup path).
	ID string
	// Runtime is "containerd", "cri-o", "docker", "podman", or "" when
	// unknown. Paths written by the kubelet's cgroupfs driver carry a bare
	// id and no runtime hint, so Runtime is "" for them.
	Runtime string
	// PodUID is the pod UID with dashes (e.g. "0a1b2c3d-4e5f-6789-abcd-
	// ef0123456789") when the cgroup path is a kubepods path, else "".
	// Static pods have 32-hex UIDs without dashes; those are kept as is.
	PodUID string
	// QoS is "guaranteed", "burstable" or "besteffort" from kubepods paths,
	// "" otherwise. It is only set together with PodUID.
	QoS string
	// CgroupPath is the cgroup v2 (unified) path if the input had a v2 line,
	// else the first v1 path that yielded the id (or, when no path yielded
	// one, the first v1 path that yielded a pod, else the first v1 path).
	CgroupPath string
}

// maxLineLen bounds a single line so a bogus reader cannot make Parse buffer
// without limit. Real cgroup lines are far shorter (PATH_MAX is 4096).
const maxLineLen = 64 << 10

// maxLines bounds the lines Parse reads: a cgroup file has one per hierarchy
// (at most a dozen v1 controllers and named hierarchies, and the v2 line).
const maxLines = 256

// ErrTooLong is returned (wrapped) by Parse for input of more than maxLines
// lines: no kernel writes that, so the identity is not guessed from part of it.
var ErrTooLong = errors.New("containerid: cgroup file too long")

// Parse parses the content of a /proc/<pid>/cgroup file.
//
// Lines that are not well formed (wrong number of fields, non-numeric
// hierarchy id, a v1 line without controllers, a path not starting with "/")
// are skipped. An error is returned only when reading fails, when no line at
// all is well formed (the error wraps ErrNoValidLine and quotes the first line
// seen), or when the input has more than 256 lines (it wraps ErrTooLong). A
// line is read up to 64 KiB; the rest of a longer one is discarded.
//
// When a v2 line is present its path is preferred. If it carries no container
// id (e.g. docker with the cgroupfs driver on a hybrid host, where only the v1
// hierarchies are per-container), the v1 paths are consulted in order and the
// first one yielding an id supplies ID, Runtime, PodUID and QoS, while
// CgroupPath stays the v2 path (the one eBPF cgroup ids refer to).
func Parse(r io.Reader) (Info, error) {
	br := bufio.NewReader(r)
	var (
		firstSeen string
		seenAny   bool
		haveV2    bool
		v2Path    string
		v1Paths   []string
	)
	for lines := 0; ; lines++ {
		if lines == maxLines {
			return Info{}, fmt.Errorf("%w: more than %d lines", ErrTooLong, maxLines)
		}
		line, err := readLine(br)
		if line != "" {
			if !seenAny {
				firstSeen, seenAny = line, true
			}
			if hier, path, ok := parseLine(line); ok {
				if hier == 0 {
					if !haveV2 {
						haveV2, v2Path = true, path
					}
				} else {
					v1Paths = append(v1Paths, path)
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return Info{}, fmt.Errorf("containerid: reading cgroup file: %w", err)
		}
	}
	if !haveV2 && len(v1Paths) == 0 {
		if !seenAny {
			return Info{}, fmt.Errorf("%w: input is empty", ErrNoValidLine)
		}
		return Info{}, fmt.Errorf("%w: first line seen: %q", ErrNoValidLine, truncate(firstSeen, 160))
	}
	return combine(haveV2, v2Path, v1Paths), nil
}

// combine picks the result from the parsed v2 path and v1 paths, see Parse.
func combine(haveV2 bool, v2Path string, v1Paths []string) Info {
	var best Info
	if haveV2 {
		best = FromPath(v2Path)
		if best.ID != "" {
			return best
		}
	}
	var firstPod *Info
	for _, p := range v1Paths {
		in := FromPath(p)
		if in.ID != "" {
			if haveV2 {
				in.CgroupPath = v2Path
			}
			return in
		}
		if in.PodUID != "" && firstPod == nil {
			firstPod = &in
		}
	}
	if best.PodUID == "" && firstPod != nil {
		in := *firstPod
		if haveV2 {
			in.CgroupPath = v2Path
		}
		return in
	}
	if haveV2 {
		return best
	}
	return Info{CgroupPath: v1Paths[0]}
}

// readLine returns the next line without its trailing "\n" / "\r\n". Lines
// longer than maxLineLen are returned truncated (they will not parse as a
// path that matters anyway) and the rest is discarded.
func readLine(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		chunk, isPrefix, err := br.ReadLine()
		if sb.Len() < maxLineLen {
			room := maxLineLen - sb.Len()
			if len(chunk) > room {
				chunk = chunk[:room]
			}
			sb.Write(chunk)
		}
		if err != nil {
			return sb.String(), err
		}
		if !isPrefix {
			return strings.TrimSuffix(sb.String(), "\r"), nil
		}
	}
}

// parseLine validates one /proc/<pid>/cgroup line and returns its hierarchy id
// (0 for the v2 line) and path.
func parseLine(line string) (hier uint64, path string, ok bool) {
	parts := strings.SplitN(line, ":", 3)
	if len(parts) != 3 {
		return 0, "", false
	}
	hier, err := strconv.ParseUint(parts[0], 10, 32)
	if err != nil {
		return 0, "", false
	}
	ctrls, path := parts[1], parts[2]
	if !strings.HasPrefix(path, "/") {
		return 0, "", false
	}
	switch {
	case hier == 0 && ctrls == "": // cgroup v2
	case hier != 0 && ctrls != "" && !strings.ContainsAny(ctrls, " \t/"): // cgroup v1
	default:
		return 0, "", false
	}
	return hier, path, true
}

// FromPID reads and parses <procRoot>/<pid>/cgroup.
func FromPID(procRoot string, pid uint32) (Info, error) {
	name := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "cgroup")
	f, err := os.Open(name)
	if err != nil {
		return Info{}, fmt.Errorf("containerid: %w", err)
	}
	defer f.Close()
	info, err := Parse(f)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", name, err)
	}
	return info, nil
}

// FromPath derives the container identity from one cgroup path, e.g.
// "/kubepods/besteffort/pod<uid>/<64hex>". Empty, "." and ".." segments (the
// latter appear in cgroup-namespaced v2 paths such as "/../../kubepods-...")
// are ignored. The deepest container-id segment and the deepest pod segment
// win; a container id found above the pod segment (e.g. the kind node
// container in "/docker/<id>/kubepods/burstable/pod<uid>") belongs to an
// enclosing container, not to the pod, and is dropped.
func FromPath(path string) Info {
	info := Info{CgroupPath: path}
	var segs []string
	for _, s := range strings.Split(path, "/") {
		if s == "" || s == "." || s == ".." {
			continue
		}
		segs = append(segs, s)
	}
	idIdx, podIdx := -1, -1
	for i, seg := range segs {
		parent, grandparent := "", ""
		if i > 0 {
			parent = segs[i-1]
		}
		if i > 1 {
			grandparent = segs[i-2]
		}
		// containerd with the systemd driver may use
		// "kubepods-<qos>-pod<uid>.slice:cri-containerd:<id>".
		if parts := strings.Split(seg, ":"); len(parts) == 3 {
			if uid, qos, ok := podFromSlice(parts[0]); ok {
				info.PodUID, info.QoS, podIdx = uid, qos, i
			}
			if isContainerID(parts[2]) {
				info.ID, info.Runtime, idIdx = parts[2], runtimeFromName(parts[1]), i
			}
			continue
		}
		if uid, qos, ok := podFromSegment(seg, parent, grandparent); ok {
			info.PodUID, info.QoS, podIdx = uid, qos, i
			continue
		}
		if id, rt, ok := containerFromSegment(seg, parent); ok {
			info.ID, info.Runtime, idIdx = id, rt, i
		}
	}
	if idIdx >= 0 && podIdx > idIdx {
		info.ID, info.Runtime = "", ""
	}
	return info
}

// runtimePrefixes maps the prefixes of "<prefix><64hex>[.scope]" segments to
// runtimes. "crio-conmon-<id>.scope" and "libpod-conmon-<id>.scope" hold the
// runtime monitor, not the container, and do not match because "conmon-<id>"
// is not an id.
var runtimePrefixes = []struct{ prefix, runtime string }{
	{"cri-containerd-", RuntimeContainerd},
	{"nerdctl-", RuntimeContainerd},
	{"crio-", RuntimeCRIO},
	{"docker-", RuntimeDocker},
	{"libpod-", RuntimePodman},
}

func runtimeFromName(name string) string {
	switch name {
	case "cri-containerd", "containerd":
		return RuntimeContainerd
	case "crio", "cri-o":
		return RuntimeCRIO
	case "docker":
		return RuntimeDocker
	case "libpod", "podman":
		return RuntimePodman
	}
	return ""
}

// containerFromSegment recognises "<64hex>" and "<runtime-prefix><64hex>"
// segments, each with an optional ".scope" suffix.
func containerFromSegment(seg, parent string) (id, runtime string, ok bool) {
	s := strings.TrimSuffix(seg, ".scope")
	if isContainerID(s) {
		if parent == "docker" {
			return s, RuntimeDocker, true
		}
		return s, "", true
	}
	for _, p := range runtimePrefixes {
		if rest, found := strings.CutPrefix(s, p.prefix); found && isContainerID(rest) {
			return rest, p.runtime, true
		}
	}
	return "", "", false
}

// podFromSegment recognises the pod cgroup of both kubelet cgroup drivers:
// systemd "[...-]kubepods[-<qos>]-pod<uid_with_underscores>.slice" and
// cgroupfs "kubepods/[<qos>/]pod<uid>".
func podFromSegment(seg, parent, grandparent string) (uid, qos string, ok bool) {
	if strings.HasSuffix(seg, ".slice") {
		return podFromSlice(seg)
	}
	rest, found := strings.CutPrefix(seg, "pod")
	if !found {
		return "", "", false
	}
	uid, ok = normalizeUID(rest)
	if !ok {
		return "", "", false
	}
	switch {
	case parent == "kubepods":
		return uid, QoSGuaranteed, true
	case (parent == QoSBurstable || parent == QoSBestEffort) && grandparent == "kubepods":
		return uid, parent, true
	}
	return "", "", false
}

func podFromSlice(seg string) (uid, qos string, ok bool) {
	s, found := strings.CutSuffix(seg, ".slice")
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(s, "-pod")
	if i < 0 {
		return "", "", false
	}
	prefix := s[:i]
	uid, ok = normalizeUID(s[i+len("-pod"):])
	if !ok {
		return "", "", false
	}
	switch {
	case prefix == "kubepods-burstable" || strings.HasSuffix(prefix, "-kubepods-burstable"):
		return uid, QoSBurstable, true
	case prefix == "kubepods-besteffort" || strings.HasSuffix(prefix, "-kubepods-besteffort"):
		return uid, QoSBestEffort, true
	case prefix == "kubepods" || strings.HasSuffix(prefix, "-kubepods"):
		return uid, QoSGuaranteed, true
	}
	return "", "", false
}

// normalizeUID accepts a pod UID as found in a cgroup path: a UUID with
// dashes or (systemd driver) underscores, returned with dashes, or the 32-hex
// UID the kubelet gives static pods, returned unchanged.
func normalizeUID(s string) (string, bool) {
	switch len(s) {
	case 32:
		if isLowerHex(s) {
			return s, true
		}
	case 36:
		b := []byte(s)
		for i, c := range b {
			switch i {
			case 8, 13, 18, 23:
				if c != '-' && c != '_' {
					return "", false
				}
				b[i] = '-'
			default:
				if !isLowerHexByte(c) {
					return "", false
				}
			}
		}
		return string(b), true
	}
	return "", false
}

// isContainerID reports whether s is exactly 64 lowercase hex digits.
func isContainerID(s string) bool {
	return len(s) == 64 && isLowerHex(s)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLowerHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isLowerHexByte(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f')
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
