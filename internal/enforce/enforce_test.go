package enforce

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/agenttrail/agenttrail/internal/containerid"
	"github.com/agenttrail/agenttrail/internal/testutil"
)

// The test binary doubles as the workload: with ENFORCE_WORKLOAD set it reads commands
// ("connect ADDR", "udp ADDR", "exec PATH") from stdin and answers one line each.
func TestMain(m *testing.M) {
	if os.Getenv("ENFORCE_WORKLOAD") != "" {
		workload()
		return
	}
	os.Exit(m.Run())
}

func workload() {
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		var err error
		switch cmd {
		case "connect":
			var c net.Conn
			if c, err = net.DialTimeout("tcp", arg, 2*time.Second); err == nil {
				c.Close()
			}
		case "udp":
			var c net.Conn
			if c, err = net.Dial("udp", arg); err == nil {
				_, err = c.Write([]byte("x"))
				c.Close()
			}
		case "exec":
			err = exec.Command(arg).Run()
		}
		if err != nil {
			fmt.Println("error", err)
		} else {
			fmt.Println("ok")
		}
	}
}

// requireKernel skips unless cgroup programs can be attached here (root, a cgroup v2 mount);
// it returns the mount.
func requireKernel(tb testing.TB) (cgroup2 string) {
	tb.Helper()
	testutil.RequireRoot(tb, "kernel test: attaching cgroup programs")
	root, err := containerid.FindCgroup2Mount()
	if err != nil {
		tb.Skipf("kernel test: no cgroup v2 mount: %v", err)
	}
	return root
}

// newEnforcer loads the programs, skipping where the kernel lacks a feature they need.
func newEnforcer(tb testing.TB) *Enforcer {
	tb.Helper()
	e, err := New()
	if errors.Is(err, ebpf.ErrNotSupported) {
		tb.Skipf("kernel lacks a feature: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

type workloadProc struct {
	cmd   *exec.Cmd
	in    io.Writer
	lines *bufio.Scanner
}

func startWorkload(t *testing.T, cgroup string) *workloadProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ENFORCE_WORKLOAD=1")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := containerid.AddProcess(cgroup, cmd.Process.Pid); err != nil {
		t.Fatalf("move workload into %s: %v", cgroup, err)
	}
	w := &workloadProc{cmd: cmd, in: in, lines: bufio.NewScanner(out)}
	if !w.lines.Scan() || w.lines.Text() != "ready" {
		t.Fatal("workload did not start")
	}
	return w
}

func (w *workloadProc) do(t *testing.T, command string) string {
	t.Helper()
	fmt.Fprintln(w.in, command)
	if !w.lines.Scan() {
		t.Fatalf("workload died on %q", command)
	}
	return w.lines.Text()
}

// listener accepts and closes connections on addr until the test ends.
func listener(tb testing.TB, addr string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func nextDecision(t *testing.T, e *Enforcer) Decision {
	t.Helper()
	select {
	case d := <-e.Decisions():
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no decision reported")
		return Decision{}
	}
}

// TestEnforceWorkload attaches a policy to a kubelet-style pod cgroup holding a workload in its
// container cgroup: allowed destinations connect, others get EPERM (TCP and UDP), an executable
// outside the profile is killed while the workload keeps running, every denial is reported, and
// Remove leaves no program attached (checked with the kernel's own list).
func TestEnforceWorkload(t *testing.T) {
	requireKernel(t)
	const podUID = "5e6f7a8b-1c2d-4e3f-9a0b-c1d2e3f4a5b6"
	containerCgroup, cleanup, err := containerid.MakeKubeletCgroup("", podUID, strings.Repeat("ab", 32), "burstable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cleanup() })
	podCgroup := filepath.Dir(containerCgroup)

	allowed := listener(t, "127.0.0.1:0")
	denied := listener(t, "127.0.0.2:0")
	allowedPort := netip.MustParseAddrPort(allowed).Port()

	e := newEnforcer(t)
	defer e.Close()
	policy := Policy{
		Workload: "customer-ai/customer-agent", Cgroup: podCgroup, ProfileVersion: 3,
		AllowedDestinations: []Destination{{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Port: allowedPort}},
		AllowedExecutables:  []string{"/bin/true"},
		EnforceExec:         true,
	}
	if err := e.Apply(policy); err != nil {
		t.Fatal(err)
	}
	w := startWorkload(t, containerCgroup)

	if got := w.do(t, "connect "+allowed); got != "ok" {
		t.Errorf("allowed connect: %s", got)
	}
	if got := w.do(t, "connect "+denied); !strings.Contains(got, "operation not permitted") {
		t.Errorf("denied connect: %s", got)
	}
	d := nextDecision(t, e)
	if d.Kind != KindConnect || d.Destination.String() != denied || d.Workload != policy.Workload || d.ProfileVersion != 3 ||
		d.PID != uint32(w.cmd.Process.Pid) || d.Protocol != "tcp" {
		t.Errorf("decision %+v", d)
	}
	if got := w.do(t, "udp 127.0.0.2:9"); !strings.Contains(got, "operation not permitted") {
		t.Errorf("denied UDP send: %s", got)
	}
	if d := nextDecision(t, e); d.Kind != KindSendmsg && d.Kind != KindConnect {
		t.Errorf("UDP decision %+v", d)
	}
	if got := w.do(t, "exec /bin/true"); got != "ok" {
		t.Errorf("allowed exec: %s", got)
	}
	if got := w.do(t, "exec /bin/sh"); !strings.Contains(got, "killed") {
		t.Errorf("exec outside the profile: %s", got)
	}
	if d := nextDecision(t, e); d.Kind != KindExec || d.Executable != "/bin/sh" {
		t.Errorf("exec decision %+v", d)
	}
	if got := w.do(t, "connect "+allowed); got != "ok" {
		t.Errorf("the workload is not still working after the blocked exec: %s", got)
	}

	e.Remove(policy.Workload)
	if n := attachedPrograms(t, podCgroup); n != 0 {
		t.Errorf("%d programs still attached to %s after Remove", n, podCgroup)
	}
	if got := w.do(t, "connect "+denied); got != "ok" {
		t.Errorf("connect after Remove: %s", got)
	}
}

// attachedPrograms counts the programs the kernel lists on the cgroup's connect and sendmsg hooks.
func attachedPrograms(t *testing.T, cgroup string) int {
	t.Helper()
	n := 0
	for _, typ := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupUDP4Sendmsg, ebpf.AttachCGroupUDP6Sendmsg} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: cgroupFD(t, cgroup), Attach: typ})
		if err != nil {
			t.Fatalf("query %s: %v", typ, err)
		}
		n += len(res.Programs)
	}
	return n
}

func cgroupFD(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}
