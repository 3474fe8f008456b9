package containerid

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// Ids used in testdata/cgroup (sha256 of "one", "two", ...).
const (
	id1     = "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"
	id2     = "3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3"
	id3     = "8b5b9db0c13db24256c829aa364aa90c6d2eba318b9232a4ab9313b954d3555f"
	idOuter = "7232fa5b7fe3f027d56d3feba41858ad7e5841fa3432d4b5b9f98c0186b6abbb"
	idInner = "33bf6fbd7cd8379785a21e233d8e09f824e7bab459168a96312c1c882c1d7e1f"

	uid1      = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
	uid1Esc   = "0a1b2c3d_4e5f_6789_abcd_ef0123456789"
	uid2      = "11223344-5566-4778-899a-abbccddeeff0"
	uid2Esc   = "11223344_5566_4778_899a_abbccddeeff0"
	staticUID = "2053dbbf6ec7135c4e994d3464c478db"
)

func TestParseTestdata(t *testing.T) {
	pSystemdBurstable := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uid1Esc + ".slice/cri-containerd-" + id1 + ".scope"
	pKindSystemd := "/docker/" + idOuter + "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod" + uid2Esc + ".slice/cri-containerd-" + idInner + ".scope"
	tests := []struct {
		name    string
		file    string
		want    Info
		wantErr string // substring; "" means no error
	}{
		{
			name: "systemd driver containerd burstable, cgroup v2",
			file: "systemd_containerd_burstable_v2.txt",
			want: Info{ID: id1, Runtime: "containerd", PodUID: uid1, QoS: "burstable", CgroupPath: pSystemdBurstable},
		},
		{
			name: "systemd driver containerd burstable, hybrid v1+v2",
			file: "systemd_containerd_burstable_hybrid.txt",
			want: Info{ID: id1, Runtime: "containerd", PodUID: uid1, QoS: "burstable", CgroupPath: pSystemdBurstable},
		},
		{
			name: "systemd driver cri-o besteffort",
			file: "systemd_crio_besteffort_v2.txt",
			want: Info{ID: id2, Runtime: "cri-o", PodUID: uid2, QoS: "besteffort",
				CgroupPath: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uid2Esc + ".slice/crio-" + id2 + ".scope"},
		},
		{
			name: "cri-o conmon scope is not the container",
			file: "systemd_crio_conmon_v2.txt",
			want: Info{PodUID: uid2, QoS: "besteffort",
				CgroupPath: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uid2Esc + ".slice/crio-conmon-" + id2 + ".scope"},
		},
		{
			name: "systemd driver docker guaranteed, v1 only",
			file: "systemd_docker_guaranteed_v1.txt",
			want: Info{ID: id3, Runtime: "docker", PodUID: uid1, QoS: "guaranteed",
				CgroupPath: "/kubepods.slice/kubepods-pod" + uid1Esc + ".slice/docker-" + id3 + ".scope"},
		},
		{
			name: "podman rootless libpod scope with container subdir",
			file: "podman_rootless_v2.txt",
			want: Info{ID: id2, Runtime: "podman",
				CgroupPath: "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id2 + ".scope/container"},
		},
		{
			name: "podman cgroupfs libpod_parent",
			file: "podman_cgroupfs_v1.txt",
			want: Info{ID: id2, Runtime: "podman", CgroupPath: "/libpod_parent/libpod-" + id2},
		},
		{
			name: "cgroupfs driver besteffort, v1",
			file: "cgroupfs_besteffort_v1.txt",
			want: Info{ID: id1, PodUID: uid1, QoS: "besteffort", CgroupPath: "/kubepods/besteffort/pod" + uid1 + "/" + id1},
		},
		{
			name: "cgroupfs driver guaranteed (no QoS tier), v2",
			file: "cgroupfs_guaranteed_v2.txt",
			want: Info{ID: id3, PodUID: uid2, QoS: "guaranteed", CgroupPath: "/kubepods/pod" + uid2 + "/" + id3},
		},
		{
			name: "kind systemd kubelet.slice",
			file: "kind_systemd_v2.txt",
			want: Info{ID: id1, Runtime: "containerd", PodUID: uid1, QoS: "besteffort",
				CgroupPath: "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uid1Esc + ".slice/cri-containerd-" + id1 + ".scope"},
		},
		{
			name: "kind in docker, cgroupfs pod nested under /docker/<node>",
			file: "kind_in_docker_v1.txt",
			want: Info{ID: idInner, PodUID: uid2, QoS: "burstable",
				CgroupPath: "/docker/" + idOuter + "/kubepods/burstable/pod" + uid2 + "/" + idInner},
		},
		{
			name: "kind in docker, systemd pod nested under /docker/<node>, hybrid",
			file: "kind_in_docker_hybrid_systemd.txt",
			want: Info{ID: idInner, Runtime: "containerd", PodUID: uid2, QoS: "burstable", CgroupPath: pKindSystemd},
		},
		{
			name: "kind node's own process is in the node container",
			file: "kind_node_process_v1.txt",
			want: Info{ID: idOuter, Runtime: "docker", CgroupPath: "/docker/" + idOuter + "/system.slice/containerd.service"},
		},
		{
			name: "container id above the pod belongs to the node, not the pod",
			file: "kind_pod_cgroup_without_container_v1.txt",
			want: Info{PodUID: uid2, QoS: "burstable", CgroupPath: "/docker/" + idOuter + "/kubepods/burstable/pod" + uid2},
		},
		{
			name: "k3s cgroupfs v2",
			file: "k3s_cgroupfs_v2.txt",
			want: Info{ID: id2, PodUID: uid1, QoS: "burstable", CgroupPath: "/kubepods/burstable/pod" + uid1 + "/" + id2},
		},
		{
			name: "k3s cgroupfs hybrid",
			file: "k3s_cgroupfs_hybrid.txt",
			want: Info{ID: id3, PodUID: uid2, QoS: "besteffort", CgroupPath: "/kubepods/besteffort/pod" + uid2 + "/" + id3},
		},
		{
			name: "plain docker v1",
			file: "docker_plain_v1.txt",
			want: Info{ID: id1, Runtime: "docker", CgroupPath: "/docker/" + id1},
		},
		{
			name: "docker cgroupfs on hybrid host: id from v1, CgroupPath is the v2 path",
			file: "docker_cgroupfs_hybrid_v2_root.txt",
			want: Info{ID: id1, Runtime: "docker", CgroupPath: "/"},
		},
		{
			name: "docker systemd driver v2",
			file: "docker_systemd_v2.txt",
			want: Info{ID: id3, Runtime: "docker", CgroupPath: "/system.slice/docker-" + id3 + ".scope"},
		},
		{
			name: "systemd service is no container",
			file: "systemd_service_hybrid.txt",
			want: Info{CgroupPath: "/system.slice/ssh.service"},
		},
		{
			name: "v2 root",
			file: "root_v2.txt",
			want: Info{CgroupPath: "/"},
		},
		{
			name: "cgroup-namespaced v2 path with leading .. (systemd)",
			file: "namespaced_v2.txt",
			want: Info{ID: id2, Runtime: "containerd", PodUID: uid1, QoS: "besteffort",
				CgroupPath: "/../../kubepods-besteffort-pod" + uid1Esc + ".slice/cri-containerd-" + id2 + ".scope"},
		},
		{
			name: "cgroup-namespaced v2 path with leading .. (cgroupfs)",
			file: "namespaced_cgroupfs_v2.txt",
			want: Info{ID: id3, PodUID: uid1, QoS: "burstable", CgroupPath: "/../../../kubepods/burstable/pod" + uid1 + "/" + id3},
		},
		{
			name: "containerd slice:cri-containerd:id form",
			file: "containerd_colon_v2.txt",
			want: Info{ID: id1, Runtime: "containerd", PodUID: uid2, QoS: "burstable",
				CgroupPath: "/system.slice/containerd.service/kubepods-burstable-pod" + uid2Esc + ".slice:cri-containerd:" + id1},
		},
		{
			name: "static pod 32-hex uid kept as is",
			file: "static_pod_uid_v1.txt",
			want: Info{ID: id2, PodUID: staticUID, QoS: "burstable", CgroupPath: "/kubepods/burstable/pod" + staticUID + "/" + id2},
		},
		{
			name: "64-hex as pod uid (cgroupfs) is neither id nor uid",
			file: "hex64_as_pod_uid_v2.txt",
			want: Info{CgroupPath: "/kubepods/burstable/pod" + id3},
		},
		{
			name: "64-hex as pod uid (systemd) is neither id nor uid",
			file: "hex64_as_pod_uid_systemd_v2.txt",
			want: Info{CgroupPath: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + id3 + ".slice"},
		},
		{
			name: "64-hex in unknown places, uppercase, 63 and 65 chars",
			file: "hex64_elsewhere.txt",
			want: Info{CgroupPath: "/" + id1 + ".service"},
		},
		{
			name: "garbage lines skipped, the valid one used",
			file: "garbage_mixed.txt",
			want: Info{ID: id2, PodUID: uid1, QoS: "besteffort", CgroupPath: "/kubepods/besteffort/pod" + uid1 + "/" + id2},
		},
		{
			name: "CRLF line endings",
			file: "crlf_v2.txt",
			want: Info{ID: id3, Runtime: "docker", CgroupPath: "/system.slice/docker-" + id3 + ".scope"},
		},
		{
			name:    "nothing parses: error names the first line",
			file:    "all_garbage.txt",
			wantErr: `first line seen: "hello world"`,
		},
		{
			name:    "empty input",
			file:    "empty.txt",
			wantErr: "input is empty",
		},
		{
			name:    "blank lines only",
			file:    "blank_lines_only.txt",
			wantErr: "input is empty",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", "cgroup", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := Parse(f)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse() = %+v, nil; want error containing %q", got, tc.wantErr)
				}
				if !errors.Is(err, ErrNoValidLine) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse() error = %v; want ErrNoValidLine containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if got != tc.want {
				t.Errorf("Parse() =\n  %+v\nwant\n  %+v", got, tc.want)
			}
		})
	}
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("boom")
	r := iotest.DataErrReader(strings.NewReader("0::/docker/" + id1 + "\n"))
	if _, err := Parse(r); err != nil {
		t.Fatalf("DataErrReader with EOF: unexpected error %v", err)
	}
	r = &errAfter{data: "0::/docker/" + id1 + "\n", err: boom}
	if _, err := Parse(r); !errors.Is(err, boom) {
		t.Fatalf("Parse() error = %v; want wrapping %v", err, boom)
	}
	if _, err := Parse(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Fatalf("Parse(ErrReader) error = %v; want wrapping %v", err, boom)
	}
}

