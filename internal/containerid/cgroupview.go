package containerid

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// CgroupView finds the directory of a cgroup, given its path as /proc/<pid>/cgroup prints it,
// in a cgroup v2 mount. Those paths are relative to the reader's cgroup namespace: in a
// container with a private one (the default with cgroup v2), another pod's cgroup reads
// "/../../../kubepods-besteffort.slice/…", and the container's own /sys/fs/cgroup shows only
// its own subtree. A view over the host's hierarchy mounted into the container (a hostPath of
// /sys/fs/cgroup) places such paths: the names between the host's root and this namespace's
// root are found once, by looking for this process in the mount.
type CgroupView struct {
	m cgroupMount
	// self: where this process's cgroup namespace root is below the mount's root, once found.
	once sync.Once
	self []string
	err  error
}

// NewCgroupView returns a view of the cgroup2 mount at root; "" chooses the mount showing the
// most of the hierarchy in /proc/self/mountinfo (see FindCgroup2Mount). A root that is not a
// mount point (a test's folder) is taken to show this cgroup namespace's root.
func NewCgroupView(root string) (*CgroupView, error) {
	ms, err := readCgroup2Mounts()
	if root == "" {
		if err != nil {
			return nil, err
		}
		return &CgroupView{m: widest(ms)}, nil
	}
	for _, m := range ms {
		if m.point == filepath.Clean(root) {
			return &CgroupView{m: m}, nil
		}
	}
	return &CgroupView{m: cgroupMount{point: filepath.Clean(root)}}, nil
}

// Mount is the view's mount point.
func (v *CgroupView) Mount() string { return v.m.point }

// Dir returns the directory of the cgroup whose path, relative to this process's cgroup
// namespace, is p ("/kubepods/…" or "/../../kubepods/…"). It fails when the mount does not
// show that cgroup; it does not check that the directory exists.
func (v *CgroupView) Dir(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("containerid: cgroup path %q is not absolute", p)
	}
	up, names := splitCgroupPath(p)
	m := v.m
	if up == 0 && m.up == 0 {
		if len(names) < len(m.names) || !slices.Equal(names[:len(m.names)], m.names) {
			return "", fmt.Errorf("containerid: cgroup %s is outside the cgroup2 mount %s (it shows /%s)", p, m.point, strings.Join(m.names, "/"))
		}
		return filepath.Join(append([]string{m.point}, names[len(m.names):]...)...), nil
	}
	if len(m.names) > 0 {
		return "", fmt.Errorf("containerid: cgroup %s: the cgroup2 mount %s shows a subtree (%s) this process's cgroup namespace cannot be placed in", p, m.point, strings.Join(m.names, "/"))
	}
	if up > m.up {
		return "", fmt.Errorf("containerid: cgroup %s is outside the cgroup2 mount %s, which shows %d level(s) above this process's cgroup namespace: mount the host's cgroup2 hierarchy (see the DaemonSet's host-cgroup volume)", p, m.point, m.up)
	}
	self, err := v.nsRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(append(append([]string{m.point}, self[:m.up-up]...), names...)...), nil
}

// nsRoot returns the names from the mount's root down to this process's cgroup namespace root
// (m.up of them): the folder m.up levels down whose cgroup.procs lists this process, less the
// part of its path below the namespace root that /proc/self/cgroup gives.
func (v *CgroupView) nsRoot() ([]string, error) {
	v.once.Do(func() {
		b, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			v.err = fmt.Errorf("containerid: %w", err)
			return
		}
		own := ""
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "0::"); ok {
				own = rest
			}
		}
		up, sub := splitCgroupPath(own)
		if own == "" || up > 0 {
			v.err = fmt.Errorf("containerid: no cgroup v2 path of this process in /proc/self/cgroup (%q)", own)
			return
		}
		found, err := findProcess(v.m.point, v.m.up+len(sub), strconv.Itoa(os.Getpid()))
		if err != nil {
			v.err = err
			return
		}
		if found == nil || !slices.Equal(found[v.m.up:], sub) {
			v.err = fmt.Errorf("containerid: this process's cgroup is not in the cgroup2 mount %s: it cannot place cgroup paths outside its cgroup namespace", v.m.point)
			return
		}
		v.self = found[:v.m.up]
	})
	return v.self, v.err
}

// findProcess returns the path (as names below dir) of the cgroup depth levels below dir
// whose cgroup.procs lists pid, or nil.
func findProcess(dir string, depth int, pid string) ([]string, error) {
	if depth == 0 {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			return nil, nil // gone meanwhile, or not a cgroup
		}
		if slices.Contains(strings.Fields(string(b)), pid) {
			return []string{}, nil
		}
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("containerid: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		below, err := findProcess(filepath.Join(dir, e.Name()), depth-1, pid)
		if err != nil {
			return nil, err
		}
		if below != nil {
			return append([]string{e.Name()}, below...), nil
		}
	}
	return nil, nil
}
