package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/internal/aibom/aibomtest"
)

// aibomArchive writes internal/aibom's fixture stories (a bank's Go, Python and Node agents)
// into a sealed evidence archive.
func aibomArchive(t *testing.T) string {
	t.Helper()
	return aibomtest.WriteArchive(t, aibomtest.Stories(t, aibomtest.FixtureDir(t)))
}

// bomParts is what two BOMs of the same observations share (the sources name directories).
func bomParts(t *testing.T, b []byte) string {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	out, _ := json.Marshal([]any{doc["components"], doc["services"], doc["dependencies"]})
	return string(out)
}

func TestAIBOM(t *testing.T) {
	dir := aibomArchive(t)
	code, out, errOut := runCLI(t, "aibom", "--evidence", dir, "--host-files=false", "--timestamp=false")
	if code != exitOK {
		t.Fatalf("aibom: %d %s", code, errOut)
	}
	golden, err := os.ReadFile("../../internal/aibom/testdata/golden/bank.cdx.json")
	if err != nil {
		t.Fatal(err)
	}
	if bomParts(t, []byte(out)) != bomParts(t, golden) {
		t.Errorf("the CLI's BOM differs from internal/aibom's golden file:\n%s", out)
	}
	if !strings.Contains(out, `"value": "evidence `+dir+` (4 story records)"`) || strings.Contains(out, `"timestamp"`) {
		t.Errorf("metadata:\n%s", out[:min(len(out), 800)])
	}

	// --out, with a profile directory too: the profile's workload (a host workload) is added.
	pdir, _ := writeProfiles(t, "complete")
	file := filepath.Join(t.TempDir(), "bom.json")
	code, _, errOut = runCLI(t, "aibom", "--evidence", dir, "--profiles", pdir, "--out", file)
	if code != exitOK || !strings.Contains(errOut, "wrote the AI-BOM of 5 workloads") {
		t.Fatalf("aibom --out: %d %s", code, errOut)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"timestamp"`, `"workload:customer-agent /srv/bank/bin/customer-agent/tool:recent-transactions"`, `"egress:127.0.0.1:18443"`, `"value": "profile"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("the BOM has no %s", want)
		}
	}

	// A tampered archive yields no BOM.
	segs, _ := filepath.Glob(filepath.Join(dir, archive.SegmentsDir, "*.jsonl"))
	data, _ := os.ReadFile(segs[0])
	if err := os.WriteFile(segs[0], bytes.Replace(data, []byte("model-x"), []byte("model-y"), 1), 0o640); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "aibom", "--evidence", dir)
	if code != exitFail || out != "" || !strings.Contains(errOut, "does not verify") {
		t.Errorf("a tampered archive: %d %q %s", code, out, errOut)
	}
}

func TestAIBOMUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"aibom"}, exitUsage, "--evidence or --profiles is required"},
		{[]string{"aibom", "x"}, exitUsage, `unexpected argument "x"`},
		{[]string{"aibom", "--help"}, exitOK, "Usage: agenttrail aibom"},
		{[]string{"aibom", "--evidence", filepath.Join(t.TempDir(), "none")}, exitFail, "does not verify"},
		{[]string{"help"}, exitOK, "agenttrail aibom (--evidence DIR | --profiles DIR)"},
		{[]string{"help", "aibom"}, exitOK, "--host-files"},
	} {
		code, out, errOut := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("%q: %d, want %d with %q:\n%s%s", tt.args, code, tt.code, tt.want, out, errOut)
		}
	}
}
