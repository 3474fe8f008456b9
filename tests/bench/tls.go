package main

// Section 2, SSL_write and SSL_read: a C client doing SSL_write (OpenSSL, libssl.so.3) to a TLS
// server in this process (Go crypto/tls, so the server never touches libssl), with nothing
// attached, with a no-op uprobe on libssl's SSL_write (the floor) and under the receiver's TLS
// support; then the same for SSL_read of records that server wrote.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver"
)

// throwawayCert is a self-signed certificate for 127.0.0.1.
func throwawayCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agenttrail-bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// tlsSink is a TLS server on loopback that reads and discards.
func tlsSink() (net.Listener, error) {
	cert, err := throwawayCert()
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return nil, err
	}
	go acceptEach(ln, func(c net.Conn) { _, _ = io.Copy(io.Discard, c); c.Close() })
	return ln, nil
}

// acceptEach serves every connection of ln on a goroutine of its own until ln is closed.
func acceptEach(ln net.Listener, serve func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go serve(c)
	}
}

// tlsSource is a TLS server on loopback for sslread: each client first sends "COUNT SIZE\n" in
// the clear; the server then completes the TLS handshake (no session tickets, so that nothing
// follows the handshake but the records), writes COUNT records of SIZE bytes (one Write each:
// one record each) into a buffer, sends the buffer and closes the connection without a
// close_notify.
func tlsSource() (net.Listener, error) {
	cert, err := throwawayCert()
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go acceptEach(ln, func(c net.Conn) {
		defer c.Close()
		var hello []byte
		one := make([]byte, 1)
		for len(hello) < 64 { // byte by byte: what follows is the ClientHello
			if _, err := io.ReadFull(c, one); err != nil {
				return
			}
			if one[0] == '\n' {
				break
			}
			hello = append(hello, one[0])
		}
		var count, size int
		if _, err := fmt.Sscan(string(hello), &count, &size); err != nil || count < 1 || size < 1 || size > 16384 {
			return
		}
		bc := &bufferedConn{Conn: c}
		tc := tls.Server(bc, cfg)
		if err := tc.Handshake(); err != nil {
			return
		}
		bc.w = bufio.NewWriterSize(c, 1<<20)
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = 'x'
		}
		for range count {
			if _, err := tc.Write(payload); err != nil {
				return
			}
		}
		_ = bc.w.Flush()
	})
	return ln, nil
}

// bufferedConn writes through w once it is set (after the handshake).
type bufferedConn struct {
	net.Conn
	w *bufio.Writer
}

func (c *bufferedConn) Write(p []byte) (int, error) {
	if c.w != nil {
		return c.w.Write(p)
	}
	return c.Conn.Write(p)
}

