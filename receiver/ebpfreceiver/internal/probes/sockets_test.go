package probes

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// loadSockets loads the programs with socket records on and traces this test process.
func loadSockets(t *testing.T, opts SocketOptions) (*Set, *ringbuf.Reader) {
	t.Helper()
	requireKernel(t)
	s, err := Load(Options{RingBufferBytes: 4 << 20, Sockets: opts})
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel lacks a feature the programs need: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	rd, err := ringbuf.NewReader(s.Events())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rd.Close() })
	if err := s.TraceProcess(uint32(os.Getpid()), TracedProcess{TargetId: 1, IsGo: 1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.UntraceProcess(uint32(os.Getpid())) })
	return s, rd
}

// fdRecords reads records until one of fd's I/O records matches want or the deadline passes.
func fdRecord(t *testing.T, rd *ringbuf.Reader, ino uint64, dir uint8, want func(*FDIOEvent) bool) *FDIOEvent {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		rd.SetDeadline(deadline)
		rec, err := rd.Read()
		if err != nil {
			break
		}
		var h EventHeader
		if len(rec.RawSample) < int(unsafe.Sizeof(h)) {
			continue
		}
		h = *(*EventHeader)(unsafe.Pointer(&rec.RawSample[0]))
		if h.Kind != KindFDIO {
			continue
		}
		var e FDIOEvent
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e)), rec.RawSample)
		if e.Ino == ino && e.Direction == dir && want(&e) {
			return &e
		}
	}
	t.Fatalf("no I/O record of inode %d direction %d as expected", ino, dir)
	return nil
}

func inodeOf(t *testing.T, c syscall.Conn) uint64 {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return st.Ino
}

