// target is the traced program of the overhead benchmarks. It waits for a line on stdin (so the
// harness can attach probes first), then runs -reps repetitions of -n operations and prints
// each repetition's nanoseconds per operation, one per line.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"
)

//go:noinline
func Work(x int) int { return x*7 + 1 }

// openNull is one traced syscall: openat + close of /dev/null.
func openNull() {
	fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err == nil {
		syscall.Close(fd)
	}
}

func main() {
	mode := flag.String("mode", "func", "func: calls of Work; getppid: bare syscalls; open: openat+close of /dev/null; send: a 64-byte write(2) on a connected UDP socket")
	n := flag.Int("n", 20000, "operations per repetition")
	reps := flag.Int("reps", 7, "repetitions")
	rate := flag.Int("rate", 0, "paced mode: this many calls of Work per second for -duration, then exit")
	duration := flag.Duration("duration", 20*time.Second, "how long the paced mode runs")
	flag.Parse()
	if *rate > 0 {
		paced(*rate, *duration)
		return
	}
	var sock int
	if *mode == "send" {
		sock = udpPair()
	}
	msg := make([]byte, 64)
	bufio.NewReader(os.Stdin).ReadString('\n')
	sum := 0
	for r := 0; r < *reps; r++ {
		start := time.Now()
		for i := 0; i < *n; i++ {
			switch *mode {
			case "func":
				sum += Work(i)
			case "getppid":
				sum += syscall.Getppid()
			case "open":
				openNull()
			case "send":
				n, _ := syscall.Write(sock, msg)
				sum += n
			}
		}
		fmt.Printf("%.1f\n", float64(time.Since(start).Nanoseconds())/float64(*n))
	}
	fmt.Fprintln(os.Stderr, "checksum", sum)
}

// udpPair returns a UDP socket connected to another one of this process that nobody reads:
// a send is a syscall on a socket that returns at once (the kernel drops what the full receive
// buffer cannot take, as UDP may).
func udpPair() int {
	rx, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		panic(err)
	}
	lo := &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := syscall.Bind(rx, lo); err != nil {
		panic(err)
	}
	sa, err := syscall.Getsockname(rx)
	if err != nil {
		panic(err)
	}
	tx, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		panic(err)
	}
	if err := syscall.Connect(tx, sa); err != nil {
		panic(err)
	}
	return tx
}

// paced calls Work rate times a second, in batches every 10 ms, for d.
func paced(rate int, d time.Duration) {
	bufio.NewReader(os.Stdin).ReadString('\n')
	perTick := max(1, rate/100)
	sum := 0
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(d)
	for now := range tick.C {
		if now.After(end) {
			break
		}
		for i := 0; i < perTick; i++ {
			sum += Work(i)
		}
	}
	fmt.Println("done", sum)
}
