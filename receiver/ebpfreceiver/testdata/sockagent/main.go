// sockagent sends data the ways an agent's tool can, for the receiver's socket I/O tests. It
// reads commands from stdin, one per line, and answers "ok <command>" when done. Every send is
// made inside a function the tests instrument (main.Warmup, main.Export, main.Benign), so that
// the spans say which call the bytes belong to. main.Deep grows its goroutine's stack in its own
// prologue, for the entry probe's test.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/http2"
	"golang.org/x/sys/unix"
)

var (
	client = &http.Client{} // keep-alive: one connection reused across requests
	h2     = &http.Client{Transport: &http2.Transport{
		AllowHTTP: true, // h2c: HTTP/2 without TLS
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
	early net.Conn // a connection opened before the receiver started (command "open")
)

//go:noinline
func Warmup(c *http.Client, url string) {
	get(c, url)
}

//go:noinline
func Export(how, addr string, n int) {
	data := bytes.Repeat([]byte("customer-record;"), n/16+1)[:n]
	switch how {
	case "http", "h2":
		c := client
		if how == "h2" {
			c = h2
		}
		resp, err := c.Post(addr, "application/octet-stream", bytes.NewReader(data))
		check(err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	case "udp": // a connected UDP socket written with write(2)
		c, err := net.Dial("udp", addr)
		check(err)
		fd := sysfd(c)
		_, err = unix.Write(fd, data)
		check(err)
		c.Close()
	case "sendmsg", "writev": // over TCP, the two vectored ways
		c, err := net.Dial("tcp", addr)
		check(err)
		fd := sysfd(c)
		if how == "sendmsg" {
			half := n / 2
			_, err = unix.SendmsgBuffers(fd, [][]byte{data[:half], data[half:]}, nil, nil, 0)
		} else {
			_, err = unix.Writev(fd, [][]byte{data[:n/3], data[n/3:]})
		}
		check(err)
		c.Close()
	case "early": // the connection opened before tracing
		_, err := early.Write(data)
		check(err)
	}
}

// DNS sends one query per name to the resolver at addr over UDP, as a tunnelling tool does.
//
//go:noinline
func DNS(addr string, names []string) {
	c, err := net.Dial("udp", addr)
	check(err)
	defer c.Close()
	for i, name := range names {
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: uint16(i + 1), RecursionDesired: true})
		check(b.StartQuestions())
		check(b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET}))
		msg, err := b.Finish()
		check(err)
		_, err = c.Write(msg)
		check(err)
	}
}

// Benign makes n small requests over the keep-alive connection in one call.
//
//go:noinline
func Benign(url string, n int) {
	for i := 0; i < n; i++ {
		get(client, url)
	}
}

// Deep calls itself n times with a large frame. Run on a new goroutine (a small stack), the
// stack grows in Deep's own prologue: the call restarts from its first instruction after
// runtime.morestack, where an entry probe would see it twice.
//
//go:noinline
func Deep(n int) int {
	var pad [1024]byte
	pad[n%len(pad)] = byte(n)
	if n > 0 {
		return Deep(n-1) + int(pad[(n*7)%len(pad)])
	}
	return int(pad[0])
}

func get(c *http.Client, url string) {
	resp, err := c.Get(url)
	check(err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func sysfd(c net.Conn) int {
	raw, err := c.(interface {
		SyscallConn() (syscall.RawConn, error)
	}).SyscallConn()
	check(err)
	var fd int
	check(raw.Control(func(f uintptr) { fd = int(f) }))
	return fd
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "sockagent:", err)
		os.Exit(1)
	}
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "warmup": // warmup http|h2 url
			c := client
			if f[1] == "h2" {
				c = h2
			}
			Warmup(c, f[2])
		case "export": // export how addr bytes
			n, err := strconv.Atoi(f[3])
			check(err)
			Export(f[1], f[2], n)
		case "dns": // dns addr name...
			DNS(f[1], f[2:])
		case "benign": // benign url n
			n, err := strconv.Atoi(f[2])
			check(err)
			Benign(f[1], n)
		case "deep": // deep n: Deep(n) on a new goroutine
			n, err := strconv.Atoi(f[1])
			check(err)
			done := make(chan int)
			go func() { done <- Deep(n) }()
			<-done
		case "open": // open addr: before the receiver starts
			c, err := net.Dial("tcp", f[1])
			check(err)
			early = c
		}
		fmt.Println("ok", f[0])
	}
}