// TestFDIOConnectedUDP: a write(2) on a connected UDP socket names the peer from the socket, and
// a message to the DNS port is captured (its first 512 bytes) though plaintext capture is off.
func TestFDIOConnectedUDP(t *testing.T) {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	port := uint16(sink.LocalAddr().(*net.UDPAddr).Port)
	_, rd := loadSockets(t, SocketOptions{Enabled: true, Inbound: true, DNSPort: port})
	c, err := net.DialUDP("udp4", nil, sink.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ino := inodeOf(t, c)
	msg := bytes.Repeat([]byte{'q'}, 700)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	e := fdRecord(t, rd, ino, FDIOSend, func(*FDIOEvent) bool { return true })
	if e.Kind != FDIOUDP || e.Bytes != 700 || e.PeerPort != port || e.Family != unix.AF_INET {
		t.Fatalf("record: kind %d bytes %d peer port %d family %d", e.Kind, e.Bytes, e.PeerPort, e.Family)
	}
	if !bytes.Equal(e.Peer[:4], []byte{127, 0, 0, 1}) || e.LocalPort == 0 || e.Sock == 0 || e.Netns == 0 {
		t.Fatalf("record: peer %v local port %d sock %#x netns %d", e.Peer, e.LocalPort, e.Sock, e.Netns)
	}
	if e.Flags&FDIODNS == 0 || e.Captured != FDIODNSCaptureBytes || e.Flags&FDIOPayloadCut == 0 {
		t.Fatalf("DNS capture: flags %#x captured %d", e.Flags, e.Captured)
	}
}

// TestFDIOPlainTCP: a TCP connection whose first write is an HTTP request is marked plaintext and
// its payload captured in both directions, up to the bound; a write that starts a TLS record
// unmarks it, and from then on nothing is captured.
func TestFDIOPlainTCP(t *testing.T) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, rd := loadSockets(t, SocketOptions{Enabled: true, Inbound: true, CaptureBytes: 64})
	c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ino := inodeOf(t, c)
	req := []byte("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + string(bytes.Repeat([]byte{'d'}, 100)))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	e := fdRecord(t, rd, ino, FDIOSend, func(*FDIOEvent) bool { return true })
	if e.Kind != FDIOTCP || e.Bytes != uint64(len(req)) || e.Flags&FDIOPlain == 0 || e.Captured != 64 || !bytes.Equal(e.Data[:64], req[:64]) {
		t.Fatalf("send: kind %d bytes %d flags %#x captured %d", e.Kind, e.Bytes, e.Flags, e.Captured)
	}
	if e.PeerPort != uint16(ln.Addr().(*net.TCPAddr).Port) {
		t.Fatalf("peer port %d", e.PeerPort)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if _, err := srv.Write(resp); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	e = fdRecord(t, rd, ino, FDIORecv, func(*FDIOEvent) bool { return true })
	if e.Bytes != uint64(n) || e.Captured != uint32(min(n, 64)) || !bytes.Equal(e.Data[:e.Captured], resp[:e.Captured]) {
		t.Fatalf("receive: bytes %d captured %d", e.Bytes, e.Captured)
	}
	tlsRecord := append([]byte{0x17, 0x03, 0x03, 0x00, 0x10}, bytes.Repeat([]byte{0xaa}, 16)...)
	if _, err := c.Write(tlsRecord); err != nil {
		t.Fatal(err)
	}
	e = fdRecord(t, rd, ino, FDIOSend, func(e *FDIOEvent) bool { return e.Bytes == uint64(len(tlsRecord)) })
	if e.Captured != 0 || e.Flags&FDIOPlain != 0 {
		t.Fatalf("ciphertext captured: flags %#x captured %d", e.Flags, e.Captured)
	}
	if _, err := c.Write(bytes.Repeat([]byte{'x'}, 20)); err != nil {
		t.Fatal(err)
	}
	e = fdRecord(t, rd, ino, FDIOSend, func(e *FDIOEvent) bool { return e.Bytes == 20 })
	if e.Captured != 0 {
		t.Fatalf("captured %d bytes after the TLS record unmarked the connection", e.Captured)
	}
}

// TestFDIOSendmsgWritevUnconnected: sendmsg to an unconnected UDP socket names the peer from
// msg_name; writev counts every buffer; sendmmsg sums its messages.
func TestFDIOSendmsgWritevUnconnected(t *testing.T) {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	port := sink.LocalAddr().(*net.UDPAddr).Port
	_, rd := loadSockets(t, SocketOptions{Enabled: true})
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	to := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Sendmsg(fd, bytes.Repeat([]byte{1}, 33), nil, to, 0); err != nil {
		t.Fatal(err)
	}
	e := fdRecord(t, rd, st.Ino, FDIOSend, func(*FDIOEvent) bool { return true })
	if e.Bytes != 33 || e.PeerPort != uint16(port) || e.Flags&FDIOPeerUnknown != 0 || !bytes.Equal(e.Peer[:4], []byte{127, 0, 0, 1}) {
		t.Fatalf("sendmsg: bytes %d peer port %d flags %#x", e.Bytes, e.PeerPort, e.Flags)
	}
	if err := unix.Connect(fd, to); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Writev(fd, [][]byte{bytes.Repeat([]byte{2}, 10), bytes.Repeat([]byte{3}, 15)}); err != nil {
		t.Fatal(err)
	}
	e = fdRecord(t, rd, st.Ino, FDIOSend, func(e *FDIOEvent) bool { return e.Hdr.ProbeId == unix.SYS_WRITEV })
	if e.Bytes != 25 || e.PeerPort != uint16(port) {
		t.Fatalf("writev: bytes %d peer port %d", e.Bytes, e.PeerPort)
	}
	// sendmmsg: not in x/sys/unix; three messages of 5, 6 and 7 bytes through the raw syscall.
	type mmsghdr struct {
		hdr unix.Msghdr
		len uint32
		_   [4]byte
	}
	var bufs [3][]byte
	var iovs [3]unix.Iovec
	var msgs [3]mmsghdr
	for i := range msgs {
		bufs[i] = bytes.Repeat([]byte{4}, 5+i)
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.Iovlen = 1
	}
	if n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), 3, 0, 0, 0); errno != 0 || n != 3 {
		t.Fatalf("sendmmsg: %d %v", n, errno)
	}
	e = fdRecord(t, rd, st.Ino, FDIOSend, func(e *FDIOEvent) bool { return e.Hdr.ProbeId == unix.SYS_SENDMMSG })
	if e.Bytes != 18 || e.Flags&FDIOTruncated != 0 {
		t.Fatalf("sendmmsg: bytes %d flags %#x", e.Bytes, e.Flags)
	}
}

