package enforce

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/internal/containerid"
)

// BenchmarkConnect measures what the cgroup/connect4 hook costs one connection: the benchmark
// process moves itself into a cgroup of its own and connects, first with nothing attached
// ("without"), then with a policy attached that allows the destination ("with", the usual case)
// or refuses it ("with-denied": the hook also reports a decision). "udp" re-connects one UDP
// socket (the connect syscall alone, no handshake: the hook's share is largest there); "tcp"
// opens, connects and closes a TCP connection to a local listener (a whole connection). The
// ratio with/without of each is logged.
//
//	go test -run '^$' -bench BenchmarkConnect -benchtime 2s ./internal/enforce/
func BenchmarkConnect(b *testing.B) {
	root := requireKernel(b)
	info, err := containerid.FromPID("/proc", uint32(os.Getpid()))
	if err != nil {
		b.Fatal(err)
	}
	home := filepath.Join(root, info.CgroupPath)
	cg := filepath.Join(root, fmt.Sprintf("agenttrail-bench-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = containerid.AddProcess(home, os.Getpid())
		for i := 0; i < 50 && unix.Rmdir(cg) == unix.EBUSY; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if err := containerid.AddProcess(cg, os.Getpid()); err != nil {
		b.Fatal(err)
	}

	port := netip.MustParseAddrPort(listener(b, "127.0.0.1:0")).Port()

	e := newEnforcer(b)
	defer e.Close()
	go func() {
		for range e.Decisions() {
		}
	}()
	policy := Policy{Workload: "bench", Cgroup: cg, ProfileVersion: 1,
		AllowedDestinations: []Destination{
			{Prefix: netip.MustParsePrefix("127.0.0.0/24"), Port: port},
			{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 443},
			{Prefix: netip.MustParsePrefix("192.168.7.0/24")},
		}}

	allowed := &unix.SockaddrInet4{Port: int(port), Addr: [4]byte{127, 0, 0, 1}}
	denied := &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 2}}
	udp := func(to *unix.SockaddrInet4, wantErr error) func(b *testing.B) {
		return func(b *testing.B) {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Close(fd)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := unix.Connect(fd, to); !errors.Is(err, wantErr) && err != wantErr {
					b.Fatalf("connect: %v, want %v", err, wantErr)
				}
			}
		}
	}
	tcp := func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			if err := unix.Connect(fd, allowed); err != nil {
				b.Fatalf("connect: %v", err)
			}
			unix.Close(fd)
		}
	}

	results := map[string]float64{}
	run := func(name string, f func(b *testing.B)) {
		b.Run(name, func(b *testing.B) {
			f(b)
			b.StopTimer()
			results[name] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
	}
	run("udp/without", udp(allowed, nil))
	run("tcp/without", tcp)
	if err := e.Apply(policy); err != nil {
		b.Fatal(err)
	}
	run("udp/with", udp(allowed, nil))
	run("udp/with-denied", udp(denied, unix.EPERM))
	run("tcp/with", tcp)
	e.Remove(policy.Workload)

	var summary []string
	for _, proto := range []string{"udp", "tcp"} {
		without, with := results[proto+"/without"], results[proto+"/with"]
		if without > 0 && with > 0 {
			summary = append(summary, fmt.Sprintf("%s connect: %.0f ns without, %.0f ns with the policy (+%.0f ns, ratio %.3f)",
				proto, without, with, with-without, with/without))
		}
	}
	if d := results["udp/with-denied"]; d > 0 {
		summary = append(summary, fmt.Sprintf("udp connect refused with a decision reported: %.0f ns", d))
	}
	b.Log(strings.Join(summary, "; "))
}
