package containerid

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/agenttrail/agenttrail/internal/testutil"
)

// TestFromPIDSelf parses this test process's own /proc/self/cgroup.
func TestFromPIDSelf(t *testing.T) {
	info, err := FromPID("/proc", uint32(os.Getpid()))
	if err != nil {
		t.Fatalf("FromPID(self) error = %v", err)
	}
	t.Logf("own cgroup: %+v", info)
	if info.CgroupPath == "" {
		t.Errorf("FromPID(self).CgroupPath is empty")
	}
	if info.ID != "" && inContainer() {
		t.Skipf("test runs inside a container (/.dockerenv or /run/.containerenv present) and its cgroup path names it: %+v", info)
	}
	if info.ID != "" || info.Runtime != "" || info.PodUID != "" {
		t.Errorf("FromPID(self) = %+v; want no container identity (this test does not run in a container)", info)
	}
}

func inContainer() bool {
	for _, f := range []string{"/.dockerenv", "/run/.containerenv"} {
		if _, err := os.Stat(f); err == nil {
			return true
		}
	}
	return false
}

func TestFromPIDMissing(t *testing.T) {
	_, err := FromPID(t.TempDir(), 12345)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("FromPID(empty procRoot) error = %v; want ErrNotExist", err)
	}
}

func TestFindCgroup2MountReal(t *testing.T) {
	mnt, err := FindCgroup2Mount()
	if err != nil {
		t.Skipf("no cgroup2 mount on this machine: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "cgroup.procs")); err != nil {
		t.Fatalf("FindCgroup2Mount() = %q, which has no cgroup.procs: %v", mnt, err)
	}
}

// TestRealKubeletCgroup creates kubelet-style (systemd driver, containerd)
// cgroups on the real cgroup v2 hierarchy, moves a child process into the
// container scope and checks FromPID sees it as that pod's container.
func TestRealKubeletCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups and move processes between them")
	}
	root, err := FindCgroup2Mount()
	if err != nil {
		t.Skipf("no cgroup2 mount (cgroup v1 only host): %v", err)
	}
	for _, qos := range []string{QoSBurstable, QoSGuaranteed} {
		t.Run(qos, func(t *testing.T) {
			podUID, cid := testutil.RandomUUID(t), testutil.RandomHex(t, 32)
			leaf, cleanup, err := MakeKubeletCgroup(root, podUID, cid, qos)
			if err != nil {
				t.Fatalf("MakeKubeletCgroup: %v", err)
			}
			// Registered first so it runs last, after the child is reaped.
			t.Cleanup(func() {
				if err := cleanup(); err != nil {
					t.Errorf("cleanup: %v", err)
				}
				if _, err := os.Stat(leaf); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("leaf %s still exists after cleanup (stat err %v)", leaf, err)
				}
			})
			wantSuffix := "/cri-containerd-" + cid + ".scope"
			if !strings.HasSuffix(leaf, wantSuffix) {
				t.Fatalf("leaf = %q; want suffix %q", leaf, wantSuffix)
			}

			cmd := exec.Command("sleep", "30")
			if err := cmd.Start(); err != nil {
				t.Fatalf("starting sleep: %v", err)
			}
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			if err := AddProcess(leaf, cmd.Process.Pid); err != nil {
				if errors.Is(err, syscall.EBUSY) {
					t.Fatalf("%v: the scope must be a leaf without controllers in cgroup.subtree_control (v2 \"no internal processes\" rule)", err)
				}
				t.Fatalf("AddProcess: %v", err)
			}

			info, err := FromPID("/proc", uint32(cmd.Process.Pid))
			if err != nil {
				t.Fatalf("FromPID(child) error = %v", err)
			}
			want := Info{ID: cid, Runtime: "containerd", PodUID: podUID, QoS: qos}
			got := info
			got.CgroupPath = ""
			if got != want {
				t.Errorf("FromPID(child) = %+v; want %+v", info, want)
			}
			rel, err := filepath.Rel(root, leaf)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(info.CgroupPath, "/"+rel) {
				t.Errorf("CgroupPath = %q; want suffix %q", info.CgroupPath, "/"+rel)
			}
		})
	}
}

// TestMakeKubeletCgroupEvacuates checks cleanup succeeds even when a live
// process is still in the leaf, and removes only directories it created.
func TestMakeKubeletCgroupEvacuates(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups and move processes between them")
	}
	root, err := FindCgroup2Mount()
	if err != nil {
		t.Skipf("no cgroup2 mount (cgroup v1 only host): %v", err)
	}
	podUID, cid := testutil.RandomUUID(t), testutil.RandomHex(t, 32)
	leaf, cleanup, err := MakeKubeletCgroup(root, podUID, cid, QoSBestEffort)
	if err != nil {
		t.Fatalf("MakeKubeletCgroup: %v", err)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		cleanup()
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := AddProcess(leaf, cmd.Process.Pid); err != nil {
		cleanup()
		t.Fatal(err)
	}
	if err := cleanup(); err != nil {
		t.Fatalf("cleanup with a live process in the leaf: %v", err)
	}
	if err := cleanup(); err != nil {
		t.Fatalf("second cleanup: %v", err)
	}
	for dir := leaf; dir != root && len(dir) > len(root); dir = filepath.Dir(dir) {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			// kubepods.slice / kubepods-besteffort.slice may pre-exist on a
			// real node; only the pod slice and the scope must be gone.
			if strings.Contains(filepath.Base(dir), "-pod") || strings.HasSuffix(dir, ".scope") {
				t.Errorf("%s still exists after cleanup", dir)
			}
		}
	}
	info, err := FromPID("/proc", uint32(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != "" {
		t.Errorf("after evacuation the child still looks containerized: %+v", info)
	}
}

func TestMakeKubeletCgroupValidation(t *testing.T) {
	dir := t.TempDir()
	good := "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
	tests := []struct{ name, uid, cid, qos, wantErr string }{
		{"underscored uid", strings.ReplaceAll(good, "-", "_"), id1, QoSBurstable, "not a lowercase UUID"},
		{"short id", good, id1[:63], QoSBurstable, "not 64 lowercase hex"},
		{"bad qos", good, id1, "gold", "QoS class"},
		{"not a cgroup dir", good, id1, QoSBurstable, "not a cgroup directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := MakeKubeletCgroup(dir, tc.uid, tc.cid, tc.qos)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("MakeKubeletCgroup() error = %v; want containing %q", err, tc.wantErr)
			}
		})
	}
	// The failed "not a cgroup dir" attempt must have removed what it made.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("leftover entries in %s: %v", dir, entries)
	}
}