type errAfter struct {
	data string
	err  error
}

func (r *errAfter) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestParseLongLine(t *testing.T) {
	long := "1:cpu:/" + strings.Repeat("a", 200<<10) + "\n0::/docker/" + id2 + "\n"
	got, err := Parse(strings.NewReader(long))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != id2 || got.Runtime != "docker" {
		t.Errorf("Parse() = %+v; want id %s docker", got, id2)
	}
}

func TestFromPath(t *testing.T) {
	tests := []struct {
		name string
		path string
		want Info
	}{
		{"empty", "", Info{}},
		{"nerdctl systemd", "/system.slice/nerdctl-" + id1 + ".scope", Info{ID: id1, Runtime: "containerd"}},
		{"containerd namespace cgroupfs", "/default/" + id1, Info{ID: id1}},
		{"libpod conmon", "/machine.slice/libpod-conmon-" + id1 + ".scope", Info{}},
		{"pod dir outside kubepods", "/foo/burstable/pod" + uid1 + "/" + id2, Info{ID: id2}},
		{"qos dir without pod", "/kubepods/burstable", Info{}},
		{"systemd pod slice without kubepods prefix", "/foo-pod" + uid1Esc + ".slice/" + id1, Info{ID: id1}},
		{"uppercase uid", "/kubepods/pod" + strings.ToUpper(uid1) + "/" + id1, Info{ID: id1}},
		{"deepest id wins", "/docker/" + id1 + "/docker/" + id2, Info{ID: id2, Runtime: "docker"}},
		{"dot segments", "/./kubepods/./pod" + uid2 + "/" + id3, Info{ID: id3, PodUID: uid2, QoS: "guaranteed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.CgroupPath = tc.path
			if got := FromPath(tc.path); got != tc.want {
				t.Errorf("FromPath(%q) =\n  %+v\nwant\n  %+v", tc.path, got, tc.want)
			}
		})
	}
}

