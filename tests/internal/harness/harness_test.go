package harness

import (
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestProcStop(t *testing.T) {
	log := filepath.Join(t.TempDir(), "p.log")
	p := MustStart(t, exec.Command("sh", "-c", "echo one; exec sleep 30"), log)
	WaitFor(t, "the first line", 5*time.Second, 10*time.Millisecond, func() bool { return Tail(log, 1) == "one" })
	if !p.Stop(5 * time.Second) {
		t.Error("sleep did not stop on SIGTERM")
	}
	if !p.Exited() || !p.Stop(time.Second) {
		t.Error("a stopped process: not exited, or a second Stop failed")
	}
	// A second life appends to the same log.
	q := MustStart(t, exec.Command("sh", "-c", "echo two"), log)
	<-q.Done()
	if got := Tail(log, 5); got != "one\ntwo" {
		t.Errorf("log %q, want both lives", got)
	}
}

func TestProcStopKillsAfterGrace(t *testing.T) {
	log := filepath.Join(t.TempDir(), "p.log")
	p := MustStart(t, exec.Command("sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"), log)
	WaitFor(t, "the trap", 5*time.Second, 10*time.Millisecond, func() bool { return Tail(log, 1) == "ready" })
	began := time.Now()
	if p.Stop(200 * time.Millisecond) {
		t.Error("a process ignoring SIGTERM stopped on it")
	}
	if !p.Exited() || time.Since(began) > 5*time.Second {
		t.Errorf("not killed after the grace (exited %v, %s)", p.Exited(), time.Since(began))
	}
}

func TestWaitHealthy(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	p := MustStart(t, exec.Command("sleep", "30"), filepath.Join(t.TempDir(), "p.log"))
	defer p.Stop(time.Second)
	go func() { time.Sleep(300 * time.Millisecond); ready.Store(true) }()
	WaitHealthy(t, p, srv.URL+"/status", 10*time.Second, ready.Load)
	if !ready.Load() {
		t.Error("returned before ready held")
	}
}

func TestLastLines(t *testing.T) {
	if got := LastLines("a\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("LastLines = %q", got)
	}
	if got := LastLines("a", 5); got != "a" {
		t.Errorf("fewer lines than asked: %q", got)
	}
	if got := Tail(filepath.Join(t.TempDir(), "none"), 3); got != "" {
		t.Errorf("a missing file: %q", got)
	}
	if got := HealthURL(13133, "/status"); got != "http://127.0.0.1:13133/status" {
		t.Errorf("HealthURL = %s", got)
	}
}