// TestFDIOPipes: a pipe is reported only once its data starts like JSON-RPC.
func TestFDIOPipes(t *testing.T) {
	_, rd := loadSockets(t, SocketOptions{Enabled: true, Inbound: true, CaptureBytes: 4096})
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	var st unix.Stat_t
	if err := unix.Fstat(p[1], &st); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(p[1], []byte("plain text, not a protocol\n")); err != nil {
		t.Fatal(err)
	}
	msg := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}` + "\n")
	if _, err := unix.Write(p[1], msg); err != nil {
		t.Fatal(err)
	}
	e := fdRecord(t, rd, st.Ino, FDIOSend, func(*FDIOEvent) bool { return true })
	if e.Kind != FDIOPipe || e.Bytes != uint64(len(msg)) || !bytes.Equal(e.Data[:e.Captured], msg) {
		t.Fatalf("pipe: kind %d bytes %d data %q (the first, non-JSON write must not be reported)", e.Kind, e.Bytes, e.Data[:e.Captured])
	}
	// Marked now: the rest of a message is reported whatever its first byte and length.
	for _, rest := range [][]byte{[]byte(`"params":{"name":"echo"}}` + "\n"), []byte("}\n")} {
		if _, err := unix.Write(p[1], rest); err != nil {
			t.Fatal(err)
		}
		e = fdRecord(t, rd, st.Ino, FDIOSend, func(*FDIOEvent) bool { return true })
		if !bytes.Equal(e.Data[:e.Captured], rest) {
			t.Fatalf("marked pipe: data %q, want %q", e.Data[:e.Captured], rest)
		}
	}
	// A writev's first buffer decides for a pipe not yet marked (its later buffers are captured
	// too); a short '{' write does not mark.
	var q [2]int
	if err := unix.Pipe(q[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(q[0])
	defer unix.Close(q[1])
	if err := unix.Fstat(q[1], &st); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(q[1], []byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Writev(q[1], [][]byte{[]byte(`{"jsonrpc":"2.0",`), []byte(`"id":2}` + "\n")}); err != nil {
		t.Fatal(err)
	}
	e = fdRecord(t, rd, st.Ino, FDIOSend, func(*FDIOEvent) bool { return true })
	if want := `{"jsonrpc":"2.0","id":2}` + "\n"; string(e.Data[:e.Captured]) != want || e.Bytes != 25 || e.Flags&FDIOPayloadCut != 0 {
		t.Fatalf("writev on a pipe: bytes %d flags %#x data %q, want %q (the short write must not be reported)", e.Bytes, e.Flags, e.Data[:e.Captured], want)
	}
}

// TestFDIOVectors: the data of every buffer of a writev, sendmsg and readv is captured (Node's
// HTTP client sends a request's headers and body in one writev), up to FDIOMaxIov buffers and
// the capture bound in all; a call with more buffers says so (FDIOIovCut).
func TestFDIOVectors(t *testing.T) {
	_, rd := loadSockets(t, SocketOptions{Enabled: true, Inbound: true, CaptureBytes: 4096})
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	var st unix.Stat_t
	if err := unix.Fstat(fds[0], &st); err != nil {
		t.Fatal(err)
	}
	ino := st.Ino
	if err := unix.Fstat(fds[1], &st); err != nil {
		t.Fatal(err)
	}
	peer := st.Ino
	drain := func(n int) {
		buf := make([]byte, n)
		for got := 0; got < n; {
			m, err := unix.Read(fds[1], buf[got:])
			if err != nil {
				t.Fatal(err)
			}
			got += m
		}
	}
	check := func(what string, e *FDIOEvent, want []byte, bytes uint64, flags uint8) {
		t.Helper()
		const mask = FDIOPayloadCut | FDIOIovCut | FDIOReadFailed
		if string(e.Data[:e.Captured]) != string(want) || e.Bytes != bytes || e.Flags&mask != flags {
			t.Errorf("%s: bytes %d flags %#x captured %d %.80q, want bytes %d flags %#x %.80q", what, e.Bytes, e.Flags&mask, e.Captured,
				e.Data[:e.Captured], bytes, flags, want)
		}
	}
	parts := [][]byte{[]byte(`{"jsonrpc":"2.0",`), []byte(`"id":1,`), []byte(`"method":"tools/call"}` + "\n")}
	whole := bytes.Join(parts, nil)
	if _, err := unix.Writev(fds[0], parts); err != nil {
		t.Fatal(err)
	}
	e := fdRecord(t, rd, ino, FDIOSend, func(e *FDIOEvent) bool { return e.Hdr.ProbeId == unix.SYS_WRITEV })
	check("writev", e, whole, uint64(len(whole)), 0)
	// A unix socket's record names its peer's inode (the socketpair's other end).
	if got := binary.NativeEndian.Uint64(e.Peer[:8]); got != peer {
		t.Errorf("unix socket's peer inode %d, want %d", got, peer)
	}
	// The receiving end reads it with readv into a short first buffer and a long second one.
	got := make([]byte, 100)
	if n, err := unix.Readv(fds[1], [][]byte{got[:10], got[10:]}); err != nil || n != len(whole) {
		t.Fatalf("readv: %d %v", n, err)
	}
	check("readv", fdRecord(t, rd, peer, FDIORecv, func(e *FDIOEvent) bool { return e.Hdr.ProbeId == unix.SYS_READV }), whole, uint64(len(whole)), 0)
	if _, err := unix.SendmsgBuffers(fds[0], parts, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	check("sendmsg", fdRecord(t, rd, ino, FDIOSend, func(e *FDIOEvent) bool { return e.Hdr.ProbeId == unix.SYS_SENDMSG }), whole, uint64(len(whole)), 0)
	drain(len(whole))
	// More buffers than are read: the first FDIOMaxIov, and the flag.
	many := [][]byte{[]byte(`{"jsonrpc":"2.0","params":"`)}
	for i := 0; len(many) < FDIOMaxIov+4; i++ {
		many = append(many, bytes.Repeat([]byte{byte('a' + i)}, 10))
	}
	all := bytes.Join(many, nil)
	if _, err := unix.Writev(fds[0], many); err != nil {
		t.Fatal(err)
	}
	check("writev of 20 buffers", fdRecord(t, rd, ino, FDIOSend, func(e *FDIOEvent) bool { return e.Hdr.ProbeId == unix.SYS_WRITEV }),
		bytes.Join(many[:FDIOMaxIov], nil), uint64(len(all)), FDIOPayloadCut|FDIOIovCut)
	drain(len(all))
	// The capture bound across buffers: 4096 bytes in all, cut inside the second buffer; not
	// for want of buffers.
	big := [][]byte{[]byte(`{"jsonrpc":"2.0","params":"`), bytes.Repeat([]byte{'b'}, 5000), []byte(`"}` + "\n")}
	all = bytes.Join(big, nil)
	if n, err := unix.Writev(fds[0], big); err != nil || n != len(all) { // fits in the socket's buffer
		t.Fatalf("writev: %d %v", n, err)
	}
	drain(len(all))
	check("writev over the bound", fdRecord(t, rd, ino, FDIOSend, func(e *FDIOEvent) bool { return e.Hdr.ProbeId == unix.SYS_WRITEV }),
		all[:4096], uint64(len(all)), FDIOPayloadCut)
}

