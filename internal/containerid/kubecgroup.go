package containerid

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MakeKubeletCgroup is for tests and demos: it creates a cgroup with the path
// a kubelet (systemd driver, containerd) would create for container
// containerID of pod podUID in QoS class qos, below the cgroup v2 directory
// root:
//
//	<root>/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_with_underscores>.slice/cri-containerd-<containerID>.scope
//	<root>/kubepods.slice/kubepods-pod<uid_with_underscores>.slice/cri-containerd-<containerID>.scope   (qos "guaranteed")
//
// root should be the cgroup2 mount point (see FindCgroup2Mount); "" means
// exactly that. podUID must be a UUID with dashes, containerID 64 lowercase
// hex, qos one of "guaranteed", "burstable", "besteffort". Requires root
// privileges (or a delegated cgroup2 subtree).
//
// The returned path is the leaf (scope) directory; move a process into the
// fake container with AddProcess(path, pid). The leaf has no child cgroups
// and no controllers enabled, so cgroup v2's "no internal processes" rule
// does not prevent processes from joining it.
//
// cleanup removes, leaf first, exactly the directories this call created
// (pre-existing ones such as a real node's kubepods.slice are left alone).
// Processes still in the leaf are first moved to root so the directories can
// be removed; callers should preferably kill and reap them before calling
// cleanup. cleanup is safe to call more than once.
func MakeKubeletCgroup(root, podUID, containerID, qos string) (path string, cleanup func() error, err error) {
	if root == "" {
		if root, err = FindCgroup2Mount(); err != nil {
			return "", nil, err
		}
	}
	uid, ok := normalizeUID(podUID)
	if !ok || len(podUID) != 36 || strings.Contains(podUID, "_") {
		return "", nil, fmt.Errorf("containerid: pod UID %q is not a lowercase UUID", podUID)
	}
	if !isContainerID(containerID) {
		return "", nil, fmt.Errorf("containerid: container id %q is not 64 lowercase hex digits", containerID)
	}
	escUID := strings.ReplaceAll(uid, "-", "_")
	var segs []string
	switch qos {
	case QoSGuaranteed:
		segs = []string{"kubepods.slice", "kubepods-pod" + escUID + ".slice"}
	case QoSBurstable, QoSBestEffort:
		segs = []string{"kubepods.slice", "kubepods-" + qos + ".slice", "kubepods-" + qos + "-pod" + escUID + ".slice"}
	default:
		return "", nil, fmt.Errorf("containerid: QoS class %q is not one of %q, %q, %q", qos, QoSGuaranteed, QoSBurstable, QoSBestEffort)
	}
	segs = append(segs, "cri-containerd-"+containerID+".scope")

	var created []string // in creation order, root-most first
	var leaf string
	cleanup = func() error {
		var errs []error
		for i := len(created) - 1; i >= 0; i-- {
			dir := created[i]
			if dir == leaf {
				if err := evacuate(dir, root); err != nil {
					errs = append(errs, err)
				}
			} else if hasSubdirs(dir) {
				// Another MakeKubeletCgroup caller (e.g. a test in a
				// parallel package) shares this ancestor; it removes it.
				continue
			}
			if err := rmdirRetry(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("containerid: removing cgroup %s: %w", dir, err))
			}
		}
		created = nil
		return errors.Join(errs...)
	}
	leaf = filepath.Join(append([]string{root}, segs...)...)
	dir := root
	for i, retries := 0, 0; i < len(segs); i++ {
		dir = filepath.Join(dir, segs[i])
		err := os.Mkdir(dir, 0o755)
		switch {
		case err == nil:
			created = append(created, dir)
			continue
		case errors.Is(err, os.ErrExist):
			continue
		case errors.Is(err, os.ErrNotExist) && i > 0 && retries < 3:
			// A concurrent cleanup removed a shared ancestor we found
			// existing; start over.
			retries++
			i, dir = -1, root
			continue
		}
		cerr := cleanup()
		return "", nil, errors.Join(fmt.Errorf("containerid: creating cgroup %s: %w", dir, err), cerr)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		cerr := cleanup()
		return "", nil, errors.Join(fmt.Errorf("containerid: %s is not a cgroup directory (is %s a cgroup2 mount?): %w", dir, root, err), cerr)
	}
	return dir, cleanup, nil
}