func TestFindCgroup2MountTestdata(t *testing.T) {
	tests := []struct {
		name, file, want, wantErr string
	}{
		{name: "hybrid", file: "hybrid.txt", want: "/sys/fs/cgroup/unified"},
		{name: "unified", file: "unified.txt", want: "/sys/fs/cgroup"},
		{name: "whole hierarchy preferred over subtree bind", file: "bind_subtree_first.txt", want: "/sys/fs/cgroup"},
		{name: "only a subtree, octal escapes undone", file: "escaped_only_subtree.txt", want: "/host/cgroup dir"},
		{name: "container: the host's hierarchy beside its own", file: "container_private_ns.txt", want: "/host/sys/fs/cgroup"},
		{name: "a later mount hides an earlier one on the same point", file: "overmounted.txt", want: "/mnt/x"},
		{name: "v1 only", file: "v1_only.txt", wantErr: "no cgroup2 mount"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", "mountinfo", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := findCgroup2Mount(f)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("findCgroup2Mount() = %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("findCgroup2Mount() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestCgroupViewDir(t *testing.T) {
	tests := []struct {
		name    string
		m       cgroupMount
		path    string
		want    string
		wantErr string
	}{
		{name: "whole", m: cgroupMount{point: "/sys/fs/cgroup"}, path: "/kubepods.slice/a.scope", want: "/sys/fs/cgroup/kubepods.slice/a.scope"},
		{name: "root", m: cgroupMount{point: "/sys/fs/cgroup"}, path: "/", want: "/sys/fs/cgroup"},
		{name: "subtree", m: cgroupMount{point: "/host/cg", names: []string{"kubepods.slice"}}, path: "/kubepods.slice/p.slice/a.scope", want: "/host/cg/p.slice/a.scope"},
		{name: "outside the subtree", m: cgroupMount{point: "/host/cg", names: []string{"kubepods.slice"}}, path: "/system.slice/a.service", wantErr: "outside the cgroup2 mount /host/cg (it shows /kubepods.slice)"},
		{name: "above the namespace, own view only", m: cgroupMount{point: "/sys/fs/cgroup"}, path: "/../../b/c", wantErr: "mount the host's cgroup2 hierarchy"},
		{name: "above the namespace, not enough above", m: cgroupMount{point: "/h", up: 1}, path: "/../../b/c", wantErr: "shows 1 level(s) above"},
		{name: "subtree above the namespace", m: cgroupMount{point: "/h", up: 1, names: []string{"x"}}, path: "/a", wantErr: "shows a subtree"},
		{name: "relative", m: cgroupMount{point: "/h"}, path: "a/b", wantErr: "not absolute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := (&CgroupView{m: tc.m}).Dir(tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Dir(%q) = %q, %v; want error containing %q", tc.path, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Dir(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
			}
		})
	}
}
