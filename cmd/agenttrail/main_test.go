package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/goleak"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter"
	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// runCLI runs the CLI in-process and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func keygen(t *testing.T) (path string, pub ed25519.PublicKey) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "evidence.key")
	code, out, errOut := runCLI(t, "evidence", "keygen", "--out", path)
	if code != exitOK {
		t.Fatalf("keygen: %d %s", code, errOut)
	}
	pub, err := archive.ParsePublicKey(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	return path, pub
}

// smallArchive writes a sealed archive of a few segments and returns its directory.
func smallArchive(t *testing.T, keyFile string) string {
	t.Helper()
	key, err := archive.LoadSigningKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, err := archive.Open(dir, key, archive.Options{SegmentMaxBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		p := []byte(`{"story":` + strings.Repeat("1", i+1) + `,"pad":"` + strings.Repeat("x", 200) + `"}`)
		if err := a.Append(context.Background(), []archive.Entry{{Kind: archive.KindStory, Payload: p}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout or stderr
	}{
		{"no arguments", nil, exitUsage, "Usage:"},
		{"help", []string{"help"}, exitOK, "agenttrail evidence verify DIR"},
		{"help evidence", []string{"help", "evidence"}, exitOK, "agenttrail evidence keygen --out FILE"},
		{"--help", []string{"--help"}, exitOK, "Exit codes"},
		{"unknown command", []string{"story-of-my-life"}, exitUsage, `unknown command "story-of-my-life"`},
		{"evidence without subcommand", []string{"evidence"}, exitUsage, "missing subcommand"},
		{"unknown evidence subcommand", []string{"evidence", "sign"}, exitUsage, `unknown command "sign"`},
		{"evidence --help", []string{"evidence", "--help"}, exitOK, "agenttrail evidence keygen --out FILE"},
		{"profile --help", []string{"profile", "--help"}, exitOK, "agenttrail profile promote WORKLOAD"},
		{"profile -h", []string{"profile", "-h"}, exitOK, "agenttrail profile list"},
		{"profile help", []string{"profile", "help"}, exitOK, "agenttrail profile show WORKLOAD"},
		{"profile show --help", []string{"profile", "show", "--help"}, exitOK, "Usage"},
		{"profile promote --help", []string{"profile", "promote", "--help"}, exitOK, "Usage"},
		{"evidence export --help", []string{"evidence", "export", "--help"}, exitOK, "Usage"},
		{"evidence keygen --help", []string{"evidence", "keygen", "--help"}, exitOK, "Usage"},
		{"verify without directory", []string{"evidence", "verify"}, exitUsage, "want exactly one archive directory"},
		{"verify with two directories", []string{"evidence", "verify", dir, dir}, exitUsage, "want exactly one archive directory"},
		{"verify with a bad key", []string{"evidence", "verify", dir, "--public-key", "nope"}, exitUsage, "--public-key"},
		{"verify with an unknown flag", []string{"evidence", "verify", "--fast", dir}, exitUsage, "flag provided but not defined"},
		{"verify -h", []string{"evidence", "verify", "-h"}, exitOK, "Usage: agenttrail evidence verify"},
		{"export without flags", []string{"evidence", "export"}, exitUsage, "--dir, --trace and --out are required"},
		{"export with a malformed trace id", []string{"evidence", "export", "--dir", dir, "--trace", "xyz", "--out", dir}, exitUsage, "malformed trace id"},
		{"verify-bundle without directory", []string{"evidence", "verify-bundle"}, exitUsage, "want exactly one bundle directory"},
		{"keygen without --out", []string{"evidence", "keygen"}, exitUsage, "--out is required"},
		{"verify of a missing directory", []string{"evidence", "verify", filepath.Join(dir, "none")}, exitFail, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			if !strings.Contains(out+errOut, tt.wantOut) {
				t.Errorf("output does not contain %q\nstdout: %s\nstderr: %s", tt.wantOut, out, errOut)
			}
		})
	}
}

func TestKeygen(t *testing.T) {
	path, pub := keygen(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	key, err := archive.LoadSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Public().(ed25519.PublicKey).Equal(pub) {
		t.Error("printed public key does not match the key file")
	}
	if code, _, errOut := runCLI(t, "evidence", "keygen", "--out", path); code != exitFail || !strings.Contains(errOut, "exists") {
		t.Errorf("keygen over an existing file: %d %s", code, errOut)
	}

	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: interoperability not checked")
	}
	t.Run("openssl reads our key", func(t *testing.T) {
		out, err := exec.Command(openssl, "pkey", "-in", path, "-pubout").Output()
		if err != nil {
			t.Fatal(err)
		}
		pemFile := filepath.Join(t.TempDir(), "pub.pem")
		os.WriteFile(pemFile, out, 0o644)
		got, err := archive.ParsePublicKey(pemFile)
		if err != nil || !got.Equal(pub) {
			t.Errorf("openssl's public key %x, %v; want %x", got, err, pub)
		}
	})
	t.Run("we read openssl's key", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "openssl.key")
		if out, err := exec.Command(openssl, "genpkey", "-algorithm", "ed25519", "-out", p).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if _, err := archive.LoadSigningKey(p); err != nil {
			t.Error(err)
		}
	})
}

