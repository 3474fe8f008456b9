package containerid

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/agenttrail/agenttrail/internal/testutil"
)

// helperEnv makes the test binary the helper of TestCgroupViewInNamespace: the collector of a
// DaemonSet pod, in a private cgroup namespace, with a cgroup2 mount of its own and the host's
// hierarchy bind-mounted beside it (the host's original mount hidden, as in a container). Its
// value: the target pid, the host view's folder, the own view's folder.
const helperEnv = "AGENTTRAIL_CGROUPVIEW_HELPER"

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		os.Exit(cgroupViewHelper(v))
	}
	os.Exit(m.Run())
}

type helperResult struct {
	Raw, Dir, Mount, PodUID, ID string
	Err                         string
}

func cgroupViewHelper(arg string) int {
	args := strings.Split(arg, ",")
	pid, hostView, ownView := args[0], args[1], args[2]
	res := helperResult{}
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(res) }()
	root, err := FindCgroup2Mount()
	if err == nil {
		err = syscall.Mount(root, hostView, "", syscall.MS_BIND, "")
	}
	if err == nil {
		err = syscall.Unmount(root, syscall.MNT_DETACH)
	}
	if err == nil {
		err = syscall.Mount("none", ownView, "cgroup2", 0, "")
	}
	if err != nil {
		res.Err = "setup: " + err.Error()
		return 0
	}
	n, _ := strconv.ParseUint(pid, 10, 32)
	info, err := FromPID("/proc", uint32(n))
	if err != nil {
		res.Err = err.Error()
		return 0
	}
	res.Raw, res.PodUID, res.ID = info.CgroupPath, info.PodUID, info.ID
	v, err := NewCgroupView("")
	if err != nil {
		res.Err = err.Error()
		return 0
	}
	res.Mount = v.Mount()
	if res.Dir, err = v.Dir(info.CgroupPath); err != nil {
		res.Err = err.Error()
	}
	return 0
}

// TestCgroupViewInNamespace: a collector in a private cgroup namespace (a DaemonSet pod with
// cgroup v2) reads another pod's cgroup as "/../../../…" and sees only its own subtree at
// /sys/fs/cgroup. With the host's hierarchy mounted beside it, the view finds the other pod's
// directory (what enforcement attaches to).
func TestCgroupViewInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("kernel test: making cgroups and namespaces needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("kernel test: the unshare command (util-linux) is not installed")
	}
	root, err := FindCgroup2Mount()
	if err != nil {
		t.Skipf("kernel test: no cgroup v2: %v", err)
	}
	agentUID, targetUID := testutil.RandomUUID(t), testutil.RandomUUID(t)
	agentCg, cleanA, err := MakeKubeletCgroup(root, agentUID, testutil.RandomHex(t, 32), QoSBurstable)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanA()
	targetID := testutil.RandomHex(t, 32)
	targetCg, cleanB, err := MakeKubeletCgroup(root, targetUID, targetID, QoSBestEffort)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanB()
	target := exec.Command("sleep", "60")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = target.Process.Kill(); _ = target.Wait() }()
	if err := AddProcess(targetCg, target.Process.Pid); err != nil {
		t.Fatal(err)
	}

	cg, err := os.Open(agentCg)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	hostView, ownView := t.TempDir(), t.TempDir()
	// unshare starts in the agent's cgroup, so the new cgroup namespace's root is that cgroup;
	// its mount namespace is private (nothing mounted here is seen outside).
	cmd := exec.Command(unshare, "--cgroup", "--mount", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+fmt.Sprint(target.Process.Pid)+","+hostView+","+ownView)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var res helperResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	t.Logf("in the namespace: %+v", res)
	if !strings.HasPrefix(res.Raw, "/../") {
		t.Errorf("the target's cgroup read from the namespace is %q, want a path above the namespace root", res.Raw)
	}
	if res.PodUID != targetUID || res.ID != targetID {
		t.Errorf("pod %q container %q, want %q %q", res.PodUID, res.ID, targetUID, targetID)
	}
	if res.Err != "" || res.Mount != hostView {
		t.Fatalf("view %q: %s", res.Mount, res.Err)
	}
	rel, err := filepath.Rel(root, targetCg)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(hostView, rel); res.Dir != want {
		t.Errorf("target's cgroup directory %q, want %q", res.Dir, want)
	}
}
