package aibom

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/goleak"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/internal/aibom/aibomtest"
)

var update = flag.Bool("update", false, "rewrite testdata/stories and the golden BOM")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	storiesDir = "testdata/stories"
	goldenBOM  = "testdata/golden/bank.cdx.json"
)

// fixtureArchive writes the committed stories into a fresh evidence archive, as the evidence
// exporter would, and returns its directory.
func fixtureArchive(t *testing.T) string {
	t.Helper()
	if *update {
		var m ptrace.JSONMarshaler
		if err := os.MkdirAll(storiesDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, td := range fixtureStories() {
			b, err := m.MarshalTraces(td)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := json.Indent(&out, b, "", "  "); err != nil {
				t.Fatal(err)
			}
			out.WriteByte('\n')
			if err := os.WriteFile(filepath.Join(storiesDir, fmt.Sprintf("%02d.json", i+1)), out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return aibomtest.WriteArchive(t, aibomtest.Stories(t, storiesDir))
}

func encode(t *testing.T, b *cdx.BOM) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Encode(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGoldenArchive(t *testing.T) {
	dir := fixtureArchive(t)
	if _, err := archive.VerifyDir(dir, archive.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	inv := New(Options{})
	st, err := ReadArchive(dir, inv)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stories != 4 {
		t.Errorf("stories = %d, want 4", st.Stories)
	}
	got := encode(t, BOM(inv.Workloads(), Meta{ToolVersion: "test", Sources: []string{"evidence fixture"}, Dropped: inv.Dropped}))
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenBOM), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenBOM, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenBOM)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the BOM differs from %s (go test -run TestGoldenArchive -update rewrites it):\n%s", goldenBOM, got)
	}
	// The same observations in another order give the same document.
	inv2 := New(Options{})
	stories := fixtureStories()
	for i := len(stories) - 1; i >= 0; i-- {
		inv2.AddTraces(stories[i], SourceEvidence)
	}
	if again := encode(t, BOM(inv2.Workloads(), Meta{ToolVersion: "test", Sources: []string{"evidence fixture"}})); !bytes.Equal(again, got) {
		t.Errorf("the BOM depends on the order of the stories")
	}
	validateCycloneDX(t, goldenBOM)

	// What the document must say, beyond the schema.
	var b cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(got), cdx.BOMFileFormatJSON).Decode(&b); err != nil {
		t.Fatal(err)
	}
	types := map[string]cdx.ComponentType{}
	for _, c := range *b.Components {
		types[c.BOMRef] = c.Type
	}
	for ref, typ := range map[string]cdx.ComponentType{
		"workload:customer-ai/customer-agent/agent": cdx.ComponentTypeApplication,
		"model:openai/model-x":                      cdx.ComponentTypeMachineLearningModel,
		"model:anthropic/claude-sonnet-4":           cdx.ComponentTypeMachineLearningModel,
		"pkg:pypi/openai@1.55.0":                    cdx.ComponentTypeLibrary,
		"pkg:pypi/langgraph":                        cdx.ComponentTypeFramework,
		"pkg:pypi/langchain-anthropic":              cdx.ComponentTypeFramework,
		"pkg:npm/%40modelcontextprotocol/sdk":       cdx.ComponentTypeLibrary,
		"pkg:npm/%40langchain/core":                 cdx.ComponentTypeFramework,
		"workload:wealth-ai/kyc/agent":              cdx.ComponentTypeApplication,
		"workload:advisor /usr/bin/python3.11":      cdx.ComponentTypeApplication,
		"pkg:npm/openai":                            cdx.ComponentTypeLibrary,
		"pkg:pypi/anthropic":                        cdx.ComponentTypeLibrary,
	} {
		if types[ref] != typ {
			t.Errorf("component %s: type %q, want %q", ref, types[ref], typ)
		}
	}
	if _, ok := types["pkg:pypi/numpy"]; ok {
		t.Error("numpy is not an AI package, it is listed")
	}
	deps := map[string][]string{}
	for _, d := range *b.Dependencies {
		if d.Dependencies != nil {
			deps[d.Ref] = *d.Dependencies
		}
	}
	wantDeps := map[string][]string{
		"workload:customer-ai/customer-agent/agent": {"egress:127.0.0.1:18443", "egress:127.0.0.2:19999", "model-api:127.0.0.1:18443",
			"model:openai/model-x", "workload:customer-ai/customer-agent/agent/tool:accounts-summary",
			"workload:customer-ai/customer-agent/agent/tool:customer-data-export"},
		"model-api:127.0.0.1:18443": {"model:openai/model-x"},
		"workload:advisor /usr/bin/python3.11": {"egress:160.79.104.10:443", "mcp-server:bank-ledger", "mcp-server:bank-ledger/tool:ledger.lookup",
			"model-api:api.anthropic.com:443", "model:anthropic/claude-sonnet-4", "pkg:pypi/anthropic", "pkg:pypi/langchain-anthropic",
			"pkg:pypi/langgraph", "pkg:pypi/openai@1.55.0"},
	}
	for ref, want := range wantDeps {
		if !reflect.DeepEqual(deps[ref], want) {
			t.Errorf("dependencies of %s:\n got %q\nwant %q", ref, deps[ref], want)
		}
	}
	if strings.Contains(string(got), "127.0.0.3") {
		t.Error("a refused connect is listed as an egress destination")
	}
	if !strings.Contains(string(got), `"value": "agent-sa"`) {
		t.Error("the service account is missing")
	}
}

var (
	validatorOnce sync.Once
	validatorErr  error
)

// validateCycloneDX runs the CycloneDX project's own JSON validator (npm
// @cyclonedx/cyclonedx-library, pinned by testdata/cyclonedx/package-lock.json; scripts/prereqs.sh
// test-packages installs it, or this does) on files.
func validateCycloneDX(t *testing.T, files ...string) (bool, string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the CycloneDX validator cannot run")
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "cyclonedx"))
	if err != nil {
		t.Fatal(err)
	}
	validatorOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@cyclonedx", "cyclonedx-library", "package.json")); err == nil {
			return
		}
		out, err := exec.Command("npm", "ci", "--prefix", dir, "--no-audit", "--no-fund").CombinedOutput()
		if err != nil {
			validatorErr = fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
		}
	})
	if validatorErr != nil {
		t.Fatal(validatorErr)
	}
	args := []string{filepath.Join(dir, "validate.mjs")}
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, abs)
	}
	out, err := exec.Command(node, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, string(out)
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		t.Errorf("CycloneDX validator: %s", out)
		return false, string(out)
	default:
		t.Fatalf("CycloneDX validator: %v\n%s", err, out)
	}
	return false, ""
}

