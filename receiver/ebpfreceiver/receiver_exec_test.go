package ebpfreceiver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestForkExecAttribution: a traced shell forks and execs cat 50 times, each cat on a file
// only it opens, then 20 times env, which execs cat in turn. Every open of those files carries
// cat's identity in its resource (not the shell's: cat is often gone before the receiver reads
// /proc), every execve the identity of the program that made it (the shell's or env's; /proc
// may show cat by the time env's exec is read), and the shell's process.start is stamped at its
// exec in the kernel, not after its first syscalls.
func TestForkExecAttribution(t *testing.T) {
	requireKernel(t)
	dir := t.TempDir()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	shell := filepath.Join(dir, "trailsh")
	body, err := os.ReadFile(sh)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shell, body, 0o755); err != nil {
		t.Fatal(err)
	}
	const n, m = 50, 20
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range m {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("g%d", i)), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sink := startReceiver(t, testConfig(TargetConfig{Name: "forker", Executable: shell}))
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do cat %s/f$i; i=$((i+1)); done; `+
		`i=0; while [ $i -lt %d ]; do env cat %s/g$i; i=$((i+1)); done`, n, dir, m, dir)
	cmd := exec.Command(shell, "-c", script)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	shellPID := int64(cmd.Process.Pid)
	isCatOpen := func(c collected, i int) bool {
		p := attr(c.spans[i], "file.path")
		return c.spans[i].Name() == "openat" && (strings.HasPrefix(p, dir+"/f") || strings.HasPrefix(p, dir+"/g"))
	}
	c := waitSpans(t, sink, func(c collected) bool {
		opens := 0
		for i := range c.spans {
			if isCatOpen(c, i) {
				opens++
			}
		}
		return opens >= n+m && len(c.named("execve")) >= n+2*m && c.has("process.start")
	})
	res := func(i int, key string) string {
		v, ok := c.res[i].Attributes().Get(key)
		if !ok {
			return ""
		}
		return v.AsString()
	}
	wrong := 0
	for i := range c.spans {
		switch {
		case isCatOpen(c, i):
			exe, cmdline := res(i, "process.executable.path"), res(i, "process.command_line")
			if filepath.Base(exe) != "cat" || !strings.HasPrefix(cmdline, "cat ") || res(i, "process.pid") == fmt.Sprint(shellPID) {
				wrong++
				t.Errorf("open of %s by pid %s attributed to %q (%q)", attr(c.spans[i], "file.path"), res(i, "process.pid"), exe, cmdline)
			}
		case c.spans[i].Name() == "execve":
			exe, made := res(i, "process.executable.path"), filepath.Base(attr(c.spans[i], "process.executable.path"))
			if (made == "env" || made == "cat" && strings.HasPrefix(attr(c.spans[i], "process.command_line"), "cat "+dir+"/f")) && exe != shell ||
				made == "cat" && strings.HasPrefix(attr(c.spans[i], "process.command_line"), "cat "+dir+"/g") && filepath.Base(exe) != "env" {
				wrong++
				t.Errorf("execve of %s by pid %s attributed to %q", attr(c.spans[i], "process.command_line"), res(i, "process.pid"), exe)
			}
		}
	}
	if wrong > 0 {
		t.Logf("%d of %d spans misattributed", wrong, len(c.spans))
	}
	start, _ := c.one(t, "process.start")
	for i := range c.spans {
		if res(i, "process.pid") == fmt.Sprint(shellPID) && c.spans[i].StartTimestamp() < start.StartTimestamp() {
			t.Errorf("process.start at %v, after the shell's %s at %v", start.StartTimestamp().AsTime(), c.spans[i].Name(), c.spans[i].StartTimestamp().AsTime())
			break
		}
	}
}