func TestVerifyCommand(t *testing.T) {
	keyFile, pub := keygen(t)
	dir := smallArchive(t, keyFile)
	pemFile := filepath.Join(t.TempDir(), "pub.pem")
	os.WriteFile(pemFile, archive.PublicKeyPEM(pub), 0o644)
	_, otherPub := keygen(t)

	tampered := t.TempDir()
	os.CopyFS(tampered, os.DirFS(dir))
	seg := filepath.Join(tampered, "segments", archive.SegmentName(1))
	data, _ := os.ReadFile(seg)
	os.WriteFile(seg, bytes.Replace(data, []byte(`"story":11`), []byte(`"story":12`), 1), 0o640)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{"unpinned", []string{dir}, exitOK, []string{"records:    ", "last hash:  ", "public key: " + hex.EncodeToString(pub), "OK"}},
		{"pinned by hex after the directory", []string{dir, "--public-key", hex.EncodeToString(pub)}, exitOK, []string{"(pinned", "OK"}},
		{"pinned by PEM file before the directory", []string{"--public-key", pemFile, dir}, exitOK, []string{"OK"}},
		{"pinned to another key", []string{dir, "--public-key", hex.EncodeToString(otherPub)}, exitFail,
			[]string{"FAIL: segments/0000000001.manifest.json: manifest public key"}},
		{"modified record", []string{tampered}, exitFail, []string{"FAIL: segments/0000000001.jsonl record seq 3 (line 3): hash mismatch"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"evidence", "verify"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout does not contain %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestExportEndToEnd drives the real exporter, then the CLI: export one trace, verify the
// bundle, tamper with it.
func TestExportEndToEnd(t *testing.T) {
	keyFile, pub := keygen(t)
	f := evidenceexporter.NewFactory()
	cfg := f.CreateDefaultConfig().(*evidenceexporter.Config)
	cfg.Directory = filepath.Join(t.TempDir(), "evidence")
	cfg.SigningKeyFile = keyFile
	cfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	set := exportertest.NewNopSettings(f.Type())
	ctx := context.Background()
	te, err := f.CreateTraces(ctx, set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	le, err := f.CreateLogs(ctx, set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := te.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := le.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	ids := []pcommon.TraceID{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, {0xff, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for i, id := range ids {
		s := spans.AppendEmpty()
		s.SetTraceID(id)
		s.SetSpanID(pcommon.SpanID{byte(i + 1)})
		s.SetName("invoke_agent")
	}
	if err := te.ConsumeTraces(ctx, td); err != nil {
		t.Fatal(err)
	}
	ld := plog.NewLogs()
	lr := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.Body().SetStr(`{"class_uid":2004}`)
	lr.Attributes().PutStr("agenttrail.trace_id", hex.EncodeToString(ids[0][:]))
	if err := le.ConsumeLogs(ctx, ld); err != nil {
		t.Fatal(err)
	}
	if err := te.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := le.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "bundle")
	trace := hex.EncodeToString(ids[0][:])
	code, stdout, stderr := runCLI(t, "evidence", "export", "--dir", cfg.Directory, "--trace", trace, "--out", out)
	if code != exitOK || !strings.Contains(stdout, "1 story records, 1 findings") {
		t.Fatalf("export: %d\n%s%s", code, stdout, stderr)
	}
	for _, n := range []string{"story.json", "findings.json", "proof.json"} {
		if _, err := os.Stat(filepath.Join(out, n)); err != nil {
			t.Errorf("bundle lacks %s", n)
		}
	}
	code, stdout, stderr = runCLI(t, "evidence", "verify-bundle", out, "--public-key", hex.EncodeToString(pub))
	if code != exitOK || !strings.HasSuffix(stdout, "OK\n") {
		t.Fatalf("verify-bundle: %d\n%s%s", code, stdout, stderr)
	}

	code, _, stderr = runCLI(t, "evidence", "export", "--dir", cfg.Directory, "--trace", strings.Repeat("ab", 16), "--out", t.TempDir())
	if code != exitFail || !strings.Contains(stderr, "not found") {
		t.Errorf("export of an unknown trace: %d %s", code, stderr)
	}

	findings := filepath.Join(out, "findings.json")
	os.WriteFile(findings, []byte("[]"), 0o640)
	code, stdout, _ = runCLI(t, "evidence", "verify-bundle", out)
	if code != exitFail || !strings.Contains(stdout, "FAIL: findings.json does not match") {
		t.Errorf("tampered bundle: %d %s", code, stdout)
	}
}
