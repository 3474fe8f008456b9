package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
)

const testProfile = `# a reviewed profile
format: agenttrail.profile/v1
workload:
  process.executable.path: /srv/bank/bin/customer-agent
  service.name: customer-agent
status: STATUS
version: 2
stories: 20
tools: [recent-transactions, accounts-summary]
executables: [/usr/bin/git]
files: []
destinations:
  - {address: 127.0.0.1, cidr: 127.0.0.0/24, port: 18443}
data_volume: {connects_p95: 2, connects_max: 2, bytes_sent_p95: 0, bytes_sent_max: 0, connects_samples: [2], bytes_sent_samples: [0]}
`

func writeProfiles(t *testing.T, status string) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "customer-agent_srv_bank_bin_customer-agent-550f4428.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(testProfile, "STATUS", status, 1)), 0o640); err != nil {
		t.Fatal(err)
	}
	other := strings.NewReplacer("customer-agent", "billing-agent", "STATUS", "learning").Replace(testProfile)
	if err := os.WriteFile(filepath.Join(dir, "billing-agent-12345678.yaml"), []byte(other), 0o640); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

func TestProfileShow(t *testing.T) {
	dir, path := writeProfiles(t, "complete")
	for _, name := range []string{"customer-agent", "customer-agent /srv/bank/bin/customer-agent", filepath.Base(path), "customer-agent_srv_bank_bin_customer-agent"} {
		code, out, errOut := runCLI(t, "profile", "show", name, "--dir", dir)
		if code != exitOK {
			t.Fatalf("show %q: %d %s", name, code, errOut)
		}
		for _, want := range []string{"status       complete", "version      2", "mode         (not set", "tools (2)\n  accounts-summary\n  recent-transactions\n",
			"executables (1)\n  /usr/bin/git\n", "destinations (1)\n  127.0.0.0/24 port 18443 (seen 127.0.0.1)\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("show %q lacks %q:\n%s", name, want, out)
			}
		}
	}
	if code, _, errOut := runCLI(t, "profile", "show", "nobody", "--dir", dir); code != exitFail || !strings.Contains(errOut, `no profile of "nobody"`) || !strings.Contains(errOut, "billing-agent") {
		t.Errorf("unknown workload: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "profile", "show", "/srv/bank/bin/customer-agent", "--dir", dir); code != exitOK {
		t.Errorf("by executable: %d %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "profile", "show", "--dir", dir); code != exitUsage {
		t.Errorf("no workload: %d", code)
	}
	code, out, _ := runCLI(t, "profile", "list", "--dir", dir)
	if code != exitOK || !strings.Contains(out, "complete  v2   (config)  customer-agent /srv/bank/bin/customer-agent") {
		t.Errorf("list: %d\n%s", code, out)
	}
}

func TestProfilePromote(t *testing.T) {
	dir, _ := writeProfiles(t, "learning")
	code, _, errOut := runCLI(t, "profile", "promote", "customer-agent", "--mode", "enforce", "--dir", dir)
	if code != exitFail || !strings.Contains(errOut, "must be complete") {
		t.Errorf("promotion of a learning profile: %d %s", code, errOut)
	}
	dir, path := writeProfiles(t, "complete")
	code, out, errOut := runCLI(t, "profile", "promote", "customer-agent", "--mode", "enforce", "--dir", dir)
	if code != exitOK || !strings.Contains(out, "mode enforce (was the configured mode)") {
		t.Fatalf("promote: %d %s %s", code, out, errOut)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "# a reviewed profile\n") || !strings.Contains(string(b), "status: complete\nmode: enforce") {
		t.Errorf("profile after promote:\n%s", b)
	}
	if code, out, _ := runCLI(t, "profile", "promote", "customer-agent", "--mode", "enforce", "--dir", dir); code != exitOK || !strings.Contains(out, "already in mode enforce") {
		t.Errorf("second promote: %d %s", code, out)
	}
	if code, out, _ := runCLI(t, "profile", "promote", "customer-agent", "--mode", "alert", "--dir", dir); code != exitOK || !strings.Contains(out, "mode alert (was enforce)") {
		t.Errorf("back to alert: %d %s", code, out)
	}
	for _, args := range [][]string{
		{"customer-agent", "--dir", dir},
		{"customer-agent", "--mode", "block", "--dir", dir},
		{"customer-agent", "--mode", "enforce", "--dry-run", "--dir", dir},
		{"customer-agent", "--mode", "enforce", "--evidence", dir, "--dir", dir},
	} {
		if code, _, _ := runCLI(t, append([]string{"profile", "promote"}, args...)...); code != exitUsage {
			t.Errorf("%v: exit %d, want usage", args, code)
		}
	}
}

// attackArchive writes an archive with a benign and an attack story of the workload, and a
// story of another workload.
func attackArchive(t *testing.T) (dir, attackTrace string) {
	t.Helper()
	keyFile, _ := keygen(t)
	key, err := archive.LoadSigningKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	a, err := archive.Open(dir, key, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Hour)
	story := func(n byte, service string, at time.Time, egress [][2]any, execs ...string) (string, []byte) {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", service)
		rs.Resource().Attributes().PutStr("process.executable.path", "/srv/bank/bin/"+service)
		rs.Resource().Attributes().PutInt("process.pid", 4242)
		spans := rs.ScopeSpans().AppendEmpty().Spans()
		var tid pcommon.TraceID
		tid[0], tid[15] = 0xab, n
		next := byte(1)
		mk := func(name string, root bool) pcommon.Map {
			s := spans.AppendEmpty()
			s.SetTraceID(tid)
			s.SetSpanID(pcommon.SpanID{n, next})
			if !root {
				s.SetParentSpanID(pcommon.SpanID{n, 1})
			}
			s.SetName(name)
			s.SetStartTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(next) * time.Millisecond)))
			s.SetEndTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(next+1) * time.Millisecond)))
			next++
			return s.Attributes()
		}
		mk("invoke_agent "+service, true).PutStr("agenttrail.role", "prompt")
		for _, e := range egress {
			m := mk("connect", false)
			m.PutStr("agenttrail.syscall", "connect")
			m.PutStr("network.peer.address", e[0].(string))
			m.PutInt("network.peer.port", int64(e[1].(int)))
		}
		for _, x := range execs {
			m := mk("execve", false)
			m.PutStr("agenttrail.syscall", "execve")
			m.PutStr("process.executable.path", x)
		}
		var jm ptrace.JSONMarshaler
		b, err := jm.MarshalTraces(td)
		if err != nil {
			t.Fatal(err)
		}
		return tid.String(), b
	}
	var entries []archive.Entry
	add := func(id string, b []byte) {
		entries = append(entries, archive.Entry{Kind: archive.KindStory, TraceID: id, Payload: b})
	}
	add(story(1, "customer-agent", now, [][2]any{{"127.0.0.1", 18443}}, "/usr/bin/git"))
	attackTrace, b := story(2, "customer-agent", now.Add(time.Minute), [][2]any{{"127.0.0.1", 18443}, {"127.0.0.2", 19999}, {"::ffff:127.0.0.1", 18443}}, "/bin/sh")
	add(attackTrace, b)
	add(story(3, "billing-agent", now, [][2]any{{"203.0.113.9", 443}}))
	add(story(4, "customer-agent", now.Add(-48*time.Hour), [][2]any{{"198.51.100.1", 80}}))
	if err := a.Append(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, attackTrace
}

