package main

// Section 2, SSL_write: a C client doing SSL_write (OpenSSL, libssl.so.3) to a TLS server in
// this process (Go crypto/tls, so the server never touches libssl), with nothing attached, with
// a no-op uprobe on libssl's SSL_write (the floor) and under the receiver's TLS support.

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

// tlsSink is a TLS server on loopback that reads and discards.
func tlsSink() (net.Listener, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agenttrail-bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return ln, nil
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

func (b *bench) sslOverhead() {
	const name = "OpenSSL SSL_write (64 bytes): uprobe + uretprobe, plaintext copy, record"
	target := b.path("sslwrite")
	if out, err := runCmd("gcc", "-O1", "-g", "-o", target, "tests/bench/tlstarget/sslwrite.c", "-lssl", "-lcrypto"); err != nil {
		b.skip(secCall, name, "gcc tests/bench/tlstarget/sslwrite.c -lssl -lcrypto", "cannot build the client (libssl-dev missing?): "+firstLine(out))
		return
	}
	ln, err := tlsSink()
	if err != nil {
		b.skip(secCall, name, "sslwrite", "TLS server: "+err.Error())
		return
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	n := b.opt.n
	args := func(reps int) []string {
		return []string{target, strconv.Itoa(port), strconv.Itoa(n), strconv.Itoa(reps), "64"}
	}
	command := fmt.Sprintf("sslwrite PORT %d REPS 64 (tests/bench/tlstarget/sslwrite.c: TLS 1.3 to a Go server on loopback, then SSL_write into a memory BIO)", n)
	var lib string
	rr := &recvRun{}
	cfg := receiverConfig([]ebpfreceiver.TargetConfig{{Name: "bench-tls", Executable: target}}, nil)
	v, reps, warn, err := b.compare(linkedLibraries(target, "libssl.so"), args, nil,
		func(pid int) (func(), error) {
			if lib, err = mappedLibrary(pid, "libssl.so"); err != nil {
				return nil, err
			}
			return noopUprobe(lib, "SSL_write", nil)(pid)
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
	b.add(result{section: secFloor, name: "no-op uprobe on libssl's SSL_write, per call",
		command: command + ", a no-op BPF program on SSL_write in " + lib + ", minus the run without",
		value:   fmt.Sprintf("%.2f µs (SSL_write without probe: %.2f µs)", floor/1000, base/1000), ratio: "1.00 (floor)", target: "-", verdict: "measured"})
	tlsKey := fmt.Sprintf("tls: {enabled: %v, libraries: %v, capture_bytes: %d}", cfg.TLS.Enabled, cfg.TLS.Libraries, cfg.TLS.CaptureBytes)
	if rr.records == 0 {
		b.add(result{section: secCall, name: name, command: command + " under the ebpf receiver (" + tlsKey + ")",
			value: fmt.Sprintf("receiver: not yet instrumented (0 records of %d calls)", calls),
			ratio: "-", target: "≤ 2.0 × floor", verdict: "not measured"})
		return
	}
	valid := floorValid(floor, base)
	b.add(result{section: secCall, name: name, command: command + " under the ebpf receiver (" + tlsKey + ")",
		value: fmt.Sprintf("%.2f µs (floor here %.2f µs; in-BPF time %.2f µs; %d records of %d calls)", cost/1000, floor/1000, rr.uprobePerOp(calls)/1000, rr.records, calls),
		ratio: ratioText(cost, floor, valid), target: "≤ 2.0 × floor (the Go call's target; none was set for TLS)",
		verdict: judge(valid, cost/floor <= 2.0, "SSL_write is probed at entry (buffer saved) and by a uretprobe (bytes written are known only at return): two traps, the uretprobe's return-address rewrite, and a copy of the plaintext into the record")})
}