// TestConnectExitIdentity: a connect's exit record names the socket as its I/O records do.
func TestConnectExitIdentity(t *testing.T) {
	requireKernel(t)
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := Load(Options{RingBufferBytes: 4 << 20, SyscallMask: SyscallBits["connect"], Sockets: SocketOptions{Enabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rd, err := ringbuf.NewReader(s.Events())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if err := s.TraceProcess(uint32(os.Getpid()), TracedProcess{TargetId: 1, IsGo: 1}); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = s.UntraceProcess(uint32(os.Getpid()))
	ino := inodeOf(t, c)
	var exit *SyscallExitEvent
	var io *FDIOEvent
	rd.SetDeadline(time.Now().Add(5 * time.Second))
	for exit == nil || io == nil {
		rec, err := rd.Read()
		if err != nil {
			t.Fatalf("connect exit %v, I/O %v: %v", exit != nil, io != nil, err)
		}
		h := *(*EventHeader)(unsafe.Pointer(&rec.RawSample[0]))
		switch h.Kind {
		case KindSyscallExit:
			var e SyscallExitEvent
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e)), rec.RawSample)
			if e.Ino == ino {
				exit = &e
			}
		case KindFDIO:
			var e FDIOEvent
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e)), rec.RawSample)
			if e.Ino == ino {
				io = &e
			}
		}
	}
	if exit.Sock == 0 || exit.Sock != io.Sock {
		t.Fatalf("connect's socket %#x, its write's %#x", exit.Sock, io.Sock)
	}
}