// AddProcess is for tests and demos: it moves process pid (with all its
// threads) into the cgroup v2 directory cgroupDir by writing the pid to its
// cgroup.procs file.
func AddProcess(cgroupDir string, pid int) error {
	name := filepath.Join(cgroupDir, "cgroup.procs")
	if err := os.WriteFile(name, []byte(strconv.Itoa(pid)), 0); err != nil {
		// EBUSY: the cgroup has controllers enabled in cgroup.subtree_control
		// (v2 "no internal processes" rule); use a leaf cgroup.
		return fmt.Errorf("containerid: moving pid %d to %s: %w", pid, cgroupDir, err)
	}
	return nil
}

func hasSubdirs(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.IsDir() {
			return true
		}
	}
	return false
}

// evacuate moves every process still listed in dir's cgroup.procs to dest.
func evacuate(dir, dest string) error {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("containerid: %w", err)
	}
	var errs []error
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if err := AddProcess(dest, pid); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rmdirRetry removes a cgroup directory, retrying briefly on EBUSY: a task
// that has just exited can keep the cgroup populated for a moment.
func rmdirRetry(dir string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := syscall.Rmdir(dir)
		if err == nil {
			return nil
		}
		if err == syscall.ENOENT {
			return os.ErrNotExist
		}
		if err != syscall.EBUSY || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FindCgroup2Mount returns the mount point of the cgroup v2 (unified)
// hierarchy, read from /proc/self/mountinfo: "/sys/fs/cgroup" on unified
// hosts, typically "/sys/fs/cgroup/unified" on hybrid ones. When several
// cgroup2 mounts are visible, the one showing the most of the hierarchy is
// chosen (see CgroupView): in a container with a private cgroup namespace,
// the host's hierarchy mounted from the host over the container's own.
func FindCgroup2Mount() (string, error) {
	m, err := readCgroup2Mounts()
	if err != nil {
		return "", err
	}
	return widest(m).point, nil
}

func findCgroup2Mount(r io.Reader) (string, error) {
	m, err := parseCgroup2Mounts(r)
	if err != nil {
		return "", err
	}
	return widest(m).point, nil
}

// cgroupMount is a cgroup2 mount as /proc/self/mountinfo shows it.
type cgroupMount struct {
	point string
	// up and names: the cgroup the mount shows, relative to this process's cgroup namespace
	// root (mountinfo's root field): up levels above it ("/../.."), then down names. A
	// container with a private cgroup namespace sees the host's hierarchy, bind-mounted into
	// it, as "/../../../.." (up to the host's root) and its own as "/".
	up    int
	names []string
}

func readCgroup2Mounts() ([]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("containerid: %w", err)
	}
	defer f.Close()
	return parseCgroup2Mounts(f)
}

// parseCgroup2Mounts returns the visible cgroup2 mounts (a later mount on the same mount
// point hides an earlier one), or an error if there is none.
func parseCgroup2Mounts(r io.Reader) ([]cgroupMount, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var out []cgroupMount
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		pre, post, found := strings.Cut(sc.Text(), " - ")
		if !found {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 1 || qf[0] != "cgroup2" {
			continue
		}
		point := unescapeMountinfo(pf[4])
		up, names := splitCgroupPath(unescapeMountinfo(pf[3]))
		out = slices.DeleteFunc(out, func(m cgroupMount) bool { return m.point == point })
		out = append(out, cgroupMount{point: point, up: up, names: names})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("containerid: reading mountinfo: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("containerid: no cgroup2 mount in mountinfo")
	}
	return out, nil
}

// widest picks the mount that shows the most of the hierarchy: the highest cgroup above the
// namespace root, a whole one before a subtree; the first of equals.
func widest(ms []cgroupMount) cgroupMount {
	best := ms[0]
	for _, m := range ms[1:] {
		if m.up > best.up || (m.up == best.up && len(m.names) < len(best.names)) {
			best = m
		}
	}
	return best
}

// splitCgroupPath splits a cgroup path relative to a cgroup namespace root ("/../../a/b") into
// its leading ".." count and the names after them.
func splitCgroupPath(p string) (up int, names []string) {
	for _, s := range strings.Split(p, "/") {
		switch {
		case s == "" || s == ".":
		case s == ".." && len(names) == 0:
			up++
		case s == "..":
			names = names[:len(names)-1]
		default:
			names = append(names, s)
		}
	}
	return up, names
}

// unescapeMountinfo undoes the octal escaping (\040 for space, etc.) of
// mountinfo path fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				sb.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}
