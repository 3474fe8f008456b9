// Package testutil holds the helpers that tests of several packages need alike: a free
// loopback port, the skips of kernel tests (with the reason), the repository's root, random ids.
// It imports nothing of this module, so any package's internal tests can use it.
package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago (another process may
// take it before the caller listens: callers that can listen on port 0 themselves should).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// RequireRoot skips the test unless it runs as root; why says what needs it.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("%s needs root", why)
	}
}

// RequireKernel skips the test unless eBPF programs can be loaded here: root, and the kernel
// BTF that CO-RE programs are relocated against. (receiver/ebpfreceiver and its internal/probes
// keep a copy of their own while they are being restructured; they take this one after.)
func RequireKernel(t testing.TB) {
	t.Helper()
	RequireRoot(t, "kernel test: loading BPF programs (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)")
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("kernel test: the kernel has no BTF (/sys/kernel/btf/vmlinux); CO-RE programs cannot load")
	}
}

// RepoPath returns rel (slash-separated) below the repository's root, whatever the test's
// working directory.
func RepoPath(t testing.TB, rel string) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testutil: no caller information to find the repository root")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", filepath.FromSlash(rel))
}

// RandomHex returns n random bytes in hex (2n characters).
func RandomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// RandomUUID returns a random version 4 UUID in its canonical form.
func RandomUUID(t testing.TB) string {
	t.Helper()
	h := RandomHex(t, 16)
	return fmt.Sprintf("%s-%s-4%s-a%s-%s", h[0:8], h[8:12], h[13:16], h[17:20], h[20:32])
}
