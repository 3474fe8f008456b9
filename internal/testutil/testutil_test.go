package testutil

import (
	"net"
	"os"
	"regexp"
	"strconv"
	"testing"
)

func TestFreePortIsListenable(t *testing.T) {
	p := FreePort(t)
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("port %d: %v", p, err)
	}
	ln.Close()
}

func TestRepoPathIsTheRoot(t *testing.T) {
	if _, err := os.Stat(RepoPath(t, "go.mod")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(RepoPath(t, "internal/testutil/testutil.go")); err != nil {
		t.Fatal(err)
	}
}

func TestRandomIDs(t *testing.T) {
	if h := RandomHex(t, 8); !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(h) {
		t.Errorf("RandomHex(8) = %q", h)
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := RandomUUID(t), RandomUUID(t)
	if !uuid.MatchString(a) || a == b {
		t.Errorf("RandomUUID: %q, %q", a, b)
	}
}