func TestProfilePromoteDryRun(t *testing.T) {
	dir, path := writeProfiles(t, "complete")
	before, _ := os.ReadFile(path)
	evidence, attackTrace := attackArchive(t)
	code, out, errOut := runCLI(t, "profile", "promote", "customer-agent", "--mode", "enforce", "--dir", dir, "--dry-run", "--evidence", evidence)
	if code != exitOK {
		t.Fatalf("dry run: %d %s", code, errOut)
	}
	words := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		attackTrace + " connect 127.0.0.2:19999 egress_outside_profile (refused)",
		attackTrace + " exec /bin/sh unexpected_executable (killed)",
		"2 attempts would have been blocked in 1 of 2 stories; nothing was changed",
	} {
		if !strings.Contains(words, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"18443  ", "203.0.113.9", "198.51.100.1", "/usr/bin/git"} {
		if strings.Contains(out, not) {
			t.Errorf("dry run lists %q (allowed, another workload's, or older than --since):\n%s", not, out)
		}
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("the dry run changed the profile")
	}

	// the declared boundaries of the collector's configuration allow the outside host
	conf := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(conf, []byte(`processors:
  attackstory:
    workloads:
      - match: {service.name: billing-agent}
        allowed_destinations: ["0.0.0.0/0"]
      - match: {service.name: customer-agent}
        mode: ${env:AGENTTRAIL_DEMO_MODE:-alert}
        allowed_destinations: ["${env:AGENTTRAIL_TEST_SINK:-127.0.0.2}:19999", "api.example.com"]
`), 0o644)
	code, out, _ = runCLI(t, "profile", "promote", "customer-agent", "--mode", "enforce", "--dir", dir, "--dry-run", "--evidence", evidence, "--config", conf)
	if code != exitOK || strings.Contains(out, "127.0.0.2:19999") && !strings.Contains(out, "declared allowed_destinations: 127.0.0.2:19999") ||
		!strings.Contains(out, "1 attempts would have been blocked") || !strings.Contains(out, `"api.example.com" (a host name`) {
		t.Errorf("dry run with the configuration's boundaries: %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "profile", "promote", "customer-agent", "--mode", "enforce", "--dir", dir, "--dry-run", "--evidence", evidence, "--since", "72h", "--allow", "127.0.0.2:19999")
	if code != exitOK || !strings.Contains(out, "198.51.100.1:80") || !strings.Contains(out, "2 attempts would have been blocked in 2 of 3 stories") {
		t.Errorf("dry run --since 72h --allow: %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "profile", "promote", "customer-agent", "--mode", "alert", "--dir", dir, "--dry-run", "--evidence", evidence)
	if code != exitOK || !strings.Contains(out, "mode alert blocks nothing") {
		t.Errorf("dry run to alert: %d\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, "profile", "promote", "customer-agent", "--mode", "enforce", "--dir", dir, "--dry-run", "--evidence", t.TempDir()+"/none"); code != exitFail {
		t.Errorf("missing archive: %d %s", code, errOut)
	}
}
