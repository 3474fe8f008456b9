package archive

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromiumPath is Debian's Chromium; the check never downloads a browser.
const chromiumPath = "/usr/bin/chromium"

// TestReportInChromium opens the exported report.html in headless Chromium with
// tests/browser/check-report.mjs (playwright-core): every step of the attack story must be
// visible in the timeline, the hostile prompt must show as text and not run, and the page must
// load nothing from anywhere. The screenshot is kept at tests/browser/artifacts/report.png.
//
// Needs /usr/bin/chromium and node ≥ 20; as root it installs Chromium with apt-get and the node
// package with npm ci. It is skipped, saying why, with -short or when they cannot be had.
func TestReportInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the Chromium check of report.html is skipped")
	}
	browserDir := browserTestDir(t)
	node := browserPrereqs(t, browserDir)

	bundle := exportAttack(t, true)
	html := readReport(t, bundle)
	for _, step := range attackSteps {
		if !strings.Contains(visibleText(html), step) {
			t.Fatalf("report.html lacks step %q (checked in Go before the browser)", step)
		}
	}

	artifacts := filepath.Join(browserDir, "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(artifacts, "report.html")
	if err := os.WriteFile(report, []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}
	expected, err := json.MarshalIndent(map[string]any{
		"steps":         attackSteps,
		"texts":         []string{"<script>window.__pwned=1</script>", "onerror=window.__pwned2=1", "127.0.0.2:19999", "AML.T0086"},
		"absentGlobals": []string{"__pwned", "__pwned2"},
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	expectedPath := filepath.Join(artifacts, "expected.json")
	if err := os.WriteFile(expectedPath, expected, 0o644); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(artifacts, "report.png")
	os.Remove(shot)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, node, "check-report.mjs", report, shot, expectedPath)
	cmd.Dir = browserDir
	out, err := cmd.CombinedOutput()
	t.Logf("node check-report.mjs (%.1f s):\n%s", time.Since(start).Seconds(), strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("browser check of report.html failed: %v", err)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
		t.Fatalf("no screenshot written at %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
}

// browserTestDir finds tests/browser from the package directory.
func browserTestDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "tests", "browser")
			if _, err := os.Stat(filepath.Join(p, "check-report.mjs")); err != nil {
				t.Skipf("tests/browser/check-report.mjs not found under %s", dir)
			}
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("repository root (go.mod) not found")
		}
		dir = parent
	}
}

// browserPrereqs makes sure Chromium, node and the node package are there, installing what it
// can, and returns the node executable.
func browserPrereqs(t *testing.T, browserDir string) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("%s is missing and this test is not root, so it cannot install it: run apt-get install chromium", chromiumPath)
		}
		start := time.Now()
		out, err := runFor(10*time.Minute, "", "sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium")
		if err != nil {
			t.Skipf("%s is missing and apt-get install chromium failed (%v): %s", chromiumPath, err, lastLines(out, 5))
		}
		t.Logf("installed chromium with apt-get in %.0f s", time.Since(start).Seconds())
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (node >= 20 is needed for tests/browser; Debian 12's nodejs is too old)")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed: it installs tests/browser's playwright-core (npm ci)")
	}
	if !nodeModulesCurrent(browserDir) {
		start := time.Now()
		out, err := runFor(5*time.Minute, browserDir, npm, "ci", "--no-audit", "--no-fund")
		if err != nil {
			t.Skipf("npm ci in %s failed (%v): %s", browserDir, err, lastLines(out, 5))
		}
		t.Logf("npm ci in tests/browser took %.0f s", time.Since(start).Seconds())
	}
	return node
}

// nodeModulesCurrent tells whether node_modules holds the playwright-core that
// package-lock.json pins.
func nodeModulesCurrent(dir string) bool {
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	var installed struct {
		Version string `json:"version"`
	}
	const pkg = "node_modules/playwright-core"
	data, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil || json.Unmarshal(data, &lock) != nil {
		return false
	}
	data, err = os.ReadFile(filepath.Join(dir, pkg, "package.json"))
	if err != nil || json.Unmarshal(data, &installed) != nil {
		return false
	}
	return installed.Version != "" && installed.Version == lock.Packages[pkg].Version
}

func runFor(d time.Duration, dir, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = errors.New("timed out after " + d.String())
	}
	return string(out), err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