// TestValidatorRejects shows the validator can fail: the BOM with a component type CycloneDX
// does not define (the model written as "ml-model") is rejected.
func TestValidatorRejects(t *testing.T) {
	inv := New(Options{})
	inv.AddTraces(fixtureStories()[0], SourceSpans)
	good := encode(t, BOM(inv.Workloads(), Meta{ToolVersion: "test"}))
	bad := bytes.Replace(good, []byte(`"type": "machine-learning-model"`), []byte(`"type": "ml-model"`), 1)
	if bytes.Equal(bad, good) {
		t.Fatal("the BOM has no model component")
	}
	path := filepath.Join(t.TempDir(), "bad.cdx.json")
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	ok, out := validateQuiet(t, path)
	if ok || !strings.Contains(out, "/type") {
		t.Errorf("an invalid component type passed the validator: %s", out)
	}
}

// validateQuiet runs the validator and reports its verdict without failing the test.
func validateQuiet(t *testing.T, file string) (bool, string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the CycloneDX validator cannot run")
	}
	validateCycloneDX(t, goldenBOM) // installs the validator once
	dir, _ := filepath.Abs(filepath.Join("testdata", "cyclonedx"))
	out, err := exec.Command(node, filepath.Join(dir, "validate.mjs"), file).CombinedOutput()
	return err == nil, string(out)
}
