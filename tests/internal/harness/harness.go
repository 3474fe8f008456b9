// Package harness holds what the whole-collector suites (tests/e2e, enforce, outage, detect,
// crossnode) do alike: find the built collector, run a process with its output appended to a
// log file and stop it (SIGTERM, then SIGKILL after a grace), wait until the collector's health
// endpoint answers, quote a log's last lines, and poll for a condition.
package harness

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agenttrail/agenttrail/internal/testutil"
	"github.com/agenttrail/agenttrail/tests/jaeger"
)

// Collector returns the path of the collector make build wrote, or fails the test saying how
// to build it.
func Collector(t testing.TB) string {
	t.Helper()
	p := testutil.RepoPath(t, "_build/otelcol-agenttrail")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the collector is not built (%s): make test builds it; run make build", p)
	}
	return p
}

// RequireJaeger fails the test unless Jaeger is built (make tools).
func RequireJaeger(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(jaeger.Binary()); err != nil {
		t.Fatalf("Jaeger is not built (%s): make test builds it; run make tools", jaeger.Binary())
	}
}

// Proc is a process a test started, its stdout and stderr appended to the file Log.
type Proc struct {
	Cmd  *exec.Cmd
	Log  string
	done chan struct{}
}

// Start starts cmd with its output appended to log (created if need be) and waits for it in
// the background.
func Start(cmd *exec.Cmd, log string) (*Proc, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	// The child has its own descriptor once started: this one is not needed after.
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Cmd: cmd, Log: log, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// MustStart is Start that fails the test on an error.
func MustStart(t testing.TB, cmd *exec.Cmd, log string) *Proc {
	t.Helper()
	p, err := Start(cmd, log)
	if err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	return p
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig (unless the process has exited) and reports whether it exited within wait.
func (p *Proc) Signal(sig syscall.Signal, wait time.Duration) bool {
	if p.Exited() {
		return true
	}
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true
	case <-time.After(wait):
		return false
	}
}

// Stop sends SIGTERM and, if the process has not exited within grace, SIGKILL; it returns once
// the process is gone and reports whether SIGTERM was enough. Safe to call again.
func (p *Proc) Stop(grace time.Duration) bool {
	if p.Signal(syscall.SIGTERM, grace) {
		return true
	}
	_ = p.Cmd.Process.Kill()
	<-p.done
	return false
}

// WaitHealthy waits up to timeout until GET url answers 200 and ready (nil: always) holds,
// and fails the test, quoting the log's last lines, when the process exits or time runs out.
func WaitHealthy(t testing.TB, p *Proc, url string, timeout time.Duration, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.Exited() {
			t.Fatalf("the collector exited at start:\n%s", Tail(p.Log, 40))
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && (ready == nil || ready()) {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the collector did not become healthy within %s:\n%s", timeout, Tail(p.Log, 40))
}

// HealthURL is the URL of the collector's health endpoint on port with path.
func HealthURL(port int, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
}

// Tail returns the last n lines of the file at path ("" when it cannot be read).
func Tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	return LastLines(string(b), n)
}

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// WaitFor polls cond every poll until it holds, and returns when; it fails the test after
// timeout, naming what it waited for.
func WaitFor(t testing.TB, what string, timeout, poll time.Duration, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(poll)
	}
	return time.Now()
}
