package plaintext

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"
)

// Node (libuv) gives a child's stdio as unix socketpairs, not pipes: the agent's end of its
// server's stdin is another socket (another inode) than the server's fd 0. The kernel names a
// unix socket's peer through sock_diag (UNIX_DIAG_PEER), asked by inode; it answers for sockets
// of the collector's network namespace.

const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	udiagShowPeer    = 4  // UDIAG_SHOW_PEER
	unixDiagPeer     = 2  // UNIX_DIAG_PEER
)

// unixPeer returns the inode of the peer of the unix socket with inode ino, or 0.
func unixPeer(ino uint64) uint64 {
	if ino == 0 || ino > 0xffffffff {
		return 0
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	// Replies come at once; a kernel that never answers must not hold the reader goroutine.
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000})
	req := make([]byte, 16+24)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1)
	r := req[16:]
	r[0] = unix.AF_UNIX
	binary.NativeEndian.PutUint32(r[4:], 0xffffffff) // states: any
	binary.NativeEndian.PutUint32(r[8:], uint32(ino))
	binary.NativeEndian.PutUint32(r[12:], udiagShowPeer)
	binary.NativeEndian.PutUint32(r[16:], 0xffffffff) // no cookie
	binary.NativeEndian.PutUint32(r[20:], 0xffffffff)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0
	}
	buf := make([]byte, 1024)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0
	}
	peer, _ := parseUnixDiag(buf[:n], ino)
	return peer
}

var errDiag = errors.New("malformed sock_diag reply")

// parseUnixDiag reads the peer inode from a sock_diag reply about socket ino.
func parseUnixDiag(b []byte, ino uint64) (uint64, error) {
	if len(b) < 16 {
		return 0, errDiag
	}
	l := int(binary.NativeEndian.Uint32(b[0:]))
	typ := binary.NativeEndian.Uint16(b[4:])
	if l < 16 || l > len(b) || typ != sockDiagByFamily {
		return 0, errDiag // NLMSG_ERROR (no such socket) or anything else
	}
	msg := b[16:l]
	if len(msg) < 16 || uint64(binary.NativeEndian.Uint32(msg[4:])) != ino {
		return 0, errDiag
	}
	attrs := msg[16:]
	for len(attrs) >= 4 {
		alen := int(binary.NativeEndian.Uint16(attrs[0:]))
		atyp := binary.NativeEndian.Uint16(attrs[2:])
		if alen < 4 || alen > len(attrs) {
			return 0, errDiag
		}
		if atyp == unixDiagPeer && alen >= 8 {
			return uint64(binary.NativeEndian.Uint32(attrs[4:])), nil
		}
		attrs = attrs[min((alen+3)&^3, len(attrs)):]
	}
	return 0, nil
}
