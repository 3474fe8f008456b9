package containerid

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A container decides the names of its cgroups, which /proc/<pid>/cgroup and mountinfo print:
// the parsers must accept any bytes.

// addTestdata adds every file of testdata/<dir> as a seed.
func addTestdata(f *testing.F, dir string) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.txt"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata/%s: %v", dir, err)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// FuzzParse: /proc/<pid>/cgroup.
func FuzzParse(f *testing.F) {
	addTestdata(f, "cgroup")
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Parse(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrNoValidLine) && !errors.Is(err, ErrTooLong) {
				t.Fatalf("error %v wraps neither ErrNoValidLine nor ErrTooLong", err)
			}
			return
		}
		if info.ID != "" && !isContainerID(info.ID) {
			t.Fatalf("container id %q", info.ID)
		}
		if info.QoS != "" && info.PodUID == "" {
			t.Fatalf("QoS %q without a pod", info.QoS)
		}
		if len(info.CgroupPath) > maxLineLen || !strings.HasPrefix(info.CgroupPath, "/") {
			t.Fatalf("cgroup path of %d bytes: %.80q", len(info.CgroupPath), info.CgroupPath)
		}
	})
}

// FuzzMountinfo: the cgroup2 mounts of mountinfo, and placing a cgroup path in the widest.
func FuzzMountinfo(f *testing.F) {
	addTestdata(f, "mountinfo")
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := parseCgroup2Mounts(bytes.NewReader(data))
		if err != nil {
			return
		}
		m := widest(ms)
		v := &CgroupView{m: m}
		// This process's place below the mount, as nsRoot would find it, without the file system.
		v.once.Do(func() { v.self = make([]string, m.up) })
		for _, p := range []string{"/", "/kubepods.slice/a.scope", "/../../x/y", "/" + strings.Join(m.names, "/") + "/z"} {
			if _, err := v.Dir(p); err != nil {
				continue
			}
		}
	})
}

func TestParseTooManyLines(t *testing.T) {
	in := strings.Repeat("1:cpu:/a\n", maxLines) + "0::/kubepods/besteffort/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/" + strings.Repeat("ab", 32) + "\n"
	if _, err := Parse(strings.NewReader(in)); !errors.Is(err, ErrTooLong) {
		t.Fatalf("Parse of %d lines: %v, want ErrTooLong", maxLines+1, err)
	}
	if _, err := Parse(strings.NewReader(strings.Repeat("1:cpu:/a\n", maxLines-1))); err != nil {
		t.Fatalf("Parse of %d lines: %v", maxLines-1, err)
	}
}