// TestFDIOIPv6RecvfromSendfile: an IPv6 peer is read from the socket; an unconnected socket's
// recvfrom names the sender from the address the kernel wrote; sendfile counts its bytes
// without payload.
func TestFDIOIPv6RecvfromSendfile(t *testing.T) {
	sink, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer sink.Close()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, rd := loadSockets(t, SocketOptions{Enabled: true, Inbound: true, CaptureBytes: 64})

	c, err := net.DialUDP("udp6", nil, sink.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello v6")); err != nil {
		t.Fatal(err)
	}
	e := fdRecord(t, rd, inodeOf(t, c), FDIOSend, func(*FDIOEvent) bool { return true })
	if e.Family != unix.AF_INET6 || e.Peer != [16]uint8(net.IPv6loopback) || e.PeerPort != uint16(sink.LocalAddr().(*net.UDPAddr).Port) || e.Bytes != 8 {
		t.Fatalf("IPv6 send: family %d peer %v port %d bytes %d", e.Family, e.Peer, e.PeerPort, e.Bytes)
	}

	// recvfrom on an unconnected socket (the test's own, traced): the sender is the peer.
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: [16]byte(net.IPv6loopback)}); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	if _, err := sink.WriteTo([]byte("answer"), &net.UDPAddr{IP: net.IPv6loopback, Port: sa.(*unix.SockaddrInet6).Port}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, _, err := unix.Recvfrom(fd, buf, 0); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	e = fdRecord(t, rd, st.Ino, FDIORecv, func(*FDIOEvent) bool { return true })
	if e.Bytes != 6 || e.PeerPort != uint16(sink.LocalAddr().(*net.UDPAddr).Port) || e.Flags&FDIOPeerUnknown != 0 {
		t.Fatalf("recvfrom: bytes %d peer port %d flags %#x", e.Bytes, e.PeerPort, e.Flags)
	}

	// sendfile from a file to a TCP socket.
	tc, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	srv, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() { _, _ = io.Copy(io.Discard, srv) }()
	f, err := os.CreateTemp(t.TempDir(), "payload")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(bytes.Repeat([]byte("GET / HTTP/1.1\r\n"), 64)); err != nil {
		t.Fatal(err)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var serr error
	if err := raw.Control(func(sfd uintptr) {
		off := int64(0)
		n, serr = unix.Sendfile(int(sfd), int(f.Fd()), &off, 1024)
	}); err != nil || serr != nil || n != 1024 {
		t.Fatalf("sendfile: %d %v %v", n, err, serr)
	}
	e = fdRecord(t, rd, inodeOf(t, tc), FDIOSend, func(e *FDIOEvent) bool { return e.Hdr.ProbeId == unix.SYS_SENDFILE })
	if e.Bytes != 1024 || e.Captured != 0 || e.Kind != FDIOTCP {
		t.Fatalf("sendfile: bytes %d captured %d kind %d", e.Bytes, e.Captured, e.Kind)
	}
}

// TestFDIODNSOverTCPWritev: glibc writes a DNS query over TCP as its 2-byte length and the
// message, two buffers of one writev: both are captured, so the name can be decoded.
func TestFDIODNSOverTCPWritev(t *testing.T) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	_, rd := loadSockets(t, SocketOptions{Enabled: true, DNSPort: uint16(port)})
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	// A query for example.com, type A.
	msg := []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01")
	length := []byte{0, byte(len(msg))}
	if _, err := unix.Writev(fd, [][]byte{length, msg}); err != nil {
		t.Fatal(err)
	}
	e := fdRecord(t, rd, st.Ino, FDIOSend, func(e *FDIOEvent) bool { return e.Hdr.ProbeId == unix.SYS_WRITEV })
	if want := append(length, msg...); e.Flags&FDIODNS == 0 || !bytes.Equal(e.Data[:e.Captured], want) || e.Flags&FDIOPayloadCut != 0 {
		t.Fatalf("DNS over TCP: flags %#x captured %q, want %q", e.Flags, e.Data[:e.Captured], want)
	}
}
