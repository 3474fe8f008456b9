package plaintext

import (
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func sockIno(t *testing.T, fd int) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// The peer of one end of a socketpair is the other end (no root needed).
func TestUnixPeer(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	a, b := sockIno(t, fds[0]), sockIno(t, fds[1])
	if got := unixPeer(a); got != b {
		if _, err := os.Stat("/proc/net/unix"); err != nil {
			t.Skip("no unix sockets in /proc: " + err.Error())
		}
		t.Fatalf("peer of %d: %d, want %d", a, got, b)
	}
	if got := unixPeer(1); got != 0 {
		t.Errorf("peer of a socket that does not exist: %d", got)
	}
}

// A reply about socket 12345 whose peer is 12346.
var diagReply = []byte{40, 0, 0, 0, 20, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 57, 48, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 2, 0, 58, 48, 0, 0}

func TestParseUnixDiag(t *testing.T) {
	if p, err := parseUnixDiag(diagReply, 12345); p != 12346 || err != nil {
		t.Errorf("peer %d, %v", p, err)
	}
	if _, err := parseUnixDiag(diagReply, 1); err == nil {
		t.Error("a reply about another socket was taken")
	}
	if _, err := parseUnixDiag(diagReply[:30], 12345); err == nil {
		t.Error("a cut reply was taken")
	}
}

func FuzzParseUnixDiag(f *testing.F) {
	f.Add(diagReply, uint64(12345))
	f.Fuzz(func(t *testing.T, b []byte, ino uint64) {
		_, _ = parseUnixDiag(b, ino)
	})
}