// mappedLibrary is the path of the first mapping of pid whose file name starts with prefix,
// waiting up to 5 s for the dynamic loader to map it.
func mappedLibrary(pid int, prefix string) (string, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
		if err != nil {
			return "", err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 6 {
				continue
			}
			p := fields[len(fields)-1]
			if i := strings.LastIndexByte(p, '/'); i >= 0 && strings.HasPrefix(p[i+1:], prefix) {
				f.Close()
				return p, nil
			}
		}
		f.Close()
		if time.Now().After(deadline) {
			return "", fmt.Errorf("process %d maps no %s*", pid, prefix)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// linkedLibraries are the libraries of exe whose name starts with prefix, as ldd resolves them.
func linkedLibraries(exe, prefix string) []string {
	out, err := exec.Command("ldd", exe).Output()
	if err != nil {
		return nil
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		name, path, ok := strings.Cut(strings.TrimSpace(line), " => ")
		if ok && strings.HasPrefix(name, prefix) {
			path, _, _ = strings.Cut(path, " (")
			libs = append(libs, path)
		}
	}
	return libs
}

// sslCall is one OpenSSL function measured by sslOverhead.
type sslCall struct {
	fn      string                       // SSL_write, SSL_read
	program string                       // C client in tests/bench/tlstarget, without .c
	server  func() (net.Listener, error) // what the client connects to
	how     string                       // what the client does, for the command column
	why     string                       // why the probes cost what they cost
}

var sslCalls = []sslCall{
	{fn: "SSL_write", program: "sslwrite", server: tlsSink,
		how: "TLS 1.3 to a Go server on loopback, then SSL_write into a memory BIO",
		why: "SSL_write is probed at entry (buffer saved) and by a uretprobe (bytes written are known only at return): two traps, the uretprobe's return-address rewrite, and a copy of the plaintext into the record"},
	{fn: "SSL_read", program: "sslread", server: tlsSource,
		how: "TLS 1.3 handshake with a Go server on loopback, which then sends N × REPS records of 64 bytes; the client recv()s them all into a memory BIO before timing, then times SSL_read from it: no syscall, and no SSL_write in the process",
		why: "SSL_read is probed at entry (buffer saved) and by a uretprobe (the plaintext is in the buffer only at return, and its length is the return value): two traps, the uretprobe's return-address rewrite, and a copy of the plaintext into the record"},
}

// sslOverhead measures the receiver's probes on one OpenSSL function against a no-op uprobe on
// it, in a C client whose timed calls make no syscall.
func (b *bench) sslOverhead(c sslCall) {
	name := "OpenSSL " + c.fn + " (64 bytes): uprobe + uretprobe, plaintext copy, record"
	src := "tests/bench/tlstarget/" + c.program + ".c"
	target := b.path(c.program)
	if out, err := runCmd("gcc", "-O1", "-g", "-o", target, src, "-lssl", "-lcrypto"); err != nil {
		b.skip(secCall, name, "gcc "+src+" -lssl -lcrypto", "cannot build the client (libssl-dev missing?): "+firstLine(out))
		return
	}
	ln, err := c.server()
	if err != nil {
		b.skip(secCall, name, c.program, "TLS server: "+err.Error())
		return
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	n := b.opt.n
	args := func(reps int) []string {
		return []string{target, strconv.Itoa(port), strconv.Itoa(n), strconv.Itoa(reps), "64"}
	}
	command := fmt.Sprintf("%s PORT %d REPS 64 (%s: %s)", c.program, n, src, c.how)
	var lib string
	rr := &recvRun{}
	cfg := receiverConfig([]ebpfreceiver.TargetConfig{{Name: "bench-" + c.program, Executable: target}}, nil)
	v, reps, warn, err := b.compare(linkedLibraries(target, "libssl.so"), args, nil,
		func(pid int) (func(), error) {
			if lib, err = mappedLibrary(pid, "libssl.so"); err != nil {
				return nil, err
			}
			return noopUprobe(lib, c.fn, nil)(pid)
		},
		withReceiver(rr, cfg))
	if err != nil {
		b.skip(secCall, name, command, err.Error())
		return
	}
	b.warn = warn
	defer func() { b.warn = "" }()
	base, floor, cost := v[0], v[1]-v[0], v[2]-v[0]
	calls := n * reps
	b.add(result{section: secFloor, name: "no-op uprobe on libssl's " + c.fn + ", per call",
		command: command + ", a no-op BPF program on " + c.fn + " in " + lib + ", minus the run without",
		value:   fmt.Sprintf("%.2f µs (%s without probe: %.2f µs)", floor/1000, c.fn, base/1000), ratio: "1.00 (floor)", target: "-", verdict: "measured"})
	tlsKey := fmt.Sprintf("tls: {enabled: %v, libraries: %v, capture_bytes: %d}", cfg.TLS.Enabled, cfg.TLS.Libraries, cfg.TLS.CaptureBytes)
	const target2 = "≤ 2.0 × floor (the Go call's target; none was set for TLS)"
	if rr.records == 0 {
		b.add(result{section: secCall, name: name, command: command + " under the ebpf receiver (" + tlsKey + ")",
			value: fmt.Sprintf("receiver: not yet instrumented (0 records of %d calls)", calls),
			ratio: "-", target: target2, verdict: "not measured"})
		return
	}
	valid := floorValid(floor, base)
	b.add(result{section: secCall, name: name, command: command + " under the ebpf receiver (" + tlsKey + ")",
		value: fmt.Sprintf("%.2f µs (floor here %.2f µs; in-BPF time %.2f µs, %.1f probe runs per call; %d records of %d calls)",
			cost/1000, floor/1000, rr.uprobePerOp(calls)/1000, float64(rr.uprobeRuns)/float64(calls), rr.records, calls),
		ratio: ratioText(cost, floor, valid), target: target2,
		verdict: judge(valid, cost/floor <= 2.0, c.why)})
}
